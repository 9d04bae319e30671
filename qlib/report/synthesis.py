"""What several pages state, computed once: the budget against the paper's, the device the runs were made on, the
split of QuantGPT's 2-bit advantage into quantizer and loss, the ratios of the intro's figure, the TL;DR and the
one synthesis table of every claim."""
from __future__ import annotations

import json

import pandas as pd

from .. import experiments as X
from ..experiments.presets import PAPER_EPOCHS
from ..labels import method_name, ratio_text
from .common import BASELINES, load_grid, load_grids
from .contrastive import (LAMBDA_GRID, LAMBDA_RUNS, LONG_GRID, band_words, bands, change_text, long_effect,
                          long_effect_words, long_quantizer_gap, long_quantizer_words, no_long_runs)
from .lm import VARIANT_SIDE, claim_row, claims, paper_ratio, run_tokens
from .tasks import task_claims
from .verdicts import SEED_GRIDS, seed_spreads, verdict_counts

TASK_GRIDS = ("dialogue-table", "xsum-table")


# ----------------------------------------------------------------------------------------------------------------
# shared facts: the budget and the device
# ----------------------------------------------------------------------------------------------------------------


def paper_budget_tokens(dataset: str = "ptb") -> int | None:
    """The paper's training tokens per student: its epochs of ``dataset`` (120 for PTB) times one epoch at its batch
    of 32 x 512, counted by the committed ``gpu``-preset teacher run of ``lm-teacher-budget`` (its steps per epoch
    at that batch, in SmolLM2's tokens); None until that run is committed."""
    for cfg in X.runs("lm-teacher-budget", "gpu").values():
        res = X.load_result(cfg)
        if res and cfg.epochs and res.get("tokens_per_step"):
            return round(PAPER_EPOCHS[dataset] * res["steps"] / cfg.epochs) * res["tokens_per_step"]
    return None


def budget(preset: str) -> dict | None:
    """Our training tokens per 2-2-8 student in ``preset`` against the paper's (``paper_budget_tokens``): "ours",
    "paper", "share" (ours / paper) and "times" (paper / ours); None until QuantGPT 2-2-8 has run."""
    ours, paper = run_tokens(load_grid("lm-table", preset).result("mds-228")), paper_budget_tokens()
    if ours is None:
        return None
    return {"ours": ours, "paper": paper, "share": ours / paper if paper else None,
            "times": paper / ours if paper else None}


def budget_sentence(preset: str) -> str:
    """The budget in words, the one way every page says it: "204,800 training tokens per 2-bit student, 0.15% of
    the paper's 120 epochs of PTB (135,659,520 tokens: 662 times more)"."""
    b = budget(preset)
    if b is None:
        return f"no 2-bit student has run in the `{preset}` preset yet"
    text = f"{b['ours']:,} training tokens per 2-bit student"
    if b["paper"] is None:
        return text + " (the paper's budget is counted once `" + X.grid_command("lm-teacher-budget", "gpu") + "` ran)"
    return (text + f", {100 * b['share']:.2g}% of the paper's {PAPER_EPOCHS['ptb']} epochs of PTB "
            f"({b['paper']:,} tokens: {b['times']:,.0f} times more)")


def device_facts(preset: str) -> str:
    """Where the runs of ``preset``'s Table 1 were made, read from their provenance: device, cores, dtype, and what
    the committed CPU benchmarks record about AMX bf16 matrix units (the older training runs do not record it)."""
    done = load_grid("lm-table", preset).done()
    if not done:
        return f"No run of the `{preset}` preset has a result yet."
    runs = list(done.values())
    where = sorted({f"{r.get('device_name', r['device'])} ({r.get('cores', '?')} cores)" if r["device"] == "cpu"
                    else r.get("device_name", r["device"]) for r in runs})
    dtypes = sorted({r.get("dtype") or "?" for r in runs})
    text = (f"The `{preset}` preset's language-modeling runs were made on {', '.join(where)}, in "
            f"{', '.join(dtypes)}, from {min(r['date'] for r in runs)} to {max(r['date'] for r in runs)}.")
    if any(r["device"] == "cpu" for r in runs):
        text += (" Their result files name the CPU only by its architecture and do not record whether it has AMX "
                 "bf16 matrix units.")
        for b in cpu_benchmarks():
            text += (f" The CPU benchmark of {b['date']} ran on a CPU {'with' if b['cpu_bf16_matrix_units'] else 'without'}"
                     f" them.")
    return text


