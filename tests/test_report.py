"""The book's tables, readings and verdicts (``qlib.report``): each follows the committed result files, reads every
grid and result file once per call, and takes its titles from the notebooks."""
import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest

from qlib import experiments as X
from qlib import report
from qlib.runtime import write_json

ROOT = Path(__file__).resolve().parent.parent


def _fake_result(cfg, ppl):
    # a hand-written result file, only to exercise the verdict logic (never under results/)
    write_json(X.result_path(cfg), {"config": asdict(cfg), "metrics": {"test_ppl": ppl}, "size_mb": 1.0})


def test_device_label_names_the_gpu_or_cpu():
    assert report.device_label({"device": "cpu", "device_name": "x86_64"}) == "CPU"
    assert report.device_label({"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3"}) == "H100"


def test_the_dtype_check_compares_bf16_against_fp32_with_a_second_seed(dirs):
    runs = X.runs("lm-dtype", "smoke")
    assert {c.dtype for c in runs.values()} == {"bf16", "fp32"} and all(c.teacher is None for c in runs.values())
    assert report.dtype_reading("smoke").startswith("**bf16 against fp32:** not run")
    for ppls, word in (((100.0, 104.0, 101.0), "agree"), ((100.0, 102.0, 102.5), "cannot be told apart"),
                       ((100.0, 101.0, 110.0), "differ")):
        for cfg, ppl in zip((runs["mds-228-bf16"], runs["mds-228-bf16-seed1"], runs["mds-228-fp32"]), ppls):
            _fake_result(cfg, ppl)
        assert f"bf16 and fp32 {word}" in report.dtype_reading("smoke")


def test_the_teacher_budget_reading_finds_the_lowest_validation_point(dirs):
    (cfg,) = X.runs("lm-teacher-budget", "gpu").values()
    assert cfg.epochs == X.lm_base("gpu")["epochs"] and X.lm_teacher("gpu").epochs == X.TEACHER_EPOCHS["gpu"]
    assert "not run" in report.teacher_budget_reading("gpu")
    curve = [{"step": s, "tokens": t, "valid_ppl": v} for s, t, v in ((0, 0, 50.0), (10, 300, 20.0), (100, 1000, 24.0))]
    write_json(X.result_path(cfg), {"config": asdict(cfg), "metrics": {"test_ppl": 21.0}, "curve": curve,
                                      "device": "cuda", "device_name": "NVIDIA H200"})
    text = report.teacher_budget_reading("gpu")
    assert "lowest, 20.0, after 3.0 epochs and ended at 24.0" in text and "H200" in text, text


def test_the_summarization_teacher_budget_is_read_in_epochs_of_the_training_articles(dirs):
    from qlib.experiments import teacher_epochs

    (cfg,) = X.runs("xsum-teacher-budget", "cpu").values()
    teacher = X.runs("xsum-table", "cpu")["teacher"]
    assert cfg.max_steps == 3 * teacher.max_steps and cfg.out_dir != teacher.out_dir
    assert teacher_epochs(teacher) == pytest.approx(1.0, abs=0.01) and teacher_epochs(cfg) == pytest.approx(3.0, 0.01)
    with pytest.raises(ValueError, match="xsum-sample"):
        teacher_epochs(X.lm_teacher("cpu"))
    assert "not run" in report.teacher_budget_reading("cpu", "xsum-teacher-budget")
    # the history counts examples outside LM: 660 examples are the three epochs
    curve = [{"step": s, "tokens": t, "valid_ppl": v} for s, t, v in ((0, 0, 22.0), (77, 154, 15.0), (330, 660, 24.0))]
    write_json(X.result_path(cfg), {"config": asdict(cfg), "metrics": {"test_rougeL": 20.8}, "curve": curve,
                                      "device": "cpu"})
    text = report.teacher_budget_reading("cpu", "xsum-teacher-budget")
    assert "lowest, 15.0, after 0.7 epochs and ended at 24.0 (test ROUGE-L 20.8)" in text, text
    # the teacher's own schedule is not this run's: its numbers at one epoch are not the teacher's
    assert text.endswith("trains 1 epoch with its learning rate decayed over it, not over 3, so its own numbers "
                         "(below) are not this run's at that point."), text
    # the paper preset trains the paper's budget and rates: no budget run, no sweep, and the chapter still reads
    assert X.grid("xsum-teacher-budget", "paper") == [] and X.grid("xsum-lr", "paper") == []
    assert "no budget run" in report.teacher_budget_reading("paper", "xsum-teacher-budget")
    assert "no sweep" in report.lr_sweep_table("paper", "xsum-lr").iloc[0, 0]


