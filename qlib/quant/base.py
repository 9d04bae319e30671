"""What every weight quantizer shares: the grid, group reductions, the straight-through estimator, ``Encoded`` and
the ``WeightQuantizer`` base class, whose subclasses register themselves by ``method`` name.

Every weight quantizer is an ``nn.Module`` that owns its learnable state and maps a full-precision weight ``w`` to
its fake-quantized value ``w_q = codes * step``. The math of each one is a small ``autograd.Function`` whose backward
is written out, so the gradient the paper uses is visible in one place.

All quantizers share one representation, used both by the forward pass and by the packed export
(``qlib.packing``): integer ``codes`` on the grid ``{-n, ..., n}`` (``n = 2^(b-1) - 1``; ``{-1, +1}`` for binary)
times a ``step`` per group (per tensor, or per row for embeddings). PACT's clip-grid reading has a different step
for negative and positive codes. Because the forward computes ``codes * step`` exactly as ``load_packed`` does, a
model rebuilt from its packed export gives bit-identical logits.

Granularity ``"tensor"`` keeps one scale per weight matrix ("layer-wise" in the paper); ``"row"`` keeps one per row
(used for the word embedding, one scale per token).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

GRANULARITIES = ("tensor", "row")


def levels(bits: int) -> int:
    """n of Eq. 1: the number of non-zero levels per side, ``2^(b-1) - 1`` (1 for binary)."""
    return 1 if bits == 1 else 2 ** (bits - 1) - 1


def group_reduce(x: torch.Tensor, granularity: str, op: str = "mean") -> torch.Tensor:
    """Reduce ``x`` per group ("mean", "sum" or "amax" of |x|), keeping dims so the result broadcasts against x."""
    if granularity == "tensor":
        return getattr(x, op)() if op != "amax" else x.abs().amax()
    dims = tuple(range(1, x.dim()))
    if op == "amax":
        return x.abs().amax(dim=dims, keepdim=True)
    return getattr(x, op)(dim=dims, keepdim=True)


def group_sum(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum ``x`` down to the shape of a (per-tensor or per-row) parameter ``like``."""
    if like.dim() == 0:
        return x.sum()
    return x.sum(dim=tuple(range(1, x.dim())), keepdim=True)


@dataclass
class Encoded:
    """Integer codes and their step(s): ``w_q = codes * step`` (``step_neg`` for negative codes, when given)."""

    codes: torch.Tensor  # int8, same shape as the weight
    step: torch.Tensor  # [] or [rows, 1]
    bits: int
    step_neg: torch.Tensor | None = None

    def dequantize(self) -> torch.Tensor:
        return dequantize(self.codes, self.step, self.step_neg)


def dequantize(codes: torch.Tensor, step: torch.Tensor, step_neg: torch.Tensor | None = None) -> torch.Tensor:
    """The one place where codes become weights (the forward pass and ``load_packed`` both call it)."""
    c = codes.to(step.dtype)
    if step_neg is None:
        return c * step
    return torch.where(c < 0, c * step_neg, c * step)


def uniform_codes(w: torch.Tensor, alpha: torch.Tensor, n: int) -> torch.Tensor:
    """Q(clip(w, -alpha, alpha) / alpha) * n: the integer grid index of Eq. 1."""
    return torch.round((w / alpha).clamp_(-1.0, 1.0).mul_(n))  # in place: one temporary for a large matrix


class StraightThrough(torch.autograd.Function):
    """Forward returns a precomputed quantized value; backward passes the gradient through unchanged (the STE of
    LAQ, TWN, BWN and the activation quantizers)."""

    @staticmethod
    def forward(ctx, w, w_q):
        return w_q

    @staticmethod
    def backward(ctx, g):
        return g, None


# every weight quantizer by its ``method`` name, filled as the subclasses are defined
QUANTIZERS: dict[str, type[WeightQuantizer]] = {}


class WeightQuantizer(nn.Module):
    """Base class: ``forward(w) -> w_q``; ``encode(w) -> Encoded`` gives the integer codes the forward uses.

    A subclass with a ``method`` name registers itself in ``QUANTIZERS``; ``label`` and ``color`` are how the book
    names and draws it, ``allowed_bits`` what it checks when built."""

    method: str = ""
    label: str = ""
    color: str = "gray"
    allowed_bits: tuple[int, ...] = (2, 4, 8)
    scales_per_group: int = 1  # fp32 scales stored per group by the packed export (size accounting reads it)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.method:
            if cls.method in QUANTIZERS and QUANTIZERS[cls.method].__qualname__ != cls.__qualname__:
                raise ValueError(f"two quantizers named {cls.method!r}: {QUANTIZERS[cls.method]} and {cls}")
            QUANTIZERS[cls.method] = cls

    def __init__(self, bits: int, granularity: str = "tensor", rows: int | None = None):
        super().__init__()
        check_bits(self.method, bits)
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        if granularity == "row" and not rows:
            raise ValueError("row-wise quantization needs the number of rows")
        self.bits, self.granularity, self.n = bits, granularity, levels(bits)
        self.rows = rows if granularity == "row" else None

    def _param_shape(self) -> tuple[int, ...]:
        return () if self.granularity == "tensor" else (self.rows, 1)

    def _check(self, w: torch.Tensor) -> None:
        if self.granularity == "row" and w.shape[0] != self.rows:
            raise ValueError(f"{type(self).__name__} was built for {self.rows} rows, got a weight of shape "
                             f"{tuple(w.shape)}")

    def encode(self, w: torch.Tensor) -> Encoded:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"bits={self.bits}, granularity={self.granularity}"


def check_bits(method: str, bits: int) -> None:
    """Raise ValueError unless ``method`` is known and supports ``bits``."""
    if method not in QUANTIZERS:
        raise ValueError(f"unknown quantization method {method!r}; supported: {sorted(QUANTIZERS)}")
    allowed = QUANTIZERS[method].allowed_bits
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in allowed:
        raise ValueError(f"method {method!r} supports bits {list(allowed)}, got {bits!r}")


def make_quantizer(method: str, bits: int, granularity: str = "tensor", rows: int | None = None) -> WeightQuantizer:
    """Build a weight quantizer by registry name."""
    check_bits(method, bits)
    return QUANTIZERS[method](bits, granularity=granularity, rows=rows)
