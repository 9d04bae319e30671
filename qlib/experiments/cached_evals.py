"""Evaluations made from a run's student or trained weights and saved as committed files, so that the book shows
them on a fresh clone where run folders (weights) do not exist: the step-0 evaluation, zero-shot transfer, text
samples and the data of the "why hard" figures. Each is computed at most once per config and key
(``_cached_eval``); ``experiments`` re-exports them."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from ..config import TrainConfig
from ..runtime import provenance, resolve_device, write_json
from .runner import ensure_dependencies, run, trained_model
from .store import BUDGET_FIELDS, default_store, load_result, recorded_config, same_config


def figure_modules(model: str) -> tuple[str, str]:
    """Fig. 4's two modules, as the paper's: the attention output projection and the FFN's output projection
    (GPT-2's second FFN matrix, SmolLM2's down_proj) of the 4th layer (layer 1 of the tiny test model)."""
    layer = FIGURE_LAYER.get(model, 1)
    return f"model.layers.{layer}.self_attn.o_proj", f"model.layers.{layer}.mlp.down_proj"


def figure_module(model: str) -> str:
    """Chapter 1's example matrix: the first of Fig. 4's modules (the attention output projection)."""
    return figure_modules(model)[0]


# zero-shot test sets are large next to a CPU run (WikiText-2 test is 3x PTB's): the cpu preset reads a prefix
TRANSFER_TOKENS = {"smoke": 256, "cpu": 40960, "gpu": None, "paper": None}
# the prompts of the side-by-side generated text (the paper's Sec. 4.4); PTB-style: lower case, no punctuation
SAMPLE_PROMPTS = ("the company said it expects", "stock prices fell sharply after",
                  "the new york stock exchange", "in an interview the president said")
SAMPLE_TOKENS = 20
FIGURE_LAYER = {"smollm2-135m": 3}  # Fig. 4: "the 4-th layer" (index 3)
FIGURE_SENTENCE = (32, 3)  # Fig. 3: block 3 of the test split in blocks of 32 tokens


def step0_path(cfg: TrainConfig) -> Path:
    return default_store().eval_path(cfg, "step0")


def step0_eval(cfg: TrainConfig, progress: bool = True, run_missing: bool = True) -> dict | None:
    """Validation PPL of the student of ``cfg`` before its first update (what the quantizer alone costs), on the
    run's own validation subset and evaluation batch, saved under ``results/<task>/step0/``. The same number is
    the first point of the run's learning curve once it has run; this file exists without the run."""
    from ..models import load_tokenizer
    from ..students import build_models
    from ..tasks import make_task

    def compute(device):
        ensure_dependencies(cfg, progress)
        tokenizer = load_tokenizer(cfg.model)
        student = build_models(cfg, tokenizer)[1].to(device)
        return make_task(replace(cfg, progress=progress), tokenizer).evaluate(student, device, final=False)
    key = {"eval_tokens": cfg.eval_tokens, "eval_context": cfg.eval_context, "eval_batch_size": cfg.eval_batch_size}
    return _cached_eval(cfg, step0_path(cfg), key, compute, run_missing, ignore=BUDGET_FIELDS)


def transfer_path(cfg: TrainConfig, dataset: str) -> Path:
    return default_store().eval_path(cfg, "transfer", f"-{dataset}")


def samples_path(cfg: TrainConfig) -> Path:
    return default_store().eval_path(cfg, "samples")


def figures_path(cfg: TrainConfig) -> Path:
    return default_store().eval_path(cfg, "figures")


def _cached_eval(cfg: TrainConfig, path: Path, key: dict, compute, run_missing: bool,
                 ignore: tuple[str, ...] = ()) -> dict | None:
    """An evaluation saved to ``path`` with ``key`` (what it was asked for), loaded when a file for exactly this
    config and key exists; ``compute(device)`` makes it otherwise. Run weights are gone on a fresh clone, so such
    files are committed like result files. ``run_missing=False``: None when absent (nothing is computed)."""
    if path.is_file():
        res = json.loads(path.read_text())
        if same_config(recorded_config(res), asdict(cfg), ignore) and all(res.get(k) == v for k, v in key.items()):
            return res
    if not run_missing:
        return None
    t0, device = time.time(), resolve_device(cfg.device)
    res = {"config": asdict(cfg), **key, **compute(device), **provenance(device, cfg.dtype),
           "wall_time_s": time.time() - t0}
    write_json(path, res)
    return res


