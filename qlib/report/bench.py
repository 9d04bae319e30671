"""The Performance page's tables and reading, from the committed benchmark files (``results/bench/*.json``, written by
``qlib.bench``): nothing here measures."""
from __future__ import annotations

import json

import pandas as pd

from .. import experiments as X
from ..paper import PAPER_TABLE5

CPU_BENCH = "smollm2-135m-w2-b4-s128-cpu-compile"  # the CPU benchmark the book reads: repeated, eager and compiled


def paper_cost() -> tuple[float, float]:
    """The paper's cost of the contrastive loss: its step time and peak memory over the L_dist step's."""
    d, c = PAPER_TABLE5["dist"], PAPER_TABLE5["dist+cont"]
    return c["sec_per_iter"] / d["sec_per_iter"], c["memory_mb"] / d["memory_mb"]


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


def step_ratios() -> list[dict]:
    """Per device and dtype with all three training steps measured: "device", "dtype", "batch" ("4 x 128"),
    "complete" (False: the benchmark was cut short), "qat" (a QAT step with L_cont over a fine-tuning step, in time),
    "cont_time" and "cont_memory" (the L_cont step over the L_dist step)."""
    by, bench = {}, {}
    for b, d, step, e, _ in page_rows():
        by.setdefault((device_words(b), d), {})[step] = e
        bench.setdefault((device_words(b), d), b)
    out = []
    for (device, dtype), steps in by.items():
        fp, dist, cont = (steps.get(STEP_NAMES[p]) for p in ("a_fp_finetune", "b_qat_dist", "c_qat_dist_cont"))
        if fp and cont and dist:
            b = bench[(device, dtype)]
            out.append({"device": device, "dtype": dtype, "batch": f"{b['batch_size']} x {b['seq_len']}",
                        "complete": b.get("complete", True), "qat": cont["sec_per_iter"] / fp["sec_per_iter"],
                        "cont_time": cont["sec_per_iter"] / dist["sec_per_iter"],
                        "cont_memory": cont["peak_mem_mib"] / dist["peak_mem_mib"]})
    return out


def performance_tldr() -> str:
    """The page's answer first: what a QAT step with L_cont costs over fine-tuning on each device and dtype measured,
    and what L_cont's step costs over L_dist's, beside the paper's cost of L_cont."""
    ratios = step_ratios()
    if not ratios:
        return "**TL;DR:** not measured yet (`python -m qlib.bench --model smollm2-135m`)."
    by_device = {}
    for r in ratios:
        by_device.setdefault(r["device"], []).append(r)
    def notes(rs):  # what differs from the CPU benchmark's full measurement at batch 4 x 128
        said = [f"batch {b}" for b in dict.fromkeys(r["batch"] for r in rs) if b != "4 x 128"]
        said += [] if all(r["complete"] for r in rs) else ["cut short"]
        return f" ({', '.join(said)})" if said else ""

    qat = "; ".join(f"on the {device}, " + ", ".join(f"{r['qat']:.1f}x in {r['dtype']}" for r in rs) + notes(rs)
                    for device, rs in by_device.items())
    low, high = min(r["cont_time"] for r in ratios), max(r["cont_time"] for r in ratios)
    cost = f"{low:.2f}x" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}x to {high:.2f}x"
    return (f"**TL;DR.** A QAT step with L_cont of SmolLM2-135M-Instruct at 2-2-8 (batch 4 x 128 unless noted) "
            f"takes, against a full-precision fine-tuning step's time: {qat}. The L_cont step takes {cost} the L_dist step's time"
            + (", no cost these measurements resolve" if low < 1 else "")
            + f" (the paper: {paper_cost()[0]:.2f}x on V100s). Table P.1 gives every step kind; the reading under the "
            "tables adds memory and the project's speed targets.")


def performance_reading() -> str:
    """One paragraph on the performance table: what QAT costs over fine-tuning and what L_cont costs over L_dist
    on each device (beside the paper's), and how many of the CPU benchmark's speed targets held in every round."""
    from ..bench import TARGETS, target_checks

    parts = [f"on the {r['device']} in {r['dtype']}, a QAT step with L_cont takes {r['qat']:.1f}x the fine-tuning "
             f"step's time, and L_cont {r['cont_time']:.2f}x the L_dist step's time and {r['cont_memory']:.2f}x its "
             "memory" for r in step_ratios()]
    if not parts:
        return "Not run yet: `python -m qlib.bench --model smollm2-135m`."
    paper_time, paper_mem = paper_cost()
    path = X.results_dir() / "bench" / f"{CPU_BENCH}.json"
    checks = target_checks(json.loads(path.read_text())) if path.is_file() else []
    # one round measured, or every round: not "met in 2 of 3 rounds"
    met = sum(r["verdict"] in ("met", "met in every round") for r in checks)
    return ("Per step, from the table: " + "; ".join(parts) + f" (the paper: {paper_time:.2f}x and "
            f"{paper_mem:.2f}x). A ratio below 1 is the spread between processes, not a saving: L_cont only adds "
            "work, so its cost lies below what these measurements resolve. MFU counts the model's FLOPs per token "
            "against the matrix peak measured on the same machine in the same dtype; QAT's fake quantization, "
            "distillation and optimizer work are not in that count, which is why its MFU is lower."
            + (f" The CPU benchmark also checks the project's own speed targets (`qlib.bench.targets.TARGETS`: at "
               f"least {TARGETS['cpu']['tokens_per_s']} tokens/s for the QAT step with L_cont at batch 4 x 128, at "
               f"most {TARGETS['cpu']['qat_over_fp_time']}x the fine-tuning step's time, and L_cont adding at most "
               f"{100 * (TARGETS['any']['cont_over_dist_time'] - 1):.0f}% time and "
               f"{100 * (TARGETS['any']['cont_over_dist_memory'] - 1):.0f}% memory, per dtype, eager and compiled): "
               f"{met} of its {len(checks)} checks were met in every round it measured." if checks else ""))
