"""What the chapters compute beside the tables of ``qlib.report``: figure data, readings and key results read from the
committed results, and the analyses made from the pretrained model when the book is built (re-exported by
``qlib.report``, the one namespace the notebooks use)."""
from __future__ import annotations

import pandas as pd

from . import experiments as X
from .labels import method_name, number_text, ratio_text, run_name
from .paper import PAPER_PTB_TEACHER, PAPER_SIZES, PAPER_TABLE1, PAPER_TABLE3


def _ppl(cfg, metric: str = "test_ppl") -> float | None:
    res = X.load_result(cfg)
    return res["metrics"][metric] if res else None


def dtype_table(preset: str) -> pd.DataFrame:
    """The bf16-vs-fp32 check (grid ``lm-dtype``): each run's validation PPL along the way and its test PPL."""
    rows = []
    for key, cfg in X.runs("lm-dtype", preset).items():
        res = X.load_result(cfg)
        row = {"run": key, "dtype": cfg.dtype, "seed": cfg.seed, "steps": cfg.max_steps}
        if res is None:
            rows.append({**row, "test PPL": f"not run: python -m qlib grid lm-dtype --preset {preset} --only {key}"})
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
    ppl = {k: _ppl(cfg) for k, cfg in X.runs("lm-dtype", preset).items()}
    if None in ppl.values():
        return f"**bf16 against fp32:** not run (`python -m qlib grid lm-dtype --preset {preset}`)."
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


def teacher_budget_reading(preset: str, grid: str = "lm-teacher-budget") -> str:
    """One sentence from a teacher-budget run (``lm-teacher-budget`` or ``xsum-teacher-budget``): where the
    teacher's validation PPL was lowest, where it ended, and the epochs the preset's teacher trains for because of
    it."""
    from .task_grids import task_teacher, teacher_epochs

    runs = X.runs(grid, preset)
    if not runs:
        return f"**Teacher budget:** the {preset} preset trains the paper's budget; it has no budget run."
    (key, cfg), = runs.items()
    res = X.load_result(cfg)
    if res is None:
        return f"**Teacher budget:** not run (`python -m qlib grid {grid} --preset {preset}`)."
    if cfg.task == "lm":
        epochs, chosen, what = cfg.epochs, X.lm_teacher(preset).epochs, "validation PPL"
        test = f"test PPL {res['metrics']['test_ppl']:.2f}"
    else:
        epochs, chosen = teacher_epochs(cfg), teacher_epochs(task_teacher("xsum-table", preset))
        what, test = "validation summary PPL", f"test ROUGE-L {res['metrics']['test_rougeL']:.1f}"
    curve = res["curve"]
    best, end = min(curve, key=lambda c: c["valid_ppl"]), curve[-1]
    per_epoch = end["tokens"] / epochs
    return (f"**Teacher budget** ({preset} preset, {device_label(res)}): fine-tuned for {epochs:.0f} epochs, the "
            f"teacher's {what} went from {curve[0]['valid_ppl']:.1f} (step 0) to its lowest, "
            f"{best['valid_ppl']:.1f}, after {best['tokens'] / per_epoch:.1f} epochs and ended at "
            f"{end['valid_ppl']:.1f} ({test}); the preset's teacher trains {chosen:.0f} "
            f"epoch{'s' if round(chosen) != 1 else ''}.")


def device_label(res: dict) -> str:
    """Where a result was made, short: "CPU" or the GPU's name."""
    if res["device"] == "cpu":
        return "CPU"
    return res.get("device_name", res["device"]).replace("NVIDIA ", "").split(" ")[0]


def bits_rows(preset: str) -> list[dict]:
    """Fig. 1's points: test PPL of every committed student by method and weight bits."""
    rows = []
    for key, cfg in X.runs("lm-table", preset).items():
        ppl = _ppl(cfg) if cfg.method != "fp" else None
        if ppl is not None:
            rows.append({"method": cfg.method, "w_bits": cfg.w_bits, "value": ppl})
    return rows


def teacher_test_ppl(preset: str) -> float | None:
    return _ppl(X.runs("lm-table", preset)["teacher"])


def why_hard_data(preset: str, top_tokens: int = 500, run_missing: bool = False) -> dict[str, dict]:
    """The data of Figs. 2-4 (``experiments.figure_data``) for the teacher and each 2-bit student that has it."""
    out = {}
    for key, cfg in X.runs("lm-table", preset).items():
        if key == "teacher" or key.endswith("-228"):
            d = X.figure_data(cfg, top_tokens, run_missing=run_missing)
            if d is not None:
                out[run_name(cfg)] = d
    return out


