"""Does L_cont matter (``qlib.report.contrastive``): the lambda table, the long runs' table, the gradient-share
data and the verdict follow synthetic result files in a temporary results folder, and say "not run" with the
command while a file is missing."""
from dataclasses import asdict

import matplotlib
import pytest

from qlib import experiments as X
from qlib import plots, report
from qlib.report import synthesis
from qlib.runtime import write_json

matplotlib.use("Agg")


def _write(cfg, ppl, curve=(), cont_grad=None):
    # a hand-written result file (never under results/): only what the report reads
    res = {"config": asdict(cfg), "metrics": {"test_ppl": ppl}, "steps": cfg.max_steps, "device": "cpu",
           "tokens_per_step": cfg.batch_size * cfg.seq_len, "curve": [{"step": s, "valid_ppl": v} for s, v in curve]}
    if cont_grad is not None:
        res["cont_grad"] = cont_grad
    write_json(X.result_path(cfg), res)


def _seeds(mds=(100.0, 101.0, 102.0)):
    runs = {**X.runs("lm-table", "cpu"), **X.runs("lm-seeds", "cpu")}
    for key, ppl in zip(("mds-228", "mds-228-seed1", "mds-228-seed2"), mds):
        _write(runs[key], ppl)


def test_the_lambda_table_reads_each_run_against_quantgpts_seed_band(dirs):
    table = report.lambda_table("cpu").set_index("lambda")
    assert table.loc["1", "test PPL"] == "not run"
    assert table.loc["1", "reading"] == "python -m qlib grid lm-lambda --preset cpu --only mds-228-lam1"
    _seeds()  # QuantGPT's band: 102 / 100 - 1 = 2%
    lam = X.runs("lm-lambda", "cpu")
    _write(lam["mds-228-lam1"], 101.5)  # +1.5%: inside
    _write(lam["mds-228-lam10"], 95.0)  # -5%: beyond, lower
    table = report.lambda_table("cpu").set_index("lambda")
    assert table.loc["1", "test PPL"] == "101.50" and table.loc["1", "against lambda = 0.1"] == "+1.50%"
    assert table.loc["1", "reading"] == "no effect (inside the band)"
    assert table.loc["10", "test PPL"] == "95.00" and table.loc["10", "reading"] == "lower PPL, beyond the band"
    assert table.loc["0 (L_dist only)", "test PPL"] == "not run"
    assert table.loc["0.1, three seeds", "test PPL"] == "100.00-102.00"
    assert table.loc["0.1, three seeds", "against lambda = 0.1"] == "band: range 2.00%"
    text = report.contrastive_verdict("cpu")
    assert "lambda = 1 +1.50%, lambda = 10 -5.00%" in text and "lambda = 10 (lower PPL)" in text
    assert "Not run yet: `mds-228-dist-only`" in text and "The long run" not in text  # decided once all have run
    _write(lam["mds-228-dist-only"], 100.5)
    text = report.contrastive_verdict("cpu")
    assert "Beyond the band: lambda = 10 (lower PPL); inside it: lambda = 0, lambda = 1." in text
    assert ("The long run with L_cont uses lambda = 0.1, which these runs do not support (lambda = 10 lowered the "
            "PPL beyond the band).") in text
    _write(lam["mds-228-lam10"], 110.0)  # +10%: beyond, higher
    assert ("The long run with L_cont uses lambda = 0.1, which these runs support: no larger weight lowered the PPL "
            "beyond the band.") in report.contrastive_verdict("cpu")


