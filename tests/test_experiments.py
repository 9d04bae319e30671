"""Named grids and result files: a run is made once, found again only for exactly its config, re-made from the
command the book prints, and evaluated zero-shot on another corpus."""
import json
import shlex
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from qlib import analysis, plots
from qlib import evaluate as E
from qlib import experiments as X
from qlib import report
from qlib.__main__ import _parser
from qlib.train import TrainConfig

from .conftest import offline_data


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(X, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(X, "RUNS", tmp_path / "runs")
    return tmp_path


def test_printed_command_parses_back_to_the_same_config(dirs):
    grids = ("lm-table", "lm-lr", "lm-ablations", "lm-xtc", "lm-gamma-init", "lm-seeds", "xtc", "xsum-table",
             "xsum-lr", "xsum-teacher-budget", "xsum-distill-all", "dialogue-table")
    for cfg in [c for name in grids for c in X.grid(name, "cpu")]:
        argv = shlex.split(X.command(cfg))[3:]  # drop "python -m qlib"
        args = vars(_parser().parse_args(argv))
        args.pop("command")
        back = TrainConfig.from_dict(args)
        assert asdict(back) == asdict(replace(cfg, progress=True, resume=back.resume)), X.command(cfg)


def test_gpu_preset_uses_the_papers_sequence_and_batch_for_every_lm_run(dirs):
    configs = X.grid("lm-table", "gpu") + X.grid("lm-ablations", "gpu") + X.grid("lm-xtc", "gpu")
    students = [c for c in configs if c.out_dir != X.lm_teacher("gpu").out_dir]  # the teacher: TEACHER_EPOCHS
    assert {(c.seq_len, c.batch_size, c.grad_accum, c.epochs, c.max_steps) for c in students} == {(512, 32, 1, 10, None)}
    assert X.lm_teacher("gpu").epochs == 3 and X.lm_teacher("gpu").seq_len == 512
    assert all(Path(c.out_dir).name.endswith("-gpu") for c in configs)
    for name in ("lm-table", "lm-ablations", "lm-xtc", "lm-seeds", "lm-step0", "lm-lr"):
        assert len(X.runs(name, "gpu")) == len(X.grid(name, "gpu"))  # names are unique inside a grid
    with pytest.raises(ValueError, match="unknown preset"):
        X.lm_base("tpu")


def test_every_lm_preset_evaluates_at_the_papers_context_and_has_a_control(dirs):
    for preset in ("cpu", "gpu", "paper"):
        configs = X.grid("lm-table", preset)
        assert {c.eval_context for c in configs} == {512}, preset
        control = [c for c in configs if c.method == "fp" and c.resolved_loss == "dist"]
        assert len(control) == 1 and control[0].quant_config is not None
        budget = (lambda c: (c.lr, c.max_steps, c.epochs, c.batch_size))
        # the control trains with the 2-2-8 students' loop and budget; every method of a row has the same budget
        rows = {}
        for c in configs:
            if c.method != "fp":
                rows.setdefault(c.label, set()).add(budget(c))
        assert all(len(b) == 1 for b in rows.values()) and rows["2-2-8"] == {budget(control[0])}, rows
        if preset == "cpu":  # the 8-8-8 and 4-4-8 rows train for half the 2-2-8 budget (X.ROW_STEPS)
            assert {b for label in ("8-8-8", "4-4-8") for (_, b, _, _) in rows[label]} == {200}


def test_device_label_names_the_gpu_or_cpu():
    assert report.device_label({"device": "cpu", "device_name": "x86_64"}) == "CPU"
    assert report.device_label({"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3"}) == "H100"


def test_a_copy_without_git_names_its_commit(monkeypatch):
    from qlib import runtime
    monkeypatch.setenv("QLIB_CODE_VERSION", "abc1234")
    assert runtime._git_version() == "abc1234"
    monkeypatch.delenv("QLIB_CODE_VERSION")
    assert runtime._git_version() != "abc1234"


def test_step0_evaluation_is_the_first_point_of_the_learning_curve(dirs):
    offline_data()
    cfg = X.lm_student("smoke", "laq")
    before = X.step0_eval(cfg, progress=False)
    assert X.step0_path(cfg).is_file() and X.step0_eval(cfg, run_missing=False)["valid_ppl"] == before["valid_ppl"]
    res = X.run(cfg, progress=False)
    assert res["curve"][0]["step"] == 0
    assert res["curve"][0]["valid_ppl"] == pytest.approx(before["valid_ppl"], rel=1e-6)
    # an evaluation asked for with another batch is another file
    assert X.step0_eval(replace(cfg, eval_batch_size=1), run_missing=False) is None


def test_a_result_is_found_only_for_its_own_config(dirs):
    offline_data()
    teacher, student = X.lm_teacher("smoke"), X.lm_student("smoke", "mds")
    assert X.load_result(student) is None
    res = X.run_grid([student], progress=False)[0]  # builds the missing teacher first
    assert X.load_result(teacher) is not None and (Path(teacher.out_dir) / "model.safetensors").is_file()
    again = X.load_result(student)
    assert again["metrics"] == json.loads(json.dumps(res["metrics"]))
    # fields that do not change the computation do not matter; any other field does
    assert X.load_result(replace(student, progress=False, eval_batch_size=3)) is not None
    assert X.load_result(replace(student, lam=0.2)) is None
    assert X.run_grid([replace(student, lam=0.2)], run_missing=False) == [None]
    assert X.trained_model(student) is not None
    assert X.trained_model(replace(student, out_dir=str(dirs / "runs" / "gone")), run_missing=False) is None
    table = report.ablation_table("smoke", ("mds-228", "mds-228-dist-only"))  # looked up by name
    assert list(table["ours: test PPL"]) == [round(res["metrics"]["test_ppl"], 2), "not run"]
    assert list(table["ours: on"]) == ["CPU", ""]  # where each result was made (CI has no GPU)
    assert table["variant"][1] == report.VARIANT_NAMES["mds-228-dist-only"]
    lm = report.lm_table("smoke").set_index("run")
    assert lm.loc["QuantGPT 2-2-8", "ours: test PPL"] == round(res["metrics"]["test_ppl"], 2)
    assert lm.loc["QuantGPT 2-2-8", "ours: valid PPL at step 0"] == report.ppl_text(res["curve"][0]["valid_ppl"])
    assert lm.loc["teacher", "paper: / teacher"] == 1.0 and lm.loc["LAQ 2-2-8", "ours: test PPL"] == "not run"


def test_transfer_eval_is_saved_and_loaded_not_recomputed(dirs, monkeypatch, capsys):
    offline_data()
    teacher = X.lm_teacher("smoke")
    assert X.transfer_eval(teacher, "wikitext2", run_missing=False) is None
    report.not_run("smoke", "lm-table", after="transfer")
    assert "--only teacher --transfer wikitext2" in capsys.readouterr().out
    res = X.transfer_eval(teacher, "wikitext2", progress=False)
    assert res["tokens_read"] == X.TRANSFER_TOKENS["smoke"] and res["test_ppl"] > 1
    assert X.transfer_path(teacher, "wikitext2").is_file()

    def fail(*a, **k):
        raise AssertionError("recomputed a saved evaluation")

    monkeypatch.setattr(E, "perplexity", fail)
    assert X.transfer_eval(teacher, "wikitext2")["test_ppl"] == res["test_ppl"]
    table = report.transfer_table("smoke").set_index("run")
    assert table.loc["teacher", "ours: wikitext2 test PPL, zero-shot from PTB"] == round(res["test_ppl"], 2)
    # the paper's WikiText-2 column sits beside ours, labelled as trained on WikiText-2
    assert table.loc["teacher", "paper (GPT-2 trained on wikitext2)"] == report.PAPER_TABLE1[("fp", "fp32")][1]
    assert table.loc["QuantGPT 2-2-8", "ours: wikitext2 test PPL, zero-shot from PTB"] == "not run"


def _fake_result(cfg, ppl):
    # a hand-written result file, only to exercise the verdict logic (never under results/)
    X.write_json(X.result_path(cfg), {"config": asdict(cfg), "metrics": {"test_ppl": ppl}, "size_mb": 1.0})


def test_verdict_reads_a_gap_against_the_seed_band():
    assert report.verdict(10.0, 12.0, 0.05) == "reproduced"
    assert report.verdict(12.0, 10.0, 0.05) == "contradicted"
    assert report.verdict(10.0, 10.4, 0.05).startswith("inconclusive")
    assert report.verdict(10.0, 12.0, None).startswith("inconclusive")  # no band measured: no verdict either way
    assert report.verdict(None, 12.0, 0.05) == "not run"


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
    X.write_json(X.result_path(cfg), {"config": asdict(cfg), "metrics": {"test_ppl": 21.0}, "curve": curve,
                                      "device": "cuda", "device_name": "NVIDIA H200"})
    text = report.teacher_budget_reading("gpu")
    assert "lowest, 20.0, after 3.0 epochs and ended at 24.0" in text and "H200" in text, text


def test_the_summarization_teacher_budget_is_read_in_epochs_of_the_training_articles(dirs):
    from qlib.task_grids import teacher_epochs

    (cfg,) = X.runs("xsum-teacher-budget", "cpu").values()
    teacher = X.runs("xsum-table", "cpu")["teacher"]
    assert cfg.max_steps == 3 * teacher.max_steps and cfg.out_dir != teacher.out_dir
    assert teacher_epochs(teacher) == pytest.approx(1.0, abs=0.01) and teacher_epochs(cfg) == pytest.approx(3.0, 0.01)
    with pytest.raises(ValueError, match="xsum-sample"):
        teacher_epochs(X.lm_teacher("cpu"))
    assert "not run" in report.teacher_budget_reading("cpu", "xsum-teacher-budget")
    # the history counts examples outside LM: 660 examples are the three epochs
    curve = [{"step": s, "tokens": t, "valid_ppl": v} for s, t, v in ((0, 0, 22.0), (77, 154, 15.0), (330, 660, 24.0))]
    X.write_json(X.result_path(cfg), {"config": asdict(cfg), "metrics": {"test_rougeL": 20.8}, "curve": curve,
                                      "device": "cpu"})
    text = report.teacher_budget_reading("cpu", "xsum-teacher-budget")
    assert "lowest, 15.0, after 0.7 epochs and ended at 24.0 (test ROUGE-L 20.8)" in text, text
    assert text.endswith("trains 1 epoch."), text
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
        X.write_json(X.result_path(runs[key]), {"config": asdict(runs[key]), "metrics": {"valid_ppl": ppl},
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
        X.write_json(X.result_path(dialogue[key]), {"config": asdict(dialogue[key]), "steps": 37, "curve": [
            {"step": 0, "valid_reply_ppl": 20.0}], "metrics": {"valid_reply_ppl": ppl, "valid_mc_acc": 50.0}})
    rows = report.lr_sweep_table("cpu", "dialogue-lr").set_index("learning rate")
    assert rows.loc["0.0001", "/ teacher"] == pytest.approx(1.01)


def test_the_sweep_rule_picks_the_largest_rate_within_two_percent(dirs):
    runs = X.runs("xsum-lr", "cpu")
    ends = {"teacher": 14.0, "control-lr3e-05": 14.1, "control-lr0.0001": 14.27, "control-lr0.0003": 14.5}
    for key, ppl in list(ends.items())[:-1]:
        X.write_json(X.result_path(runs[key]), {"config": asdict(runs[key]), "metrics": {"valid_ppl": ppl}})
    assert report.swept_rate("cpu", "xsum-lr") is None  # a swept control has not landed
    last = runs["control-lr0.0003"]
    X.write_json(X.result_path(last), {"config": asdict(last), "metrics": {"valid_ppl": ends["control-lr0.0003"]}})
    assert report.swept_rate("cpu", "xsum-lr") == 1e-4  # 14.27 / 14.0 = 1.019; 14.5 / 14.0 = 1.036
    assert report.swept_rate("paper", "xsum-lr") is None


def test_every_committed_sweep_chose_the_rate_its_table_uses():
    """The students' rates are written in the code; the committed sweeps must pick the same ones by the rule."""
    from qlib.task_grids import task_base

    checked = 0
    for grid, table_rate in (("lm-lr", X.STUDENT_LR["cpu"]), ("xsum-lr", task_base("xsum-table", "cpu")["lr"]),
                             ("dialogue-lr", task_base("dialogue-table", "cpu")["lr"])):
        picked = report.swept_rate("cpu", grid)
        if picked is not None:
            checked += 1
            assert picked == table_rate, (grid, picked, table_rate)
    assert checked >= 2  # the lm-lr and xsum-lr sweeps are committed


def test_claims_take_their_verdicts_from_the_seed_band(dirs):
    t, seeds = X.runs("lm-table", "cpu"), X.runs("lm-seeds", "cpu")
    claims = (lambda: report.claims("cpu").set_index("claim (paper: GPT-2 small on PTB)")["verdict"])
    assert set(claims()) == {"not run"}
    key = "At 2-2-8, QuantGPT reaches a lower PPL than LAQ."
    _fake_result(t["mds-228"], 100.0)
    _fake_result(t["laq-228"], 110.0)
    assert claims()[key].startswith("inconclusive (seed band not measured")
    assert "not measured yet" in report.seed_band_note("cpu")
    _fake_result(seeds["mds-228-seed1"], 97.0)
    _fake_result(seeds["mds-228-seed2"], 99.0)
    # one method's three seeds give a band, labelled as partial
    assert report.seed_band("cpu") == pytest.approx(100.0 / 97.0 - 1)
    assert "LAQ (1 of 3) have run yet" in report.seed_band_note("cpu") and "QuantGPT 3.1%" in report.seed_band_note("cpu")
    for name, ppl in (("mds-228-seed1", 102.0), ("mds-228-seed2", 98.0), ("laq-228-seed1", 111.0),
                      ("laq-228-seed2", 109.0)):
        _fake_result(seeds[name], ppl)
    assert report.seed_band("cpu") == pytest.approx(102.0 / 98.0 - 1)
    assert "have run yet" not in report.seed_band_note("cpu")
    assert claims()[key] == "reproduced"  # 100 * (1 + 4.1%) < 110
    _fake_result(t["laq-228"], 103.0)
    assert claims()[key].startswith("inconclusive (inside")
    _fake_result(t["lsq-228"], 90.0)  # not a seed run: the band stays
    assert claims()["At 2-2-8, QuantGPT reaches a lower PPL than LSQ."] == "contradicted"
    _fake_result(t["teacher"], 99.0)
    ratio = "At 2-2-8, QuantGPT stays within 10% of the full-precision teacher's PPL (ratio below 1.10)."
    assert claims()[ratio] == "reproduced"  # 100 / 99 = 1.010: below 1.10 by more than the band (7.8%)


def test_key_results_read_the_committed_ratios(dirs):
    t = X.runs("lm-table", "cpu")
    assert "have not landed" in report.key_results("cpu")
    _fake_result(t["teacher"], 25.0)
    _fake_result(t["pact-228"], 90000.0)
    _fake_result(t["lsq-228"], 125.0)
    text = report.key_results("cpu")
    assert "PACT 3,600x, LSQ 5.00x" in text and "not run yet: LAQ" in text and "QuantGPT 2-2-8 has not" in text
    assert "4-4-8" not in text
    _fake_result(t["mds-448"], 150.0)
    _fake_result(t["lsq-448"], 30.0)
    assert "gamma = 1 ends at 6.00x the teacher's PPL, LSQ at 1.20x (paper: QuantGPT 1.02x, LSQ 5.42x)." \
        in report.key_results("cpu")
    _fake_result(X.runs("lm-gamma-init", "cpu")["mds-448-gamma3.5"], 32.5)
    assert "started at gamma = 3.5, where a SmolLM2 matrix's 4-bit error is least (chapter 7), QuantGPT ends at " \
           "1.30x (paper:" in report.key_results("cpu")


def test_text_samples_are_saved_shown_and_not_regenerated(dirs, monkeypatch, capsys):
    offline_data()
    teacher = X.lm_teacher("smoke")
    assert X.text_samples(teacher, run_missing=False) is None
    assert list(report.samples_table("smoke")["teacher"]) == ["not run"] * len(X.SAMPLE_PROMPTS)
    report.not_run("smoke", "lm-table", after="samples")
    assert "--only teacher --samples" in capsys.readouterr().out
    res = X.text_samples(teacher, prompts=("the company", "stock prices"), max_new_tokens=3, progress=False)
    assert len(res["continuations"]) == 2 and all(isinstance(c, str) for c in res["continuations"])
    assert X.samples_path(teacher).is_file()

    def fail(*a, **k):
        raise AssertionError("regenerated saved samples")

    generate = E.generate_text
    monkeypatch.setattr(E, "generate_text", fail)
    again = X.text_samples(teacher, prompts=("the company", "stock prices"), max_new_tokens=3, run_missing=False)
    assert again["continuations"] == res["continuations"]
    # other prompts are another evaluation: not found, and not silently replaced by the saved one
    assert X.text_samples(teacher, prompts=("other",), max_new_tokens=3, run_missing=False) is None
    monkeypatch.setattr(E, "generate_text", generate)
    full = X.text_samples(teacher, progress=False)  # the book's prompts
    table = report.samples_table("smoke")
    assert list(table["prompt"]) == list(X.SAMPLE_PROMPTS)
    assert list(table["teacher"]) == [c.strip().replace("\n", " ") for c in full["continuations"]]
    assert list(table["PACT 2-2-8"]) == ["not run"] * len(X.SAMPLE_PROMPTS)


def test_figure_data_is_saved_and_draws_the_why_hard_figures(dirs, capsys):
    offline_data()
    teacher, student = X.lm_teacher("smoke"), X.lm_student("smoke", "mds")
    report.not_run("smoke", "lm-table", after="figures")
    assert "--only mds-228 --figures" in capsys.readouterr().out
    t, s = X.figure_data(teacher, top_tokens=40, progress=False), X.figure_data(student, top_tokens=40, progress=False)
    assert X.figure_data(student, top_tokens=40, run_missing=False)["tsne"] == s["tsne"]
    assert X.figure_data(student, top_tokens=41, run_missing=False) is None
    assert len(s["tsne"]) == 40 and len(s["tokens"]) == 40
    n = X.FIGURE_SENTENCE[0]
    sim = torch.tensor(s["token_similarity"])
    assert sim.shape == (n, n) and torch.allclose(sim.diagonal(), torch.ones(n), atol=1e-4)
    assert list(s["modules"]) == list(X.figure_modules("tiny-llama"))  # the paper's two modules
    for module in X.figure_modules("tiny-llama"):
        clip = s["modules"][module]["clip"]
        assert t["modules"][module]["clip"] is None and clip["pos"] > 0 and clip["neg"] == -clip["pos"]
    first = X.figure_module("tiny-llama")
    s_clip = s["modules"][first]["clip"]
    h = t["modules"][first]["weight_hist"]
    widths = np.diff(h["edges"])
    assert abs(float((np.asarray(h["density"]) * widths).sum()) + h["outside"] - 1) < 1e-6
    data = report.why_hard_data("smoke", top_tokens=40)
    assert set(data) == {"teacher", "QuantGPT 2-2-8"}
    assert plots.embedding_maps(data) is not None and plots.similarity_maps(data) is not None
    assert plots.weight_distribution(data) is not None and plots.weight_distribution({}) is None
    table = report.homogeneity_table(data).set_index("model")
    assert table.loc["teacher", "embeddings: mean cos"] == t["embedding_mean_cos"]
    off = sim[~torch.eye(n, dtype=torch.bool)]
    assert table.loc["QuantGPT 2-2-8", "hidden: mean cos"] == pytest.approx(off.mean().item())
    column = f"grid of {first.rsplit('.', 1)[-1]}"
    assert table.loc["teacher", column] == "-"
    assert table.loc["QuantGPT 2-2-8", column] == report.grid_text(s_clip)
    assert report.grid_text({"neg": -0.5, "pos": 0.5}) == "±0.500" and report.grid_text(None) == "-"
    assert report.grid_text({"neg": -0.2, "pos": 0.3}) == "-0.200 .. 0.300"


def test_weight_histogram_reports_outliers():
    w = torch.cat([torch.randn(9990) * 0.02, torch.full((10,), 1.5)])
    h = analysis.weight_histogram(w, bins=50, coverage=0.99)
    assert h["max_abs"] == 1.5 and abs(h["outside"] - 0.01) < 1e-3  # 1% beyond the range, outliers included
    assert max(abs(e) for e in h["edges"]) < 0.1  # the range follows the bulk, not the outliers


def test_after_run_evaluations_of_a_layer_reduced_run_load_its_weights(dirs):
    """The student builder is shared by training and the after-run evaluations: a run with layer reduction (XTC's
    recipe on the generative model) is rebuilt with its kept layers and evaluated."""
    offline_data()
    runs = X.runs("lm-xtc", "smoke")
    reduced, binary = runs["xtc-1L"], runs["bwn-118-xtc-1L"]
    res = X.transfer_eval(binary, "wikitext2", progress=False)  # trains the teacher, the reduced run, then this
    assert res["test_ppl"] > 1 and X.load_result(reduced) is not None
    model = X.trained_model(binary)
    assert model.config.num_hidden_layers == len(binary.keep_layers) == 1
    assert X.text_samples(binary, max_new_tokens=2, progress=False)["continuations"]


def test_only_selects_short_names_exactly_and_folder_names_by_part(dirs):
    from qlib.__main__ import _selects

    seeds = X.grid("lm-seeds", "cpu")
    picked = [X.run_key(c) for c in seeds if _selects("mds-228", c, seeds)]
    assert picked == ["mds-228"]  # not its seeds 1 and 2
    table = X.grid("lm-table", "cpu")
    assert [X.run_key(c) for c in table if _selects("228", c, table)] == ["pact-228", "lsq-228", "laq-228", "mds-228"]
    assert [X.run_key(c) for c in table if _selects("teacher", c, table)] == ["teacher"]


def test_log_axes_are_labelled_in_plain_numbers():
    fig = plots.learning_curves({"teacher": [(0, 22.0), (10, 16.0), (100, 14.3)]}, ylabel="PPL", logy=True)
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels(minor=True) + ax.get_yticklabels() if t.get_text()]
    assert labels and all("times" not in s and "^" not in s for s in labels), labels
    assert {"15", "20"} <= set(labels), labels
    fmt = ax.yaxis.get_major_formatter()
    assert fmt._num_to_string(1000.0, 1, 1e4) == "1,000" and fmt._num_to_string(0.5, 0.1, 1) == "0.5"
    assert fmt._num_to_string(1e19, 1, 1e20) == "$10^{19}$"  # a collapsed student's PPL stays short


def test_table_rows_say_where_gamma_started(dirs):
    rows = report.ablation_table("cpu", ("mds-448", "mds-448-gamma3.5", "lsq-448"))["variant"].tolist()
    assert rows == ["QuantGPT 4-4-8", "QuantGPT 4-4-8, gamma started at 3.5", "LSQ 4-4-8"]


def test_the_cpu_preset_is_pinned_to_fp32_and_its_earlier_auto_results_still_match():
    """A table stays one dtype on any machine: the cpu preset asks for fp32, and a result stored with dtype "auto"
    counts as the dtype it resolved to (recorded beside the config), so an AMX machine (auto -> bf16) cannot mix its
    runs into the fp32 table, and the fp32 results made as "auto" on a CPU without AMX still load."""
    from qlib.task_grids import task_student

    cfgs = X.grid("lm-table", "cpu") + X.grid("lm-ablations", "cpu") + [task_student("dialogue-table", "cpu", "mds"),
                                                                         X.xtc_teacher("cpu")]
    assert {c.dtype for c in cfgs} == {"fp32"}
    assert X.lm_base("gpu").get("dtype", "auto") == "auto"  # CUDA keeps bf16 autocast
    cfg = asdict(X.grid("lm-table", "cpu")[0])
    stored = {"config": {**cfg, "dtype": "auto"}}
    assert X._same(X.recorded_config({**stored, "dtype": "fp32"}), cfg)
    assert not X._same(X.recorded_config({**stored, "dtype": "bf16"}), cfg)
    assert X._same(X.recorded_config({**stored, "dtype": "bf16"}), {**cfg, "dtype": "auto"})
    assert not X._same(X.recorded_config({"config": {**cfg, "dtype": "bf16"}}), cfg)
    older = {k: v for k, v in cfg.items() if k != "dtype"}  # a CPU result from before the dtype field: fp32
    assert X._same(X.recorded_config({"config": older, "device": "cpu"}), cfg)


def test_a_result_made_in_another_checkout_still_matches_its_config():
    """A layer-reduced student records the absolute folder it started from; the same run made in another checkout
    (another absolute path) is still the committed result of this config, and a different starting run is not."""
    reduced_students = [c for c in X.grid("lm-xtc", "cpu") if c.init_from]
    assert reduced_students
    cfg = asdict(reduced_students[0])
    moved = {**cfg, "init_from": str(Path("/elsewhere/checkout/runs") / Path(cfg["init_from"]).name)}
    assert X._same(moved, cfg)
    assert not X._same({**cfg, "init_from": str(Path(cfg["init_from"]).parent / "another-run")}, cfg)
    assert not X._same({**cfg, "init_from": None}, cfg)


def test_a_student_distilled_from_another_teacher_is_another_run():
    """A student's result says which teacher it was distilled from: the same config with another teacher run (say
    another preset's, or one fine-tuned for longer) is not this config's result; the same teacher in another
    checkout is."""
    cfg = asdict(X.runs("lm-table", "cpu")["mds-228"])
    assert cfg["teacher"]
    assert X._same({**cfg, "teacher": str(Path("/elsewhere/checkout/runs") / Path(cfg["teacher"]).name)}, cfg)
    assert not X._same({**cfg, "teacher": str(Path(cfg["teacher"]).parent / "another-teacher")}, cfg)
    assert not X._same({**cfg, "teacher": asdict(X.runs("lm-table", "gpu")["mds-228"])["teacher"]}, cfg)


def test_gap_text_says_how_far_and_whether_outside_the_band():
    assert report.gap_text(105.5, 100.0, "QuantGPT", 0.048) == "5.5% above QuantGPT (outside the seed band)"
    assert report.gap_text(98.4, 100.0, "it", 0.048) == "1.6% below it (inside the seed band)"
    assert report.gap_text(101.0, 100.0, "it", None) == "1.0% above it"


def test_the_generative_xtc_reading_is_computed_from_the_results(dirs):
    """Chapter 8's reading of Table 8.3 follows the result files: each run's PPL appears, a gap is called outside the
    band exactly when it is, and a run without a result is named instead of read."""
    assert report.lm_xtc_reading("cpu").startswith("**Reading Table 8.3:** not run yet")
    t, x = X.runs("lm-table", "cpu"), X.runs("lm-xtc", "cpu")
    ppl = {"teacher": 24.0, "mds-228": 110.0, "twn-228-xtc": 112.0, "bwn-118-xtc": 140.0, "xtc-15L": 150.0,
           "twn-228-xtc-15L": 170.0}  # bwn-118-xtc-15L not run
    for key, value in ppl.items():
        cfg = {**t, **x}[key]
        result = {"config": asdict(cfg), "metrics": {"test_ppl": value},
                  "size_mb": 300.0 if cfg.method == "fp" else 30.0,
                  "steps": 400, "tokens_per_step": 512, "device": "cpu", "dtype": "fp32", "date": "2026-12-06",
                  "curve": [{"step": 0, "valid_ppl": 1e6}]}
        X.write_json(X.result_path(cfg), result)
    for band, inside in ((0.05, {"QuantGPT"}), (0.01, set())):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(report, "seed_band", lambda preset: band)
            text = report.lm_xtc_reading("cpu")
        for value in ppl.values():
            assert f"{value:.2f}" in text or value == 24.0
        assert ("1.8% above QuantGPT (inside the seed band)" in text) == ("QuantGPT" in inside)
        assert "13.3% above that student (outside the seed band)" in text
        assert "Binary weights on the reduced student" not in text and "Not run yet: `bwn-118-xtc-15L`" in text


def test_the_sst2_xtc_reading_is_computed_from_the_results(dirs):
    """Chapter 8's reading of Table 8.1 follows the result files: each gap in points, the compression beside it,
    the paper's 1-bit gap beside ours, and a run without a result named instead of read."""
    assert report.xtc_reading("cpu").startswith("**Reading Table 8.1:** not run yet")
    runs = X.runs("xtc-sst2", "cpu")
    acc = {("fp", False): 90.0, ("fp", True): 88.0, ("twn", False): 86.5, ("bwn", False): 80.0, ("bwn", True): 81.5}
    for key, cfg in runs.items():
        value = acc.get((cfg.method, bool(cfg.keep_layers)))
        if value is None:
            continue  # the reduced ternary student: not run
        result = {"config": asdict(cfg), "metrics": {"valid_accuracy": value}, "steps": cfg.max_steps or 500,
                  "size_mb": 80.0 / (1 + 10 * (cfg.method != "fp")) / (2 if cfg.keep_layers else 1),
                  "device": "cpu", "code_version": "abc1234"}
        X.write_json(X.result_path(cfg), result)
    text = report.xtc_reading("cpu")
    assert "The teacher reaches 90.0 dev accuracy" in text and "code abc1234" in text
    assert "ternary weights lose 3.5 points and binary weights 10.0 (11.0x and 11.0x smaller" in text
    assert "Halving the depth in full precision costs 2.0 points (2.0x smaller)" in text
    assert "Halving a binary student's depth moves it from 80.0 to 81.5 (+1.5 points) for 11.0x to 22.0x" in text
    assert "0.8 points below its teacher on MNLI-m (84.1 against 84.9)" in text
    assert "10.0 points below ours on SST-2" in text
    reduced_twn = next(k for k, c in runs.items() if c.method == "twn" and c.keep_layers)
    assert f"Not run yet: `{reduced_twn}`" in text and "Halving a ternary" not in text


def test_the_benchmark_reading_is_computed_from_the_file(dirs):
    """Chapter 7's reading of Tables 7.5 and 7.6 follows the benchmark file: its provenance, its command, each
    phase's figures and every target's verdict; a missing file says how to make it."""
    from qlib import bench

    assert report.bench_reading("nothing").startswith("**Reading Tables 7.5 and 7.6:** not run yet")

    def phase(secs, dtype, mem=1000.0):
        return {"sec_per_iter": sorted(secs)[1], "tokens_per_s": 512 / sorted(secs)[1], "peak_mem_mib": mem,
                "dtype": dtype, "repeat_sec_per_iter": secs, "spread": max(secs) / min(secs) - 1, "steal_frac": 0.001,
                "mfu": 0.1}
    b = {"model": "smollm2-135m", "w_bits": 2, "batch_size": 4, "seq_len": 128, "steps": 15, "warmup": 3,
         "repeats": 3, "device": "cpu", "code_version": "abc1234", "cores": 2, "date": "2026-12-06", "load_avg": 0.1,
         "busy": False, "others_busy_cores": {"x": 0.02}, "cpu_bf16_matrix_units": True,
         "peak_flops": {"fp32": 1e11, "bf16": 5e11}, "phases": {}}
    for dtype, scale in (("fp32", 2.0), ("bf16", 1.0)):
        b["phases"].update({f"c_qat_dist_cont/{dtype}": phase([2.0 * scale, 2.2 * scale, 2.1 * scale], dtype, 1010.0),
                            f"c_qat_dist_cont/{dtype}+compile": phase([1.5 * scale, 1.6 * scale, 1.4 * scale], dtype),
                            f"a_fp_finetune/{dtype}": phase([1.0 * scale] * 3, dtype),
                            f"b_qat_dist/{dtype}": phase([2.0 * scale] * 3, dtype),
                            f"a_fp_finetune/{dtype}+compile": phase([0.9 * scale] * 3, dtype)})
    X.write_json(X.RESULTS / "bench" / "some-bench.json", b)
    text = report.bench_reading("some-bench")
    assert "measured on 2026-12-06 with code abc1234 on 2 CPU cores with AMX" in text
    assert ("`python -m qlib.bench --model smollm2-135m --w-bits 2 --batch-size 4 --seq-len 128 --steps 15 --repeats 3"
            " --phases a_fp_finetune b_qat_dist c_qat_dist_cont --dtypes fp32 bf16 --compile`") in text
    assert "other work at most 0.02 cores" in text and "BUSY" not in text
    # tokens/s of the median repeat, fp32 / bf16: 512 / 4.2 and 512 / 2.1
    assert "$\\mathcal{L}_{dist} + \\lambda\\mathcal{L}_{cont}$ 122 / 244 eager and 171 / 341 compiled" in text
    for r in bench.target_checks(b):
        assert f"{r['dtype']}, {r['check']}: {r['median']:.3g}" in text and f"**{r['verdict']}**" in text
    assert "time / compiled fp fine-tuning step" in text  # like with like where the file has both compiled
    assert "1.00x, 1.10x, 1.05x the $\\mathcal{L}_{dist}$ step's time" in text and "1.010x its peak memory" in text
    assert "(the paper: 1.10x and 1.009x)" in text and "A ratio below 1" not in text
    faster = {**b, "phases": {**b["phases"], "c_qat_dist_cont/fp32": phase([3.0, 4.4, 4.2], "fp32", 1010.0)}}
    X.write_json(X.RESULTS / "bench" / "some-bench.json", faster)  # one round where L_cont looks free: said so
    assert "A ratio below 1 is not the contrastive loss's cost" in report.bench_reading("some-bench")
    assert "in alternation in one process" not in text
    X.write_json(X.RESULTS / "bench" / "some-bench-interleaved.json", {
        "kind": "interleaved", **{k: b[k] for k in ("model", "w_bits", "batch_size", "seq_len", "device", "date",
                                                    "code_version", "load_avg", "busy")}, "steps": 16,
        "dtypes": {"bf16": {"median_ratio": 1.031, "quartiles": [1.012, 1.06]}}})
    text = report.bench_reading("some-bench")
    assert ("Timed in alternation in one process (16 pairs of steps per dtype, 2026-12-06, code abc1234, eager, load "
            "average 0.1; `python -m qlib.bench --interleave`), the contrastive loss takes bf16 1.031x (quartiles "
            "1.012-1.060; **met, but not its upper quartile**)") in text
    assert len(report.bench_table()) == len(b["phases"]) + 1  # the interleaved file has no phases to show
    X.write_json(X.RESULTS / "bench" / "some-bench.json", {**b, "busy": True})
    assert "**BUSY: these are not the machine's figures**" in report.bench_reading("some-bench")


def test_the_ablation_readings_are_computed_from_the_results(dirs):
    """Chapter 7's readings of Tables 7.1, 7.2 and Fig. 7 follow the result files: each variant's gap to QuantGPT
    and whether it lies outside the seed band, the paper's gap beside it, a compared pair, the curves' range at a
    few common steps, and a variant without a result named instead of read."""
    keys = ("mds-228", "mds-228-dist-only", "mds_pact_grad-228-dist-only")
    assert report.ablation_reading("cpu", keys, "Table 7.1").startswith("**Reading Table 7.1:** not run yet")
    configs = {**X.runs("lm-table", "cpu"), **X.runs("lm-ablations", "cpu")}
    for key, ppl, curve in (("mds-228", 100.0, (400.0, 200.0, 120.0)), ("mds-228-dist-only", 106.0, (440.0, 210.0,
                                                                                                      126.0))):
        points = [{"step": s, "valid_ppl": v} for s, v in zip((0, 36, 121, 400), (1e6, *curve))]
        X.write_json(X.result_path(configs[key]), {"config": asdict(configs[key]), "metrics": {"test_ppl": ppl},
                                                   "steps": 400, "device": "cpu", "code_version": "abc1234",
                                                   "curve": points})
    pairs = (("mds_pact_grad-228-dist-only", "mds-228-dist-only"),)
    for band, outside in ((0.05, True), (0.08, False)):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(report, "seed_band", lambda preset: band)
            text = report.ablation_reading("cpu", keys, "Table 7.1", report.PAPER_TABLE7_PTB, pairs=pairs)
        where = "outside" if outside else "inside"
        assert f"L_dist only: 106.00, 6.0% above QuantGPT ({where} the seed band)" in text
        assert f"the seed band is {100 * band:.1f}%" in text and "ends at 100.00 test PPL" in text
    assert "paper: 16.93 against 16.12, 5.0% above QuantGPT." in text
    assert "400.0-440.0 at step 36, 200.0-210.0 at step 121, 120.0-126.0 at step 400 (at step 400 within 5.0%" in text
    assert "Not run yet: `mds_pact_grad-228-dist-only`" in text and "against L_dist only" not in text


def test_fig7_runs_are_looked_up_in_each_presets_grid():
    """The smoke preset's Fig. 7 uses other negative counts than the others: its reading must find them by name."""
    for preset in ("smoke", "cpu"):
        keys = report.negatives_keys(preset)
        assert set(keys) <= set(X.runs("lm-ablations", preset)) | {"mds-228"} and len(keys) == 4
    assert report.negatives_keys("smoke")[:2] == ("mds-228-neg2", "mds-228-neg4")