def _after_run(cfg: TrainConfig, path: Path, key: dict, compute, progress: bool, run_missing: bool) -> dict | None:
    """An evaluation of a finished run's model (trained first when its result is missing)."""
    def with_model(device):
        if load_result(cfg) is None:
            run(cfg, progress=progress)
        return compute(trained_model(cfg, device=str(device)), device)
    return _cached_eval(cfg, path, key, with_model, run_missing)


def transfer_eval(cfg: TrainConfig, dataset: str = "wikitext2", progress: bool = True,
                  run_missing: bool = True) -> dict | None:
    """Zero-shot test perplexity of the trained model of ``cfg`` on another corpus (the paper's WikiText-2 column
    without WikiText-2 training, whose train split is not offline), saved under ``results/<task>/transfer/``."""
    from .. import data as D
    from .. import evaluate as E
    from ..models import load_tokenizer

    tokens = TRANSFER_TOKENS[cfg.preset]

    def compute(model, device):
        blocks = D.lm_blocks(dataset, "test", load_tokenizer(cfg.model), cfg.eval_context, tokens)
        ppl = E.perplexity(model, blocks, cfg.eval_batch_size, device, f"{dataset} ppl", progress)
        return {"tokens_read": blocks.numel(), "test_ppl": ppl}
    return _after_run(cfg, transfer_path(cfg, dataset), {"dataset": dataset, "test_tokens": tokens}, compute,
                      progress, run_missing)


def text_samples(cfg: TrainConfig, prompts: tuple[str, ...] = SAMPLE_PROMPTS, max_new_tokens: int = SAMPLE_TOKENS,
                 progress: bool = True, run_missing: bool = True) -> dict | None:
    """Greedy continuations of ``prompts`` by the trained model of ``cfg`` (the paper's Sec. 4.4 side-by-side
    samples), saved under ``results/<task>/samples/`` so that the book shows them without the weights."""
    from .. import evaluate as E
    from ..models import load_tokenizer

    def compute(model, device):
        return {"continuations": E.generate_text(model, load_tokenizer(cfg.model), list(prompts), max_new_tokens,
                                                 device)}
    return _after_run(cfg, samples_path(cfg), {"prompts": list(prompts), "max_new_tokens": max_new_tokens},
                      compute, progress, run_missing)


def figure_data(cfg: TrainConfig, top_tokens: int = 500, progress: bool = True,
                run_missing: bool = True) -> dict | None:
    """The data of the "why hard" figures (Figs. 2-4: embeddings of the ``top_tokens`` most frequent training
    tokens, token similarity on one test sentence, two modules' weights and clipping ranges) for the trained model
    of ``cfg``, saved under ``results/<task>/figures/`` so that the book draws them without the weights."""
    from .. import analysis
    from .. import data as D
    from ..models import load_tokenizer

    modules = figure_modules(cfg.model)
    length, block = FIGURE_SENTENCE

    def compute(model, device):
        tok = load_tokenizer(cfg.model)
        ids = analysis.most_frequent_tokens(D.lm_blocks(cfg.dataset, "train", tok, cfg.seq_len, cfg.train_tokens),
                                            top_tokens)
        sentence = D.lm_blocks(cfg.dataset, "test", tok, length)[block]
        return {"tokens": ids.tolist(), **analysis.figure_data(model, ids, sentence, modules)}
    key = {"top_tokens": top_tokens, "figure_modules": list(modules), "sentence": list(FIGURE_SENTENCE)}
    return _after_run(cfg, figures_path(cfg), key, compute, progress, run_missing)
