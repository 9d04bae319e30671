"""The presets and the builders of single runs: what a teacher, a student, the full-precision control and an XTC
run are in each preset, and how a run is named.

Presets: ``smoke`` (tiny random model, a few steps: CI), ``cpu`` (SmolLM2-135M, a token budget that a 2-core
machine finishes in about an hour per run), ``gpu`` (the paper's sequence and batch on one lent GPU, 10 epochs),
``paper`` (the paper's settings). A run has a short name (``teacher``, ``control``, ``mds-228-dist-only``): tables
look runs up by it, and its run folder (``runs/ptb-smollm2-135m-mds-228-dist-only-cpu``) is made from the same parts.
"""
from __future__ import annotations

from ..config import TrainConfig
from .store import runs_dir

PRESETS = ("smoke", "cpu", "gpu", "paper")
LM_SETTINGS = ((8, 8, 8), (4, 4, 8), (2, 2, 8))
LM_METHODS = ("pact", "lsq", "laq", "mds")  # the methods of the paper's Table 1
# where the lm-gamma-init runs start gamma, per setting: at 4 bits the least-error gamma of chapter 1's SmolLM2
# attention projection (Table 1.3: 3.5); at 8 bits 8, between the paper's 1 and that matrix's least-error 14.5
GAMMA_INIT = {(8, 8, 8): 8.0, (4, 4, 8): 3.5}

# the learning rate of the students and the control per preset. cpu: chosen by the `lm-lr` sweep of the control
# (the largest rate whose control ends within 2% of the teacher's validation PPL after a quarter of the budget:
# 3e-5 -> 1.0004x, 1e-4 -> 1.0002x, 3e-4 -> 1.0079x, with a transient of 1.16x at step 3; the sweep's result files
# are committed and shown in chapter 4). gpu and paper: the paper's 5e-4 for its batch of 32 x 512 tokens.
STUDENT_LR = {"smoke": 5e-4, "cpu": 3e-4, "gpu": 5e-4, "paper": 5e-4}
LR_SWEEP = (3e-5, 1e-4, 3e-4)
EVAL_CONTEXT = 512  # every preset evaluates with the paper's context, so presets compare
# the compute dtype of each preset's runs where it is pinned (else "auto": bf16 autocast on CUDA and on CPUs with AMX).
# cpu: fp32, the dtype its committed tables were made in; pinned so that a table stays one dtype on any machine,
# with AMX or without. bf16 against fp32 on a short real run: grid ``lm-dtype``.
PRESET_DTYPE = {"cpu": "fp32"}

# the language-modeling runs of each preset (students; the teacher overrides a few fields). cpu: 400 steps of
# 4 x 128 tokens (205k tokens; ROW_STEPS for 8/4 bits), compiled: the QAT step takes 0.75-0.83x the eager one's
# time on the 2-core CPU (results/bench/smollm2-135m-w2-b4-s128-cpu-compile.json); `compile` does not change results.
# gpu: the paper's sequence length and batch on one lent GPU, 10 epochs instead of 120. paper: Sec. B.2, seq 512,
# batch 32, 120 epochs on PTB (80 WikiText-2, 8 WikiText-103).
LM_PRESETS = {
    "smoke": dict(model="tiny-llama", seq_len=32, batch_size=2, max_steps=2, num_negatives=8, train_tokens=2048,
                  eval_tokens=256, test_tokens=256, save_every=1, curve_points=2),
    "cpu": dict(model="smollm2-135m", seq_len=128, batch_size=4, max_steps=400, eval_seq_len=EVAL_CONTEXT,
                eval_tokens=8192, num_negatives=64, save_every=25, compile=True),
    "gpu": dict(model="smollm2-135m", seq_len=512, batch_size=32, epochs=10, eval_tokens=32768, num_negatives=64,
                save_every=100),
    "paper": dict(model="smollm2-135m", seq_len=512, batch_size=4, grad_accum=8, eval_every=1000, save_every=200),
}
PAPER_EPOCHS = {"ptb": 120, "wikitext2": 80, "wikitext103": 8}
PAPER_NEGATIVES = {"ptb": 64}  # 32 elsewhere

# the gpu preset's teacher trains 3 epochs, not its students' 10: a 10-epoch fine-tuning at 1e-4 (grid
# lm-teacher-budget, H200, 2026-11-27) had its lowest validation PPL after 2.7 epochs (19.2) and ended overfitted (23.6)
TEACHER_EPOCHS = {"gpu": 3}
TEACHER_STEPS = {"smoke": 2, "cpu": 150}
# the cpu preset's 8-8-8 and 4-4-8 rows train for half the 2-2-8 budget (their step-0 PPL is already near the
# teacher's, chapter 1): it keeps the whole table within about six hours on the 2-core machine. Every method of a
# row has the same budget; the tables print each run's tokens.
ROW_STEPS = {"cpu": {(8, 8, 8): 200, (4, 4, 8): 200}}


