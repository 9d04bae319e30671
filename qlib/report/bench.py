"""The benchmark tables and reading, from the committed benchmark files (``results/bench/*.json``, written by
``qlib.bench``): nothing here measures."""
from __future__ import annotations

import json

import pandas as pd

from .. import experiments as X
from ..paper import PAPER_TABLE5

CPU_BENCH = "smollm2-135m-w2-b4-s128-cpu-compile"  # the CPU benchmark the book reads: repeated, eager and compiled
PHASE_NAMES = {"a_fp_finetune": "full-precision fine-tuning", "b_qat_dist": "QAT with $\\mathcal{L}_{dist}$",
               "c_qat_dist_cont": "QAT with $\\mathcal{L}_{dist} + \\lambda\\mathcal{L}_{cont}$"}
SAME_SETTING = ("model", "w_bits", "batch_size", "seq_len", "device")  # an interleaved file measures this setting


def bench_setting(b: dict, dtype: str) -> str:
    """The setting column of a benchmark file's rows: model, bits, batch, device, dtype and how idle the machine was."""
    others = b.get("others_busy_cores") or {}
    # how idle the machine was: other work's cores measured before each phase (older files: the load average)
    idle = f"others used <= {max(others.values()):.2f} cores" if others and None not in others.values() else \
        f"load {b.get('load_avg', '?')}"
    where = "CPU" if b["device"] == "cpu" else b.get("device_name", b["device"]).replace("NVIDIA ", "")
    cut = "" if b.get("complete", True) else " (cut short before every phase ran)"
    return (f"{b['model']} W{b['w_bits']}, {b['batch_size']} x {b['seq_len']}, {where} {dtype}, {idle}"
            + (" (BUSY)" if b["busy"] else "") + cut)


def bench_files(kind: str = "phases") -> list[dict]:
    """The committed benchmark results of one kind: "phases" (``bench.run_benchmark``) or "interleaved"
    (``bench.run_interleaved``)."""
    files = [json.loads(p.read_text()) for p in sorted((X.results_dir() / "bench").glob("*.json"))]
    return [b for b in files if b.get("kind", "phases") == kind]


def bench_table() -> pd.DataFrame:
    """Every committed benchmark result (results/bench/*.json) with the paper's Table 5 figures beside it."""
    rows = []
    for b in bench_files():
        for phase, v in b["phases"].items():
            rows.append({"setting": bench_setting(b, v.get("dtype", "")),
                         "phase": phase, "s/iter": round(v["sec_per_iter"], 3),
                         "tokens/s": round(v["tokens_per_s"]), "MFU (%)": round(100 * v["mfu"], 1),
                         "peak MiB": round(v["peak_mem_mib"]),
                         # older files measured each phase once: no spread to show
                         "spread over repeats (%)": round(100 * v["spread"], 1) if "spread" in v else "one run"})
    d, c = PAPER_TABLE5["dist"], PAPER_TABLE5["dist+cont"]
    rows.append({"setting": "paper (GPT-2 small, V100)", "phase": "L_dist -> L_dist + L_cont",
                 "s/iter": f"{d['sec_per_iter']} -> {c['sec_per_iter']}",
                 "peak MiB": f"{d['memory_mb']} -> {c['memory_mb']} (MB)"})
    if len(rows) == 1:
        rows.insert(0, {"setting": "ours", "phase": "not run: python -m qlib.bench --model smollm2-135m"})
    return pd.DataFrame(rows)


