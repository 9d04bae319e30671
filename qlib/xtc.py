"""XTC (Wu et al. 2022): layer reduction plus binary/ternary weights, trained with one distillation stage.

- ``reduce_layers(model, keep)``: a shallower student that copies the kept Transformer layers of its teacher and its
  embeddings, pooler, classifier (BERT) or final norm and head (decoders).
- ``xtc_distillation``: soft cross-entropy on logits (MSE for regression) + MSE on attention probabilities + MSE on
  hidden states (index 0 = embeddings), with the layer map that follows the kept layers -- from step 0.
- The recipe (``qlib.experiments.xtc_grid``): step 1 layer reduction distilled in full precision; step 2 binary
  (``bwn``) or ternary (``twn``) weights with 8-bit symmetric per-token activations, initialised from step 1 and
  distilled from the same teacher; lr 5e-5, fp32.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .losses import logit_distillation, masked_mean
from .modules import QuantConfig, layer_list


def reduce_layers(model: nn.Module, keep: list[int] | tuple[int, ...]) -> nn.Module:
    """A copy of ``model`` that keeps only the Transformer layers ``keep`` (0-based, in order); everything else
    (embeddings, pooler, classifier, final norm, head) is copied unchanged."""
    owner, attr, layers = layer_list(model)
    keep = list(keep)
    if not keep or sorted(set(keep)) != keep or keep[0] < 0 or keep[-1] >= len(layers):
        raise ValueError(f"keep must be increasing distinct layer indices in [0, {len(layers) - 1}], got {keep}")
    student = copy.deepcopy(model)
    s_owner, _, s_layers = layer_list(student)
    setattr(s_owner, attr, nn.ModuleList([s_layers[i] for i in keep]))
    for new_idx, layer in enumerate(getattr(s_owner, attr)):  # decoders index their KV cache by layer
        for m in layer.modules():
            if hasattr(m, "layer_idx"):
                m.layer_idx = new_idx
    cfg = student.config
    for name in ("num_hidden_layers", "n_layer"):
        if hasattr(cfg, name):
            setattr(cfg, name, len(keep))
    if getattr(cfg, "layer_types", None) is not None:
        cfg.layer_types = [cfg.layer_types[i] for i in keep]
    student.qlib_kept_layers = keep
    return student


def layer_map(keep: list[int]) -> list[tuple[int, int]]:
    """(student hidden-state index, teacher hidden-state index) pairs: embeddings, then each kept layer's output."""
    return [(0, 0)] + [(j + 1, t + 1) for j, t in enumerate(keep)]


def xtc_distillation(student_out, teacher_out, keep: list[int], attention_mask: torch.Tensor | None = None,
                     regression: bool = False) -> tuple[torch.Tensor, dict]:
    """XTC's one-stage KD loss: logits (soft CE, or MSE for regression) + attention MSE + hidden-state MSE.
    Hidden states and attentions are compared at the kept layers; padding positions are excluded."""
    s_logits, t_logits = student_out.logits.float(), teacher_out.logits.float().detach()
    l_logit = F.mse_loss(s_logits, t_logits) if regression else logit_distillation(s_logits, t_logits)
    mask = None if attention_mask is None else attention_mask.to(s_logits.dtype)
    l_hidden = s_logits.new_zeros(())
    for si, ti in layer_map(keep):
        diff = (student_out.hidden_states[si].float() - teacher_out.hidden_states[ti].float().detach()) ** 2
        l_hidden = l_hidden + masked_mean(diff.mean(-1), mask)
    l_att = s_logits.new_zeros(())
    for j, t in enumerate(keep):
        diff = (student_out.attentions[j].float() - teacher_out.attentions[t].float().detach()) ** 2
        if mask is None:
            l_att = l_att + diff.mean()
        else:  # queries and keys at padding positions do not count
            m2 = mask[:, None, :, None] * mask[:, None, None, :]
            l_att = l_att + (diff * m2).sum() / (m2.sum() * diff.shape[1]).clamp_min(1.0)
    total = l_logit + l_att + l_hidden
    return total, {"logit": l_logit.detach(), "att": l_att.detach(), "hidden": l_hidden.detach()}


def xtc_quant_config(method: str, bits: int, e_bits: int | None = None, a_bits: int | None = 8) -> QuantConfig:
    """XTC's quantization: binary/ternary weights (word embedding per row, same bits), 8-bit symmetric per-token
    activations at every linear input; attention probabilities stay in full precision. Other embedding or
    activation bits are not XTC's recipe: an error, not a silent override."""
    if e_bits not in (None, bits) or a_bits != 8:
        raise ValueError(f"XTC quantizes the embedding like the weights ({bits} bits) and activations at 8 bits; "
                         f"got e_bits={e_bits}, a_bits={a_bits}")
    return QuantConfig(method, bits, bits, 8, act_granularity="token", quantize_attention_probs=False,
                       asymmetric_ffn_input=False)
