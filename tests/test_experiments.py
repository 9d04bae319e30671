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


def test_a_copy_without_git_names_its_commit(monkeypatch):
    from qlib import runtime
    monkeypatch.setenv("QLIB_CODE_VERSION", "abc1234")
    assert runtime._git_version() == "abc1234"
    monkeypatch.delenv("QLIB_CODE_VERSION")
    assert runtime._git_version() != "abc1234"


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert list(table["test PPL"]) == [report.ppl_text(res["metrics"]["test_ppl"]), "not run"]
    # the note under the table says how long and where its runs trained, and names what is missing
    note = report.ablations_note("smoke", ("mds-228", "mds-228-dist-only"))
    assert f"{res['steps'] * res['tokens_per_step']:,} training tokens" in note and "mds-228-dist-only" in note
    assert table["variant"][1] == report.VARIANT_NAMES["mds-228-dist-only"]
    lm = report.lm_table("smoke").set_index("run")
    assert lm.loc["QuantGPT 2-2-8", "ours: test PPL"] == round(res["metrics"]["test_ppl"], 2)
    assert lm.loc["QuantGPT 2-2-8", "ours: valid PPL at step 0"] == report.ppl_text(res["curve"][0]["valid_ppl"])
    assert lm.loc["teacher", "paper: / teacher"] == 1.0 and lm.loc["LAQ 2-2-8", "ours: test PPL"] == "not run"


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_the_cpu_preset_is_pinned_to_fp32_and_its_earlier_auto_results_still_match():
    """A table stays one dtype on any machine: the cpu preset asks for fp32, and a result stored with dtype "auto"
    counts as the dtype it resolved to (recorded beside the config), so an AMX machine (auto -> bf16) cannot mix its
    runs into the fp32 table, and the fp32 results made as "auto" on a CPU without AMX still load."""
    from qlib.experiments import task_student

    cfgs = X.grid("lm-table", "cpu") + X.grid("lm-ablations", "cpu") + [task_student("dialogue-table", "cpu", "mds"),
                                                                         X.xtc_teacher("cpu")]
    assert {c.dtype for c in cfgs} == {"fp32"}
    assert X.lm_base("gpu").get("dtype", "auto") == "auto"  # CUDA keeps bf16 autocast
    cfg = asdict(X.grid("lm-table", "cpu")[0])
    stored = {"config": {**cfg, "dtype": "auto"}}
    assert X.same_config(X.recorded_config({**stored, "dtype": "fp32"}), cfg)
    assert not X.same_config(X.recorded_config({**stored, "dtype": "bf16"}), cfg)
    assert X.same_config(X.recorded_config({**stored, "dtype": "bf16"}), {**cfg, "dtype": "auto"})
    assert not X.same_config(X.recorded_config({"config": {**cfg, "dtype": "bf16"}}), cfg)
    older = {k: v for k, v in cfg.items() if k != "dtype"}  # a CPU result from before the dtype field: fp32
    assert X.same_config(X.recorded_config({"config": older, "device": "cpu"}), cfg)


def test_a_result_made_in_another_checkout_still_matches_its_config():
    """A layer-reduced student records the absolute folder it started from; the same run made in another checkout
    (another absolute path) is still the committed result of this config, and a different starting run is not."""
    reduced_students = [c for c in X.grid("lm-xtc", "cpu") if c.init_from]
    assert reduced_students
    cfg = asdict(reduced_students[0])
    moved = {**cfg, "init_from": str(Path("/elsewhere/checkout/runs") / Path(cfg["init_from"]).name)}
    assert X.same_config(moved, cfg)
    assert not X.same_config({**cfg, "init_from": str(Path(cfg["init_from"]).parent / "another-run")}, cfg)
    assert not X.same_config({**cfg, "init_from": None}, cfg)


def test_a_student_distilled_from_another_teacher_is_another_run():
    """A student's result says which teacher it was distilled from: the same config with another teacher run (say
    another preset's, or one fine-tuned for longer) is not this config's result; the same teacher in another
    checkout is."""
    cfg = asdict(X.runs("lm-table", "cpu")["mds-228"])
    assert cfg["teacher"]
    assert X.same_config({**cfg, "teacher": str(Path("/elsewhere/checkout/runs") / Path(cfg["teacher"]).name)}, cfg)
    assert not X.same_config({**cfg, "teacher": str(Path(cfg["teacher"]).parent / "another-teacher")}, cfg)
    assert not X.same_config({**cfg, "teacher": asdict(X.runs("lm-table", "gpu")["mds-228"])["teacher"]}, cfg)


def test_a_grid_command_selects_exactly_the_run_it_names():
    """The commands the book prints for a missing run (``X.grid_command``) parse back and select that run alone."""
    from qlib.__main__ import _selects

    for name in ("lm-table", "lm-seeds", "lm-lambda", "lm-long", "xtc-sst2", "xsum-table"):
        configs = X.grid(name, "cpu")
        for key, cfg in X.runs(name, "cpu").items():
            args = vars(_parser().parse_args(shlex.split(X.grid_command(name, "cpu", key))[3:]))
            assert (args["command"], args["name"], args["preset"]) == ("grid", name, "cpu")
            chosen = [c for c in configs if any(_selects(o, c, configs) for o in args["only"])]
            assert chosen == [cfg], (name, key)
    # the after-run flags the not-run list adds parse back too
    args = vars(_parser().parse_args(shlex.split(X.grid_command("lm-table", "cpu", "mds-228", "--step0",
                                                                "--transfer wikitext2"))[3:]))
    assert args["only"] == ["mds-228"] and args["step0"] and args["transfer"] == "wikitext2"
