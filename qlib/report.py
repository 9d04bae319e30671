"""Tables and verdicts for the book: our committed results beside the paper's numbers (always labelled as the
paper's). Runs are looked up by name in their grid (``experiments.runs``); ours come only from result files under
``results/``; a run without one is "not run", with the command that makes it (``not_run``).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import experiments as X
from .data import GLUE_TASKS
from .labels import method_name, number_text, ratio_text, run_name
from .readings import (_ppl, bits_rows, device_label, dialogue_example, dtype_reading, dtype_table,  # noqa: F401
                       gamma_start_table, grid_text, task_claims, gammas, homogeneity_table, key_results, markdown,
                       packed_roundtrip, task_commands, size_table, teacher_budget_reading, teacher_test_ppl,
                       why_hard_data)

from .paper import (PAPER_PTB_TEACHER, PAPER_SIZES, PAPER_TABLE1, PAPER_TABLE4_PTB, PAPER_TABLE5,  # noqa: F401 - re-exported
                    PAPER_TABLE3, PAPER_TABLE7_PTB, PAPER_XSUM, PAPER_XTC_MNLI)

VARIANT_NAMES = {"mds-228": "QuantGPT (teacher negatives, memory bank, last layer)",
                 "mds-228-dist-only": "L_dist only", "mds_pact_grad-228-dist-only": "Ours with PACT",
                 "mds-228-immediate": "immediate student representations (no bank)",
                 "mds-228-neg8": "8 negatives", "mds-228-neg32": "32 negatives",
                 "mds-228-teacher-bank": "negatives: teacher + bank", "mds-228-bank": "negatives: bank only",
                 "mds-228-global": "negatives: global (bank rows of other tokens)",
                 "mds-228-sequence": "sequence-level contrast", "mds-228-first-layer": "contrast on the first layer",
                 "mds-228-seed1": "QuantGPT, seed 1", "mds-228-seed2": "QuantGPT, seed 2",
                 "laq-228-seed1": "LAQ, seed 1", "laq-228-seed2": "LAQ, seed 2"}
LM_METHODS = ("mds", "pact", "lsq", "laq")  # QuantGPT first: the claims compare it with the baselines


def show(df: pd.DataFrame, caption: str = ""):
    """A table as the book shows it: no index column, a caption."""
    return df.style.hide(axis="index").set_caption(caption).format(precision=2, na_rep="-")


def ppl_text(v: float) -> str:
    """A perplexity as the tables print it: two decimals, or three significant digits once it is astronomical."""
    return f"{v:.2f}" if v < 1e5 else f"{v:.3g}"


# ----------------------------------------------------------------------------------------------------------------
# verdicts: one function for every claim of every chapter
# ----------------------------------------------------------------------------------------------------------------


SEED_METHODS = ("mds", "laq")  # QuantGPT and the paper's best baseline at 2-2-8: the noise yardstick


def seed_spreads(preset: str) -> dict[str, float]:
    """Run-to-run spread per method whose three seeds of 2-2-8 all have results: the relative range of test PPL
    (max / min - 1) over seeds 0 (the main run), 1 and 2."""
    table, seeds = X.runs("lm-table", preset), X.runs("lm-seeds", preset)
    spreads = {}
    for method in SEED_METHODS:
        ppl = [_ppl(table[f"{method}-228"])] + [_ppl(seeds[f"{method}-228-seed{s}"]) for s in (1, 2)]
        if None not in ppl:
            spreads[method] = max(ppl) / min(ppl) - 1
    return spreads


def seed_band(preset: str) -> float | None:
    """The measured run-to-run spread every LM verdict is read against: the largest of ``seed_spreads`` (None
    until one method has all three seeds; ``seed_band_note`` says which methods it covers)."""
    spreads = seed_spreads(preset)
    return max(spreads.values()) if spreads else None


def seed_band_note(preset: str) -> str:
    """One sentence for the book: the band, what it was measured on and what is still missing."""
    spreads = seed_spreads(preset)
    if not spreads:
        return ("**Seed band:** not measured yet (needs three seeds of QuantGPT or LAQ at 2-2-8: "
                "`python -m qlib grid lm-seeds --preset " + preset + "`); every verdict stays inconclusive.")
    parts = [f"{method_name(m)} {100 * v:.1f}%" for m, v in spreads.items()]
    missing = [method_name(m) for m in SEED_METHODS if m not in spreads]
    text = (f"**Seed band:** {100 * max(spreads.values()):.1f}%, the largest relative range of 2-2-8 test PPL over "
            f"three seeds ({', '.join(parts)}).")
    if missing:
        table, seeds = X.runs("lm-table", preset), X.runs("lm-seeds", preset)
        have = {method_name(m): sum(_ppl(c) is not None for c in (table[f"{m}-228"], seeds[f"{m}-228-seed1"],
                                                                  seeds[f"{m}-228-seed2"]))
                for m in SEED_METHODS if m not in spreads}
        text += (f" Not all seeds of {' and '.join(f'{k} ({v} of 3)' for k, v in have.items())} have run yet "
                 f"(`python -m qlib grid lm-seeds --preset {preset}`): the band may still widen, and verdicts near it "
                 f"may move.")
    return text


def verdict(lower: float | None, higher: float | None, band: float | None, absolute: bool = False,
            both_collapsed: bool = False) -> str:
    """The paper claims ``lower < higher`` (both PPL, or ratios to a teacher). "reproduced" when ours is lower by
    more than the band, "contradicted" when it is higher by more than the band, else "inconclusive". The band is
    relative (the seed band of the LM runs) or, with ``absolute``, in the values' own units (the bootstrap spread
    of a comparison on the other tasks' test examples). ``both_collapsed``: the claim compares two runs that both
    failed the task (``readings.collapsed``); which failure scores higher says nothing about the methods."""
    if lower is None or higher is None:
        return "not run"
    if both_collapsed:
        return "inconclusive (both collapsed)"
    if band is None:
        return "inconclusive (seed band not measured yet)"
    if (lower + band if absolute else lower * (1 + band)) < higher:
        return "reproduced"
    if (lower > higher + band) if absolute else (lower > higher * (1 + band)):
        return "contradicted"
    return "inconclusive (inside the " + ("test-set spread)" if absolute else "seed band)")


def claims(preset: str) -> pd.DataFrame:
    """The paper's language-modeling claims, each with the paper's numbers, ours and the verdict of ``verdict``
    against the measured seed band. Claims about distance to the teacher use ratios (student PPL / teacher PPL), as
    the paper's are relative."""
    t, a = X.runs("lm-table", preset), X.runs("lm-ablations", preset)
    band = seed_band(preset)
    teacher = _ppl(t["teacher"])
    rows = []

    def claim(text, paper, lower, higher, shown):
        rows.append({"claim (paper: GPT-2 small on PTB)": text, "paper": paper,
                     "ours (test PPL)": " vs ".join("-" if v is None else f"{v:.2f}" for v in shown),
                     "verdict": verdict(lower, higher, band)})

    for bits in ("228", "448", "888"):
        label = "-".join(bits)
        for base in ("pact", "lsq", "laq"):
            ours = [_ppl(t[f"mds-{bits}"]), _ppl(t[f"{base}-{bits}"])]
            paper = [PAPER_TABLE1[(m, label)][2] for m in ("mds", base)]
            claim(f"At {label}, QuantGPT reaches a lower PPL than {method_name(base)}.",
                  f"{paper[0]} vs {paper[1]}", ours[0], ours[1], ours)
    q, tr = _ppl(t["mds-228"]), teacher
    ratio = q / tr if q and tr else None
    claim("At 2-2-8, QuantGPT stays within 10% of the full-precision teacher's PPL (ratio below 1.10).",
          f"16.12 / 14.72 = {16.12 / 14.72:.3f}", ratio, 1.10, [q, tr])
    control = _ppl(t["control"])
    claim("The full-precision control stays within 2% of the teacher: the training loop itself costs little.",
          "(not in the paper)", control / tr if control and tr else None, 1.02, [control, tr])
    for key, what in (("mds-228-dist-only", "the contrastive loss lowers PPL: QuantGPT below L_dist only "
                                            "(Table 7)"),
                      ("mds-228-immediate", "a memory bank beats the immediate student representations (Fig. 7)"),
                      ("mds-228-teacher-bank", "teacher negatives beat teacher + bank negatives (Table 4)"),
                      ("mds-228-global", "in-sequence teacher negatives beat global negatives (Table 4)"),
                      ("mds-228-sequence", "token-level contrast beats sequence-level contrast (Table 4)"),
                      ("mds-228-first-layer", "the contrastive loss works better on the last layer than on the "
                                              "first (Table 6)")):
        ours = [_ppl(t["mds-228"]), _ppl(a[key])]
        paper = PAPER_TABLE7_PTB.get(key) or PAPER_TABLE4_PTB.get(key)
        shape = {"mds-228-immediate": "bank below immediate", "mds-228-first-layer": "last below first"}
        claim(what[0].upper() + what[1:] + ".", f"16.12 vs {paper}" if paper else shape[key], ours[0], ours[1], ours)
    ours = [_ppl(a["mds-228-dist-only"]), _ppl(a["mds_pact_grad-228-dist-only"])]
    claim("Eq. 7's gradient for gamma beats PACT's rule for it: L_dist only below 'Ours with PACT' (Table 7).",
          "16.93 vs 17.78", ours[0], ours[1], ours)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------------------------


