"""Why quantizing a generative model is hard (chapter 2): embedding maps and token-similarity maps."""
from __future__ import annotations

import numpy as np

from .common import columns


def embedding_maps(data: dict[str, dict]):
    """Fig. 2: t-SNE maps of the embeddings of the most frequent tokens, one panel a model, all on one scale."""
    if not data:
        return None
    coords = {name: np.asarray(d["tsne"]) for name, d in data.items()}
    spread = {name: d["embedding_mean_cos"] for name, d in data.items()}
    fig, axes = columns(len(coords))
    lim = max(np.abs(c).max() for c in coords.values()) * 1.05
    for ax, (name, c) in zip(axes, coords.items()):
        ax.scatter(c[:, 0], c[:, 1], s=4, alpha=0.7)
        title = name + (f"\nmean cos {spread[name]:.2f}" if spread else "")
        ax.set_title(title, fontsize=10)
        ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim), ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def similarity_maps(data: dict[str, dict]):
    """Fig. 3: token-token cosine similarity of the last hidden states on one sentence, one panel a model."""
    if not data:
        return None
    fig, axes = columns(len(data))
    for ax, (name, d) in zip(axes, data.items()):
        im = ax.imshow(np.asarray(d["token_similarity"]), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(name, fontsize=10), ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=[a for a in axes if a.get_visible()], shrink=0.8)
    return fig
