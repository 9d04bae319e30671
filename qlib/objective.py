"""The training objective of one batch: the task loss for a teacher, L_dist (+ lambda * L_cont) against the
teacher for a QuantGPT student (Eq. 5), or XTC's one-stage loss. ``train`` and the benchmark both call
``compute_loss``."""
from __future__ import annotations

from dataclasses import replace

import torch
from transformers.utils import ModelOutput

from .config import TrainConfig
from .losses import logit_distillation, teacher_entropy, total_loss
from .tasks import TASKS, Outputs
from .xtc import xtc_distillation


def compute_loss(cfg: TrainConfig, student, teacher, heads, contrast, batch: dict, want_kl: bool = False,
                 terms: dict | None = None):
    """The training loss of one batch and its logged parts: the task loss for a teacher ("lm"), else
    L_dist (+ lambda * L_cont) against the teacher (Eq. 5), or XTC's one-stage loss. Used by ``train`` and by the
    benchmark. A ``terms`` dict receives L_dist and lambda * L_cont with their graphs (``gradient_parts``)."""
    task = TASKS[cfg.task]
    need_hidden = contrast is not None
    s = task.forward(cfg, student, batch, need_hidden)
    if cfg.resolved_loss == "lm":
        loss = task.task_loss(s, batch)
        return loss, {"lm": loss.detach()}
    with torch.no_grad():
        t = task.forward(cfg, teacher, batch, need_hidden)
    t_contrast = None
    if need_hidden:  # keep the one state L_cont reads: the teacher's others would live on through L_dist's peak
        t_contrast = _contrast_inputs(cfg, t, batch)[0]
        t = _without_states(t)
    if cfg.resolved_loss == "xtc":
        keep = list(cfg.keep_layers) or list(range(len(t.out.attentions)))
        return xtc_distillation(s.out, t.out, keep, s.mask, regression=t.logits.shape[-1] == 1)
    l_dist = logit_distillation(s.logits, t.logits, s.mask, compiled=cfg.compile)
    extra = task.extra_distillation(s, t)
    l_dist = l_dist if extra is None else l_dist + extra
    l_cont = None
    if contrast is not None:
        s_h, c_ids, c_mask = _contrast_inputs(cfg, s, batch)
        l_cont = contrast(heads.student(s_h.float()), heads.teacher(t_contrast.float()), c_ids, c_mask)
    loss = total_loss(l_dist, l_cont, cfg.lam)
    if terms is not None and l_cont is not None:
        terms.update(dist=l_dist, cont=cfg.lam * l_cont)
    parts = {"dist": l_dist.detach(), **({"cont": l_cont.detach()} if l_cont is not None else {})}
    if want_kl:
        parts["kl"] = parts["dist"] - teacher_entropy(t.logits, s.mask)
    return loss, parts


def _without_states(o: Outputs) -> Outputs:
    """``o`` without hidden states, in ``states`` and in the model's output object (which holds them too)."""
    out = o.out
    if isinstance(out, ModelOutput):
        out = type(out)(**{k: v for k, v in out.items() if not k.endswith("hidden_states")})
    return replace(o, out=out, states=None)


def _contrast_inputs(cfg: TrainConfig, o, batch):
    """The hidden states the contrastive loss compares (Table 6: last or first decoder layer, or the encoder), with
    the token ids of their bank rows and their mask."""
    if cfg.contrast_layer == "encoder":
        return o.out.encoder_last_hidden_state, batch["input_ids"], batch["attention_mask"]
    return o.states[-1 if cfg.contrast_layer == "last" else 1], o.ids, o.mask
