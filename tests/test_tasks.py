"""The other two tasks with their offline stand-ins: the Chit-Chat next-utterance builder, the XSum-sample parts,
the double head on a decoder-only LM, decoder-only summarization, and one tiny end-to-end grid per task."""
import shlex
from pathlib import Path
from dataclasses import asdict, replace

import pytest
import torch
import transformers as tf

from qlib import data as D
from qlib import evaluate as E
from qlib import experiments as X
from qlib import models as M
from qlib.__main__ import _parser
from qlib.modules import QuantConfig, QuantLinear, quantize_model
from qlib.train import TrainConfig

from .conftest import offline_data


def _chitchat():
    try:
        return D.chitchat_conversations()
    except FileNotFoundError as e:
        pytest.skip(f"chitchat-dataset is not installed ({e}); `make setup` installs it")


@pytest.mark.slow
def test_chitchat_turns_alternate_and_splits_are_disjoint_by_conversation():
    convs = _chitchat()
    assert len(convs) == 3242 and all(len(c["turns"]) >= 4 for c in convs)  # conversations with >= 4 turns
    ids = {s: {d["conversation"] for d in D.chitchat_dialogs(s, limit=400)} for s in ("train", "valid", "test")}
    assert not (ids["train"] & ids["valid"]) and not (ids["train"] & ids["test"]) and not (ids["valid"] & ids["test"])
    assert D.chitchat_dialogs("valid", limit=50) == D.chitchat_dialogs("valid", limit=50)  # deterministic


def test_chitchat_examples_have_the_gold_reply_last_and_distractors_from_other_conversations():
    convs = {c["id"]: c for c in _chitchat()}
    examples = D.chitchat_dialogs("test")
    assert 11_000 < len(examples) < 14_000  # about a tenth of the 127k examples
    split_convs = {d["conversation"] for d in examples}
    where = {}  # reply text -> the conversations of this split where it is a reply
    for cid in split_convs:
        for t in convs[cid]["turns"][1:]:
            where.setdefault(t, set()).add(cid)
    for d in examples[:300]:
        turns = convs[d["conversation"]]["turns"]
        k = len(d["history"])
        assert len(d["candidates"]) == 20 and 2 <= k <= 8
        t = next(i for i in range(2, len(turns)) if list(turns[max(0, i - 8):i]) == d["history"]
                 and turns[i] == d["candidates"][-1])
        assert turns[t] == d["candidates"][-1]
        assert all(where[c] - {d["conversation"]} for c in d["candidates"][:-1])  # each from another conversation
        assert d["candidates"][-1] not in d["candidates"][:-1]  # never a copy of the gold text
        assert d["personality"] == ([f"Topic: {convs[d['conversation']]['prompt']}"]
                                    if convs[d["conversation"]]["prompt"] else [])


def test_missing_dialogue_package_is_a_clear_error(monkeypatch):
    import importlib.util
    D.chitchat_conversations.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps chitchat-dataset==0.9.0"):
        D.chitchat_conversations()
    monkeypatch.undo()
    D.chitchat_conversations.cache_clear()
    with pytest.raises(ValueError, match="unknown dialogue dataset"):
        D.dialog_examples("reddit", "train")


def test_xsum_sample_parts_are_fixed_and_disjoint():
    offline_data()
    parts = {s: D.summarization_examples("xsum-sample", s) for s in ("train", "valid", "test")}
    assert {s: len(v) for s, v in parts.items()} == D.XSUM_SAMPLE_PARTS
    ids = [e["id"] for v in parts.values() for e in v]
    assert len(set(ids)) == len(ids) == 321
    assert D.summarization_examples("xsum-sample", "test", limit=5) == parts["test"][:5]
    with pytest.raises(ValueError, match="unknown summarization dataset"):
        D.summarization_examples("cnn", "train")


