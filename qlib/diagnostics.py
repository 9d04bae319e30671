"""How much the contrastive loss steers training: the two gradients of Eq. 5 measured apart.

At a few steps of a run that uses L_cont, ``gradient_parts`` takes the gradients of L_dist and of lambda * L_cont
over the student's weights (not the projection heads, not the quantizers' own parameters) in two extra backward
passes, before the step's usual one, and ``clipped_shares`` reads what gradient clipping leaves of each: the clip
multiplies both by the same factor, and each part's share is its projection on their sum. These are shares of the
clipped gradient, not of AdamW's update, which rescales every coordinate. With ``grad_accum > 1`` the split is the
last micro-batch's (scaled like it); the clip factor is the whole step's.
"""
from __future__ import annotations

import torch


def keep_compiled_graphs_reusable() -> None:
    """A compiled backward pass frees ("donates") the buffers it saved unless told not to; the split's extra
    backward passes keep the graph (``retain_graph=True``) and fail on a graph compiled with donated buffers, as
    happens when a resumed run compiles its layers on an ordinary step. Called before a contrastive run compiles."""
    import torch._functorch.config as functorch_config

    functorch_config.donated_buffer = False


def gradient_parts(l_dist: torch.Tensor, l_cont: torch.Tensor, weights: list[torch.Tensor]) -> dict:
    """Norms of dL_dist/dW and of d(lambda L_cont)/dW over ``weights``, their ratio and cosine, and each part's
    share of their sum (<g_part, g> / |g|^2; the two shares add up to 1). ``l_cont`` is already multiplied by
    lambda. The graph is kept: the step's own backward pass follows."""
    g_dist = torch.autograd.grad(l_dist, weights, retain_graph=True, allow_unused=True)
    g_cont = torch.autograd.grad(l_cont, weights, retain_graph=True, allow_unused=True)
    dd = dc = cc = torch.zeros((), dtype=torch.float64, device=l_dist.device)
    for a, b in zip(g_dist, g_cont):
        a = a.double() if a is not None else None
        b = b.double() if b is not None else None
        if a is not None:
            dd = dd + (a * a).sum()
        if b is not None:
            cc = cc + (b * b).sum()
        if a is not None and b is not None:
            dc = dc + (a * b).sum()
    dd, dc, cc = dd.item(), dc.item(), cc.item()
    n_dist, n_cont, total = dd ** 0.5, cc ** 0.5, dd + 2 * dc + cc
    if not all(map(_finite, (dd, dc, cc))):
        raise FloatingPointError("a gradient of L_dist or L_cont is NaN or inf")
    return {"dist_grad_norm": n_dist, "cont_grad_norm": n_cont,
            "ratio": n_cont / n_dist if n_dist > 0 else float("inf"),
            "cosine": dc / (n_dist * n_cont) if n_dist > 0 and n_cont > 0 else 0.0,
            "dist_share": (dd + dc) / total if total > 0 else 0.0,
            "cont_share": (cc + dc) / total if total > 0 else 0.0}


def clipped_shares(parts: dict, total_norm: float, max_norm: float) -> dict:
    """``parts`` (from ``gradient_parts``) with what gradient clipping to ``max_norm`` leaves of each: the clip
    factor (``torch.nn.utils.clip_grad_norm_``'s, over all trained parameters) and each part's norm after it."""
    coef = min(1.0, max_norm / (total_norm + 1e-6))
    return {**parts, "grad_norm": total_norm, "clip_coef": coef,
            "dist_update_norm": coef * parts["dist_grad_norm"], "cont_update_norm": coef * parts["cont_grad_norm"]}


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")
