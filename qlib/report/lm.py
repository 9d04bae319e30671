"""The language-modeling chapter's tables from the committed results: the PTB table, learning curves, step-0
perplexities, zero-shot transfer, samples, the paper's claims with their verdicts and the key results."""
from __future__ import annotations

import pandas as pd

from .. import experiments as X
from ..labels import method_name, number_text, ratio_text, run_name
from ..paper import PAPER_PTB_TEACHER, PAPER_TABLE1, PAPER_TABLE4_PTB, PAPER_TABLE7_PTB
from .common import BASELINES, device_label, load_grid, load_grids, ppl_text
from .verdicts import seed_band, verdict


def paper_ratio(method: str = "mds", label: str = "2-2-8") -> float:
    """The paper's PTB test PPL of ``method`` at W-E-A ``label`` over its teacher's."""
    return PAPER_TABLE1[(method, label)][2] / PAPER_PTB_TEACHER


def lm_table(preset: str, dataset: str = "ptb") -> pd.DataFrame:
    """The paper's Table 1 (PTB column): teacher, control and the 12 students, with step-0 and final validation
    PPL, test PPL and its ratio to our teacher, beside the paper's test PPL and ratio to its teacher."""
    runs = load_grid("lm-table", preset)
    teacher = runs.result("teacher")
    rows = []
    for key, (cfg, res) in runs.items():
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


# the ablation claims: (variant compared with QuantGPT 2-2-8, the claim), each from the paper's table or figure named
ABLATION_CLAIMS = (
    ("mds-228-dist-only", "the contrastive loss lowers PPL: QuantGPT below L_dist only (Table 7)"),
    ("mds-228-immediate", "a memory bank beats the immediate student representations (Fig. 7)"),
    ("mds-228-teacher-bank", "teacher negatives beat teacher + bank negatives (Table 4)"),
    ("mds-228-global", "in-sequence teacher negatives beat global negatives (Table 4)"),
    ("mds-228-sequence", "token-level contrast beats sequence-level contrast (Table 4)"),
    ("mds-228-first-layer", "the contrastive loss works better on the last layer than on the first (Table 6)"))
CLAIM_SHAPES = {"mds-228-immediate": "bank below immediate", "mds-228-first-layer": "last below first"}


def claims(preset: str) -> pd.DataFrame:
    """The paper's language-modeling claims, each with the paper's numbers, ours and the verdict of ``verdict``
    against the measured seed band. Claims about distance to the teacher use ratios (student PPL / teacher PPL), as
    the paper's are relative."""
    runs = load_grids(preset, "lm-table", "lm-ablations", "lm-seeds")
    band, ppl = seed_band(preset, runs), runs.metric
    rows = []

    def claim(text, paper, lower, higher, shown):
        rows.append({"claim (paper: GPT-2 small on PTB)": text, "paper": paper,
                     "ours (test PPL)": " vs ".join("-" if v is None else f"{v:.2f}" for v in shown),
                     "verdict": verdict(lower, higher, band)})

    for bits in ("228", "448", "888"):
        label = "-".join(bits)
        for base in BASELINES:
            ours = [ppl(f"mds-{bits}"), ppl(f"{base}-{bits}")]
            paper = [PAPER_TABLE1[(m, label)][2] for m in ("mds", base)]
            claim(f"At {label}, QuantGPT reaches a lower PPL than {method_name(base)}.",
                  f"{paper[0]} vs {paper[1]}", ours[0], ours[1], ours)
    q, tr = ppl("mds-228"), ppl("teacher")
    claim("At 2-2-8, QuantGPT stays within 10% of the full-precision teacher's PPL (ratio below 1.10).",
          f"{PAPER_TABLE1[('mds', '2-2-8')][2]} / {PAPER_PTB_TEACHER} = {paper_ratio():.3f}",
          q / tr if q and tr else None, 1.10, [q, tr])
    control = ppl("control")
    claim("The full-precision control stays within 2% of the teacher: the training loop itself costs little.",
          "(not in the paper)", control / tr if control and tr else None, 1.02, [control, tr])
    for key, what in ABLATION_CLAIMS:
        ours = [ppl("mds-228"), ppl(key)]
        paper = PAPER_TABLE7_PTB.get(key) or PAPER_TABLE4_PTB.get(key)
        claim(what[0].upper() + what[1:] + ".", f"{PAPER_TABLE7_PTB['mds-228']} vs {paper}" if paper
              else CLAIM_SHAPES[key], ours[0], ours[1], ours)
    ours = [ppl("mds-228-dist-only"), ppl("mds_pact_grad-228-dist-only")]
    claim("Eq. 7's gradient for gamma beats PACT's rule for it: L_dist only below 'Ours with PACT' (Table 7).",
          f"{PAPER_TABLE7_PTB['mds-228-dist-only']} vs {PAPER_TABLE7_PTB['mds_pact_grad-228-dist-only']}",
          ours[0], ours[1], ours)
    return pd.DataFrame(rows)