def cpu_benchmarks() -> list[dict]:
    """The committed CPU benchmark results that record whether their CPU has bf16 matrix units, oldest first."""
    files = [json.loads(p.read_text()) for p in sorted((X.results_dir() / "bench").glob("*.json"))]
    return sorted((b for b in files if b.get("device") == "cpu" and "cpu_bf16_matrix_units" in b),
                  key=lambda b: b.get("date", ""))[:1]


# ----------------------------------------------------------------------------------------------------------------
# the 2-bit advantage: quantizer or loss
# ----------------------------------------------------------------------------------------------------------------

DIST_ONLY = "QuantGPT, L_dist only"


def attribution_table(preset: str) -> pd.DataFrame:
    """QuantGPT's 2-2-8 advantage split: the quantizer (alpha = gamma * mean|w| per module: QuantGPT trained with
    L_dist only, as LSQ and LAQ are, against each of them), within it Eq. 7's gradient for gamma (against PACT's rule
    for it, "Ours with PACT"), and the loss (QuantGPT with L_cont against without it), each gap with the band of its
    comparison and the one verdict (``lm.claim_row``)."""
    runs = load_grids(preset, "lm-table", "lm-ablations", *SEED_GRIDS)
    spreads = seed_spreads(preset, runs)
    # QuantGPT with L_dist only keeps QuantGPT's quantizer, so its side reads QuantGPT's spread
    pairs = [("the quantizer: alpha = gamma mean|w| per module", f"{DIST_ONLY} vs {method_name(base)}",
              ("mds-228-dist-only", f"{base}-228"), ("mds", base)) for base in ("lsq", "laq")]
    # variants of QuantGPT: read as lm.claims reads them (the same quantizer: QuantGPT's own spread; PACT's rule for
    # gamma, another quantizer run with one seed: the largest measured spread)
    pairs.append(("within it: Eq. 7's gradient for gamma", f"{DIST_ONLY} vs Ours with PACT (L_dist only)",
                  ("mds-228-dist-only", "mds_pact_grad-228-dist-only"), (VARIANT_SIDE, VARIANT_SIDE)))
    pairs.append(("the loss: L_cont", f"QuantGPT vs {DIST_ONLY}", ("mds-228", "mds-228-dist-only"),
                  ("mds", "mds")))
    out = []
    for part, pair, keys, sides in pairs:
        row = claim_row(runs, spreads, "", "", keys, sides)
        a, b = (runs.metric(k) for k in keys)
        out.append({"what it isolates": part, "compared (2-2-8)": pair, "test PPL": row["ours (test PPL)"],
                    "gap": f"{100 * (1 - a / b):.1f}% lower" if a and b else "-", "band": row["band"],
                    "verdict": row["verdict"]})
    return pd.DataFrame(out)


def attribution_text(preset: str, contrastive: bool = True) -> str:
    """What ``attribution_table`` shows, in one sentence computed from it; ``contrastive``: then what L_cont's weight
    and the long runs add (``contrastive_words``; the TL;DR gives them a bullet of their own)."""
    t = attribution_table(preset)
    if "not run" in set(t["verdict"].iloc[[0, 1, 3]]):  # Eq. 7's gradient (row 2) is said once it has run
        return ("The split of QuantGPT's 2-bit advantage into quantizer and loss needs "
                f"`{X.grid_command('lm-table', preset)}` and `{X.grid_command('lm-ablations', preset)}`.")
    quant, grad, loss = t.iloc[:2], t.iloc[2], t.iloc[3]
    q_words = " and ".join(f"{g} than {p.split(' vs ')[1]}" for g, p in zip(quant["gap"], quant["compared (2-2-8)"]))
    if all(v.startswith("reproduced") for v in quant["verdict"]) and loss["verdict"] == "inside the noise":
        head = ("At this budget QuantGPT's 2-bit win comes from its quantizer (alpha = gamma * mean|w|, one gamma per "
                "module); the contrastive loss adds nothing measurable")
    else:
        head = "How QuantGPT's 2-bit advantage splits at this budget"
    grad_words = ("" if grad["verdict"] == "not run" else
                  f" Within the quantizer, QuantGPT with Eq. 7's gradient for gamma ends {grad['gap']} than with "
                  f"PACT's rule for it (\"Ours with PACT\", both L_dist only; {grad['verdict']}).")
    return (f"{head}: trained with L_dist only, as the baselines are, QuantGPT still ends {q_words} "
            f"({joined(quant['verdict'])}), while adding L_cont ends it {loss['gap']} "
            f"({loss['verdict']})." + grad_words + (f" {more}" if contrastive and (more := contrastive_words(preset))
                                                    else ""))


def contrastive_words(preset: str) -> str:
    """What raising L_cont's weight and five times the tokens did, in a sentence or two ("" before either ran)."""
    return (lambda_text(preset) + long_text(preset)).strip()


