"""Figures of the ablation chapter's contrastive-loss study: the gradient split of L_cont against L_dist over
training, and the long runs' validation curves beside the preset's own. A figure whose runs have not landed still
draws, saying so and how to run them, so the page keeps its place and the smoke build its image count."""
from __future__ import annotations

import matplotlib.pyplot as plt

from .common import log_y


def _not_run(ax, note: str) -> None:
    ax.text(0.5, 0.5, note or "not run", ha="center", va="center", wrap=True, fontsize=10, transform=ax.transAxes)
    ax.set_xticks([]), ax.set_yticks([])


def grad_share_plot(curves: dict[str, list[dict]], note: str = ""):
    """Left: |lambda dL_cont/dW| / |dL_dist/dW|; right: the cosine between the two gradients; both against
    training tokens (log x, step 0 at the left edge), one line per run. ``note``: shown when ``curves`` is empty."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    if not curves:
        _not_run(left, note)
        right.set_visible(False)
        return fig
    first = min((p["tokens"] for pts in curves.values() for p in pts if p["tokens"]), default=1)
    for name, pts in curves.items():
        x = [p["tokens"] or first / 2 for p in pts]
        left.plot(x, [p["ratio"] for p in pts], marker="o", ms=3, label=name)
        right.plot(x, [p["cosine"] for p in pts], marker="o", ms=3, label=name)
    for ax in (left, right):
        ax.set_xscale("log"), ax.set_xlabel("training tokens (step 0 at the left edge)")
        ax.tick_params(labelsize=10)
    log_y(left)
    left.axhline(1, color="grey", lw=0.8, ls=":")  # above it, L_cont's gradient is the larger of the two
    left.set_ylabel("|lambda dL_cont/dW| / |dL_dist/dW|")
    right.axhline(0, color="black", lw=0.8)
    right.set_ylabel("cosine of the two gradients")
    # below both panels: inside one, the legend hides points
    fig.legend(*left.get_legend_handles_labels(), fontsize=9, loc="lower center", ncol=min(len(curves), 3),
               frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def long_curves_plot(curves: dict[str, list[tuple[int, float]]], mark: int | None = None, note: str = ""):
    """Validation PPL against training tokens (log-log; step 0 left out, its PPL is off any useful scale): long
    runs solid, the preset's own runs of the same methods dashed, ``mark`` (the preset's budget) as a vertical
    line. ``note``: shown in the corner, naming the runs still missing."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    colors = {}  # one colour per method: a long run and the preset's run of the same method share it
    for name, pts in curves.items():
        pts = [(t, v) for t, v in pts if t]
        base = name.split(" (")[0]
        colors.setdefault(base, f"C{len(colors)}")
        ax.plot(*zip(*pts), marker="o", ms=3, ls="--" if "budget)" in name else "-", label=name, color=colors[base])
    if mark:
        ax.axvline(mark, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log"), ax.set_xlabel("training tokens"), ax.set_ylabel("validation PPL")
    log_y(ax)
    if note:
        ax.text(0.98, 0.98, note, ha="right", va="top", fontsize=9, transform=ax.transAxes, wrap=True)
    if curves:
        ax.legend(fontsize=9, loc="lower left")
    fig.tight_layout()
    return fig
