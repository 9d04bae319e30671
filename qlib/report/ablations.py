"""The ablation chapter's tables: variants of QuantGPT 2-2-8 (loss, negatives, layer, seeds, gamma's start) by
name, each one's change from QuantGPT against QuantGPT's seed band, the chapter's answer first, and the negatives
figure's data."""
from __future__ import annotations

import pandas as pd

from .. import experiments as X
from ..labels import run_name
from .common import GridResults, load_grid, load_grids, missing_text, ppl_text, provenance
from .contrastive import (band_words, bands, change_text, contrastive_verdict, gradient_conclusion,
                          grad_share_curves)

VARIANT_NAMES = {"mds-228": "QuantGPT (teacher negatives, memory bank, last layer)",
                 "mds-228-dist-only": "L_dist only", "mds_pact_grad-228-dist-only": "Ours with PACT",
                 "mds-228-immediate": "immediate student representations (no bank)",
                 "mds-228-neg8": "8 negatives", "mds-228-neg32": "32 negatives",
                 "mds-228-teacher-bank": "negatives: teacher + bank", "mds-228-bank": "negatives: bank only",
                 "mds-228-global": "negatives: global (bank rows of other tokens)",
                 "mds-228-sequence": "sequence-level contrast", "mds-228-first-layer": "contrast on the first layer",
                 "mds-228-seed1": "QuantGPT, seed 1", "mds-228-seed2": "QuantGPT, seed 2",
                 "laq-228-seed1": "LAQ, seed 1", "laq-228-seed2": "LAQ, seed 2"}
ABLATION_GRIDS = ("lm-table", "lm-ablations", "lm-seeds")  # where a variant is looked up by name


def ablation_table(preset: str, keys: tuple[str, ...], paper: dict[str, float] | None = None,
                   reference: str = "mds-228") -> pd.DataFrame:
    """Variants of QuantGPT (looked up by name in the table, ablation, seed and gamma-start grids) with their test
    PPL; where ``reference`` is among ``keys``, each one's change from it and whether that lies beyond QuantGPT's
    seed band; the paper's PPL and change beside them when ``paper`` is given."""
    runs = load_grids(preset, *ABLATION_GRIDS, "lm-gamma-init")
    band, widest = bands(preset, runs)
    ref = runs.metric(reference) if reference in keys else None
    rows = []
    for key in keys:
        ppl = runs.metric(key)
        row = {"variant": VARIANT_NAMES.get(key, run_name(runs.configs[key])),
               "test PPL": ppl_text(ppl) if ppl is not None else "not run"}
        if reference in keys:
            rel = None if ppl is None or ref is None or key == reference else ppl / ref - 1
            row["vs QuantGPT"] = change_text(rel) if rel is not None else ""
            row["seed band"] = band_words(rel, variant_band(runs.configs[key], band, widest)).split(" (")[0] \
                if rel is not None else ""
        if paper is not None:
            p, p_ref = paper.get(key), paper.get(reference)
            row["paper: PTB PPL"] = f"{p:.2f}" if p else ""
            row["paper: vs QuantGPT"] = change_text(p / p_ref - 1) if p and p_ref and key != reference else ""
        rows.append(row)
    return pd.DataFrame(rows)


def variant_band(cfg, own: float | None, widest: float | None) -> float | None:
    """The band a one-seed variant is read against: QuantGPT's own seed spread when it is QuantGPT with one part
    changed, the largest measured spread when its quantizer differs ("Ours with PACT")."""
    return own if cfg.method == "mds" else widest


def ablations_note(preset: str, keys: tuple[str, ...]) -> str:
    """One line under an ablation table: where and how long its runs trained, the band it is read against, and
    the runs still missing with the command that makes them."""
    runs = load_grids(preset, *ABLATION_GRIDS, "lm-gamma-init")
    done = runs.done(keys)
    if not done:
        return f"Not run yet: `{X.grid_command('lm-ablations', preset)}`."
    facts = provenance(done.values())
    own, widest = bands(preset, runs)
    tokens = "/".join(f"{r['steps'] * r.get('tokens_per_step', 0):,}" for r in {r["steps"]: r for r in
                                                                               done.values()}.values())
    text = (f"`{preset}` preset, {facts['devices']} {facts['dtypes']}, {tokens} training tokens per run, one seed "
            f"each, runs of {facts['dates']}. ")
    text += (f"Seed band: QuantGPT's three seeds span {100 * own:.2f}%, the band of a variant of QuantGPT; a "
             f"variant with another quantizer is read against the largest measured spread, {100 * widest:.2f}%."
             if own is not None and widest
             else "Seed band: not measured yet, so no change is called beyond it.")
    missing = [k for k in keys if k not in done]
    if missing:
        text += " " + missing_text(missing, hint=False)
    return text


def ablations_tldr(preset: str) -> str:
    """The chapter's answer first (Markdown bullets): how many ablations move QuantGPT 2-2-8 beyond its seed band,
    what L_cont's weight and the long runs show, and what gamma's start does."""
    runs = load_grids(preset, *ABLATION_GRIDS, "lm-gamma-init")
    own, widest = bands(preset, runs)
    ref = runs.metric("mds-228")
    keys = [k for k in VARIANT_NAMES if k.startswith("mds") and "seed" not in k and k != "mds-228"
            and k in runs.configs]  # the smoke preset's grids name fewer negatives
    done = {k: runs.metric(k) / ref - 1 for k in keys if ref is not None and runs.metric(k) is not None}
    if not done or own is None:
        return f"- Not run yet: `{X.grid_command('lm-ablations', preset)}`."
    beyond = {k: v for k, v in done.items() if abs(v) > variant_band(runs.configs[k], own, widest)}
    outside = (", ".join(f"{VARIANT_NAMES[k]} {change_text(v)}" for k, v in beyond.items()) + " beyond it."
               if beyond else "none beyond it.")
    lines = [f"**{len(done) - len(beyond)} of {len(done)} ablations** of QuantGPT 2-2-8 end within QuantGPT's seed "
             f"band of it (a range of {100 * own:.2f}%; another quantizer: the largest spread, {100 * widest:.2f}%); "
             + outside]
    # the gradient split in one sentence (its numbers are in the chapter's table), then the weight and the long runs
    grad = gradient_conclusion(grad_share_curves(preset)).strip()
    lines += [f"**Gradient:** {grad}"] if grad else []
    lines += [x.lstrip("- ") for x in contrastive_verdict(preset).splitlines()[1:]]
    return "\n".join(f"- {x}" for x in lines)


def negatives_keys(preset: str, runs: GridResults | None = None) -> tuple[str, ...]:
    """The negatives figure's runs in ``preset`` by name: fewer negatives (their counts differ by preset), the main
    run, and the run without the memory bank. ``runs``: grid ``lm-ablations`` already loaded."""
    fewer = [key for key in (runs if runs is not None else load_grid("lm-ablations", preset))
             if key.startswith("mds-228-neg")]
    return (*fewer, "mds-228", "mds-228-immediate")


def negatives_curve(preset: str) -> dict[str, list[tuple[int, float]]]:
    """The paper's Fig. 7 in our runs: test PPL against the number of negatives, with the memory bank and without
    it."""
    runs = load_grids(preset, "lm-table", "lm-ablations")
    points = {k: (runs.configs[k].num_negatives, runs.metric(k)) for k in negatives_keys(preset, runs)}
    immediate = points.pop("mds-228-immediate")
    return {"memory bank": [p for p in points.values() if p[1] is not None],
            "immediate": [p for p in [immediate] if p[1] is not None]}
