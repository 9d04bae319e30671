"""How the recipe was chosen, read from the committed results: the learning-rate sweeps of the full-precision
control, the teacher's fine-tuning budget, and bf16 autocast against fp32."""
from __future__ import annotations

import pandas as pd

from .. import experiments as X
from .common import device_label, load_grid

SWEEP_METRIC = {"dialogue-lr": "valid_reply_ppl"}  # the validation PPL a rate sweep reads (else "valid_ppl")
RATE_RULE = 1.02  # a swept rate qualifies when its control ends within 2% of the teacher's validation PPL


def swept_rate(preset: str, grid: str = "lm-lr") -> float | None:
    """The rate the sweep ``grid`` picks by its rule from the committed results: the largest whose full-precision
    control ends within 2% of the teacher after a quarter of the budget (None until the teacher and every swept
    control have landed). The students' rate of the grid's table must be this one (tested)."""
    metric, runs = SWEEP_METRIC.get(grid, "valid_ppl"), load_grid(grid, preset)
    if not runs:
        return None
    teacher = runs.metric("teacher", metric)
    ends = {cfg.lr: runs.metric(key, metric) for key, cfg in runs.configs.items()
            if key != "teacher" and not key.endswith("-full")}
    if teacher is None or None in ends.values():
        return None
    within = [lr for lr, ppl in ends.items() if ppl <= RATE_RULE * teacher]
    return max(within) if within else None


def lr_sweep_table(preset: str, grid: str = "lm-lr") -> pd.DataFrame:
    """A learning-rate sweep of the full-precision control (grid ``lm-lr``, ``xsum-lr`` or ``dialogue-lr``): its
    validation PPL (of the gold reply for dialogue) at the end of a quarter of the budget against the teacher's, per
    rate; the students use the largest rate within 2%."""
    metric = SWEEP_METRIC.get(grid, "valid_ppl")
    runs = load_grid(grid, preset)
    if not runs:
        return pd.DataFrame([{"learning rate": f"no sweep in the {preset} preset (its rates are the paper's)"}])
    teacher = runs.metric("teacher", metric)
    chosen = X.STUDENT_LR[preset] if grid == "lm-lr" else X.task_base(grid.replace("-lr", "-table"), preset)["lr"]
    rows = []
    for key, (cfg, res) in runs.items():
        if key == "teacher":
            continue
        ppl = res["metrics"][metric] if res else None
        worst = max(p[metric] for p in res["curve"]) if res else None
        rows.append({"learning rate": f"{cfg.lr:g}", "steps": res["steps"] if res else cfg.max_steps,
                     "control: valid PPL at the end": round(ppl, 2) if ppl else "not run",
                     "/ teacher": ppl / teacher if ppl and teacher else None,
                     "worst point on the way / teacher": worst / teacher if worst and teacher else None,
                     "chosen": "yes" if cfg.lr == chosen else ""})
    return pd.DataFrame(rows)


def teacher_budget_reading(preset: str, grid: str = "lm-teacher-budget") -> str:
    """One sentence from a teacher-budget run (``lm-teacher-budget`` or ``xsum-teacher-budget``): where the
    teacher's validation PPL was lowest, where it ended, and the epochs the preset's teacher trains for because of
    it."""
    runs = load_grid(grid, preset)
    if not runs:
        return f"**Teacher budget:** the {preset} preset trains the paper's budget; it has no budget run."
    (key, (cfg, res)), = runs.items()
    if res is None:
        return f"**Teacher budget:** not run (`{X.grid_command(grid, preset)}`)."
    if cfg.task == "lm":
        epochs, chosen, what = cfg.epochs, X.lm_teacher(preset).epochs, "validation PPL"
        test = f"test PPL {res['metrics']['test_ppl']:.2f}"
    else:
        epochs, chosen = X.teacher_epochs(cfg), X.teacher_epochs(X.task_teacher("xsum-table", preset))
        what, test = "validation summary PPL", f"test ROUGE-L {res['metrics']['test_rougeL']:.1f}"
    curve = res["curve"]
    best, end = min(curve, key=lambda c: c["valid_ppl"]), curve[-1]
    per_epoch = end["tokens"] / epochs
    return (f"**Teacher budget** ({preset} preset, {device_label(res)}): fine-tuned for {epochs:.0f} epochs, the "
            f"teacher's {what} went from {curve[0]['valid_ppl']:.1f} (step 0) to its lowest, "
            f"{best['valid_ppl']:.1f}, after {best['tokens'] / per_epoch:.1f} epochs and ended at "
            f"{end['valid_ppl']:.1f} ({test}); the preset's teacher trains {chosen:.0f} "
            f"epoch{'s' if round(chosen) != 1 else ''}"
            + ("." if round(chosen) == round(epochs) else
               f" with its learning rate decayed over {'them' if round(chosen) != 1 else 'it'}, not over "
               f"{epochs:.0f}, so its own numbers (below) are not this run's at that point."))


def dtype_table(preset: str) -> pd.DataFrame:
    """The bf16-vs-fp32 check (grid ``lm-dtype``): each run's validation PPL along the way and its test PPL."""
    rows = []
    for key, (cfg, res) in load_grid("lm-dtype", preset).items():
        row = {"run": key, "dtype": cfg.dtype, "seed": cfg.seed, "steps": cfg.max_steps}
        if res is None:
            rows.append({**row, "test PPL": "not run: " + X.grid_command("lm-dtype", preset, key)})
            continue
        row.update({f"valid @ {c['step']}": c["valid_ppl"] for c in res["curve"][1:]})
        rows.append({**row, "test PPL": res["metrics"]["test_ppl"], "device": res.get("device_name", res["device"]),
                     "wall s": round(res["wall_time_s"])})
    return pd.DataFrame(rows)


def dtype_reading(preset: str) -> str:
    """One sentence: whether bf16 autocast moves the test PPL further from fp32 than a second seed moves it. With one
    fp32 run and two bf16 seeds there are three readings: "agree" (fp32 is nearer the first bf16 seed than the second
    seed is), "cannot be told apart" (fp32 is nearer one of the two bf16 seeds than they are to each other) and
    "differ" (fp32 lies further from both bf16 seeds than they lie from each other)."""
    runs = load_grid("lm-dtype", preset)
    ppl = {k: runs.metric(k) for k in runs}
    if None in ppl.values():
        return f"**bf16 against fp32:** not run (`{X.grid_command('lm-dtype', preset)}`)."
    bf16, seed1, fp32 = ppl["mds-228-bf16"], ppl["mds-228-bf16-seed1"], ppl["mds-228-fp32"]
    dtype_gap, seed_gap, other_gap = abs(bf16 / fp32 - 1), abs(bf16 / seed1 - 1), abs(seed1 / fp32 - 1)
    if dtype_gap <= seed_gap:
        agree = "agree: the dtype moves the result less than a second seed does"
    elif other_gap <= seed_gap:
        agree = (f"cannot be told apart: fp32 lies {100 * other_gap:.1f}% from the second bf16 seed, nearer than the "
                 "two seeds lie to each other")
    else:
        agree = "differ: fp32 lies further from both bf16 seeds than they lie from each other"
    return (f"**bf16 against fp32** ({preset} preset): test PPL {bf16:.1f} in bf16 autocast and {fp32:.1f} in fp32 "
            f"({100 * dtype_gap:.1f}% apart); a second bf16 seed gives {seed1:.1f} ({100 * seed_gap:.1f}% from the "
            f"first). bf16 and fp32 {agree}.")
