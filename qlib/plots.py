"""Figures of the book. Each function returns a matplotlib Figure; the notebooks only call them.

No backend is forced here: in a notebook the inline backend shows every figure a cell makes (forcing Agg would
leave the book without figures); headless scripts get Agg by matplotlib's own choice.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
from matplotlib import ticker
import numpy as np
import torch

from .labels import METHOD_COLORS, method_name
from .modules import layer_index
from .quant import make_quantizer



def quantizer_grid(w: torch.Tensor, bits: int = 2,
                   methods=("minmax", "pact", "pact_clip_grid", "lsq", "laq", "mds", "twn", "bwn")):
    """Each quantizer at its initialisation against the real weights ``w``: three panels a row."""
    w = w.flatten()
    order = w.argsort()
    fig, axes = _columns(len(methods), size=2.6)
    for ax, method in zip(axes, methods):
        b = {"twn": 2, "bwn": 1}.get(method, bits)
        q = make_quantizer(method, b)
        with torch.no_grad():
            wq = q(w)
        ax.plot(w[order].numpy(), wq[order].numpy(), lw=1.5)
        ax.plot(w[order].numpy(), w[order].numpy(), lw=0.6, color="grey", ls="--")
        ax.set_title(f"{method_name(method)}\n{b}-bit, {wq.unique().numel()} values", fontsize=9)
        ax.set_xlabel("w")
    axes[0].set_ylabel("quantized w")
    fig.tight_layout()
    return fig


def gamma_gradient(curves: dict):
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    a1.plot(curves["gamma"], curves["loss"], color="black")
    a1.set_xlabel(r"$\gamma$"), a1.set_ylabel(r"$\frac{1}{2}\|w_q - w\|^2$"), a1.set_title("reconstruction error")
    a2.plot(curves["gamma"], curves["mds"], label="Eq. 7 (inside and outside the range)")
    a2.plot(curves["gamma"], curves["mds_pact_grad"], label="PACT rule (outside only)", ls="--")
    a2.axhline(0, color="grey", lw=0.5)
    a2.set_xlabel(r"$\gamma$"), a2.set_ylabel(r"$\partial L / \partial \gamma$"), a2.set_title("gradient")
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


class _PlainLogFormatter(ticker.LogFormatter):
    """Log-axis labels as plain numbers up to 10,000 (14, 1,000) instead of 1.4 x 10^1; powers of ten above it
    (a collapsed student's PPL of 10^19 stays short)."""

    def _num_to_string(self, x, vmin, vmax):
        if x > 10_000:
            exponent = math.log10(x)
            return f"$10^{{{round(exponent)}}}$" if abs(exponent - round(exponent)) < 1e-9 else f"{x:.0e}"
        return f"{x:,.0f}" if x >= 1 else f"{x:g}"


def _log_y(ax) -> None:
    """A log y axis labelled in plain numbers, its minor ticks too where it spans less than a few decades (a PPL
    curve between 14 and 22 gets labels at all)."""
    ax.set_yscale("log")
    fmt = _PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4))
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(fmt)


