"""Figures of the book. Each function returns a matplotlib Figure; the notebooks only call them.

No backend is forced here: in a notebook the inline backend shows every figure a cell makes (forcing Agg would
leave the book without figures); headless scripts get Agg by matplotlib's own choice.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .quant import make_quantizer

METHOD_LABELS = {"fp": "full precision", "minmax": "min-max", "pact": "PACT", "lsq": "LSQ", "laq": "LAQ",
                 "mds": "QuantGPT (dynamic scaling)", "mds_pact_grad": "dynamic scaling, PACT gradient",
                 "twn": "TWN (ternary)", "bwn": "BWN (binary)"}


def quantizer_grid(w: torch.Tensor, bits: int = 2, methods=("minmax", "pact", "lsq", "laq", "mds", "twn", "bwn")):
    """Each quantizer's output against the real weights ``w`` (1-D), side by side."""
    w = w.flatten()
    order = w.argsort()
    fig, axes = plt.subplots(1, len(methods), figsize=(3.0 * len(methods), 3.0), sharey=True)
    for ax, method in zip(np.atleast_1d(axes), methods):
        b = {"twn": 2, "bwn": 1}.get(method, bits)
        q = make_quantizer(method, b)
        if method == "pact":  # the paper's initial 2.5 would map every weight to 0: show a learned-size range
            with torch.no_grad():
                q.alpha_neg.fill_(3 * w.abs().mean().item()), q.alpha_pos.fill_(3 * w.abs().mean().item())
        with torch.no_grad():
            wq = q(w)
        ax.plot(w[order].numpy(), wq[order].numpy(), lw=1.5)
        ax.plot(w[order].numpy(), w[order].numpy(), lw=0.6, color="grey", ls="--")
        ax.set_title(f"{METHOD_LABELS.get(method, method)}\n{b}-bit, {wq.unique().numel()} values", fontsize=9)
        ax.set_xlabel("w")
    np.atleast_1d(axes)[0].set_ylabel("quantized w")
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


def metric_vs_bits(rows: list[dict], metric: str = "test_ppl", log: bool = True, fp_value: float | None = None):
    """Fig. 1: a metric against weight bits, one line per method. ``rows``: dicts with method, w_bits, value."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for method in sorted({r["method"] for r in rows}):
        pts = sorted((r["w_bits"], r["value"]) for r in rows if r["method"] == method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=METHOD_LABELS.get(method, method))
    if fp_value is not None:
        ax.axhline(fp_value, color="black", ls="--", lw=1, label="full precision")
    ax.set_xlabel("weight bits"), ax.set_ylabel(metric.replace("_", " "))
    ax.set_xticks(sorted({r["w_bits"] for r in rows}))
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: never over a point
    fig.tight_layout()
    return fig


def embedding_maps(coords: dict[str, np.ndarray], spread: dict[str, float] | None = None):
    """Fig. 2: t-SNE maps side by side, all on the same scale."""
    n = len(coords)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    coords = {name: np.asarray(c) for name, c in coords.items()}
    lim = max(np.abs(c).max() for c in coords.values()) * 1.05
    for ax, (name, c) in zip(axes[0], coords.items()):
        ax.scatter(c[:, 0], c[:, 1], s=4, alpha=0.7)
        title = name + (f"\nmean cos {spread[name]:.2f}" if spread else "")
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim), ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def similarity_maps(mats: dict[str, torch.Tensor | list], tokens: list[str] | None = None):
    """Fig. 3: token-token cosine similarity matrices."""
    n = len(mats)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.3), squeeze=False)
    for ax, (name, m) in zip(axes[0], mats.items()):
        im = ax.imshow(np.asarray(m), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(name, fontsize=9), ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    return fig


def weight_distribution(hist: dict, clips: dict[str, tuple[float, float]], title: str = ""):
    """Fig. 4: the density of a weight matrix (``analysis.weight_histogram``) with the clipping ranges of several
    methods; the outliers beyond the histogram's range are noted in the legend."""
    fig, ax = plt.subplots(figsize=(5.5, 3.3))
    edges, density = np.asarray(hist["edges"]), np.asarray(hist["density"])
    ax.stairs(density, edges, fill=True, color="lightsteelblue",
              label=f"weights ({100 * hist['outside']:.2f}% beyond the axis, max |w| {hist['max_abs']:.2f})")
    for (name, (lo, hi)), color in zip(clips.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"][1:]):
        ax.axvline(lo, color=color, ls="--", label=name), ax.axvline(hi, color=color, ls="--")
    lim = max([float(np.abs(edges).max())] + [max(abs(a), abs(b)) for a, b in clips.values()])
    ax.set_xlim(-1.1 * lim, 1.1 * lim), ax.set_xlabel("weight"), ax.set_ylabel("density")
    ax.set_title(title, fontsize=9), ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def gammas(gamma: dict[str, float], title: str = "learned scaling gamma per module"):
    """Fig. 8: learned gamma of every module, as a (module kind x layer) map centred on the initial value 1;
    modules outside the layers (the word embedding: mean over its rows) are listed in the title."""
    import re

    cells, outside = {}, {}
    for name, g in gamma.items():
        m = re.search(r"(?:^|\.)(?:h|layers|layer|block)\.(\d+)\.(.+)$", name)
        if m:
            cells[(m.group(2), int(m.group(1)))] = g
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


def training_curves(histories: dict[str, list[dict]], key: str = "loss"):
    fig, ax = plt.subplots(figsize=(5.5, 3.3))
    for name, hist in histories.items():
        pts = [(h["step"], h[key]) for h in hist if key in h]
        if pts:
            ax.plot(*zip(*pts), label=name)
    ax.set_xlabel("step"), ax.set_ylabel(key), ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
