"""quantize_model on tiny random GPT-2 / Llama / BART / BERT: placement, full-precision parts, tied heads."""
import copy

import pytest
import torch
import transformers as tf
from torch import nn

import qlib
from qlib.modules import QuantEmbedding, QuantLinear, QuantTiedHead, quantized_modules
from qlib.quant import bind_laq_hessians

from .conftest import TINY_MODELS, model_inputs

LAYER_LINEARS = {"gpt2": 4, "llama": 7, "bart": 6 + 10, "bert": 6}  # per layer (bart: encoder + decoder layer)
FFN_SECOND = {"gpt2": "mlp.c_proj", "llama": "mlp.down_proj", "bart": "fc2", "bert": "output.dense"}


def _logits(model, kind):
    return model(**model_inputs(kind)).logits


def test_placement_and_full_precision_parts(tiny_kind, tiny_model):
    student = qlib.quantize_model(copy.deepcopy(tiny_model), qlib.QuantConfig("mds", 2, a_bits=8))
    qlinears = {n: m for n, m in student.named_modules() if isinstance(m, QuantLinear)}
    n_layers = 2
    assert len(qlinears) == LAYER_LINEARS[tiny_kind] * n_layers
    for name, m in qlinears.items():
        assert m.weight_quantizer.granularity == "tensor" and m.weight_quantizer.bits == 2
        second = name.endswith(FFN_SECOND[tiny_kind]) and "attention.output" not in name
        assert m.act_quantizer.symmetric == (not second), name
    embs = [m for m in student.modules() if isinstance(m, QuantEmbedding)]
    assert embs and all(e.weight_quantizer.granularity == "row" for e in embs)
    # norms, position embeddings, pooler/classifier stay full precision modules
    for name, m in student.named_modules():
        if isinstance(m, (nn.LayerNorm,)) or "RMSNorm" in type(m).__name__:
            assert not hasattr(m, "weight_quantizer")
        if isinstance(m, nn.Embedding):  # anything still a plain Embedding is not the word embedding
            assert m.weight is not student.get_input_embeddings().weight
        if isinstance(m, nn.Linear):
            assert not any(k in name for k in (".h.", ".layers.", ".layer.")), name
    # biases are never quantized: they are the same Parameter objects, untouched
    for name, p in student.named_parameters():
        if name.endswith(".bias"):
            assert torch.equal(p, dict(tiny_model.named_parameters())[name])
    # attention probabilities: one asymmetric quantizer per attention module
    attn_q = [m.attn_probs_quantizer for m in student.modules() if hasattr(m, "attn_probs_quantizer")]
    expected_attn = {"gpt2": 2, "llama": 2, "bart": 2 + 2 * 2, "bert": 2}[tiny_kind]
    assert len(attn_q) == expected_attn and all(not q.symmetric for q in attn_q)


def test_tied_head_uses_the_quantized_embedding(tiny_kind, tiny_model):
    if tiny_kind == "bert":
        pytest.skip("no LM head")
    student = qlib.quantize_model(copy.deepcopy(tiny_model), qlib.QuantConfig("mds", 2, a_bits=None))
    head = student.get_output_embeddings()
    assert isinstance(head, QuantTiedHead)
    emb = student.get_input_embeddings()
    assert head.weight is emb.weight
    x = torch.randn(3, emb.embedding_dim)
    expected = x @ emb.quantized_weight().T + (head.bias if head.bias is not None else 0)
    assert torch.allclose(head(x), expected)


def test_eight_bit_minmax_is_close_to_full_precision(tiny_kind, tiny_model):
    ref = _logits(tiny_model, tiny_kind)
    student = qlib.quantize_model(copy.deepcopy(tiny_model), qlib.QuantConfig("minmax", 8, a_bits=8)).eval()
    out = _logits(student, tiny_kind)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    two_bit = qlib.quantize_model(copy.deepcopy(tiny_model), qlib.QuantConfig("minmax", 2, a_bits=8)).eval()
    assert (_logits(two_bit, tiny_kind) - ref).abs().max() > (out - ref).abs().max()


def test_attention_probabilities_are_quantized():
    model = TINY_MODELS["gpt2"]()
    student = qlib.quantize_model(copy.deepcopy(model), qlib.QuantConfig("minmax", 8, a_bits=4)).eval()
    out = student(**model_inputs("gpt2"), output_attentions=True)
    probs = out.attentions[0]
    rows = probs.reshape(-1, probs.shape[-1])  # one range per query position (per token)
    assert max(r.unique().numel() for r in rows) <= 2 ** 4  # 16 levels
    model.set_attn_implementation("eager")  # sdpa returns no probabilities
    fp = model(**model_inputs("gpt2"), output_attentions=True).attentions[0]
    assert fp.unique().numel() > 100