def metric_vs_bits(rows: list[dict], metric: str = "test_ppl", log: bool = True, fp_value: float | None = None):
    """Fig. 1: a metric against weight bits, one line per method. ``rows``: dicts with method, w_bits, value."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for method in sorted({r["method"] for r in rows}):
        pts = sorted((r["w_bits"], r["value"]) for r in rows if r["method"] == method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method_name(method),
                color=METHOD_COLORS.get(method))
    if fp_value is not None:
        ax.axhline(fp_value, color="black", ls="--", lw=1, label="teacher")
    ax.set_xlabel("weight bits"), ax.set_ylabel(metric.replace("_", " "))
    ax.set_xticks(sorted({r["w_bits"] for r in rows}))
    if log:
        _log_y(ax)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: never over a point
    fig.tight_layout()
    return fig


def _columns(n: int, size: float = 3.0):
    """A grid of at most three panels a row (readable at page width)."""
    rows, cols = (n + 2) // 3, min(n, 3)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    axes = list(axes.flat)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def embedding_maps(data: dict[str, dict]):
    """Fig. 2: t-SNE maps of the embeddings of the most frequent tokens, one panel a model, all on one scale."""
    if not data:
        return None
    coords = {name: np.asarray(d["tsne"]) for name, d in data.items()}
    spread = {name: d["embedding_mean_cos"] for name, d in data.items()}
    fig, axes = _columns(len(coords))
    lim = max(np.abs(c).max() for c in coords.values()) * 1.05
    for ax, (name, c) in zip(axes, coords.items()):
        ax.scatter(c[:, 0], c[:, 1], s=4, alpha=0.7)
        title = name + (f"\nmean cos {spread[name]:.2f}" if spread else "")
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim), ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def similarity_maps(data: dict[str, dict]):
    """Fig. 3: token-token cosine similarity of the last hidden states on one sentence, one panel a model."""
    if not data:
        return None
    fig, axes = _columns(len(data))
    for ax, (name, d) in zip(axes, data.items()):
        im = ax.imshow(np.asarray(d["token_similarity"]), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(name, fontsize=9), ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=[a for a in axes if a.get_visible()], shrink=0.8)
    return fig


def weight_distribution(data: dict[str, dict], reference: str = "teacher"):
    """Fig. 4: per module (the paper's two: attention output projection and second FFN matrix), the density of the
    ``reference`` model's weights (``analysis.weight_histogram``) with the grid range each student's quantizer uses
    for it (PACT's learned clip included when it has run); outliers beyond the axis are noted in the title."""
    if reference not in data:
        return None
    modules = list(data[reference]["modules"])
    fig, axes = plt.subplots(1, len(modules), figsize=(4.2 * len(modules) + 1.6, 3.2), squeeze=False)
    for ax, module in zip(axes[0], modules):
        hist = data[reference]["modules"][module]["weight_hist"]
        clips = {name: (d["modules"][module]["clip"]["neg"], d["modules"][module]["clip"]["pos"])
                 for name, d in data.items() if d["modules"].get(module, {}).get("clip")}
        edges, density = np.asarray(hist["edges"]), np.asarray(hist["density"])
        ax.stairs(density, edges, fill=True, color="lightsteelblue", label=f"{reference}'s weights")
        for name, (lo, hi) in clips.items():
            color = _color(name)
            ax.axvline(lo, color=color, ls="--", label=name), ax.axvline(hi, color=color, ls="--")
        lim = max([float(np.abs(edges).max())] + [max(abs(a), abs(b)) for a, b in clips.values()])
        ax.set_xlim(-1.1 * lim, 1.1 * lim), ax.set_xlabel("weight"), ax.set_ylabel("density")
        ax.set_title(f"{module.removeprefix('model.')}\n{100 * hist['outside']:.2f}% beyond the axis, "
                     f"max |w| {hist['max_abs']:.2f}", fontsize=8)
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def gammas(gamma: dict[str, float] | None, title: str = "learned scaling gamma per module"):
    """Fig. 8: learned gamma of every module, as a (module kind x layer) map centred on the initial value 1;
    modules outside the layers (the word embedding: mean over its rows) are listed in the title."""
    if not gamma:
        return None
    cells, outside = {}, {}
    for name, g in gamma.items():
        where = layer_index(name)
        if where:
            cells[(where[1], where[0])] = g
        else:
            outside[name] = g
    kinds = list(dict.fromkeys(k for k, _ in cells))
    layers = sorted({i for _, i in cells})
    grid = np.full((len(kinds), len(layers)), np.nan)
    for (kind, layer), g in cells.items():
        grid[kinds.index(kind), layers.index(layer)] = g
    dev = max(float(np.nanmax(np.abs(grid - 1.0))) if cells else 0.0, 1e-3)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.25 * len(layers) + 2), 0.35 * len(kinds) + 1.6))
    im = ax.imshow(grid, cmap="RdBu_r", vmin=1 - dev, vmax=1 + dev, aspect="auto")
    ax.set_yticks(range(len(kinds)), kinds, fontsize=7)
    ax.set_xticks(range(len(layers)), layers, fontsize=6)
    ax.set_xlabel("layer")
    extra = ", ".join(f"{n}: {g:.3f}" for n, g in outside.items())
    ax.set_title(title + (f"\n{extra}" if extra else ""), fontsize=9)
    fig.colorbar(im, ax=ax, label=r"$\gamma$")
    fig.tight_layout()
    return fig


def _color(name: str):
    for key, color in METHOD_COLORS.items():
        if name.lower().startswith(key) or name.startswith(method_name(key)):
            return color
    return "control" in name and METHOD_COLORS["control"] or None


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
        ax.plot(x, [p for _, p in pts], marker="o", ms=3, label=name, color=_color(name))
    if teacher is not None:
        ax.axhline(teacher, color="black", ls="--", lw=1, label="teacher")
        if paper_ratio is not None:
            ax.axhline(teacher * paper_ratio, color="tab:red", ls=":", lw=1,
                       label=f"paper's QuantGPT 2-2-8 ratio ({paper_ratio:.3f} x teacher)")
    ax.set_xscale("log")
    if logy:
        _log_y(ax)
    ax.set_xlabel(f"{xlabel} (step 0 at the left edge)"), ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: never over a point
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
                        label="seed band of the main run")
    ax.set_xscale("log", base=2), ax.set_xlabel("negatives K"), ax.set_ylabel("test PPL")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


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
