"""Figures of quantizers and their learned parameters: each quantizer on real weights, Eq. 7's gradient, weight
distributions with their clipping ranges, the learned gamma per module."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..labels import method_name
from ..modules import layer_index
from ..quant import make_quantizer
from .common import columns, method_color


def quantizer_grid(w: torch.Tensor, bits: int = 2,
                   methods=("minmax", "pact", "pact_clip_grid", "lsq", "laq", "mds", "twn", "bwn")):
    """Each quantizer at its initialisation against the real weights ``w``: three panels a row."""
    w = w.flatten()
    order = w.argsort()
    fig, axes = columns(len(methods), size=2.6)
    for ax, method in zip(axes, methods):
        b = {"twn": 2, "bwn": 1}.get(method, bits)
        q = make_quantizer(method, b)
        with torch.no_grad():
            wq = q(w)
        ax.plot(w[order].numpy(), wq[order].numpy(), lw=1.5)
        ax.plot(w[order].numpy(), w[order].numpy(), lw=0.6, color="grey", ls="--")
        ax.set_title(f"{method_name(method)}\n{b}-bit, {wq.unique().numel()} values", fontsize=10)
        ax.set_xlabel("w")
    axes[0].set_ylabel("quantized w")
    fig.tight_layout()
    return fig


def gamma_gradient(curves: dict):
    """Eq. 7 against PACT's rule on one matrix: the reconstruction error over gamma (left) and its gradient
    under each rule (right), from ``analysis.gamma_gradient_curve``."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8.2, 3.4))
    a1.plot(curves["gamma"], curves["loss"], color="black")
    a1.set_xlabel(r"$\gamma$"), a1.set_ylabel(r"$\frac{1}{2}\|w_q - w\|^2$"), a1.set_title("reconstruction error")
    a2.plot(curves["gamma"], curves["mds"], label="Eq. 7: inside and outside")
    a2.plot(curves["gamma"], curves["mds_pact_grad"], label="PACT's rule: outside only", ls="--")
    a2.axhline(0, color="grey", lw=0.5)
    a2.set_xlabel(r"$\gamma$"), a2.set_ylabel(r"$\partial \ell / \partial \gamma$"), a2.set_title("its gradient")
    a2.legend(fontsize=9)
    fig.tight_layout()
    return fig


def weight_distribution(data: dict[str, dict], reference: str = "teacher"):
    """Fig. 4: per module (the paper's two: attention output projection and the FFN's output projection), the
    density of the ``reference`` model's weights (``analysis.weight_histogram``) with the grid range each student's
    quantizer uses for it (PACT's learned clip included when it has run); outliers beyond the axis are noted in the
    title."""
    if reference not in data:
        return None
    modules = list(data[reference]["modules"])
    fig, axes = plt.subplots(1, len(modules), figsize=(4.1 * len(modules), 3.4), squeeze=False)
    for ax, module in zip(axes[0], modules):
        hist = data[reference]["modules"][module]["weight_hist"]
        clips = {name: (d["modules"][module]["clip"]["neg"], d["modules"][module]["clip"]["pos"])
                 for name, d in data.items() if d["modules"].get(module, {}).get("clip")}
        edges, density = np.asarray(hist["edges"]), np.asarray(hist["density"])
        ax.stairs(density, edges, fill=True, color="lightsteelblue", label=f"{reference}'s weights")
        for name, (lo, hi) in clips.items():
            color = method_color(name)
            ax.axvline(lo, color=color, ls="--", label=name), ax.axvline(hi, color=color, ls="--")
        lim = max([float(np.abs(edges).max())] + [max(abs(a), abs(b)) for a, b in clips.values()])
        ax.set_xlim(-1.1 * lim, 1.1 * lim), ax.set_xlabel("weight"), ax.set_ylabel("density")
        ax.set_title(f"{module.removeprefix('model.')}\n{100 * hist['outside']:.2f}% beyond the axis, "
                     f"max |w| {hist['max_abs']:.2f}", fontsize=9)
    handles, labels = axes[0][-1].get_legend_handles_labels()
    # below the panels, not beside them: a legend on the right shrinks the figure at page width
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.legend(handles, labels, fontsize=9, loc="lower center", ncol=min(len(labels), 5), frameon=False)
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
    ax.set_yticks(range(len(kinds)), kinds, fontsize=8)
    ax.set_xticks(range(len(layers)), layers, fontsize=7)
    ax.set_xlabel("layer")
    extra = ", ".join(f"{n}: {g:.3f}" for n, g in outside.items())
    ax.set_title(title + (f"\n{extra}" if extra else ""), fontsize=9)
    fig.colorbar(im, ax=ax, label=r"$\gamma$")
    fig.tight_layout()
    return fig
