"""The language-modeling and XTC grids, each registered by name (``registry.GRIDS``). ``python -m qlib grid NAME
--preset P --list`` prints a grid's runs, their state and commands."""
from __future__ import annotations

from dataclasses import asdict

from ..config import TrainConfig
from .presets import (GAMMA_INIT, LM_METHODS, LM_SETTINGS, LR_SWEEP, lm_base, lm_control, lm_student, lm_teacher,
                      named_run, xtc_teacher)
from .registry import grid_builder


@grid_builder("lm-table")
def lm_table_grid(preset: str) -> list[TrainConfig]:
    """Table 1's PTB column: teacher, control and the four methods at each of the three settings."""
    return [lm_teacher(preset), lm_control(preset)] + [lm_student(preset, m, b) for b in reversed(LM_SETTINGS)
                                                       for m in LM_METHODS]


@grid_builder("lm-lr")
def lm_lr_grid(preset: str) -> list[TrainConfig]:
    """The control at a few rates for a quarter of the budget (validation only): picks ``STUDENT_LR``."""
    short = {"max_steps": max(lm_base(preset)["max_steps"] // 4, 1), "test_tokens": 16384} \
        if preset in ("smoke", "cpu") else {}
    return [lm_teacher(preset)] + [lm_control(preset, tag=f"control-lr{lr:g}", lr=lr, **short) for lr in LR_SWEEP]


@grid_builder("lm-ablations")
def lm_ablations_grid(preset: str) -> list[TrainConfig]:
    """Tables 4, 6, 7 and Fig. 7 at 2-2-8, with the main run they are read against."""
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


@grid_builder("lm-step0")
def lm_step0_grid(preset: str) -> list[TrainConfig]:
    """Each method's student before its first update (run with --step0: nothing trains)."""
    return [lm_control(preset)] + [lm_student(preset, m, b) for b in ((8, 8, 8), (2, 2, 8)) for m in LM_METHODS] + [
        lm_student(preset, "pact_clip_grid"),  # the other reading of PACT: every 2-bit code 0
        # 8-bit activations alone (weights in full precision): one range per token, or one per batch
        lm_student(preset, "minmax", (32, 32, 8), tag="a8-token"),
        lm_student(preset, "minmax", (32, 32, 8), tag="a8-tensor", act_granularity="tensor"),
        lm_student(preset, "minmax", (32, 32, 8), tag="a8-tensor-b1", act_granularity="tensor", eval_batch_size=1)]


@grid_builder("lm-xtc")
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


@grid_builder("lm-gamma-init")
def lm_gamma_init_grid(preset: str) -> list[TrainConfig]:
    """Beyond the paper: QuantGPT at 8 and 4 bits with gamma started where the clipping error is least."""
    return [lm_student(preset, "mds", bits, tag=f"gamma{g:g}", gamma_init=g) for bits, g in GAMMA_INIT.items()]


@grid_builder("lm-teacher-budget")
def lm_teacher_budget_grid(preset: str) -> list[TrainConfig]:
    """How long the teacher fine-tunes before it overfits: the students' budget."""
    epochs = lm_base(preset, "ptb").get("epochs", 1)
    return [lm_teacher(preset, tag=f"{epochs:g}ep", epochs=epochs)]


DTYPE_STEPS = {"smoke": 2, "cpu": 25, "gpu": 60, "paper": 60}


@grid_builder("lm-dtype")
def lm_dtype_grid(preset: str) -> list[TrainConfig]:
    """QuantGPT 2-2-8 for ``DTYPE_STEPS`` steps in bf16 autocast (seeds 0 and 1) and in fp32 (seed 0), distilled from
    the pretrained model (no fine-tuned teacher needed, so the check fits the start of a GPU slot): bf16 is fine
    where its curve lies as close to fp32's as a second seed's lies to the first."""
    short = {"teacher": None, "max_steps": DTYPE_STEPS[preset], "curve_points": 4,
             "test_tokens": 256 if preset == "smoke" else 16384, "save_every": DTYPE_STEPS[preset]}
    return [lm_student(preset, "mds", tag=f"{dtype}{'-seed1' if seed else ''}", dtype=dtype, seed=seed, **short)
            for dtype, seed in (("bf16", 0), ("bf16", 1), ("fp32", 0))]


@grid_builder("lm-seeds")
def lm_seeds_grid(preset: str) -> list[TrainConfig]:
    """How far one seed moves a result: QuantGPT and LAQ (the paper's best baseline) at 2-2-8, seeds 0-2."""
    return [lm_student(preset, m, tag=f"seed{s}" if s else "", seed=s) for m in ("mds", "laq") for s in (0, 1, 2)]


# the contrastive loss's weight against the paper's 0.1 (grid lm-lambda), paired with mds-228 and its dist-only run
LAMBDAS = (1.0, 10.0)
# the long runs (grid lm-long): 5x the cpu preset's 2-2-8 budget, evaluated where the cpu preset's runs ended too
LONG_FACTOR = 5
LONG_LAMBDA = 0.1  # the weight the long L_cont run uses: the paper's, unless grid lm-lambda shows a better one


@grid_builder("lm-lambda")
def lm_lambda_grid(preset: str) -> list[TrainConfig]:
    """QuantGPT 2-2-8 with L_cont weighted by each of ``LAMBDAS`` (same seed, data order and initial student as
    ``mds-228``), with the two runs they are read against: lambda = 0.1 (the paper's) and L_dist alone."""
    return [lm_student(preset, "mds"), lm_student(preset, "mds", tag="dist-only", loss="dist"),
            *[lm_student(preset, "mds", tag=f"lam{lam:g}", lam=lam) for lam in LAMBDAS]]


@grid_builder("lm-long")
def lm_long_grid(preset: str) -> list[TrainConfig]:
    """QuantGPT 2-2-8 with and without L_cont and LAQ 2-2-8 for ``LONG_FACTOR`` times the preset's 2-2-8 budget,
    evaluated at log-spaced steps and also at the step where the preset's own runs end (the same token count; each
    long run has its own learning-rate schedule, so it is not the short run continued). Only presets that train a
    number of steps have it: the gpu and paper presets train epochs, the paper's budget or a share of it."""
    steps = lm_base(preset).get("max_steps")
    if steps is None:
        return []
    long = dict(max_steps=LONG_FACTOR * steps, curve_points=10, curve_at=(steps,))
    return [lm_student(preset, "mds", tag="long", lam=LONG_LAMBDA, **long),
            lm_student(preset, "mds", tag="dist-only-long", loss="dist", **long),
            lm_student(preset, "laq", tag="long", **long)]


@grid_builder("xtc")
def xtc_grid(preset: str, task: str = "sst2") -> list[TrainConfig]:
    """XTC on GLUE: teacher; layer reduction only; 1-bit and 2-bit at full depth; 1-bit and 2-bit after layer
    reduction (initialised from the reduced full-precision student). Keeps every other layer, as XTC keeps
    [1, 3, 5, 7, 9, 11] of 12."""
    t = xtc_teacher(preset, task)
    depth = {"tiny-bert": 2, "minilm-l6": 6, "bert-base-uncased": 12}[t.model]
    keep = tuple(range(1, depth, 2))
    steps = {"smoke": 2, "cpu": 300}.get(preset)
    base = {k: v for k, v in asdict(t).items() if k not in ("name", "out_dir")}
    base.update(max_steps=steps, epochs=18, teacher=t.out_dir)

    def cfg(run, **kw):
        return named_run(f"xtc-{task}-{t.model}", run, **{**base, **kw})
    reduced = cfg(f"fp-{len(keep)}L", keep_layers=keep)
    return [t, reduced,
            cfg(f"bwn-{depth}L", method="bwn", w_bits=1), cfg(f"twn-{depth}L", method="twn", w_bits=2),
            cfg(f"bwn-{len(keep)}L", method="bwn", w_bits=1, keep_layers=keep, init_from=reduced.out_dir),
            cfg(f"twn-{len(keep)}L", method="twn", w_bits=2, keep_layers=keep, init_from=reduced.out_dir)]
