"""The ablation chapter's tables and readings: variants of QuantGPT 2-2-8 (loss, negatives, layer, seeds, gamma's
start) by name, their gaps to QuantGPT against the seed band, and the negatives figure's data."""
from __future__ import annotations

import pandas as pd

from ..labels import number_text, run_name
from . import verdicts
from .common import (GridResults, bullets, device_label, load_grid, load_grids, missing_text, not_run_reading,
                     ppl_text, provenance, reading_head)
from .verdicts import gap_text

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


def ablation_table(preset: str, keys: tuple[str, ...], paper: dict[str, float] | None = None) -> pd.DataFrame:
    """Variants of QuantGPT 2-2-8 (looked up by name in the table, ablation, seed and gamma-start grids) with their
    test PPL and, when given, the paper's."""
    runs = load_grids(preset, *ABLATION_GRIDS, "lm-gamma-init")
    rows = []
    for key in keys:
        cfg, res = runs[key]
        row = {"variant": VARIANT_NAMES.get(key, run_name(cfg)),
               "ours: test PPL": round(res["metrics"]["test_ppl"], 2) if res else "not run",
               "ours: on": device_label(res) if res else ""}
        if paper is not None:
            row["paper (GPT-2, PTB)"] = paper.get(key)
        rows.append(row)
    return pd.DataFrame(rows)


def ablation_reading(preset: str, keys: tuple[str, ...], title: str, paper: dict[str, float] | None = None,
                     reference: str = "mds-228", pairs: tuple[tuple[str, str], ...] = (),
                     band_ref: str = "the seed table") -> str:
    """An ablation table read from the committed results (Markdown): each variant's test PPL as a gap to
    ``reference`` (QuantGPT 2-2-8), inside or outside the measured seed band (``band_ref``: where the book shows
    it), beside the paper's gap where it has one; each of ``pairs`` (variant, the variant it is compared with) the
    same way; the validation curves' range over the variants at a few common steps; missing runs named."""
    runs = load_grids(preset, *ABLATION_GRIDS)
    keys = (reference, *[k for k in keys if k != reference])
    done = runs.done(keys)
    if reference not in done or len(done) < 2:
        return not_run_reading(title, preset, "lm-ablations")
    band = verdicts.seed_band(preset, runs)
    ppl = {k: r["metrics"]["test_ppl"] for k, r in done.items()}
    facts = provenance(done.values())
    head = (reading_head(title, preset, facts["devices"], f"{facts['steps']} steps each", f"code {facts['versions']}")
            + f" {VARIANT_NAMES[reference]} ends at {ppl_text(ppl[reference])} test PPL; "
            + (f"the seed band is {100 * band:.1f}% ({band_ref})." if band is not None else
               "the seed band is not measured yet, so no gap can be called outside it."))
    lines = [gap_line(k, reference, ppl, paper, band, against=False) for k in keys[1:] if k in ppl]
    lines += [gap_line(k, base, ppl, paper, band) for k, base in pairs if k in ppl and base in ppl]
    lines += curve_spans(done)
    missing = [k for k in keys if k not in done]
    if missing:
        lines.append(missing_text(missing))
    return bullets(head, lines)


def gap_line(key: str, base: str, ppl: dict[str, float], paper: dict[str, float] | None, band: float | None,
             against: bool = True) -> str:
    """One variant's gap to ``base`` in words, ours and (where it has both) the paper's. ``against``: name the
    variant against ``base``; else give its test PPL and its gap to QuantGPT."""
    name = VARIANT_NAMES.get(base, base) if against else "QuantGPT"
    text = (f"{VARIANT_NAMES.get(key, key)} against {name}: " if against else
            f"{VARIANT_NAMES.get(key, key)}: {ppl_text(ppl[key])}, ") + gap_text(ppl[key], ppl[base], name, band)
    if paper and key in paper and base in paper:
        text += f"; paper: {paper[key]} against {paper[base]}, {gap_text(paper[key], paper[base], name, None)}"
    return text + "."


def curve_spans(done: dict[str, dict]) -> list[str]:
    """The bullet on the validation curves of ``done``: their range at up to three common steps (none of them step
    0, none before a twentieth of the last), and how close they end."""
    curves = {k: {p["step"]: p["valid_ppl"] for p in r.get("curve") or []} for k, r in done.items()}
    common = sorted(set.intersection(*(set(c) for c in curves.values())) - {0})
    if not common or len(curves) < 2:
        return []
    picks = sorted({s for s in common if s >= common[-1] / 20}, key=common.index)
    picks = [picks[0], picks[len(picks) // 2], picks[-1]] if len(picks) > 3 else picks
    spans = []
    for s in picks:
        v = [c[s] for c in curves.values()]
        spans.append(f"{number_text(min(v))}-{number_text(max(v))} at step {s}")
    end = [c[picks[-1]] for c in curves.values()]
    return [f"Validation PPL of these {len(curves)} runs along the way: " + ", ".join(spans)
            + f" (at step {picks[-1]} within {100 * (max(end) / min(end) - 1):.1f}% of one another)."]


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
