"""Size accounting under the paper's convention, and real compression: bit-packed export and its inverse.

Convention (checked against the paper's Size column, see the book's size section): every quantized weight costs
``bits`` per element plus one fp32 scale per quantization group (per matrix; per row for the embedding; the
``pact_clip_grid`` reading keeps two); everything else (position embeddings, biases, norms, unquantized heads) is
fp32. Sizes are MiB (2^20 bytes).
Activation quantizers are dynamic and store nothing.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .modules import QuantConfig, QuantEmbedding, QuantLinear, quantize_model, quantized_modules
from .quant import Encoded, dequantize

FORMAT_VERSION = "1"
MIB = 2 ** 20


# ----------------------------------------------------------------------------------------------------------------
# size
# ----------------------------------------------------------------------------------------------------------------


def _scale_count(module) -> int:
    q = module.weight_quantizer
    groups = 1 if q.granularity == "tensor" else module.weight.shape[0]
    return groups * q.scales_per_group


def size_table(model: nn.Module) -> list[dict]:
    """Per-parameter size rows: name, numel, bits, scales (fp32 scale count) and MiB. Tied parameters once."""
    quantized = {id(m.weight): m for _, m in quantized_modules(model)}
    rows, seen = [], set()
    for name, p in model.named_parameters():
        if id(p) in seen or ".weight_quantizer." in name:
            continue
        seen.add(id(p))
        m = quantized.get(id(p))
        bits = m.weight_quantizer.bits if m is not None else 32
        scales = _scale_count(m) if m is not None else 0
        rows.append({"name": name, "numel": p.numel(), "bits": bits, "scales": scales,
                     "mib": (p.numel() * bits + 32 * scales) / 8 / MIB})
    return rows


def size_mb(model: nn.Module) -> float:
    """Model size in MiB under the paper's convention (module docstring)."""
    return sum(r["mib"] for r in size_table(model))


# ----------------------------------------------------------------------------------------------------------------
# bit packing: pure functions, each with its inverse
# ----------------------------------------------------------------------------------------------------------------