def test_decoder_only_summary_batch_labels_the_summary_only():
    offline_data()
    tok = M.load_tokenizer("tiny-llama")
    ex = [{"document": "one two three four five six seven", "summary": "a short one"},
          {"document": "x " * 50, "summary": "the second summary is longer"}]
    b = D.summarization_lm_batch(ex, tok, source_len=5, target_len=16)
    prompt = D.summarization_prompts(ex, tok, source_len=5)
    for i, p in enumerate(prompt):
        assert b["input_ids"][i, :len(p)].tolist() == p and len(p) <= 5 + len(tok(D.SUMMARY_PROMPT)["input_ids"])
        labelled = (b["labels"][i] != -100).nonzero().flatten()
        assert labelled[0] == len(p)  # the summary starts right after the prompt
        summary = tok.decode(b["input_ids"][i, labelled], skip_special_tokens=True).strip()
        assert summary == ex[i]["summary"]
        # distillation reads the positions that predict the summary: one earlier than the labels
        assert b["summary_mask"][i].nonzero().flatten().tolist() == (labelled - 1).tolist()


def test_distill_span_all_distils_the_articles_positions_too():
    from qlib.tasks import SummarizationLMTask

    offline_data()
    tok = M.load_tokenizer("tiny-llama")
    ex = [{"document": "one two three four five six seven", "summary": "a short one"}]
    batch = D.summarization_lm_batch(ex, tok, source_len=5, target_len=16)
    model = tf.LlamaForCausalLM(M.tiny_config("tiny-llama", len(tok))).eval()
    masks = {span: SummarizationLMTask.forward(TrainConfig(task="summarization-lm", model="tiny-llama",
                                                           dataset="xsum-sample", distill_span=span),
                                               model, batch, False).mask for span in ("target", "all")}
    assert torch.equal(masks["target"], batch["summary_mask"]) and torch.equal(masks["all"], batch["attention_mask"])
    assert masks["all"].sum() > 2 * masks["target"].sum()  # the article's positions add most of the signal
    with pytest.raises(ValueError, match="distill_span='all' is for task='summarization-lm'"):
        TrainConfig(task="lm", distill_span="all")
    with pytest.raises(ValueError, match="distill_span must be"):
        TrainConfig(task="summarization-lm", dataset="xsum-sample", model="tiny-llama", distill_span="article")


def _double_head(vocab=97):
    torch.manual_seed(0)
    return M.CausalLMDoubleHeads.from_config(M.tiny_config("tiny-llama", vocab)).eval()


def test_double_head_on_a_decoder_only_lm():
    model = _double_head()
    ids = torch.randint(3, 97, (2, 3, 9))
    mc = torch.tensor([[4, 8, 6], [8, 2, 5]])
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), mc_token_ids=mc, output_hidden_states=True)
    assert out.logits.shape == (2, 3, 9, 97) and out.mc_logits.shape == (2, 3) and out.hidden_states[-1].shape[:3] == ids.shape
    # the MC score reads the candidate's last token: tokens after it change nothing (causal)
    ids2 = ids.clone()
    ids2[0, 0, 5:] = 3
    out2 = model(input_ids=ids2, attention_mask=torch.ones_like(ids), mc_token_ids=mc)
    assert torch.allclose(out.mc_logits[0, 0], out2.mc_logits[0, 0], atol=1e-6)
    ids3 = ids.clone()
    ids3[0, 0, 0] = 3 if ids[0, 0, 0] != 3 else 4  # a token before it does
    out3 = model(input_ids=ids3, attention_mask=torch.ones_like(ids), mc_token_ids=mc)
    assert not torch.allclose(out.mc_logits[0, 0], out3.mc_logits[0, 0], atol=1e-6)
    # the LM head is the wrapped model's own
    alone = model.lm(input_ids=ids[1, 2:3]).logits
    assert torch.allclose(out.logits[1, 2:3], alone, atol=1e-5)
    with pytest.raises(ValueError, match=r"input_ids \[B, C, L\]"):
        model(input_ids=ids[0], mc_token_ids=mc)


