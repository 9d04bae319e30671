"""The method chapter's demonstrations: qlib's quantizer and losses agree with the equations written out by hand."""
import pytest
import torch

from qlib import teaching
from qlib.losses import TokenContrastiveLoss

W = torch.tensor([-1.3, -0.7, -0.2, 0.1, 0.45, 0.9])
G = torch.tensor([0.3, -0.2, 0.5, 0.1, -0.4, 0.2])


@pytest.mark.parametrize("bits,gamma", [(2, 1.0), (4, 1.5), (8, 0.7)])
def test_eq7_matches_autograd_and_the_ste_finite_difference(bits, gamma):
    r = teaching.gamma_gradient_check(W, G, gamma=gamma, bits=bits)
    assert r["autograd"] == pytest.approx(r["eq7"], abs=1e-9)
    assert r["finite_difference"] == pytest.approx(r["eq7"], abs=1e-6)


def test_rounded_finite_difference_drops_the_inside_term():
    # frozen codes: d/dgamma sum g * Q(u) * alpha = sum g * Q(u) * mean|w|, without Eq. 7's -w/alpha inside
    r = teaching.gamma_gradient_check(W, G, gamma=1.0, bits=2)
    mean_abs = W.abs().mean().item()
    codes = torch.tensor([-1.0, -1.0, 0.0, 0.0, 1.0, 1.0])  # 2-bit codes of W at alpha = mean|w| = 0.608
    assert r["finite_difference_rounded"] == pytest.approx(float((G * codes).sum()) * mean_abs, abs=1e-6)
    assert r["finite_difference_rounded"] != pytest.approx(r["eq7"], abs=1e-3)


def _toy():
    ids = torch.tensor([[0, 1, 0, 2]])
    teacher = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]])
    student = torch.tensor([[[1.0, 0.2], [0.5, 1.0], [0.0, 1.0], [-1.0, -1.0]]])
    return ids, teacher, student


@pytest.mark.parametrize("temperature", [1.0, 0.1])
def test_contrastive_by_hand_matches_the_library(temperature):
    ids, teacher, student = _toy()
    loss = TokenContrastiveLoss(vocab_size=3, dim=2, num_negatives=3, temperature=temperature)
    value = loss(student, teacher, ids)
    anchors = loss.memory.anchors(student[0], ids[0])
    by_hand = teaching.contrastive_loss_by_hand(anchors, teacher[0], ids[0].tolist(), temperature)
    assert value.item() == pytest.approx(by_hand["mean"], rel=1e-5)
    assert len(by_hand["per_token"]) == 4


def test_bank_update_by_hand_matches_the_library():
    ids, teacher, student = _toy()
    loss = TokenContrastiveLoss(vocab_size=3, dim=2, num_negatives=3, momentum=0.5)
    for _ in range(2):  # the second step mixes the written rows in
        before = loss.memory.vectors.clone()
        loss(student, teacher, ids)
        loss.update_memory()
        expected = teaching.bank_update_by_hand(before, ids[0].tolist(), student[0], 0.5)
        assert torch.allclose(loss.memory.vectors.double(), expected, atol=1e-6)
