"""Quantized modules and ``quantize_model``: a Hugging Face model becomes its quantized student by module
replacement (no copied modeling files).

Placement follows the paper (Sec. 2.1): every weight matrix inside the Transformer layers at ``w_bits`` with one
scale per matrix; the word embedding at ``e_bits`` with one scale per row (a tied output head uses the same
quantized table); activations at ``a_bits`` -- symmetric at linear-layer inputs, asymmetric for the attention
probabilities and for the input of the FFN's second linear layer. Norms, biases and position embeddings stay in full
precision. Attention probabilities are quantized through ``transformers``' ``AttentionInterface``, so the same code
serves GPT-2, Llama, BART and BERT.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
from transformers.pytorch_utils import Conv1D

from .quant import QUANTIZERS, ActQuantizer, MDSQuantizer, WeightQuantizer, check_bits, make_quantizer

FULL_PRECISION = (None, 32)

# module names (relative to the model) of the FFN's second linear layer, whose input follows GeLU/SiLU
SECOND_FFN = re.compile(r"(mlp\.c_proj|mlp\.down_proj|\.fc2|(?<!attention)\.output\.dense)$")
# a module inside a Transformer layer: the path goes through a ModuleList index (h.0, layers.3, layer.11)
IN_LAYER = re.compile(r"(^|\.)(h|layers|layer|block)\.(\d+)\.")


def layer_list(model) -> tuple[nn.Module, str, nn.ModuleList]:
    """(owner, attribute name, the ModuleList) of a model's Transformer layers (BERT, Llama, GPT-2 layouts)."""
    for owner_path, attr in (("bert.encoder", "layer"), ("encoder", "layer"), ("model", "layers"),
                             ("transformer", "h")):
        try:
            owner = model.get_submodule(owner_path)
        except AttributeError:
            continue
        layers = getattr(owner, attr, None)
        if isinstance(layers, nn.ModuleList):
            return owner, attr, layers
    raise TypeError(f"no Transformer layer list found in {type(model).__name__}")


def compile_layers(model: nn.Module) -> nn.Module:
    """``torch.compile`` every Transformer layer in place (regional compilation): the layers share their code, so
    one layer's graph is compiled once and reused by all of them instead of tracing the whole model, and the
    fake-quantizers inside a layer fuse with it. Embeddings, the tied head and the losses stay eager. The state
    dict keeps its names, so checkpoints and the packed export are unchanged."""
    for layer in layer_list(model)[2]:
        layer.compile()
    return model


def layer_index(name: str) -> tuple[int, str] | None:
    """(layer index, the rest of the name) of a module or parameter inside a Transformer layer, else None."""
    m = IN_LAYER.search(name + "." if not name.endswith(".") else name)
    return (int(m.group(3)), name[m.end():].rstrip(".")) if m else None


@dataclass
class QuantConfig:
    """What to quantize and how. ``e_bits`` defaults to ``w_bits``; ``w_bits``/``e_bits``/``a_bits`` 32 or None:
    that part stays in full precision (``w_bits=32, a_bits=8``: activations alone, for the granularity ablation). ``embed_method`` defaults to ``method``. ``extra_modules``: names of further linear layers to
    quantize at ``w_bits`` (e.g. the multiple-choice head of double-head GPT-2)."""

    method: str = "mds"
    w_bits: int = 2
    e_bits: int | None = None
    a_bits: int | None = 8
    embed_method: str | None = None
    act_granularity: str = "token"  # one range per position (causal); "tensor": over the whole batch (ablation)
    quantize_attention_probs: bool = True
    asymmetric_ffn_input: bool = True  # XTC quantizes every linear input symmetrically
    extra_modules: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.e_bits is None:
            self.e_bits = self.w_bits
        if self.embed_method is None:
            self.embed_method = self.method
        if self.w_bits not in FULL_PRECISION:
            check_bits(self.method, self.w_bits)
        if self.e_bits not in FULL_PRECISION:
            check_bits(self.embed_method, self.e_bits)
        if self.a_bits not in FULL_PRECISION and self.a_bits not in (2, 4, 8):
            raise ValueError(f"a_bits must be 2, 4, 8 or 32/None (no activation quantization), got {self.a_bits!r}")
        if self.act_granularity not in ("tensor", "token"):
            raise ValueError(f"act_granularity must be 'tensor' or 'token', got {self.act_granularity!r}")
        self.extra_modules = tuple(self.extra_modules)

    @property
    def label(self) -> str:
        w, e, a = (32 if b in FULL_PRECISION else b for b in (self.w_bits, self.e_bits, self.a_bits))
        return f"{w}-{e}-{a}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, s: str) -> "QuantConfig":
        return cls(**json.loads(s))