def test_hits_at_1_skips_the_lm_head_and_scores_the_same():
    # quantized, as the students are evaluated: the multiple-choice scores do not read the vocabulary logits
    model = quantize_model(_double_head(), QuantConfig("mds", 2, 2, 8, extra_modules=("multiple_choice_head.summary",)))
    model.eval()
    ids = torch.randint(3, 97, (2, 3, 9))
    mask = torch.ones_like(ids)
    mask[1, :, :2] = 0  # left padding in one example
    mc = torch.tensor([[4, 8, 6], [8, 2, 5]])
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, mc_token_ids=mc)
        lean = model(input_ids=ids, attention_mask=mask, mc_token_ids=mc, lm_logits=False)
    assert lean.logits is None and torch.equal(full.mc_logits, lean.mc_logits)
    batch = {"input_ids": ids, "attention_mask": mask, "mc_token_ids": mc, "mc_labels": full.mc_logits.argmax(-1)}
    assert E.mc_hits(model, [batch], progress=False) == [1, 1]
    batch["mc_labels"] = (full.mc_logits.argmax(-1) + 1) % 3
    assert E.mc_hits(model, [batch], progress=False) == [0, 0]


def test_reply_perplexity_reads_the_gold_candidate_through_the_lm_head():
    model = _double_head()
    ids = torch.randint(3, 97, (2, 3, 9))
    mask = torch.ones_like(ids)
    labels = torch.full_like(ids, -100)
    labels[:, -1, 5:] = ids[:, -1, 5:]  # the gold reply: the last candidate's last four tokens
    batch = {"input_ids": ids, "attention_mask": mask, "mc_token_ids": torch.full((2, 3), 8), "lm_labels": labels}
    gold = E.gold_reply_batch(batch)
    assert gold["input_ids"].shape == (2, 1, 9) and torch.equal(gold["labels"][:, 0], labels[:, -1])
    reply = E.label_perplexity(model, [gold], progress=False, dtype="fp32")  # fp32: compared to 1e-5 below
    # the same as the wrapped LM alone on the gold sequences, counted over the reply's tokens only
    logits = model.lm(input_ids=ids[:, -1]).logits[:, :-1]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, 97), labels[:, -1, 1:].reshape(-1), ignore_index=-100)
    assert reply == pytest.approx(torch.exp(nll).item(), rel=1e-5)
    distractor = dict(gold, labels=torch.where(labels[:, :1] == -100, -100, ids[:, :1]))  # scoring another reply
    distractor["input_ids"] = ids[:, :1]
    assert E.label_perplexity(model, [distractor], progress=False) != pytest.approx(reply, rel=1e-3)


def test_quantized_double_head_quantizes_the_mc_head_too():
    model = quantize_model(_double_head(), QuantConfig("mds", 2, 2, 8, extra_modules=("multiple_choice_head.summary",)))
    assert isinstance(model.multiple_choice_head.summary, QuantLinear)
    assert sum(isinstance(m, QuantLinear) for m in model.modules()) == 2 * 7 + 1  # 7 matrices a layer + MC head
    cfg = TrainConfig(task="mc", model="tiny-llama", dataset="chitchat", method="mds")
    assert cfg.quant_config().extra_modules == ("multiple_choice_head.summary",)


def test_decoder_only_beam_search_is_the_same_alone_and_left_padded_in_a_batch():
    offline_data()
    tok = M.load_tokenizer("tiny-llama")
    torch.manual_seed(0)
    model = quantize_model(tf.LlamaForCausalLM(M.tiny_config("tiny-llama", len(tok))), QuantConfig("mds", 4, 4, 8))
    prompts = [tok("the cat sat on the mat and")["input_ids"], tok("a")["input_ids"]]
    both = E.summarize_lm(model, tok, prompts, max_new_tokens=6, num_beams=3, batch_size=2, progress=False)
    alone = [E.summarize_lm(model, tok, [p], max_new_tokens=6, num_beams=3, progress=False)[0] for p in prompts]
    assert both == alone and all(isinstance(s, str) and s for s in both)


def test_task_grid_commands_parse_back_and_name_their_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("QLIB_RUNS_DIR", str(tmp_path / "runs"))
    for name in ("dialogue-table", "xsum-table"):
        for preset in ("cpu", "gpu", "paper"):
            runs = X.runs(name, preset)
            assert list(runs) == ["teacher", "control", "pact-228", "lsq-228", "laq-228", "mds-228"]
            teacher = runs["teacher"]
            assert all(c.teacher == teacher.out_dir for k, c in runs.items() if k != "teacher")
            for cfg in runs.values():
                args = vars(_parser().parse_args(shlex.split(X.command(cfg))[3:]))
                args.pop("command")
                assert asdict(TrainConfig.from_dict(args)) == asdict(replace(cfg, progress=True))
        cpu = X.runs(name, "cpu")
        assert {(c.lr, c.max_steps, c.batch_size) for k, c in cpu.items() if k != "teacher"} == \
            {(cpu["control"].lr, cpu["control"].max_steps, cpu["control"].batch_size)}
    with pytest.raises(ValueError, match="train_candidates"):
        TrainConfig(task="mc", train_candidates=21)


