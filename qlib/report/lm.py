"""The language-modeling chapter's tables from the committed results: the PTB table, learning curves, step-0
perplexities, zero-shot transfer, samples, and the paper's claims with their verdicts."""
from __future__ import annotations

import statistics

import pandas as pd

from .. import experiments as X
from ..labels import method_name, run_name
from ..paper import PAPER_NEGATIVES_LAYER_PTB, PAPER_PTB_TEACHER, PAPER_TABLE1, PAPER_TABLE7_PTB
from .common import BASELINES, device_label, load_grid, load_grids, ppl_text
from .verdicts import budget_text, last_half_fall, pair_band, seed_spreads, verdict


def paper_ratio(method: str = "mds", label: str = "2-2-8") -> float:
    """The paper's PTB test PPL of ``method`` at W-E-A ``label`` over its teacher's."""
    return PAPER_TABLE1[(method, label)][2] / PAPER_PTB_TEACHER


def lm_table(preset: str, dataset: str = "ptb") -> pd.DataFrame:
    """The paper's Table 1 (PTB column): teacher, control and the 12 students, with step-0 and final validation
    PPL, test PPL and its ratio to our teacher, beside the paper's test PPL and ratio to its teacher."""
    runs = load_grid("lm-table", preset)
    teacher, step0_keys = runs.result("teacher"), set(X.runs("lm-step0", preset))
    rows = []
    for key, (cfg, res) in runs.items():
        # the paper has no control: its full-precision number is its teacher's
        paper = PAPER_TABLE1.get((cfg.method, cfg.label)) if key != "control" else None
        row = {"run": run_name(cfg), "size (MiB)": round(res["size_mb"], 1) if res else None}
        if res is None:
            row.update({"ours: valid PPL at step 0": None, "ours: test PPL": "not run", "ours: / teacher": None})
        else:
            row.update({"ours: valid PPL at step 0": ppl_text(step0_ppl(preset, key)) if key in step0_keys
                        else ppl_text(res["curve"][0]["valid_ppl"]),
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
    ``bits`` (QuantGPT first), by display name, for the runs that exist."""
    runs = load_grid("lm-table", preset)
    out = {}
    for key in ("control", *(f"{m}-{bits}" for m in ("mds", *BASELINES))):
        cfg, res = runs[key]
        if res is not None:
            out[run_name(cfg)] = [(p["tokens"], p["valid_ppl"]) for p in res["curve"]]
    return out


def bits_rows(preset: str) -> list[dict]:
    """The paper's Fig. 1 in our runs: test PPL of every committed student by method and weight bits."""
    runs = load_grid("lm-table", preset)
    rows = []
    for key, cfg in runs.configs.items():
        ppl = runs.metric(key) if cfg.method != "fp" else None
        if ppl is not None:
            rows.append({"method": cfg.method, "w_bits": cfg.w_bits, "value": ppl})
    return rows


def teacher_test_ppl(preset: str) -> float | None:
    return load_grid("lm-table", preset).metric("teacher")


def teacher_valid_ppl(preset: str) -> float | None:
    return load_grid("lm-table", preset).metric("teacher", "valid_ppl")


def step0_ppl(preset: str, key: str) -> float | None:
    """The one step-0 validation PPL of run ``key`` of ``lm-step0`` that every table prints: the first point of the
    run's own learning curve when the run has a result (made from the teacher it trained from, by the code it ran
    with), else the separate step-0 evaluation (``experiments.step0_eval``), which the student-less rows (8-bit
    activations only) have alone. The two differ for rows whose step-0 evaluation was made by earlier code than
    the run."""
    runs = load_grid("lm-table", preset)
    if key in runs.configs and (res := runs.result(key)) is not None:
        return res["curve"][0]["valid_ppl"]
    res = X.step0_eval(X.runs("lm-step0", preset)[key], run_missing=False)
    return res["valid_ppl"] if res else None


def step0_table(preset: str) -> pd.DataFrame:
    """Validation PPL of each student before its first update (``step0_ppl``): what each quantizer costs at
    initialisation, with the teacher's for reference."""
    rows = [{"student": "teacher (no quantization)", "activations": "-",
             "valid PPL at step 0": teacher_valid_ppl(preset) or "not run"}]
    for key, cfg in X.runs("lm-step0", preset).items():
        v = step0_ppl(preset, key)
        name = "8-bit activations only (weights fp32)" if cfg.method != "fp" and cfg.w_bits == 32 else run_name(cfg)
        rows.append({"student": name, "activations": f"per {cfg.act_granularity}, eval batch "
                     f"{cfg.eval_batch_size}" if cfg.method != "fp" else "-",
                     "valid PPL at step 0": ppl_text(v) if v is not None else "not run"})
    return pd.DataFrame(rows)


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


def gammas(preset: str) -> dict[str, float] | None:
    """The paper's Fig. 8 in our run: the learned gamma of every module of QuantGPT 2-2-8, or None if not run."""
    res = load_grid("lm-table", preset).result("mds-228")
    return res.get("gamma") if res else None


def gamma_reading(preset: str) -> str:
    """How far QuantGPT 2-2-8's learned gammas moved from their start (Markdown): their range and median, against how
    far AdamW could move them over the run (about its rate per step, decaying linearly to 0: rate x steps / 2), beside
    the paper's reading of its Fig. 8 (the scalings "vary a lot" between modules)."""
    runs = load_grid("lm-table", preset)
    cfg, res = runs.configs["mds-228"], runs.result("mds-228")
    if not res or not res.get("gamma"):
        return f"**Reading the figure:** not run yet (`{X.grid_command('lm-table', preset, 'mds-228')}`)."
    g, start = sorted(res["gamma"].values()), cfg.gamma_init
    far, limit = max(abs(v - start) for v in g), cfg.quant_lr * res["steps"] / 2
    alpha = "mean|w|" if start == 1 else f"{start:g} mean|w|"  # plain text: outputs are not typeset
    share = f"That is {100 * far / limit:.0f}% of the most AdamW allows"
    why = (f"{share}, so at this budget the number of steps, not Eq. 7's gradient, limits how far gamma travels"
           if far >= limit / 2 else f"{share}: Eq. 7's gradient holds gamma near its start")
    return (f"**Reading the figure:** after {res['steps']:,} steps ({budget_text(run_tokens(res))}) from "
            f"gamma = {start:g}, the {len(g)} modules' gamma lie between {g[0]:.2f} and {g[-1]:.2f} "
            f"(median {statistics.median(g):.2f}). The furthest moved by {far:.2f}, against about {limit:.2f} that "
            f"AdamW allows over the run (at most about its rate per step, {cfg.quant_lr:g} decaying to 0). {why}. "
            "The paper's Fig. 8 finds that the learned scalings of its 2-bit GPT-2 \"vary a lot\" between modules "
            f"after its full training; here every module stays within {100 * far / start:.0f}% of its start, so "
            f"QuantGPT's clipping is set mostly by that start, alpha = {alpha} per module.")


# the ablation claims: (variant compared with QuantGPT 2-2-8, the claim), each from the paper's table or figure named
ABLATION_CLAIMS = (
    ("mds-228-dist-only", "the contrastive loss lowers PPL: QuantGPT below L_dist only (Table 7)"),
    ("mds-228-immediate", "a memory bank beats the immediate student representations (Fig. 7)"),
    ("mds-228-teacher-bank", "teacher negatives beat teacher + bank negatives (Table 4)"),
    ("mds-228-bank", "teacher negatives beat bank-only negatives (Table 4)"),
    ("mds-228-global", "in-sequence teacher negatives beat global negatives (Table 4)"),
    ("mds-228-sequence", "token-level contrast beats sequence-level contrast (Table 4)"),
    ("mds-228-first-layer", "the contrastive loss works better on the last layer than on the first (Table 6)"))
CLAIM_SHAPES = {"mds-228-immediate": "bank below immediate"}  # a claim the paper draws, not tabulates


def run_curve(res: dict | None) -> list[tuple[float, float]]:
    """A run's learning curve as (training tokens, validation PPL) points; [] until it has run."""
    return [(p.get("tokens", p["step"]), p["valid_ppl"]) for p in res.get("curve", [])] if res else []


def run_tokens(res: dict | None) -> int | None:
    """The training tokens of one run (its steps times tokens per step), None until it has run."""
    return res["steps"] * res["tokens_per_step"] if res and res.get("tokens_per_step") else None


def gap_fall(runs, lower: str, higher: str) -> float | None:
    """How much the ratio of run ``lower``'s curve to run ``higher``'s fell over the last half of the budget: the gap
    between two runs is the curve an ordering claim can still close (``verdicts.last_half_fall``)."""
    a, b = dict(run_curve(runs.result(lower))), dict(run_curve(runs.result(higher)))
    return last_half_fall([(t, a[t] / b[t]) for t in a if t in b and b[t]])


def claim_row(runs, spreads, text: str, paper: str, pair: tuple[str, str], names: tuple[str, str],
              threshold: float | None = None, where: str = "lm") -> dict:
    """One LM claim with its verdict: run ``pair[0]`` below run ``pair[1]`` (or, with ``threshold``, its ratio to
    run ``pair[1]`` below that bound); ``names`` are the two sides' methods for their spreads."""
    lo, hi = (runs.metric(k) for k in pair)
    band, band_words = pair_band(spreads, *names)
    res = runs.result(pair[0])
    budget = budget_text(run_tokens(res))
    if threshold is None:
        judged = verdict(lo, hi, band, budget=budget, falling=gap_fall(runs, *pair) if lo and hi else None)
    else:
        judged = verdict(lo / hi if lo and hi else None, threshold, band, budget=budget,
                         falling=last_half_fall(run_curve(res)))
    return {"claim": text, "paper": paper,
            "ours (test PPL)": " vs ".join("-" if v is None else ppl_text(v) for v in (lo, hi)),
            "band": "-" if lo is None or hi is None else (f"{100 * band:.2f}%" if band else "none") +
            f" ({band_words})", "verdict": judged, "where": where}


def claims(preset: str, where: str | None = None) -> pd.DataFrame:
    """The paper's language-modeling claims, each with the paper's numbers, ours, the band of its comparison
    (``verdicts.pair_band``) and the one verdict (``verdicts.verdict``). Claims about the distance to the teacher use
    ratios (student PPL / teacher PPL), as the paper's are relative. Each row's "where" is "lm" (the
    language-modeling page) or "ablations"; ``where`` keeps only those rows (and drops the column)."""
    runs = load_grids(preset, "lm-table", "lm-ablations", "lm-seeds")
    spreads = seed_spreads(preset, runs)
    rows = []
    for bits in ("228", "448", "888"):
        label = "-".join(bits)
        for base in BASELINES:
            paper = [PAPER_TABLE1[(m, label)][2] for m in ("mds", base)]
            rows.append(claim_row(runs, spreads, f"At {label}, QuantGPT reaches a lower PPL than {method_name(base)}.",
                                  f"{paper[0]} vs {paper[1]}", (f"mds-{bits}", f"{base}-{bits}"), ("mds", base)))
    rows.append(claim_row(runs, spreads, "At 2-2-8, QuantGPT stays within 10% of the full-precision teacher's PPL.",
                          f"{PAPER_TABLE1[('mds', '2-2-8')][2]} vs {PAPER_PTB_TEACHER} ({paper_ratio():.3f}x)",
                          ("mds-228", "teacher"), ("mds", "teacher"), threshold=1.10))
    rows.append(claim_row(runs, spreads, "The full-precision control stays within 2% of the teacher: the training "
                          "loop itself costs little.", "(not in the paper)", ("control", "teacher"),
                          ("the control", "teacher"), threshold=1.02))
    for key, what in ABLATION_CLAIMS:
        paper = PAPER_TABLE7_PTB.get(key) or PAPER_NEGATIVES_LAYER_PTB.get(key)
        rows.append(claim_row(runs, spreads, what[0].upper() + what[1:] + ".",
                              f"{PAPER_TABLE7_PTB['mds-228']} vs {paper}" if paper else CLAIM_SHAPES[key],
                              ("mds-228", key), ("mds", "mds"), where="ablations"))
    rows.append(claim_row(runs, spreads, "Eq. 7's gradient for gamma beats PACT's rule for it: L_dist only below "
                          "'Ours with PACT' (Table 7).", f"{PAPER_TABLE7_PTB['mds-228-dist-only']} vs "
                          f"{PAPER_TABLE7_PTB['mds_pact_grad-228-dist-only']}",
                          ("mds-228-dist-only", "mds_pact_grad-228-dist-only"), (VARIANT_SIDE, VARIANT_SIDE),
                          where="ablations"))
    table = pd.DataFrame(rows)
    return table if where is None else table[table["where"] == where].drop(columns="where")


# a variant of QuantGPT with one part of its loss changed is read against QuantGPT's own seed spread (the same
# quantizer and recipe); a variant with another quantizer ("Ours with PACT") runs one seed of a method never seeded:
# its spread is the largest measured (``method_spread``), as in the ablation chapter's tables
VARIANT_SIDE = "the variant"
