"""Tables for the book: our committed results beside the paper's numbers (always labelled as the paper's).

The paper's numbers (GPT-2 small / BART-base, test PPL, Persona-Chat accuracy, XSum ROUGE) are copied from its
tables; ours come only from result files under ``results/``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .experiments import (RESULTS, TRANSFER_TOKENS, command, figure_data, grid, lm_student, lm_teacher,
                          load_result, text_samples, transfer_eval)

PAPER_TABLE1 = {  # (method, W-E-A): (size MB, WikiText2, PTB, WikiText103, Persona-Chat acc)
    ("fp", "fp32"): (474.9, 14.48, 14.72, 14.19, 77.01),
    ("pact", "8-8-8"): (121.4, 17.49, 16.11, 16.76, 74.73),
    ("lsq", "8-8-8"): (121.4, 16.75, 15.43, 15.24, 75.28),
    ("laq", "8-8-8"): (121.4, 16.91, 15.87, 15.88, 76.02),
    ("mds", "8-8-8"): (121.4, 15.31, 14.90, 14.58, 76.12),
    ("pact", "4-4-8"): (62.4, 19.23, 20.17, 20.15, 25.13),
    ("lsq", "4-4-8"): (62.4, 78.99, 79.76, 75.12, 45.10),
    ("laq", "4-4-8"): (62.4, 17.12, 16.55, 16.91, 71.71),
    ("mds", "4-4-8"): (62.4, 15.55, 14.95, 15.31, 76.57),
    ("pact", "2-2-8"): (33.0, 173.02, 189.13, 171.03, 5.52),
    ("lsq", "2-2-8"): (33.0, 847.54, 544.98, 1470.86, 5.54),
    ("laq", "2-2-8"): (33.0, 19.15, 18.25, 18.97, 71.36),
    ("mds", "2-2-8"): (33.0, 17.30, 16.12, 16.98, 74.78),
}
PAPER_TABLE4_PTB = {"teacher": 16.12, "teacher+bank": 16.51, "bank": 16.54, "global": 16.63, "sequence": 19.23}
PAPER_TABLE5 = {"dist": {"sec_per_iter": 0.61, "memory_mb": 14700, "ptb_ppl": 16.93},
                "dist+cont": {"sec_per_iter": 0.67, "memory_mb": 14839, "ptb_ppl": 16.12}}
PAPER_TABLE7_PTB = {"QuantGPT": 16.12, "L_dist only": 16.93, "Ours with PACT": 17.78}
PAPER_XSUM = {"fp": (40.75, 18.10, 33.05), "mds 2-2-8": (39.15, 16.72, 31.72)}
METHOD_NAMES = {"fp": "full precision", "pact": "PACT", "lsq": "LSQ", "laq": "LAQ", "mds": "QuantGPT",
                "mds_pact_grad": "Ours with PACT gradient", "minmax": "min-max", "twn": "TWN", "bwn": "BWN"}


LM_ORDER = ("mds", "pact", "lsq", "laq")  # QuantGPT first: the claims compare it with the baselines


def _paper_col(dataset: str) -> int:
    return {"wikitext2": 1, "ptb": 2, "wikitext103": 3}[dataset]


def device_label(res: dict) -> str:
    """Where a result was made, short: "CPU" or the GPU's name (runs of one preset may come from both)."""
    if res["device"] == "cpu":
        return "CPU"
    return res.get("device_name", res["device"]).replace("NVIDIA ", "").split(" ")[0]


def lm_table(configs, dataset: str = "ptb") -> pd.DataFrame:
    """Table 1 (LM column of ``dataset``): ours (committed results) beside the paper's. Runs without a committed
    result appear as "not run" with the command that makes them."""
    rows = []
    for cfg in configs:
        res = load_result(cfg)
        setting = "fp32" if cfg.method == "fp" else cfg.quant_config().label
        paper = PAPER_TABLE1.get((cfg.method, setting))
        row = {"method": METHOD_NAMES.get(cfg.method, cfg.method), "W-E-A": setting}
        if res is None:
            row.update({"size (MiB)": None, "ours: test PPL": "not run", "ours: steps x tokens": "", "ours: on": ""})
        else:
            row.update({"size (MiB)": round(res["size_mb"], 1), "ours: test PPL": round(res["metrics"]["test_ppl"], 2),
                        "ours: steps x tokens": f"{res['steps']} x {res.get('tokens_per_step') or '-'}",
                        "ours: on": device_label(res)})
        row["paper (GPT-2): size MB"] = paper[0] if paper else None
        row["paper (GPT-2): test PPL"] = paper[_paper_col(dataset)] if paper else None
        rows.append(row)
    return pd.DataFrame(rows)


