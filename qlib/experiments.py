"""The paper's experiments as named grids of ``TrainConfig``s, each run at most once.

``run(cfg)`` trains a config unless a committed result file for exactly that config exists, in which case it
loads it; a killed run resumes from its checkpoint. The notebooks call ``run_grid``, and so does
``python -m qlib grid NAME --preset P`` for long runs in the background: both write the same result files under
``results/``, which the book reads.

Presets: ``smoke`` (tiny random model, a few steps: CI), ``cpu`` (SmolLM2-135M, a token budget that a 2-core
machine finishes in minutes per run), ``paper`` (the paper's settings, for a GPU box).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from tqdm.auto import tqdm

from .runtime import provenance, resolve_device, write_json
from .train import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
# where result files (committed) and run folders (checkpoints, not committed) live; tests point these elsewhere
RESULTS = Path(os.environ.get("QLIB_RESULTS_DIR", ROOT / "results"))
RUNS = Path(os.environ.get("QLIB_RUNS_DIR", ROOT / "runs"))


def results_dir() -> Path:
    """Where committed result files live (``QLIB_RESULTS_DIR``, read at call time; else ``results/``)."""
    return RESULTS


def runs_dir() -> Path:
    """Where run folders (checkpoints, not committed) live (``QLIB_RUNS_DIR``; else ``runs/``)."""
    return RUNS
PRESETS = ("smoke", "cpu", "gpu", "paper")
LM_SETTINGS = ((8, 8, 8), (4, 4, 8), (2, 2, 8))
LM_METHODS = ("pact", "lsq", "laq", "mds")
# the gamma with the least reconstruction error on a SmolLM2 attention projection (chapter 1's table), per setting
GAMMA_INIT = {(8, 8, 8): 8.0, (4, 4, 8): 3.5}
# fields that do not change what a run computes (beyond kernel rounding: the evaluation batch, compiling)
VOLATILE = ("progress", "resume", "out_dir", "eval_batch_size", "compile")
# fields naming the run folder a run starts from: compared by folder name, not by where the checkout lies
RUN_FOLDERS = ("init_from", "teacher")
# fields that only say how long and how a run trains: a student before its first update does not depend on them
BUDGET_FIELDS = ("max_steps", "epochs", "save_every", "curve_points", "eval_every", "lr", "quant_lr", "grad_accum")


# the learning rate of the students and the control per preset. cpu: chosen by the `lm-lr` sweep of the control
# (the largest rate whose control ends within 2% of the teacher's validation PPL after a quarter of the budget:
# 3e-5 -> 1.0004x, 1e-4 -> 1.0002x, 3e-4 -> 1.0079x, with a transient of 1.16x at step 3; the sweep's result files
# are committed and shown in chapter 4). gpu and paper: the paper's 5e-4 for its batch of 32 x 512 tokens.
STUDENT_LR = {"smoke": 5e-4, "cpu": 3e-4, "gpu": 5e-4, "paper": 5e-4}
LR_SWEEP = (3e-5, 1e-4, 3e-4)
EVAL_CONTEXT = 512  # every preset evaluates with the paper's context, so presets compare
# the compute dtype of each preset's runs where it is pinned (else "auto": bf16 autocast on CUDA and on CPUs with AMX).
# cpu: fp32, the dtype its committed tables were made in (on a CPU without AMX); pinned so that a table stays one
# dtype on any machine. bf16 against fp32 on a short real run: grid ``lm-dtype``.
PRESET_DTYPE = {"cpu": "fp32"}


def preset_dtype(preset: str) -> str:
    return PRESET_DTYPE.get(preset, "auto")


def lm_base(preset: str, dataset: str = "ptb") -> dict:
    """Common settings of the language-modeling runs of a preset (students; the teacher overrides a few)."""
    if preset == "smoke":
        return dict(model="tiny-llama", dataset=dataset, seq_len=32, batch_size=2, max_steps=2, num_negatives=8,
                    train_tokens=2048, eval_tokens=256, test_tokens=256, save_every=1, curve_points=2,
                    lr=STUDENT_LR[preset], preset=preset)
    if preset == "cpu":  # 400 steps of 4 x 128 tokens (205k tokens, 4x the first cpu preset; ROW_STEPS for 8/4 bits)
        # compiled: the QAT step takes 0.75-0.83x the eager one's time on the 2-core CPU
        # (results/bench/smollm2-135m-w2-b4-s128-cpu-compile.json); `compile` is volatile, results do not depend on it
        return dict(model="smollm2-135m", dataset=dataset, seq_len=128, batch_size=4, max_steps=400,
                    eval_seq_len=EVAL_CONTEXT, eval_tokens=8192, num_negatives=64, save_every=25,
                    lr=STUDENT_LR[preset], preset=preset, compile=True, dtype=preset_dtype(preset))
    if preset == "gpu":  # the paper's sequence length and batch on one lent GPU, 10 epochs instead of 120
        return dict(model="smollm2-135m", dataset=dataset, seq_len=512, batch_size=32, epochs=10,
                    eval_tokens=32768, num_negatives=64, save_every=100, lr=STUDENT_LR[preset], preset=preset)
    if preset == "paper":  # Sec. B.2: seq 512, batch 32, 120 epochs on PTB (80 WikiText-2, 8 WikiText-103)
        epochs = {"ptb": 120, "wikitext2": 80, "wikitext103": 8}[dataset]
        negs = {"ptb": 64}.get(dataset, 32)
        return dict(model="smollm2-135m", dataset=dataset, seq_len=512, batch_size=4, grad_accum=8,
                    epochs=epochs, num_negatives=negs, eval_every=1000, save_every=200, lr=STUDENT_LR[preset],
                    preset=preset)
    raise ValueError(f"unknown preset {preset!r}; choose from {PRESETS}")


# the gpu preset's teacher trains 3 epochs, not its students' 10: a 10-epoch fine-tuning at 1e-4 (grid
# lm-teacher-budget, H200, 2026-11-27) had its lowest validation PPL after 2.7 epochs (19.2) and ended overfitted (23.6)
TEACHER_EPOCHS = {"gpu": 3}


def lm_teacher(preset: str, dataset: str = "ptb", tag: str = "", **overrides) -> TrainConfig:
    """The full-precision teacher: the pretrained model fine-tuned on the task with its LM loss."""
    base = lm_base(preset, dataset)
    steps = {"smoke": 2, "cpu": 150}.get(preset)
    epochs = {"epochs": TEACHER_EPOCHS[preset]} if preset in TEACHER_EPOCHS else {}
    name = f"{dataset}-{base['model']}-fp{('-' + tag) if tag else ''}-{preset}"
    return TrainConfig(**{**base, **epochs, "max_steps": steps, "lr": 1e-4, "method": "fp",
                          "out_dir": str(RUNS / name), **overrides})


# the cpu preset's 8-8-8 and 4-4-8 rows train for half the 2-2-8 budget (their step-0 PPL is already near the
# teacher's, chapter 1): it keeps the whole table within about six hours on the 2-core machine. Every method of a
# row has the same budget; the tables print each run's tokens.
ROW_STEPS = {"cpu": {(8, 8, 8): 200, (4, 4, 8): 200}}


def lm_student(preset: str, method: str, bits: tuple[int, int, int] = (2, 2, 8), dataset: str = "ptb",
               tag: str = "", **overrides) -> TrainConfig:
    base = lm_base(preset, dataset)
    if tuple(bits) in ROW_STEPS.get(preset, {}):
        base["max_steps"] = ROW_STEPS[preset][tuple(bits)]
    w, e, a = bits
    name = f"{dataset}-{base['model']}-{method}-{w}{e}{a}{('-' + tag) if tag else ''}-{preset}"
    teacher = lm_teacher(preset, dataset)
    return TrainConfig(**{**base, "method": method, "w_bits": w, "e_bits": e, "a_bits": a,
                          "teacher": teacher.out_dir, "out_dir": str(RUNS / name), **overrides})


def lm_control(preset: str, dataset: str = "ptb", tag: str = "control", **overrides) -> TrainConfig:
    """The full-precision control: the students' loop, budget and distillation loss without quantization. What it
    loses against the teacher is what the loop costs; the rest of a student's gap is what quantization costs."""
    return lm_student(preset, "fp", (32, 32, 32), dataset, tag=tag, loss="dist", **overrides)


