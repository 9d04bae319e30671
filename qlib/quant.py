"""Weight and activation quantizers.

Every weight quantizer is an ``nn.Module`` that owns its learnable state and maps a full-precision weight ``w`` to
its fake-quantized value ``w_q = codes * step``. The math of each one is a small ``autograd.Function`` whose backward
is written out, so the gradient the paper uses is visible in one place.

All quantizers share one representation, used both by the forward pass and by the packed export
(``qlib.packing``): integer ``codes`` on the grid ``{-n, ..., n}`` (``n = 2^(b-1) - 1``; ``{-1, +1}`` for binary)
times a ``step`` per group (per tensor, or per row for embeddings). PACT has a different step for negative and
positive codes. Because the forward computes ``codes * step`` exactly as ``load_packed`` does, a model rebuilt from
its packed export gives bit-identical logits.

Granularity ``"tensor"`` keeps one scale per weight matrix ("layer-wise" in the paper); ``"row"`` keeps one per row
(used for the word embedding, one scale per token).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

GRANULARITIES = ("tensor", "row")


def levels(bits: int) -> int:
    """n of Eq. 1: the number of non-zero levels per side, ``2^(b-1) - 1`` (1 for binary)."""
    return 1 if bits == 1 else 2 ** (bits - 1) - 1


def _group_reduce(x: torch.Tensor, granularity: str, op: str = "mean") -> torch.Tensor:
    """Reduce ``x`` per group, keeping dims so the result broadcasts against ``x``."""
    if granularity == "tensor":
        return getattr(x, op)() if op != "amax" else x.abs().amax()
    dims = tuple(range(1, x.dim()))
    if op == "amax":
        return x.abs().amax(dim=dims, keepdim=True)
    return getattr(x, op)(dim=dims, keepdim=True)


def _group_sum(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
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


# ----------------------------------------------------------------------------------------------------------------
# Eq. 1 with a fixed clipping factor (min-max), and the module-wise dynamic scaling of QuantGPT (Eq. 6-7)
# ----------------------------------------------------------------------------------------------------------------


def _uniform_codes(w: torch.Tensor, alpha: torch.Tensor, n: int) -> torch.Tensor:
    """Q(clip(w, -alpha, alpha) / alpha) * n: the integer grid index of Eq. 1."""
    return torch.round((w / alpha).clamp_(-1.0, 1.0).mul_(n))  # in place: one temporary for a large matrix


class _ClipSTE(torch.autograd.Function):
    """w_q = alpha * Q(clip(w)/alpha) with a fixed alpha; STE inside the clip range, zero outside."""

    @staticmethod
    def forward(ctx, w, alpha, n):
        codes = _uniform_codes(w, alpha, n)
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
        codes = _uniform_codes(w, alpha, n)
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
        grad_gamma = _group_sum(c.mul_(g), gamma) * mean_abs.reshape(gamma.shape)
        return g * inside, grad_gamma, None, None, None


class WeightQuantizer(nn.Module):
    """Base class: ``forward(w) -> w_q``; ``encode(w) -> Encoded`` gives the integer codes the forward uses."""

    method: str = ""
    allowed_bits: tuple[int, ...] = (2, 4, 8)
    scales_per_group: int = 1  # fp32 scales stored per group by the packed export (size accounting reads it)

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


class MinMaxQuantizer(WeightQuantizer):
    """Eq. 1 with alpha = max|w| (no learned state): the symmetric min-max baseline. [minmax]"""

    method = "minmax"

    def _alpha(self, w):
        return _group_reduce(w.detach(), self.granularity, "amax").clamp_min(1e-8)

    def forward(self, w):
        self._check(w)
        return _ClipSTE.apply(w, self._alpha(w), self.n)

    @torch.no_grad()
    def encode(self, w):
        alpha = self._alpha(w)
        return Encoded(_uniform_codes(w, alpha, self.n).to(torch.int8), alpha / self.n, self.bits)


class MDSQuantizer(WeightQuantizer):
    """Module-wise dynamic scaling (QuantGPT, Eq. 6-7): alpha = gamma * mean|w|, gamma initialised to 1. [mds]"""

    method = "mds"
    pact_grad = False

    def __init__(self, bits: int, granularity: str = "tensor", rows: int | None = None):
        super().__init__(bits, granularity, rows)
        self.gamma = nn.Parameter(torch.ones(self._param_shape()))

    def _mean_abs(self, w):
        # a statistic of the weight, not a path for its gradient (Eq. 7 treats it as a constant)
        return _group_reduce(w.detach().abs(), self.granularity, "mean").clamp_min(1e-8)

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
        return Encoded(_uniform_codes(w, alpha, self.n).to(torch.int8), alpha / self.n, self.bits)


class MDSPactGradQuantizer(MDSQuantizer):
    """Dynamic scaling whose gamma gradient comes only from clipped weights (Table 7 ablation). [mds_pact_grad]"""

    method = "mds_pact_grad"
    pact_grad = True


# ----------------------------------------------------------------------------------------------------------------
# PACT (two-sided, "flexible" variant of App. B.4)
# ----------------------------------------------------------------------------------------------------------------


def _pact_clip(w, alpha_neg, alpha_pos):
    return torch.maximum(torch.minimum(w, alpha_pos), -alpha_neg)


def _pact_backward(g, w, alpha_neg, alpha_pos):
    """PACT's gradient: STE for the weights inside [-alpha_neg, alpha_pos]; dl/dalpha_pos = sum of g over
    w >= alpha_pos, dl/dalpha_neg = -sum of g over w <= -alpha_neg. Weights inside do not move the factors."""
    above, below = w >= alpha_pos, w <= -alpha_neg
    zero = torch.zeros_like(g)
    grad_pos = _group_sum(torch.where(above, g, zero), alpha_pos)
    grad_neg = _group_sum(torch.where(below, -g, zero), alpha_neg)
    return g * ~(above | below), grad_neg, grad_pos


class _PACT(torch.autograd.Function):
    """Clip to [-alpha_neg, alpha_pos], then the symmetric grid of Eq. 1 scaled to the largest clipped magnitude
    (per group): ``step = max|clip(w)| / n``. This is the quantizer of the paper's authors' lineage (BinaryBERT's
    symmetric quantizer with a learnable clip): while every |w| is below the clipping factors (the 2.5 start) it is
    min-max quantization, and PACT's gradient pulls the factors in when that lowers the loss."""

    @staticmethod
    def forward(ctx, w, alpha_neg, alpha_pos, n):
        clipped = _pact_clip(w, alpha_neg, alpha_pos)
        step = _group_reduce(clipped, "tensor" if alpha_pos.dim() == 0 else "row", "amax").clamp_min(1e-8) / n
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
        step = _group_reduce(clipped, self.granularity, "amax").clamp_min(1e-8) / self.n
        return Encoded(torch.round(clipped / step).to(torch.int8), step, self.bits)