class _QuantizedWeight(nn.Module):
    """Base of the modules with a quantized ``weight``. Without autograd (evaluation, generation) the quantized
    weight is kept and reused until the weight or the quantizer's state changes (tracked by tensor versions, which
    every in-place update bumps), so that evaluating a student does not quantize every matrix once per batch; the
    first forward with autograd drops it."""

    weight: nn.Parameter
    weight_quantizer: WeightQuantizer | None
    _eval_cache: tuple | None = None

    def _state_key(self) -> tuple:
        q = self.weight_quantizer
        tensors = [self.weight, *q.parameters(), *q.buffers(), getattr(q, "second_moment", None)]
        return (q.training,) + tuple((id(t), t._version) for t in tensors if t is not None)

    def quantized_weight(self) -> torch.Tensor:
        if self.weight_quantizer is None:
            return self.weight
        if torch.is_grad_enabled() or torch.compiler.is_compiling():  # a compiled graph re-quantizes, fused
            self._eval_cache = None
            return self.weight_quantizer(self.weight)
        key = self._state_key()
        if self._eval_cache is None or self._eval_cache[0] != key:
            self._eval_cache = None  # free the old copy first
            self._eval_cache = (key, self.weight_quantizer(self.weight))
        return self._eval_cache[1]


class QuantLinear(_QuantizedWeight):
    """A linear layer (``nn.Linear`` or GPT-2's transposed ``Conv1D``) with fake-quantized weight and input.

    It keeps the original ``weight``/``bias`` Parameters under the same names, so state dicts stay compatible."""

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter | None, weight_quantizer: WeightQuantizer | None,
                 act_quantizer: ActQuantizer | None, transposed: bool):
        super().__init__()
        self.weight, self.bias = weight, bias
        self.weight_quantizer, self.act_quantizer = weight_quantizer, act_quantizer
        self.transposed = transposed  # Conv1D stores [in, out]

    def forward(self, x):
        if self.act_quantizer is not None:
            x = self.act_quantizer(x)
        w = self.quantized_weight()
        return F.linear(x, w.t() if self.transposed else w, self.bias)

    def extra_repr(self):
        out, inp = (self.weight.shape[1], self.weight.shape[0]) if self.transposed else self.weight.shape
        return f"in_features={inp}, out_features={out}, transposed={self.transposed}"


class QuantEmbedding(_QuantizedWeight):
    """A word embedding whose table is fake-quantized row-wise. ``embed_scale`` keeps BART's scaled embedding."""

    def __init__(self, source: nn.Embedding, weight_quantizer: WeightQuantizer | None):
        super().__init__()
        self.weight = source.weight
        self.weight_quantizer = weight_quantizer
        self.padding_idx = source.padding_idx
        self.num_embeddings, self.embedding_dim = source.weight.shape
        self.embed_scale = getattr(source, "embed_scale", None)
        self.has_tied_head = False  # set by QuantTiedHead
        self._shared = None  # (weight version, grad mode, quantized table) of the last forward, for the tied head

    def forward(self, input_ids):
        w_q = self.quantized_weight()
        if self.has_tied_head and self.weight_quantizer is not None:
            self._shared = (self.weight._version, torch.is_grad_enabled(), w_q)
        out = F.embedding(input_ids, w_q, self.padding_idx)
        return out if self.embed_scale is None else out * self.embed_scale

    def take_shared_weight(self) -> torch.Tensor:
        """The quantized table of this forward pass, handed once to the tied head: quantizing a 49k-row table a
        second time per step costs as much as its first time, and one shared tensor gives the same gradient (the
        quantizer's backward is linear in the incoming gradient). Recomputed when the weight changed since."""
        shared, self._shared = self._shared, None
        if torch.compiler.is_compiling():  # one traced forward: nothing changes the weight in between
            return shared[2] if shared is not None else self.quantized_weight()
        if shared is not None and shared[0] == self.weight._version and shared[1] == torch.is_grad_enabled():
            return shared[2]
        return self.quantized_weight()


