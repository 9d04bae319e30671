"""Each quantizer against its paper's formula: forward grid, backward gradient, granularity, bad input."""
import math

import pytest
import torch

from qlib.quant import (QUANTIZERS, ActQuantizer, LAQQuantizer, LSQQuantizer, MDSQuantizer,
                        bind_laq_hessians, check_bits, levels, make_quantizer)

MULTIBIT = ["minmax", "pact", "pact_clip_grid", "lsq", "laq", "mds", "mds_pact_grad"]


def heavy_tailed(shape=(64, 48), seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * 0.05
    w[0, :3] = torch.tensor([0.6, -0.5, 0.4])  # outliers, like real transformer weights
    return w


@pytest.mark.parametrize("method", MULTIBIT)
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_number_of_levels_is_at_most_2n_plus_1(method, bits):
    q = make_quantizer(method, bits)
    if method.startswith("pact"):  # clip inside the weights' range, so that clipping is exercised too
        q.alpha_neg.data.fill_(0.3), q.alpha_pos.data.fill_(0.3)
    w = heavy_tailed()
    q.eval()  # LAQ's solver advances its warm start in training mode; export runs in eval mode
    wq = q(w)
    n = levels(bits)
    assert wq.unique().numel() <= 2 * n + 1
    enc = q.encode(w)
    assert enc.codes.abs().max() <= n
    assert torch.equal(enc.dequantize(), wq.detach())  # forward == codes * step, exactly
    if method in ("minmax", "laq") or method.startswith("pact") or bits == 2:
        assert wq.unique().numel() >= min(2 * n + 1, 3)


def test_minmax_uses_every_level_of_the_grid():
    for bits in (2, 4, 8):
        w = torch.linspace(-1, 1, 2001)
        assert make_quantizer("minmax", bits)(w).unique().numel() == 2 * levels(bits) + 1


def test_binary_and_ternary_values_per_group():
    w = heavy_tailed()
    for gran in ("tensor", "row"):
        b = make_quantizer("bwn", 1, gran, rows=w.shape[0])(w)
        t = make_quantizer("twn", 2, gran, rows=w.shape[0])(w)
        for row_b, row_t in zip(b, t):
            assert row_b.abs().unique().numel() == 1 and row_b.unique().numel() <= 2
            assert set(torch.sign(row_t).unique().tolist()) <= {-1.0, 0.0, 1.0} and row_t.unique().numel() <= 3
    # the formulas: sign(w) * mean|w|; TWN delta = 0.7 mean|w|, alpha = mean of |w| above delta
    assert torch.allclose(make_quantizer("bwn", 1)(w), torch.sign(w) * w.abs().mean())
    delta = 0.7 * w.abs().mean()
    alpha = w.abs()[w.abs() > delta].mean()
    assert torch.allclose(make_quantizer("twn", 2)(w), alpha * torch.sign(w) * (w.abs() > delta))


def _ste_round(x):
    return x + (torch.round(x) - x).detach()


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("gran", ["tensor", "row"])
def test_dynamic_scaling_gradient_is_eq7(bits, gran):
    w = heavy_tailed().requires_grad_(True)
    q = MDSQuantizer(bits, gran, rows=w.shape[0])
    with torch.no_grad():
        q.gamma.mul_(torch.rand(q.gamma.shape) + 0.5)
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(3))
    (q(w) * g).sum().backward()

    # Eq. 7 written out directly
    n = levels(bits)
    dims = tuple(range(1, w.dim())) if gran == "row" else tuple(range(w.dim()))
    mean_abs = w.detach().abs().mean(dim=dims, keepdim=True)
    gamma = q.gamma.detach()
    alpha = gamma * mean_abs
    u = torch.clamp(w.detach() / alpha, -1, 1)
    q_u = torch.round(u * n) / n
    inside = w.detach().abs() <= alpha
    c = torch.where(inside, q_u - w.detach() / alpha, q_u)
    expected = (g * c * mean_abs).sum(dim=dims, keepdim=gran == "row")
    assert torch.allclose(q.gamma.grad, expected.reshape(q.gamma.shape), rtol=1e-4, atol=1e-6)
    assert torch.equal(w.grad, g * inside)

    # the same gradient from autograd through an STE reference implementation (independent derivation)
    gamma_ref = gamma.clone().requires_grad_(True)
    a = gamma_ref * mean_abs
    ref = a * _ste_round(torch.clamp(w.detach() / a, -1, 1) * n) / n
    (ref * g).sum().backward()
    assert torch.allclose(q.gamma.grad, gamma_ref.grad, rtol=1e-4, atol=1e-6)


