"""What every figure shares: log axes labelled in plain numbers, a grid of panels, a method's colour."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
from matplotlib import ticker

from ..labels import METHOD_COLORS, method_name

# one style for every figure, set once: text a reader can read at page width (a 7-inch figure shrinks to about
# 0.9x in the book's column)
plt.rcParams.update({"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "xtick.labelsize": 10,
                     "ytick.labelsize": 10, "legend.fontsize": 10, "figure.dpi": 100})


class PlainLogFormatter(ticker.LogFormatter):
    """Log-axis labels as plain numbers up to 10,000 (14, 1,000) instead of 1.4 x 10^1; powers of ten above it
    (a collapsed student's PPL of 10^19 stays short)."""

    def _num_to_string(self, x, vmin, vmax):
        if x > 10_000:
            exponent = math.log10(x)
            return f"$10^{{{round(exponent)}}}$" if abs(exponent - round(exponent)) < 1e-9 else f"{x:.0e}"
        return f"{x:,.0f}" if x >= 1 else f"{x:g}"


def log_y(ax) -> None:
    """A log y axis labelled in plain numbers, its minor ticks too where it spans less than a few decades (a PPL
    curve between 14 and 22 gets labels at all)."""
    ax.set_yscale("log")
    fmt = PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4))
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(fmt)


def columns(n: int, size: float = 3.0):
    """A grid of at most three panels a row (readable at page width)."""
    rows, cols = (n + 2) // 3, min(n, 3)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    axes = list(axes.flat)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def off_scale(ax, x: float, value: float, top: float, label: str, color=None) -> None:
    """Mark a point above the axis' top (a collapsed run) with an arrow at the top edge and its value, so that the
    axis can stay on the runs that can be told apart."""
    ax.annotate(f"{label}: {value:,.0f}" if value < 1e7 else f"{label}: {value:.1e}", xy=(x, top), xytext=(4, -28),
                textcoords="offset points", ha="left", fontsize=10, color=color,
                arrowprops={"arrowstyle": "->", "color": color or "black"})


def method_color(name: str):
    for key, color in METHOD_COLORS.items():
        if name.lower().startswith(key) or name.startswith(method_name(key)):
            return color
    return "control" in name and METHOD_COLORS["control"] or None
