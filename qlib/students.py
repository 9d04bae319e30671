"""The one place where the models of a run are built: the teacher (pretrained, or a finished fine-tuning run) and
the student of a config (layer reduction, initialisation from another run, quantization, gamma start). Training,
the after-run evaluations, the step-0 evaluation and the benchmark all call it, so they build the same model."""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

from safetensors.torch import load_model as load_safetensors_model
from safetensors.torch import save_model as save_safetensors_model

from .config import DYNAMIC_SCALING, TrainConfig
from .models import load_model
from .modules import quantize_model, set_gamma
from .runtime import atomic_path, load_checkpoint
from .tasks import TASKS
from .xtc import reduce_layers


def save_weights(model, path: Path) -> None:
    with atomic_path(path) as tmp:
        save_safetensors_model(model, str(tmp))


def load_run_weights(model, run_dir: str, what: str) -> None:
    """Load the final weights of a finished run (``run_dir/model.safetensors``) into ``model``, or say why not."""
    weights = Path(run_dir) / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{what} weights {weights} not found: run that run first")
    missing, unexpected = load_safetensors_model(model, str(weights), strict=False)
    if unexpected or missing:
        raise ValueError(f"{weights} does not fit the {what}: missing {list(missing)[:3]}, unexpected "
                         f"{list(unexpected)[:3]} (wrong model/teacher pairing, or other keep_layers?)")


def load_teacher(cfg: TrainConfig, tokenizer):
    """The full-precision model of ``cfg``: pretrained, with the weights of ``cfg.teacher`` when given."""
    teacher = load_model(cfg.model, cfg.task, vocab_size=len(tokenizer), seed=cfg.seed,
                         **TASKS[cfg.task].model_kwargs(cfg))
    if cfg.teacher:
        load_run_weights(teacher, cfg.teacher, "teacher")
    if len(tokenizer) > teacher.get_input_embeddings().weight.shape[0]:
        raise ValueError(f"tokenizer of {cfg.model!r} has {len(tokenizer)} tokens but the model's embedding only "
                         f"{teacher.get_input_embeddings().weight.shape[0]} rows: wrong tokenizer/model pairing")
    return teacher


def build_student(cfg: TrainConfig, teacher):
    """The student of ``cfg`` made from ``teacher`` (which is left unchanged): kept layers, weights of
    ``cfg.init_from``, then quantization and the gamma start. A run without a teacher in its loss and without any
    of these (a teacher's own fine-tuning) trains the teacher itself."""
    if cfg.resolved_loss == "lm" and not cfg.keep_layers and not cfg.init_from and cfg.method == "fp":
        return teacher
    student = reduce_layers(teacher, cfg.keep_layers) if cfg.keep_layers else copy.deepcopy(teacher)
    if cfg.init_from:
        load_run_weights(student, cfg.init_from, "student")
    if cfg.method != "fp":
        quantize_model(student, cfg.quant_config())
        if cfg.method in DYNAMIC_SCALING and cfg.gamma_init != 1.0:
            set_gamma(student, cfg.gamma_init)
    return student


def build_models(cfg: TrainConfig, tokenizer):
    """(teacher, student) of ``cfg``; the teacher is None when the loss does not use it."""
    teacher = load_teacher(cfg, tokenizer)
    if cfg.resolved_loss == "xtc":  # attention probabilities are distilled: they must be returned
        teacher.set_attn_implementation("eager")
    student = build_student(cfg, teacher)
    if cfg.resolved_loss == "lm":
        return None, student
    return teacher.eval().requires_grad_(False), student


def load_trained_student(cfg: TrainConfig, tokenizer, checkpoint: Path):
    """The student of ``cfg`` with the weights of its final checkpoint (layer reduction and quantizer state
    included), in eval mode on the CPU."""
    teacher = load_model(cfg.model, cfg.task, vocab_size=len(tokenizer), seed=cfg.seed,
                         **TASKS[cfg.task].model_kwargs(cfg))
    student = build_student(replace(cfg, init_from=None, teacher=None), teacher)
    student.load_state_dict(load_checkpoint(checkpoint)["model"])
    return student.eval()
