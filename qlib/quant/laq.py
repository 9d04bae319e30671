"""LAQ: loss-aware quantization (Hou & Kwok 2018) with an approximate proximal-Newton solver, started from its
least-error solution."""
from __future__ import annotations

import torch
from torch import nn

from .base import (Encoded, WeightQuantizer, group_reduce, group_sum, StraightThrough, uniform_codes,
                    dequantize)


def _weighted_error(w, d, alpha, n, like):
    """Per group: sum d * (w_q - w)^2 for the grid of Eq. 1 with clipping factor ``alpha``."""
    return group_sum(d * (dequantize(uniform_codes(w, alpha, n), alpha / n) - w) ** 2, like)


def _laq_alpha_step(w, d, alpha, n, like):
    """One alternation of LAQ's solver: codes for this alpha, then the alpha that minimises the D-weighted error
    for those codes (a least-squares fit). Each half lowers the error, so the error never rises."""
    b = uniform_codes(w, alpha, n) / n
    new = group_sum(d * b * w, like) / group_sum(d * b * b, like).clamp_min(1e-12)
    return torch.where(new > 0, new, alpha)


class LAQQuantizer(WeightQuantizer):
    """Loss-aware quantization: w_q = alpha * b minimises (w_q - w)^T D (w_q - w) over the grid of Eq. 1.

    D is a diagonal Hessian estimate: ``sqrt(v) + eps`` from Adam's second moment ``v`` of this weight once the
    optimizer has state for it (``bind_laq_hessians``), else the identity. The approximate solver alternates
    ``b = round(clip(w / alpha, -1, 1) * n) / n`` and ``alpha = sum(d b w) / sum(d b^2)``. The first call starts
    from the least-error alpha among multiples of mean|w| (``START_RATIOS``: a max|w| start makes the ternary
    threshold alpha/2 keep only the outliers of a heavy-tailed matrix, and the solver stays there) and runs the
    solver to convergence; later calls take ``iters`` warm-started steps. Everything stays on the weight's
    device. [laq]
    """

    method = "laq"
    label, color = "LAQ", "tab:purple"
    # candidate starts alpha = r * mean|w|: from below the ternary optimum (~1.4 for a Gaussian) up to the range of
    # heavy-tailed matrices at 8 bits
    START_RATIOS = tuple(float(r) for r in torch.logspace(-0.3, 2.0, 24).tolist())
    CONVERGE_ITERS, CONVERGE_TOL = 100, 1e-6

    def __init__(self, bits: int, granularity: str = "tensor", rows: int | None = None, iters: int = 2,
                 eps: float = 1e-8):
        super().__init__(bits, granularity, rows)
        self.iters, self.eps = iters, eps
        self.register_buffer("alpha", torch.zeros(self._param_shape()))
        self.register_buffer("initialized", torch.tensor(False))
        self._ready = False  # python mirror of `initialized`: no host-device sync per step
        self.second_moment: torch.Tensor | None = None  # a view of Adam's exp_avg_sq, not a copy

    def hessian(self, w) -> torch.Tensor:
        if self.second_moment is None:
            return torch.ones_like(w)
        return self.second_moment.sqrt() + self.eps

    @torch.no_grad()
    def initial_alpha(self, w, d) -> torch.Tensor:
        """The least-error start among ``START_RATIOS * mean|w|`` (capped at max|w|), then the solver run until
        alpha stops moving."""
        mean_abs = group_reduce(w.abs(), self.granularity, "mean").clamp_min(1e-8)
        amax = group_reduce(w, self.granularity, "amax").clamp_min(1e-8)
        best_alpha, best_err = None, None
        for r in self.START_RATIOS:
            alpha = torch.minimum(r * mean_abs, amax).reshape(self.alpha.shape)
            err = _weighted_error(w, d, alpha, self.n, self.alpha)
            if best_err is None:
                best_alpha, best_err = alpha, err
            else:
                better = err < best_err
                best_alpha, best_err = torch.where(better, alpha, best_alpha), torch.where(better, err, best_err)
        alpha = best_alpha
        for _ in range(self.CONVERGE_ITERS):
            new = _laq_alpha_step(w, d, alpha, self.n, self.alpha)
            moved = ((new - alpha).abs() / alpha).max()
            alpha = new
            if moved < self.CONVERGE_TOL:
                break
        return alpha

    @torch.no_grad()
    def solve(self, w) -> torch.Tensor:
        d = self.hessian(w)
        if not self._ready:
            if not bool(self.initialized):
                self.alpha.copy_(self.initial_alpha(w, d))
                self.initialized.fill_(True)
            self._ready = True
        alpha = self.alpha.clamp_min(1e-8)
        for _ in range(self.iters):
            alpha = _laq_alpha_step(w, d, alpha, self.n, self.alpha)
        if self.training:
            self.alpha.copy_(alpha)
        return alpha

    def forward(self, w):
        self._check(w)
        alpha = self.solve(w.detach())
        w_q = dequantize(uniform_codes(w.detach(), alpha, self.n), alpha / self.n)
        return StraightThrough.apply(w, w_q)

    @torch.no_grad()
    def encode(self, w):
        alpha = self.solve(w)  # same solver call as the forward, so codes match it in the same mode
        return Encoded(uniform_codes(w, alpha, self.n).to(torch.int8), alpha / self.n, self.bits)


def bind_laq_hessians(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Point every LAQ quantizer at Adam's second moment of its weight (when the optimizer has it). Returns how many
    were bound. Call after each optimizer step: Adam creates its state lazily and a resumed run builds a new one."""
    bound = 0
    for module in model.modules():
        q = getattr(module, "weight_quantizer", None)
        if isinstance(q, LAQQuantizer):
            state = optimizer.state.get(module.weight, {})
            q.second_moment = state.get("exp_avg_sq")
            bound += q.second_moment is not None
    return bound