def lm_table(preset: str, dataset: str = "ptb") -> pd.DataFrame:
    """Table 1's PTB column: teacher, control and the 12 students, with step-0 and final validation PPL, test PPL
    and its ratio to our teacher, beside the paper's test PPL and ratio to its teacher."""
    configs = X.runs("lm-table", preset)
    teacher = X.load_result(configs["teacher"])
    rows = []
    for key, cfg in configs.items():
        res = X.load_result(cfg)
        paper = PAPER_TABLE1.get((cfg.method, cfg.label))
        row = {"run": run_name(cfg), "size (MiB)": round(res["size_mb"], 1) if res else None}
        if res is None:
            row.update({"ours: valid PPL at step 0": None, "ours: test PPL": "not run", "ours: / teacher": None})
        else:
            row.update({"ours: valid PPL at step 0": ppl_text(res["curve"][0]["valid_ppl"]),
                        "ours: test PPL": round(res["metrics"]["test_ppl"], 2),
                        "ours: / teacher": res["metrics"]["test_ppl"] / teacher["metrics"]["test_ppl"]
                        if teacher else None,
                        "ours: tokens": f"{res['steps'] * (res.get('tokens_per_step') or 0):,}",
                        "ours: on": device_label(res)})
        row["paper (GPT-2): test PPL"] = paper[2] if paper else None
        row["paper: / teacher"] = paper[2] / PAPER_PTB_TEACHER if paper else None
        rows.append(row)
    return pd.DataFrame(rows)


def curves(preset: str, bits: str = "228") -> dict[str, list[tuple[int, float]]]:
    """The learning curves (tokens, validation PPL) of the teacher's loop, the control and the four methods at
    ``bits``, by display name, for the runs that exist."""
    configs = X.runs("lm-table", preset)
    out = {}
    for key in ("control", *(f"{m}-{bits}" for m in LM_METHODS)):
        res = X.load_result(configs[key])
        if res is not None:
            out[run_name(configs[key])] = [(p["tokens"], p["valid_ppl"]) for p in res["curve"]]
    return out


# the other two tasks: what each grid reports, and the paper's columns beside it
TASK_METRICS = {"dialogue-table": (("valid_reply_ppl", "valid reply PPL"), ("valid_mc_acc", "valid hits@1 (%)"),
                                   ("test_mc_acc", "test hits@1 (%)")),
                "xsum-table": (("valid_ppl", "valid summary PPL"), ("test_rouge1", "R1"), ("test_rouge2", "R2"),
                               ("test_rougeL", "RL"))}


def _paper_task_row(grid: str, key: str, cfg) -> dict:
    table = PAPER_TABLE1 if grid == "dialogue-table" else PAPER_TABLE3
    paper = None if key == "control" else table.get((cfg.method, cfg.label))  # the paper has no control
    if grid == "dialogue-table":
        return {"paper (GPT-2, Persona-Chat valid): hits@1 (%)": paper[4] if paper else None}
    return {f"paper (BART-base, XSum test): {m}": paper[i] if paper else None for i, m in enumerate(("R1", "R2", "RL"), 1)}


def task_table(grid: str, preset: str) -> pd.DataFrame:
    """Table 1's last column (``dialogue-table``) or Table 3 (``xsum-table``) with the offline stand-ins: the
    teacher, the control and the four methods at 2-2-8, ours beside the paper's (always labelled as the paper's)."""
    rows = []
    for key, cfg in X.runs(grid, preset).items():
        res = X.load_result(cfg)
        row = {"run": run_name(cfg)}
        for metric, label in TASK_METRICS[grid]:
            row[f"ours: {label}"] = round(res["metrics"][metric], 2) if res else "not run"
        if res:
            row.update({"ours: examples seen": f"{res['steps'] * res['effective_batch']:,}", "ours: on": device_label(res)})
        rows.append({**row, **_paper_task_row(grid, key, cfg)})
    return pd.DataFrame(rows)


def distill_span_table(preset: str) -> pd.DataFrame:
    """Beyond the paper (``xsum-distill-all``): each 2-bit summarizer distilled on the summary's positions only (the
    paper's reading, ``xsum-table``) and on every position of article and summary, same budget and rate."""
    table, extra = X.runs("xsum-table", preset), X.runs("xsum-distill-all", preset)
    teacher = X.load_result(table["teacher"]) if table else None
    rows = []
    for key, cfg in extra.items():
        for span, run in (("summary positions (the paper's reading)", table[key.removesuffix("-distill-all")]),
                          ("every position (article too)", cfg)):
            res = X.load_result(run)
            m = res["metrics"] if res else None
            rows.append({"run": run_name(run), "distilled on": span,
                         "valid summary PPL": round(m["valid_ppl"], 2) if m else "not run",
                         "/ teacher": round(m["valid_ppl"] / teacher["metrics"]["valid_ppl"], 2) if m and teacher
                         else "-", "RL": round(m["test_rougeL"], 2) if m else "-"})
    if not rows:
        return pd.DataFrame([{"run": f"no such runs in the {preset} preset (BART is distilled as the paper does)"}])
    return pd.DataFrame(rows)


