"""Diagrams drawn with matplotlib: the workflow of a QuantGPT step and how negatives are chosen. Sized to be read at
page width: about 8 inches wide, text at 12 points."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

FONT = 12  # points, at a figure width the page shows at about its own size


def _box(ax, xy, text, color="whitesmoke", w=3.0, h=1.1):
    x, y = xy
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.06", fc=color, ec="black",
                                lw=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=FONT)


def _arrow(ax, a, b, color="black", style="->"):
    ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle=style, color=color, lw=1.2))


def workflow_diagram():
    """The training workflow of QuantGPT for one batch (the paper's Fig. 5), as ``qlib.train`` runs it: the same
    tokens through teacher and student, two losses, and the memory bank written after the step."""
    fig, ax = plt.subplots(figsize=(8.4, 5.0))
    ax.set_xlim(-0.1, 12.2), ax.set_ylim(-0.5, 6.3), ax.axis("off")
    _box(ax, (1.1, 3.0), "tokens\n$t_1 \\dots t_T$", w=1.7)
    _box(ax, (4.0, 5.2), "teacher\nfull precision, frozen", "lavender")
    _box(ax, (4.0, 0.8), "student: weights\nquantized (Eqs. 1, 6)", "mistyrose")
    _box(ax, (7.4, 5.2), "logits $\\to p^t$\nhead $\\to h^t$", "lavender", w=2.4)
    _box(ax, (7.4, 0.8), "logits $\\to p^s$\nhead $\\to h^s$", "mistyrose", w=2.4)
    _box(ax, (7.4, 3.0), "memory bank $q$\none row per token id", "lightyellow", w=3.2)
    _box(ax, (10.7, 4.4), "$L_{dist}$ (Eq. 4)\nmatch $p^s$ to $p^t$", "honeydew", w=2.4)
    _box(ax, (10.7, 1.6), "$L_{cont}$ (Eq. 2)\nanchor vs $h^t$", "honeydew", w=2.4)
    _arrow(ax, (1.95, 3.4), (2.6, 4.8)), _arrow(ax, (1.95, 2.6), (2.6, 1.2))
    _arrow(ax, (5.4, 5.2), (6.2, 5.2)), _arrow(ax, (5.4, 0.8), (6.2, 0.8))
    _arrow(ax, (8.6, 5.0), (9.5, 4.6)), _arrow(ax, (8.6, 1.0), (9.5, 4.2))  # p^t, p^s -> L_dist
    _arrow(ax, (8.6, 4.8), (9.5, 1.9)), _arrow(ax, (8.6, 0.7), (9.5, 1.4))  # h^t, h^s -> L_cont
    _arrow(ax, (8.8, 2.8), (9.5, 1.7))  # q_{t_i} -> the anchor
    _arrow(ax, (7.0, 1.3), (7.0, 2.5), color="darkgoldenrod")
    ax.text(6.9, 1.9, "Eq. 3,\nafter the step", fontsize=FONT - 1, color="darkgoldenrod", ha="right", va="center")
    ax.text(6.0, -0.3, "$L = L_{dist} + \\lambda L_{cont}$ (Eq. 5) trains the student's weights, "
                       "its $\\gamma$s (Eq. 7) and both heads", ha="center", fontsize=FONT)
    fig.tight_layout()
    return fig


def _negatives_panel(ax, title, kind, tokens, i):
    ax.set_xlim(-0.5, len(tokens) - 0.5), ax.set_ylim(-1.7, 1.5), ax.axis("off")
    ax.set_title(title, fontsize=FONT)
    for j, tok in enumerate(tokens):
        same = tok == tokens[i] and j != i
        color = "gold" if j == i else ("lightgrey" if same else ("lavender" if kind != "global" else "white"))
        ax.add_patch(plt.Rectangle((j - 0.45, 0.2), 0.9, 0.7, fc=color, ec="black", lw=0.6))
        ax.text(j, 0.55, tok, ha="center", va="center", fontsize=FONT - 1)
    ax.text(i, 1.1, "anchor", ha="center", fontsize=FONT - 1, color="darkgoldenrod")
    if kind == "global":
        for k, tok in enumerate(("stock", "year")):
            ax.add_patch(plt.Rectangle((k * 2.6 + 0.2, -1.4), 2.2, 0.7, fc="lightyellow", ec="black", lw=0.6))
            ax.text(k * 2.6 + 1.3, -1.05, f"q[{tok}]", ha="center", va="center", fontsize=FONT - 1)
    else:
        ax.text((len(tokens) - 1) / 2, -0.7, "K of the blue positions;\nnever the anchor's id (grey)",
                ha="center", va="center", fontsize=FONT - 1)


def negatives_diagram():
    """The negative-sampling variants of the paper's Fig. 6 / Table 4, for the anchor at position i."""
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.3))
    tokens = ["the", "cat", "sat", "on", "the", "mat"]
    i = 4  # the second "the": the first one holds the same token id and is never its negative (grey)
    titles = ("teacher (ours):\n$h^t_j$ at other positions",
              "bank: rows $q_{t_j}$\nat those positions",
              "global: bank rows of\nrandom token ids")
    for ax, title, kind in zip(axes, titles, ("teacher", "bank", "global")):
        _negatives_panel(ax, title, kind, tokens, i)
    fig.tight_layout()
    return fig
