"""Display names: one home for how the book names methods, settings and runs."""
from __future__ import annotations

from .quant import QUANTIZERS

# each quantizer says its own name and colour (``WeightQuantizer.label`` / ``.color``): a fixed colour per method,
# so that every figure of the book draws a method alike
METHOD_NAMES = {"fp": "full precision", **{m: q.label for m, q in QUANTIZERS.items()}}
METHOD_COLORS = {"teacher": "black", "control": "dimgray", **{m: q.color for m, q in QUANTIZERS.items()}}


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def run_name(cfg) -> str:
    """How a table names a run: the teacher, the full-precision control, or method and W-E-A bits (and where gamma
    started, when not at the paper's 1)."""
    if cfg.method == "fp":
        return "teacher" if cfg.resolved_loss == "lm" and not cfg.keep_layers else "full-precision control"
    start = f", gamma started at {cfg.gamma_init:g}" if cfg.gamma_init != 1.0 else ""
    return f"{method_name(cfg.method)} {cfg.label}{start}"


def number_text(v: float) -> str:
    """A PPL or similar positive value as a reader takes it in: 14.26, 113.2, 1,090, 5.3e9 (a collapsed run's
    20-digit PPL says no more than its order of magnitude)."""
    if v >= 1e7:
        mantissa, exponent = f"{v:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{v:,.0f}" if v >= 1000 else f"{v:.1f}" if v >= 100 else f"{v:.2f}"


def ratio_text(v: float) -> str:
    """A ratio as a reader takes it in: 1.09x, 76.42x, 1,090x, 3.7e8x."""
    return f"{number_text(v)}x" if v >= 1000 else f"{v:,.0f}x" if v >= 100 else f"{v:.2f}x"