@pytest.mark.slow
@pytest.mark.parametrize("grid,metric", [("dialogue-table", "valid_mc_acc"), ("xsum-table", "valid_ppl")])
def test_tiny_end_to_end_task_grid(grid, metric, tmp_path, monkeypatch):
    offline_data()
    if grid == "dialogue-table":
        _chitchat()
    monkeypatch.setenv("QLIB_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("QLIB_RUNS_DIR", str(tmp_path / "runs"))
    runs = X.runs(grid, "smoke")
    # a student alone rebuilds its missing teacher, as the printed commands promise
    res = X.run_grid([replace(runs["mds-228"], progress=False)], progress=False)[0]
    assert (tmp_path / "runs" / runs["teacher"].out_dir.split("/")[-1] / "model.safetensors").is_file()
    assert [p["step"] for p in res["curve"]] == [0, 1, 2] and all(metric in p for p in res["curve"])
    final = res["metrics"]
    if grid == "dialogue-table":
        assert 0 <= final["test_mc_acc"] <= 100 and final["valid_mc_acc"] == res["curve"][-1]["valid_mc_acc"]
        picks, hits = final["test_mc_picks"], final["test_mc_hits"]  # chapter 5's samples read the picks
        assert len(picks) == len(hits) and hits == [int(p == runs["teacher"].num_candidates - 1) for p in picks]
        assert all(1.0 < p["valid_reply_ppl"] < float("inf") for p in res["curve"])  # what dialogue-lr reads
    else:
        assert {"test_rouge1", "test_rouge2", "test_rougeL"} <= set(final) and len(final["examples"]) == 3
        assert all(isinstance(e["generated"], str) for e in final["examples"])
    assert X.load_result(runs["mds-228"]) is not None  # committed-result lookup by config


def test_task_claims_read_the_bootstrap_spread_of_each_comparison(monkeypatch):
    from qlib import report

    hits = {"teacher": [1] * 80 + [0] * 20, "control": [1] * 80 + [0] * 20, "mds-228": [1] * 78 + [0] * 22,
            "laq-228": [1] * 75 + [0] * 25, "lsq-228": [1] * 5 + [0] * 95, "pact-228": None}
    names = {Path(c.out_dir).name: k for k, c in X.runs("dialogue-table", "cpu").items()}

    def fake(cfg):
        h = hits[names[Path(cfg.out_dir).name]]
        return None if h is None else {"metrics": {"test_mc_hits": h}}
    monkeypatch.setattr(X, "load_result", fake)
    rows = {r["claim"]: r["verdict"] for r in report.task_claims("dialogue-table", "cpu").to_dict("records")}
    # 78 vs 5: far outside the spread
    assert rows["At 2-2-8, QuantGPT scores higher than LSQ."].startswith("reproduced at ")
    assert rows["At 2-2-8, QuantGPT scores higher than LAQ."] == "inside the noise"  # 78 vs 75 of 100
    assert rows["At 2-2-8, QuantGPT scores higher than PACT."] == "not run"
    assert report.verdict(5.0, 1.0, 2.0, absolute=True).startswith("contradicted")
    assert report.verdict(1.0, 5.0, 2.0, absolute=True) == "reproduced at this budget"


def test_a_task_chapter_answers_first_with_its_scores_and_verdicts(monkeypatch):
    from qlib import report

    assert report.task_tldr("dialogue-table", "smoke").startswith("**TL;DR:** not run yet")
    hits = {"teacher": 80, "control": 79, "mds-228": 30, "laq-228": 6, "lsq-228": 5, "pact-228": None}
    names = {Path(c.out_dir).name: k for k, c in X.runs("dialogue-table", "cpu").items()}

    def fake(cfg):
        h = hits[names[Path(cfg.out_dir).name]]
        return None if h is None else {"metrics": {"test_mc_hits": [1] * h + [0] * (100 - h), "test_mc_acc": h}}
    monkeypatch.setattr(X, "load_result", fake)
    text = report.task_tldr("dialogue-table", "cpu")
    # chance is 5%: a quarter of the teacher's 75 points above it is 18.75, so LSQ and LAQ collapsed, QuantGPT did not
    assert text.startswith("**TL;DR.** The teacher's test hits@1 is 80, the full-precision control's 79; 2 of 3 ")
    assert "above chance (LSQ 2-2-8 5, LAQ 2-2-8 6, QuantGPT 2-2-8 30)." in text
    assert "The paper's claims on this task: " in text


def test_chosen_replies_show_the_reply_each_run_picked(monkeypatch):
    from qlib import report

    # picks as MCTask.evaluate stores them: indexes into the example's 20 candidates, the gold one last
    picks = {"teacher": [19, 3], "mds-228": [2, 19]}
    names = {Path(c.out_dir).name: k for k, c in X.runs("dialogue-table", "cpu").items()}

    def fake(cfg):
        p = picks.get(names[Path(cfg.out_dir).name])
        return None if p is None else {"metrics": {"test_mc_picks": p}}
    monkeypatch.setattr(X, "load_result", fake)
    table = report.chosen_replies("cpu", examples=2)
    d = D.chitchat_dialogs("test", limit=2)
    rows = {(r["example"], r["who"]): r["reply"] for r in table.to_dict("records")}
    assert rows[(1, "gold reply")] == d[0]["candidates"][-1] == rows[(1, "teacher (right)")]
    assert rows[(1, "QuantGPT 2-2-8 (wrong)")] == d[0]["candidates"][2]
    assert rows[(2, "teacher (wrong)")] == d[1]["candidates"][3]
    assert rows[(2, "last turn of the history")] == d[1]["history"][-1]
    monkeypatch.setattr(X, "load_result", lambda cfg: None)
    assert "no dialogue run" in report.chosen_replies("cpu").iloc[0]["who"]


def test_task_reading_says_where_each_run_ended_and_where_it_is_heading(monkeypatch):
    from qlib import report

    names = {Path(c.out_dir).name: k for k, c in X.runs("xsum-table", "cpu").items()}
    curve = {"teacher": [20.0, 14.0], "control": [14.0, 14.5, 15.0], "mds-228": [1e6, 2000.0, 1000.0],
             "lsq-228": [1e7, 1990.0, 1960.0]}

    def fake(cfg):
        c = curve.get(names[Path(cfg.out_dir).name])
        if c is None:
            return None
        points = [{"step": s, "valid_ppl": v} for s, v in zip((0, 50, 200), c)]
        return {"curve": points, "steps": 200, "effective_batch": 2,
                "metrics": {"valid_ppl": c[-1], "test_rougeL": 21.0 if len(c) < 3 or c[-1] < 100 else 4.0}}
    monkeypatch.setattr(X, "load_result", fake)
    text = report.task_reading("xsum-table", "cpu")
    assert "The teacher's validation summary PPL is 14.00" in text
    assert "The full-precision control ends at 1.07x" in text and "(still falling" not in text.split("QuantGPT")[0]
    assert "QuantGPT 2-2-8 ends at 71.43x" in text and "1,000,000 at step 0, 2,000 at step 50, 1,000 at step 200" in text
    assert "still falling: 2.00x lower over 4.0x the examples" in text and "(0.025% of it)" in text
    assert "LSQ 2-2-8 ends at 140x" in text and "(flat: within 2% over the last 4.0x the examples)" in text
    assert text.endswith("Not run yet: PACT 2-2-8, LAQ 2-2-8.")
    monkeypatch.setattr(X, "load_result", lambda cfg: None)
    assert "the teacher has not run yet" in report.task_reading("dialogue-table", "cpu")


def test_task_curves_draw_the_validation_ppl_of_each_run_that_exists(monkeypatch):
    from qlib import report

    runs = X.runs("dialogue-table", "cpu")
    by_name = {Path(c.out_dir).name: k for k, c in runs.items()}
    curve = [{"step": 0, "valid_reply_ppl": 7e5, "valid_mc_acc": 5.0},
             {"step": 150, "valid_reply_ppl": 1e3, "valid_mc_acc": 5.0}]
    monkeypatch.setattr(X, "load_result", lambda cfg: {"curve": curve, "effective_batch": 2}
                        if by_name[Path(cfg.out_dir).name] == "mds-228" else None)
    assert report.task_curves("dialogue-table", "cpu") == {"QuantGPT 2-2-8": [(0, 7e5), (300, 1e3)]}
    ax = report.task_curve_plot("dialogue-table", "cpu").axes[0]
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "validation gold-reply PPL"


def test_number_text_keeps_a_collapsed_runs_ppl_readable():
    from qlib.labels import number_text, ratio_text

    assert [number_text(v) for v in (14.256, 113.21, 1090.4, 1_822_916.0, 5_269_219_545.0, 7.4997e19)] == [
        "14.26", "113.2", "1,090", "1,822,916", "5.3e9", "7.5e19"]
    assert [ratio_text(v) for v in (1.064, 76.42, 124.3, 1090.0, 3.695e8)] == [
        "1.06x", "76.42x", "124x", "1,090x", "3.7e8x"]


def test_distill_span_table_pairs_each_variant_with_the_grids_run(monkeypatch):
    from qlib import report

    ppl = {"xsum-sample-smollm2-135m-fp-cpu": 14.0, "xsum-sample-smollm2-135m-mds-228-cpu": 1400.0,
           "xsum-sample-smollm2-135m-mds-228-distill-all-cpu": 140.0}
    monkeypatch.setattr(X, "load_result", lambda cfg: {"metrics": {"valid_ppl": ppl[Path(cfg.out_dir).name],
                                                                    "test_rougeL": 5.0}}
                        if Path(cfg.out_dir).name in ppl else None)
    rows = report.distill_span_table("cpu").to_dict("records")
    assert [(r["run"], r["/ teacher"]) for r in rows] == [("QuantGPT 2-2-8", 100.0), ("QuantGPT 2-2-8", 10.0),
                                                          ("LSQ 2-2-8", "-"), ("LSQ 2-2-8", "-")]
    assert rows[1]["distilled on"].startswith("every position") and rows[3]["valid summary PPL"] == "not run"
    assert X.grid("xsum-distill-all", "paper") == [] and "no such runs" in report.distill_span_table("paper").iloc[0, 0]


def test_a_claim_between_two_collapsed_runs_is_untestable(monkeypatch):
    from qlib import report
    from qlib.report import collapsed

    # per-article ROUGE-L: the teacher ~21, two students that both failed (the higher one far outside the spread)
    rl = {"teacher": [21.0, 22.0] * 25, "mds-228": [4.6, 4.7] * 25, "laq-228": [3.3, 3.4] * 25,
          "lsq-228": [20.0, 21.0] * 25}
    names = {Path(c.out_dir).name: k for k, c in X.runs("xsum-table", "cpu").items()}
    monkeypatch.setattr(X, "load_result", lambda cfg: {"metrics": {"test_rougeL_per_article": rl[
        names[Path(cfg.out_dir).name]]}} if names[Path(cfg.out_dir).name] in rl else None)
    rows = {r["claim"]: r["verdict"] for r in report.task_claims("xsum-table", "cpu").to_dict("records")}
    assert rows["At 2-2-8, QuantBART scores higher than LAQ."].startswith("untestable: both collapsed")
    assert rows["At 2-2-8, QuantBART scores higher than LSQ."].startswith("contradicted")  # one of them works: judged
    assert rows["At 2-2-8, QuantBART stays within 1.5 of the full-precision teacher (the teacher minus 1.5 is "
                "below QuantBART)."].startswith("contradicted")
    # the paper's own runs: PACT 2-2-8 collapsed on XSum, PACT 4-4-8 on Persona-Chat did not (chance 5%)
    assert collapsed(6.96, 33.05, 0.0) and not collapsed(25.13, 77.01, 5.0) and collapsed(5.52, 77.01, 5.0)
