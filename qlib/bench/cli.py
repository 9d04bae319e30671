"""Benchmark: throughput, MFU and peak memory of (a) a full-precision fine-tuning step, (b) a QAT step with L_dist
only, (c) a QAT step with L_dist + lambda * L_cont, (d) evaluation forwards of the fake-quantized model and of the
model rebuilt from its packed export.

``python -m qlib.bench --model smollm2-135m --w-bits 2 --batch-size 4 --seq-len 128`` measures every phase in a
process of its own (so that one phase's memory and caches never count for another), warm-up steps excluded, in each
compute dtype the device offers (fp32 and bf16 autocast side by side on CPU; bf16 on CUDA), and prints a table with
tokens/s, MFU (model FLOPs per token x tokens/s / the device's own measured matmul peak in that dtype) and true peak
memory (CUDA: max allocated; CPU: the peak resident set of the phase's fresh process). It records the load average
and the cores, and warns loudly (and marks the JSON ``"busy": true``) when other work shares the machine: figures
taken then are not the machine's. A phase's s/iter is its median step; ``--repeats N`` measures every phase N times
(in turns) and gives the spread between repeats (the matmul peak is measured before every round and the highest
kept), and each phase records the share of its cores the hypervisor gave to other guests ("steal"), which no load
average inside a virtual machine shows. ``target_checks`` reads the speed targets (``TARGETS``) from a result round
by round, and the printed table ends with them. The paper's Table 5 compares c with b: 0.61 -> 0.67 s/iter,
14700 -> 14839 MB.

``--interleave`` measures what separate processes cannot resolve on a machine whose speed drifts: the time the
contrastive loss adds, with the b and c steps built side by side in one process and timed in alternation
(``interleaved_cost``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments import results_dir
from ..runtime import resolve_device
from .measure import DTYPE, profile_phase
from .runner import run_benchmark, run_interleaved
from .targets import PHASES, format_interleaved_check, format_table, interleaved_checks


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m qlib.bench", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--w-bits", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=1,
                   help="measure every phase this many times (fresh processes, in turns): median and spread")
    p.add_argument("--num-negatives", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="JSON file to write (default: results/bench/<setting>.json)")
    p.add_argument("--profile", default=None, choices=PHASES,
                   help="instead of the benchmark: profile this phase (operators and the library's functions)")
    p.add_argument("--dtype", default="fp32", choices=tuple(DTYPE), help="the dtype of --profile")
    p.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES, help="measure only these phases")
    p.add_argument("--dtypes", nargs="+", default=None, choices=tuple(DTYPE),
                   help="measure only these dtypes (default: fp32 and bf16 on CPU, bf16 on CUDA)")
    p.add_argument("--compile", action="store_true",
                   help="also measure the QAT step (L_dist + L_cont) and, last, the fine-tuning step with the "
                        "student compiled (torch.compile)")
    p.add_argument("--interleave", action="store_true",
                   help="instead of the benchmark: time the L_dist and L_dist + L_cont steps in alternation in one "
                        "process per dtype (the contrastive loss's time cost, free of the machine's drift; with "
                        "--compile both steps compiled)")
    return p


def _interleave(a: argparse.Namespace, setting: str) -> None:
    path = Path(a.out) if a.out else \
        results_dir() / "bench" / f"{setting}-interleaved{'-compile' if a.compile else ''}.json"
    res = run_interleaved(a.model, a.w_bits, a.batch_size, a.seq_len, a.steps, a.warmup, a.device,
                          a.num_negatives, tuple(a.dtypes) if a.dtypes else None, save_to=path, compiled=a.compile)
    for r in interleaved_checks(res):
        print(format_interleaved_check(r))
    print(f"wrote {path}")


def _benchmark(a: argparse.Namespace, setting: str) -> None:
    path = Path(a.out) if a.out else results_dir() / "bench" / f"{setting}.json"
    res = run_benchmark(a.model, a.w_bits, a.batch_size, a.seq_len, a.steps, a.warmup, a.device, a.num_negatives,
                        a.compile, save_to=path, phases=tuple(a.phases), dtypes=tuple(a.dtypes) if a.dtypes else None,
                        repeats=a.repeats)
    print(format_table(res))
    print(f"wrote {path}")


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if a.profile:
        print(profile_phase(a.model, a.profile, a.dtype, a.w_bits, a.batch_size, a.seq_len, a.steps, a.device,
                            a.num_negatives))
        return 0
    setting = f"{a.model}-w{a.w_bits}-b{a.batch_size}-s{a.seq_len}-{resolve_device(a.device).type}"
    (_interleave if a.interleave else _benchmark)(a, setting)
    return 0