def test_the_summarization_rate_sweep_reads_each_control_against_its_own_teacher(dirs):
    runs = X.runs("xsum-lr", "cpu")
    table = X.runs("xsum-table", "cpu")
    assert runs["teacher"] == table["teacher"]
    quarter = table["control"].max_steps // 4
    sweep = [k for k in runs if k.startswith("control-lr") and not k.endswith("-full")]
    assert [runs[k].lr for k in sweep] == list(X.LR_SWEEP) and all(runs[k].max_steps == quarter for k in sweep)
    assert runs["control-lr0.0003-full"].max_steps == table["control"].max_steps
    assert set(report.lr_sweep_table("cpu", "xsum-lr")["control: valid PPL at the end"]) == {"not run"}
    for key, ppl in (("teacher", 14.0), ("control-lr3e-05", 14.1), ("control-lr0.0003", 17.5)):
        curve = [{"step": 0, "valid_ppl": 14.0}, {"step": 5, "valid_ppl": ppl + 1.0}]
        write_json(X.result_path(runs[key]), {"config": asdict(runs[key]), "metrics": {"valid_ppl": ppl},
                                                "curve": curve, "steps": 55})
    table_rows = report.lr_sweep_table("cpu", "xsum-lr")
    assert list(table_rows["steps"]) == [55, 55, 55, table["control"].max_steps]  # the full-budget row last
    rows = table_rows[table_rows["steps"] == 55].set_index("learning rate")
    assert rows.loc["3e-05", "/ teacher"] == pytest.approx(14.1 / 14.0)
    assert rows.loc["0.0003", "worst point on the way / teacher"] == pytest.approx(18.5 / 14.0)
    assert rows.loc["0.0001", "control: valid PPL at the end"] == "not run"
    chosen = rows.index[rows["chosen"] == "yes"].tolist()
    assert chosen == [f"{table['control'].lr:g}"] or (chosen == [] and table["control"].lr not in X.LR_SWEEP)
    # the dialogue sweep reads the gold reply's perplexity (hits@1 moves in whole examples), at step 0 and the end
    dialogue = X.runs("dialogue-lr", "cpu")
    assert list(dialogue) == ["teacher"] + [f"control-lr{lr:g}" for lr in X.LR_SWEEP]
    assert all(c.curve_points == 0 and c.max_steps == X.runs("dialogue-table", "cpu")["control"].max_steps // 4
               for k, c in dialogue.items() if k != "teacher")
    for key, ppl in (("teacher", 20.0), ("control-lr0.0001", 20.2)):
        write_json(X.result_path(dialogue[key]), {"config": asdict(dialogue[key]), "steps": 37, "curve": [
            {"step": 0, "valid_reply_ppl": 20.0}], "metrics": {"valid_reply_ppl": ppl, "valid_mc_acc": 50.0}})
    rows = report.lr_sweep_table("cpu", "dialogue-lr").set_index("learning rate")
    assert rows.loc["0.0001", "/ teacher"] == pytest.approx(1.01)


def test_the_sweep_rule_picks_the_largest_rate_within_two_percent(dirs):
    runs = X.runs("xsum-lr", "cpu")
    ends = {"teacher": 14.0, "control-lr3e-05": 14.1, "control-lr0.0001": 14.27, "control-lr0.0003": 14.5}
    for key, ppl in list(ends.items())[:-1]:
        write_json(X.result_path(runs[key]), {"config": asdict(runs[key]), "metrics": {"valid_ppl": ppl}})
    assert report.swept_rate("cpu", "xsum-lr") is None  # a swept control has not landed
    last = runs["control-lr0.0003"]
    write_json(X.result_path(last), {"config": asdict(last), "metrics": {"valid_ppl": ends["control-lr0.0003"]}})
    assert report.swept_rate("cpu", "xsum-lr") == 1e-4  # 14.27 / 14.0 = 1.019; 14.5 / 14.0 = 1.036
    assert report.swept_rate("paper", "xsum-lr") is None


