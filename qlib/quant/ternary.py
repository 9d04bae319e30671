"""XTC's binary (BWN) and ternary (TWN) weight quantizers."""
from __future__ import annotations

import torch

from .base import Encoded, WeightQuantizer, group_reduce, group_sum, StraightThrough


def _twn_codes(w, granularity):
    delta = 0.7 * group_reduce(w.abs(), granularity, "mean")
    mask = (w.abs() > delta).to(w.dtype)
    alpha = group_sum(w.abs() * mask, delta) / group_sum(mask, delta).clamp_min(1.0)
    return torch.sign(w) * mask, alpha


class BWNQuantizer(WeightQuantizer):
    """Binary weights sign(w) * mean|w|. [bwn]"""

    method = "bwn"
    label, color = "BWN (binary)", "tab:pink"
    allowed_bits = (1,)

    def encode(self, w):
        w = w.detach()
        codes = torch.where(w >= 0, 1, -1).to(torch.int8)
        return Encoded(codes, group_reduce(w.abs(), self.granularity, "mean"), self.bits)

    def forward(self, w):
        self._check(w)
        return StraightThrough.apply(w, self.encode(w).dequantize())


class TWNQuantizer(WeightQuantizer):
    """Ternary weights (TWN): delta = 0.7 mean|w|, alpha = mean of |w| above delta. [twn]"""

    method = "twn"
    label, color = "TWN (ternary)", "tab:olive"
    allowed_bits = (2,)

    def encode(self, w):
        codes, alpha = _twn_codes(w.detach(), self.granularity)
        return Encoded(codes.to(torch.int8), alpha, self.bits)

    def forward(self, w):
        self._check(w)
        return StraightThrough.apply(w, self.encode(w).dequantize())