class PACTClipGridQuantizer(PACTQuantizer):
    """PACT read as "the grid spans the clipping range" (``_PACTClipGrid``): kept only to show, in chapter 1, why
    that reading collapses at the paper's 2.5 start. Stores two scales per group. [pact_clip_grid]"""

    method = "pact_clip_grid"
    scales_per_group = 2

    def forward(self, w):
        self._check(w)
        return _PACTClipGrid.apply(w, *self._alphas(), self.n)

    @torch.no_grad()
    def encode(self, w):
        a_neg, a_pos = self._alphas()
        codes = _pact_grid_codes(w, a_neg, a_pos, self.n).to(torch.int8)
        return Encoded(codes, a_pos / self.n, self.bits, step_neg=a_neg / self.n)


# ----------------------------------------------------------------------------------------------------------------
# LSQ (Esser et al. 2020) on the symmetric grid {-n..n}: the paper describes it as learning the step alpha / n
# ----------------------------------------------------------------------------------------------------------------


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
        grad_step = _group_sum(g * d_step, step) * ctx.grad_scale
        return g * inside, grad_step, None, None


class LSQQuantizer(WeightQuantizer):
    """Learned step size; initialised lazily from the first weight it sees as 2*mean|w|/sqrt(Qp). [lsq]"""

    method = "lsq"

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
        self.step.copy_(2 * _group_reduce(w.abs(), self.granularity, "mean") / math.sqrt(self.n))
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


class _StraightThrough(torch.autograd.Function):
    """Forward returns a precomputed quantized value; backward passes the gradient through unchanged (the STE of
    LAQ, TWN, BWN and the activation quantizers)."""

    @staticmethod
    def forward(ctx, w, w_q):
        return w_q

    @staticmethod
    def backward(ctx, g):
        return g, None


# ----------------------------------------------------------------------------------------------------------------
# Registry (LAQ, TWN and BWN live in qlib.laq and qlib.ternary, which build on the classes above)
# ----------------------------------------------------------------------------------------------------------------

from .laq import LAQQuantizer, bind_laq_hessians  # noqa: E402 - after the base classes it needs
from .ternary import BWNQuantizer, TWNQuantizer  # noqa: E402

QUANTIZERS: dict[str, type[WeightQuantizer]] = {
    q.method: q for q in (MinMaxQuantizer, PACTQuantizer, PACTClipGridQuantizer, LSQQuantizer, LAQQuantizer, MDSQuantizer,
                          MDSPactGradQuantizer, TWNQuantizer, BWNQuantizer)
}


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


from .activations import ActQuantizer  # noqa: E402,F401 - re-exported: qlib.quant names every quantizer
