"""What the benchmark's results say, read from a result dict alone (no torch, no measurement): the phases' names,
a phase's figure over its repeats (``median_repeat``), the ratios and sizes that complete a result
(``summarize_phases``), the speed targets (``TARGETS``) checked round by round (``target_checks``) or on an
interleaved measurement's pairs (``interleaved_checks``), and the printed table (``format_table``).
"""
from __future__ import annotations

PHASES = ("a_fp_finetune", "b_qat_dist", "c_qat_dist_cont", "d_eval_fake_quant", "d_eval_packed")

# what `--compile` also measures compiled: the step every student takes, then the fine-tuning step (so that the QAT
# step's time over the fine-tuning step's compares compiled with compiled)
COMPILED_PHASES = ("c_qat_dist_cont", "a_fp_finetune")

# each ratio of a result: (numerator phase, denominator phase, figure)
RATIOS = {"b/a time": ("b_qat_dist", "a_fp_finetune", "sec_per_iter"),
          "c/b time": ("c_qat_dist_cont", "b_qat_dist", "sec_per_iter"),
          "c/b memory": ("c_qat_dist_cont", "b_qat_dist", "peak_mem_mib"),
          "packed/fake eval time": ("d_eval_packed", "d_eval_fake_quant", "sec_per_iter")}

# The speed issue's targets (read from a benchmark's JSON, never asserted by a timed test): tokens/s of the QAT step
# with the contrastive loss in the target's own setting, that step's time over the fp fine-tuning step's, and what the
# contrastive loss adds in time and memory over L_dist alone.
TARGETS = {"cpu": {"setting": (4, 128), "tokens_per_s": 200, "qat_over_fp_time": 1.5},
           "cuda": {"setting": (32, 512), "tokens_per_s": 150_000},
           "any": {"cont_over_dist_time": 1.05, "cont_over_dist_memory": 1.02}}


