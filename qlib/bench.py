"""Benchmark: throughput and peak memory of (a) a full-precision fine-tuning step, (b) a QAT step with L_dist only,
(c) a QAT step with L_dist + lambda * L_cont, (d) evaluation forwards of the fake-quantized model and of the model
rebuilt from its packed export -- in one process, one run.

``python -m qlib.bench --model smollm2-135m --w-bits 2 --batch-size 4 --seq-len 128`` prints a table of absolute
figures and the ratios b/a and c/b (the paper's Table 5 compares c with b: 0.67 / 0.61 s per iteration,
14839 / 14700 MB) and writes the JSON. Memory: peak allocated CUDA memory on a GPU; on CPU the peak resident set
size above the level before the phase, sampled every 5 ms.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import torch

from . import evaluate as E
from .losses import ContrastiveHeads, TokenContrastiveLoss
from .models import load_model, load_tokenizer, tiny_config
from .modules import quantize_model, quantizer_parameters
from .packing import export_packed, load_packed, size_mb
from .runtime import autocast, code_version, resolve_device
from .train import TrainConfig, compute_loss


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or sampled RSS growth on CPU (MiB)."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mib = device, 0.0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base, self._peak, self._stop = self._rss(), self._rss(), False
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop:
            self._peak = max(self._peak, self._rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mib = torch.cuda.max_memory_allocated() / 2 ** 20
        else:
            self._stop = True
            self._thread.join()
            self.peak_mib = (max(self._peak, self._rss()) - self._base) / 2 ** 20


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time_steps(fn, steps: int, warmup: int, device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / steps


def run_benchmark(model: str = "tiny-llama", w_bits: int = 2, batch_size: int = 4, seq_len: int = 128,
                  steps: int = 5, warmup: int = 2, device: str = "auto", num_negatives: int = 64,
                  gpt2_small: bool = False) -> dict:
    """Measure (a)-(d) for one setting; ``gpt2_small=True`` uses a randomly initialised GPT-2-small-sized config
    (the paper's Table 5 model size) instead of ``model``."""
    dev = resolve_device(device)
    torch.manual_seed(0)
    name = "tiny-gpt2" if gpt2_small else model
    tokenizer = load_tokenizer(name)
    if gpt2_small:
        import transformers as tf

        cfg = tiny_config("tiny-gpt2", len(tokenizer))
        cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions = 12, 768, 12, 1024
        teacher = tf.GPT2LMHeadModel(cfg)
    else:
        teacher = load_model(model, "lm", vocab_size=len(tokenizer))
    teacher.to(dev)
    ids = torch.randint(0, len(tokenizer), (batch_size, seq_len), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids.to(dev)}
    tokens = batch_size * seq_len
    out = {"model": "gpt2-small-config (random init)" if gpt2_small else model, "w_bits": w_bits,
           "batch_size": batch_size, "seq_len": seq_len, "steps": steps, "device": str(dev),
           "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or
           platform.machine(), "torch": torch.__version__, "code_version": code_version(), "phases": {},
           "load_avg": round(os.getloadavg()[0], 2)}  # other work on the machine skews timings

    def measure(label, fn, n=steps):
        with PeakMemory(dev) as mem:
            sec = _time_steps(fn, n, warmup, dev)
        out["phases"][label] = {"sec_per_iter": sec, "tokens_per_s": tokens / sec, "peak_mem_mib": mem.peak_mib}

    def trainer_step(tcfg, model_, teacher_, heads, contrast):
        params = [p for p in model_.parameters() if p.requires_grad] + (list(heads.parameters()) if heads else [])
        opt = torch.optim.AdamW(params, lr=1e-5)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast(dev):
                loss, _ = compute_loss(tcfg, model_, teacher_, heads, contrast, batch)
            loss.backward()
            opt.step()
            if contrast is not None:
                contrast.update_memory()
        return step

    # (a) full-precision fine-tuning step
    fp_model = copy.deepcopy(teacher).train()
    measure("a_fp_finetune", trainer_step(TrainConfig(model="tiny-gpt2", method="fp", seq_len=seq_len,
                                                      num_negatives=min(num_negatives, seq_len - 1)),
                                          fp_model, None, None, None))
    del fp_model
    teacher.eval().requires_grad_(False)
    # (b) QAT, L_dist only
    qcfg = TrainConfig(model="tiny-gpt2", method="mds", w_bits=w_bits, loss="dist", seq_len=seq_len,
                       num_negatives=min(num_negatives, seq_len - 1))
    student = quantize_model(copy.deepcopy(teacher).requires_grad_(True), qcfg.quant_config()).train()
    measure("b_qat_dist", trainer_step(qcfg, student, teacher, None, None))
    # (c) QAT, L_dist + lambda L_cont
    ccfg = TrainConfig(**{**qcfg.__dict__, "loss": "dist+cont"})
    hidden = teacher.config.hidden_size
    heads = ContrastiveHeads(hidden, ccfg.proj_dim).to(dev)
    contrast = TokenContrastiveLoss(len(tokenizer), ccfg.proj_dim, ccfg.num_negatives).to(dev)
    measure("c_qat_dist_cont", trainer_step(ccfg, student, teacher, heads, contrast))
    # (d) evaluation forwards: fake-quantized, and rebuilt from the packed export
    student.eval()

    @torch.no_grad()
    def fwd(m):
        return lambda: m(input_ids=batch["input_ids"])
    measure("d_eval_fake_quant", fwd(student))
    with tempfile.TemporaryDirectory() as d:
        path = export_packed(student, Path(d) / "packed.safetensors")
        out["packed_file_mib"] = path.stat().st_size / 2 ** 20
        packed = load_packed(path, dev)
    measure("d_eval_packed", fwd(packed))
    out["size_mb"] = size_mb(student)
    out["n_quantizer_params"] = len(quantizer_parameters(student))
    p = out["phases"]
    out["ratios"] = {
        "b/a time": p["b_qat_dist"]["sec_per_iter"] / p["a_fp_finetune"]["sec_per_iter"],
        "c/b time": p["c_qat_dist_cont"]["sec_per_iter"] / p["b_qat_dist"]["sec_per_iter"],
        "c/b memory": p["c_qat_dist_cont"]["peak_mem_mib"] / max(p["b_qat_dist"]["peak_mem_mib"], 1e-9),
        "packed/fake eval time": p["d_eval_packed"]["sec_per_iter"] / p["d_eval_fake_quant"]["sec_per_iter"],
    }
    return out


def format_table(res: dict) -> str:
    lines = [f"{res['model']}  W{res['w_bits']}  batch {res['batch_size']} x seq {res['seq_len']}  on "
             f"{res['device']} ({res['device_name']})",
             f"{'phase':<22}{'s/iter':>10}{'tokens/s':>12}{'peak MiB':>12}"]
    for k, v in res["phases"].items():
        lines.append(f"{k:<22}{v['sec_per_iter']:>10.3f}{v['tokens_per_s']:>12.0f}{v['peak_mem_mib']:>12.0f}")
    lines.append("ratios: " + ", ".join(f"{k} = {v:.3f}" for k, v in res["ratios"].items()))
    lines.append(f"size_mb = {res['size_mb']:.1f} MiB, packed file = {res['packed_file_mib']:.1f} MiB")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m qlib.bench", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--gpt2-small", action="store_true", help="a random GPT-2-small-sized config (paper Table 5)")
    p.add_argument("--w-bits", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--num-negatives", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="JSON file to write (default: results/bench/<setting>.json)")
    a = p.parse_args(argv)
    res = run_benchmark(a.model, a.w_bits, a.batch_size, a.seq_len, a.steps, a.warmup, a.device, a.num_negatives,
                        a.gpt2_small)
    print(format_table(res))
    from .experiments import RESULTS

    dev = "cuda" if res["device"].startswith("cuda") else "cpu"
    name = f"{'gpt2-small' if a.gpt2_small else a.model}-w{a.w_bits}-b{a.batch_size}-s{a.seq_len}-{dev}.json"
    path = Path(a.out) if a.out else RESULTS / "bench" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