def bench_targets_table() -> pd.DataFrame:
    """The speed targets (``bench.TARGETS``) checked in every committed benchmark file (``bench.target_checks``):
    the median figure, each round's figure and whether the target held in every round, in some or in none; an
    interleaved measurement (``bench.interleaved_checks``) gives the quartiles of its pairs instead of rounds."""
    from ..bench import interleaved_checks, target_checks

    checked = [(b, r, "") for b in bench_files() for r in target_checks(b)]
    checked += [(b, r, "quartiles of the pairs: ") for b in bench_files("interleaved") for r in interleaved_checks(b)]
    rows = [{"setting": bench_setting(b, r["dtype"]), "check": r["check"], "target": r["target"],
             "median": f"{r['median']:.3g}", "per round": what + ", ".join(f"{x:.3g}" for x in r["per round"]),
             "verdict": r["verdict"]} for b, r, what in checked]
    return pd.DataFrame(rows or [{"setting": "not run: python -m qlib.bench --model smollm2-135m --repeats 3"}])


def bench_command(b: dict) -> str:
    """The command that re-measures a benchmark file (its setting, steps, repeats, phases, dtypes, compile)."""
    from ..bench import PHASES

    phases = [p for p in PHASES if any(k.startswith(p + "/") for k in b["phases"])]
    dtypes = list(dict.fromkeys(k.split("/")[1].split("+")[0] for k in b["phases"]))
    return (f"python -m qlib.bench --model {b['model']} --w-bits {b['w_bits']} --batch-size {b['batch_size']} "
            f"--seq-len {b['seq_len']} --steps {b['steps']} --repeats {b.get('repeats', 1)} "
            f"--phases {' '.join(phases)} --dtypes {' '.join(dtypes)}"
            + (" --compile" if any(k.endswith("+compile") for k in b["phases"]) else ""))


def bench_reading(name: str = CPU_BENCH, title: str = "the benchmark tables", table: str = "the benchmark table",
                  targets: str = "the targets table") -> str:
    """The benchmark tables (``title``: ``table``, the figures, and ``targets``, the speed targets) read from one
    committed benchmark file (Markdown): where and how it was measured, each step's tokens/s eager and compiled,
    every speed target round by round, what compiling and bf16 buy, and the contrastive loss's cost beside the
    paper's (and, where one was made, its interleaved measurement)."""
    path = X.results_dir() / "bench" / f"{name}.json"
    if not path.is_file():
        return (f"**Reading {title}:** not run yet (`python -m qlib.bench --model smollm2-135m "
                f"--steps 15 --repeats 3 --phases a_fp_finetune b_qat_dist c_qat_dist_cont --compile --out {path}`).")
    b = json.loads(path.read_text())
    spreads = [v["spread"] for v in b["phases"].values() if "spread" in v]
    lines = [bench_head(b, name, title), f"Tokens/s ({' / '.join(b['peak_flops'])}): " + "; ".join(phase_figures(b))
             + "." + (f" The repeats of a phase spread by {100 * min(spreads):.0f}-{100 * max(spreads):.0f}% "
                      f"({table}), so {targets} reads every target round by round and calls it met only where it "
                      "held in every round." if spreads else "")]
    items = target_lines(b) + speedup_lines(b) + cont_cost_lines(b) + interleaved_lines(b)
    return "\n\n".join(lines) + "\n\n" + "\n".join(f"- {x}" for x in items)


def bench_head(b: dict, name: str, title: str) -> str:
    """The reading's first paragraph: the file, when, with which code, on what machine and how idle, the command
    that re-measures it, and how each figure was taken."""
    others = [v for v in b["others_busy_cores"].values() if v is not None]
    steal = [v["steal_frac"] for v in b["phases"].values() if v.get("steal_frac") is not None]
    return (f"**Reading {title}** (computed from `results/bench/{name}.json`, measured on {b['date']} "
            f"with code {b['code_version']} on {b['cores']} CPU cores "
            + ("with AMX bf16 matrix units" if b["cpu_bf16_matrix_units"] else "without bf16 matrix units")
            + f"; load average {b['load_avg']} at its start"
            + (f", other work at most {max(others):.2f} cores before any phase" if others else "")
            + (f", the hypervisor's steal at most {100 * max(steal):.1f}%" if steal else "")
            + ("; **BUSY: these are not the machine's figures**" if b["busy"] else "")
            + f"; `{bench_command(b)}`). Each phase ran {b.get('repeats', 1)} times in turns, in its own process, "
            f"{b['steps']} timed steps after {b['warmup']} warm-up steps; a figure is the median repeat.")