def median_repeat(reps: list[dict]) -> dict:
    """A phase's figure over its repeats: the repeat with the median s/iter (the lower one of an even count), its
    peak memory the largest seen, and every repeat's s/iter with their spread."""
    ranked = sorted(reps, key=lambda r: r["sec_per_iter"])
    secs = [r["sec_per_iter"] for r in reps]
    return {**ranked[(len(ranked) - 1) // 2], "peak_mem_mib": max(r["peak_mem_mib"] for r in reps),
            "repeat_sec_per_iter": secs, "spread": max(secs) / min(secs) - 1}


def mfu(phase: dict, peak_flops: dict) -> float:
    """Model FLOPs per token x tokens/s over the matmul peak measured in the phase's dtype."""
    return phase["flops_per_token"] * phase["tokens_per_s"] / peak_flops[phase["dtype"]]


def summarize_phases(out: dict, done: dict[str, list[dict]], first: str, compare_compile: bool) -> None:
    """Complete a benchmark result ``out`` once every phase is measured (``done``: every repeat of every phase):
    MFU against the highest peak measured, the student's size figures, the ratios of the phases measured in dtype
    ``first``, each ratio per round when there are repeats, and the compiled/eager ratios."""
    for v in out["phases"].values():  # MFU against the highest peak measured, known only now
        v["mfu"] = mfu(v, out["peak_flops"])
    p = {k.split("/")[0]: v for k, v in out["phases"].items() if k.endswith("/" + first)}
    if "d_eval_fake_quant" in p:
        out["size_mb"] = p["d_eval_fake_quant"]["size_mb"]
    if "d_eval_packed" in p:
        out["packed_file_mib"] = p["d_eval_packed"]["packed_file_mib"]
    out["ratios"] = {name: p[num][key] / max(p[den][key], 1e-9) for name, (num, den, key) in RATIOS.items()
                     if num in p and den in p}
    if out["repeats"] > 1:  # each ratio within each round: how far the machine's drift moves it
        r = {k.split("/")[0]: v for k, v in done.items() if k.endswith("/" + first)}
        out["ratios_by_repeat"] = {name: [a[key] / max(b[key], 1e-9) for a, b in zip(r[num], r[den])]
                                   for name, (num, den, key) in RATIOS.items() if num in r and den in r}
    for phase in COMPILED_PHASES if compare_compile else ():
        if phase in p and f"{phase}/{first}+compile" in out["phases"]:
            compiled = out["phases"][f"{phase}/{first}+compile"]["sec_per_iter"]
            out["ratios"][f"{phase} compiled/eager time"] = compiled / p[phase]["sec_per_iter"]


def interleaved_checks(res: dict) -> list[dict]:
    """The contrastive loss's time target (``TARGETS["any"]``) read from an interleaved measurement: met when the
    median pair's ratio is within it, and whether its interquartile range is too."""
    target = TARGETS["any"]["cont_over_dist_time"]
    rows = []
    for dtype, v in res["dtypes"].items():
        q1, q3 = v["quartiles"]
        if v["median_ratio"] <= target:
            verdict = "met, its quartiles too" if q3 <= target else "met, but not its upper quartile"
        else:
            verdict = "missed, its quartiles too" if q1 > target else "missed, but not its lower quartile"
        rows.append({"dtype": dtype, "check": "L_cont: time over L_dist alone (interleaved, one process)",
                     "target": f"<= {target:g}", "median": v["median_ratio"], "per round": [q1, q3],
                     "verdict": verdict})
    return rows


def _rounds(v: dict) -> list[float]:
    """A phase's s/iter in every round (one figure when it ran once)."""
    return v.get("repeat_sec_per_iter") or [v["sec_per_iter"]]


def _check(dtype: str, what: str, target: float, median: float, per_round: list[float], at_most: bool = True) -> dict:
    """One row of ``target_checks``: met in every round, in some (how many), or in none."""
    met = [x <= target if at_most else x >= target for x in per_round]
    verdict = ("met" if all(met) else "missed" if not any(met) else f"met in {sum(met)} of {len(met)} rounds") \
        + (" in every round" if len(met) > 1 and (all(met) or not any(met)) else "")
    return {"dtype": dtype, "check": what, "target": ("<= " if at_most else ">= ") + f"{target:g}",
            "median": median, "per round": per_round, "verdict": verdict}


def _step_checks(res: dict, t: dict, dtype: str, ph: dict, suffix: str) -> list[dict]:
    """The QAT + L_cont step's checks (eager, or compiled with ``suffix`` "+compile"): tokens/s in the target's own
    setting, and its time over the fine-tuning step's."""
    c, rows = ph.get("c_qat_dist_cont" + suffix), []
    if c is None:
        return rows
    step = "QAT + L_cont step" + (", compiled" if suffix else "")
    if (res["batch_size"], res["seq_len"]) == t["setting"]:
        tokens = c["tokens_per_s"] * c["sec_per_iter"]
        rows.append(_check(dtype, f"{step}: tokens/s", t["tokens_per_s"], c["tokens_per_s"],
                           [tokens / x for x in _rounds(c)], at_most=False))
    # like with like: the compiled step over the compiled fine-tuning step where the file has it (older files
    # measured the fine-tuning step eager only, and say so)
    a_key = "a_fp_finetune" + (suffix if "a_fp_finetune" + suffix in ph else "")
    a = ph.get(a_key)
    if a is not None and "qat_over_fp_time" in t:
        over = ("compiled" if a_key.endswith("+compile") else "eager") + " fp fine-tuning step"
        rows.append(_check(dtype, f"{step}: time / {over}", t["qat_over_fp_time"],
                           c["sec_per_iter"] / a["sec_per_iter"], [x / y for x, y in zip(_rounds(c), _rounds(a))]))
    return rows


def target_checks(res: dict) -> list[dict]:
    """Each target of ``TARGETS`` checked in a benchmark result, per dtype and for the eager and compiled QAT +
    L_cont step: the median figure, the figure of every round (repeats run in turns, so round i of two phases ran
    minutes apart on the same machine) and whether the target was met in every round, in some, or in none."""
    device = "cpu" if res["device"] == "cpu" else "cuda"
    t, rows = {**TARGETS[device], **TARGETS["any"]}, []
    for dtype in res["peak_flops"]:
        ph = {k.split("/")[0] + ("+compile" if k.endswith("+compile") else ""): v
              for k, v in res["phases"].items() if k.split("/")[1].split("+")[0] == dtype}
        for suffix in ("", "+compile"):
            rows += _step_checks(res, t, dtype, ph, suffix)
        b, c = ph.get("b_qat_dist"), ph.get("c_qat_dist_cont")
        if b is not None and c is not None:
            rows.append(_check(dtype, "L_cont: time over L_dist alone (eager)", t["cont_over_dist_time"],
                               c["sec_per_iter"] / b["sec_per_iter"], [x / y for x, y in zip(_rounds(c), _rounds(b))]))
            mem = c["peak_mem_mib"] / b["peak_mem_mib"]  # the largest peak over the repeats of each
            rows.append(_check(dtype, "L_cont: peak memory over L_dist alone (eager)", t["cont_over_dist_memory"],
                               mem, [mem]))
    return rows


def format_table(res: dict) -> str:
    """A benchmark result as the printed table: the setting, the matmul peaks, one line per phase, the ratios (per
    round too) and every target check."""
    lines = [f"{res['model']}  W{res['w_bits']}  batch {res['batch_size']} x seq {res['seq_len']}  on "
             f"{res['device']} ({res['device_name']}), load average {res['load_avg']}"
             + ("  ** BUSY: not the machine's figures **" if res["busy"] else ""),
             "peak matmul: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in res["peak_flops"].items()),
             f"{'phase':<28}{'s/iter':>10}{'tokens/s':>12}{'MFU':>8}{'peak MiB':>12}{'spread':>9}{'steal':>8}"]
    for k, v in res["phases"].items():
        spread = f"{100 * v['spread']:>8.1f}%" if "spread" in v else f"{'-':>9}"
        steal = f"{100 * v['steal_frac']:>7.1f}%" if v.get("steal_frac") is not None else f"{'-':>8}"
        lines.append(f"{k:<28}{v['sec_per_iter']:>10.3f}{v['tokens_per_s']:>12.0f}{100 * v['mfu']:>7.1f}%"
                     f"{v['peak_mem_mib']:>12.0f}{spread}{steal}")
    lines.append("ratios: " + ", ".join(f"{k} = {v:.3f}" for k, v in res.get("ratios", {}).items()))
    for k, v in res.get("ratios_by_repeat", {}).items():
        lines.append(f"  {k} per round: " + ", ".join(f"{x:.3f}" for x in v))
    for r in target_checks(res):
        lines.append(f"  target {r['dtype']} {r['check']} {r['target']}: {r['median']:.3g} (rounds "
                     + ", ".join(f"{x:.3g}" for x in r["per round"]) + f"): {r['verdict']}")
    if "size_mb" in res and "packed_file_mib" in res:
        lines.append(f"size_mb = {res['size_mb']:.1f} MiB, packed file = {res['packed_file_mib']:.1f} MiB")
    return "\n".join(lines)


def format_interleaved_check(r: dict) -> str:
    """One row of ``interleaved_checks`` as printed."""
    return (f"{r['dtype']} {r['check']} {r['target']}: median {r['median']:.3f} (quartiles "
            + ", ".join(f"{x:.3f}" for x in r["per round"]) + f"): {r['verdict']}")
