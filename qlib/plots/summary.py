"""The intro's one figure: where each method ends at 2-2-8, relative to its teacher."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ..labels import METHOD_COLORS, method_name


def ratio_summary(rows: list[dict], clip: float = 8.0, title: str = ""):
    """Final test PPL / teacher PPL per method (``report.final_ratios``: "method", "ratio", "low", "high", "seeds"),
    one bar each, the range over seeds as an error bar where more than one seed ran; a ratio above ``clip`` (a
    collapsed run) drawn off-scale with its value; a row's "paper" (the paper's ratio), when given, as a diamond."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    names = []
    for i, r in enumerate(rows):
        color = METHOD_COLORS.get(r["method"])
        name = method_name(r["method"]) + ("" if r["seeds"] > 1 else " (1 seed)")
        if r["ratio"] > clip:
            ax.bar(i, clip, color=color, alpha=0.25, hatch="//")
            ax.text(i, clip * 0.55, f"off-scale:\n{r['ratio']:,.0f}x", ha="center", fontweight="bold",
                    bbox={"facecolor": "white", "edgecolor": color})
        else:
            err = [[r["ratio"] - r["low"]], [r["high"] - r["ratio"]]] if r["seeds"] > 1 else None
            ax.bar(i, r["ratio"], color=color, yerr=err, capsize=6)
            ax.text(i, r["ratio"] / 2, f"{r['ratio']:.2f}x", ha="center", color="white", fontweight="bold")
        if r.get("paper"):
            ax.plot(i, min(r["paper"], clip * 0.97), "D", mfc="white", mec="black", ms=8, clip_on=False,
                    label="the paper's ratio (GPT-2, 120 epochs)" if i == 0 else None)
            if r["paper"] > clip:
                ax.text(i + 0.12, clip * 0.93, f"paper: {r['paper']:.0f}x", fontsize=9)
        names.append(name)
    ax.axhline(1.0, color="black", ls="--", lw=1, label="teacher (1x)")
    ax.set_xticks(range(len(rows)), names)
    ax.set_ylim(0, clip), ax.set_ylabel("test PPL / teacher's")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.tight_layout()
    return fig