class QuantTiedHead(nn.Module):
    """An output head tied to a quantized word embedding: logits use the same quantized table."""

    def __init__(self, embedding: QuantEmbedding, bias: nn.Parameter | None):
        super().__init__()
        self.embedding = [embedding]  # a list hides it from the module tree (it is owned by the model's embeddings)
        embedding.has_tied_head = True
        self.bias = bias

    @property
    def weight(self):
        return self.embedding[0].weight

    def forward(self, x):
        return F.linear(x, self.embedding[0].take_shared_weight(), self.bias)


# ----------------------------------------------------------------------------------------------------------------
# Attention probabilities through transformers' AttentionInterface
# ----------------------------------------------------------------------------------------------------------------

ATTN_IMPL = "qlib_quant"


def quantized_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention whose softmax output goes through ``module.attn_probs_quantizer`` (when set)."""
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:  # grouped-query attention (Llama): share each key/value head across its query heads
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        mask = attention_mask[..., : key.shape[-2]]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask
    elif kwargs.get("is_causal", False) or getattr(module, "is_causal", False):
        q_len, k_len = scores.shape[-2:]
        causal = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).tril(k_len - q_len)
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    quantizer = getattr(module, "attn_probs_quantizer", None)
    if quantizer is not None:
        probs = quantizer(probs)
    probs = F.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return out, probs


AttentionInterface.register(ATTN_IMPL, quantized_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPL, eager_mask)  # an additive float mask, as eager attention uses


def _set_attention_implementation(model: nn.Module, name: str) -> None:
    for m in model.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation"):
            cfg._attn_implementation = name


def _attention_modules(model: nn.Module):
    """Self/cross-attention modules of every supported architecture (those that call the AttentionInterface)."""
    for name, m in model.named_modules():
        if type(m).__name__.endswith(("Attention", "SelfAttention")) and IN_LAYER.search(name + "."):
            if any(isinstance(c, (nn.Linear, Conv1D, QuantLinear)) for c in m.children()):
                yield name, m


# ----------------------------------------------------------------------------------------------------------------
# quantize_model
# ----------------------------------------------------------------------------------------------------------------


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _act(config: QuantConfig, symmetric: bool, nonnegative: bool = False) -> ActQuantizer | None:
    if config.a_bits in FULL_PRECISION:
        return None
    return ActQuantizer(config.a_bits, symmetric=symmetric, granularity=config.act_granularity,
                        nonnegative=nonnegative)


def quantize_model(model: nn.Module, config: QuantConfig) -> nn.Module:
    """Turn ``model`` (in place) into its quantized student and return it. Copy the teacher first if you need it."""
    if getattr(model, "qlib_config", None) is not None:
        raise ValueError("model is already quantized (quantize a copy of the full-precision model instead)")
    input_emb = model.get_input_embeddings()
    if not isinstance(input_emb, nn.Embedding):
        raise TypeError(f"unsupported input embedding type {type(input_emb).__name__}")
    emb_weight = input_emb.weight

    # 1. the word embedding (and every module sharing its table), one row-wise quantizer for all of them
    emb_q = None
    if config.e_bits not in FULL_PRECISION:
        emb_q = make_quantizer(config.embed_method, config.e_bits, "row", rows=emb_weight.shape[0])
    quant_emb = None
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.Embedding) and m.weight is emb_weight:
            quant_emb = QuantEmbedding(m, emb_q)
            _set_module(model, name, quant_emb)

    # 2. output heads: tied ones read the quantized table; an untied output embedding gets its own row quantizer
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.Linear) and m is out_emb:
            if m.weight is emb_weight:
                _set_module(model, name, QuantTiedHead(quant_emb, m.bias))
            elif config.e_bits not in FULL_PRECISION:
                q = make_quantizer(config.embed_method, config.e_bits, "row", rows=m.weight.shape[0])
                _set_module(model, name, QuantLinear(m.weight, m.bias, q, None, transposed=False))

    # 3. weight matrices of the Transformer layers (+ requested extras), with their input quantizers
    for name, m in list(model.named_modules()):
        if not isinstance(m, (nn.Linear, Conv1D)):
            continue
        if not (IN_LAYER.search(name) or name in config.extra_modules):
            continue
        symmetric = not (config.asymmetric_ffn_input and SECOND_FFN.search(name))
        q = None if config.w_bits in FULL_PRECISION else make_quantizer(config.method, config.w_bits, "tensor")
        _set_module(model, name, QuantLinear(m.weight, m.bias, q, _act(config, symmetric),
                                             transposed=isinstance(m, Conv1D)))
    modules = dict(model.named_modules())
    missing = [n for n in config.extra_modules if not isinstance(modules.get(n), QuantLinear)]
    if missing:
        raise ValueError(f"extra_modules not found as linear layers: {missing}")

    # 4. attention probabilities
    if config.quantize_attention_probs and config.a_bits not in FULL_PRECISION:
        for _, m in _attention_modules(model):
            m.attn_probs_quantizer = _act(config, symmetric=False, nonnegative=True)
    _set_attention_implementation(model, ATTN_IMPL)
    model.qlib_config = config
    return model


def quantized_modules(model: nn.Module):
    """(name, module) of every module that holds a weight quantizer, once per weight (BART's shared embedding
    appears as three modules over one table; the first name is used)."""
    seen = set()
    for name, m in model.named_modules():
        if isinstance(m, (QuantLinear, QuantEmbedding)) and m.weight_quantizer is not None:
            if id(m.weight) not in seen:
                seen.add(id(m.weight))
                yield name, m


@torch.no_grad()
def dequantized_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights the forward pass really uses (fake-quantized values), by parameter name; quantizer state
    (clipping factors, steps) is left out."""
    out = {k: v.detach().clone() for k, v in model.state_dict().items() if "quantizer." not in k}
    for name, m in quantized_modules(model):
        out[f"{name}.weight"] = m.weight_quantizer(m.weight).detach()
    # a tied head shares the embedding table: make its entry the quantized table too
    for name, m in model.named_modules():
        if isinstance(m, QuantTiedHead) and f"{name}.weight" in out:
            out[f"{name}.weight"] = m.embedding[0].quantized_weight().detach()
    return out


def quantizer_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Learnable quantizer parameters (gamma, clipping factors, steps): the optimizer's second group."""
    seen, params = set(), []
    for m in model.modules():
        if isinstance(m, WeightQuantizer):
            for p in m.parameters(recurse=False):
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
    return params


def set_gamma(model: nn.Module, value: float) -> int:
    """Start every dynamic-scaling gamma of ``model`` at ``value`` (the paper starts them at 1); returns how many
    quantizers it set. Raises if the model has none: asking for a gamma that nothing uses is a mistake."""
    if not value > 0:
        raise ValueError(f"gamma must be > 0, got {value}")
    found = [m for m in model.modules() if isinstance(m, MDSQuantizer)]
    if not found:
        raise ValueError("the model has no dynamic-scaling (mds) quantizer whose gamma could be set")
    with torch.no_grad():
        for q in found:
            q.gamma.fill_(value)
    return len(found)


__all__ = ["QuantConfig", "QuantLinear", "QuantEmbedding", "QuantTiedHead", "quantize_model", "quantized_modules",
           "dequantized_state_dict", "quantizer_parameters", "set_gamma", "QUANTIZERS"]