def lambda_text(preset: str) -> str:
    """What raising L_cont's weight above the paper's 0.1 did to QuantGPT's test PPL, against its seed band, as one
    sentence ("" until every larger weight has run)."""
    runs, band = load_grids(preset, LAMBDA_GRID), bands(preset)[0]
    ref = runs.metric(LAMBDA_RUNS[0.1])
    larger = {lam: runs.metric(key) for lam, key in LAMBDA_RUNS.items() if lam > 0.1}
    if ref is None or band is None or None in larger.values():
        return ""
    return " Raising L_cont's weight lambda from 0.1: " + "; ".join(
        f"lambda = {lam:g} {change_text(v / ref - 1)}, {band_words(v / ref - 1, band, direction=True)}"
        for lam, v in larger.items()) + "."


def long_text(preset: str) -> str:
    """The paired long runs' answer to whether L_cont matters with more tokens, as one sentence ("" for a preset
    without long runs)."""
    if no_long_runs(preset):
        return ""
    effect = long_effect(preset)
    if effect is None:
        return (" Whether that changes with five times the tokens is not run yet "
                f"(`{X.grid_command(LONG_GRID, preset)}`).")
    q = long_quantizer_gap(preset)
    laq = "" if q is None else f"; LAQ ends {long_quantizer_words(q)}"
    return f" At five times the tokens ({effect['tokens']:,}), {long_effect_words(effect)}{laq}."


# ----------------------------------------------------------------------------------------------------------------
# the intro's figure and TL;DR, and the synthesis table
# ----------------------------------------------------------------------------------------------------------------


def final_ratios(preset: str, bits: str = "228") -> list[dict]:
    """Test PPL over the teacher's per method at ``bits``: "method", "ratio" (the main run), "low" and "high" (the
    range over the seeds that ran), "seeds", and "paper" (the paper's ratio); the intro's figure."""
    runs = load_grids(preset, "lm-table", *SEED_GRIDS)
    teacher = runs.metric("teacher")
    out = []
    for m in ("mds", *BASELINES):
        keys = [k for k in (f"{m}-{bits}", f"{m}-{bits}-seed1", f"{m}-{bits}-seed2") if k in runs.configs]
        vals = [v / teacher for k in keys if teacher and (v := runs.metric(k)) is not None]
        if vals:
            out.append({"method": m, "ratio": vals[0], "low": min(vals), "high": max(vals), "seeds": len(vals),
                        "paper": paper_ratio(m, "-".join(bits))})
    return out


def tldr(preset: str) -> str:
    """The book's answer in a few lines of Markdown, every fact computed from the committed results."""
    lm = claims(preset).set_index("claim")["verdict"]
    ratios = {r["method"]: r["ratio"] for r in final_ratios(preset)}
    if "mds" not in ratios:
        return f"**TL;DR:** no 2-bit student has run in the `{preset}` preset yet " \
               f"(`{X.grid_command('lm-table', preset)}`)."
    tasks = [v for g in TASK_GRIDS for v in task_claims(g, preset)["verdict"]]
    return "\n".join([
        "**TL;DR**", "",
        f"- **Setup:** QuantGPT's recipe on SmolLM2-135M-Instruct (its teacher a dequantized 4-bit model fine-tuned on "
        f"PTB), {budget_sentence(preset)}.",
        f"- **2-2-8:** {two_bit_words(lm, ratios)}.",
        f"- **Why:** {attribution_text(preset, contrastive=False)}",
        *([f"- **More weight on L_cont, more tokens:** {words}"] if (words := contrastive_words(preset)) else []),
        f"- **Within 10% of the teacher at 2-2-8:** {lm[[k for k in lm.index if 'within 10%' in k][0]]}.",
        f"- **4-4-8 and 8-8-8** {low_bits_words(lm, preset)}.",
        f"- **Next-utterance and summarization** (offline stand-ins): {verdict_counts(tasks)}."])


def two_bit_words(lm: pd.Series, ratios: dict) -> str:
    """The 2-2-8 answer: each method's test PPL over the teacher's and QuantGPT's verdicts against LSQ and LAQ."""
    order = ", ".join(f"{method_name(m)} {ratio_text(ratios[m])}" for m in ("mds", "lsq", "laq") if m in ratios)
    return (f"test PPL over the teacher's: {order}; QuantGPT below LSQ and LAQ: "
            f"{joined(lm[f'At 2-2-8, QuantGPT reaches a lower PPL than {b}.'] for b in ('LSQ', 'LAQ'))}; PACT collapses "
            f"({ratio_text(ratios['pact']) if 'pact' in ratios else 'not run'})")