def grid_text(clip: dict | None) -> str:
    """A grid's range, short: "±0.108" when symmetric, "-0.2 .. 0.3" otherwise, "-" without one."""
    if not clip:
        return "-"
    if abs(clip["neg"] + clip["pos"]) < 5e-4:
        return f"±{clip['pos']:.3f}"
    return f"{clip['neg']:.3f} .. {clip['pos']:.3f}"


def homogeneity_table(data: dict[str, dict]) -> pd.DataFrame:
    """Figs. 2-4 in numbers, one row per model: mean cosine similarity of the embeddings, mean and minimum
    token-token similarity of the last hidden states (off the diagonal), and the clipping range of each of Fig. 4's
    modules."""
    import numpy as np

    rows = []
    for name, d in data.items():
        sim = np.asarray(d["token_similarity"])
        off = sim[~np.eye(len(sim), dtype=bool)]
        row = {"model": name, "embeddings: mean cos": d["embedding_mean_cos"],
               "hidden: mean cos": float(off.mean()), "hidden: min cos": float(off.min())}
        for module, m in d["modules"].items():  # "model.layers.3.self_attn.o_proj" -> "grid of o_proj"
            row[f"grid of {module.rsplit('.', 1)[-1]}"] = grid_text(m["clip"])
        rows.append(row)
    return pd.DataFrame(rows or [{"model": "not run"}])


def gamma_start_table(model: str, module: str) -> pd.DataFrame:
    """Where dynamic scaling starts: per bit width, the share of the model's layer weights beyond alpha at gamma =
    1, and the gamma with the least reconstruction error on ``module``."""
    from . import analysis
    from .models import load_model
    from .modules import QuantConfig, quantize_model

    rows = []
    lm = load_model(model, "lm")
    w = lm.get_submodule(module).weight.detach()
    for b in (2, 4, 8):
        student = quantize_model(load_model(model, "lm"), QuantConfig("mds", b, a_bits=8))
        sweep = analysis.gamma_gradient_curve(w, b, [0.5 + 0.25 * i for i in range(47)])
        rows.append({"W bits": b, "layer weights clipped at gamma = 1": analysis.clipped_share(student)["share"],
                     f"gamma with least error ({module})": sweep["gamma"][sweep["loss"].index(min(sweep["loss"]))]})
    return pd.DataFrame(rows)


def markdown(text: str):
    """Text the book renders as Markdown (a key-results box, a reading computed from the results)."""
    from IPython.display import Markdown

    return Markdown(text)


def key_results(preset: str) -> str:
    """The book's key results, as sentences read from the committed results of ``preset`` (Markdown)."""
    t = X.runs("lm-table", preset)
    teacher, control, q = (X.load_result(t[k]) for k in ("teacher", "control", "mds-228"))
    lines = []
    if teacher is None:
        return ("**Key results:** the re-runs with the corrected library (fair baselines, causal activations, "
                "learning curves) have not landed for the `%s` preset yet; every table below says which runs are "
                "missing and the command that makes them." % preset)
    lines.append(f"The teacher (SmolLM2-135M-Instruct fine-tuned on PTB) has test PPL "
                 f"{teacher['metrics']['test_ppl']:.2f} at context {teacher['config'].get('eval_seq_len') or 512}.")
    if control is not None:
        lines.append(f"The full-precision control, trained by the students' loop for the same budget, ends at "
                     f"{control['metrics']['test_ppl'] / teacher['metrics']['test_ppl']:.3f}x the teacher's PPL.")
    if q is not None:
        tokens = q["steps"] * q["tokens_per_step"]
        c = q["curve"]
        lines.append(f"QuantGPT 2-2-8 reaches {q['metrics']['test_ppl'] / teacher['metrics']['test_ppl']:.2f}x the "
                     f"teacher's PPL after {tokens:,} training tokens (paper: {16.12 / 14.72:.3f}x after 120 "
                     f"epochs); its validation PPL went from {number_text(c[0]['valid_ppl'])} at step 0 to "
                     f"{number_text(c[-1]['valid_ppl'])}, and from {number_text(c[-2]['valid_ppl'])} to "
                     f"{number_text(c[-1]['valid_ppl'])} "
                     f"over the last {c[-1]['step'] - c[-2]['step']} steps.")
    else:
        lines.append("QuantGPT 2-2-8 has not been re-run yet.")
    base = {m: X.load_result(t[f"{m}-228"]) for m in ("pact", "lsq", "laq")}
    done = {m: r["metrics"]["test_ppl"] / teacher["metrics"]["test_ppl"] for m, r in base.items() if r is not None}
    if done:
        paper = {m: PAPER_TABLE1[(m, "2-2-8")][2] / PAPER_PTB_TEACHER for m in done}
        lines.append("With the same budget the baselines at 2-2-8 end at " + ", ".join(
            f"{method_name(m)} {ratio_text(v)}" for m, v in done.items()) + " (paper: " + ", ".join(
            f"{method_name(m)} {ratio_text(paper[m])}" for m in done) + ")" + (
            "; not run yet: " + ", ".join(method_name(m) for m in base if m not in done) if len(done) < 3 else "")
            + ". Chapter 9 says which differences lie outside the measured seed spread.")
    lines += _four_bit_start(preset, teacher["metrics"]["test_ppl"])
    return "**Key results (`%s` preset):** " % preset + " ".join(lines)


