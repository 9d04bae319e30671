"""PACT, two-sided ("flexible" variant of App. B.4), and its clip-grid reading (kept to show its collapse)."""
from __future__ import annotations

import torch
from torch import nn

from .base import Encoded, WeightQuantizer, dequantize, group_reduce, group_sum


def _pact_clip(w, alpha_neg, alpha_pos):
    return torch.maximum(torch.minimum(w, alpha_pos), -alpha_neg)


def _pact_backward(g, w, alpha_neg, alpha_pos):
    """PACT's gradient: STE for the weights inside [-alpha_neg, alpha_pos]; dl/dalpha_pos = sum of g over
    w >= alpha_pos, dl/dalpha_neg = -sum of g over w <= -alpha_neg. Weights inside do not move the factors."""
    above, below = w >= alpha_pos, w <= -alpha_neg
    zero = torch.zeros_like(g)
    grad_pos = group_sum(torch.where(above, g, zero), alpha_pos)
    grad_neg = group_sum(torch.where(below, -g, zero), alpha_neg)
    return g * ~(above | below), grad_neg, grad_pos


class _PACT(torch.autograd.Function):
    """Clip to [-alpha_neg, alpha_pos], then the symmetric grid of Eq. 1 scaled to the largest clipped magnitude
    (per group): ``step = max|clip(w)| / n``. This is the quantizer of the paper's authors' lineage (BinaryBERT's
    symmetric quantizer with a learnable clip): while every |w| is below the clipping factors (the 2.5 start) it is
    min-max quantization, and PACT's gradient pulls the factors in when that lowers the loss."""

    @staticmethod
    def forward(ctx, w, alpha_neg, alpha_pos, n):
        clipped = _pact_clip(w, alpha_neg, alpha_pos)
        step = group_reduce(clipped, "tensor" if alpha_pos.dim() == 0 else "row", "amax").clamp_min(1e-8) / n
        ctx.save_for_backward(w, alpha_neg, alpha_pos)
        return dequantize(torch.round(clipped / step), step)

    @staticmethod
    def backward(ctx, g):
        return (*_pact_backward(g, *ctx.saved_tensors), None)


class _PACTClipGrid(torch.autograd.Function):
    """The other reading of PACT: the grid spans the clipping range itself, ``alpha_pos / n`` above zero and
    ``alpha_neg / n`` below. Started at 2.5 on weights far below 1.25, every 2-bit code is 0 and no weight is
    clipped, so nothing moves the factors: chapter 1 shows this collapse. Same gradient as ``_PACT``."""

    @staticmethod
    def forward(ctx, w, alpha_neg, alpha_pos, n):
        codes = _pact_grid_codes(w, alpha_neg, alpha_pos, n)
        ctx.save_for_backward(w, alpha_neg, alpha_pos)
        return dequantize(codes, alpha_pos / n, alpha_neg / n)

    @staticmethod
    def backward(ctx, g):
        return (*_pact_backward(g, *ctx.saved_tensors), None)


def _pact_grid_codes(w, alpha_neg, alpha_pos, n):
    u = torch.where(w < 0, torch.clamp(w / alpha_neg, min=-1.0), torch.clamp(w / alpha_pos, max=1.0))
    return torch.round(u * n)


class PACTQuantizer(WeightQuantizer):
    """PACT with separate negative/positive clipping factors, both initialised to 2.5 (App. B.4), and a symmetric
    grid over the largest clipped magnitude (``_PACT``). [pact]"""

    method = "pact"
    label, color = "PACT", "tab:blue"

    def __init__(self, bits: int, granularity: str = "tensor", rows: int | None = None, init: float = 2.5):
        super().__init__(bits, granularity, rows)
        self.alpha_neg = nn.Parameter(torch.full(self._param_shape(), float(init)))
        self.alpha_pos = nn.Parameter(torch.full(self._param_shape(), float(init)))

    def _alphas(self):
        # kept positive: a clipping factor that crossed zero would flip the sign of every weight
        return self.alpha_neg.clamp_min(1e-8), self.alpha_pos.clamp_min(1e-8)

    def forward(self, w):
        self._check(w)
        return _PACT.apply(w, *self._alphas(), self.n)

    @torch.no_grad()
    def encode(self, w):
        clipped = _pact_clip(w, *self._alphas())
        step = group_reduce(clipped, self.granularity, "amax").clamp_min(1e-8) / self.n
        return Encoded(torch.round(clipped / step).to(torch.int8), step, self.bits)


class PACTClipGridQuantizer(PACTQuantizer):
    """PACT read as "the grid spans the clipping range" (``_PACTClipGrid``): kept only to show, in chapter 1, why
    that reading collapses at the paper's 2.5 start. Stores two scales per group. [pact_clip_grid]"""

    method = "pact_clip_grid"
    label, color = "PACT (grid = clip)", "tab:cyan"
    scales_per_group = 2

    def forward(self, w):
        self._check(w)
        return _PACTClipGrid.apply(w, *self._alphas(), self.n)

    @torch.no_grad()
    def encode(self, w):
        a_neg, a_pos = self._alphas()
        codes = _pact_grid_codes(w, a_neg, a_pos, self.n).to(torch.int8)
        return Encoded(codes, a_pos / self.n, self.bits, step_neg=a_neg / self.n)
