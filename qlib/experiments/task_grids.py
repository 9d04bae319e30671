"""The grids of the paper's other two tasks: next-utterance prediction (``dialogue-table``, Table 1's last column)
and summarization (``xsum-table``, Table 3). Each grid is the teacher (the pretrained model fine-tuned with the task
loss), the full-precision control (the students' loop and distillation loss, no quantization) and the four methods
at 2-2-8, named as the LM grids are (``teacher``, ``control``, ``mds-228``, ...).

Presets: ``paper`` is the paper's setting (double-head GPT-2 on Persona-Chat; BART-base on XSum), which needs the
hub. ``smoke``, ``cpu`` and ``gpu`` use the offline stand-ins: the Chit-Chat corpus as a 20-candidate task and
SmolLM2-135M-Instruct with a double head; the 321 offline XSum articles (221 train / 50 valid / 50 test) and
SmolLM2 as a decoder-only summarizer (no encoder-decoder with pretrained weights is offline).
"""
from __future__ import annotations

from ..config import TrainConfig
from .presets import LM_METHODS, LR_SWEEP, STUDENT_LR, check_preset, named_run, preset_dtype, student_run
from .registry import grid_builder

TASK_GRIDS = ("dialogue-table", "xsum-table")


# the students' and the control's rate where a task's own sweep overrides the language-modeling one
# (``experiments.STUDENT_LR``). xsum, cpu: chosen by ``xsum-lr`` (the control after a quarter of the budget: 3e-5 ->
# 1.0003x, 1e-4 -> 1.009x the teacher's validation summary PPL; 3e-4 failed); gpu: not swept, the cpu choice (4
# articles a step against the cpu preset's 2: both train on far fewer tokens a step than the LM runs do).
# dialogue, cpu: chosen by ``dialogue-lr`` (validation PPL of the gold reply after a quarter of the budget: 3e-5 ->
# 1.0014x, 1e-4 -> 1.030x, 3e-4 -> 1.079x); gpu: not swept, the cpu choice
TASK_STUDENT_LR = {"xsum-table": {"cpu": 1e-4, "gpu": 1e-4}, "dialogue-table": {"cpu": 3e-5, "gpu": 3e-5}}


def task_base(name: str, preset: str) -> dict:
    """The students' settings of grid ``name`` in ``preset`` (the teacher overrides its budget and rate)."""
    check_preset(preset)
    if name == "dialogue-table":
        if preset == "paper":  # App. B.3: seq 512, batch 16, 2 epochs, 32 negatives, rates 5e-4 / 1e-3
            return dict(task="mc", model="gpt2", dataset="personachat", seq_len=512, batch_size=16, epochs=2,
                        num_negatives=32, lr=5e-4, save_every=200, preset=preset)
        sizes = {  # (seq_len, batch, steps, train candidates, valid examples (curve), test examples)
            "smoke": (64, 2, 2, 2, 4, 4), "cpu": (128, 2, 150, 4, 40, 100), "gpu": (256, 8, 500, 4, 300, 1000)}[preset]
        seq, batch, steps, cands, n_valid, n_test = sizes
        return dict(task="mc", model="tiny-llama" if preset == "smoke" else "smollm2-135m", dataset="chitchat",
                    seq_len=seq, batch_size=batch, max_steps=steps, train_candidates=cands, eval_examples=n_valid,
                    test_examples=n_test, max_examples=64 if preset == "smoke" else None, num_negatives=32 if
                    preset != "smoke" else 4, curve_points=2 if preset == "smoke" else 4, eval_batch_size=2,
                    save_every=1 if preset == "smoke" else 25,
                    lr=TASK_STUDENT_LR[name].get(preset, STUDENT_LR[preset]), preset=preset,
                    dtype=preset_dtype(preset))
    if name == "xsum-table":
        if preset == "paper":  # App. B.3: source 512, batch 128, 8 epochs, rates 2e-4 / 1e-3, 32 negatives
            return dict(task="summarization", model="facebook/bart-base", dataset="xsum", seq_len=512, source_len=512,
                        target_len=64, batch_size=16, grad_accum=8, epochs=8, lr=2e-4, num_negatives=32,
                        save_every=200, preset=preset)
        sizes = {"smoke": (64, 16, 2, 2), "cpu": (384, 48, 2, 220), "gpu": (512, 64, 4, 110)}[preset]
        source, target, batch, steps = sizes  # 2 epochs of the 221 training articles (221 articles overfit fast)
        return dict(task="summarization-lm", model="tiny-llama" if preset == "smoke" else "smollm2-135m",
                    dataset="xsum-sample", seq_len=source + target, source_len=source, target_len=target,
                    batch_size=batch, max_steps=steps, max_examples=4 if preset == "smoke" else None,
                    num_negatives=32 if preset != "smoke" else 4, curve_points=2 if preset == "smoke" else 5,
                    eval_batch_size=2, save_every=1 if preset == "smoke" else 25,
                    lr=TASK_STUDENT_LR[name].get(preset, STUDENT_LR[preset]), preset=preset,
                    dtype=preset_dtype(preset))
    raise ValueError(f"unknown task grid {name!r}; known: {TASK_GRIDS}")


