"""LSQ (Esser et al. 2020) on the symmetric grid {-n..n}: the paper describes it as learning the step alpha / n."""
from __future__ import annotations

import math

import torch
from torch import nn

from .base import Encoded, WeightQuantizer, dequantize, group_reduce, group_sum


class _LSQ(torch.autograd.Function):
    """w_q = s * round(clip(w / s, -Qp, Qp)).

    Backward (LSQ): dl/dw = g inside the range; dl/ds = sum g * (round(v) - v) inside, g * (+-Qp) outside,
    with v = w / s, all scaled by grad_scale = 1 / sqrt(N * Qp) (N = elements per step).
    """

    @staticmethod
    def forward(ctx, w, step, qp, grad_scale):
        v = w / step
        codes = torch.round(torch.clamp(v, -qp, qp))
        ctx.save_for_backward(v, codes, step)
        ctx.qp, ctx.grad_scale = qp, grad_scale
        return dequantize(codes, step)

    @staticmethod
    def backward(ctx, g):
        v, codes, step = ctx.saved_tensors
        inside = v.abs() <= ctx.qp
        d_step = torch.where(inside, codes - v, torch.sign(v) * ctx.qp)
        grad_step = group_sum(g * d_step, step) * ctx.grad_scale
        return g * inside, grad_step, None, None


class LSQQuantizer(WeightQuantizer):
    """Learned step size; initialised lazily from the first weight it sees as 2*mean|w|/sqrt(Qp). [lsq]"""

    method = "lsq"
    label, color = "LSQ", "tab:green"

    def __init__(self, bits: int, granularity: str = "tensor", rows: int | None = None):
        super().__init__(bits, granularity, rows)
        self.step = nn.Parameter(torch.ones(self._param_shape()))
        self.register_buffer("initialized", torch.tensor(False))
        self._ready = False  # python mirror of `initialized`: no host-device sync per step

    def _ensure_initialized(self, w):
        if not self._ready:
            if not bool(self.initialized):
                self.initialize(w)
            self._ready = True

    @torch.no_grad()
    def initialize(self, w):
        self.step.copy_(2 * group_reduce(w.abs(), self.granularity, "mean") / math.sqrt(self.n))
        self.initialized.fill_(True)

    def _step(self):
        return self.step.clamp_min(1e-8)  # kept positive

    def forward(self, w):
        self._check(w)
        self._ensure_initialized(w)
        group_numel = w.numel() if self.granularity == "tensor" else w[0].numel()
        return _LSQ.apply(w, self._step(), self.n, 1.0 / math.sqrt(group_numel * self.n))

    @torch.no_grad()
    def encode(self, w):
        self._ensure_initialized(w)
        step = self._step()
        codes = torch.round(torch.clamp(w / step, -self.n, self.n)).to(torch.int8)
        return Encoded(codes, step.clone(), self.bits)
