"""The XTC chapter's tables and readings: ternary and binary students with and without layer reduction, on a GLUE
task (``xtc-<task>``) and on the generative model beside QuantGPT (``lm-xtc``)."""
from __future__ import annotations

import pandas as pd

from .. import experiments as X
from ..data import GLUE_TASKS
from ..labels import number_text, ratio_text
from ..paper import PAPER_XTC_MNLI
from . import verdicts
from .common import bullets, load_grid, load_grids, missing_text, not_run_reading, provenance, reading_head
from .verdicts import SEED_GRIDS, gap_text

XTC_METRIC = {"cola": "valid_mcc", "stsb": "valid_pearson", "mrpc": "valid_f1"}  # GLUE's metric per task


METRIC_LABELS = {"valid_accuracy": "dev accuracy (%)", "valid_mcc": "dev MCC", "valid_pearson": "dev Pearson r",
                 "valid_f1": "dev F1"}  # GLUE's dev split


def metric_label(metric: str) -> str:
    """A result's metric key as a table header: "valid_accuracy" -> "dev accuracy (%)"."""
    return METRIC_LABELS.get(metric, metric)


def points_words(points: str) -> str:
    """A signed change in points as a verb: "-8.3" -> "lose 8.3 points", "+0.5" -> "gain 0.5 points"."""
    return f"lose {points[1:]} points" if points.startswith("-") else f"gain {points.lstrip('+')} points"


def paper_xtc_table() -> pd.DataFrame:
    return pd.DataFrame(PAPER_XTC_MNLI)


def xtc_table(preset: str, task: str = "sst2") -> pd.DataFrame:
    """Our XTC runs: layers, bits, size and compression against the teacher, and the task metric."""
    metric = XTC_METRIC.get(task, "valid_accuracy")
    runs = load_grid(f"xtc-{task}", preset)
    teacher = runs.result("teacher")
    names = {"teacher": "teacher (fine-tuned)"}
    rows = []
    for key, (cfg, res) in runs.items():
        depth = len(cfg.keep_layers) or None
        kind = "layer reduction only" if cfg.method == "fp" else \
            f"{'binary' if cfg.method == 'bwn' else 'ternary'} weights" + (" + layer reduction" if depth else "")
        rows.append({"variant": names.get(key, kind), "layers": depth or "all",
                     "W-E-A": "32-32-32" if cfg.method == "fp" else cfg.label,
                     "size (MiB)": round(res["size_mb"], 2) if res else None,
                     "compression": f"{teacher['size_mb'] / res['size_mb']:.1f}x" if res and teacher else None,
                     metric_label(metric): round(res["metrics"][metric], 2) if res else "not run"})
    return pd.DataFrame(rows)


def lm_xtc_table(preset: str) -> pd.DataFrame:
    """XTC's recipe on the generative model beside QuantGPT 2-2-8 (equal bits), with sizes and compression."""
    table, xtc = load_grid("lm-table", preset), load_grid("lm-xtc", preset)
    teacher = table.result("teacher")
    rows = []
    for key, (cfg, res) in {"mds-228": table["mds-228"], **xtc}.items():
        kind = {"fp": "layer reduction only (fp32)", "twn": f"XTC ternary {cfg.label}",
                "bwn": f"XTC binary {cfg.label}"}.get(cfg.method, f"QuantGPT {cfg.label}")
        depth = f" + layer reduction ({len(cfg.keep_layers)} layers)" if cfg.keep_layers and cfg.method != "fp" else ""
        rows.append({"variant": kind + depth, "ours: test PPL": round(res["metrics"]["test_ppl"], 2) if res else
                     "not run", "size (MiB)": round(res["size_mb"], 1) if res else None,
                     "compression": f"{teacher['size_mb'] / res['size_mb']:.1f}x" if res and teacher else None})
    return pd.DataFrame(rows)


def lm_xtc_reading(preset: str, title: str = "the XTC-recipe table", band_source: str = "the ablation chapter") -> str:
    """The table of XTC's recipe on SmolLM2 (``title``) read from the committed results (Markdown): each comparison
    as a relative gap, inside or outside the seed band measured in ``band_source``; runs not committed yet are
    named, and their sentences left out."""
    lm, xtc = load_grids(preset, *SEED_GRIDS), load_grid("lm-xtc", preset)
    res = {"teacher": lm.result("teacher"), "mds-228": lm.result("mds-228"), **{k: xtc.result(k) for k in xtc}}
    missing = [k for k, r in res.items() if r is None]
    if "teacher" in missing or len(missing) == len(res) - 1:
        return not_run_reading(title, preset, "lm-xtc")
    band = verdicts.seed_band(preset, lm)
    done = [r for k, r in res.items() if r and k != "teacher"]
    facts = provenance(done)
    head = (reading_head(title, preset, f"{facts['devices']} {facts['dtypes']}",
                         f"{facts['steps']} steps of {done[0]['tokens_per_step']:,} tokens",
                         f"runs of {facts['dates']}")
            + " One seed each, read against "
            + (f"the {100 * band:.1f}% seed band of {band_source}." if band is not None else
               f"no seed band yet ({band_source} measures it), so no gap is called inside or outside it."))
    lines = lm_xtc_lines(res, xtc.configs, band)
    if missing:
        lines.append(missing_text(missing))
    return bullets(head, lines)


