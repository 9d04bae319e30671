"""GGUF export: block packing against gguf's own dequantizers, bit-exact read-back of exported tiny students (q/k
row order checked against transformers' GGUF loader), type choice, metadata, the packed-file and run-folder
entry points, and the refusals."""
import filecmp
import json
from dataclasses import asdict

import gguf
import numpy as np
import pytest
import torch
import transformers as tf
from gguf import GGMLQuantizationType as QT

import qlib
from qlib import gguf_export as G
from qlib.models import tiny_config
from qlib.modules import quantized_modules
from qlib.packing import export_packed

from .conftest import model_inputs, offline_data

VOCAB = 97


def tiny_student(method="mds", w_bits=2, e_bits=None, a_bits=8, seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = tiny_config("tiny-llama", VOCAB)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    model = tf.LlamaForCausalLM(cfg).eval()
    return qlib.quantize_model(model, qlib.QuantConfig(method, w_bits, e_bits, a_bits))


def expected_weight(enc):
    """What the file must hold: qlib's codes times the step rounded to fp16, in float32."""
    return enc.codes.float() * enc.step.half().float()


def field(path, key):
    return gguf.GGUFReader(path).get_field(key).contents()


# ----------------------------------------------------------------------------------------------------------------
# pure pieces
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("qtype, lo, hi, cols", [(QT.Q4_0, -8, 7, 96), (QT.Q8_0, -128, 127, 64),
                                                 (QT.TQ2_0, -1, 1, 512)])
def test_packing_is_invertible_and_is_ggml_layout(qtype, lo, hi, cols):
    rng = np.random.default_rng(0)
    codes = rng.integers(lo, hi + 1, size=(6, cols)).astype(np.int8)
    scales = rng.uniform(1e-3, 2.0, size=6).astype(np.float16)
    pack, unpack = G.PACKERS[qtype]
    data = pack(codes, scales)
    assert data.dtype == np.uint8 and data.shape == gguf.quants.quant_shape_to_byte_shape(codes.shape, qtype)
    back, block_scales = unpack(data)
    np.testing.assert_array_equal(back, codes)
    np.testing.assert_array_equal(block_scales, np.repeat(scales[:, None], cols // G.BLOCK_SIZE[qtype], axis=1))
    # gguf's reference dequantizer reads our blocks as exactly codes * scale
    np.testing.assert_array_equal(gguf.quants.dequantize(data, qtype),
                                  codes.astype(np.float32) * scales.astype(np.float32)[:, None])


def test_gguf_own_q4_0_quantizer_is_not_exact_for_ternary_weights():
    """Why the export packs Q4_0 itself: gguf maps the signed maximum of a block to -8, so ternary weights come
    back at 7/8 of their value on one side."""
    w = np.tile(np.array([0.5, -0.5, 0.0, 0.5], dtype=np.float32), (1, 8))
    assert not np.array_equal(gguf.quants.dequantize(gguf.quants.quantize(w, QT.Q4_0), QT.Q4_0), w)
    ours = G.pack_q4_0((w / 0.5).astype(np.int8), np.array([0.5], dtype=np.float16))
    np.testing.assert_array_equal(gguf.quants.dequantize(ours, QT.Q4_0), w)


def test_the_smallest_exact_type_is_chosen():
    ternary = np.array([[-1, 0, 1, 0] * 64])  # a row of 256
    assert G.exact_type(ternary) == QT.TQ2_0
    assert G.exact_type(ternary[:, :64]) == QT.Q4_0  # rows of 64 (576 in SmolLM2): no TQ2_0
    assert G.exact_type(np.where(ternary == 0, 1, ternary)) == QT.TQ2_0  # binary codes are ternary codes
    assert G.exact_type(np.array([[-8, 7] * 128])) == QT.Q4_0
    assert G.exact_type(np.array([[8, -7] * 16])) == QT.Q8_0
    assert G.exact_type(np.array([[-127, 127] * 16])) == QT.Q8_0
    with pytest.raises(ValueError, match="multiple of 32"):
        G.exact_type(np.zeros((2, 48), dtype=np.int8))


def test_steps_outside_fp16_are_refused():
    scales, rounding = G.fp16_scales(torch.tensor(0.1), 3)
    assert scales.tolist() == [np.float16(0.1)] * 3 and 0 < rounding < 2 ** -11
    with pytest.raises(ValueError, match="fp16"):
        G.fp16_scales(torch.tensor([[1e-9], [0.1]]), 2)
    with pytest.raises(ValueError, match="fp16"):
        G.fp16_scales(torch.tensor(1e6), 2)


def test_qk_rows_interleave_the_rotary_halves_as_llama_cpp_does():
    n_head, head_dim = 3, 8
    x = np.arange(n_head * head_dim * 2).reshape(n_head * head_dim, 2)
    g = G.to_gguf_rows(x, n_head)
    for h in range(n_head):  # GGUF row h*d + 2i + j is HF row h*d + j*d/2 + i
        for i in range(head_dim // 2):
            for j in range(2):
                np.testing.assert_array_equal(g[h * head_dim + 2 * i + j], x[h * head_dim + j * head_dim // 2 + i])
    np.testing.assert_array_equal(G.from_gguf_rows(g, n_head), x)
    # transformers' GGUF loader undoes it the same way
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    proc = LlamaTensorProcessor(config={})
    np.testing.assert_array_equal(proc._reverse_permute_weights(g, n_head, n_head), x)


# ----------------------------------------------------------------------------------------------------------------
# exported students read back
# ----------------------------------------------------------------------------------------------------------------

CASES = {  # (quantize_model args, expected type of a layer matrix, of the embedding)
    "mds-2-2": (dict(method="mds", w_bits=2), "Q4_0", "Q4_0"),
    "mds-4-8": (dict(method="mds", w_bits=4, e_bits=8), "Q4_0", "Q8_0"),
    "mds-8-2": (dict(method="mds", w_bits=8, e_bits=2), "Q8_0", "Q4_0"),
    "twn-2": (dict(method="twn", w_bits=2), "Q4_0", "Q4_0"),
    "bwn-1": (dict(method="bwn", w_bits=1), "Q4_0", "Q4_0"),
    "lsq-4": (dict(method="lsq", w_bits=4), "Q4_0", "Q4_0"),
    "embedding-only": (dict(method="mds", w_bits=32, e_bits=2), "F32", "Q4_0"),  # F32 q/k are permuted too
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_read_back_equals_the_trained_weights_bit_for_bit(case, tmp_path):
    args, layer_type, embed_type = CASES[case]
    model = tiny_student(**args)
    with torch.no_grad():  # move the learnable scales off their start, as training would
        for p in qlib.quantizer_parameters(model):
            p.mul_(torch.empty_like(p).uniform_(0.8, 1.2))
    report = G.export_gguf(model, tmp_path / "s.gguf")
    back = G.read_gguf(tmp_path / "s.gguf")
    encodings = G.student_encodings(model)
    assert set(encodings) == {f"{n}.weight" for n, _ in quantized_modules(model)}
    for name, module in quantized_modules(model):
        enc = encodings[f"{name}.weight"]
        assert torch.equal(back[f"{name}.weight"], expected_weight(enc)), name
        with torch.no_grad():  # and that is the forward's weight up to fp16 rounding of the step
            torch.testing.assert_close(back[f"{name}.weight"], module.weight_quantizer(module.weight),
                                       rtol=0, atol=float(enc.step.abs().max() * enc.codes.abs().max()) * 2 ** -11)
    for name, p in model.named_parameters():  # norms, and matrices left in full precision, unchanged
        if name not in encodings and "quantizer" not in name:
            assert torch.equal(back[name], p.detach()), name
    assert "lm_head.weight" not in back  # tied: llama.cpp reads the embedding
    assert set(back) == {n for n, _ in model.named_parameters() if "quantizer" not in n}
    assert report["tensors"]["blk.0.attn_q.weight"] == layer_type
    assert report["tensors"]["token_embd.weight"] == embed_type
    assert report["tensors"]["blk.1.ffn_norm.weight"] == "F32"
    assert report["bytes"] == (tmp_path / "s.gguf").stat().st_size


def test_transformers_gguf_loader_sees_the_students_weights_and_logits(tmp_path):
    model = tiny_student("mds", 2, a_bits=None)  # no activation quantization: same computation on both sides
    G.export_gguf(model, tmp_path / "s.gguf")
    loaded = tf.LlamaForCausalLM.from_pretrained(tmp_path, gguf_file="s.gguf").eval()
    assert (loaded.config.num_key_value_heads, loaded.config.intermediate_size) == (2, 128)
    state = loaded.state_dict()
    for name, tensor in G.read_gguf(tmp_path / "s.gguf").items():
        assert torch.equal(state[name], tensor), name
    inputs = model_inputs("llama", vocab=VOCAB)
    with torch.no_grad():
        ours, theirs = model(**inputs).logits, loaded(**inputs).logits
    assert (ours - theirs).abs().max() < 1e-3 * ours.abs().max()


def test_rows_of_256_ternary_weights_use_tq2_0(tmp_path):
    model = tiny_student("mds", 2, intermediate_size=256)
    report = G.export_gguf(model, tmp_path / "s.gguf")
    assert report["tensors"]["blk.0.ffn_down.weight"] == "TQ2_0"  # rows of intermediate_size = 256
    assert report["tensors"]["blk.0.ffn_up.weight"] == "Q4_0"  # rows of hidden_size = 64
    assert report["counts"] == {"Q4_0": 13, "TQ2_0": 2, "F32": 5}
    tensor = next(t for t in gguf.GGUFReader(tmp_path / "s.gguf").tensors if t.name == "blk.1.ffn_down.weight")
    assert tensor.tensor_type == QT.TQ2_0
    enc = G.student_encodings(model)["model.layers.1.mlp.down_proj.weight"]
    codes, scales = G.unpack_tq2_0(tensor.data)
    np.testing.assert_array_equal(codes, enc.codes.numpy())
    assert (scales == enc.step.half().numpy()).all()
    assert torch.equal(G.read_gguf(tmp_path / "s.gguf")["model.layers.1.mlp.down_proj.weight"], expected_weight(enc))


def test_llama_metadata_is_written_from_the_student(tmp_path):
    model = tiny_student("mds", 4, e_bits=8)
    G.export_gguf(model, tmp_path / "s.gguf")
    path = tmp_path / "s.gguf"
    assert field(path, "general.architecture") == "llama"
    assert field(path, "llama.block_count") == 2
    assert field(path, "llama.embedding_length") == 64
    assert field(path, "llama.feed_forward_length") == 128
    assert (field(path, "llama.attention.head_count"), field(path, "llama.attention.head_count_kv")) == (4, 2)
    assert field(path, "llama.context_length") == 256
    assert field(path, "llama.rope.dimension_count") == 16
    assert field(path, "llama.vocab_size") == VOCAB
    assert field(path, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(model.config.rms_norm_eps)
    assert field(path, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q4_0  # most weights are 4-bit
    assert field(path, "tokenizer.ggml.model") == "none"  # llama.cpp's placeholder vocabulary
    assert json.loads(field(path, "qlib.quant_config"))["w_bits"] == 4


def _fake_teacher(path, n_tokens):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(30)  # the student's own value must win
    w.add_name("teacher model")
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(n_tokens)])
    w.add_token_merges(["t 1"])
    w.add_bos_token_id(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_teacher_metadata_is_copied_and_its_vocabulary_checked(tmp_path):
    model = tiny_student()
    _fake_teacher(tmp_path / "teacher.gguf", VOCAB)
    G.export_gguf(model, tmp_path / "s.gguf", teacher_gguf=tmp_path / "teacher.gguf")
    path = tmp_path / "s.gguf"
    assert field(path, "tokenizer.ggml.model") == "gpt2"
    assert field(path, "tokenizer.ggml.tokens")[:2] == ["t0", "t1"]
    assert field(path, "tokenizer.ggml.bos_token_id") == 1
    assert field(path, "general.name") == "teacher model"
    assert field(path, "llama.block_count") == 2
    _fake_teacher(tmp_path / "other.gguf", VOCAB + 1)
    with pytest.raises(ValueError, match="tokens"):
        G.export_gguf(model, tmp_path / "x.gguf", teacher_gguf=tmp_path / "other.gguf")


# ----------------------------------------------------------------------------------------------------------------
# refusals
# ----------------------------------------------------------------------------------------------------------------


def test_two_scales_per_group_are_refused(tmp_path):
    with pytest.raises(ValueError, match="negative codes"):
        G.export_gguf(tiny_student("pact_clip_grid", 2), tmp_path / "s.gguf")
    assert not (tmp_path / "s.gguf").exists()


def test_other_architectures_are_refused(tmp_path):
    torch.manual_seed(0)
    gpt2 = qlib.quantize_model(tf.GPT2LMHeadModel(tiny_config("tiny-gpt2", VOCAB)), qlib.QuantConfig("mds", 2))
    with pytest.raises(ValueError, match="LlamaForCausalLM"):
        G.export_gguf(gpt2, tmp_path / "s.gguf")


def test_a_model_with_nothing_quantized_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no quantized weight"):
        G.export_gguf(tiny_student("mds", 32, e_bits=32), tmp_path / "s.gguf")


def test_rows_that_fit_no_block_are_refused(tmp_path):
    with pytest.raises(ValueError, match="multiple of 32"):
        G.export_gguf(tiny_student("mds", 2, hidden_size=48, head_dim=12), tmp_path / "s.gguf")


# ----------------------------------------------------------------------------------------------------------------
# command line entry point
# ----------------------------------------------------------------------------------------------------------------


def test_a_packed_file_exports_to_the_same_gguf(tmp_path):
    model = tiny_student("mds", 2, e_bits=4)
    G.export_gguf(model, tmp_path / "direct.gguf")
    export_packed(model, tmp_path / "s.safetensors")
    report = G.export_gguf_cli(str(tmp_path / "s.safetensors"), str(tmp_path / "packed.gguf"))
    assert report["counts"]["Q4_0"] == 15
    assert filecmp.cmp(tmp_path / "direct.gguf", tmp_path / "packed.gguf", shallow=False)


def test_a_run_folder_exports_its_trained_student(tmp_path):
    offline_data()  # the tiny models use GPT-2's tokenizer
    from qlib.config import TrainConfig
    from qlib.models import load_tokenizer
    from qlib.students import build_student, load_teacher

    cfg = TrainConfig(model="tiny-llama", method="mds", w_bits=2, out_dir=str(tmp_path / "run"))
    student = build_student(cfg, load_teacher(cfg, load_tokenizer(cfg.model)))
    with torch.no_grad():  # "trained": weights and gammas away from what a fresh build gives
        for p in student.parameters():
            p.mul_(torch.empty_like(p).uniform_(0.5, 1.5))
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": student.state_dict()}, run / "checkpoint.pt")
    (run / "result.json").write_text(json.dumps({"config": asdict(cfg)}))
    G.export_gguf_cli(str(run), str(tmp_path / "s.gguf"))
    back = G.read_gguf(tmp_path / "s.gguf")
    for name, enc in G.student_encodings(student.eval()).items():
        assert torch.equal(back[name], expected_weight(enc)), name
    with pytest.raises(FileNotFoundError, match="neither"):
        G.export_gguf_cli(str(tmp_path / "missing"), str(tmp_path / "x.gguf"))