def ablation_table(configs, labels: list[str], paper: dict[str, float] | None = None,
                   sizes: bool = False) -> pd.DataFrame:
    """One row per variant: our test PPL beside the paper's (when given); with ``sizes``, each student's size and
    its compression against the full-precision teacher of the same preset."""
    rows = []
    teacher = load_result(lm_teacher(configs[0].preset, configs[0].dataset)) if sizes else None
    for cfg, label in zip(configs, labels):
        res = load_result(cfg)
        row = {"variant": label, "ours: test PPL": round(res["metrics"]["test_ppl"], 2) if res else "not run",
               "ours: on": device_label(res) if res else ""}
        if sizes:
            row["size (MiB)"] = round(res["size_mb"], 1) if res else None
            row["compression"] = f"{teacher['size_mb'] / res['size_mb']:.1f}x" if res and teacher else None
        if paper is not None:
            row["paper (GPT-2, PTB)"] = paper.get(label)
        rows.append(row)
    return pd.DataFrame(rows)


def transfer_table(configs, dataset: str = "wikitext2") -> pd.DataFrame:
    """Zero-shot test PPL on ``dataset`` of PTB-trained runs, beside the paper's column for that dataset, which
    comes from models trained on it (so the paper's numbers are a reference point, not a like-for-like target)."""
    rows = []
    for cfg in configs:
        res = transfer_eval(cfg, dataset, run_missing=False)
        setting = "fp32" if cfg.method == "fp" else cfg.quant_config().label
        paper = PAPER_TABLE1.get((cfg.method, setting))
        tokens = TRANSFER_TOKENS[cfg.preset]
        rows.append({"method": METHOD_NAMES.get(cfg.method, cfg.method), "W-E-A": setting,
                     f"ours: {dataset} test PPL, zero-shot from PTB": round(res["test_ppl"], 2) if res else "not run",
                     "ours: test tokens": (res["tokens_read"] if res else (tokens or "all")),
                     f"paper (GPT-2 trained on {dataset})": paper[_paper_col(dataset)] if paper else None})
    return pd.DataFrame(rows)


def samples_table(configs) -> pd.DataFrame:
    """Greedy continuations of the same prompts by each run (committed files under ``results/<task>/samples/``),
    one row per prompt and one column per model; a run without samples is a "not run" column."""
    cols = {}
    prompts = None
    for cfg in configs:
        res = text_samples(cfg, run_missing=False)
        label = METHOD_NAMES.get(cfg.method, cfg.method) + ("" if cfg.method == "fp" else f" {cfg.quant_config().label}")
        label = Path(cfg.out_dir).name if label in cols else label  # two runs of one method: name them apart
        if res is not None:
            prompts = prompts or res["prompts"]
            cols[label] = [c.strip() for c in res["continuations"]]
        else:
            cols[label] = None
    if prompts is None:
        return pd.DataFrame({"samples": ["not run"]})
    return pd.DataFrame({"prompt": prompts, **{k: v or ["not run"] * len(prompts) for k, v in cols.items()}})


def homogeneity_table(figure_data: dict[str, dict]) -> pd.DataFrame:
    """Figs. 2-4 in numbers, one row per model (``experiments.figure_data`` results by label): mean cosine
    similarity of the embeddings, mean and minimum token-token similarity of the last hidden states (off the
    diagonal), and the clipping range of Fig. 4's module."""
    import numpy as np

    rows = []
    for name, d in figure_data.items():
        sim = np.asarray(d["token_similarity"])
        off = sim[~np.eye(len(sim), dtype=bool)]
        rows.append({"model": name, "embeddings: mean cos": round(d["embedding_mean_cos"], 3),
                     "last hidden states: mean cos": round(float(off.mean()), 3),
                     "last hidden states: min cos": round(float(off.min()), 3),
                     f"clipping range of {d['module']}": f"±{d['clip']['pos']:.3f}" if d["clip"] else "-"})
    return pd.DataFrame(rows)


