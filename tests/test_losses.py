"""Distillation losses against direct computations on small inputs."""
import math

import pytest
import torch
import torch.nn.functional as F

from qlib.losses import MemoryBank, TokenContrastiveLoss, logit_distillation, total_loss


def test_logit_distillation_is_soft_cross_entropy_over_non_padding_tokens():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    total, n = 0.0, 0
    for b in range(2):
        for i in range(5):
            if mask[b, i]:
                p = torch.softmax(t[b, i], -1)
                total += -(p * torch.log_softmax(s[b, i], -1)).sum()
                n += 1
    assert torch.allclose(logit_distillation(s, t, mask), total / n)
    with pytest.raises(ValueError, match="shape"):
        logit_distillation(s, t[:, :4])


@pytest.mark.parametrize("shape,masked,compiled", [((3, 7, 11), True, False), ((3, 7, 11), False, False),
                                                   ((6, 20), False, False),
                                                   pytest.param((3, 7, 11), True, True, marks=pytest.mark.slow)])
def test_chunked_distillation_has_the_written_out_value_and_gradient(shape, masked, compiled, monkeypatch):
    from qlib import losses
    monkeypatch.setattr(losses, "KD_CHUNK_ROWS", 4)  # several chunks, the last one partial
    g = torch.Generator().manual_seed(1)
    s = (3 * torch.randn(*shape, generator=g)).requires_grad_()
    t = 3 * torch.randn(*shape, generator=g)
    mask = (torch.rand(shape[:2], generator=g) > 0.3).long() if masked else None
    per = -(torch.softmax(t, -1) * torch.log_softmax(s, -1)).sum(-1)
    ref = (per * mask).sum() / mask.sum() if masked else per.mean()
    (ref_grad,) = torch.autograd.grad(2.5 * ref, s)
    out = logit_distillation(s, t, mask, compiled=compiled)
    (grad,) = torch.autograd.grad(2.5 * out, s)
    assert torch.allclose(out, ref, atol=1e-6) and torch.allclose(grad, ref_grad, atol=1e-6)
    if masked:  # padding positions get no gradient
        assert grad[mask == 0].abs().max() == 0


def _direct_infonce(anchor, teacher, valid, tau):
    """Loop version of Eq. 2 with every other valid position of the sequence as a negative."""
    losses = []
    B, T, _ = anchor.shape
    for b in range(B):
        for i in range(T):
            if not valid[b, i]:
                continue
            pos = F.cosine_similarity(anchor[b, i], teacher[b, i], dim=0) / tau
            negs = [F.cosine_similarity(anchor[b, i], teacher[b, j], dim=0) / tau
                    for j in range(T) if j != i and valid[b, j]]
            denom = torch.logsumexp(torch.stack([pos, *negs]), 0)
            losses.append(denom - pos)
    return torch.stack(losses).mean()


def test_contrastive_loss_equals_direct_infonce_with_bank_anchor():
    g = torch.Generator().manual_seed(1)
    B, T, d, V = 2, 6, 4, 11
    s, t = torch.randn(B, T, d, generator=g), torch.randn(B, T, d, generator=g)
    ids = torch.stack([torch.randperm(V, generator=g)[:T] for _ in range(B)])  # no repeated token in a sequence
    loss_fn = TokenContrastiveLoss(V, d, num_negatives=T - 1, temperature=0.1, momentum=0.5)
    loss_fn.memory.vectors.copy_(torch.randn(V, d, generator=g))
    anchor = 0.5 * loss_fn.memory.vectors[ids] + 0.5 * s
    expected = _direct_infonce(anchor, t, torch.ones(B, T, dtype=torch.bool), 0.1)
    assert torch.allclose(loss_fn(s, t, ids), expected, atol=1e-5)


def test_padding_is_never_an_anchor_or_negative():
    g = torch.Generator().manual_seed(2)
    B, T, d, V = 2, 7, 4, 13
    s, t = torch.randn(B, T, d, generator=g), torch.randn(B, T, d, generator=g)
    ids = torch.stack([torch.randperm(V, generator=g)[:T] for _ in range(B)])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    loss_fn = TokenContrastiveLoss(V, d, num_negatives=T - 1, use_bank=False)
    expected = _direct_infonce(s, t, mask.bool(), 0.1)
    assert torch.allclose(loss_fn(s, t, ids, mask), expected, atol=1e-5)
    # changing padded positions changes nothing
    s2, t2 = s.clone(), t.clone()
    s2[0, 4:] = 100.0
    t2[0, 4:] = -100.0
    assert torch.allclose(loss_fn(s2, t2, ids, mask), expected, atol=1e-5)


def test_padding_never_writes_the_bank():
    loss_fn = TokenContrastiveLoss(10, 4, num_negatives=2)
    ids = torch.tensor([[1, 2, 3, 9, 9]])  # 9 only at padded positions
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    loss_fn(torch.randn(1, 5, 4), torch.randn(1, 5, 4), ids, mask)
    loss_fn.update_memory()
    assert loss_fn.memory.written.tolist() == [i in (1, 2, 3) for i in range(10)]
    assert loss_fn.memory.vectors[9].abs().sum() == 0 and loss_fn.memory.vectors[1].abs().sum() > 0