def _four_bit_start(preset: str, teacher_ppl: float) -> list[str]:
    """The 4-4-8 sentence of the key results: QuantGPT from the paper's gamma = 1 and from the least-error start
    (chapter 7), beside LSQ; nothing until the paper-start run and LSQ have both landed."""
    t, g = X.runs("lm-table", preset), X.runs("lm-gamma-init", preset)
    paper, lsq, fitted = (X.load_result(c) for c in (t["mds-448"], t["lsq-448"], g["mds-448-gamma3.5"]))
    if paper is None or lsq is None:
        return []
    ratio = lambda r: ratio_text(r["metrics"]["test_ppl"] / teacher_ppl)  # noqa: E731
    text = (f"At 4-4-8, QuantGPT started at the paper's gamma = 1 ends at {ratio(paper)} the teacher's PPL, "
            f"LSQ at {ratio(lsq)}")
    if fitted is not None:
        text += (f"; started at gamma = {fitted['config']['gamma_init']:g}, where a SmolLM2 matrix's 4-bit error is "
                 f"least (chapter 7), QuantGPT ends at {ratio(fitted)}")
    paper_ratio = lambda m: ratio_text(PAPER_TABLE1[(m, "4-4-8")][2] / PAPER_PTB_TEACHER)  # noqa: E731
    return [text + f" (paper: QuantGPT {paper_ratio('mds')}, LSQ {paper_ratio('lsq')})."]


def dialogue_example(split: str = "test", index: int = 0) -> pd.DataFrame:
    """One example of the Chit-Chat next-utterance task as the model sees it: the topic prompt, the history and
    the 20 candidate replies, the gold one marked (it is last in the data; the table says which)."""
    from .data import chitchat_dialogs

    d = chitchat_dialogs(split, limit=index + 1)[index]
    rows = [{"part": "topic (stands where Persona-Chat has personas)", "text": p} for p in d["personality"]]
    rows += [{"part": f"history turn {i + 1}", "text": t} for i, t in enumerate(d["history"])]
    gold = len(d["candidates"]) - 1
    rows += [{"part": f"candidate {i + 1}" + (" (gold reply)" if i == gold else " (from another conversation)"),
              "text": c} for i, c in enumerate(d["candidates"])]
    return pd.DataFrame(rows)


# per grid: the per-example test scores a result file keeps, their name, and the paper's column of that metric
TASK_SCORES = {"dialogue-table": ("test_mc_hits", "hits@1 (%)", lambda k: PAPER_TABLE1[k][4], 100.0),
               "xsum-table": ("test_rougeL_per_article", "ROUGE-L", lambda k: PAPER_TABLE3[k][3], 1.0)}
TASK_TEACHER_GAP = {"dialogue-table": 3.0, "xsum-table": 1.5}  # the paper's gaps: 2.23 points and 1.33 RL
# a run has collapsed when it keeps less than COLLAPSED of the teacher's score above the task's floor (chance: 1 of
# 20 candidates; ROUGE: 0). The paper's own failed runs fall below it (PACT 2-2-8: 6.96 of 33.05 RL; PACT and LSQ
# 2-2-8: 5.5% hits@1), its working ones above (PACT 4-4-8 on Persona-Chat keeps 28%, on XSum 79%)
COLLAPSED = 0.25
TASK_FLOOR = {"dialogue-table": 100.0 / 20, "xsum-table": 0.0}


def collapsed(score: float, teacher: float, floor: float) -> bool:
    """Whether a run's score keeps less than ``COLLAPSED`` of the teacher's above ``floor``."""
    return score - floor < COLLAPSED * (teacher - floor)