def xtc_teacher(preset: str, task: str = "sst2") -> TrainConfig:
    """The fine-tuned BERT-family teacher of the XTC runs (offline: all-MiniLM-L6-v2, a sentence-embedding model)."""
    model = "tiny-bert" if preset == "smoke" else ("bert-base-uncased" if preset == "paper" else "minilm-l6")
    steps = {"smoke": 2, "cpu": 500}.get(preset)
    return TrainConfig(task="classification", model=model, dataset=task, method="fp", lr=5e-5 if preset != "smoke"
                       else 1e-3, seq_len=128 if preset == "paper" else 64, batch_size=32 if preset != "smoke" else 8,
                       max_steps=steps, epochs=3, max_examples=64 if preset == "smoke" else None, eval_batch_size=64,
                       save_every=100, preset=preset, dtype=preset_dtype(preset),
                       out_dir=str(RUNS / f"xtc-{task}-{model}-fp-{preset}"))


def xtc_grid(preset: str, task: str = "sst2") -> list[TrainConfig]:
    """XTC on GLUE: teacher; layer reduction only; 1-bit and 2-bit at full depth; 1-bit and 2-bit after layer
    reduction (initialised from the reduced full-precision student). Keeps every other layer, as XTC keeps
    [1, 3, 5, 7, 9, 11] of 12."""
    t = xtc_teacher(preset, task)
    depth = {"tiny-bert": 2, "minilm-l6": 6, "bert-base-uncased": 12}[t.model]
    keep = tuple(range(1, depth, 2))
    steps = {"smoke": 2, "cpu": 300}.get(preset)
    base = {**asdict(t), "max_steps": steps, "epochs": 18, "teacher": t.out_dir}

    def cfg(name, **kw):
        return TrainConfig(**{**base, **kw, "out_dir": str(RUNS / f"xtc-{task}-{t.model}-{name}-{preset}")})
    reduced = cfg(f"fp-{len(keep)}L", keep_layers=keep)
    return [t, reduced,
            cfg(f"bwn-{depth}L", method="bwn", w_bits=1), cfg(f"twn-{depth}L", method="twn", w_bits=2),
            cfg(f"bwn-{len(keep)}L", method="bwn", w_bits=1, keep_layers=keep, init_from=reduced.out_dir),
            cfg(f"twn-{len(keep)}L", method="twn", w_bits=2, keep_layers=keep, init_from=reduced.out_dir)]