def test_negative_sampling_draws_distinct_other_positions():
    loss_fn = TokenContrastiveLoss(10, 4, num_negatives=3)
    valid = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    allowed = valid[:, None, :] & ~torch.eye(8, dtype=torch.bool)[None]
    idx, ok = loss_fn._sample_positions(allowed, torch.Generator().manual_seed(0))
    for i in range(5):
        chosen = idx[0, i][ok[0, i]].tolist()
        assert len(chosen) == 3 and len(set(chosen)) == 3 and i not in chosen and all(j < 5 for j in chosen)
    with pytest.raises(ValueError, match="num_negatives"):
        TokenContrastiveLoss(10, 4, num_negatives=8)(torch.randn(1, 8, 4), torch.randn(1, 8, 4),
                                                      torch.zeros(1, 8, dtype=torch.long))


def test_memory_bank_follows_eq3_and_averages_duplicates():
    bank = MemoryBank(5, 3, momentum=0.5)
    bank.vectors.copy_(torch.arange(15.0).view(5, 3))
    h = torch.ones(4, 3)
    ids = torch.tensor([1, 2, 2, 4])
    anchors = bank.anchors(h, ids)
    assert torch.allclose(anchors[0], 0.5 * torch.tensor([3.0, 4, 5]) + 0.5)
    h2 = h.clone()
    h2[2] = 3.0
    anchors = bank.anchors(h2, ids)
    bank.update(ids, anchors)
    assert torch.allclose(bank.vectors[1], 0.5 * torch.tensor([3.0, 4, 5]) + 0.5)
    assert torch.allclose(bank.vectors[2], 0.5 * torch.tensor([6.0, 7, 8]) + 0.5 * 2.0)  # mean of 1 and 3
    assert torch.equal(bank.vectors[0], torch.tensor([0.0, 1, 2]))  # untouched rows stay


def test_bank_update_happens_after_the_step_and_gradient_skips_the_bank():
    loss_fn = TokenContrastiveLoss(7, 4, num_negatives=2)
    s = torch.randn(1, 5, 4, requires_grad=True)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    before = loss_fn.memory.vectors.clone()
    loss_fn(s, torch.randn(1, 5, 4), ids).backward()
    assert torch.equal(loss_fn.memory.vectors, before)  # not yet
    assert s.grad is not None and loss_fn.memory.vectors.grad is None
    loss_fn.update_memory()
    assert torch.allclose(loss_fn.memory.vectors[ids[0]], 0.5 * s.detach()[0])


@pytest.mark.parametrize("mode", ["teacher", "teacher+bank", "bank", "global", "sequence"])
@pytest.mark.parametrize("use_bank", [True, False])
def test_every_variant_gives_a_finite_differentiable_loss(mode, use_bank):
    loss_fn = TokenContrastiveLoss(20, 8, num_negatives=4, negatives=mode, use_bank=use_bank)
    loss_fn.memory.vectors.normal_()
    loss_fn.memory.written.fill_(True)
    s = torch.randn(3, 9, 8, requires_grad=True)
    loss = loss_fn(s, torch.randn(3, 9, 8), torch.randint(0, 20, (3, 9)))
    loss.backward()
    assert torch.isfinite(loss) and s.grad.abs().sum() > 0


def test_sampled_similarity_equals_gathering_the_negatives_first():
    """The [T, T]-product-then-gather form has the value and gradients of gathering [B, T, K, d] negatives."""
    from qlib.losses import _sampled_similarity
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 9, 8, generator=g, requires_grad=True)
    keys = torch.randn(3, 9, 8, generator=g, requires_grad=True)
    idx = torch.randint(0, 9, (3, 9, 4), generator=g)
    gathered = torch.einsum("btd,btkd->btk", a, keys[torch.arange(3)[:, None, None], idx])
    fast = _sampled_similarity(a, keys, idx)
    assert torch.allclose(fast, gathered, atol=1e-6)
    for x, y in zip(torch.autograd.grad(gathered.square().sum(), (a, keys)),
                    torch.autograd.grad(fast.square().sum(), (a, keys))):
        assert torch.allclose(x, y, atol=1e-5)


def test_sequence_level_variant_is_in_batch_infonce_on_mean_pooled_sequences():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    loss_fn = TokenContrastiveLoss(9, 5, num_negatives=2, negatives="sequence", use_bank=False)
    a, tt = F.normalize(s.mean(1), dim=-1), F.normalize(t.mean(1), dim=-1)
    expected = F.cross_entropy(a @ tt.T / 0.1, torch.arange(3))
    assert torch.allclose(loss_fn(s, t, torch.zeros(3, 4, dtype=torch.long)), expected, atol=1e-6)


def test_total_loss_and_bad_arguments():
    assert total_loss(torch.tensor(2.0), torch.tensor(3.0), 0.1).item() == pytest.approx(2.3)
    assert total_loss(torch.tensor(2.0), None).item() == 2.0
    for kwargs in ({"negatives": "nope"}, {"num_negatives": 0}, {"temperature": 0.0}, {"momentum": 1.0}):
        with pytest.raises(ValueError):
            TokenContrastiveLoss(5, 4, **{"num_negatives": 2, **kwargs})
    with pytest.raises(ValueError, match="shape"):
        TokenContrastiveLoss(5, 4, 2)(torch.randn(1, 4, 4), torch.randn(1, 4, 3), torch.zeros(1, 4).long())
    assert math.isfinite(TokenContrastiveLoss(5, 4, 2)(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4),
                                                       torch.zeros(1, 4).long()).item())