def to_unsigned(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed grid codes -> unsigned b-bit integers: {-1,+1} -> {0,1} for 1 bit, c + 2^(b-1) otherwise."""
    c = codes.to(torch.int16)
    u = (c + 1) // 2 if bits == 1 else c + 2 ** (bits - 1)
    if u.numel() and (u.min() < 0 or u.max() >= 2 ** bits):
        raise ValueError(f"codes out of range for {bits} bits")
    return u.to(torch.uint8)


def to_signed(unsigned: torch.Tensor, bits: int) -> torch.Tensor:
    """Inverse of ``to_unsigned``."""
    u = unsigned.to(torch.int16)
    return (u * 2 - 1 if bits == 1 else u - 2 ** (bits - 1)).to(torch.int8)


def pack_bits(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack unsigned ``bits``-bit integers (uint8 tensor, any shape) into a flat uint8 tensor, little end first."""
    if bits not in (1, 2, 4, 8):
        raise ValueError(f"can pack 1, 2, 4 or 8 bits, got {bits}")
    flat = values.reshape(-1).to(torch.uint8)
    per_byte = 8 // bits
    pad = (-flat.numel()) % per_byte
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    groups = flat.view(-1, per_byte).to(torch.int32)
    shifts = torch.arange(per_byte, dtype=torch.int32, device=flat.device) * bits
    return (groups << shifts).sum(dim=1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """Inverse of ``pack_bits``: the first ``numel`` values as a flat uint8 tensor."""
    if bits not in (1, 2, 4, 8):
        raise ValueError(f"can unpack 1, 2, 4 or 8 bits, got {bits}")
    per_byte = 8 // bits
    shifts = torch.arange(per_byte, dtype=torch.int32, device=packed.device) * bits
    vals = (packed.to(torch.int32).unsqueeze(1) >> shifts) & (2 ** bits - 1)
    return vals.reshape(-1)[:numel].to(torch.uint8)


# ----------------------------------------------------------------------------------------------------------------
# export / load
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def export_packed(model: nn.Module, path: str | Path) -> Path:
    """Write a quantized model as safetensors: bit-packed integer codes + fp32 scales for quantized weights, fp32 for
    the rest, and the model/quantization configs in the metadata. ``load_packed`` is the inverse."""
    config = getattr(model, "qlib_config", None)
    if config is None:
        raise ValueError("export_packed needs a model returned by qlib.quantize_model")
    path = Path(path)
    was_training = model.training
    model.eval()
    tensors, packed_meta, packed_ids = {}, {}, set()
    for name, m in quantized_modules(model):
        enc: Encoded = m.weight_quantizer.encode(m.weight)
        key = f"{name}.weight"
        tensors[f"{key}.codes"] = pack_bits(to_unsigned(enc.codes, enc.bits), enc.bits).cpu()
        tensors[f"{key}.step"] = enc.step.float().reshape(-1).cpu()
        if enc.step_neg is not None:
            tensors[f"{key}.step_neg"] = enc.step_neg.float().reshape(-1).cpu()
        packed_meta[key] = {"shape": list(m.weight.shape), "bits": enc.bits, "row": enc.step.dim() > 0}
        packed_ids.add(id(m.weight))
    seen = set(packed_ids)
    for name, p in model.named_parameters():
        if id(p) in seen or ".weight_quantizer." in name:
            continue
        seen.add(id(p))
        tensors[name] = p.detach().float().contiguous().cpu()
    model.train(was_training)
    metadata = {
        "qlib_format": FORMAT_VERSION,
        "architecture": type(model).__name__,
        "model_config": model.config.to_json_string(use_diff=False),
        "quant_config": config.to_json(),
        "packed": json.dumps(packed_meta),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


@torch.no_grad()
def load_packed(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model written by ``export_packed``. Quantized weights are decoded once into their exact
    fake-quantized values (their weight quantizers are removed); activation quantization stays as configured, so
    the logits equal the fake-quantized model's."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no packed model at {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("qlib_format") != FORMAT_VERSION:
            raise ValueError(f"{path} is not a qlib packed model (format {meta.get('qlib_format')!r})")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cfg_dict = json.loads(meta["model_config"])
    config = transformers.AutoConfig.for_model(cfg_dict.pop("model_type"), **cfg_dict)
    model = getattr(transformers, meta["architecture"])(config)
    quantize_model(model, QuantConfig.from_json(meta["quant_config"]))
    packed = json.loads(meta["packed"])
    modules = dict(quantized_modules(model))
    for key, info in packed.items():
        shape, bits = info["shape"], info["bits"]
        codes = to_signed(unpack_bits(tensors.pop(f"{key}.codes"), bits, math.prod(shape)), bits).view(shape)
        step_shape = (shape[0], 1) if info["row"] else ()
        step = tensors.pop(f"{key}.step").view(step_shape)
        step_neg = tensors.pop(f"{key}.step_neg").view(step_shape) if f"{key}.step_neg" in tensors else None
        module = modules[key.removesuffix(".weight")]
        module.weight.copy_(dequantize(codes, step, step_neg))
    for m in model.modules():  # decoded weights are final: no quantizer on top of them
        if isinstance(m, (QuantLinear, QuantEmbedding)):
            m.weight_quantizer = None
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    unexpected = [k for k in unexpected]
    if unexpected:
        raise ValueError(f"{path}: tensors that fit no parameter: {unexpected[:5]}")
    loaded = set(tensors) | set(packed)
    params = {n for n, _ in model.named_parameters()}  # tied duplicates appear once here
    not_loaded = sorted(params - loaded)
    if not_loaded:
        raise ValueError(f"{path}: parameters missing from the file: {not_loaded[:5]}")
    return model.to(device).eval()