def test_pact_gradient_variant_of_dynamic_scaling_uses_only_clipped_weights():
    w = heavy_tailed().requires_grad_(True)
    q = make_quantizer("mds_pact_grad", 2)
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(4))
    (q(w) * g).sum().backward()
    mean_abs = w.detach().abs().mean()
    outside = w.detach().abs() > mean_abs
    expected = (g * torch.sign(w.detach()) * outside).sum() * mean_abs
    assert torch.allclose(q.gamma.grad, expected, rtol=1e-5)
    # and it differs from Eq. 7 (which also counts weights inside the range)
    q7 = make_quantizer("mds", 2)
    w2 = w.detach().clone().requires_grad_(True)
    (q7(w2) * g).sum().backward()
    assert not torch.allclose(q7.gamma.grad, q.gamma.grad)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_lsq_init_gradient_scale_and_positive_step(bits):
    w = heavy_tailed().requires_grad_(True)
    q = LSQQuantizer(bits)
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(6))
    (q(w) * g).sum().backward()
    n = levels(bits)
    s0 = 2 * w.detach().abs().mean() / math.sqrt(n)
    assert torch.allclose(q.step.detach(), s0)
    # reference: autograd through the STE formulation with LSQ's gradient scale 1/sqrt(N * Qp)
    s = s0.clone().requires_grad_(True)
    scale = 1 / math.sqrt(w.numel() * n)
    s_scaled = s * scale + (s - s * scale).detach()
    ref = _ste_round(torch.clamp(w.detach() / s_scaled, -n, n)) * s_scaled
    (ref * g).sum().backward()
    assert torch.allclose(q.step.grad, s.grad, rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        q.step.fill_(-1.0)
    assert torch.isfinite(q(w)).all()  # a negative step is clamped, never used


def test_laq_solver_minimises_weighted_error_and_uses_adam_second_moment():
    w = heavy_tailed()
    q = LAQQuantizer(2)
    q.train()
    wq = q(w.clone().requires_grad_(True))
    err_solved = ((wq - w) ** 2).sum()
    alpha0 = w.abs().max()
    err_minmax = ((alpha0 * torch.round(torch.clamp(w / alpha0, -1, 1)) - w) ** 2).sum()
    assert err_solved < err_minmax
    # the first call runs the solver to its fixed point: alpha = sum(d b w) / sum(d b^2) with b on the grid
    b = torch.round(torch.clamp(w / q.alpha, -1, 1))
    assert torch.allclose(q.alpha, (b * w).sum() / (b * b).sum(), rtol=1e-5)

    # with an optimizer, D comes from Adam's second moment (bound by reference, not copied)
    lin = torch.nn.Linear(8, 4)
    holder = torch.nn.Module()
    holder.weight = lin.weight
    holder.weight_quantizer = LAQQuantizer(2)
    opt = torch.optim.AdamW([lin.weight], lr=1e-3)
    assert bind_laq_hessians(holder, opt) == 0
    holder.weight_quantizer(lin.weight).sum().backward()
    opt.step()
    assert bind_laq_hessians(holder, opt) == 1
    assert holder.weight_quantizer.second_moment is opt.state[lin.weight]["exp_avg_sq"]


def test_laq_gradient_is_straight_through():
    w = heavy_tailed().requires_grad_(True)
    g = torch.randn(w.shape)
    (make_quantizer("laq", 4)(w) * g).sum().backward()
    assert torch.equal(w.grad, g)


def test_row_wise_has_one_scale_per_row():
    w = heavy_tailed()
    w[5] *= 10
    for method in ("minmax", "mds", "lsq", "laq", "pact", "twn", "bwn"):
        bits = {"twn": 2, "bwn": 1}.get(method, 2)
        q = make_quantizer(method, bits, "row", rows=w.shape[0])
        enc = q.encode(w)
        assert enc.step.shape == (w.shape[0], 1)
        assert enc.step[5] > 3 * enc.step[1]
        with pytest.raises(ValueError, match="rows"):
            q(w[:10])


@pytest.mark.parametrize("method,bits", [("unknown", 2), ("twn", 3), ("twn", 1), ("bwn", 2), ("mds", 0),
                                         ("mds", 3), ("lsq", 1), ("pact", 16), ("mds", True), ("mds", 2.0)])
def test_unsupported_method_or_bits_raises_naming_what_is_supported(method, bits):
    with pytest.raises(ValueError) as e:
        make_quantizer(method, bits)
    assert ("supported" in str(e.value)) or ("supports bits" in str(e.value))


def test_registry_names():
    assert set(QUANTIZERS) == {"minmax", "pact", "pact_clip_grid", "lsq", "laq", "mds", "mds_pact_grad", "twn",
                               "bwn"}
    check_bits("bwn", 1)
    with pytest.raises(ValueError, match="granularity"):
        make_quantizer("mds", 2, "channel")


def test_activation_quantizers():
    x = torch.rand(4, 16, 16)  # attention probabilities live in [0, 1]
    asym = ActQuantizer(8, symmetric=False, granularity="tensor")(x)
    assert asym.unique().numel() <= 256 and asym.min() >= 0 and (asym - x).abs().max() <= 1 / 255
    y = torch.randn(4, 16, 32, requires_grad=True)
    sym = ActQuantizer(8, symmetric=True, granularity="tensor")(y)
    assert sym.unique().numel() <= 255
    sym.sum().backward()
    assert torch.equal(y.grad, torch.ones_like(y))  # straight-through
    per_token = ActQuantizer(8, symmetric=True, granularity="token")(y.detach())
    y2 = y.detach().clone()
    y2[0, 0] *= 100  # an outlier token does not change the other tokens' grids
    assert torch.equal(ActQuantizer(8, granularity="token")(y2)[1], per_token[1])
    with pytest.raises(ValueError):
        ActQuantizer(3)


def _act_formula(x, bits, symmetric, per_token, nonnegative=False):
    """The min-max fake quantization written out as its formula, clamp included."""
    red = (lambda t, f: f(t, dim=-1, keepdim=True)) if per_token else (lambda t, f: f(t))
    if symmetric:
        n = 2 ** (bits - 1) - 1
        step = (red(x.abs(), torch.amax) / n).clamp_min(1e-8)
        return torch.clamp(torch.round(x / step), -n, n) * step
    top = 2 ** bits - 1
    hi = red(x, torch.amax)
    lo = torch.zeros_like(hi) if nonnegative else red(x, torch.amin)
    step = ((hi - lo) / top).clamp_min(1e-8)
    zero = torch.round(-lo / step)
    return (torch.clamp(torch.round(x / step) + zero, 0, top) - zero) * step


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("per_token", [True, False])
def test_activation_quantizer_equals_its_formula_bitwise(bits, per_token):
    """The quantizer's in-place form (fewer passes over the activation) gives exactly the formula's values, on
    heavy-tailed activations with massive outliers, on softmax rows with exact zeros, in fp32 and bf16."""
    g = torch.Generator().manual_seed(bits)
    heavy = torch.distributions.StudentT(2.0).sample((4, 32, 64))
    heavy[0, 3, 7], heavy[2, 5] = 3000.0, 0.0  # a massive activation; an all-zero token
    scores = torch.randn(2, 3, 16, 16, generator=g) * 4
    probs = torch.softmax(scores.masked_fill(torch.ones(16, 16, dtype=torch.bool).triu(1), float("-inf")), -1)
    granularity = "token" if per_token else "tensor"
    for dtype in (torch.float32, torch.bfloat16):
        x, p = heavy.to(dtype), probs.to(dtype)
        for symmetric in (True, False):
            got = ActQuantizer(bits, symmetric=symmetric, granularity=granularity).fake_quant(x)
            assert torch.equal(got, _act_formula(x, bits, symmetric, per_token)), (dtype, symmetric)
        got = ActQuantizer(bits, symmetric=False, granularity=granularity, nonnegative=True).fake_quant(p)
        assert torch.equal(got, _act_formula(p, bits, False, per_token, nonnegative=True)), dtype


def test_attention_probabilities_range_ignores_padding():
    # a query's softmax row, alone and with two padded (masked, exactly 0) keys after it, as a longer sequence in
    # the same batch would add: with the range fixed at 0 the row's real entries quantize alike
    torch.manual_seed(0)
    row = torch.softmax(torch.randn(1, 6) * 3, -1)
    padded = torch.cat([row, torch.zeros(1, 2)], -1)
    probs = ActQuantizer(4, symmetric=False, nonnegative=True)
    assert torch.equal(probs(row), probs(padded)[:, :6])
    minmax = ActQuantizer(4, symmetric=False)
    assert not torch.equal(minmax(row), minmax(padded)[:, :6])  # why: the min moves from the row's least to 0
    with pytest.raises(ValueError, match="symmetric=False"):
        ActQuantizer(8, symmetric=True, nonnegative=True)