def test_every_committed_sweep_chose_the_rate_its_table_uses():
    """The students' rates are written in the code; the committed sweeps must pick the same ones by the rule."""
    from qlib.experiments import task_base

    checked = 0
    for grid, table_rate in (("lm-lr", X.STUDENT_LR["cpu"]), ("xsum-lr", task_base("xsum-table", "cpu")["lr"]),
                             ("dialogue-lr", task_base("dialogue-table", "cpu")["lr"])):
        picked = report.swept_rate("cpu", grid)
        if picked is not None:
            checked += 1
            assert picked == table_rate, (grid, picked, table_rate)
    assert checked >= 2  # the lm-lr and xsum-lr sweeps are committed


def test_claims_take_their_verdicts_from_the_spreads_of_the_methods_they_compare(dirs):
    t, seeds = X.runs("lm-table", "cpu"), X.runs("lm-seeds", "cpu")
    claims = (lambda: report.claims("cpu").set_index("claim")["verdict"])
    bands = (lambda: report.claims("cpu").set_index("claim")["band"])
    assert set(claims()) == {"not run"}
    key = "At 2-2-8, QuantGPT reaches a lower PPL than LAQ."
    _fake_result(t["mds-228"], 100.0)
    _fake_result(t["laq-228"], 110.0)
    assert claims()[key].startswith("inside the noise (no spread measured")
    assert "not measured yet" in report.seed_band_note("cpu")
    for name, ppl in (("mds-228-seed1", 101.0), ("mds-228-seed2", 99.0), ("laq-228-seed1", 104.5),
                      ("laq-228-seed2", 110.0)):
        _fake_result(seeds[name], ppl)
    # QuantGPT's own spread is 2.0%, LAQ's 5.3%: the QuantGPT-LAQ comparison reads the larger
    assert "QuantGPT 2.02% over 3 seeds" in bands()[key] and "LAQ 5.26% over 3 seeds" in bands()[key]
    assert claims()[key].startswith("reproduced at ")  # 100 * 1.053 < 110
    _fake_result(t["laq-228"], 104.0)
    assert claims()[key] == "inside the noise"
    _fake_result(t["lsq-228"], 90.0)  # one seed: the largest measured spread, and the band says so
    lsq = "At 2-2-8, QuantGPT reaches a lower PPL than LSQ."
    assert "LSQ: 1 seed, the largest spread" in bands()[lsq] and claims()[lsq].startswith("contradicted")
    _fake_result(t["teacher"], 99.0)
    ratio = "At 2-2-8, QuantGPT stays within 10% of the full-precision teacher's PPL."
    assert claims()[ratio].startswith("reproduced at ")  # 100 / 99 = 1.010: below 1.10 by more than QuantGPT's 2.0%
    control = "The full-precision control stays within 2% of the teacher: the training loop itself costs little."
    _fake_result(t["control"], 99.5)  # 1.005x the teacher: below 1.02 by less than the largest spread (5.3%)
    assert claims()[control] == "inside the noise"
    _fake_result(t["control"], 93.0)  # 0.94x: below 1.02 by more than it
    assert claims()[control].startswith("reproduced at ")