def lm_xtc_lines(res: dict[str, dict | None], configs: dict, band: float | None) -> list[str]:
    """The bullets of ``lm_xtc_reading``: one per comparison whose runs have all landed."""
    ppl = {k: r["metrics"]["test_ppl"] for k, r in res.items() if r}
    of_teacher = {k: ratio_text(v / ppl["teacher"]) for k, v in ppl.items()}
    smaller = {k: f"{res['teacher']['size_mb'] / r['size_mb']:.1f}x" for k, r in res.items() if r}
    have = lambda *keys: all(k in ppl for k in keys)  # noqa: E731
    gap = lambda k, ref, what: gap_text(ppl[k], ppl[ref], what, band)  # noqa: E731
    lines = []
    if have("twn-228-xtc", "mds-228"):
        start = {k: res[k]["curve"][0]["valid_ppl"] for k in ("twn-228-xtc", "mds-228") if res[k]["curve"]}
        lines.append(
            f"**Ternary** weights with XTC's recipe (TWN's threshold, one-stage distillation from step 0) end at "
            f"{ppl['twn-228-xtc']:.2f} against QuantGPT's {ppl['mds-228']:.2f} at the same 2-2-8 and size "
            f"({smaller['twn-228-xtc']} smaller than the teacher): {gap('twn-228-xtc', 'mds-228', 'QuantGPT')}."
            + (f" Before any update their validation PPL is {number_text(start['twn-228-xtc'])} (ternary) and "
               f"{number_text(start['mds-228'])} (QuantGPT)." if len(start) == 2 else ""))
    if have("bwn-118-xtc", "twn-228-xtc", "mds-228"):
        lines.append(
            f"**Binary** weights (1-1-8, {smaller['bwn-118-xtc']} smaller) end at {ppl['bwn-118-xtc']:.2f}, "
            f"{of_teacher['bwn-118-xtc']} the teacher: {gap('bwn-118-xtc', 'twn-228-xtc', 'ternary')} and "
            f"{gap('bwn-118-xtc', 'mds-228', 'QuantGPT 2-2-8')}.")
    if have("xtc-15L", "twn-228-xtc"):
        lines.append(
            f"**Layer reduction** ({len(configs['xtc-15L'].keep_layers)} of the teacher's layers) in full precision "
            f"ends at {ppl['xtc-15L']:.2f}, {of_teacher['xtc-15L']} the teacher, for {smaller['xtc-15L']} "
            f"compression; ternary weights at full depth end at {of_teacher['twn-228-xtc']} the teacher for "
            f"{smaller['twn-228-xtc']}.")
    if have("twn-228-xtc-15L", "xtc-15L"):
        lines.append(
            f"**Ternary weights on the reduced student** (XTC's second step, started from the full-precision reduced "
            f"student) end at {ppl['twn-228-xtc-15L']:.2f} for {smaller['twn-228-xtc-15L']} compression: "
            f"{gap('twn-228-xtc-15L', 'xtc-15L', 'that student')}.")
    if have("bwn-118-xtc-15L", "xtc-15L", "twn-228-xtc-15L"):
        lines.append(
            f"**Binary weights on the reduced student** ({smaller['bwn-118-xtc-15L']} smaller than the teacher) end "
            f"at {ppl['bwn-118-xtc-15L']:.2f}, {of_teacher['bwn-118-xtc-15L']} the teacher: "
            f"{gap('bwn-118-xtc-15L', 'xtc-15L', 'the full-precision reduced student')} and "
            f"{gap('bwn-118-xtc-15L', 'twn-228-xtc-15L', 'its ternary counterpart')}.")
    return lines


# ----------------------------------------------------------------------------------------------------------------
# compact tables and the chapter's answer first
# ----------------------------------------------------------------------------------------------------------------