def test_the_long_table_reads_validation_ppl_where_the_short_runs_end_and_at_the_end(dirs):
    long = X.runs("lm-long", "cpu")
    short, end = long["mds-228-long"].curve_at[0], long["mds-228-long"].max_steps
    text = report.contrastive_verdict("cpu")
    assert "**Five times the budget:** not run yet" in text and "python -m qlib grid lm-long --preset cpu" in text
    table = report.long_table("cpu").set_index("validation PPL")
    tokens = [f"{s * 512:,} tokens" for s in (short, end)]
    assert list(table.columns) == tokens
    assert table.loc["QuantGPT, L_dist + L_cont", tokens[1]].startswith("not run: python -m qlib grid lm-long")
    _seeds()
    _write(long["mds-228-long"], 80.0, ((0, 1e6), (short, 120.0), (end, 90.0)))
    _write(long["mds-228-dist-only-long"], 85.0, ((0, 1e6), (short, 121.0), (end, 99.0)))
    _write(long["laq-228-long"], 95.0, ((0, 1e6), (short, 130.0), (end, 100.0)))
    table = report.long_table("cpu").set_index("validation PPL")
    assert table.loc["QuantGPT, L_dist only", tokens[0]] == "121.00"
    assert table.loc["LAQ, L_dist only", tokens[1]] == "100.00"
    effect = table.loc["adding L_cont (with / L_dist only)"]
    assert effect[tokens[0]] == "-0.83%: no effect (inside the band), band 2.00%"
    assert effect[tokens[1]].startswith("-9.09%: beyond the band")
    text = report.contrastive_verdict("cpu")
    assert ("adding L_cont moves QuantGPT's validation PPL by -9.09% (99.00 without, 90.00 with; test PPL -5.88%, "
            "85.00 and 80.00), beyond QuantGPT's seed band (2.00%") in text
    assert "L_cont helps once the budget is larger" in text
    # the quantizer at 5x: LAQ against QuantGPT with the same loss (L_dist only), read against the largest spread
    quantizer = table.loc["LAQ / QuantGPT L_dist only (the same loss: the quantizer)", tokens[1]]
    assert quantizer.startswith("+1.01%: no effect (inside the band)")
    assert ("LAQ ends +11.11% from QuantGPT with L_cont, beyond the band, and +1.01% from QuantGPT with L_dist only, "
            "the same loss (100.00 against 99.00): the quantizer's gap, no effect (inside the band)") in text
    assert "; LAQ ends +1.01% from QuantGPT with L_dist only" in synthesis.long_text("cpu")  # the attribution's
    curves = report.long_curves("cpu")
    assert curves["QuantGPT, L_dist + L_cont"] == [(0, 1e6), (short * 512, 120.0), (end * 512, 90.0)]
    assert "QuantGPT, L_dist + L_cont (cpu budget)" not in curves  # the preset's run has no curve yet
    _write(X.runs("lm-table", "cpu")["mds-228"], 100.0, ((0, 1e6), (short, 118.0)))
    assert report.long_curves("cpu")["QuantGPT, L_dist + L_cont (cpu budget)"] == [(0, 1e6), (short * 512, 118.0)]
    assert plots.long_curves_plot(curves, report.long_marker("cpu")) is not None


def test_the_gradient_share_comes_from_the_recorded_diagnostics(dirs):
    assert report.grad_share_curves("cpu") == {}
    assert "not run" in report.grad_share_table("cpu").iloc[0, 0]
    assert "**Gradient ratio:** not recorded yet" in report.contrastive_verdict("cpu")
    assert plots.grad_share_plot({}, report.missing_note("cpu", "lm-lambda")) is not None  # says so, still draws
    cfg = X.runs("lm-lambda", "cpu")["mds-228-lam10"]
    # as train records them: the split of update s is measured on the gradient taken after s - 1 updates
    points = [{"step": s, "tokens": 512 * (s - 1), "ratio": r, "cosine": c, "cont_share": 0.1}
              for s, r, c in ((1, 0.01, 0.0), (36, 0.1, 0.1), (200, 0.2, 0.3), (400, 0.4, 0.5))]
    _write(cfg, 100.0, cont_grad=points)
    curves = report.grad_share_curves("cpu")
    assert curves == {"lambda = 10, 204,800 tokens": points}
    row = report.grad_share_table("cpu").iloc[0]
    # the later half in log steps: from step 20 (the square root of 400), so steps 36, 200 and 400
    assert row["ratio at the first update"] == "0.010" and row["ratio, later half (median)"] == "0.200"
    assert row["cosine, later half (median)"] == "0.30"
    assert "lambda = 10, 204,800 tokens: |lambda dL_cont/dW| is 20.0% of |dL_dist/dW|, cosine 0.30" in report.contrastive_verdict("cpu")
    assert plots.grad_share_plot(curves) is not None
    assert "At the paper's lambda" not in report.contrastive_verdict("cpu")  # said once a lambda = 0.1 run recorded it
    small = [{**p, "ratio": p["ratio"] / 5, "cosine": 0.17} for p in points]
    _write(X.runs("lm-long", "cpu")["mds-228-long"], 100.0, cont_grad=small)
    assert ("At the paper's lambda = 0.1, L_cont's gradient is a small part of L_dist's (4.0%) and points in a mostly "
            "unrelated direction (cosine below 0.5): it steers the update little.") in report.contrastive_verdict("cpu")
    _seeds()  # the chapter's TL;DR reads once an ablation and QuantGPT's band have run
    _write(X.runs("lm-ablations", "cpu")["mds-228-dist-only"], 100.5)
    assert "- **Gradient:** At the paper's lambda = 0.1, L_cont's gradient is a small part" in report.ablations_tldr("cpu")
    assert "mds-228-lam1" in report.missing_note("cpu", "lm-lambda")


@pytest.mark.parametrize("preset", ["gpu", "paper"])
def test_a_preset_that_trains_epochs_says_it_has_no_long_runs(dirs, preset):
    """Chapter 7 under papermill with the gpu or paper preset: the long-run parts say why there is nothing."""
    assert X.grid("lm-long", preset) == [] and report.long_curves(preset) == {} and report.long_marker(preset) is None
    for text in (report.long_table(preset).iloc[0, 0], report.missing_note(preset, "lm-long"),
                 report.contrastive_verdict(preset)):
        assert f"no long runs in the `{preset}` preset: it trains by epochs" in text
    assert plots.long_curves_plot({}, None, report.missing_note(preset, "lm-long")) is not None