def test_the_attribution_splits_the_2bit_gap_into_quantizer_and_loss(dirs):
    t, ab, seeds = X.runs("lm-table", "cpu"), X.runs("lm-ablations", "cpu"), X.runs("lm-seeds", "cpu")
    assert "needs" in report.attribution_text("cpu")
    for cfg, ppl in ((t["mds-228"], 113.0), (ab["mds-228-dist-only"], 114.0), (t["lsq-228"], 123.0),
                     (t["laq-228"], 130.0), (seeds["mds-228-seed1"], 114.0), (seeds["mds-228-seed2"], 112.0),
                     (seeds["laq-228-seed1"], 128.0), (seeds["laq-228-seed2"], 134.0)):
        _fake_result(cfg, ppl)
    table = report.attribution_table("cpu")
    assert [v.split(" at ")[0] for v in table["verdict"]] == ["reproduced", "reproduced", "not run", "inside the noise"]
    assert table["gap"].iloc[0] == "7.3% lower"
    text = report.attribution_text("cpu")
    assert text.startswith("At this budget QuantGPT's 2-bit win comes from its quantizer")
    assert "Eq. 7's gradient" not in text  # until "Ours with PACT" has run
    _fake_result(ab["mds_pact_grad-228-dist-only"], 115.0)  # 0.9% above, inside the largest spread (4.8%)
    assert ("QuantGPT with Eq. 7's gradient for gamma ends 0.9% lower than with PACT's rule for it (\"Ours with "
            "PACT\", both L_dist only; inside the noise).") in report.attribution_text("cpu")
    assert text.endswith("Whether that changes with five times the tokens is not run yet "
                         "(`python -m qlib grid lm-long --preset cpu`).")
    assert "Raising L_cont's weight lambda" not in text  # until lambda = 1 and 10 have both run
    lam = X.runs("lm-lambda", "cpu")
    _fake_result(lam["mds-228-lam1"], 114.13)
    _fake_result(lam["mds-228-lam10"], 130.0)
    assert ("Raising L_cont's weight lambda from 0.1: lambda = 1 +1.00%, no effect (inside the band); lambda = 10 +15.04%, higher "
            "PPL, beyond the band.") in report.attribution_text("cpu")
    long = X.runs("lm-long", "cpu")
    for key, end_ppl in (("mds-228-long", 100.0), ("mds-228-dist-only-long", 101.0)):
        cfg = long[key]
        write_json(X.result_path(cfg), {"config": asdict(cfg), "metrics": {"test_ppl": end_ppl}, "steps": 2000,
                                        "curve": [{"step": 400, "valid_ppl": 2 * end_ppl},
                                                  {"step": 2000, "valid_ppl": end_ppl}]})
    # 100 / 101: -0.99%, inside QuantGPT's seed band (114 / 112: 1.79%)
    assert report.attribution_text("cpu").endswith(
        "At five times the tokens (1,024,000), adding L_cont moves QuantGPT's validation PPL by -0.99% (101.00 "
        "without, 100.00 with; test PPL -0.99%, 101.00 and 100.00), inside QuantGPT's seed band (1.79%, the range of a test PPL over three seeds at the "
        "preset's budget; one seed per long run).")
    assert report.contrastive_verdict("cpu").endswith("one seed per long run): no effect at this budget.")
    # the TL;DR: the attribution in its "Why", what the weight and the long runs add in a bullet of their own
    _fake_result(t["teacher"], 25.0)
    bullets = {line.split(":**")[0]: line for line in report.tldr("cpu").splitlines() if line.startswith("- **")}
    assert "Raising" not in bullets["- **Why"] and "At five times" not in bullets["- **Why"]
    assert "At five times the tokens (1,024,000), adding L_cont" in bullets["- **More weight on L_cont, more tokens"]
    assert bullets["- **More weight on L_cont, more tokens"].startswith(
        "- **More weight on L_cont, more tokens:** Raising L_cont's weight lambda from 0.1: lambda = 1 +1.00%")
    _fake_result(ab["mds-228-dist-only"], 125.0)  # without L_cont QuantGPT would trail LSQ: the loss did it
    assert not report.attribution_text("cpu").startswith("At this budget QuantGPT's 2-bit win comes from its")


def test_step0_ppl_is_the_runs_own_first_point_where_the_run_exists(dirs):
    t = X.runs("lm-table", "cpu")
    write_json(X.result_path(t["lsq-888"]), {"config": asdict(t["lsq-888"]), "metrics": {"test_ppl": 30.0},
                                             "size_mb": 1.0, "curve": [{"step": 0, "tokens": 0, "valid_ppl": 36.4}]})
    assert report.step0_ppl("cpu", "lsq-888") == 36.4
    assert report.step0_ppl("cpu", "lsq-228") is None  # neither a run nor a step-0 evaluation


