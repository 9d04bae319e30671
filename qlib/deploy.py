"""A trained student where people run small models: its sizes (accounted, bit-packed, GGUF), llama.cpp's prompt
and generation speeds beside qlib's fake-quantized PyTorch student, measured in one process on one machine, and
PTB test perplexity from both on the same tokens (``llama-perplexity``'s chunks: the last half of each scored).

``python -m qlib deploy-bench RUN_FOLDER`` writes ``results/deploy/<run>.json``; the book's deployment page reads it.
Measure on an idle machine: the file records the load average before and after.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from . import llama_cpp as L
from .experiments import recorded_config, results_dir
from .gguf_export import export_gguf, run_student, teacher_gguf_of
from .packing import export_packed, size_mb
from .runtime import data_dir, provenance, write_json

PROMPT_TOKENS, GEN_TOKENS, REPEATS = 512, 128, 3


def bench_command(grid: str, run: str, preset: str, threads: int = 2) -> str:
    """The command that measures run ``run`` of ``grid`` (training it first when its weights are missing)."""
    return (f"python -m qlib deploy-bench --grid {grid} --run {run} --preset {preset}"
            + (f" --threads {threads}" if threads != 2 else ""))


@torch.no_grad()
def torch_speeds(model, threads: int = 2, prompt_tokens: int = PROMPT_TOKENS, gen_tokens: int = GEN_TOKENS,
                 repeats: int = REPEATS) -> dict:
    """qlib's student in PyTorch on the CPU: prompt processing (one forward over ``prompt_tokens``) and greedy
    generation of ``gen_tokens`` with the KV cache, in tokens/s (median of ``repeats``), on ``threads`` threads as
    llama-bench is run."""
    torch.set_num_threads(threads)
    model.eval()
    vocab = model.config.vocab_size
    prompt = torch.randint(3, vocab, (1, prompt_tokens), generator=torch.Generator().manual_seed(0))
    model(input_ids=prompt[:, :16])  # warm-up: first-call allocations are not the model's speed
    pp, tg = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        model(input_ids=prompt)
        pp.append(prompt_tokens / (time.perf_counter() - t))
        t = time.perf_counter()
        model.generate(prompt[:, :16], max_new_tokens=gen_tokens, min_new_tokens=gen_tokens, do_sample=False,
                       pad_token_id=0)
        tg.append(gen_tokens / (time.perf_counter() - t))
    return {"prompt_tokens_per_s": statistics.median(pp), "generation_tokens_per_s": statistics.median(tg),
            "threads": threads}


def sizes(model, folder: Path, teacher_gguf) -> dict:
    """MiB under the paper's convention, of qlib's bit-packed file and of the GGUF file (with its types)."""
    packed = export_packed(model, folder / "student.safetensors")
    gguf = export_gguf(model, folder / "student.gguf", teacher_gguf)
    return {"accounted_mib": size_mb(model), "packed_mib": Path(packed).stat().st_size / 2 ** 20,
            "gguf_mib": gguf["mib"], "gguf_types": gguf["counts"]}


def perplexities(model, gguf_file: Path, folder: Path, n_ctx: int = 512, chunks: int = 20) -> dict:
    """PTB test perplexity from llama.cpp (the GGUF file) and from qlib (the student, its 8-bit activations on) on
    the same ``chunks`` chunks of ``n_ctx`` tokens, with their top-1 agreement and mean KL."""
    data = data_dir()
    if data is None:
        raise FileNotFoundError("QLIB_DATA_DIR is not set: the PTB test text is read from ptb/ptb.test.txt in it")
    theirs = L.logits_file(gguf_file, data / "ptb" / "ptb.test.txt", folder / "student.kld", n_ctx, chunks)
    return {"n_ctx": n_ctx, "chunks": chunks, **L.agreement(L.qlib_log_probs(model, theirs["tokens"]), theirs)}


def run_folder_of(grid: str | None, run: str | None, preset: str) -> Path:
    """The run folder of run ``run`` of ``grid``, its weights rebuilt (teacher first) when they are not on this
    machine: run folders are not committed."""
    from .experiments import runs, trained_model

    if not grid or not run:
        raise ValueError("name a run folder, or a grid and a run (--grid lm-table --run mds-228)")
    cfg = runs(grid, preset)[run]
    trained_model(cfg)
    return Path(cfg.out_dir)


def deploy_benchmark(run_folder: str | Path, out: str | Path | None = None, threads: int = 2,
                     command: str | None = None) -> dict:
    """Everything the deployment page shows, for the trained student of ``run_folder``, in one run (``command``:
    how it was invoked, recorded with the result)."""
    run_folder = Path(run_folder)
    model = run_student(run_folder)
    trained = json.loads((run_folder / "result.json").read_text())
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # the run's config: the page shows this file only for the run it asks for (``report.deploy_result``)
        res = {"run": run_folder.name, "config": recorded_config(trained),
               "sizes": sizes(model, folder, teacher_gguf_of(model.config))}
        res["llama_cpp"] = L.bench(folder / "student.gguf", PROMPT_TOKENS, GEN_TOKENS, threads, REPEATS)
        res["qlib_torch"] = torch_speeds(model, threads)
        res["perplexity"] = perplexities(model, folder / "student.gguf", folder)
    # provenance's load_average is the one after the measurements
    res.update(provenance(torch.device("cpu")), load_average_before=load_before,
               command=command or f"python -m qlib deploy-bench {run_folder}")
    out = Path(out) if out else results_dir() / "deploy" / f"{run_folder.name}.json"
    write_json(out, res)
    return res
