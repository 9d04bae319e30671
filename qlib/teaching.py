"""Small demonstrations for the method chapter: each one runs qlib's real quantizer or loss on a toy tensor beside
the same equation written out by hand, so that a reader can check the library against the paper's formula.

Nothing here is used in training; the point is that the written-out versions are short and obviously the equation,
while the library's versions are vectorised and fast.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .quant import MDSQuantizer, levels, uniform_codes


def _ste_surrogate(w: torch.Tensor, alpha: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """alpha * (clip(w / alpha) + r) with the rounding residual r = Q(u) - u held fixed: equal to the quantizer at
    the point where r was taken, and smooth in alpha. Its derivative is what the straight-through estimator
    assumes, so finite differences of it can be compared with Eq. 7."""
    return alpha * ((w / alpha).clamp(-1.0, 1.0) + residual)


def gamma_gradient_check(w: torch.Tensor, upstream: torch.Tensor, gamma: float = 1.0, bits: int = 2,
                         eps: float = 1e-4) -> dict[str, float]:
    """dl/dgamma of the linear loss l = sum_i g_i * w_q,i (so that dl/dw_q = g = ``upstream`` exactly), four ways:

    - ``autograd``: the backward pass of qlib's ``MDSQuantizer`` (what training uses);
    - ``eq7``: Eq. 7 written out, sum_i g_i * c_i * mean|w| with c_i = Q(u_i) - w_i/alpha inside, Q(u_i) outside;
    - ``finite_difference``: a central difference of l over gamma, with the rounding residual Q(u) - u held fixed
      (the straight-through estimator's assumption), which must match the first two;
    - ``finite_difference_rounded``: the same difference through the real rounding, which sees the codes frozen
      between two jumps and so drops Eq. 7's -w/alpha term: why Eq. 7 is an estimator and not the derivative.
    """
    w, g = w.detach().double(), upstream.detach().double()
    q = MDSQuantizer(bits).double()
    with torch.no_grad():
        q.gamma.fill_(gamma)
    (g * q(w)).sum().backward()
    mean_abs, n = w.abs().mean(), levels(bits)
    alpha = gamma * mean_abs
    codes = uniform_codes(w, alpha, n) / n  # Q(u)
    inside = w.abs() <= alpha
    c = torch.where(inside, codes - w / alpha, codes)
    residual = codes - (w / alpha).clamp(-1.0, 1.0)

    def loss(a, rounded):
        wq = uniform_codes(w, a, n) / n * a if rounded else _ste_surrogate(w, a, residual)
        return float((g * wq).sum())

    lo, hi = (gamma - eps) * mean_abs, (gamma + eps) * mean_abs
    return {"autograd": float(q.gamma.grad), "eq7": float((g * c).sum() * mean_abs),
            "finite_difference": (loss(hi, False) - loss(lo, False)) / (2 * eps),
            "finite_difference_rounded": (loss(hi, True) - loss(lo, True)) / (2 * eps)}


def contrastive_loss_by_hand(anchors: torch.Tensor, teacher: torch.Tensor, ids: list[int],
                             temperature: float) -> dict[str, list[float] | float]:
    """Eq. 2 (our reading) written out with Python loops for one sequence: for each position i, the cosine of its
    anchor with the teacher's representation at i (the positive) against every other position j holding another
    token id (the negatives; all of them, as when K is at least their number), InfoNCE with the positive in the
    denominator. Returns each position's positive cosine, its loss and their mean (what ``TokenContrastiveLoss``
    returns for the same anchors)."""
    a, t = F.normalize(anchors.double(), dim=-1), F.normalize(teacher.double(), dim=-1)
    positives, losses = [], []
    for i in range(len(ids)):
        pos = float(a[i] @ t[i])
        terms = [math.exp(pos / temperature)]
        for j in range(len(ids)):
            if j != i and ids[j] != ids[i]:
                terms.append(math.exp(float(a[i] @ t[j]) / temperature))
        positives.append(round(pos, 4))
        losses.append(-math.log(terms[0] / sum(terms)))
    return {"positive_cosine": positives, "per_token": [round(x, 4) for x in losses],
            "mean": sum(losses) / len(losses)}


def bank_update_by_hand(bank: torch.Tensor, ids: list[int], student: torch.Tensor, momentum: float) -> torch.Tensor:
    """Eq. 3 written out: every token id of the sequence gets the mean of its anchors m * q[t_i] + (1 - m) * h^s_i
    (an id seen twice is averaged, as qlib's ``MemoryBank.update`` does); the other rows keep their value."""
    new = bank.clone().double()
    for token in sorted(set(ids)):
        rows = [momentum * bank[token].double() + (1 - momentum) * student[i].double()
                for i, t in enumerate(ids) if t == token]
        new[token] = torch.stack(rows).mean(0)
    return new
