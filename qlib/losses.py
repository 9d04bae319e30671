"""Distillation losses: logit distillation (Eq. 4) and token-level contrastive distillation with a memory bank
(Eq. 2-3), with the ablation variants of Table 4, Fig. 7 and Table 6.

Our reading of Eq. 2-3 (the paper's formula and text disagree on details; the book states this reading):
- anchor for position i: ``m * q[t_i] + (1 - m) * h^s_i`` where ``q`` is the memory bank row of token id ``t_i``
  (no gradient through the bank) and ``h^s_i`` the projected student representation;
- positive: the projected teacher representation ``h^t_i`` at the same position;
- negatives: teacher representations ``h^t_j`` at K other (non-padding) positions j of the same sequence whose
  token id differs from ``t_i`` (a repeated token is the same word, not a negative);
- similarity cosine / tau; InfoNCE with the positive in the denominator; mean over non-padding anchors;
- after the step, bank rows are set to the detached anchors (Eq. 3). A token id that occurs several times in a batch
  is updated once, with the mean of its anchors, so the update does not depend on the order of positions.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

NEGATIVE_MODES = ("teacher", "teacher+bank", "bank", "global", "sequence")


def _valid_mask(like: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return torch.ones(like.shape[:2], dtype=torch.bool, device=like.device)
    return attention_mask.to(torch.bool)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is true (all of them when ``mask`` is None)."""
    if mask is None:
        return values.mean()
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def _soft_cross_entropy_rows(student, teacher, weights):
    """Rows of [N, V] logits, in fp32: sum_i w_i * (-sum_v p_teacher(v) log p_student(v)), and its gradient
    w_i * (softmax(s_i) - p_teacher,i) in the logits' dtype."""
    p_t, logp_s = torch.softmax(teacher.float(), dim=-1), torch.log_softmax(student.float(), dim=-1)
    loss = (weights[:, 0] * -(p_t * logp_s).sum(-1)).sum()
    return loss, logp_s.exp_().sub_(p_t).mul_(weights).to(student.dtype)


@functools.cache
def _compiled_rows():
    # one fused kernel per chunk instead of a pass over [rows, V] per operator (what costs time on a GPU)
    return torch.compile(_soft_cross_entropy_rows)


class _SoftCrossEntropy(torch.autograd.Function):
    """``_soft_cross_entropy_rows`` over [N, V] logits, ``chunk`` rows at a time (compiled with ``compiled``).
    Backward, written out: d/ds_i = w_i * (softmax(s_i) - p_teacher,i), computed in the forward chunk by chunk and
    kept as the one full-size tensor (in the logits' dtype), so no fp32 [N, V] copy of the logits, probabilities or
    log-probabilities outlives its chunk."""

    @staticmethod
    def forward(ctx, student, teacher, weights, chunk, compiled):
        rows = _compiled_rows() if compiled else _soft_cross_entropy_rows
        grad = torch.empty_like(student)
        loss = torch.zeros((), dtype=torch.float32, device=student.device)
        for i in range(0, student.shape[0], chunk):
            part, part_grad = rows(student[i:i + chunk], teacher[i:i + chunk], weights[i:i + chunk, None])
            grad[i:i + chunk] = part_grad
            loss += part
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return grad * g.to(grad.dtype), None, None, None, None


KD_CHUNK_ROWS = 256  # rows of the [N, V] logits per chunk: 48 MiB of fp32 at SmolLM2's 49,152-token vocabulary


def logit_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       attention_mask: torch.Tensor | None = None, compiled: bool = False) -> torch.Tensor:
    """Soft cross-entropy -sum_v p_teacher(v) log p_student(v) (Eq. 4), averaged over non-padding tokens (over
    examples for [N, C] classification logits). Computed in chunks by ``_SoftCrossEntropy``: the same value and
    gradient as the formula written out, without fp32 copies of the whole [B, T, V] logits; ``compiled``: each
    chunk by one ``torch.compile``d kernel (a training run's ``compile`` setting)."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits differ in shape: {tuple(student_logits.shape)} vs "
                         f"{tuple(teacher_logits.shape)}")
    V = student_logits.shape[-1]
    if student_logits.dim() == 2 or attention_mask is None:
        rows = student_logits.numel() // V
        weights = torch.full((rows,), 1.0 / rows, device=student_logits.device)
    else:
        m = attention_mask.reshape(-1).float()
        weights = m / m.sum().clamp_min(1.0)
    return _SoftCrossEntropy.apply(student_logits.reshape(-1, V), teacher_logits.detach().reshape(-1, V), weights,
                                   KD_CHUNK_ROWS, compiled)


@torch.no_grad()
def teacher_entropy(teacher_logits: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean entropy of the teacher's distributions: ``logit_distillation - teacher_entropy`` is the KL divergence,
    the part of the soft cross-entropy the student can still reduce (logged as ``kl``)."""
    logp = torch.log_softmax(teacher_logits.float(), dim=-1)
    per_token = -(logp.exp() * logp).sum(-1)
    if teacher_logits.dim() == 2:
        return per_token.mean()
    return masked_mean(per_token, attention_mask)