def check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {PRESETS}")


def preset_dtype(preset: str) -> str:
    return PRESET_DTYPE.get(preset, "auto")


def named_run(prefix: str, run: str, **fields) -> TrainConfig:
    """A run called ``run`` ("fp" for a teacher, "fp-323232-<tag>" for a full-precision student, else
    "<method>-<bits>[-<tag>]") in folder ``<prefix>-<run>-<preset>``. Its short name: "teacher" for the teacher,
    the tag alone for a full-precision student ("control"), else ``run``."""
    name = "teacher" if run == "fp" else run.removeprefix("fp-323232-")
    return TrainConfig(**{**fields, "name": name, "out_dir": str(runs_dir() / f"{prefix}-{run}-{fields['preset']}")})


def student_run(method: str, bits: tuple[int, int, int], tag: str = "") -> str:
    w, e, a = bits
    return f"{method}-{w}{e}{a}{('-' + tag) if tag else ''}"


def lm_base(preset: str, dataset: str = "ptb") -> dict:
    """Common settings of the language-modeling runs of a preset (students; the teacher overrides a few)."""
    check_preset(preset)
    base = dict(LM_PRESETS[preset], dataset=dataset, lr=STUDENT_LR[preset], preset=preset)
    if preset == "paper":
        base.update(epochs=PAPER_EPOCHS[dataset], num_negatives=PAPER_NEGATIVES.get(dataset, 32))
    if preset in PRESET_DTYPE:
        base["dtype"] = PRESET_DTYPE[preset]
    return base


def _lm_prefix(base: dict) -> str:
    return f"{base['dataset']}-{base['model'].split('/')[-1]}"


def lm_teacher(preset: str, dataset: str = "ptb", tag: str = "", **overrides) -> TrainConfig:
    """The full-precision teacher: the pretrained model fine-tuned on the task with its LM loss."""
    base = lm_base(preset, dataset)
    epochs = {"epochs": TEACHER_EPOCHS[preset]} if preset in TEACHER_EPOCHS else {}
    fields = {**base, **epochs, "max_steps": TEACHER_STEPS.get(preset), "lr": 1e-4, "method": "fp", **overrides}
    return named_run(_lm_prefix(base), "fp" + (f"-{tag}" if tag else ""), **fields)


def lm_student(preset: str, method: str, bits: tuple[int, int, int] = (2, 2, 8), dataset: str = "ptb",
               tag: str = "", **overrides) -> TrainConfig:
    base = lm_base(preset, dataset)
    if tuple(bits) in ROW_STEPS.get(preset, {}):
        base["max_steps"] = ROW_STEPS[preset][tuple(bits)]
    w, e, a = bits
    fields = {**base, "method": method, "w_bits": w, "e_bits": e, "a_bits": a,
              "teacher": lm_teacher(preset, dataset).out_dir, **overrides}
    return named_run(_lm_prefix(base), student_run(method, bits, tag), **fields)


def lm_control(preset: str, dataset: str = "ptb", tag: str = "control", **overrides) -> TrainConfig:
    """The full-precision control: the students' loop, budget and distillation loss without quantization. What it
    loses against the teacher is what the loop costs; the rest of a student's gap is what quantization costs."""
    return lm_student(preset, "fp", (32, 32, 32), dataset, tag=tag, loss="dist", **overrides)


XTC_MODELS = {"smoke": "tiny-bert", "cpu": "minilm-l6", "gpu": "minilm-l6", "paper": "bert-base-uncased"}


def xtc_teacher(preset: str, task: str = "sst2") -> TrainConfig:
    """The fine-tuned BERT-family teacher of the XTC runs (offline: all-MiniLM-L6-v2, a sentence-embedding model)."""
    check_preset(preset)
    smoke = preset == "smoke"
    model = XTC_MODELS[preset]
    return named_run(f"xtc-{task}-{model}", "fp", preset=preset, task="classification", model=model,
                     dataset=task,
                     method="fp", lr=1e-3 if smoke else 5e-5, seq_len=128 if preset == "paper" else 64,
                     batch_size=8 if smoke else 32, max_steps={"smoke": 2, "cpu": 500}.get(preset), epochs=3,
                     max_examples=64 if smoke else None, eval_batch_size=64, save_every=100,
                     dtype=preset_dtype(preset))