def task_curves(grid: str, preset: str) -> dict[str, list[tuple[int, float]]]:
    """The learning curves (training examples, the grid's validation PPL: of the summary, of the gold reply) of the
    teacher, the control and the four methods, by display name, for the runs that exist. Perplexity, not hits@1 or
    ROUGE: a collapsed student's hits@1 stays at chance while its perplexity shows where it is heading."""
    metric = TASK_READING[grid][0]
    out = {}
    for cfg in X.runs(grid, preset).values():
        res = X.load_result(cfg)
        if res is not None:
            out[run_name(cfg)] = [(p["step"] * res["effective_batch"], p[metric]) for p in res["curve"]]
    return out


def task_curve_plot(grid: str, preset: str, title: str = ""):
    """``plots.learning_curves`` of ``task_curves`` with the grid's validation PPL on a log y axis."""
    from .plots import learning_curves

    return learning_curves(task_curves(grid, preset), title=title, ylabel=TASK_READING[grid][1],
                           xlabel="training examples", logy=True)


# per grid: the validation perplexity a reading compares with the teacher's, the end metric (key, name, format) and
# the paper's training budget of a student in examples, with its description
TASK_READING = {
    "xsum-table": ("valid_ppl", "validation summary PPL", ("test_rougeL", "test ROUGE-L", ".1f"),
                   8 * 204_045, "8 epochs of the 204,045 XSum training articles"),
    "dialogue-table": ("valid_reply_ppl", "validation gold-reply PPL", ("test_mc_acc", "test hits@1", ".0f"),
                       None, "2 epochs of Persona-Chat's 8,939 training dialogues"),
}


TASK_TITLE = {"xsum-table": "Summarization", "dialogue-table": "Next-utterance prediction"}


def task_reading(grid: str, preset: str) -> str:
    """Where each run of ``grid`` ended and where its curve was heading, as sentences read from the committed
    results of ``preset`` (Markdown): ratios to the teacher's validation PPL, the end metric, the curve's first,
    last-but-one and last points, and the students' budget against the paper's."""
    metric, name, (end, end_name, fmt), paper_examples, paper_budget = TASK_READING[grid]
    runs = {k: (cfg, X.load_result(cfg)) for k, cfg in X.runs(grid, preset).items()}
    teacher = runs["teacher"][1]
    if teacher is None:
        return f"**{TASK_TITLE[grid]} (`{preset}` preset):** the teacher has not run yet; nothing to read."
    t = teacher["metrics"][metric]
    lines = [f"The teacher's {name} is {t:.2f} and its {end_name} {teacher['metrics'][end]:{fmt}}."]
    missing = []
    for key, (cfg, res) in runs.items():
        if key == "teacher":
            continue
        if res is None:
            missing.append(run_name(cfg))
            continue
        c, examples = res["curve"], res["steps"] * res["effective_batch"]
        v = res["metrics"][metric]
        text = (f"{'The ' if key == 'control' else ''}{run_name(cfg)} ends at {ratio_text(v / t)} the teacher's {name} "
                f"({number_text(v)}; {end_name} {res['metrics'][end]:{fmt}}) after {examples:,} training examples")
        if len(c) >= 3:
            (s0, v0), (s1, v1), (s2, v2) = ((p["step"], p[metric]) for p in (c[0], c[-2], c[-1]))
            text += "; its curve: " + ", ".join(f"{number_text(val)} at step {step}"
                                                for step, val in ((s0, v0), (s1, v1), (s2, v2)))
            if s1 > 0 and abs(v1 / v2 - 1) < 0.02:  # where it is heading: the last segment against its growth
                text += f" (flat: within 2% over the last {s2 / s1:.1f}x the examples)"
            elif s1 > 0 and v2 < v1:
                text += f" (still falling: {v1 / v2:.2f}x lower over {s2 / s1:.1f}x the examples)"
        lines.append(text + ".")
    done = [r for k, (_, r) in runs.items() if k not in ("teacher", "control") and r is not None]
    if done:
        examples = done[0]["steps"] * done[0]["effective_batch"]
        share = f" ({100 * examples / paper_examples:.2g}% of it)" if paper_examples else ""
        lines.append(f"A student here sees {examples:,} examples; the paper trains for {paper_budget}{share}.")
    if missing:
        lines.append("Not run yet: " + ", ".join(missing) + ".")
    return f"**{TASK_TITLE[grid]} (`{preset}` preset, from the committed results):** " + " ".join(lines)


def generated_summaries(preset: str, articles: int = 2) -> pd.DataFrame:
    """The paper's Table 10 with the stand-in: the summaries each run of ``xsum-table`` generated for the first
    test articles, beside the reference."""
    rows = []
    for cfg in X.runs("xsum-table", preset).values():
        res = X.load_result(cfg)
        for i, ex in enumerate(res["metrics"]["examples"][:articles] if res else []):
            rows.append({"article": i + 1, "run": run_name(cfg), "summary": ex["generated"]})
    refs = X.load_result(X.runs("xsum-table", preset)["teacher"])
    for i, ex in enumerate(refs["metrics"]["examples"][:articles] if refs else []):
        rows.append({"article": i + 1, "run": "reference (XSum)", "summary": ex["reference"]})
    return pd.DataFrame(rows, columns=["article", "run", "summary"]).sort_values(["article"], kind="stable")


def chosen_replies(preset: str, examples: int = 2) -> pd.DataFrame:
    """Chapter 5's samples: for the first test examples of ``dialogue-table``, the last turn of the history, the
    gold reply, and the reply each run's multiple-choice head ranked first among the 20 candidates."""
    from .data import chitchat_dialogs

    cfgs = X.runs("dialogue-table", preset)
    runs = {run_name(cfg): X.load_result(cfg) for cfg in cfgs.values()}
    picked = {name: res["metrics"]["test_mc_picks"] for name, res in runs.items()
              if res and "test_mc_picks" in res["metrics"]}
    if not picked:
        return pd.DataFrame([{"example": "-", "who": "no dialogue run with its picks committed", "reply": "-"}])
    rows = []
    for i, d in enumerate(chitchat_dialogs("test", limit=examples)):
        cands = d["candidates"][-cfgs["teacher"].num_candidates:]  # as ``personachat_batch`` cuts them
        rows += [{"example": i + 1, "who": "last turn of the history", "reply": d["history"][-1]},
                 {"example": i + 1, "who": "gold reply", "reply": cands[-1]}]
        rows += [{"example": i + 1, "who": name + (" (right)" if picks[i] == len(cands) - 1 else " (wrong)"),
                  "reply": cands[picks[i]]} for name, picks in picked.items() if i < len(picks)]
    return pd.DataFrame(rows, columns=["example", "who", "reply"])


SWEEP_METRIC = {"dialogue-lr": "valid_reply_ppl"}  # the validation PPL a rate sweep reads (else "valid_ppl")


RATE_RULE = 1.02  # a swept rate qualifies when its control ends within 2% of the teacher's validation PPL