def test_show_escapes_tokens_and_formats_big_numbers():
    import pandas as pd

    html = report.show(pd.DataFrame({"text": ["the <unk> of"], "ppl": [372310331435996.62], "x": [1234.5]})).to_html()
    assert "&lt;unk&gt;" in html and "3.72e+14" in html and "1,234.50" in html and "372310331435996" not in html


def test_table_rows_say_where_gamma_started(dirs):
    rows = report.ablation_table("cpu", ("mds-448", "mds-448-gamma3.5", "lsq-448"))["variant"].tolist()
    assert rows == ["QuantGPT 4-4-8", "QuantGPT 4-4-8, gamma started at 3.5", "LSQ 4-4-8"]


def test_gap_text_says_how_far_and_whether_outside_the_band():
    assert report.gap_text(105.5, 100.0, "QuantGPT", 0.048) == "5.5% above QuantGPT (outside the seed band)"
    assert report.gap_text(98.4, 100.0, "it", 0.048) == "1.6% below it (inside the seed band)"
    assert report.gap_text(101.0, 100.0, "it", None) == "1.0% above it"


def test_the_generative_xtc_reading_is_computed_from_the_results(dirs):
    """Chapter 8's reading of Table 8.3 follows the result files: each run's PPL appears, a gap is called outside the
    band exactly when it is, and a run without a result is named instead of read."""
    assert report.lm_xtc_reading("cpu", title="Table 8.3").startswith("**Reading Table 8.3:** not run yet")
    t, x = X.runs("lm-table", "cpu"), X.runs("lm-xtc", "cpu")
    ppl = {"teacher": 24.0, "mds-228": 110.0, "twn-228-xtc": 112.0, "bwn-118-xtc": 140.0, "xtc-15L": 150.0,
           "twn-228-xtc-15L": 170.0}  # bwn-118-xtc-15L not run
    for key, value in ppl.items():
        cfg = {**t, **x}[key]
        result = {"config": asdict(cfg), "metrics": {"test_ppl": value},
                  "size_mb": 300.0 if cfg.method == "fp" else 30.0,
                  "steps": 400, "tokens_per_step": 512, "device": "cpu", "dtype": "fp32", "date": "2026-12-06",
                  "curve": [{"step": 0, "valid_ppl": 1e6}]}
        write_json(X.result_path(cfg), result)
    for band, inside in ((0.05, {"QuantGPT"}), (0.01, set())):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(report.verdicts, "seed_band", lambda preset, runs=None: band)
            text = report.lm_xtc_reading("cpu", band_source="chapter 7")
        for value in ppl.values():
            assert f"{value:.2f}" in text or value == 24.0
        assert ("1.8% above QuantGPT (inside the seed band)" in text) == ("QuantGPT" in inside)
        assert "13.3% above that student (outside the seed band)" in text
        assert "Binary weights on the reduced student" not in text and "Not run yet: `bwn-118-xtc-15L`" in text