def committed_results(task: str = "lm") -> list[dict]:
    """Every committed result file of a task."""
    folder = RESULTS / task
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def result_rows(results: list[dict], metric: str = "test_ppl") -> list[dict]:
    return [{"method": r["config"]["method"], "w_bits": r["config"]["w_bits"], "value": r["metrics"][metric],
             "name": Path(r["config"]["out_dir"]).name} for r in results if metric in r["metrics"]]


PAPER_XTC_MNLI = [  # XTC's headline numbers (BERT-base, MNLI-m/mm accuracy), from its paper
    {"model": "BERT-base baseline (12L, fp32)", "MNLI-m/mm": "84.9 / 85.6"},
    {"model": "12L, 1-bit (XTC)", "MNLI-m/mm": "84.1 / 84.0"},
    {"model": "6L, 1-bit (XTC)", "MNLI-m/mm": "82.9 / 83.6"},
    {"model": "5L, 2-bit (XTC)", "MNLI-m/mm": "83.3 / 84.1"},
]


def xtc_table(configs, metric: str = "valid_accuracy") -> pd.DataFrame:
    """Our XTC runs: layers, bits, size and compression against the teacher, and the task metric."""
    results = [load_result(c) for c in configs]
    teacher_size = results[0]["size_mb"] if results[0] else None
    rows = []
    for cfg, res in zip(configs, results):
        depth = len(cfg.keep_layers) or None
        row = {"variant": "teacher (fine-tuned)" if cfg.out_dir == configs[0].out_dir else
               ("layer reduction only" if cfg.method == "fp" else
                f"{'binary' if cfg.method == 'bwn' else 'ternary'} weights" + (" + layer reduction" if depth else "")),
               "layers": depth or "all", "W-E-A": "32-32-32" if cfg.method == "fp" else cfg.quant_config().label}
        if res is None:
            row.update({"size (MiB)": None, "compression": None, metric: "not run"})
        else:
            row.update({"size (MiB)": round(res["size_mb"], 2),
                        "compression": f"{teacher_size / res['size_mb']:.1f}x" if teacher_size else None,
                        metric: round(res["metrics"][metric], 2)})
        rows.append(row)
    return pd.DataFrame(rows)


LM_XTC_LABELS = ["layer reduction only (fp32)", "XTC ternary 2-2-8", "XTC binary 1-1-8",
                 "XTC ternary 2-2-8 + layer reduction", "XTC binary 1-1-8 + layer reduction"]


def lm_xtc_table(preset: str, dataset: str = "ptb") -> pd.DataFrame:
    """XTC's recipe on the generative model beside QuantGPT 2-2-8 (equal bits), with sizes and compression."""
    configs = [lm_student(preset, "mds", (2, 2, 8), dataset)] + grid("lm-xtc", preset)
    return ablation_table(configs, ["QuantGPT 2-2-8"] + LM_XTC_LABELS, sizes=True)