def lm_xtc_grid(preset: str, dataset: str = "ptb") -> list[TrainConfig]:
    """Beyond both papers: XTC's recipe on the generative model (binary/ternary weights, with and without layer
    reduction), distilled on logits as the other LM students, to compare with QuantGPT at equal bits."""
    depth = 2 if preset == "smoke" else 30  # SmolLM2-135M has 30 layers
    keep = tuple(range(1, depth, 2))
    reduced = lm_student(preset, "fp", (32, 32, 32), dataset, tag=f"xtc-{len(keep)}L", keep_layers=keep,
                         loss="dist", a_bits=None, e_bits=None, w_bits=2)
    return [reduced,
            lm_student(preset, "twn", (2, 2, 8), dataset, tag="xtc", loss="dist"),
            lm_student(preset, "bwn", (1, 1, 8), dataset, tag="xtc", loss="dist"),
            lm_student(preset, "twn", (2, 2, 8), dataset, tag=f"xtc-{len(keep)}L", loss="dist", keep_layers=keep,
                       init_from=reduced.out_dir),
            lm_student(preset, "bwn", (1, 1, 8), dataset, tag=f"xtc-{len(keep)}L", loss="dist", keep_layers=keep,
                       init_from=reduced.out_dir)]


DTYPE_STEPS = {"smoke": 2, "cpu": 25, "gpu": 60, "paper": 60}