def test_the_ablation_tables_are_computed_from_the_results(dirs):
    """Chapter 7's tables follow the result files: each variant's PPL, its change from QuantGPT and whether that lies
    beyond QuantGPT's seed band, the paper's change beside it, and a variant without a result shown as not run."""
    keys = ("mds-228", "mds-228-dist-only", "mds_pact_grad-228-dist-only")
    assert report.ablation_table("cpu", keys)["test PPL"].tolist() == ["not run"] * 3
    assert report.ablations_note("cpu", keys).startswith("Not run yet: `python -m qlib grid lm-ablations")
    configs = {**X.runs("lm-table", "cpu"), **X.runs("lm-ablations", "cpu"), **X.runs("lm-seeds", "cpu")}
    for key, ppl in (("mds-228", 100.0), ("mds-228-dist-only", 106.0), ("mds-228-seed1", 101.0),
                     ("mds-228-seed2", 99.0)):
        write_json(X.result_path(configs[key]), {"config": asdict(configs[key]), "metrics": {"test_ppl": ppl},
                                                   "steps": 400, "tokens_per_step": 512, "device": "cpu",
                                                   "dtype": "fp32", "date": "2026-12-06"})
    table = report.ablation_table("cpu", keys, report.PAPER_TABLE7_PTB).set_index("variant")
    row = table.loc["L_dist only"]
    assert (row["test PPL"], row["vs QuantGPT"], row["seed band"]) == ("106.00", "+6.00%", "beyond the band")
    assert (row["paper: PTB PPL"], row["paper: vs QuantGPT"]) == ("16.93", "+5.02%")
    assert table.loc["Ours with PACT", "test PPL"] == "not run"
    note = report.ablations_note("cpu", keys)
    assert "204,800 training tokens per run" in note and "QuantGPT's three seeds span 2.02%" in note
    assert "Not run yet: `mds_pact_grad-228-dist-only`" in note
    assert "**1 of 1 ablations**" not in report.ablations_tldr("cpu")  # the other variants are not run: not counted
    assert "**0 of 1 ablations**" in report.ablations_tldr("cpu")


def test_fig7_runs_are_looked_up_in_each_presets_grid():
    """The smoke preset's Fig. 7 uses other negative counts than the others: its reading must find them by name."""
    for preset in ("smoke", "cpu"):
        keys = report.negatives_keys(preset)
        assert set(keys) <= set(X.runs("lm-ablations", preset)) | {"mds-228"} and len(keys) == 4
    assert report.negatives_keys("smoke")[:2] == ("mds-228-neg2", "mds-228-neg4")



@pytest.fixture
def counted(monkeypatch):
    """Every grid build (``experiments.runs``) and result read (``experiments.load_result``) the report makes."""
    calls = {"runs": [], "load_result": []}
    runs, load = X.runs, X.load_result
    monkeypatch.setattr(X, "runs", lambda name, preset: calls["runs"].append(name) or runs(name, preset))
    monkeypatch.setattr(X, "load_result", lambda cfg: calls["load_result"].append(cfg.out_dir) or load(cfg))
    return calls


def test_a_reading_builds_each_grid_and_reads_each_result_once(dirs, counted):
    t, x = X.runs("lm-table", "cpu"), X.runs("lm-xtc", "cpu")
    for cfg, ppl in ((t["teacher"], 24.0), (t["mds-228"], 100.0), (x["twn-228-xtc"], 110.0)):
        write_json(X.result_path(cfg), {"config": asdict(cfg), "metrics": {"test_ppl": ppl}, "size_mb": 30.0,
                                        "steps": 4, "tokens_per_step": 512, "device": "cpu", "code_version": "abc1234",
                                        "curve": [{"step": 0, "valid_ppl": 1e6}, {"step": 4, "valid_ppl": ppl}]})
    calls = {"claims": lambda: report.claims("cpu"), "lm_xtc_reading": lambda: report.lm_xtc_reading("cpu"),
             "seed_band_note": lambda: report.seed_band_note("cpu"),
             "ablation_table": lambda: report.ablation_table("cpu", ("mds-228", "mds-228-neg8")),
             "not_run": lambda: report.not_run("cpu", "xsum-lr", "xsum-table")}  # the two share their teacher
    for name, call in calls.items():
        counted["runs"].clear()
        counted["load_result"].clear()
        call()
        assert len(counted["runs"]) == len(set(counted["runs"])), (name, counted["runs"])
        assert len(counted["load_result"]) == len(set(counted["load_result"])), (name, counted["load_result"])


def test_a_result_written_after_a_call_is_read_by_the_next(dirs):
    t = X.runs("lm-table", "cpu")
    assert report.teacher_test_ppl("cpu") is None and report.lm_table("cpu").set_index("run").loc[
        "teacher", "ours: test PPL"] == "not run"
    _fake_result(t["teacher"], 24.0)
    assert report.teacher_test_ppl("cpu") == 24.0