def xtc_gaps(preset: str, task: str = "sst2") -> pd.DataFrame:
    """The XTC table's comparisons in one row each: what is changed, the metric before and after, the change in
    points and the compression after it. One seed per student: gaps, not verdicts."""
    metric = XTC_METRIC.get(task, "valid_accuracy")
    runs = load_grid(f"xtc-{task}", preset)
    t = runs.result("teacher")
    first = {}
    for k, c in runs.configs.items():
        if k != "teacher":
            first.setdefault((c.method, bool(c.keep_layers)), runs.result(k))
    pairs = [("ternary weights, full depth", t, first.get(("twn", False))),
             ("binary weights, full depth", t, first.get(("bwn", False))),
             ("half the layers, full precision", t, first.get(("fp", True))),
             ("half the layers, binary", first.get(("bwn", False)), first.get(("bwn", True))),
             ("half the layers, ternary", first.get(("twn", False)), first.get(("twn", True)))]
    rows = [{"change": what, "before": f"{a['metrics'][metric]:.1f}", "after": f"{b['metrics'][metric]:.1f}",
             "points": f"{b['metrics'][metric] - a['metrics'][metric]:+.1f}",
             "compression after": f"{t['size_mb'] / b['size_mb']:.1f}x"}
            for what, a, b in pairs if t and a and b]
    return pd.DataFrame(rows or [{"change": "not run: " + X.grid_command(f"xtc-{task}", preset)}])


def lm_xtc_gaps(preset: str) -> pd.DataFrame:
    """XTC's recipe on SmolLM2 in one row per comparison: test PPL of both sides, the relative change and whether
    it lies beyond the largest measured seed band (one seed each)."""
    lm, xtc = load_grids(preset, *SEED_GRIDS), load_grid("lm-xtc", preset)
    ppl = {k: v for k, v in {"mds-228": lm.metric("mds-228"), **{k: xtc.metric(k) for k in xtc}}.items() if v}
    band = verdicts.seed_band(preset, lm)
    reduced = next(k for k in xtc if k.startswith("xtc-"))  # the full-precision reduced student ("xtc-15L")
    pairs = [("ternary (XTC) against QuantGPT, 2-2-8", "twn-228-xtc", "mds-228"),
             ("binary against ternary", "bwn-118-xtc", "twn-228-xtc"),
             ("ternary on the reduced student against it in full precision", f"twn-228-{reduced}", reduced),
             ("binary on the reduced student against it in full precision", f"bwn-118-{reduced}", reduced)]
    rows = []
    for what, a, b in pairs:
        if a in ppl and b in ppl:
            rel = ppl[a] / ppl[b] - 1
            rows.append({"comparison": what, "test PPL": f"{ppl[a]:.2f} vs {ppl[b]:.2f}", "change": f"{100 * rel:+.1f}%",
                         "seed band": "no band yet" if band is None else
                         "inside" if abs(rel) <= band else "beyond"})
        else:
            rows.append({"comparison": what, "test PPL": "not run: " + X.grid_command("lm-xtc", preset)})
    return pd.DataFrame(rows)


def xtc_tldr(preset: str, task: str = "sst2") -> str:
    """The chapter's answer first (Markdown bullets), from the two compact tables."""
    cls, lm = xtc_gaps(preset, task), lm_xtc_gaps(preset).set_index("comparison")
    lines = []
    if "points" in cls:
        row, runs = cls.set_index("change"), load_grid(f"xtc-{task}", preset)
        examples = " / ".join(f"{n:,}" for n in sorted({r["steps"] * runs.configs[k].batch_size
                                                        for k, r in runs.done().items() if k != "teacher"}))
        lines.append(f"On {GLUE_TASKS[task][0]} (MiniLM teacher; {examples} training examples per student, one seed "
                     f"each, so no run-to-run band), binary weights at full depth "
                     f"{points_words(row.loc['binary weights, full depth', 'points'])}, ternary weights "
                     f"{points_words(row.loc['ternary weights, full depth', 'points'])}; halving a binary student's "
                     f"depth changes it by {row.loc['half the layers, binary', 'points']} points.")
    first = lm.iloc[0]
    if "change" in lm and isinstance(first.get("change"), str):
        where = ("no seed band measured yet" if first["seed band"] == "no band yet" else
                 f"{first['seed band']} the largest measured seed band")
        rel = float(first["change"].rstrip("%"))
        lines.append(f"On SmolLM2 at 2-2-8, XTC's ternary student's test PPL is {abs(rel):.1f}% "
                     f"{'higher' if rel > 0 else 'lower'} than QuantGPT's ({where}).")
    return "\n".join(f"- {x}" for x in lines) or f"- Not run yet: `{X.grid_command(f'xtc-{task}', preset)}`."