def swept_rate(preset: str, grid: str = "lm-lr") -> float | None:
    """The rate the sweep ``grid`` picks by its rule from the committed results: the largest whose full-precision
    control ends within 2% of the teacher after a quarter of the budget (None until the teacher and every swept
    control have landed). The students' rate of the grid's table must be this one (tested)."""
    metric, runs = SWEEP_METRIC.get(grid, "valid_ppl"), X.runs(grid, preset)
    if not runs:
        return None
    teacher = _ppl(runs.pop("teacher"), metric)
    ends = {cfg.lr: _ppl(cfg, metric) for key, cfg in runs.items() if not key.endswith("-full")}
    if teacher is None or None in ends.values():
        return None
    within = [lr for lr, ppl in ends.items() if ppl <= RATE_RULE * teacher]
    return max(within) if within else None


def lr_sweep_table(preset: str, grid: str = "lm-lr") -> pd.DataFrame:
    """A learning-rate sweep of the full-precision control (grid ``lm-lr``, ``xsum-lr`` or ``dialogue-lr``): its
    validation PPL (of the gold reply for dialogue) at the end of a quarter of the budget against the teacher's, per
    rate; the students use the largest rate within 2%."""
    from .task_grids import task_base

    metric = SWEEP_METRIC.get(grid, "valid_ppl")
    runs = X.runs(grid, preset)
    if not runs:
        return pd.DataFrame([{"learning rate": f"no sweep in the {preset} preset (its rates are the paper's)"}])
    teacher = _ppl(runs.pop("teacher"), metric)
    chosen = X.STUDENT_LR[preset] if grid == "lm-lr" else task_base(grid.replace("-lr", "-table"), preset)["lr"]
    rows = []
    for key, cfg in runs.items():
        res = X.load_result(cfg)
        ppl = res["metrics"][metric] if res else None
        worst = max(p[metric] for p in res["curve"]) if res else None
        rows.append({"learning rate": f"{cfg.lr:g}", "steps": res["steps"] if res else cfg.max_steps,
                     "control: valid PPL at the end": round(ppl, 2) if ppl else "not run",
                     "/ teacher": ppl / teacher if ppl and teacher else None,
                     "worst point on the way / teacher": worst / teacher if worst and teacher else None,
                     "chosen": "yes" if cfg.lr == chosen else ""})
    return pd.DataFrame(rows)


def teacher_valid_ppl(preset: str) -> float | None:
    return _ppl(X.runs("lm-table", preset)["teacher"], "valid_ppl")


def step0_table(preset: str) -> pd.DataFrame:
    """Validation PPL of each student before its first update (``experiments.step0_eval``): what each quantizer
    costs at initialisation, with the teacher's for reference."""
    rows = [{"student": "teacher (no quantization)", "activations": "-",
             "valid PPL at step 0": teacher_valid_ppl(preset) or "not run"}]
    for key, cfg in X.runs("lm-step0", preset).items():
        res = X.step0_eval(cfg, run_missing=False)
        name = "8-bit activations only (weights fp32)" if cfg.method != "fp" and cfg.w_bits == 32 else run_name(cfg)
        rows.append({"student": name, "activations": f"per {cfg.act_granularity}, eval batch "
                     f"{cfg.eval_batch_size}" if cfg.method != "fp" else "-",
                     "valid PPL at step 0": ppl_text(res["valid_ppl"]) if res else "not run"})
    return pd.DataFrame(rows)