def tokens_per_s(b: dict, phase: str, dtype: str, compiled: bool = False) -> float | None:
    v = b["phases"].get(f"{phase}/{dtype}" + ("+compile" if compiled else ""))
    return None if v is None else v["tokens_per_s"]


def phase_figures(b: dict) -> list[str]:
    """Each phase's tokens/s in every dtype of the file, eager and compiled, where measured."""
    def per_dtype(phase, compiled=False):
        got = [tokens_per_s(b, phase, d, compiled) for d in b["peak_flops"]]
        return None if None in got else " / ".join(f"{x:,.0f}" for x in got)

    figures = []
    for phase, label in PHASE_NAMES.items():
        eager, comp = per_dtype(phase), per_dtype(phase, True)
        if eager or comp:
            figures.append(f"{label} {eager or 'not measured'} eager" + (f" and {comp} compiled" if comp else ""))
    return figures


def target_lines(b: dict) -> list[str]:
    """Every speed target of the file (``bench.target_checks``): its median, the rounds' range and the verdict."""
    from ..bench import target_checks

    lines = []
    for r in target_checks(b):
        rounds = r["per round"]
        span = f", rounds {min(rounds):.3g}-{max(rounds):.3g}" if len(rounds) > 1 else ""
        lines.append(f"{r['dtype']}, {r['check']}: {r['median']:.3g}{span} against {r['target']}: "
                     f"**{r['verdict']}**")
    return lines


def speedup_lines(b: dict) -> list[str]:
    """What compiling buys (compiled over eager step time) and what the second dtype buys (eager tokens/s)."""
    ph, dtypes, lines = b["phases"], list(b["peak_flops"]), []
    ratios = []
    for d in dtypes:
        for phase in PHASE_NAMES:
            e, c = ph.get(f"{phase}/{d}"), ph.get(f"{phase}/{d}+compile")
            if e and c:
                ratios.append(f"{PHASE_NAMES[phase]} in {d} {c['sec_per_iter'] / e['sec_per_iter']:.2f}x")
    if ratios:
        lines.append("Compiled layer by layer (`modules.compile_layers`), a step takes this share of its eager "
                     "time: " + ", ".join(ratios) + ".")
    if len(dtypes) > 1:
        tps = lambda p, d: tokens_per_s(b, p, d)  # noqa: E731
        gains = [f"{PHASE_NAMES[p]} {tps(p, dtypes[1]) / tps(p, dtypes[0]):.2f}x" for p in PHASE_NAMES
                 if tps(p, dtypes[0]) and tps(p, dtypes[1])]
        if gains:
            lines.append(f"{dtypes[1]} against {dtypes[0]}, eager, in tokens/s: " + ", ".join(gains) + ".")
    return lines


def paper_cost() -> tuple[float, float]:
    """The paper's cost of the contrastive loss: its step time and peak memory over the L_dist step's."""
    d, c = PAPER_TABLE5["dist"], PAPER_TABLE5["dist+cont"]
    return c["sec_per_iter"] / d["sec_per_iter"], c["memory_mb"] / d["memory_mb"]


