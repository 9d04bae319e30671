"""Eq. 1 with a fixed clipping factor (min-max) and QuantGPT's module-wise dynamic scaling (Eq. 6-7)."""
from __future__ import annotations

import torch
from torch import nn

from .base import Encoded, WeightQuantizer, dequantize, group_reduce, group_sum, uniform_codes


class _ClipSTE(torch.autograd.Function):
    """w_q = alpha * Q(clip(w)/alpha) with a fixed alpha; STE inside the clip range, zero outside."""

    @staticmethod
    def forward(ctx, w, alpha, n):
        codes = uniform_codes(w, alpha, n)
        ctx.save_for_backward(w.abs() <= alpha)
        return dequantize(codes, alpha / n)

    @staticmethod
    def backward(ctx, g):
        (inside,) = ctx.saved_tensors
        return g * inside, None, None


class _DynamicScaling(torch.autograd.Function):
    """QuantGPT's module-wise dynamic scaling: alpha = gamma * mean|w| (Eq. 6).

    Backward (Eq. 7, derivation in App. A), with u = clip(w, -alpha, alpha) / alpha and STE for Q:
        dl/dw     = g                                   where |w| <= alpha, else 0
        dl/dgamma = sum_i g_i * c_i * mean|w|,  c_i = Q(u_i)                 where |w_i| > alpha
                                                c_i = Q(u_i) - w_i / alpha   where |w_i| <= alpha
    With ``pact_grad`` the inside term is dropped (the "Ours with PACT" ablation of Table 7): only weights outside
    the clip range move gamma, as in PACT.
    """

    @staticmethod
    def forward(ctx, w, gamma, mean_abs, n, pact_grad):
        alpha = gamma * mean_abs
        codes = uniform_codes(w, alpha, n)
        ctx.save_for_backward(w, alpha, codes, mean_abs, gamma)
        ctx.n, ctx.pact_grad = n, pact_grad
        return dequantize(codes, alpha / n)

    @staticmethod
    def backward(ctx, g):
        w, alpha, codes, mean_abs, gamma = ctx.saved_tensors
        inside = w.abs() <= alpha
        # c = Q(u) - (w / alpha inside the range, 0 outside); with pact_grad c = Q(u) outside, 0 inside
        if ctx.pact_grad:
            c = codes.masked_fill(inside, 0.0).div_(ctx.n)
        else:
            c = (codes / ctx.n).sub_((w / alpha).mul_(inside))
        # mean|w| is constant per group: multiply after the sum (one pass less over the matrix)
        grad_gamma = group_sum(c.mul_(g), gamma) * mean_abs.reshape(gamma.shape)
        return g * inside, grad_gamma, None, None, None



class MinMaxQuantizer(WeightQuantizer):
    """Eq. 1 with alpha = max|w| (no learned state): the symmetric min-max baseline. [minmax]"""

    method = "minmax"
    label, color = "min-max", "tab:brown"

    def _alpha(self, w):
        return group_reduce(w.detach(), self.granularity, "amax").clamp_min(1e-8)

    def forward(self, w):
        self._check(w)
        return _ClipSTE.apply(w, self._alpha(w), self.n)

    @torch.no_grad()
    def encode(self, w):
        alpha = self._alpha(w)
        return Encoded(uniform_codes(w, alpha, self.n).to(torch.int8), alpha / self.n, self.bits)


class MDSQuantizer(WeightQuantizer):
    """Module-wise dynamic scaling (QuantGPT, Eq. 6-7): alpha = gamma * mean|w|, gamma initialised to 1. [mds]"""

    method = "mds"
    label, color = "QuantGPT", "tab:red"
    pact_grad = False

    def __init__(self, bits: int, granularity: str = "tensor", rows: int | None = None):
        super().__init__(bits, granularity, rows)
        self.gamma = nn.Parameter(torch.ones(self._param_shape()))

    def _mean_abs(self, w):
        # a statistic of the weight, not a path for its gradient (Eq. 7 treats it as a constant)
        return group_reduce(w.detach().abs(), self.granularity, "mean").clamp_min(1e-8)

    def _gamma(self):
        # kept positive like PACT's and LSQ's factors: a gamma that crossed zero would flip every weight's sign
        return self.gamma.clamp_min(1e-4)

    def alpha(self, w) -> torch.Tensor:
        return self._gamma().detach() * self._mean_abs(w)

    def forward(self, w):
        self._check(w)
        return _DynamicScaling.apply(w, self._gamma(), self._mean_abs(w), self.n, self.pact_grad)

    @torch.no_grad()
    def encode(self, w):
        alpha = self.alpha(w)
        return Encoded(uniform_codes(w, alpha, self.n).to(torch.int8), alpha / self.n, self.bits)


class MDSPactGradQuantizer(MDSQuantizer):
    """Dynamic scaling whose gamma gradient comes only from clipped weights (Table 7 ablation). [mds_pact_grad]"""

    method = "mds_pact_grad"
    label, color = "Ours with PACT gradient", "tab:orange"
    pact_grad = True