def init_error_table(model: str, layers=None) -> pd.DataFrame:
    """Chapter 1's table: every quantizer at initialisation on real matrices of the pretrained ``model``."""
    from . import analysis
    from .models import load_model

    lm = load_model(model, "lm")
    n_layers = lm.config.num_hidden_layers
    layers = layers or tuple(sorted({0, n_layers // 2 - 4 if n_layers > 8 else 0, n_layers - 1}))
    matrices = analysis.layer_matrices(lm, layers)
    rows = analysis.init_error_table(matrices, lm.get_input_embeddings().weight.detach())
    df = pd.DataFrame(rows)
    df["method"] = df["method"].map(method_name)
    return df


def ablation_table(preset: str, keys: tuple[str, ...], paper: dict[str, float] | None = None) -> pd.DataFrame:
    """Variants of QuantGPT 2-2-8 (looked up by name in the table, ablation and seed grids) with their test PPL
    and, when given, the paper's."""
    configs = {**X.runs("lm-table", preset), **X.runs("lm-ablations", preset), **X.runs("lm-seeds", preset),
               **X.runs("lm-gamma-init", preset)}
    rows = []
    for key in keys:
        res = X.load_result(configs[key])
        row = {"variant": VARIANT_NAMES.get(key, run_name(configs[key])),
               "ours: test PPL": round(res["metrics"]["test_ppl"], 2) if res else "not run",
               "ours: on": device_label(res) if res else ""}
        if paper is not None:
            row["paper (GPT-2, PTB)"] = paper.get(key)
        rows.append(row)
    return pd.DataFrame(rows)


def ablation_reading(preset: str, keys: tuple[str, ...], title: str, paper: dict[str, float] | None = None,
                     reference: str = "mds-228", pairs: tuple[tuple[str, str], ...] = ()) -> str:
    """An ablation table read from the committed results (Markdown): each variant's test PPL as a gap to
    ``reference`` (QuantGPT 2-2-8), inside or outside the measured seed band, beside the paper's gap where it has
    one; each of ``pairs`` (variant, the variant it is compared with) the same way; the validation curves' range
    over the variants at a few common steps; missing runs named."""
    configs = {**X.runs("lm-table", preset), **X.runs("lm-ablations", preset), **X.runs("lm-seeds", preset)}
    keys = (reference, *[k for k in keys if k != reference])
    res = {k: X.load_result(configs[k]) for k in keys}
    done = {k: r for k, r in res.items() if r}
    if reference not in done or len(done) < 2:
        return (f"**Reading {title}:** not run yet in the `{preset}` preset "
                f"(`python -m qlib grid lm-ablations --preset {preset}`).")
    band = seed_band(preset)
    ppl = {k: r["metrics"]["test_ppl"] for k, r in done.items()}
    steps = sorted({r["steps"] for r in done.values()})
    devices = ", ".join(sorted({device_label(r) for r in done.values()}))
    versions = ", ".join(sorted({r["code_version"] for r in done.values()}))
    head = (f"**Reading {title}** (`{preset}` preset, {devices}, {'/'.join(map(str, steps))} steps each, code "
            f"{versions}; computed from the committed results). {VARIANT_NAMES[reference]} ends at "
            f"{ppl_text(ppl[reference])} "
            "test PPL; " + (f"the seed band is {100 * band:.1f}% (Table 7.3)." if band is not None else
                            "the seed band is not measured yet, so no gap can be called outside it."))
    bullets = []
    for k in keys[1:]:
        if k not in ppl:
            continue
        text = f"{VARIANT_NAMES.get(k, k)}: {ppl_text(ppl[k])}, {gap_text(ppl[k], ppl[reference], 'QuantGPT', band)}"
        if paper and k in paper and reference in paper:
            text += (f"; paper: {paper[k]} against {paper[reference]}, "
                     f"{gap_text(paper[k], paper[reference], 'QuantGPT', None)}")
        bullets.append(text + ".")
    for k, base in pairs:
        if k in ppl and base in ppl:
            name = VARIANT_NAMES.get(base, base)
            text = f"{VARIANT_NAMES.get(k, k)} against {name}: {gap_text(ppl[k], ppl[base], name, band)}"
            if paper and k in paper and base in paper:
                text += f"; paper: {paper[k]} against {paper[base]}, {gap_text(paper[k], paper[base], name, None)}"
            bullets.append(text + ".")
    curves = {k: {p["step"]: p["valid_ppl"] for p in r.get("curve") or []} for k, r in done.items()}
    common = sorted(set.intersection(*(set(c) for c in curves.values())) - {0})
    if common and len(curves) > 1:
        picks = sorted({s for s in common if s >= common[-1] / 20}, key=common.index)
        picks = [picks[0], picks[len(picks) // 2], picks[-1]] if len(picks) > 3 else picks
        spans = []
        for s in picks:
            v = [c[s] for c in curves.values()]
            spans.append(f"{number_text(min(v))}-{number_text(max(v))} at step {s}")
        end = [c[picks[-1]] for c in curves.values()]
        bullets.append(f"Validation PPL of these {len(curves)} runs along the way: " + ", ".join(spans)
                       + f" (at step {picks[-1]} within {100 * (max(end) / min(end) - 1):.1f}% of one another).")
    missing = [k for k in keys if k not in done]
    if missing:
        bullets.append("Not run yet: " + ", ".join(f"`{k}`" for k in missing) + " (`report.not_run` below).")
    return head + "\n\n" + "\n".join(f"- {b}" for b in bullets)


def negatives_keys(preset: str) -> tuple[str, ...]:
    """Fig. 7's runs in ``preset`` by name: fewer negatives (their counts differ by preset), the main run, and the
    run without the memory bank."""
    fewer = [key for key in X.runs("lm-ablations", preset) if key.startswith("mds-228-neg")]
    return (*fewer, "mds-228", "mds-228-immediate")


def negatives_curve(preset: str) -> dict[str, list[tuple[int, float]]]:
    """Fig. 7: test PPL against the number of negatives, with the memory bank and without it."""
    a, t = X.runs("lm-ablations", preset), X.runs("lm-table", preset)
    fewer = [a[key] for key in negatives_keys(preset)[:-2]]
    bank = [(cfg.num_negatives, _ppl(cfg)) for cfg in (*fewer, t["mds-228"])]
    return {"memory bank": [p for p in bank if p[1] is not None],
            "immediate": [p for p in [(a["mds-228-immediate"].num_negatives, _ppl(a["mds-228-immediate"]))]
                          if p[1] is not None]}


def transfer_table(preset: str, dataset: str = "wikitext2") -> pd.DataFrame:
    """Zero-shot test PPL on ``dataset`` of the PTB-trained teacher, control and 2-bit students, beside the paper's
    column for that dataset (from models trained on it: a reference point, not a like-for-like target)."""
    rows = []
    for key, cfg in X.runs("lm-table", preset).items():
        if cfg.method != "fp" and cfg.w_bits != 2:
            continue
        res = X.transfer_eval(cfg, dataset, run_missing=False)
        paper = PAPER_TABLE1.get((cfg.method, cfg.label))
        rows.append({"run": run_name(cfg),
                     f"ours: {dataset} test PPL, zero-shot from PTB": round(res["test_ppl"], 2) if res else "not run",
                     "ours: test tokens": res["tokens_read"] if res else None,
                     f"paper (GPT-2 trained on {dataset})": paper[1] if paper and key != "control" else None})
    return pd.DataFrame(rows)


def samples_table(preset: str) -> pd.DataFrame:
    """Greedy continuations of the same prompts by the teacher and the 2-bit students, one column per model."""
    cols, prompts = {}, list(X.SAMPLE_PROMPTS)
    for key, cfg in X.runs("lm-table", preset).items():
        if key == "teacher" or key.endswith("-228"):
            res = X.text_samples(cfg, run_missing=False)
            cols[run_name(cfg)] = [c.strip().replace("\n", " ") for c in res["continuations"]] if res else \
                ["not run"] * len(prompts)
    return pd.DataFrame({"prompt": prompts, **cols})


XTC_METRIC = {"cola": "valid_mcc", "stsb": "valid_pearson", "mrpc": "valid_f1"}  # GLUE's metric per task


def paper_xtc_table() -> pd.DataFrame:
    return pd.DataFrame(PAPER_XTC_MNLI)


def xtc_table(preset: str, task: str = "sst2") -> pd.DataFrame:
    """Our XTC runs: layers, bits, size and compression against the teacher, and the task metric."""
    metric = XTC_METRIC.get(task, "valid_accuracy")
    configs = X.runs(f"xtc-{task}", preset)
    teacher = X.load_result(configs["teacher"])
    names = {"teacher": "teacher (fine-tuned)"}
    rows = []
    for key, cfg in configs.items():
        res = X.load_result(cfg)
        depth = len(cfg.keep_layers) or None
        kind = "layer reduction only" if cfg.method == "fp" else \
            f"{'binary' if cfg.method == 'bwn' else 'ternary'} weights" + (" + layer reduction" if depth else "")
        rows.append({"variant": names.get(key, kind), "layers": depth or "all",
                     "W-E-A": "32-32-32" if cfg.method == "fp" else cfg.label,
                     "size (MiB)": round(res["size_mb"], 2) if res else None,
                     "compression": f"{teacher['size_mb'] / res['size_mb']:.1f}x" if res and teacher else None,
                     metric: round(res["metrics"][metric], 2) if res else "not run"})
    return pd.DataFrame(rows)


def xtc_reading(preset: str, task: str = "sst2") -> str:
    """Table 8.1 read from the committed results (Markdown): what ternary and binary weights cost at full depth, what
    halving the depth costs alone and on top of them, and XTC's 1-bit claim beside our gap. No seeds are run for these
    students, so the reading gives gaps, not verdicts."""
    metric = XTC_METRIC.get(task, "valid_accuracy")
    configs = X.runs(f"xtc-{task}", preset)
    res = {k: X.load_result(c) for k, c in configs.items()}
    t = res["teacher"]
    done = {k: r for k, r in res.items() if r and k != "teacher"}
    if t is None or not done:
        return (f"**Reading Table 8.1:** not run yet in the `{preset}` preset "
                f"(`python -m qlib grid xtc-{task} --preset {preset}`).")
    name = metric.removeprefix("valid_").replace("mcc", "MCC").replace("f1", "F1")

    def find(method: str, reduced: bool) -> dict | None:
        return next((done.get(k) for k, c in configs.items()
                     if k != "teacher" and c.method == method and bool(c.keep_layers) == reduced), None)

    def val(r: dict) -> float:
        return r["metrics"][metric]

    def smaller(r: dict) -> str:
        return f"{t['size_mb'] / r['size_mb']:.1f}x"

    cfg = next(c for k, c in configs.items() if k in done)
    steps = sorted({r["steps"] for r in done.values()})
    devices = ", ".join(sorted({device_label(r) for r in done.values()}))
    versions = ", ".join(sorted({r["code_version"] for r in done.values()}))
    head = (f"**Reading Table 8.1** (`{preset}` preset, {devices}, code {versions}; computed from the committed "
            f"results). The teacher reaches {val(t):.1f} dev {name}. Each student trains "
            f"{'/'.join(map(str, steps))} steps of batch {cfg.batch_size} ({steps[-1] * cfg.batch_size:,} examples; "
            f"XTC trains {cfg.epochs} epochs). No seeds are run for these students, so what follows are gaps, not "
            "verdicts.")
    bullets = []
    full = {m: find(m, False) for m in ("twn", "bwn")}
    reduced = {m: find(m, True) for m in ("fp", "twn", "bwn")}
    word = {"twn": "ternary", "bwn": "binary", "fp": "full-precision"}
    if all(full.values()):
        bullets.append("At full depth, ternary weights lose " + f"{val(t) - val(full['twn']):.1f} points and binary "
                       f"weights {val(t) - val(full['bwn']):.1f} ({smaller(full['twn'])} and {smaller(full['bwn'])} "
                       "smaller than the teacher).")
    if reduced["fp"]:
        bullets.append(f"Halving the depth in full precision costs {val(t) - val(reduced['fp']):.1f} points "
                       f"({smaller(reduced['fp'])} smaller).")
    for m in ("bwn", "twn"):
        if full[m] and reduced[m]:
            d = val(reduced[m]) - val(full[m])
            bullets.append(f"Halving a {word[m]} student's depth moves it from {val(full[m]):.1f} to "
                           f"{val(reduced[m]):.1f} ({'+' if d >= 0 else '-'}{abs(d):.1f} points) for "
                           f"{smaller(full[m])} to {smaller(reduced[m])} smaller.")
    paper = {row["model"]: float(row["MNLI-m/mm"].split(" / ")[0]) for row in PAPER_XTC_MNLI}
    p_teacher, p_1bit = paper["BERT-base baseline (12L, fp32)"], paper["12L, 1-bit (XTC)"]
    if full["bwn"]:
        bullets.append(f"XTC's paper puts its 1-bit BERT-base {p_teacher - p_1bit:.1f} points below its teacher on "
                       f"MNLI-m ({p_1bit} against {p_teacher}); our binary student at full depth is "
                       f"{val(t) - val(full['bwn']):.1f} points below ours on {GLUE_TASKS[task][0]}, after "
                       f"{full['bwn']['steps'] * cfg.batch_size:,} training examples.")
    missing = [k for k in configs if k != "teacher" and k not in done]
    if missing:
        bullets.append("Not run yet: " + ", ".join(f"`{k}`" for k in missing) + ".")
    return head + "\n\n" + "\n".join(f"- {b}" for b in bullets)


def lm_xtc_table(preset: str) -> pd.DataFrame:
    """XTC's recipe on the generative model beside QuantGPT 2-2-8 (equal bits), with sizes and compression."""
    configs = {"mds-228": X.runs("lm-table", preset)["mds-228"], **X.runs("lm-xtc", preset)}
    teacher = X.load_result(X.runs("lm-table", preset)["teacher"])
    rows = []
    for key, cfg in configs.items():
        res = X.load_result(cfg)
        kind = {"fp": "layer reduction only (fp32)", "twn": f"XTC ternary {cfg.label}",
                "bwn": f"XTC binary {cfg.label}"}.get(cfg.method, f"QuantGPT {cfg.label}")
        depth = f" + layer reduction ({len(cfg.keep_layers)} layers)" if cfg.keep_layers and cfg.method != "fp" else ""
        rows.append({"variant": kind + depth, "ours: test PPL": round(res["metrics"]["test_ppl"], 2) if res else
                     "not run", "size (MiB)": round(res["size_mb"], 1) if res else None,
                     "compression": f"{teacher['size_mb'] / res['size_mb']:.1f}x" if res and teacher else None})
    return pd.DataFrame(rows)


def gap_text(value: float, reference: float, what: str, band: float | None) -> str:
    """How far ``value`` lies from ``what``'s ``reference``, relative, and whether outside the seed band: "5.5% above
    QuantGPT (outside the seed band)"."""
    rel = value / reference - 1
    where = "" if band is None else " (inside the seed band)" if abs(rel) <= band else " (outside the seed band)"
    return f"{100 * abs(rel):.1f}% {'above' if rel >= 0 else 'below'} {what}{where}"


def lm_xtc_reading(preset: str) -> str:
    """Table 8.3 read from the committed results (Markdown): each comparison of XTC's recipe on SmolLM2 as a relative
    gap, inside or outside the measured seed band; runs not committed yet are named, and their sentences left out."""
    t, x = X.runs("lm-table", preset), X.runs("lm-xtc", preset)
    res = {k: X.load_result(c) for k, c in {"teacher": t["teacher"], "mds-228": t["mds-228"], **x}.items()}
    missing = [k for k, r in res.items() if r is None]
    if "teacher" in missing or len(missing) == len(res) - 1:
        return (f"**Reading Table 8.3:** not run yet in the `{preset}` preset "
                f"(`python -m qlib grid lm-xtc --preset {preset}`).")
    ppl = {k: r["metrics"]["test_ppl"] for k, r in res.items() if r}
    of_teacher = {k: ratio_text(v / ppl["teacher"]) for k, v in ppl.items()}
    smaller = {k: f"{res['teacher']['size_mb'] / r['size_mb']:.1f}x" for k, r in res.items() if r}
    band = seed_band(preset)
    have = lambda *keys: all(k in ppl for k in keys)  # noqa: E731
    done = [r for k, r in res.items() if r and k != "teacher"]
    steps = sorted({r["steps"] for r in done})
    dates = sorted({r.get("date", "?") for r in done})
    head = (f"**Reading Table 8.3** (`{preset}` preset, {', '.join(sorted({device_label(r) for r in done}))} "
            f"{', '.join(sorted({r.get('dtype') or '?' for r in done}))}, {'/'.join(map(str, steps))} steps of "
            f"{done[0]['tokens_per_step']:,} tokens, runs of {' to '.join(dict.fromkeys((dates[0], dates[-1])))}; "
            f"computed from the committed results). One seed each, read against "
            + (f"the {100 * band:.1f}% seed band of chapter 7." if band is not None else
               "no seed band yet (chapter 7 measures it), so no gap is called inside or outside it."))
    bullets = []
    if have("twn-228-xtc", "mds-228"):
        start = {k: res[k]["curve"][0]["valid_ppl"] for k in ("twn-228-xtc", "mds-228") if res[k]["curve"]}
        bullets.append(
            f"**Ternary** weights with XTC's recipe (TWN's threshold, one-stage distillation from step 0) end at "
            f"{ppl['twn-228-xtc']:.2f} against QuantGPT's {ppl['mds-228']:.2f} at the same 2-2-8 and size "
            f"({smaller['twn-228-xtc']} smaller than the teacher): "
            f"{gap_text(ppl['twn-228-xtc'], ppl['mds-228'], 'QuantGPT', band)}."
            + (f" Before any update their validation PPL is {number_text(start['twn-228-xtc'])} (ternary) and "
               f"{number_text(start['mds-228'])} (QuantGPT)." if len(start) == 2 else ""))
    if have("bwn-118-xtc", "twn-228-xtc", "mds-228"):
        bullets.append(
            f"**Binary** weights (1-1-8, {smaller['bwn-118-xtc']} smaller) end at {ppl['bwn-118-xtc']:.2f}, "
            f"{of_teacher['bwn-118-xtc']} the teacher: "
            f"{gap_text(ppl['bwn-118-xtc'], ppl['twn-228-xtc'], 'ternary', band)} and "
            f"{gap_text(ppl['bwn-118-xtc'], ppl['mds-228'], 'QuantGPT 2-2-8', band)}.")
    if have("xtc-15L", "twn-228-xtc"):
        bullets.append(
            f"**Layer reduction** ({len(x['xtc-15L'].keep_layers)} of the teacher's layers) in full precision ends at "
            f"{ppl['xtc-15L']:.2f}, {of_teacher['xtc-15L']} the teacher, for {smaller['xtc-15L']} compression; "
            f"ternary weights at full depth end at {of_teacher['twn-228-xtc']} the teacher for "
            f"{smaller['twn-228-xtc']}.")
    if have("twn-228-xtc-15L", "xtc-15L"):
        bullets.append(
            f"**Ternary weights on the reduced student** (XTC's second step, started from the full-precision reduced "
            f"student) end at {ppl['twn-228-xtc-15L']:.2f} for {smaller['twn-228-xtc-15L']} compression: "
            f"{gap_text(ppl['twn-228-xtc-15L'], ppl['xtc-15L'], 'that student', band)}.")
    if have("bwn-118-xtc-15L", "xtc-15L", "twn-228-xtc-15L"):
        bullets.append(
            f"**Binary weights on the reduced student** ({smaller['bwn-118-xtc-15L']} smaller than the teacher) end "
            f"at {ppl['bwn-118-xtc-15L']:.2f}, {of_teacher['bwn-118-xtc-15L']} the teacher: "
            f"{gap_text(ppl['bwn-118-xtc-15L'], ppl['xtc-15L'], 'the full-precision reduced student', band)} and "
            f"{gap_text(ppl['bwn-118-xtc-15L'], ppl['twn-228-xtc-15L'], 'its ternary counterpart', band)}.")
    if missing:
        bullets.append("Not run yet: " + ", ".join(f"`{k}`" for k in missing) + " (`report.not_run` below).")
    return head + "\n\n" + "\n".join(f"- {b}" for b in bullets)


def not_run(preset: str, *grids: str, after: str | None = None) -> None:
    """Print the command of every run of ``grids`` without a committed result. ``after``: "transfer", "samples"
    or "figures" lists the 2-bit runs and the teacher without that after-run evaluation; "step0" every student
    without its step-0 evaluation."""
    check = {None: X.load_result, "transfer": lambda c: X.transfer_eval(c, "wikitext2", run_missing=False),
             "samples": lambda c: X.text_samples(c, run_missing=False),
             "figures": lambda c: X.figure_data(c, run_missing=False),
             "step0": lambda c: X.step0_eval(c, run_missing=False)}[after]
    flag = {None: "", "transfer": " --transfer wikitext2", "samples": " --samples", "figures": " --figures",
            "step0": " --step0"}[after]
    missing = []
    for name in grids:
        for key, cfg in X.runs(name, preset).items():
            wanted = after in (None, "step0") or key == "teacher" or key.endswith("-228")
            if wanted and check(cfg) is None:
                missing.append(f"  python -m qlib grid {name} --preset {preset} --only {key}{flag}")
    print("every run here has a committed result" if not missing else
          f"not run ({len(missing)}):\n" + "\n".join(missing))


def _bench_setting(b: dict, dtype: str) -> str:
    """The setting column of a benchmark file's rows: model, bits, batch, device, dtype and how idle the machine was."""
    others = b.get("others_busy_cores") or {}
    # how idle the machine was: other work's cores measured before each phase (older files: the load average)
    idle = f"others used <= {max(others.values()):.2f} cores" if others and None not in others.values() else \
        f"load {b.get('load_avg', '?')}"
    where = "CPU" if b["device"] == "cpu" else b.get("device_name", b["device"]).replace("NVIDIA ", "")
    cut = "" if b.get("complete", True) else " (cut short before every phase ran)"
    return (f"{b['model']} W{b['w_bits']}, {b['batch_size']} x {b['seq_len']}, {where} {dtype}, {idle}"
            + (" (BUSY)" if b["busy"] else "") + cut)


def _bench_files(kind: str = "phases") -> list[dict]:
    """The committed benchmark results of one kind: "phases" (``bench.run_benchmark``) or "interleaved"
    (``bench.run_interleaved``)."""
    files = [json.loads(p.read_text()) for p in sorted((X.RESULTS / "bench").glob("*.json"))]
    return [b for b in files if b.get("kind", "phases") == kind]


def bench_table() -> pd.DataFrame:
    """Every committed benchmark result (results/bench/*.json) with the paper's Table 5 figures beside it."""
    rows = []
    for b in _bench_files():
        for phase, v in b["phases"].items():
            rows.append({"setting": _bench_setting(b, v.get("dtype", "")),
                         "phase": phase, "s/iter": round(v["sec_per_iter"], 3),
                         "tokens/s": round(v["tokens_per_s"]), "MFU (%)": round(100 * v["mfu"], 1),
                         "peak MiB": round(v["peak_mem_mib"]),
                         # older files measured each phase once: no spread to show
                         "spread over repeats (%)": round(100 * v["spread"], 1) if "spread" in v else "one run"})
    d, c = PAPER_TABLE5["dist"], PAPER_TABLE5["dist+cont"]
    rows.append({"setting": "paper (GPT-2 small, V100)", "phase": "L_dist -> L_dist + L_cont",
                 "s/iter": f"{d['sec_per_iter']} -> {c['sec_per_iter']}",
                 "peak MiB": f"{d['memory_mb']} -> {c['memory_mb']} (MB)"})
    if len(rows) == 1:
        rows.insert(0, {"setting": "ours", "phase": "not run: python -m qlib.bench --model smollm2-135m"})
    return pd.DataFrame(rows)


def bench_targets_table() -> pd.DataFrame:
    """The speed targets (``bench.TARGETS``) checked in every committed benchmark file (``bench.target_checks``):
    the median figure, each round's figure and whether the target held in every round, in some or in none; an
    interleaved measurement (``bench.interleaved_checks``) gives the quartiles of its pairs instead of rounds."""
    from .bench import interleaved_checks, target_checks

    checked = [(b, r, "") for b in _bench_files() for r in target_checks(b)]
    checked += [(b, r, "quartiles of the pairs: ") for b in _bench_files("interleaved") for r in interleaved_checks(b)]
    rows = [{"setting": _bench_setting(b, r["dtype"]), "check": r["check"], "target": r["target"],
             "median": f"{r['median']:.3g}", "per round": what + ", ".join(f"{x:.3g}" for x in r["per round"]),
             "verdict": r["verdict"]} for b, r, what in checked]
    return pd.DataFrame(rows or [{"setting": "not run: python -m qlib.bench --model smollm2-135m --repeats 3"}])


CPU_BENCH = "smollm2-135m-w2-b4-s128-cpu-compile"  # the CPU benchmark chapter 7 reads: repeated, eager and compiled
PHASE_NAMES = {"a_fp_finetune": "full-precision fine-tuning", "b_qat_dist": "QAT with $\\mathcal{L}_{dist}$",
               "c_qat_dist_cont": "QAT with $\\mathcal{L}_{dist} + \\lambda\\mathcal{L}_{cont}$"}


def bench_command(b: dict) -> str:
    """The command that re-measures a benchmark file (its setting, steps, repeats, phases, dtypes, compile)."""
    from .bench import PHASES

    phases = [p for p in PHASES if any(k.startswith(p + "/") for k in b["phases"])]
    dtypes = list(dict.fromkeys(k.split("/")[1].split("+")[0] for k in b["phases"]))
    return (f"python -m qlib.bench --model {b['model']} --w-bits {b['w_bits']} --batch-size {b['batch_size']} "
            f"--seq-len {b['seq_len']} --steps {b['steps']} --repeats {b.get('repeats', 1)} "
            f"--phases {' '.join(phases)} --dtypes {' '.join(dtypes)}"
            + (" --compile" if any(k.endswith("+compile") for k in b["phases"]) else ""))


def bench_reading(name: str = CPU_BENCH) -> str:
    """Tables 7.5 and 7.6 read from one committed benchmark file (Markdown): where and how it was measured, each
    step's tokens/s eager and compiled, every speed target round by round, what compiling and bf16 buy, and the
    contrastive loss's cost beside the paper's (and, where one was made, its interleaved measurement)."""
    from .bench import TARGETS, interleaved_checks, target_checks

    path = X.RESULTS / "bench" / f"{name}.json"
    if not path.is_file():
        return (f"**Reading Tables 7.5 and 7.6:** not run yet (`python -m qlib.bench --model smollm2-135m "
                f"--steps 15 --repeats 3 --phases a_fp_finetune b_qat_dist c_qat_dist_cont --compile --out {path}`).")
    b = json.loads(path.read_text())
    ph, dtypes = b["phases"], list(b["peak_flops"])
    others = [v for v in b["others_busy_cores"].values() if v is not None]
    steal = [v["steal_frac"] for v in ph.values() if v.get("steal_frac") is not None]
    head = (f"**Reading Tables 7.5 and 7.6** (computed from `results/bench/{name}.json`, measured on {b['date']} "
            f"with code {b['code_version']} on {b['cores']} CPU cores "
            + ("with AMX bf16 matrix units" if b["cpu_bf16_matrix_units"] else "without bf16 matrix units")
            + f"; load average {b['load_avg']} at its start"
            + (f", other work at most {max(others):.2f} cores before any phase" if others else "")
            + (f", the hypervisor's steal at most {100 * max(steal):.1f}%" if steal else "")
            + ("; **BUSY: these are not the machine's figures**" if b["busy"] else "")
            + f"; `{bench_command(b)}`). Each phase ran {b.get('repeats', 1)} times in turns, in its own process, "
            f"{b['steps']} timed steps after {b['warmup']} warm-up steps; a figure is the median repeat.")

    def tps(phase, dtype, compiled=False):
        v = ph.get(f"{phase}/{dtype}" + ("+compile" if compiled else ""))
        return None if v is None else v["tokens_per_s"]

    def per_dtype(phase, compiled=False):
        got = [tps(phase, d, compiled) for d in dtypes]
        return None if None in got else " / ".join(f"{x:,.0f}" for x in got)

    figures = []
    for phase, label in PHASE_NAMES.items():
        eager, comp = per_dtype(phase), per_dtype(phase, True)
        if eager or comp:
            figures.append(f"{label} {eager or 'not measured'} eager"
                           + (f" and {comp} compiled" if comp else ""))
    spreads = [v["spread"] for v in ph.values() if "spread" in v]
    lines = [head, f"Tokens/s ({' / '.join(dtypes)}): " + "; ".join(figures) + "."
             + (f" The repeats of a phase spread by {100 * min(spreads):.0f}-{100 * max(spreads):.0f}% (Table 7.5), "
                "so Table 7.6 reads every target round by round and calls it met only where it held in every round."
                if spreads else "")]
    bullets = []
    for r in target_checks(b):
        rounds = r["per round"]
        span = f", rounds {min(rounds):.3g}-{max(rounds):.3g}" if len(rounds) > 1 else ""
        bullets.append(f"{r['dtype']}, {r['check']}: {r['median']:.3g}{span} against {r['target']}: "
                       f"**{r['verdict']}**")
    ratios = []
    for d in dtypes:
        for phase in PHASE_NAMES:
            e, c = ph.get(f"{phase}/{d}"), ph.get(f"{phase}/{d}+compile")
            if e and c:
                ratios.append(f"{PHASE_NAMES[phase]} in {d} {c['sec_per_iter'] / e['sec_per_iter']:.2f}x")
    if ratios:
        bullets.append("Compiled layer by layer (`modules.compile_layers`), a step takes this share of its eager "
                       "time: " + ", ".join(ratios) + ".")
    if len(dtypes) > 1:
        gains = [f"{PHASE_NAMES[p]} {tps(p, dtypes[1]) / tps(p, dtypes[0]):.2f}x" for p in PHASE_NAMES
                 if tps(p, dtypes[0]) and tps(p, dtypes[1])]
        if gains:
            bullets.append(f"{dtypes[1]} against {dtypes[0]}, eager, in tokens/s: " + ", ".join(gains) + ".")
    paper_time = PAPER_TABLE5["dist+cont"]["sec_per_iter"] / PAPER_TABLE5["dist"]["sec_per_iter"]
    paper_mem = PAPER_TABLE5["dist+cont"]["memory_mb"] / PAPER_TABLE5["dist"]["memory_mb"]
    below_one = False
    for d in dtypes:
        c, dist = ph.get(f"c_qat_dist_cont/{d}"), ph.get(f"b_qat_dist/{d}")
        if c and dist:
            rounds = [x / y for x, y in zip(c.get("repeat_sec_per_iter") or [c["sec_per_iter"]],
                                            dist.get("repeat_sec_per_iter") or [dist["sec_per_iter"]])]
            below_one |= min(rounds) < 1 or c["peak_mem_mib"] < dist["peak_mem_mib"]
            bullets.append(f"The contrastive loss in {d}: " + ", ".join(f"{x:.2f}x" for x in rounds)
                           + " the $\\mathcal{L}_{dist}$ step's time round by round and "
                           f"{c['peak_mem_mib'] / dist['peak_mem_mib']:.3f}x its peak memory (the paper: "
                           f"{paper_time:.2f}x and {paper_mem:.3f}x).")
    if below_one:
        bullets.append("A ratio below 1 is not the contrastive loss's cost (the loss only adds work): it is how far "
                       "two processes' steps differ on this machine, so the loss's own cost lies below what this "
                       "benchmark resolves.")
    same = ("model", "w_bits", "batch_size", "seq_len", "device")
    for i in [i for i in _bench_files("interleaved") if all(i[k] == b[k] for k in same)]:
        how = "compiled" if i.get("compiled") else "eager"
        command = "python -m qlib.bench --interleave" + (" --compile" if i.get("compiled") else "")
        parts = [f"{r['dtype']} {r['median']:.3f}x (quartiles {r['per round'][0]:.3f}-{r['per round'][1]:.3f}; "
                 f"**{r['verdict']}**)" for r in interleaved_checks(i)]
        bullets.append(f"Timed in alternation in one process ({i['steps']} pairs of steps per dtype, {i['date']}, "
                       f"code {i['code_version']}, {how}, load average {i['load_avg']}"
                       + (", **BUSY**" if i["busy"] else "") + f"; `{command}`), the contrastive loss takes "
                       + ", ".join(parts) + " the $\\mathcal{L}_{dist}$ step's time (target: at most "
                       f"{TARGETS['any']['cont_over_dist_time']:g}x; the paper: {paper_time:.2f}x).")
    return "\n\n".join(lines) + "\n\n" + "\n".join(f"- {x}" for x in bullets)

