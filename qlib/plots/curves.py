"""Results against a budget or a setting: a metric against bits, learning curves, PPL against negatives."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ..labels import METHOD_COLORS, method_name
from .common import log_y, method_color, off_scale


def metric_vs_bits(rows: list[dict], metric: str = "test_ppl", log: bool = True, fp_value: float | None = None,
                   clip: float | None = 20.0):
    """Fig. 1: a metric against weight bits, one line per method. ``rows``: dicts with method, w_bits, value. With
    ``fp_value`` and ``clip``, a point above ``clip`` times ``fp_value`` (a collapsed run) is drawn off-scale, an
    arrow at the top with its value, so the methods that work can be told apart."""
    if not rows:
        return None
    top = clip * fp_value if clip and fp_value else None
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for method in sorted({r["method"] for r in rows}):
        pts = sorted((r["w_bits"], r["value"]) for r in rows if r["method"] == method)
        shown = [p for p in pts if top is None or p[1] <= top]
        color = METHOD_COLORS.get(method)
        ax.plot([p[0] for p in shown], [p[1] for p in shown], marker="o", label=method_name(method), color=color)
        for x, v in (p for p in pts if top is not None and p[1] > top):
            off_scale(ax, x, v, top, method_name(method), color)
    if fp_value is not None:
        ax.axhline(fp_value, color="black", ls="--", lw=1, label="teacher")
    ax.set_xlabel("weight bits"), ax.set_ylabel(metric.replace("_", " ").replace("ppl", "PPL"))
    ax.set_xticks(sorted({r["w_bits"] for r in rows}))
    if log:
        log_y(ax)
    if top is not None:
        ax.set_ylim(top=top)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: never over a point
    fig.tight_layout()
    return fig


def learning_curves(curves: dict[str, list[tuple[int, float]]], teacher: float | None = None,
                    paper_ratio: float | None = None, title: str = "", ylabel: str = "validation PPL",
                    xlabel: str = "training tokens", logy: bool = True):
    """A validation metric (PPL by default) against training tokens or examples (log x; step 0 drawn at the left
    edge), one line per run, with the teacher's value and, when given, the paper's student/teacher ratio applied
    to our teacher."""
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    first = min((t for pts in curves.values() for t, _ in pts if t), default=1)
    for name, pts in curves.items():
        x = [t if t else first / 2 for t, _ in pts]
        ax.plot(x, [p for _, p in pts], marker="o", ms=3, label=name, color=method_color(name))
    if teacher is not None:
        ax.axhline(teacher, color="black", ls="--", lw=1, label="teacher")
        if paper_ratio is not None:
            ax.axhline(teacher * paper_ratio, color="tab:red", ls=":", lw=1,
                       label=f"paper's QuantGPT 2-2-8 ratio ({paper_ratio:.3f} x teacher)")
    ax.set_xscale("log")
    if logy:
        log_y(ax)
    ax.set_xlabel(f"{xlabel} (step 0 at the left edge)"), ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: never over a point
    fig.tight_layout()
    return fig


def negatives_plot(points: dict[str, list[tuple[int, float]]], band: float | None = None):
    """Fig. 7: test PPL against the number of negatives, with and without the memory bank; the shaded band is
    the measured seed spread around the bank's main run."""
    if not any(points.values()):
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.3))
    for name, pts in points.items():
        if pts:
            ax.plot(*zip(*sorted(pts)), marker="o", label=name)
    bank = dict(points.get("memory bank", []))
    if band is not None and bank:
        k = max(bank)
        ax.fill_between([min(bank), k], bank[k] / (1 + band), bank[k] * (1 + band), alpha=0.15, color="grey",
                        label="QuantGPT's seed band around the main run")
    ax.set_xscale("log", base=2), ax.set_xlabel("negatives K"), ax.set_ylabel("test PPL")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig
