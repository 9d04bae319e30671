"""llama.cpp beside qlib: where its tools are (``make llama-cpp`` builds them into build/llama.cpp/bin), the
log-probabilities ``llama-perplexity --kl-divergence-base`` saves, qlib's on the same tokens and chunks, how far
the two lie apart, and llama-bench's speeds.

``llama-perplexity`` cuts the token stream into chunks of ``n_ctx`` tokens (the first one replaced by BOS where the
vocabulary adds one) and scores the last half of each chunk: position ``j`` in ``[n_ctx/2, n_ctx - 1)`` predicts
token ``j + 1``. Its logits file keeps, per scored position, the log-probabilities within 16 nats of the best one on
a 16-bit grid (steps of at most 16 / 65535 = 2.4e-4) and the floor below them. ``qlib_log_probs`` computes the same
positions with a qlib model, so the two compare token for token.
"""
from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "build" / "llama.cpp" / "bin"
TOOLS = ("llama-bench", "llama-perplexity", "llama-completion", "llama-quantize")
MAGIC = b"_logits_"


def tool(name: str) -> Path:
    """The path of a built llama.cpp tool, or a clear error that says how to build it."""
    if name not in TOOLS:
        raise ValueError(f"unknown llama.cpp tool {name!r}; built: {TOOLS}")
    path = BIN / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: build llama.cpp's tools with `make llama-cpp` (about 12 minutes)")
    return path


def available() -> bool:
    return all((BIN / name).is_file() for name in TOOLS)


def run(name: str, *args: str, timeout: float = 1800) -> str:
    """Run a llama.cpp tool; its stdout and stderr together (llama.cpp logs to stderr), or an error with them."""
    proc = subprocess.run([str(tool(name)), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def read_logits_file(path: str | Path) -> dict:
    """A ``--kl-divergence-base`` file: ``n_ctx``, the token ids [chunks, n_ctx] and, per chunk, the
    log-probabilities of the scored positions [chunks, n_ctx - 1 - n_ctx/2, n_vocab] (float32; entries more than 16
    nats below the best one read as the floor) and which entries are above that floor."""
    raw = Path(path).read_bytes()
    if raw[:8] != MAGIC:
        raise ValueError(f"{path} is not a llama-perplexity logits file (no {MAGIC!r} header)")
    n_ctx, n_vocab, n_chunk = np.frombuffer(raw, dtype="<i4", count=3, offset=8)
    offset = 8 + 12
    tokens = np.frombuffer(raw, dtype="<i4", count=n_chunk * n_ctx, offset=offset).reshape(n_chunk, n_ctx)
    offset += tokens.nbytes
    nv, rows = 2 * ((n_vocab + 1) // 2) + 4, n_ctx - 1 - n_ctx // 2
    body = np.frombuffer(raw, dtype="<u2", count=n_chunk * rows * nv, offset=offset).reshape(n_chunk, rows, nv)
    head = np.ascontiguousarray(body[..., :4]).view("<f4")  # per row: scale, min_log_prob
    codes = body[..., 4:4 + n_vocab].astype(np.float32)
    log_probs = head[..., 1:2] + head[..., 0:1] * codes
    return {"n_ctx": int(n_ctx), "tokens": torch.from_numpy(tokens.astype(np.int64)),
            "log_probs": torch.from_numpy(log_probs), "above_floor": torch.from_numpy(codes > 0)}


ACT_QUANTIZERS = ("act_quantizer", "attn_probs_quantizer")  # where quantize_model puts activation quantizers


@contextlib.contextmanager
def without_activation_quantization(model):
    """The model with its activations in full precision while the block runs (weights still quantized): what
    llama.cpp computes for a file whose matrices are F32."""
    saved = [(m, a, getattr(m, a)) for m in model.modules() for a in ACT_QUANTIZERS if getattr(m, a, None) is not None]
    try:
        for m, a, _ in saved:
            setattr(m, a, None)
        yield model
    finally:
        for m, a, q in saved:
            setattr(m, a, q)


@torch.no_grad()
def qlib_log_probs(model, tokens: torch.Tensor, bos_id: int | None = None) -> torch.Tensor:
    """A qlib model's log-probabilities at the positions ``llama-perplexity`` scores, for chunks ``tokens``
    [chunks, n_ctx] (the first token of each replaced by ``bos_id`` when given): [chunks, n_ctx - 1 - n_ctx/2, V]."""
    ids = tokens.clone()
    if bos_id is not None:
        ids[:, 0] = bos_id
    model.eval()
    n_ctx = ids.shape[1]
    logits = torch.cat([model(input_ids=ids[i:i + 1]).logits.float() for i in range(len(ids))])
    return torch.log_softmax(logits[:, n_ctx // 2:n_ctx - 1], dim=-1)


def agreement(ours: torch.Tensor, theirs: dict) -> dict:
    """How far llama.cpp's log-probabilities (``read_logits_file``) lie from ours on the same positions: the largest
    difference where llama.cpp kept the value (above its floor), the share of positions with the same most likely
    token, the mean KL(ours || llama.cpp) over the kept entries (below the floor llama.cpp's file has no value) and
    both perplexities of the scored tokens."""
    lp, keep = theirs["log_probs"], theirs["above_floor"]
    n_ctx = theirs["n_ctx"]
    targets = theirs["tokens"][:, n_ctx // 2 + 1:n_ctx]
    diff = (ours - lp).abs().masked_fill(~keep, 0.0)
    kl = (ours.exp() * (ours - lp)).masked_fill(~keep, 0.0).sum(-1)
    top1 = (ours.argmax(-1) == lp.argmax(-1)).float().mean().item()
    return {"max_abs_log_prob_diff": diff.max().item(), "top1_agreement": top1, "mean_kl": kl.mean().item(),
            "ppl_qlib": _ppl(ours, targets), "ppl_llama_cpp": _ppl(lp, targets), "positions": int(targets.numel())}


def _ppl(log_probs: torch.Tensor, targets: torch.Tensor) -> float:
    return float(np.exp(-log_probs.gather(-1, targets[..., None]).mean().item()))


def logits_file(model_gguf: str | Path, text_file: str | Path, out: str | Path, n_ctx: int, chunks: int,
                threads: int = 2, exact: bool = False) -> dict:
    """Run ``llama-perplexity`` on ``text_file`` and keep its log-probabilities; returns ``read_logits_file(out)``.
    ``exact``: an fp32 KV cache and no flash attention (whose CPU kernel rounds through fp16: 2e-2 in
    log-probability on SmolLM2, against 2e-4 without), so that llama.cpp adds no rounding of its own; else
    llama.cpp's defaults, as people run it."""
    exact_args = ("-ctk", "f32", "-ctv", "f32", "-fa", "off") if exact else ()
    run("llama-perplexity", "-m", model_gguf, "-f", text_file, "-c", n_ctx, "-b", n_ctx, "--chunks", chunks,
        "-t", threads, *exact_args, "--kl-divergence-base", out)
    return read_logits_file(out)


def f32_copy(model_gguf: str | Path, out: str | Path) -> Path:
    """The same weights as F32 tensors (``llama-quantize --allow-requantize``): a file whose matrix products llama.cpp
    runs in fp32 without quantizing their inputs, so its logits are qlib's up to float rounding."""
    run("llama-quantize", "--allow-requantize", model_gguf, out, "F32")
    return Path(out)


def bench(model_gguf: str | Path, prompt_tokens: int = 512, gen_tokens: int = 128, threads: int = 2,
          repetitions: int = 3) -> dict:
    """llama-bench's prompt-processing and generation speeds (tokens/s, mean over ``repetitions``)."""
    out = run("llama-bench", "-m", model_gguf, "-p", prompt_tokens, "-n", gen_tokens, "-t", threads,
              "-r", repetitions, "-o", "json")
    rows = json.loads(out[out.index("["):out.rindex("]") + 1])
    speed = {("prompt" if r["n_prompt"] else "generation"): r["avg_ts"] for r in rows}
    return {"prompt_tokens_per_s": speed.get("prompt"), "generation_tokens_per_s": speed.get("generation"),
            "prompt_tokens": prompt_tokens, "gen_tokens": gen_tokens, "threads": threads,
            "build": rows[0].get("build_commit"), "cpu": rows[0].get("cpu_info")}
