"""The benchmark (``python -m qlib.bench``; its command line and what it measures: ``qlib.bench.cli``).

- ``targets``: what a result says, read from its dict alone (phases' names, median repeat, ratios, the speed targets
  and their checks, the printed table); needs no torch, so a result file can be read anywhere.
- ``measure``: the measurements (a phase's step built and timed or profiled, the interleaved measurement, the
  matmul peak, FLOPs per token, the idle check) and ``in_fresh_process``, which runs one in a process of its own.
- ``runner``: the orchestration (``run_benchmark``, ``run_interleaved``): each measurement in a fresh process, in
  turns, with provenance, the result written after each.
- ``cli``: the argparse command line (``main``).

The names of ``targets`` are imported here at once; those of the other modules (which import torch) on first use,
so that ``from qlib.bench import target_checks`` never imports torch.
"""
from __future__ import annotations

from .targets import (COMPILED_PHASES, PHASES, RATIOS, TARGETS, format_interleaved_check, format_table,
                      interleaved_checks, median_repeat, mfu, summarize_phases, target_checks)

# the names of the modules that need torch, imported on first access (PEP 562)
_MEASURE = ("DTYPE", "BUSY_CORES", "check_idle", "dtypes_for", "flops_per_token", "in_fresh_process",
            "interleaved_cost", "make_step", "matmul_peak", "measure_phase", "profile_phase")
_RUNNER = ("machine", "run_benchmark", "run_interleaved", "run_order", "write_result")
_CLI = ("build_parser", "main")

__all__ = ["COMPILED_PHASES", "PHASES", "RATIOS", "TARGETS", "format_interleaved_check", "format_table",
           "interleaved_checks", "median_repeat", "mfu", "summarize_phases", "target_checks",
           *_MEASURE, *_RUNNER, *_CLI]


def __getattr__(name: str):
    if name in _MEASURE:
        from . import measure as module
    elif name in _RUNNER:
        from . import runner as module
    elif name in _CLI:
        from . import cli as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