def test_no_activation_quantization_with_a_bits_32(tiny_model):
    student = qlib.quantize_model(copy.deepcopy(tiny_model), qlib.QuantConfig("lsq", 4, a_bits=32))
    assert all(m.act_quantizer is None for m in student.modules() if isinstance(m, QuantLinear))
    assert not any(hasattr(m, "attn_probs_quantizer") for m in student.modules())


def test_gradients_reach_weights_and_quantizer_parameters(tiny_kind, tiny_model):
    student = qlib.quantize_model(copy.deepcopy(tiny_model), qlib.QuantConfig("mds", 2)).train()
    _logits(student, tiny_kind).square().mean().backward()
    qparams = qlib.quantizer_parameters(student)
    assert len(qparams) == len(list(quantized_modules(student)))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in qparams)
    emb = student.get_input_embeddings()
    assert emb.weight.grad is not None


def test_dequantized_state_dict_holds_the_forward_weights():
    model = TINY_MODELS["gpt2"]()
    student = qlib.quantize_model(copy.deepcopy(model), qlib.QuantConfig("mds", 2, a_bits=None)).eval()
    sd = qlib.dequantized_state_dict(student)
    assert not any("quantizer" in k for k in sd)
    w = sd["transformer.h.0.attn.c_attn.weight"]
    assert w.unique().numel() <= 3
    # loading these values into the full-precision model reproduces the student's logits
    fp = copy.deepcopy(model)
    fp.load_state_dict(sd, strict=False)
    assert torch.allclose(fp(**model_inputs("gpt2")).logits, student(**model_inputs("gpt2")).logits, atol=1e-5)


def test_double_head_gpt2_quantizes_its_multiple_choice_head():
    torch.manual_seed(0)
    model = tf.GPT2DoubleHeadsModel(tf.GPT2Config(n_layer=1, n_embd=32, n_head=4, vocab_size=50, n_positions=32))
    cfg = qlib.QuantConfig("mds", 2, extra_modules=("multiple_choice_head.summary",))
    student = qlib.quantize_model(model, cfg)
    assert isinstance(student.multiple_choice_head.summary, QuantLinear)
    with pytest.raises(ValueError, match="extra_modules"):
        qlib.quantize_model(copy.deepcopy(TINY_MODELS["gpt2"]()),
                            qlib.QuantConfig("mds", 2, extra_modules=("no.such.module",)))


def test_bad_configs():
    with pytest.raises(ValueError, match="unknown quantization method"):
        qlib.QuantConfig("foo", 2)
    with pytest.raises(ValueError, match="supports bits"):
        qlib.QuantConfig("twn", 3)
    with pytest.raises(ValueError, match="supports bits"):
        qlib.QuantConfig("mds", 0)
    with pytest.raises(ValueError, match="a_bits"):
        qlib.QuantConfig("mds", 2, a_bits=5)
    model = qlib.quantize_model(TINY_MODELS["gpt2"](), qlib.QuantConfig("mds", 2))
    with pytest.raises(ValueError, match="already quantized"):
        qlib.quantize_model(model, qlib.QuantConfig("mds", 2))
    assert qlib.QuantConfig("mds", 2).label == "2-2-8"
    assert qlib.QuantConfig("twn", 2, e_bits=32, a_bits=None).label == "2-32-32"


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_tied_head_reuses_the_quantized_table_of_the_same_forward_with_the_same_gradient(kind):
    torch.manual_seed(0)
    model = TINY_MODELS[kind]()
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    student = qlib.quantize_model(model, qlib.QuantConfig("mds", 2, a_bits=8))
    emb, head = student.get_input_embeddings(), student.get_output_embeddings()
    assert isinstance(head, QuantTiedHead)
    calls = []
    emb.weight_quantizer.register_forward_hook(lambda *a: calls.append(1))
    student(input_ids=ids).logits.pow(2).mean().backward()
    assert len(calls) == 1  # the table was quantized once for embedding and head
    shared = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    # reference: the head quantizes the table itself
    student.zero_grad()
    emb.has_tied_head = False
    student(input_ids=ids).logits.pow(2).mean().backward()
    assert len(calls) == 3
    for n, p in student.named_parameters():
        if p.grad is not None:
            assert torch.allclose(p.grad, shared[n], rtol=1e-4, atol=1e-7), n
    # a weight changed since the embedding's forward is never served stale
    emb.has_tied_head = True
    emb(ids)
    with torch.no_grad():
        emb.weight.add_(0.1)
    assert torch.equal(head.embedding[0].take_shared_weight(), emb.quantized_weight())