def lm_dtype_grid(preset: str) -> list[TrainConfig]:
    """QuantGPT 2-2-8 for ``DTYPE_STEPS`` steps in bf16 autocast (seeds 0 and 1) and in fp32 (seed 0), distilled from
    the pretrained model (no fine-tuned teacher needed, so the check fits the start of a GPU slot): bf16 is fine
    where its curve lies as close to fp32's as a second seed's lies to the first."""
    short = {"teacher": None, "max_steps": DTYPE_STEPS[preset], "curve_points": 4,
             "test_tokens": 256 if preset == "smoke" else 16384, "save_every": DTYPE_STEPS[preset]}
    return [lm_student(preset, "mds", tag=f"{dtype}{'-seed1' if seed else ''}", dtype=dtype, seed=seed, **short)
            for dtype, seed in (("bf16", 0), ("bf16", 1), ("fp32", 0))]


# the contrastive loss's weight against the paper's 0.1 (grid lm-lambda), paired with mds-228 and its dist-only run
LAMBDAS = (1.0, 10.0)
# the long runs (grid lm-long): 5x the cpu preset's 2-2-8 budget, evaluated where the cpu preset's runs ended too
LONG_FACTOR = 5
LONG_LAMBDA = 0.1  # the weight the long L_cont run uses: the paper's, unless grid lm-lambda shows a better one


def lm_lambda_grid(preset: str) -> list[TrainConfig]:
    """QuantGPT 2-2-8 with L_cont weighted by each of ``LAMBDAS`` (same seed, data order and initial student as
    ``mds-228``), with the two runs they are read against: lambda = 0.1 (the paper's) and L_dist alone."""
    return [lm_student(preset, "mds"), lm_student(preset, "mds", tag="dist-only", loss="dist"),
            *[lm_student(preset, "mds", tag=f"lam{lam:g}", lam=lam) for lam in LAMBDAS]]


def lm_long_grid(preset: str) -> list[TrainConfig]:
    """QuantGPT 2-2-8 with and without L_cont and LAQ 2-2-8 for ``LONG_FACTOR`` times the preset's 2-2-8 budget,
    evaluated at log-spaced steps and at the step where the preset's own runs end (their curves continue)."""
    steps = lm_base(preset)["max_steps"]
    long = dict(max_steps=LONG_FACTOR * steps, curve_points=10, curve_at=(steps,))
    return [lm_student(preset, "mds", tag="long", lam=LONG_LAMBDA, **long),
            lm_student(preset, "mds", tag="dist-only-long", loss="dist", **long),
            lm_student(preset, "laq", tag="long", **long)]