def claims(preset: str, dataset: str = "ptb") -> pd.DataFrame:
    """The paper's language-modeling claims, each checked against our committed results of ``preset``: the numbers
    compared, and "reproduced", "not reproduced" or "not run" (single seed: small gaps are within noise)."""
    teacher = lm_teacher(preset, dataset)
    st = (lambda m, bits=(2, 2, 8): lm_student(preset, m, bits, dataset))
    name = (lambda c: Path(c.out_dir).name)
    abl = {name(c): c for c in grid("lm-ablations", preset)}
    tag = (lambda t, method="mds": abl[name(st(method)).removesuffix(f"-{preset}") + f"-{t}-{preset}"])
    lower = (lambda p: p[0] < min(p[1:]))
    rows = [("PACT collapses at 2-2-8 (test PPL > 100)", "189.13", [st("pact")], lambda p: p[0] > 100),
            ("LSQ collapses at 2-2-8 (test PPL > 100)", "544.98", [st("lsq")], lambda p: p[0] > 100),
            ("LAQ degrades but does not collapse at 2-2-8 (test PPL < 100)", "18.25", [st("laq")], lambda p: p[0] < 100)]
    for bits in ((2, 2, 8), (4, 4, 8), (8, 8, 8)):
        label = "-".join(map(str, bits))
        paper = [PAPER_TABLE1[(m, label)][2] for m in LM_ORDER]
        rows.append((f"QuantGPT has the lowest test PPL of the four methods at {label}",
                     " / ".join(f"{v:g}" for v in paper), [st(m, bits) for m in LM_ORDER], lower))
    rows += [("QuantGPT 2-2-8 stays within 10% of the full-precision PPL", "16.12 vs 14.72 (+9.5%)",
              [st("mds"), teacher], lambda p: p[0] <= 1.1 * p[1]),
             ("the contrastive loss helps: QuantGPT below L_dist only (Table 7)", "16.12 vs 16.93",
              [st("mds"), tag("dist-only")], lower),
             ("the dynamic-scaling gradient helps: L_dist only below 'Ours with PACT' (Table 7)", "16.93 vs 17.78",
              [tag("dist-only"), tag("dist-only", "mds_pact_grad")], lower),
             ("a memory bank beats immediate student representations (Fig. 7)", "bank below immediate",
              [st("mds"), tag("immediate")], lower),
             ("teacher negatives beat the other sampling schemes (Table 4)", "16.12 vs 16.51 / 16.54 / 16.63 / 19.23",
              [st("mds")] + [tag(t) for t in ("teacher-bank", "bank", "global", "sequence")], lower)]
    out = []
    for claim, paper, configs, holds in rows:
        res = [load_result(c) for c in configs]
        ppl = [r["metrics"]["test_ppl"] if r else None for r in res]
        missing = sum(p is None for p in ppl)
        out.append({"claim": claim, "paper (GPT-2, PTB)": paper,
                    "ours": " / ".join("-" if p is None else f"{p:.2f}" for p in ppl),
                    "verdict": f"not run ({missing} of {len(ppl)} runs missing)" if missing else
                    ("reproduced" if holds(ppl) else "not reproduced")})
    return pd.DataFrame(out)


def not_run(configs, transfer: str | None = None, grid_name: str = "lm-table", samples: bool = False,
            figures: bool = False) -> None:
    """Print the command of every config without a committed result (the book's "not run" rows); with
    ``transfer``, of every config without a zero-shot evaluation on that dataset, with ``samples`` / ``figures``,
    of every config without generated text / figure data (these three made via grid ``grid_name``)."""
    check, flag, what = load_result, None, ""
    if transfer:
        check, flag, what = (lambda c: transfer_eval(c, transfer, run_missing=False)), f"--transfer {transfer}", \
            f" on {transfer}"
    elif samples:
        check, flag, what = (lambda c: text_samples(c, run_missing=False)), "--samples", " (text samples)"
    elif figures:
        check, flag, what = (lambda c: figure_data(c, run_missing=False)), "--figures", " (figure data)"
    missing = [c for c in configs if check(c) is None]
    if not missing:
        print("every run of this table has a committed result")
    for c in missing:
        cmd = command(c) if flag is None else \
            f"python -m qlib grid {grid_name} --preset {c.preset} --only {Path(c.out_dir).name} {flag}"
        print(f"not run: {Path(c.out_dir).name}{what}\n  {cmd}")


def bench_table() -> pd.DataFrame:
    """Every committed benchmark result (results/bench/*.json) with the paper's Table 5 figures beside it."""
    rows = []
    for path in sorted((RESULTS / "bench").glob("*.json")):
        b = json.loads(path.read_text())
        for phase, v in b["phases"].items():
            rows.append({"setting": f"{b['model']} W{b['w_bits']} b{b['batch_size']} s{b['seq_len']} {b['device']}",
                         "phase": phase, "s/iter": round(v["sec_per_iter"], 3), "tokens/s": round(v["tokens_per_s"]),
                         "peak MiB": round(v["peak_mem_mib"]), "load avg": b.get("load_avg")})
        rows.append({"setting": f"{b['model']} ratios", "phase": ", ".join(
            f"{k} = {v:.2f}" for k, v in b["ratios"].items())})
    rows.append({"setting": "paper (GPT-2 small, V100)", "phase": "L_dist -> L_dist + L_cont",
                 "s/iter": "0.61 -> 0.67", "peak MiB": "14700 -> 14839"})
    if len(rows) == 1:
        rows.insert(0, {"setting": "ours", "phase": "not run: python -m qlib.bench --model smollm2-135m"})
    return pd.DataFrame(rows)