@pytest.mark.parametrize("method", ["mds", "lsq", pytest.param("laq", marks=pytest.mark.slow), "pact"])
def test_evaluation_reuses_quantized_weights_until_weight_or_quantizer_changes(method):
    torch.manual_seed(0)
    model = TINY_MODELS["llama"]()
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    student = qlib.quantize_model(model, qlib.QuantConfig(method, 2, a_bits=8))
    layer = student.model.layers[0].mlp.down_proj
    calls = []
    layer.weight_quantizer.register_forward_hook(lambda *a: calls.append(1))
    opt = torch.optim.AdamW(student.parameters(), lr=1e-2)
    student(input_ids=ids).logits.pow(2).mean().backward()
    opt.step()
    assert bind_laq_hessians(student, opt) > 0 or method != "laq"  # LAQ's solver now reads Adam's state
    student.eval()
    calls.clear()
    with torch.no_grad():
        first = student(input_ids=ids).logits
        again = student(input_ids=ids).logits
    assert len(calls) == 1 and torch.equal(first, again)
    # every quantizer parameter and the weight itself invalidate the kept copy
    for t in [layer.weight, *layer.weight_quantizer.parameters()]:
        with torch.no_grad():
            t.mul_(1.5)
            fresh = layer.weight_quantizer(layer.weight)
            assert torch.equal(layer.quantized_weight(), fresh)
    # with autograd the copy is dropped and the quantizer runs every time
    student.train()
    calls.clear()
    student(input_ids=ids)
    student(input_ids=ids)
    assert len(calls) == 2 and layer._eval_cache is None


def test_nonzero_codes_counts_what_pact_init_keeps():
    from qlib.analysis import nonzero_codes
    model = TINY_MODELS["llama"]()
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, :3] = 2.0  # three weights above 2.5 / 2
    out = nonzero_codes(qlib.quantize_model(model, qlib.QuantConfig("pact_clip_grid", 2, a_bits=8)))
    assert out["layers"]["nonzero"] == 3
    assert out["layers"]["total"] == sum(m.weight.numel() for _, m in quantized_modules(model)
                                         if not isinstance(m, QuantEmbedding))
    assert out["embedding"]["nonzero"] == 0 and out["embedding"]["total"] == model.model.embed_tokens.weight.numel()


def test_set_gamma_starts_every_dynamic_scaling_and_refuses_models_without_one():
    from qlib.modules import set_gamma
    student = qlib.quantize_model(TINY_MODELS["llama"](), qlib.QuantConfig("mds", 4, a_bits=8))
    n = set_gamma(student, 2.5)
    gammas = [m.weight_quantizer.gamma for _, m in quantized_modules(student)]
    assert n == len(gammas) and all(torch.all(g == 2.5) for g in gammas)
    with pytest.raises(ValueError, match="no dynamic-scaling"):
        set_gamma(qlib.quantize_model(TINY_MODELS["llama"](), qlib.QuantConfig("lsq", 4, a_bits=8)), 2.5)
    with pytest.raises(ValueError, match="> 0"):
        set_gamma(student, -1.0)


def test_clipped_share_counts_the_weights_beyond_the_clipping_range():
    from qlib.analysis import clipped_share
    model = TINY_MODELS["llama"]()
    student = qlib.quantize_model(model, qlib.QuantConfig("mds", 8, a_bits=8))
    layers = [m for _, m in quantized_modules(student) if not isinstance(m, QuantEmbedding)]
    expected = sum(int((m.weight.abs() > m.weight.abs().mean()).sum()) for m in layers)  # gamma = 1: alpha = mean|w|
    out = clipped_share(student)
    assert out["clipped"] == expected and out["total"] == sum(m.weight.numel() for m in layers)
    assert 0.2 < out["share"] < 0.6  # near-Gaussian weights: about 42% lie beyond their mean magnitude
    with torch.no_grad():
        for m in layers:
            m.weight_quantizer.gamma.fill_(100.0)
    assert clipped_share(student)["clipped"] == 0


@pytest.mark.parametrize("method", ["mds", "pact", "pact_clip_grid", "lsq", "laq"])
def test_clipping_factors_are_the_ends_of_each_quantizers_grid(method):
    from qlib.analysis import clipping_factors
    model = TINY_MODELS["llama"]()
    student = qlib.quantize_model(model, qlib.QuantConfig(method, 2, a_bits=8))
    if method.startswith("pact"):  # the paper's 2.5 is far beyond these weights: bring the range down to them
        for _, m in quantized_modules(student):
            with torch.no_grad():
                m.weight_quantizer.alpha_neg.fill_(0.02), m.weight_quantizer.alpha_pos.fill_(0.03)
    student(input_ids=torch.randint(0, 100, (1, 8)))  # LSQ and LAQ set their scale on the first forward
    student.eval()
    cf = clipping_factors(student)
    mods = {n: m for n, m in quantized_modules(student) if not isinstance(m, QuantEmbedding)}
    assert set(cf) == set(mods)
    for name, m in mods.items():
        w_q = m.weight_quantizer(m.weight).detach()
        # the largest quantized weights sit exactly on the ends of the range
        assert torch.isclose(w_q.max(), torch.tensor(cf[name]["pos"]), rtol=1e-5), name
        assert torch.isclose(w_q.min(), torch.tensor(cf[name]["neg"]), rtol=1e-5), name