def cont_cost_lines(b: dict) -> list[str]:
    """The contrastive loss's cost per dtype, round by round, beside the paper's; a caution where a round says it
    costs nothing."""
    paper_time, paper_mem = paper_cost()
    lines, below_one = [], False
    for d in b["peak_flops"]:
        c, dist = b["phases"].get(f"c_qat_dist_cont/{d}"), b["phases"].get(f"b_qat_dist/{d}")
        if c and dist:
            rounds = [x / y for x, y in zip(c.get("repeat_sec_per_iter") or [c["sec_per_iter"]],
                                            dist.get("repeat_sec_per_iter") or [dist["sec_per_iter"]])]
            below_one |= min(rounds) < 1 or c["peak_mem_mib"] < dist["peak_mem_mib"]
            lines.append(f"The contrastive loss in {d}: " + ", ".join(f"{x:.2f}x" for x in rounds)
                         + " the $\\mathcal{L}_{dist}$ step's time round by round and "
                         f"{c['peak_mem_mib'] / dist['peak_mem_mib']:.3f}x its peak memory (the paper: "
                         f"{paper_time:.2f}x and {paper_mem:.3f}x).")
    if below_one:
        lines.append("A ratio below 1 is not the contrastive loss's cost (the loss only adds work): it is how far "
                     "two processes' steps differ on this machine, so the loss's own cost lies below what this "
                     "benchmark resolves.")
    return lines


def interleaved_lines(b: dict) -> list[str]:
    """Every interleaved measurement of the file's setting (eager and compiled): the contrastive loss's step time
    over the L_dist step's, timed in alternation in one process."""
    from ..bench import TARGETS, interleaved_checks

    lines = []
    for i in [i for i in bench_files("interleaved") if all(i[k] == b[k] for k in SAME_SETTING)]:
        how = "compiled" if i.get("compiled") else "eager"
        command = "python -m qlib.bench --interleave" + (" --compile" if i.get("compiled") else "")
        parts = [f"{r['dtype']} {r['median']:.3f}x (quartiles {r['per round'][0]:.3f}-{r['per round'][1]:.3f}; "
                 f"**{r['verdict']}**)" for r in interleaved_checks(i)]
        lines.append(f"Timed in alternation in one process ({i['steps']} pairs of steps per dtype, {i['date']}, "
                     f"code {i['code_version']}, {how}, load average {i['load_avg']}"
                     + (", **BUSY**" if i["busy"] else "") + f"; `{command}`), the contrastive loss takes "
                     + ", ".join(parts) + " the $\\mathcal{L}_{dist}$ step's time (target: at most "
                     f"{TARGETS['any']['cont_over_dist_time']:g}x; the paper: {paper_cost()[0]:.2f}x).")
    return lines


# ----------------------------------------------------------------------------------------------------------------
# the Performance page: one row per device, dtype and step kind, the paper's Table 5 beside it
# ----------------------------------------------------------------------------------------------------------------

STEP_NAMES = {"a_fp_finetune": "full-precision fine-tuning", "b_qat_dist": "QAT, L_dist",
              "c_qat_dist_cont": "QAT, L_dist + L_cont", "d_eval_fake_quant": "evaluation"}
# the files the page reads, most trusted first: a step kind missing from one (the repeated CPU file has no
# evaluation) is read from the next of the same device; the GPU slot's longer measurement before its shorter one
PAGE_BENCHES = (CPU_BENCH, "smollm2-135m-w2-b4-s128-cpu", "gpu-slot", "smollm2-135m-w2-b32-s512-cuda")


def device_words(b: dict) -> str:
    """Where a benchmark ran, in words: "2-core x86-64 CPU with AMX" or the GPU's name."""
    if b["device"] != "cpu":
        return b.get("device_name", b["device"])
    return f"{b['cores']}-core x86-64 CPU" + (" with AMX matrix units" if b.get("cpu_bf16_matrix_units") else "")


def page_rows() -> list[tuple[dict, str, str, dict, dict | None]]:
    """(file, setting, step kind, eager figures, compiled figures) for every device, dtype and step kind, each
    from the first of ``PAGE_BENCHES`` that measured it."""
    seen, rows = set(), []
    for name in PAGE_BENCHES:
        path = X.results_dir() / "bench" / f"{name}.json"
        if not path.is_file():
            continue
        b = json.loads(path.read_text())
        for dtype in b["peak_flops"]:
            for phase, step in STEP_NAMES.items():
                eager = b["phases"].get(f"{phase}/{dtype}")
                key = (device_words(b), dtype, phase)
                if eager and key not in seen:
                    seen.add(key)
                    rows.append((b, dtype, step, eager, b["phases"].get(f"{phase}/{dtype}+compile")))
    devices, steps = list(dict.fromkeys(device_words(r[0]) for r in rows)), list(STEP_NAMES.values())
    return sorted(rows, key=lambda r: (devices.index(device_words(r[0])), r[1] != "fp32", steps.index(r[2])))


