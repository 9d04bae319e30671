"""XTC: layer reduction, its one-stage distillation loss, GLUE data/metrics and a tiny end-to-end recipe."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers as tf

import qlib
from qlib import data as D
from qlib import evaluate as E
from qlib.models import tiny_config
from qlib.train import TrainConfig, train
from qlib.xtc import layer_map, reduce_layers, xtc_distillation, xtc_quant_config

from .conftest import offline_data


def _bert(layers=4):
    torch.manual_seed(0)
    cfg = tiny_config("tiny-bert", 120)
    cfg.num_hidden_layers = layers
    m = tf.BertForSequenceClassification(cfg).eval()
    m.set_attn_implementation("eager")
    return m


def test_layer_copy_is_exact():
    teacher = _bert(4)
    student = reduce_layers(teacher, [1, 3])
    assert student.config.num_hidden_layers == 2 and len(student.bert.encoder.layer) == 2
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    x = torch.randn(2, 5, teacher.config.hidden_size)
    for s_layer, t_idx in zip(student.bert.encoder.layer, [1, 3]):
        assert torch.equal(s_layer(x)[0] if isinstance(s_layer(x), tuple) else s_layer(x),
                           teacher.bert.encoder.layer[t_idx](x)[0] if isinstance(teacher.bert.encoder.layer[t_idx](x), tuple)
                           else teacher.bert.encoder.layer[t_idx](x))
    # the student is a copy: training it leaves the teacher alone
    student.bert.encoder.layer[0].output.dense.weight.data.zero_()
    assert teacher.bert.encoder.layer[1].output.dense.weight.abs().sum() > 0
    with pytest.raises(ValueError, match="keep"):
        reduce_layers(teacher, [3, 1])
    with pytest.raises(ValueError, match="keep"):
        reduce_layers(teacher, [0, 7])


def test_layer_reduction_of_decoders():
    torch.manual_seed(0)
    llama = tf.LlamaForCausalLM(tiny_config("tiny-llama", 50)).eval()
    small = reduce_layers(llama, [1])
    assert small.config.num_hidden_layers == 1 and small.model.layers[0].self_attn.layer_idx == 0
    assert small(input_ids=torch.randint(0, 50, (1, 6))).logits.shape == (1, 6, 50)
    gpt2 = reduce_layers(tf.GPT2LMHeadModel(tiny_config("tiny-gpt2", 50)), [0])
    assert gpt2.config.n_layer == 1


def test_xtc_quantization_is_binary_or_ternary_per_group():
    for method, bits, values in (("bwn", 1, 2), ("twn", 2, 3)):
        student = qlib.quantize_model(reduce_layers(_bert(4), [1, 3]), xtc_quant_config(method, bits))
        sd = qlib.dequantized_state_dict(student)
        w = sd["bert.encoder.layer.0.attention.self.query.weight"]
        assert w.unique().numel() <= values
        emb = sd["bert.embeddings.word_embeddings.weight"]
        assert all(row.unique().numel() <= values for row in emb[:20])
        lin = student.bert.encoder.layer[0].output.dense
        assert lin.act_quantizer.symmetric and lin.act_quantizer.granularity == "token"
        assert not any(hasattr(m, "attn_probs_quantizer") for m in student.modules())


def test_distillation_terms_equal_their_definitions():
    g = torch.Generator().manual_seed(0)
    keep = [1, 3]
    t_h = [torch.randn(2, 3, 4, generator=g) for _ in range(5)]
    s_h = [torch.randn(2, 3, 4, generator=g) for _ in range(3)]
    t_a = [torch.rand(2, 2, 3, 3, generator=g) for _ in range(4)]
    s_a = [torch.rand(2, 2, 3, 3, generator=g) for _ in range(2)]
    t_logits, s_logits = torch.randn(2, 2, generator=g), torch.randn(2, 2, generator=g)
    s = SimpleNamespace(logits=s_logits, hidden_states=s_h, attentions=s_a)
    t = SimpleNamespace(logits=t_logits, hidden_states=t_h, attentions=t_a)
    total, parts = xtc_distillation(s, t, keep)
    soft_ce = -(torch.softmax(t_logits, -1) * torch.log_softmax(s_logits, -1)).sum(-1).mean()
    hidden = sum(((s_h[i] - t_h[j]) ** 2).mean() for i, j in [(0, 0), (1, 2), (2, 4)])
    att = ((s_a[0] - t_a[1]) ** 2).mean() + ((s_a[1] - t_a[3]) ** 2).mean()
    assert torch.allclose(parts["logit"], soft_ce) and torch.allclose(parts["hidden"], hidden)
    assert torch.allclose(parts["att"], att) and torch.allclose(total, soft_ce + hidden + att)
    assert layer_map(keep) == [(0, 0), (1, 2), (2, 4)]
    reg, _ = xtc_distillation(SimpleNamespace(logits=s_logits[:, :1], hidden_states=s_h, attentions=s_a),
                              SimpleNamespace(logits=t_logits[:, :1], hidden_states=t_h, attentions=t_a), keep,
                              regression=True)
    assert torch.allclose(reg, ((s_logits[:, 0] - t_logits[:, 0]) ** 2).mean() + hidden + att)


@pytest.mark.parametrize("task,n_labels,n_dev", [("sst2", 2, 872), ("cola", 2, 1043), ("mrpc", 2, 408),
                                                 ("rte", 2, 277), ("stsb", 1, 1500)])
def test_glue_offline(task, n_labels, n_dev):
    offline_data()
    dev = D.glue_examples(task, "valid")
    assert len(dev) == n_dev and D.glue_num_labels(task) == n_labels
    if n_labels == 1:
        assert all(0.0 <= e["label"] <= 5.0 for e in dev)
    else:
        assert {e["label"] for e in dev} == {0, 1}
    assert (dev[0]["text_b"] is None) == (task in ("sst2", "cola"))
    with pytest.raises(ValueError, match="test split"):
        D.glue_examples(task, "test")


def test_glue_metrics_match_references():
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import f1_score, matthews_corrcoef
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    m = E.glue_metrics(p, y, regression=False)
    assert m["f1"] == pytest.approx(100 * f1_score(y, p)) and m["mcc"] == pytest.approx(100 * matthews_corrcoef(y, p))
    a, b = rng.normal(size=50), rng.normal(size=50)
    r = E.glue_metrics(a, b, regression=True)
    assert r["pearson"] == pytest.approx(100 * pearsonr(a, b)[0]) and r["spearman"] == pytest.approx(
        100 * spearmanr(a, b)[0])


@pytest.mark.slow
def test_tiny_xtc_recipe_end_to_end(tmp_path):
    offline_data()
    common = dict(task="classification", model="tiny-bert", dataset="sst2", seq_len=32, batch_size=8,
                  max_examples=64, eval_batch_size=32, progress=False, lr=5e-5)
    teacher = train(TrainConfig(**common, method="fp", max_steps=4, out_dir=str(tmp_path / "teacher")))
    assert "valid_accuracy" in teacher["metrics"] and teacher["loss"] == "lm"
    step1 = train(TrainConfig(**common, method="fp", keep_layers=(1,), teacher=str(tmp_path / "teacher"),
                              max_steps=3, out_dir=str(tmp_path / "reduced")))
    assert step1["loss"] == "xtc" and {"logit", "att", "hidden"} <= set([h for h in step1["history"] if "loss" in h][-1])
    step2 = train(TrainConfig(**common, method="bwn", w_bits=1, keep_layers=(1,), teacher=str(tmp_path / "teacher"),
                              init_from=str(tmp_path / "reduced"), max_steps=3, out_dir=str(tmp_path / "binary")))
    assert step2["size_mb"] < step1["size_mb"] / 4
    with pytest.raises(ValueError, match="classification"):
        TrainConfig(task="lm", loss="xtc")