def grid(name: str, preset: str) -> list[TrainConfig]:
    """Named grids: ``lm-table`` (Table 1 PTB column: teacher + 4 methods x 3 settings), ``lm-ablations``
    (Tables 4/7, Fig. 7 at 2-2-8), ``lm-xtc`` (XTC's recipe on the generative model), ``lm-gamma-init`` (QuantGPT
    at 8 and 4 bits with gamma started at ``GAMMA_INIT``), ``lm-seeds`` (QuantGPT 2-2-8 with seeds 1 and 2),
    ``xtc[-task]`` (XTC on GLUE), ``dialogue-table`` and ``xsum-table`` (the other two tasks: ``task_grids``),
    ``xsum-teacher-budget`` (the summarization teacher for three epochs), ``xsum-distill-all`` (beyond the paper:
    summarization students distilled on the article's positions too)."""
    if name == "lm-table":
        return [lm_teacher(preset), lm_control(preset)] + [lm_student(preset, m, b) for b in reversed(LM_SETTINGS)
                                                           for m in LM_METHODS]
    if name == "lm-lr":  # the control at a few rates for a quarter of the budget (validation only): picks STUDENT_LR
        short = {"max_steps": max(lm_base(preset)["max_steps"] // 4, 1), "test_tokens": 16384} \
            if preset in ("smoke", "cpu") else {}
        return [lm_teacher(preset)] + [lm_control(preset, tag=f"control-lr{lr:g}", lr=lr, **short)
                                       for lr in LR_SWEEP]
    if name == "lm-ablations":  # with the main run they are read against
        return [
            lm_student(preset, "mds"),
            lm_student(preset, "mds", tag="dist-only", loss="dist"),  # Table 7: L_dist only
            lm_student(preset, "mds_pact_grad", tag="dist-only", loss="dist"),  # Table 7: ours with PACT grad
            lm_student(preset, "mds", tag="immediate", use_bank=False),  # Fig. 7: bank vs immediate
            *[lm_student(preset, "mds", tag=f"neg{k}", num_negatives=k)  # Fig. 7: number of negatives
              for k in ((2, 4) if preset == "smoke" else (8, 32))],
            *[lm_student(preset, "mds", tag=mode.replace("+", "-"), negatives=mode)  # Table 4
              for mode in ("teacher+bank", "bank", "global", "sequence")],
            lm_student(preset, "mds", tag="first-layer", contrast_layer="first"),  # Table 6: first decoder layer
        ]
    if name == "lm-step0":  # each method's student before its first update (run with --step0: nothing trains)
        return [lm_control(preset)] + [lm_student(preset, m, b) for b in ((8, 8, 8), (2, 2, 8)) for m in LM_METHODS] + [
            lm_student(preset, "pact_clip_grid"),  # the other reading of PACT: every 2-bit code 0
            # 8-bit activations alone (weights in full precision): one range per token, or one per batch
            lm_student(preset, "minmax", (32, 32, 8), tag="a8-token"),
            lm_student(preset, "minmax", (32, 32, 8), tag="a8-tensor", act_granularity="tensor"),
            lm_student(preset, "minmax", (32, 32, 8), tag="a8-tensor-b1", act_granularity="tensor", eval_batch_size=1)]
    if name == "lm-xtc":
        return lm_xtc_grid(preset)
    if name == "lm-lambda":  # how much L_cont's weight moves the 2-bit student
        return lm_lambda_grid(preset)
    if name == "lm-long":  # 5x the tokens: does L_cont's effect show with a longer budget?
        return lm_long_grid(preset)
    if name == "lm-gamma-init":  # beyond the paper: QuantGPT with gamma started where the clipping error is least
        return [lm_student(preset, "mds", bits, tag=f"gamma{g:g}", gamma_init=g) for bits, g in GAMMA_INIT.items()]
    if name == "lm-teacher-budget":  # how long the teacher fine-tunes before it overfits: the students' budget
        return [lm_teacher(preset, tag=f"{lm_base(preset, 'ptb').get('epochs', 1):g}ep",
                           epochs=lm_base(preset, "ptb").get("epochs", 1))]
    if name in ("xsum-lr", "dialogue-lr"):  # the control's rate sweep of a task grid (``task_grids.task_lr_grid``)
        from .task_grids import task_lr_grid
        return task_lr_grid(name.replace("-lr", "-table"), preset)
    if name == "xsum-teacher-budget":  # the summarization teacher for three epochs: why it trains one
        from .task_grids import xsum_teacher_budget
        return xsum_teacher_budget(preset)
    if name == "xsum-distill-all":  # beyond the paper: the article's positions distilled too
        from .task_grids import xsum_distill_all
        return xsum_distill_all(preset)
    if name == "lm-dtype":  # bf16 autocast against fp32 on a short real run, with a second bf16 seed for the noise
        return lm_dtype_grid(preset)
    if name == "lm-seeds":  # how far one seed moves a result: QuantGPT and LAQ (the paper's best baseline) at 2-2-8
        return [lm_student(preset, m, tag=f"seed{s}" if s else "", seed=s) for m in ("mds", "laq") for s in (0, 1, 2)]
    if name.startswith("xtc"):  # xtc or xtc-<glue task>
        return xtc_grid(preset, name.split("-", 1)[1] if "-" in name else "sst2")
    from .task_grids import TASK_GRIDS, task_grid
    if name in TASK_GRIDS:  # next-utterance prediction and summarization
        return task_grid(name, preset)
    raise ValueError(f"unknown grid {name!r}; known: lm-table, lm-lr, lm-ablations, lm-xtc, lm-lambda, lm-long, "
                     f"lm-gamma-init, lm-dtype, "
                     f"lm-teacher-budget, lm-seeds, xtc[-<glue task>], xsum-teacher-budget, xsum-lr, xsum-distill-all, "
                     f"dialogue-lr, "
                     f"{', '.join(TASK_GRIDS)}")


def run_key(cfg: TrainConfig) -> str:
    """A run's short name inside its grid: "teacher", "control", or method, bits and tag ("mds-228-dist-only")."""
    name = Path(cfg.out_dir).name.removesuffix(f"-{cfg.preset}")
    name = name.split(f"-{cfg.model.split('/')[-1]}-", 1)[-1]
    return {"fp": "teacher", "fp-323232-control": "control"}.get(name, name.replace("fp-323232-", ""))


def runs(name: str, preset: str) -> dict[str, TrainConfig]:
    """The configs of grid ``name`` by their short names (``run_key``): tables look runs up by name, so a reordered
    grid cannot mislabel a row."""
    out = {}
    for cfg in grid(name, preset):
        key = run_key(cfg)
        if key in out:
            raise ValueError(f"grid {name!r} has two runs named {key!r}")
        out[key] = cfg
    return out


def result_path(cfg: TrainConfig) -> Path:
    return RESULTS / cfg.task / f"{Path(cfg.out_dir).name}.json"


def _same(a: dict, b: dict, ignore: tuple[str, ...] = ()) -> bool:
    """Equal configs, up to fields that do not change the computation (and ``ignore``); a field missing from an
    older file counts as its default (so adding a field does not orphan earlier results). ``a`` is a stored config
    (see ``recorded_config``), ``b`` the one asked for: asking for dtype "auto" accepts the dtype a run was made in."""
    d = asdict(TrainConfig())

    def norm(k, x):
        # a run folder is known by its name: a result made in another checkout (absolute path) is the same run
        if k in RUN_FOLDERS and x:
            return Path(x).name
        return list(x) if isinstance(x, tuple) else x

    skip = set(VOLATILE) | set(ignore) | ({"dtype"} if b.get("dtype", "auto") == "auto" else set())
    return all(norm(k, a.get(k, d.get(k))) == norm(k, b.get(k, d.get(k))) for k in set(a) | set(b) if k not in skip)


def recorded_config(res: dict) -> dict:
    """A result file's config with dtype "auto" replaced by the dtype the run resolved it to (recorded beside it; a
    CPU run from before the dtype field computed in fp32)."""
    cfg = dict(res["config"])
    if cfg.get("dtype", "auto") == "auto":
        predates = "dtype" not in cfg and res.get("device") == "cpu"
        cfg["dtype"] = res.get("dtype") or ("fp32" if predates else "auto")
    return cfg


def load_result(cfg: TrainConfig) -> dict | None:
    """The committed result of exactly this config, or None."""
    path = result_path(cfg)
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    return res if _same(recorded_config(res), asdict(cfg)) else None


def run(cfg: TrainConfig, progress: bool = True) -> dict:
    """Load the committed result of ``cfg`` or train it (resuming a killed run) and commit-ready save it."""
    done = load_result(cfg)
    if done is not None:
        return done
    _ensure_dependencies(cfg, progress)
    return _train_and_save(replace(cfg, progress=progress, resume=True))


def _ensure_dependencies(cfg: TrainConfig, progress: bool) -> None:
    """Rebuild the runs ``cfg`` starts from (teacher, init_from) when their weights are not on this machine."""
    for dep in (cfg.teacher, cfg.init_from):
        if dep and not (Path(dep) / "model.safetensors").is_file():
            recipe = _recipe_for(dep, cfg)
            if recipe is None:
                raise FileNotFoundError(f"weights missing in {dep} and no recipe to rebuild them")
            _train_and_save(replace(recipe, progress=progress, resume=True))


def _recipe_for(out_dir: str, cfg: TrainConfig) -> TrainConfig | None:
    from .task_grids import TASK_GRIDS, task_teacher
    candidates = []
    if cfg.task == "lm":
        candidates += [lm_teacher(cfg.preset, cfg.dataset)] + lm_xtc_grid(cfg.preset, cfg.dataset)
    if cfg.task == "classification":
        candidates += xtc_grid(cfg.preset, cfg.dataset)
    if cfg.task in ("mc", "summarization", "summarization-lm"):
        candidates += [task_teacher(name, cfg.preset) for name in TASK_GRIDS]
    return next((c for c in candidates if c.out_dir == out_dir), None)


def _train_and_save(cfg: TrainConfig) -> dict:
    res = train(cfg)
    write_json(result_path(cfg), res)
    return res


def run_grid(configs: list[TrainConfig], progress: bool = True, run_missing: bool = True) -> list[dict | None]:
    """Run (or load) every config in order, with a progress bar over the grid. With ``run_missing=False`` nothing
    is trained: configs without a committed result give None (the book shows them as "not run")."""
    out = []
    for cfg in tqdm(configs, desc="runs", disable=not progress):
        out.append(run(cfg, progress=progress) if run_missing else load_result(cfg))
    return out


def trained_model(cfg: TrainConfig, device: str = "cpu", run_missing: bool = True):
    """The trained model of ``cfg`` from its run folder's checkpoint (trained again, resumably, when the folder
    is missing, e.g. on a fresh clone that only has the committed result files; with ``run_missing=False`` it
    prints the command that would make it and returns None)."""
    from .models import load_tokenizer
    from .students import load_trained_student

    ckpt = Path(cfg.out_dir) / "checkpoint.pt"
    if not ckpt.is_file() and not run_missing:
        print(f"weights of {Path(cfg.out_dir).name} are not on this machine (run folders are not committed): "
              f"{command(cfg)}")
        return None
    if not ckpt.is_file():
        _ensure_dependencies(cfg, cfg.progress)
        train(replace(cfg, resume=True))
    return load_trained_student(cfg, load_tokenizer(cfg.model), ckpt).to(device)


def status(configs: list[TrainConfig]) -> list[dict]:
    """Which configs have a committed result (for the book's 'not run' rows)."""
    return [{"name": Path(c.out_dir).name, "done": load_result(c) is not None, "command": command(c)}
            for c in configs]


def command(cfg: TrainConfig) -> str:
    """The shell command that runs ``cfg`` from the repository root."""
    defaults = TrainConfig()
    args = []
    for k, v in asdict(cfg).items():
        if k in ("progress", "resume", "extra") or v == getattr(defaults, k):
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            args.append(flag if v else f"--no-{k.replace('_', '-')}")
        elif isinstance(v, (tuple, list)):
            args.append(f"{flag} {' '.join(map(str, v))}")
        else:
            args.append(f"{flag} {v}")
    return ("python -m qlib train " + " ".join(args)).replace(str(ROOT) + "/", "")


from .cached_evals import (FIGURE_SENTENCE, SAMPLE_PROMPTS, SAMPLE_TOKENS,  # noqa: E402,F401
                           TRANSFER_TOKENS, figure_data, figure_module, figure_modules, figures_path, samples_path,
                           step0_eval, step0_path, text_samples, transfer_eval, transfer_path)
