"""Activation quantization: dynamic min-max per token (default) or per tensor, symmetric at linear inputs and
asymmetric after the attention softmax and the MLP activation."""
from __future__ import annotations

import torch
from torch import nn

from .base import StraightThrough, levels


class ActQuantizer(nn.Module):
    """Dynamic min-max activation quantization with a straight-through gradient.

    ``symmetric=True``: grid {-n..n} * max|x| / n. ``symmetric=False``: 2^b levels between min(x) and max(x)
    (used where activations are mostly non-negative). ``granularity``: ``"token"`` (default: one range per position,
    over the last dimension, so a position's output never depends on later tokens or on other sequences of the
    batch) or ``"tensor"`` (one range over the whole batch: not causal, kept as an ablation). Statistics are taken
    from the current input, so no state is stored. ``nonnegative=True`` (attention probabilities): 2^b levels
    between 0 and max(x). A softmax row holds exact zeros at masked keys wherever a later key or padding exists, so
    a min-max range would start at 0 there and at the row's smallest probability elsewhere: fixing 0 makes a
    position's range independent of how long the batch is padded (and of other sequences in it).
    """

    def __init__(self, bits: int, symmetric: bool = True, granularity: str = "token", nonnegative: bool = False):
        super().__init__()
        if bits not in (2, 4, 8):
            raise ValueError(f"activation bits must be one of [2, 4, 8] (or 32/None for none), got {bits!r}")
        if granularity not in ("tensor", "token"):
            raise ValueError(f"activation granularity must be 'tensor' or 'token', got {granularity!r}")
        if nonnegative and symmetric:
            raise ValueError("nonnegative=True is an asymmetric range [0, max]; pass symmetric=False")
        self.bits, self.symmetric, self.granularity, self.nonnegative = bits, symmetric, granularity, nonnegative

    def _reduce(self, x, fn):
        if self.granularity == "tensor":
            return fn(x)
        return fn(x, dim=-1, keepdim=True)

    @torch.no_grad()
    def fake_quant(self, x):
        # Each pass over an activation as large as the batch counts (they dominate an eager step's memory traffic on
        # a GPU): the codes are rounded and rescaled in place, and the symmetric clamp to [-n, n], which cuts
        # nothing where the dtype resolves x / step finely (|x| <= max|x| = n * step), is skipped there (fp32, fp16)
        # and kept in bf16, where x / step rounds to steps of 0.5 near 127 and can reach 127.5. (torch.aminmax
        # would read x once for both ends of the range, but runs 8x slower than amax on a CPU.)
        if self.symmetric:
            n = levels(self.bits)
            step = (self._reduce(x.abs(), torch.amax) / n).clamp_min(1e-8)
            codes = torch.div(x, step).round_()
            if n * torch.finfo(x.dtype).eps > 0.25:
                codes.clamp_(-n, n)
            return codes.mul_(step)
        top = 2 ** self.bits - 1
        hi = self._reduce(x, torch.amax)
        if self.nonnegative:  # zero point 0: the codes are round(x / step) in [0, top]
            step = (hi / top).clamp_min(1e-8)
            return torch.div(x, step).round_().clamp_(0, top).mul_(step)
        lo = self._reduce(x, torch.amin)
        step = ((hi - lo) / top).clamp_min(1e-8)
        zero = torch.round(-lo / step)
        return torch.div(x, step).round_().add_(zero).clamp_(0, top).sub_(zero).mul_(step)

    def forward(self, x):
        return StraightThrough.apply(x, self.fake_quant(x.detach()))

    def extra_repr(self):
        return (f"bits={self.bits}, symmetric={self.symmetric}, granularity={self.granularity}"
                + (", nonnegative=True" if self.nonnegative else ""))