class MemoryBank(nn.Module):
    """One row per vocabulary id holding the momentum-smoothed student representation of that token (Eq. 3)."""

    def __init__(self, vocab_size: int, dim: int, momentum: float = 0.5):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.register_buffer("vectors", torch.zeros(vocab_size, dim))
        # rows that hold a representation: a never-written row is all zeros (cosine 0 to everything), no negative
        self.register_buffer("written", torch.zeros(vocab_size, dtype=torch.bool))

    def anchors(self, student: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """m * q[t_i] + (1 - m) * h^s_i; the gradient flows to the student only."""
        return self.momentum * self.vectors[ids] + (1.0 - self.momentum) * student

    @torch.no_grad()
    def update(self, ids: torch.Tensor, anchors: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        """Set each token's row to the mean of its anchors in this batch (Eq. 3 with duplicates averaged);
        ``weights`` (1 or 0 per anchor) leaves out padding without a data-dependent shape."""
        ids, anchors = ids.reshape(-1), anchors.detach().reshape(-1, anchors.shape[-1]).to(self.vectors.dtype)
        if ids.numel() == 0:
            return
        w = torch.ones_like(ids, dtype=anchors.dtype) if weights is None else weights.reshape(-1).to(anchors.dtype)
        sums = torch.zeros_like(self.vectors).index_add_(0, ids, anchors * w[:, None])
        counts = torch.zeros(self.vectors.shape[0], device=ids.device, dtype=anchors.dtype).index_add_(0, ids, w)
        hit = counts > 0
        # a select over the whole table, not boolean indexing: no host-device sync in the training step
        self.vectors.copy_(torch.where(hit[:, None], sums / counts.clamp_min(1.0)[:, None], self.vectors))
        self.written |= hit


class TokenContrastiveLoss(nn.Module):
    """Token-level contrastive distillation (QuantGPT Eq. 2) on already-projected ``[B, T, d]`` representations.

    ``negatives``: ``"teacher"`` (the paper's method), ``"teacher+bank"`` ("fp+quan.": teacher and bank
    representations of the sampled positions), ``"bank"`` ("quan. only"), ``"global"`` (bank rows of random
    token ids among those already written), ``"sequence"`` (sequence-level: mean-pooled sequences, in-batch
    negatives). A negative is never the anchor's own token id, and bank rows never written are never negatives.
    ``use_bank=False`` uses the immediate student representation instead of the bank (Fig. 7).
    """

    def __init__(self, vocab_size: int, dim: int, num_negatives: int, temperature: float = 0.1,
                 momentum: float = 0.5, negatives: str = "teacher", use_bank: bool = True):
        super().__init__()
        if negatives not in NEGATIVE_MODES:
            raise ValueError(f"unknown negative sampling {negatives!r}; choose from {NEGATIVE_MODES}")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.num_negatives, self.temperature = num_negatives, temperature
        self.negatives, self.use_bank = negatives, use_bank
        self.memory = MemoryBank(vocab_size, dim, momentum)
        self.pending: list[tuple[torch.Tensor, ...]] = []  # (ids, anchors, weights) of the calls since the update

    def _sample_positions(self, allowed: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """K distinct random positions j per anchor i among those ``allowed[b, i, j]``: [B, T, K] indices and a
        [B, T, K] mask (False where fewer than K positions are allowed)."""
        B, T, _ = allowed.shape
        K = self.num_negatives
        if K > T - 1:
            raise ValueError(f"num_negatives={K} needs sequences of at least {K + 1} tokens, got length {T}")
        scores = torch.rand(B, T, T, device=allowed.device, generator=generator)
        top, idx = scores.masked_fill(~allowed, -1.0).topk(K, dim=-1)
        return idx, top >= 0

    def forward(self, student_repr: torch.Tensor, teacher_repr: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None, generator: torch.Generator | None = None):
        if student_repr.shape != teacher_repr.shape or student_repr.dim() != 3:
            raise ValueError(f"expected student and teacher representations of the same [B, T, d] shape, got "
                             f"{tuple(student_repr.shape)} and {tuple(teacher_repr.shape)}")
        if input_ids.shape != student_repr.shape[:2]:
            raise ValueError(f"input_ids {tuple(input_ids.shape)} do not match representations "
                             f"{tuple(student_repr.shape[:2])}")
        valid = _valid_mask(student_repr, attention_mask)
        teacher = teacher_repr  # may carry gradient into the teacher's projection head
        anchors = self.memory.anchors(student_repr, input_ids) if self.use_bank else student_repr
        if self.negatives == "sequence":
            loss = self._sequence_loss(anchors, teacher, valid)
        else:
            loss = self._token_loss(anchors, teacher, input_ids, valid, generator)
        d = anchors.shape[-1]  # every position, padding weighted 0: no data-dependent shape (no host sync)
        self.pending.append((input_ids.reshape(-1), anchors.detach().reshape(-1, d), valid.reshape(-1).float()))
        return loss

    def take_pending(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (ids, anchors, weights) of every call since the last update (all micro-batches of a step), and
        forget them."""
        dim = self.memory.vectors.shape[1]
        if not self.pending:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dim), torch.zeros(0)
        ids, rows, weights = (torch.cat(parts) for parts in zip(*self.pending))
        self.pending = []
        return ids, rows, weights

    def update_memory(self, ids: torch.Tensor | None = None, anchors: torch.Tensor | None = None,
                      weights: torch.Tensor | None = None) -> None:
        """Apply Eq. 3 after the optimizer step: to the pending updates of this process, or to the given ones
        (the trainer passes the updates gathered from every rank, so that all banks stay identical)."""
        if ids is None:
            ids, anchors, weights = self.take_pending()
        if self.use_bank and ids.numel():
            dev = self.memory.vectors.device
            self.memory.update(ids.to(dev), anchors.to(dev), None if weights is None else weights.to(dev))

    def _token_loss(self, anchors, teacher, input_ids, valid, generator):
        a = F.normalize(anchors.float(), dim=-1)
        t = F.normalize(teacher.float(), dim=-1)
        pos = (a * t).sum(-1, keepdim=True)  # [B, T, 1]
        B, T, d = a.shape
        written = self.memory.written
        if self.negatives == "global":
            pool = written.nonzero().squeeze(1)  # token ids whose bank row holds a representation
            pick = torch.randint(0, max(len(pool), 1), (B, T, self.num_negatives), device=a.device,
                                 generator=generator)
            rand_ids = pool[pick] if len(pool) else torch.zeros_like(pick)
            neg = F.normalize(self.memory.vectors[rand_ids].float(), dim=-1)
            neg_sim = torch.einsum("btd,btkd->btk", a, neg)
            neg_ok = (rand_ids != input_ids[..., None]) & (len(pool) > 0)
        else:
            # other non-padding positions holding another token id
            allowed = valid[:, None, :] & (input_ids[:, None, :] != input_ids[:, :, None])
            idx, neg_ok = self._sample_positions(allowed, generator)
            batch = torch.arange(B, device=a.device)[:, None, None]
            sims, oks = [], []
            if self.negatives in ("teacher", "teacher+bank"):
                sims.append(_sampled_similarity(a, t, idx))
                oks.append(neg_ok)
            if self.negatives in ("bank", "teacher+bank"):
                if self.use_bank:
                    bank, bank_ok = self.memory.vectors[input_ids], written[input_ids]
                else:  # the immediate student representations of this batch: always there
                    bank, bank_ok = anchors.detach(), torch.ones_like(valid)
                bank = F.normalize(bank.float(), dim=-1)
                sims.append(_sampled_similarity(a, bank, idx))
                oks.append(neg_ok & bank_ok[batch, idx])
            neg_sim, neg_ok = torch.cat(sims, dim=-1), torch.cat(oks, dim=-1)
        logits = torch.cat([pos, neg_sim], dim=-1) / self.temperature
        logits = logits.masked_fill(torch.cat([torch.ones_like(pos, dtype=torch.bool), neg_ok], -1).logical_not(),
                                    float("-inf"))
        return masked_mean(-torch.log_softmax(logits, dim=-1)[..., 0], valid)

    def _sequence_loss(self, anchors, teacher, valid):
        m = valid.to(anchors.dtype)[..., None]
        a = F.normalize(((anchors * m).sum(1) / m.sum(1).clamp_min(1.0)).float(), dim=-1)  # [B, d]
        t = F.normalize(((teacher * m).sum(1) / m.sum(1).clamp_min(1.0)).float(), dim=-1)
        logits = a @ t.T / self.temperature  # positive on the diagonal, other sequences as negatives
        return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


def _sampled_similarity(anchors: torch.Tensor, keys: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """[B, T, K]: anchors[b, t] . keys[b, idx[b, t, k]], as one [T, T] product per sequence and a gather, so the
    [B, T, K, d] tensor of gathered negatives (and its gradient) never exists: 537 MB each in fp32 at the paper's
    32 x 512 tokens, 64 negatives and 128 dimensions, against 34 MB for the products."""
    return torch.einsum("btd,bsd->bts", anchors, keys).gather(-1, idx)


class ContrastiveHeads(nn.Module):
    """Linear projections of student and teacher hidden states into the contrastive space (Sec. 3.1)."""

    def __init__(self, hidden: int, dim: int):
        super().__init__()
        self.student = nn.Linear(hidden, dim)
        self.teacher = nn.Linear(hidden, dim)


def total_loss(l_dist: torch.Tensor, l_cont: torch.Tensor | None, lam: float = 0.1) -> torch.Tensor:
    """L = lambda * L_cont + L_dist (Eq. 5)."""
    return l_dist if l_cont is None else l_dist + lam * l_cont