def performance_table() -> pd.DataFrame:
    """Tokens/s (eager, and compiled where measured), peak memory and MFU per device, dtype and step kind."""
    rows = [{"device and dtype": f"{device_words(b)}, {'bf16 autocast' if d == 'bf16' else d}",
             "batch x sequence": f"{b['batch_size']} x {b['seq_len']}", "step": step,
             "tokens/s": f"{e['tokens_per_s']:,.0f}",
             "tokens/s compiled": f"{c['tokens_per_s']:,.0f}" if c else "-",
             "peak memory (GiB)": f"{e['peak_mem_mib'] / 1024:.1f}", "MFU (%)": f"{100 * e['mfu']:.1f}",
             "measured": b["date"] + ("" if b.get("complete", True) else f", cut short ({b['steps']} steps)")}
            for b, d, step, e, c in page_rows()]
    return pd.DataFrame(rows or [{"device and dtype": "not run: python -m qlib.bench --model smollm2-135m"}])


def paper_table5() -> pd.DataFrame:
    """The paper's Table 5 (GPT-2 small on V100s): time per step and memory with and without L_cont."""
    return pd.DataFrame([{"step": STEP_NAMES[p], "s/step": v["sec_per_iter"], "memory (MB)": f"{v['memory_mb']:,}",
                          "PTB PPL": v["ptb_ppl"]} for p, v in (("b_qat_dist", PAPER_TABLE5["dist"]),
                                                                ("c_qat_dist_cont", PAPER_TABLE5["dist+cont"]))])


def performance_reading() -> str:
    """One paragraph on the performance table: what QAT costs over fine-tuning and what L_cont costs over L_dist
    on each device (beside the paper's), and how many of the CPU benchmark's speed targets held in every round."""
    from ..bench import target_checks

    by = {}
    for b, d, step, e, _ in page_rows():
        by.setdefault((device_words(b), d), {})[step] = e
    parts = []
    for (device, dtype), steps in by.items():
        fp, dist, cont = (steps.get(STEP_NAMES[p]) for p in ("a_fp_finetune", "b_qat_dist", "c_qat_dist_cont"))
        if fp and cont and dist:
            parts.append(f"on the {device} in {dtype}, a QAT step with L_cont takes "
                         f"{cont['sec_per_iter'] / fp['sec_per_iter']:.1f}x the fine-tuning step's time, and L_cont "
                         f"{cont['sec_per_iter'] / dist['sec_per_iter']:.2f}x the L_dist step's time and "
                         f"{cont['peak_mem_mib'] / dist['peak_mem_mib']:.2f}x its memory")
    if not parts:
        return "Not run yet: `python -m qlib.bench --model smollm2-135m`."
    paper_time, paper_mem = paper_cost()
    path = X.results_dir() / "bench" / f"{CPU_BENCH}.json"
    checks = target_checks(json.loads(path.read_text())) if path.is_file() else []
    met = sum(r["verdict"].startswith("met") for r in checks)
    return ("Per step, from the table: " + "; ".join(parts) + f" (the paper: {paper_time:.2f}x and "
            f"{paper_mem:.2f}x). A ratio below 1 is the spread between processes, not a saving: L_cont only adds "
            "work, so its cost lies below what these measurements resolve. MFU counts the model's FLOPs per token "
            "against the matrix peak measured on the same machine in the same dtype; QAT's fake quantization, "
            "distillation and optimizer work are not in that count, which is why its MFU is lower."
            + (f" Speed targets of the CPU benchmark met in every round: {met} of {len(checks)}." if checks else ""))
