"""The next-utterance and summarization chapters: the task tables beside the paper's, the readings of where each
run ended and was heading, the paper's claims on these tasks, samples of what the runs produce, and the commands
that run the grids."""
from __future__ import annotations

import pandas as pd

from ..experiments import grid_command
from ..labels import method_name, number_text, ratio_text, run_name
from ..paper import PAPER_TABLE1, PAPER_TABLE3
from .common import BASELINES, device_label, load_grid
from .verdicts import budget_text, collapsed, last_half_fall, verdict, verdict_counts

# the other two tasks: what each grid reports, and the paper's columns beside it
TASK_METRICS = {"dialogue-table": (("valid_reply_ppl", "valid reply PPL"), ("valid_mc_acc", "valid hits@1 (%)"),
                                   ("test_mc_acc", "test hits@1 (%)")),
                "xsum-table": (("valid_ppl", "valid summary PPL"), ("test_rouge1", "R1"), ("test_rouge2", "R2"),
                               ("test_rougeL", "RL"))}
# per grid: the validation perplexity a reading compares with the teacher's, the end metric (key, name, format) and
# the paper's training budget of a student in examples, with its description
TASK_READING = {
    "xsum-table": ("valid_ppl", "validation summary PPL", ("test_rougeL", "test ROUGE-L", ".1f"),
                   8 * 204_045, "8 epochs of the 204,045 XSum training articles"),
    "dialogue-table": ("valid_reply_ppl", "validation gold-reply PPL", ("test_mc_acc", "test hits@1", ".0f"),
                       None, "2 epochs of Persona-Chat's 8,939 training dialogues"),
}
TASK_TITLE = {"xsum-table": "Summarization", "dialogue-table": "Next-utterance prediction"}
# per grid: the per-example test scores a result file keeps, their name, and the paper's column of that metric
TASK_SCORES = {"dialogue-table": ("test_mc_hits", "hits@1 (%)", lambda k: PAPER_TABLE1[k][4], 100.0),
               "xsum-table": ("test_rougeL_per_article", "ROUGE-L", lambda k: PAPER_TABLE3[k][3], 1.0)}
TASK_TEACHER_GAP = {"dialogue-table": 3.0, "xsum-table": 1.5}  # the gaps to the teacher the paper's claims allow
TASK_FLOOR = {"dialogue-table": 100.0 / 20, "xsum-table": 0.0}  # chance: 1 of 20 candidates; ROUGE: 0


def _paper_task_row(grid: str, key: str, cfg) -> dict:
    table = PAPER_TABLE1 if grid == "dialogue-table" else PAPER_TABLE3
    paper = None if key == "control" else table.get((cfg.method, cfg.label))  # the paper has no control
    if grid == "dialogue-table":
        return {"paper (GPT-2, Persona-Chat valid): hits@1 (%)": paper[4] if paper else None}
    return {f"paper (BART-base, XSum test): {m}": paper[i] if paper else None
            for i, m in enumerate(("R1", "R2", "RL"), 1)}


def task_table(grid: str, preset: str) -> pd.DataFrame:
    """The paper's Table 1, last column (``dialogue-table``), or its Table 3 (``xsum-table``) with the offline
    stand-ins: the teacher, the control and the four methods at 2-2-8, ours beside the paper's (always labelled as
    the paper's)."""
    rows = []
    for key, (cfg, res) in load_grid(grid, preset).items():
        row = {"run": run_name(cfg)}
        for metric, label in TASK_METRICS[grid]:
            row[f"ours: {label}"] = round(res["metrics"][metric], 2) if res else "not run"
        if res:
            row.update({"ours: examples seen": f"{res['steps'] * res['effective_batch']:,}",
                        "ours: on": device_label(res)})
        rows.append({**row, **_paper_task_row(grid, key, cfg)})
    return pd.DataFrame(rows)


def distill_span_table(preset: str) -> pd.DataFrame:
    """Beyond the paper (``xsum-distill-all``): each 2-bit summarizer distilled on the summary's positions only (the
    paper's reading, ``xsum-table``) and on every position of article and summary, same budget and rate."""
    table, extra = load_grid("xsum-table", preset), load_grid("xsum-distill-all", preset)
    teacher = table.result("teacher") if table else None
    rows = []
    for key in extra:
        for span, (run, res) in (("summary positions (the paper's reading)", table[key.removesuffix("-distill-all")]),
                                 ("every position (article too)", extra[key])):
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
    for cfg, res in load_grid(grid, preset).values():
        if res is not None:
            out[run_name(cfg)] = [(p["step"] * res["effective_batch"], p[metric]) for p in res["curve"]]
    return out


def task_curve_plot(grid: str, preset: str, title: str = ""):
    """``plots.learning_curves`` of ``task_curves`` with the grid's validation PPL on a log y axis."""
    from ..plots import learning_curves

    return learning_curves(task_curves(grid, preset), title=title, ylabel=TASK_READING[grid][1],
                           xlabel="training examples", logy=True)