def task_claims(grid: str, preset: str) -> pd.DataFrame:
    """The paper's claims on the other two tasks with the verdict of ``report.verdict``. No seed spread is measured
    for these tasks: the band is the half-width of the paired bootstrap 95% interval of each comparison over the
    test examples (``evaluate.paired_bootstrap``), in the metric's own units."""
    from .evaluate import paired_bootstrap
    from .report import verdict

    key, metric, paper_of, scale = TASK_SCORES[grid]
    res = {k: X.load_result(c) for k, c in X.runs(grid, preset).items()}
    per = {k: [scale * v for v in r["metrics"][key]] if r else None for k, r in res.items()}
    mean = {k: sum(v) / len(v) if v else None for k, v in per.items()}
    rows = []

    def claim(text, paper, a, b, margin=0.0):
        """Claim: mean(a) > mean(b) + margin, judged against the bootstrap spread of a - b."""
        if per[a] is None or per[b] is None:
            rows.append({"claim": text, "paper": paper, f"ours ({metric}, test)": "-", "verdict": "not run"})
            return
        lo, hi = paired_bootstrap(per[a], per[b])
        failed = mean["teacher"] is not None and b != "teacher" and all(
            collapsed(mean[k], mean["teacher"], TASK_FLOOR[grid]) for k in (a, b))
        rows.append({"claim": text, "paper": paper, f"ours ({metric}, test)": f"{mean[a]:.2f} vs {mean[b]:.2f}",
                     "verdict": verdict(mean[b] + margin, mean[a], (hi - lo) / 2, absolute=True,
                                        both_collapsed=failed)})

    name = "QuantGPT" if grid == "dialogue-table" else "QuantBART"
    for base in ("pact", "lsq", "laq"):
        claim(f"At 2-2-8, {name} scores higher than {method_name(base)}.",
              f"{paper_of(('mds', '2-2-8'))} vs {paper_of((base, '2-2-8'))}", "mds-228", f"{base}-228")
    gap = TASK_TEACHER_GAP[grid]
    claim(f"At 2-2-8, {name} stays within {gap:g} of the full-precision teacher (the teacher minus {gap:g} is "
          f"below {name}).", f"{paper_of(('fp', 'fp32'))} vs {paper_of(('mds', '2-2-8'))}", "mds-228", "teacher",
          margin=-gap)
    return pd.DataFrame(rows)


def task_commands(grid: str, preset: str) -> None:
    """The commands that run grid ``grid`` (``dialogue-table``, ``xsum-table``) in ``preset``, one run each, teacher
    first: each one works when copied (a student rebuilds a missing teacher itself)."""
    for key in X.runs(grid, preset):
        print(f"python -m qlib grid {grid} --preset {preset} --only {key}")


def gammas(preset: str) -> dict[str, float] | None:
    """Fig. 8's data: the learned gamma of every module of QuantGPT 2-2-8, or None if not run."""
    res = X.load_result(X.runs("lm-table", preset)["mds-228"])
    return res.get("gamma") if res else None


def size_table() -> pd.DataFrame:
    """The paper's size columns and compression ratios (Tables 1-3 and Table 2's ratios for GPT-2 small and
    BART-base, Table 9 for the 24-layer models) from ``qlib.size_mb`` on each backbone built on the meta device
    (shapes only), beside the paper's numbers."""
    import copy

    from .models import meta_model
    from .modules import QuantConfig, quantize_model
    from .packing import size_mb

    rows = []
    for name, paper in PAPER_SIZES.items():
        model = meta_model(name)
        fp = size_mb(model)
        for bits in ("fp32", 8, 4, 2):
            size = fp if bits == "fp32" else size_mb(quantize_model(copy.deepcopy(model), QuantConfig("mds", bits)))
            rows.append({"model": name, "W-E-A": "fp32" if bits == "fp32" else f"{bits}-{bits}-8",
                         "ours: size (MiB)": size, "ours: compression": f"{fp / size:.1f}x",
                         "paper: size (MB)": paper[bits],
                         "paper: compression": f"{paper['fp32'] / paper[bits]:.1f}x" if paper["fp32"] else None})
    return pd.DataFrame(rows)


def packed_roundtrip(model: str, bits: int = 2) -> str:
    """Quantize the pretrained ``model`` (QuantGPT W-E-A bits-bits-8), export it bit-packed, load the file back and
    compare logits on a PTB block: the file's size, ``size_mb`` and the largest logit difference."""
    import copy
    import tempfile
    from pathlib import Path

    import torch

    from .data import lm_blocks
    from .models import load_model, load_tokenizer
    from .modules import QuantConfig, quantize_model
    from .packing import export_packed, load_packed, size_mb

    tokenizer = load_tokenizer(model)
    student = quantize_model(copy.deepcopy(load_model(model, "lm", vocab_size=len(tokenizer))),
                             QuantConfig("mds", bits, a_bits=8)).eval()
    ids = lm_blocks("ptb", "test", tokenizer, 64, max_tokens=128)
    with tempfile.TemporaryDirectory() as d, torch.no_grad():
        path = export_packed(student, Path(d) / "student.safetensors")
        file_mib = path.stat().st_size / 2 ** 20
        diff = (load_packed(path)(input_ids=ids).logits - student(input_ids=ids).logits).abs().max().item()
    return (f"{model} at {bits}-{bits}-8: packed file {file_mib:.1f} MiB, size_mb {size_mb(student):.1f} MiB; "
            f"largest |logit difference| between the student and the model loaded from its file: {diff:.3g}")