def test_the_paper_number_of_full_precision_is_the_teachers_not_the_controls(dirs):
    """The paper has no full-precision control: its full-precision PPL stands beside our teacher only."""
    table = report.lm_table("cpu").set_index("run")
    assert table.loc["teacher", "paper (GPT-2): test PPL"] == report.PAPER_PTB_TEACHER
    assert table.loc["full-precision control"].filter(like="paper").isna().all()


def test_grid_results_look_runs_up_by_name_across_grids(dirs, counted):
    runs = report.load_grids("cpu", "lm-table", "lm-ablations")
    assert counted["runs"] == ["lm-table", "lm-ablations"] and not counted["load_result"]  # results read on first use
    assert "mds-228-dist-only" in runs and "teacher" in runs and runs.metric("teacher") is None
    _fake_result(runs.configs["mds-228"], 101.0)
    cfg, res = runs["mds-228"]
    assert cfg == X.runs("lm-table", "cpu")["mds-228"] and res["metrics"]["test_ppl"] == 101.0
    assert list(runs.done()) == ["mds-228"] and runs.metric("mds-228") == 101.0
    assert counted["load_result"].count(cfg.out_dir) == 1


def test_the_library_leaves_titles_and_paper_numbers_to_the_notebooks_and_paper_py():
    """Book numbers (``Table 8.1``, ``chapter 7``) are arguments the notebooks pass; the paper's numbers come from
    ``qlib.paper`` only (the teacher PPLs are never written inline in the library or a notebook's code)."""
    library = {p: p.read_text() for p in (ROOT / "qlib" / "report").glob("*.py")}
    for path, text in library.items():
        assert not re.search(r"(Tables? \d+\.\d|[Cc]hapter \d)", text), path
        assert "16.12" not in text and "14.72" not in text, path
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        assert "16.12" not in code and "14.72" not in code, path
    assert report.paper_ratio() == report.PAPER_TABLE1[("mds", "2-2-8")][2] / report.PAPER_PTB_TEACHER


def test_the_readings_take_their_titles_and_references_as_arguments(dirs):
    assert report.lm_xtc_reading("cpu", title="Table X.3").startswith("**Reading Table X.3:** not run yet")
    t, a = X.runs("lm-table", "cpu"), X.runs("lm-ablations", "cpu")
    for cfg, ppl in ((t["mds-228"], 100.0), (a["mds-228-dist-only"], 103.0)):
        write_json(X.result_path(cfg), {"config": asdict(cfg), "metrics": {"test_ppl": ppl}, "steps": 4,
                                        "device": "cpu", "code_version": "abc1234"})
    seeds = X.runs("lm-seeds", "cpu")
    for key, ppl in (("mds-228-seed1", 98.0), ("mds-228-seed2", 102.0)):
        _fake_result(seeds[key], ppl)
    row = report.ablation_table("cpu", ("mds-228", "mds-228-dist-only")).iloc[1]
    assert (row["vs QuantGPT"], row["seed band"]) == ("+3.00%", "no effect")  # QuantGPT's seeds: 102 / 98 - 1


def test_the_chapter_answers_are_computed_from_the_runs(dirs):
    assert "no 2-bit student has run" in report.lm_tldr("cpu")
    t = X.runs("lm-table", "cpu")
    for key, ppl in (("teacher", 25.0), ("lsq-228", 120.0), ("laq-228", 130.0), ("control", 25.1)):
        _fake_result(t[key], ppl)
    cfg = t["mds-228"]
    write_json(X.result_path(cfg), {"config": asdict(cfg), "metrics": {"test_ppl": 100.0}, "size_mb": 1.0,
                                    "steps": 400, "tokens_per_step": 512})
    text = report.lm_tldr("cpu")
    assert text.startswith("**TL;DR.** After 204,800 training tokens per 2-bit student")
    assert "QuantGPT 4.00x, LSQ 4.80x, LAQ 5.20x" in text and "PACT collapses (not run)" in text
    # no seeds have run: no band, so neither ordering nor the control can be called
    assert "QuantGPT below LSQ and LAQ: inside the noise (no spread measured yet), both" in text
    assert text.endswith("The full-precision control within 2% of the teacher: inside the noise (no spread "
                         "measured yet).")
    results = report.results_tldr("cpu")
    assert results.startswith("**TL;DR.** Of the ") and results.endswith("None is reproduced yet.")
    # at 4-4-8: QuantGPT's, the best baseline's and the larger-gamma start's test PPL over the teacher's
    for key, ppl in (("mds-448", 150.0), ("lsq-448", 30.0), ("laq-448", 35.0)):
        _fake_result(t[key], ppl)
    _fake_result(X.runs("lm-gamma-init", "cpu")["mds-448-gamma3.5"], 32.5)
    assert ("test PPL over the teacher's at 4-4-8: QuantGPT 6.00x, LSQ 1.20x, QuantGPT started at gamma = 3.5: "
            "1.30x. The full-precision control") in report.lm_tldr("cpu")