def low_bits_words(lm: pd.Series, preset: str) -> str:
    """The 4-4-8 and 8-8-8 answer: how many of QuantGPT's orderings against each baseline got each verdict, and at
    each width QuantGPT's, the best baseline's and the larger-gamma-start student's test PPL over the teacher's."""
    low_bits = [v for k, v in lm.items() if k.startswith(("At 4-4-8", "At 8-8-8"))]
    text = f"(QuantGPT below each baseline, gamma started at the paper's 1): {verdict_counts(low_bits)}"
    runs = load_grids(preset, "lm-table", "lm-gamma-init")
    teacher, parts = runs.metric("teacher"), []
    for bits in ("448", "888"):
        ratios = {r["method"]: r["ratio"] for r in final_ratios(preset, bits)}
        best = min((b for b in BASELINES if b in ratios), key=ratios.get, default=None)
        if "mds" not in ratios or best is None:
            continue
        words = f"{'-'.join(bits)}: QuantGPT {ratio_text(ratios['mds'])}, {method_name(best)} {ratio_text(ratios[best])}"
        late = [(cfg.gamma_init, v) for k, cfg in runs.configs.items()
                if teacher and k.startswith(f"mds-{bits}-gamma") and (v := runs.metric(k)) is not None]
        parts.append(words + "".join(f", QuantGPT started at gamma = {g:g}: {ratio_text(v / teacher)}" for g, v in late))
    return text + (f"; test PPL over the teacher's at {'; '.join(parts)}" if parts else "")


def lm_tldr(preset: str) -> str:
    """The language-modeling page's answer in three sentences, computed from the committed runs."""
    lm = claims(preset, "lm").set_index("claim")["verdict"]
    ratios = {r["method"]: r["ratio"] for r in final_ratios(preset)}
    if "mds" not in ratios:
        return f"**TL;DR:** no 2-bit student has run in the `{preset}` preset yet " \
               f"(`{X.grid_command('lm-table', preset)}`)."
    control = lm[[k for k in lm.index if k.startswith("The full-precision control")][0]]
    return (f"**TL;DR.** After {budget_sentence(preset)}: at **2-2-8**, {two_bit_words(lm, ratios)}. At **4-4-8 and "
            f"8-8-8** {low_bits_words(lm, preset)}. The full-precision control within 2% of the teacher: {control}.")


def results_tldr(preset: str) -> str:
    """The results chapter's answer in two sentences: how many claims got each verdict, and which were reproduced."""
    table = synthesis_table(preset, {})
    won = [c[0].lower() + c[1:].rstrip(".") for c, v in zip(table["claim"], table["verdict"])
           if v.startswith("reproduced")]
    return (f"**TL;DR.** Of the {len(table)} claims tested here, {verdict_counts(table['verdict'])}. "
            + (f"Reproduced: {'; '.join(won)}." if won else "None is reproduced yet."))


def joined(verdicts) -> str:
    """Two or more verdicts read together: "reproduced at 204,800 tokens, both" when they agree, else "a / b"."""
    verdicts = list(verdicts)
    if len(set(verdicts)) == 1:
        return verdicts[0] + (", both" if len(verdicts) == 2 else ", all")
    return " / ".join(verdicts)


def synthesis_table(preset: str, pages: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """Every claim the book tests, one row each: claim, paper, ours, band, verdict and a link to the page that shows
    it. ``pages``: by a claim's "where" ("lm", "ablations", "dialogue-table", "xsum-table"), the link text and the
    page's address."""
    frames = [claims(preset)] + [task_claims(g, preset) for g in TASK_GRIDS]
    rows = []
    for frame in frames:
        ours = [c for c in frame.columns if c.startswith("ours")][0]
        for r in frame.to_dict("records"):
            text, href = pages.get(r["where"], (r["where"], ""))
            rows.append({"claim": r["claim"], "paper": r["paper"], "ours": f"{r[ours]} ({ours[6:-1]})"
                         if r[ours] != "-" else "-", "verdict": r["verdict"],
                         "shown in": f'<a href="{href}">{text}</a>' if href else text})
    return pd.DataFrame(rows)


def missing_runs_line(preset: str, grid: str = "lm-table") -> str:
    """One line for the runs of ``grid`` in ``preset`` without a result: how many, and the command that runs them."""
    runs = load_grid(grid, preset)
    missing = [k for k in runs.configs if runs.result(k) is None]
    if not missing:
        return f"Every run of `{grid}` in the `{preset}` preset has a result."
    return (f"**Not run:** {len(missing)} of the {len(runs.configs)} runs of `{grid}` in the `{preset}` preset "
            f"(`{X.grid_command(grid, preset)}`).")