# the teachers' budgets (optimizer steps) and rates: long enough for the fresh multiple-choice head to learn, short
# enough that 221 articles are not memorised. xsum: one epoch of the 221 articles; with three (``xsum-teacher-budget``)
# the validation summary PPL fell from 21.9 to 14.9 inside the first epoch and rose to 24.4 by the end of the third
TEACHER_STEPS = {"dialogue-table": {"smoke": 2, "cpu": 300, "gpu": 1000},
                 "xsum-table": {"smoke": 2, "cpu": 110, "gpu": 55}}
TEACHER_LR = {"smoke": 1e-3, "cpu": 1e-4, "gpu": 1e-4}


def _run(base: dict, run: str, **fields) -> TrainConfig:
    prefix = f"{base['dataset']}-{base['model'].split('/')[-1]}"
    return named_run(prefix, run, **{**base, **fields})


def task_teacher(name: str, preset: str, tag: str = "", **overrides) -> TrainConfig:
    """The task's full-precision teacher (``tag`` and ``overrides``: a variant in a run folder of its own)."""
    base = task_base(name, preset)
    if preset != "paper":
        base.update(max_steps=TEACHER_STEPS[name][preset], lr=TEACHER_LR[preset])
    return _run(base, "fp" + (f"-{tag}" if tag else ""), method="fp", **overrides)


def teacher_epochs(cfg: TrainConfig) -> float:
    """How many passes over the 221 training articles of ``xsum-sample`` a summarization budget makes."""
    from ..data import XSUM_SAMPLE_PARTS

    if cfg.dataset != "xsum-sample" or cfg.max_steps is None:
        raise ValueError(f"epochs are counted for xsum-sample runs with max_steps, not {cfg.dataset!r}")
    return cfg.max_steps * cfg.batch_size * cfg.grad_accum / XSUM_SAMPLE_PARTS["train"]


@grid_builder("xsum-teacher-budget")
def xsum_teacher_budget(preset: str) -> list[TrainConfig]:
    """The summarization teacher trained for three epochs: the run whose validation curve chose one (none in the
    ``paper`` preset, which trains the paper's budget)."""
    if preset == "paper":
        return []
    steps = 3 * TEACHER_STEPS["xsum-table"][preset]
    return [task_teacher("xsum-table", preset, tag="3ep", max_steps=steps)]


@grid_builder("xsum-distill-all")
def xsum_distill_all(preset: str) -> list[TrainConfig]:
    """Beyond the paper: QuantGPT and LSQ at 2-2-8 distilled on every position of article and summary
    (``distill_span="all"``), read against the grid's summary-only runs; none in the ``paper`` preset (BART)."""
    if preset == "paper":
        return []
    return [task_student("xsum-table", preset, m, tag="distill-all", distill_span="all") for m in ("mds", "lsq")]


def task_student(name: str, preset: str, method: str, bits: tuple[int, int, int] = (2, 2, 8), tag: str = "",
                 **overrides) -> TrainConfig:
    base, (w, e, a) = task_base(name, preset), bits
    return _run(base, student_run(method, bits, tag), method=method, w_bits=w, e_bits=e, a_bits=a,
                teacher=task_teacher(name, preset).out_dir, **overrides)


def task_lr_grid(name: str, preset: str) -> list[TrainConfig]:
    """The teacher and the full-precision control of grid ``name`` at each rate of ``experiments.LR_SWEEP`` for a
    quarter of the students' budget: the students' rate is the largest whose control ends within 2% of the teacher's
    validation metric (the rule of the ``lm-lr`` sweep, chapter 4)."""
    if preset == "paper":  # the paper's own rates; no sweep
        return []
    steps = max(task_base(name, preset)["max_steps"] // 4, 1)
    control = (lambda tag, **kw: task_student(name, preset, "fp", (32, 32, 32), tag=tag, loss="dist", **kw))
    # validation is what the sweep reads (test_examples=2: the test part is only touched); hits@1 over 20
    # candidates makes each dialogue evaluation long, so its sweep reads step 0 and the end only
    short = {"curve_points": 0} if name == "dialogue-table" else {}
    sweep = [control(f"control-lr{lr:g}", lr=lr, max_steps=steps, test_examples=2, **short) for lr in LR_SWEEP]
    if name != "xsum-table":
        return [task_teacher(name, preset)] + sweep
    # the first attempt: the control for the whole budget at the rate the LM sweep chose, which this task's did not
    first = control(f"control-lr{STUDENT_LR[preset]:g}-full", lr=STUDENT_LR[preset])
    return [task_teacher(name, preset)] + sweep + [first]


def task_grid(name: str, preset: str) -> list[TrainConfig]:
    """Teacher, control (``fp-323232-control``: no quantization, distillation loss) and the four methods at 2-2-8."""
    control = task_student(name, preset, "fp", (32, 32, 32), tag="control", loss="dist")
    return [task_teacher(name, preset), control] + [task_student(name, preset, m) for m in LM_METHODS]


for _name in TASK_GRIDS:  # the two task tables and their controls' rate sweeps ("xsum-lr", "dialogue-lr")
    grid_builder(_name)(lambda preset, _name=_name: task_grid(_name, preset))
    grid_builder(_name.replace("-table", "-lr"))(lambda preset, _name=_name: task_lr_grid(_name, preset))