def key_results(preset: str, verdicts_in: str = "the results chapter", gamma_from: str = "the ablation chapter") -> str:
    """The book's key results, as sentences read from the committed results of ``preset`` (Markdown).
    ``verdicts_in``: where the book calls the differences against the seed band; ``gamma_from``: where it finds the
    least-error gamma."""
    runs = load_grids(preset, "lm-table", "lm-gamma-init")
    teacher, control, q = (runs.result(k) for k in ("teacher", "control", "mds-228"))
    if teacher is None:
        return ("**Key results:** the re-runs with the corrected library (fair baselines, causal activations, "
                "learning curves) have not landed for the `%s` preset yet; every table below says which runs are "
                "missing and the command that makes them." % preset)
    t = teacher["metrics"]["test_ppl"]
    lines = [f"The teacher (SmolLM2-135M-Instruct fine-tuned on PTB) has test PPL "
             f"{t:.2f} at context {teacher['config'].get('eval_seq_len') or 512}."]
    if control is not None:
        lines.append(f"The full-precision control, trained by the students' loop for the same budget, ends at "
                     f"{control['metrics']['test_ppl'] / t:.3f}x the teacher's PPL.")
    if q is not None:
        c = q["curve"]
        lines.append(f"QuantGPT 2-2-8 reaches {q['metrics']['test_ppl'] / t:.2f}x the "
                     f"teacher's PPL after {q['steps'] * q['tokens_per_step']:,} training tokens (paper: "
                     f"{paper_ratio():.3f}x after 120 epochs); its validation PPL went from "
                     f"{number_text(c[0]['valid_ppl'])} at step 0 to {number_text(c[-1]['valid_ppl'])}, and from "
                     f"{number_text(c[-2]['valid_ppl'])} to {number_text(c[-1]['valid_ppl'])} "
                     f"over the last {c[-1]['step'] - c[-2]['step']} steps.")
    else:
        lines.append("QuantGPT 2-2-8 has not been re-run yet.")
    done = {m: r["metrics"]["test_ppl"] / t for m in BASELINES if (r := runs.result(f"{m}-228")) is not None}
    if done:
        lines.append("With the same budget the baselines at 2-2-8 end at " + ", ".join(
            f"{method_name(m)} {ratio_text(v)}" for m, v in done.items()) + " (paper: " + ", ".join(
            f"{method_name(m)} {ratio_text(paper_ratio(m))}" for m in done) + ")" + (
            "; not run yet: " + ", ".join(method_name(m) for m in BASELINES if m not in done)
            if len(done) < len(BASELINES) else "")
            + f". {verdicts_in[0].upper() + verdicts_in[1:]} says which differences lie outside the measured seed "
              "spread.")
    return "**Key results (`%s` preset):** " % preset + " ".join(lines + four_bit_start(runs, t, gamma_from))


def four_bit_start(runs, teacher_ppl: float, gamma_from: str = "the ablation chapter") -> list[str]:
    """The 4-4-8 sentence of the key results (``runs``: grids ``lm-table`` and ``lm-gamma-init`` loaded): QuantGPT
    from the paper's gamma = 1 and from the least-error start, beside LSQ; nothing until the paper-start run and LSQ
    have both landed."""
    paper, lsq, fitted = (runs.result(k) for k in ("mds-448", "lsq-448", "mds-448-gamma3.5"))
    if paper is None or lsq is None:
        return []
    ratio = lambda r: ratio_text(r["metrics"]["test_ppl"] / teacher_ppl)  # noqa: E731
    text = (f"At 4-4-8, QuantGPT started at the paper's gamma = 1 ends at {ratio(paper)} the teacher's PPL, "
            f"LSQ at {ratio(lsq)}")
    if fitted is not None:
        text += (f"; started at gamma = {fitted['config']['gamma_init']:g}, where a SmolLM2 matrix's 4-bit error is "
                 f"least ({gamma_from}), QuantGPT ends at {ratio(fitted)}")
    return [text + f" (paper: QuantGPT {ratio_text(paper_ratio('mds', '4-4-8'))}, "
                   f"LSQ {ratio_text(paper_ratio('lsq', '4-4-8'))})."]
