"""The benchmark's orchestration: every measurement in a process of its own, in turns, with the machine's
provenance and the idle check before each, the result written after every measurement so that a benchmark cut short
keeps what it measured. ``run_benchmark`` measures the phases; ``run_interleaved`` the contrastive loss's time cost
with both steps in one process per dtype.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..runtime import cpu_has_bf16_matrix_units, device_name, provenance, resolve_device
from .measure import check_idle, dtypes_for, in_fresh_process, matmul_peak
from .targets import COMPILED_PHASES, PHASES, median_repeat, mfu, summarize_phases


def write_result(path: Path, res: dict) -> None:
    """A result as indented JSON (its folder made if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1))


def machine(dev) -> dict:
    """The fields every result starts its machine's part with: provenance, the load average, the idle check's."""
    return {**provenance(dev), "device_name": device_name(dev), "load_avg": round(os.getloadavg()[0], 2),
            "busy": False, "others_busy_cores": {}}


def run_order(phases: tuple[str, ...], compare_compile: bool) -> list[tuple[str, bool]]:
    """The (phase, compiled) runs of one round. With ``compare_compile`` the compiled QAT step and its eager twin
    come first (a benchmark cut short by a GPU slot's limit still tells the slot whether to compile) and the other
    compiled phases last."""
    compiled_runs = [(p, True) for p in COMPILED_PHASES if p in phases] if compare_compile else []
    leading = [(p, c) for p, _ in compiled_runs[:1] for c in (False, True)]
    return leading + [(phase, False) for phase in phases if (phase, False) not in leading] + compiled_runs[1:]


def _check_request(phases: tuple[str, ...], steps: int, repeats: int) -> None:
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise ValueError(f"unknown phases {sorted(unknown)}; known: {PHASES}")
    if repeats < 1 or steps < 1:
        raise ValueError(f"steps ({steps}) and repeats ({repeats}) must be at least 1")


def run_benchmark(model: str = "tiny-llama", w_bits: int = 2, batch_size: int = 4, seq_len: int = 128,
                  steps: int = 5, warmup: int = 2, device: str = "auto", num_negatives: int = 64,
                  compare_compile: bool = False, save_to: Path | None = None, phases: tuple[str, ...] = PHASES,
                  dtypes: tuple[str, ...] | None = None, repeats: int = 1) -> dict:
    """Every phase in every dtype, each in a fresh process; figures with MFU against the measured peak. With
    ``compare_compile`` the phases of ``COMPILED_PHASES`` are measured a second time with the student compiled
    (key suffix "+compile"), so that a run's ``compile`` setting can follow what wins. With ``save_to`` the JSON is
    written after every phase ("complete": false until the end), so a benchmark cut short keeps what it measured.
    ``phases`` and ``dtypes`` measure a subset (the ratios of what was measured). With ``repeats`` > 1 every phase
    runs that many times (fresh processes, in turns); a phase's figure is its median repeat, with every repeat's
    s/iter and their spread (max / min - 1) beside it, and each ratio is also given per round."""
    _check_request(phases, steps, repeats)
    dev = resolve_device(device)
    out = {"model": model, "w_bits": w_bits, "batch_size": batch_size, "seq_len": seq_len, "steps": steps,
           "warmup": warmup, "repeats": repeats, **machine(dev), "cpu_bf16_matrix_units": cpu_has_bf16_matrix_units(),
           "peak_flops": {}, "phases": {}}
    done: dict[str, list[dict]] = {}  # every repeat of every phase
    peaks: dict[str, list[float]] = {}  # the matmul peak before every round: one measurement can come out low
    dtypes = dtypes or dtypes_for(dev)
    for dtype in dtypes:
        runs = run_order(phases, compare_compile)
        # repeats go round the phases in turn, so that a slow spell of the machine falls on every phase alike
        for rnd in range(repeats):
            peaks.setdefault(dtype, []).append(matmul_peak(dev, dtype))
            out["peak_flops"][dtype], out["peak_flops_by_round"] = max(peaks[dtype]), peaks
            for phase, compiled in runs:
                key = f"{phase}/{dtype}" + ("+compile" if compiled else "")
                check_idle(out, key if repeats == 1 else f"{key}#{rnd}")
                res = in_fresh_process("measure_phase", [model, phase, dtype, w_bits, batch_size, seq_len, steps,
                                                         warmup, device, num_negatives, compiled],
                                       f"benchmark phase {key}")
                res["mfu"] = mfu(res, out["peak_flops"])
                done.setdefault(key, []).append(res)
                out["phases"][key] = median_repeat(done[key])
                if save_to is not None:
                    write_result(save_to, {**out, "complete": False})
    summarize_phases(out, done, dtypes[0], compare_compile)
    out["complete"] = True
    if save_to is not None:
        write_result(save_to, out)
    return out


def run_interleaved(model: str = "tiny-llama", w_bits: int = 2, batch_size: int = 4, seq_len: int = 128,
                    steps: int = 12, warmup: int = 2, device: str = "auto", num_negatives: int = 64,
                    dtypes: tuple[str, ...] | None = None, save_to: Path | None = None,
                    compiled: bool = False) -> dict:
    """``interleaved_cost`` in every dtype, each in a fresh process, with the benchmark's provenance and idle check."""
    dev = resolve_device(device)
    out = {"kind": "interleaved", "compiled": compiled, "model": model, "w_bits": w_bits, "batch_size": batch_size,
           "seq_len": seq_len, "steps": steps, "warmup": warmup, **machine(dev), "dtypes": {}}
    for dtype in dtypes or dtypes_for(dev):
        check_idle(out, dtype)
        out["dtypes"][dtype] = in_fresh_process(
            "interleaved_cost", [model, dtype, w_bits, batch_size, seq_len, steps, warmup, device, num_negatives,
                                 compiled], f"interleaved measurement in {dtype}")
        if save_to is not None:
            write_result(save_to, {**out, "complete": False})
    out["complete"] = True
    if save_to is not None:
        write_result(save_to, out)
    return out
