"""What is missing: the command of every run (or after-run evaluation) of a grid without a committed result."""
from __future__ import annotations

from .. import experiments as X
from .common import load_grid

# per after-run evaluation: how to find it without running it, and the flag of ``python -m qlib grid`` that makes it
AFTER = {"transfer": (lambda c: X.transfer_eval(c, "wikitext2", run_missing=False), "--transfer wikitext2"),
         "samples": (lambda c: X.text_samples(c, run_missing=False), "--samples"),
         "figures": (lambda c: X.figure_data(c, run_missing=False), "--figures"),
         "step0": (lambda c: X.step0_eval(c, run_missing=False), "--step0")}


def not_run(preset: str, *grids: str, after: str | None = None) -> None:
    """Print the command of every run of ``grids`` without a committed result. ``after``: "transfer", "samples"
    or "figures" lists the 2-bit runs and the teacher without that after-run evaluation; "step0" every student
    without its step-0 evaluation."""
    check, *flag = AFTER[after] if after is not None else (None,)
    missing, found = [], {}  # found: by config, so a run two grids share (their teacher) is looked up once
    for name in grids:
        runs = load_grid(name, preset)
        for key, cfg in runs.configs.items():
            if not (after in (None, "step0") or key == "teacher" or key.endswith("-228")):
                continue
            if repr(cfg) not in found:
                found[repr(cfg)] = (runs.result(key) if check is None else check(cfg)) is not None
            if not found[repr(cfg)]:
                missing.append("  " + X.grid_command(name, preset, key, *flag))
    print("every run here has a committed result" if not missing else
          f"not run ({len(missing)}):\n" + "\n".join(missing))
