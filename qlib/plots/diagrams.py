"""Diagrams drawn with matplotlib: the workflow of a QuantGPT step and how negatives are chosen."""
from __future__ import annotations

import matplotlib.pyplot as plt


def _box(ax, xy, text, color="whitesmoke", w=2.3, h=0.8, fontsize=8):
    from matplotlib.patches import FancyBboxPatch

    x, y = xy
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", fc=color, ec="black",
                                lw=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, a, b, text="", color="black"):
    ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="->", color=color, lw=1))
    if text:
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.12, text, ha="center", fontsize=7, color=color)


def workflow_diagram():
    """The training workflow of QuantGPT (the paper's Fig. 5), as `qlib.train` runs it for one batch."""
    fig, ax = plt.subplots(figsize=(8.5, 3.6))
    ax.set_xlim(0, 12), ax.set_ylim(0, 5), ax.axis("off")
    _box(ax, (1.3, 2.5), "token ids\n$t_1 \\dots t_T$")
    _box(ax, (4.3, 4.0), "teacher\n(full precision, frozen)", "lavender")
    _box(ax, (4.3, 1.0), "student\n(quantized: Eq. 1 / 6)", "mistyrose")
    _box(ax, (7.6, 4.0), "teacher logits $p^t$;\nprojected $h^t$", "lavender")
    _box(ax, (7.6, 1.0), "student logits $p^s$;\nprojected $h^s$", "mistyrose")
    _box(ax, (7.6, 2.5), "memory bank $q$\n(one row per token id)", "lightyellow")
    _box(ax, (10.6, 3.3), "$L_{dist}$: soft CE\n($p^t$, $p^s$) (Eq. 4)", "honeydew")
    _box(ax, (10.6, 1.7), "$L_{cont}$: anchor $q_{t_i}$,\npositive $h^t_i$,\nnegatives $h^t_j$ (Eq. 2)",
         "honeydew", h=1.0)
    _arrow(ax, (2.45, 2.8), (3.15, 3.8)), _arrow(ax, (2.45, 2.2), (3.15, 1.2))
    _arrow(ax, (5.45, 4.0), (6.45, 4.0)), _arrow(ax, (5.45, 1.0), (6.45, 1.0))
    _arrow(ax, (8.75, 4.0), (9.45, 3.4)), _arrow(ax, (8.75, 1.0), (9.45, 3.1))
    _arrow(ax, (8.75, 3.8), (9.45, 1.9)), _arrow(ax, (8.75, 2.5), (9.45, 1.8))
    _arrow(ax, (7.6, 1.45), (7.6, 2.05), color="darkgoldenrod")
    ax.text(7.7, 1.75, "Eq. 3, after the step", fontsize=7, color="darkgoldenrod", va="center")
    ax.text(6.0, 0.1, "L = L_dist + 0.1 L_cont (Eq. 5): the gradient reaches the student's weights and its "
                      "clipping factors (Eq. 7), not the teacher or the bank", ha="center", fontsize=7)
    fig.tight_layout()
    return fig


def negatives_diagram():
    """The negative-sampling variants of the paper's Fig. 6 / Table 4, for the anchor at position i."""
    fig, axes = plt.subplots(1, 3, figsize=(9.0, 2.8))
    tokens = ["the", "cat", "sat", "on", "the", "mat"]
    i = 4  # the second "the": the first one holds the same token id and is never its negative (grey)
    titles = ("teacher negatives (ours):\n$h^t_j$ at other positions of\nthe same sequence",
              "bank negatives: rows $q_{t_j}$\nof the tokens at those positions\n(written rows only)",
              "global: bank rows of random\ntoken ids already written")
    for ax, title, kind in zip(axes, titles, ("teacher", "bank", "global")):
        ax.set_xlim(-0.5, 5.5), ax.set_ylim(-1.6, 1.4), ax.axis("off"), ax.set_title(title, fontsize=8)
        for j, tok in enumerate(tokens):
            same = tok == tokens[i] and j != i
            color = "gold" if j == i else ("lightgrey" if same else ("lavender" if kind != "global" else "white"))
            ax.add_patch(plt.Rectangle((j - 0.4, 0.2), 0.8, 0.6, fc=color, ec="black", lw=0.6))
            ax.text(j, 0.5, tok, ha="center", va="center", fontsize=7)
        ax.text(i, 1.05, "anchor", ha="center", fontsize=7, color="darkgoldenrod")
        if kind == "global":
            for k, tok in enumerate(("stock", "said", "year")):
                ax.add_patch(plt.Rectangle((k * 1.7 + 0.3, -1.2), 1.2, 0.5, fc="lightyellow", ec="black", lw=0.6))
                ax.text(k * 1.7 + 0.9, -0.95, f"q[{tok}]", ha="center", va="center", fontsize=7)
        else:
            ax.text(2.5, -0.5, "K positions drawn among the others (blue);\nnever one with the anchor's id (grey)",
                    ha="center", fontsize=7)
    fig.tight_layout()
    return fig