def task_reading(grid: str, preset: str) -> str:
    """Where each run of ``grid`` ended and where its curve was heading, as sentences read from the committed
    results of ``preset`` (Markdown): ratios to the teacher's validation PPL, the end metric, the curve's first,
    last-but-one and last points, and the students' budget against the paper's."""
    metric, name, (end, end_name, fmt), paper_examples, paper_budget = TASK_READING[grid]
    runs = load_grid(grid, preset)
    teacher = runs.result("teacher")
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
        v = res["metrics"][metric]
        lines.append(f"{'The ' if key == 'control' else ''}{run_name(cfg)} ends at {ratio_text(v / t)} the teacher's "
                     f"{name} ({number_text(v)}; {end_name} {res['metrics'][end]:{fmt}}) after "
                     f"{res['steps'] * res['effective_batch']:,} training examples" + curve_text(res["curve"], metric)
                     + ".")
    done = [r for k, r in runs.done().items() if k not in ("teacher", "control")]
    if done:
        examples = done[0]["steps"] * done[0]["effective_batch"]
        share = f" ({100 * examples / paper_examples:.2g}% of it)" if paper_examples else ""
        lines.append(f"A student here sees {examples:,} examples; the paper trains for {paper_budget}{share}.")
    if missing:
        lines.append("Not run yet: " + ", ".join(missing) + ".")
    return f"**{TASK_TITLE[grid]} (`{preset}` preset, from the committed results):** " + " ".join(lines)


def task_tldr(grid: str, preset: str) -> str:
    """A task chapter's answer in two sentences, computed: the teacher's and the control's end score, which 2-bit
    students kept less than a quarter of the teacher's score above chance (``collapsed``), and the verdicts."""
    _, _, (end, end_name, fmt), _, _ = TASK_READING[grid]
    runs = load_grid(grid, preset)
    teacher, control = runs.result("teacher"), runs.result("control")
    if teacher is None:
        return f"**TL;DR:** not run yet in the `{preset}` preset (`{grid_command(grid, preset)}`)."
    best = teacher["metrics"][end]
    students = {run_name(cfg): res["metrics"][end] for key, (cfg, res) in runs.items()
                if key not in ("teacher", "control") and res is not None}
    fell = [n for n, v in students.items() if collapsed(v, best, TASK_FLOOR[grid])]
    scores = ", ".join(f"{n} {v:{fmt}}" for n, v in students.items())
    return (f"**TL;DR.** The teacher's {end_name} is {best:{fmt}}"
            + (f", the full-precision control's {control['metrics'][end]:{fmt}}" if control else "")
            + f"; {len(fell)} of {len(students)} 2-bit students keep less than a quarter of the teacher's score above "
            f"{'chance' if TASK_FLOOR[grid] else 'zero'} ({scores}). The paper's claims on this task: "
            f"{verdict_counts(task_claims(grid, preset)['verdict'])}.")


def curve_text(curve: list[dict], metric: str) -> str:
    """Where a curve was heading: its first, last-but-one and last points, and whether its last segment is flat
    (within 2%) or still falling; "" for a curve of fewer than three points."""
    if len(curve) < 3:
        return ""
    (s0, v0), (s1, v1), (s2, v2) = ((p["step"], p[metric]) for p in (curve[0], curve[-2], curve[-1]))
    text = "; its curve: " + ", ".join(f"{number_text(val)} at step {step}"
                                       for step, val in ((s0, v0), (s1, v1), (s2, v2)))
    if s1 > 0 and abs(v1 / v2 - 1) < 0.02:  # where it is heading: the last segment against its growth
        text += f" (flat: within 2% over the last {s2 / s1:.1f}x the examples)"
    elif s1 > 0 and v2 < v1:
        text += f" (still falling: {v1 / v2:.2f}x lower over {s2 / s1:.1f}x the examples)"
    return text


def generated_summaries(preset: str, articles: int = 2) -> pd.DataFrame:
    """The paper's Table 10 with the stand-in: the summaries each run of ``xsum-table`` generated for the first
    test articles, beside the reference."""
    runs = load_grid("xsum-table", preset)
    rows = []
    for cfg, res in runs.values():
        for i, ex in enumerate(res["metrics"]["examples"][:articles] if res else []):
            rows.append({"article": i + 1, "run": run_name(cfg), "summary": ex["generated"]})
    refs = runs.result("teacher")
    for i, ex in enumerate(refs["metrics"]["examples"][:articles] if refs else []):
        rows.append({"article": i + 1, "run": "reference (XSum)", "summary": ex["reference"]})
    return pd.DataFrame(rows, columns=["article", "run", "summary"]).sort_values(["article"], kind="stable")