def test_the_gamma_reading_gives_the_learned_range_from_the_result(dirs):
    """Under the gamma figure: not run until QuantGPT 2-2-8 has a result; then the range, median and largest move of
    the learned gammas, from the result file."""
    assert report.gamma_reading("cpu").startswith("**Reading the figure:** not run yet (`python -m qlib grid lm-table")
    cfg = X.runs("lm-table", "cpu")["mds-228"]
    write_json(X.result_path(cfg), {"config": asdict(cfg), "metrics": {"test_ppl": 100.0}, "steps": 400,
                                    "tokens_per_step": 512, "gamma": {"a": 0.8, "b": 1.05, "c": 1.1}})
    text = report.gamma_reading("cpu")
    assert "after 400 steps (204,800 tokens) from gamma = 1, the 3 modules' gamma lie between 0.80 and 1.10" in text
    # AdamW's reach over 400 steps at 1e-3 decaying to 0: about 0.2; the furthest moved 0.2
    assert "(median 1.05). The furthest moved by 0.20, against about 0.20 that AdamW allows" in text
    assert "That is 100% of the most AdamW allows, so at this budget the number of steps" in text
    assert "within 20% of its start" in text
    write_json(X.result_path(cfg), {"config": asdict(cfg), "metrics": {"test_ppl": 100.0}, "steps": 400,
                                    "tokens_per_step": 512, "gamma": {"a": 0.99, "b": 1.02}})
    assert "That is 10% of the most AdamW allows: Eq. 7's gradient holds gamma" in report.gamma_reading("cpu")


def test_the_xtc_answer_states_the_budget_and_reads_the_direction(dirs):
    """Chapter 8's TL;DR: the SST-2 gaps with the students' training examples (one seed each), and the ternary LM
    student's change of test PPL against QuantGPT's; the table's metric column is named for readers."""
    assert report.xtc_tldr("cpu").startswith("- Not run yet: `python -m qlib grid xtc-sst2")
    runs = X.runs("xtc-sst2", "cpu")
    for key, acc, size in (("teacher", 86.0, 80.0), ("twn-6L", 83.0, 6.0), ("bwn-6L", 78.0, 4.0),
                           ("bwn-3L", 77.5, 3.0), ("fp-3L", 82.0, 60.0), ("twn-3L", 80.0, 5.0)):
        write_json(X.result_path(runs[key]), {"config": asdict(runs[key]), "metrics": {"valid_accuracy": acc},
                                              "size_mb": size, "steps": 300})
    assert "dev accuracy (%)" in report.xtc_table("cpu").columns
    lm = X.runs("lm-xtc", "cpu")
    _fake_result(X.runs("lm-table", "cpu")["mds-228"], 100.0)
    _fake_result(lm["twn-228-xtc"], 105.0)
    text = report.xtc_tldr("cpu")
    assert text.startswith("- On SST-2 (MiniLM teacher; 9,600 training examples per student, one seed each, so no "
                           "run-to-run band), binary weights at full depth lose 8.0 points, ternary weights lose 3.0 points; "
                           "halving a binary student's depth changes it by -0.5 points.")
    assert "XTC's ternary student's test PPL is 5.0% higher than QuantGPT's (no seed band measured yet)." in text