def chosen_replies(preset: str, examples: int = 2) -> pd.DataFrame:
    """The next-utterance samples: for the first test examples of ``dialogue-table``, the last turn of the history,
    the gold reply, and the reply each run's multiple-choice head ranked first among the 20 candidates."""
    from ..data import chitchat_dialogs

    runs = load_grid("dialogue-table", preset)
    picked = {run_name(cfg): res["metrics"]["test_mc_picks"] for cfg, res in runs.values()
              if res and "test_mc_picks" in res["metrics"]}
    if not picked:
        return pd.DataFrame([{"example": "-", "who": "no dialogue run with its picks committed", "reply": "-"}])
    rows = []
    for i, d in enumerate(chitchat_dialogs("test", limit=examples)):
        cands = d["candidates"][-runs.configs["teacher"].num_candidates:]  # as ``personachat_batch`` cuts them
        rows += [{"example": i + 1, "who": "last turn of the history", "reply": d["history"][-1]},
                 {"example": i + 1, "who": "gold reply", "reply": cands[-1]}]
        rows += [{"example": i + 1, "who": name + (" (right)" if picks[i] == len(cands) - 1 else " (wrong)"),
                  "reply": cands[picks[i]]} for name, picks in picked.items() if i < len(picks)]
    return pd.DataFrame(rows, columns=["example", "who", "reply"])


def dialogue_example(split: str = "test", index: int = 0) -> pd.DataFrame:
    """One example of the Chit-Chat next-utterance task as the model sees it: the topic prompt, the history and
    the 20 candidate replies, the gold one marked (it is last in the data; the table says which)."""
    from ..data import chitchat_dialogs

    d = chitchat_dialogs(split, limit=index + 1)[index]
    rows = [{"part": "topic (stands where Persona-Chat has personas)", "text": p} for p in d["personality"]]
    rows += [{"part": f"history turn {i + 1}", "text": t} for i, t in enumerate(d["history"])]
    gold = len(d["candidates"]) - 1
    rows += [{"part": f"candidate {i + 1}" + (" (gold reply)" if i == gold else " (from another conversation)"),
              "text": c} for i, c in enumerate(d["candidates"])]
    return pd.DataFrame(rows)


def task_fall(runs, grid: str, a: str, b: str) -> float | None:
    """How much the curve a task claim can still close fell over the last half of the budget (``last_half_fall``):
    the validation PPL of run ``a`` against the teacher's, or its ratio to run ``b``'s for an ordering of two
    students (the score itself sits at chance once a student collapses; its perplexity shows where it heads)."""
    metric = TASK_READING[grid][0]
    curve = {k: {p["step"]: p[metric] for p in r.get("curve", [])} for k in (a, b) if (r := runs.result(k))}
    if a not in curve:
        return None
    if b == "teacher" or b not in curve:
        return last_half_fall(sorted(curve[a].items()))
    return last_half_fall(sorted((s, v / curve[b][s]) for s, v in curve[a].items() if curve[b].get(s)))


def task_claims(grid: str, preset: str) -> pd.DataFrame:
    """The paper's claims on the other two tasks with the one verdict (``verdicts.verdict``). No seed spread is
    measured for these tasks: the band is the half-width of the paired bootstrap 95% interval of each comparison over
    the test examples (``evaluate.paired_bootstrap``), in the metric's own units; two collapsed students
    (``collapsed``) make a claim untestable. ``where``: the grid, for the page that shows it."""
    from ..evaluate import paired_bootstrap

    key, metric, paper_of, scale = TASK_SCORES[grid]
    runs = load_grid(grid, preset)
    per = {k: [scale * v for v in r["metrics"][key]] if r else None for k, (_, r) in runs.items()}
    mean = {k: sum(v) / len(v) if v else None for k, v in per.items()}
    rows = []

    def claim(text, paper, a, b, margin=0.0):
        """Claim: mean(a) > mean(b) + margin, judged against the bootstrap spread of a - b."""
        row = {"claim": text, "paper": paper, f"ours ({metric}, test)": "-", "band": "-", "verdict": "not run",
               "where": grid}
        if per[a] is not None and per[b] is not None:
            lo, hi = paired_bootstrap(per[a], per[b])
            failed = mean["teacher"] is not None and b != "teacher" and all(
                collapsed(mean[k], mean["teacher"], TASK_FLOOR[grid]) for k in (a, b))
            res = runs.result(a)
            row.update({f"ours ({metric}, test)": f"{mean[a]:.2f} vs {mean[b]:.2f}",
                        "band": f"{(hi - lo) / 2:.2f} (bootstrap over the test examples)",
                        "verdict": verdict(mean[b] + margin, mean[a], (hi - lo) / 2, absolute=True,
                                           both_collapsed=failed, falling=task_fall(runs, grid, a, b),
                                           budget=budget_text(res["steps"] * res["effective_batch"], "examples")
                                           if "steps" in res else "this budget")})
        rows.append(row)

    name = "QuantGPT" if grid == "dialogue-table" else "QuantBART"
    for base in BASELINES:
        claim(f"At 2-2-8, {name} scores higher than {method_name(base)}.",
              f"{paper_of(('mds', '2-2-8'))} vs {paper_of((base, '2-2-8'))}", "mds-228", f"{base}-228")
    gap = TASK_TEACHER_GAP[grid]
    claim(f"At 2-2-8, {name} stays within {gap:g} of the full-precision teacher (the teacher minus {gap:g} is "
          f"below {name}).", f"{paper_of(('fp', 'fp32'))} vs {paper_of(('mds', '2-2-8'))}", "mds-228", "teacher",
          margin=-gap)
    return pd.DataFrame(rows)
