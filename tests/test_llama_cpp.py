"""qlib beside llama.cpp: the logits file reader and the comparison always; with llama.cpp's tools built
(``make llama-cpp``; skipped otherwise) a quantized SmolLM2 student exported to GGUF loads in llama.cpp, its F32
copy gives qlib's log-probabilities (activation quantization off), and the quantized file itself stays close to
qlib's student with its 8-bit activations."""
import struct

import numpy as np
import pytest
import torch

from qlib import llama_cpp as L

from .conftest import offline_data


def _logits_bytes(tokens: np.ndarray, log_probs: np.ndarray) -> bytes:
    """A --kl-divergence-base file as llama-perplexity writes it, from [chunks, n_ctx] tokens and the
    [chunks, rows, V] log-probabilities of the scored rows."""
    n_chunk, n_ctx = tokens.shape
    n_vocab = log_probs.shape[-1]
    out = [b"_logits_", struct.pack("<iii", n_ctx, n_vocab, n_chunk), tokens.astype("<i4").tobytes()]
    nv = 2 * ((n_vocab + 1) // 2) + 4
    for row in log_probs.reshape(-1, n_vocab):
        top = row.max()
        lo = max(row.min(), top - 16)
        scale = (top - lo) / 65535
        codes = np.where(row > lo, np.rint((row - lo) / scale), 0).astype("<u2")
        body = np.zeros(nv, dtype="<u2")
        body[:4] = np.frombuffer(np.array([scale, lo], dtype="<f4").tobytes(), dtype="<u2")
        body[4:4 + n_vocab] = codes
        out.append(body.tobytes())
    return b"".join(out)


def test_the_logits_file_reads_back_llama_perplexitys_layout(tmp_path):
    g = torch.Generator().manual_seed(0)
    n_ctx, vocab = 8, 11
    tokens = torch.randint(0, vocab, (2, n_ctx), generator=g).numpy()
    lp = torch.log_softmax(torch.randn(2, n_ctx - 1 - n_ctx // 2, vocab, generator=g) * 3, -1).numpy()
    path = tmp_path / "base.kld"
    path.write_bytes(_logits_bytes(tokens, lp))
    back = L.read_logits_file(path)
    assert back["n_ctx"] == n_ctx and back["tokens"].tolist() == tokens.tolist()
    keep = back["above_floor"]
    err = (back["log_probs"] - torch.from_numpy(lp)).abs()[keep]
    assert keep.float().mean() > 0.9 and err.max() < 16 / 65535  # the 16-bit grid of llama.cpp's file
    with pytest.raises(ValueError, match="not a llama-perplexity logits file"):
        (tmp_path / "bad").write_bytes(b"nothing here")
        L.read_logits_file(tmp_path / "bad")


def test_agreement_reads_differences_top1_and_kl(tmp_path):
    g = torch.Generator().manual_seed(1)
    n_ctx, vocab = 8, 7
    tokens = torch.randint(0, vocab, (1, n_ctx), generator=g)
    ours = torch.log_softmax(torch.randn(1, n_ctx - 1 - n_ctx // 2, vocab, generator=g), -1)
    path = tmp_path / "same.kld"
    path.write_bytes(_logits_bytes(tokens.numpy(), ours.numpy()))
    same = L.agreement(ours, L.read_logits_file(path))
    assert same["max_abs_log_prob_diff"] < 1e-3 and same["top1_agreement"] == 1 and abs(same["mean_kl"]) < 1e-3
    assert same["ppl_qlib"] == pytest.approx(same["ppl_llama_cpp"], rel=1e-3) and same["positions"] == 3
    other = torch.log_softmax(-ours, -1)  # the most likely token becomes the least likely
    path.write_bytes(_logits_bytes(tokens.numpy(), other.numpy()))
    far = L.agreement(ours, L.read_logits_file(path))
    assert far["top1_agreement"] == 0 and far["mean_kl"] > 0.1


def test_a_missing_tool_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "BIN", tmp_path)
    with pytest.raises(FileNotFoundError, match="make llama-cpp"):
        L.tool("llama-perplexity")
    with pytest.raises(ValueError, match="unknown llama.cpp tool"):
        L.tool("llama-server")
    assert not L.available()


def test_activation_quantization_is_off_inside_the_block_only():
    from qlib import QuantConfig, quantize_model
    from .conftest import TINY_MODELS

    model = quantize_model(TINY_MODELS["llama"](), QuantConfig(method="mds", w_bits=4, a_bits=8))
    ids = torch.randint(3, 97, (1, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        quantized = model(input_ids=ids).logits
        with L.without_activation_quantization(model):
            plain = model(input_ids=ids).logits
            assert not any(getattr(m, "act_quantizer", None) for m in model.modules())
        again = model(input_ids=ids).logits
    assert torch.equal(quantized, again) and not torch.equal(quantized, plain)


needs_llama_cpp = pytest.mark.skipif(not L.available(), reason="llama.cpp's tools are not built (make llama-cpp)")


@pytest.fixture(scope="module")
def smollm2_student(tmp_path_factory):
    """SmolLM2 quantized 8-8-8 by min-max (untrained, yet close to the teacher, so that its predictions mean
    something; its 8-bit codes take Q8_0), exported to GGUF, and a PTB test excerpt as text."""
    offline_data()
    from qlib import QuantConfig, quantize_model
    from qlib.gguf_export import export_gguf, teacher_gguf_of
    from qlib.models import load_model
    from qlib.runtime import data_dir

    out = tmp_path_factory.mktemp("llama")
    model = quantize_model(load_model("smollm2-135m"), QuantConfig(method="minmax", w_bits=8, e_bits=8, a_bits=8))
    export_gguf(model, out / "student.gguf", teacher_gguf_of(model.config))  # its tokenizer: llama.cpp reads text
    text = (data_dir() / "ptb" / "ptb.test.txt").read_text()[:20000]
    (out / "ptb.txt").write_text(text)
    return model, out


@pytest.mark.slow
@needs_llama_cpp
def test_the_f32_copy_gives_qlibs_log_probabilities(smollm2_student):
    """The file's weights in PyTorch, activations in full precision, against llama.cpp running the file converted to
    F32 (no quantized inputs either): the same model in two runtimes. (That the file's weights are qlib's codes times
    fp16-rounded steps is tests/test_gguf_export.py's; the fp16 rounding alone moves log-probabilities by ~1e-2.)"""
    from qlib.gguf_export import read_gguf
    from qlib.models import load_model

    model, out = smollm2_student
    theirs = L.logits_file(L.f32_copy(out / "student.gguf", out / "f32.gguf"), out / "ptb.txt", out / "f32.kld",
                           n_ctx=128, chunks=2, exact=True)
    plain = load_model("smollm2-135m")
    plain.load_state_dict(read_gguf(out / "student.gguf"), strict=False)  # the head stays tied to the embedding
    res = L.agreement(L.qlib_log_probs(plain, theirs["tokens"]), theirs)
    assert res["max_abs_log_prob_diff"] < 1e-3 and res["top1_agreement"] == 1, res  # measured: 1.7e-4


@pytest.mark.slow
@needs_llama_cpp
def test_the_quantized_file_stays_close_to_qlibs_student(smollm2_student):
    model, out = smollm2_student
    theirs = L.logits_file(out / "student.gguf", out / "ptb.txt", out / "q.kld", n_ctx=128, chunks=2, exact=True)
    res = L.agreement(L.qlib_log_probs(model, theirs["tokens"]), theirs)
    # llama.cpp quantizes matrix inputs per block of 32 or 256, qlib per token (and its attention probabilities):
    # close, not equal. Measured on 126 positions: top-1 agreement 0.90, mean KL 0.03 nats, PPL within 2%
    assert res["top1_agreement"] > 0.85 and res["mean_kl"] < 0.05, res
    assert res["ppl_llama_cpp"] == pytest.approx(res["ppl_qlib"], rel=0.05), res


def test_the_deployment_sizes_and_torch_speeds_of_a_tiny_student(tmp_path):
    from qlib import QuantConfig, quantize_model
    from qlib.deploy import sizes, torch_speeds
    from .conftest import TINY_MODELS

    model = quantize_model(TINY_MODELS["llama"](), QuantConfig(method="mds", w_bits=2, e_bits=2, a_bits=8))
    s = sizes(model, tmp_path, None)
    # ternary codes: packed at 2 bits, GGUF's Q4_0 at 4.5 bits a weight, both below fp32 and above the accounting
    assert s["accounted_mib"] <= s["packed_mib"] < s["gguf_mib"] and sum(s["gguf_types"].values()) > 0
    speed = torch_speeds(model, threads=1, prompt_tokens=16, gen_tokens=4, repeats=1)
    assert speed["prompt_tokens_per_s"] > 0 and speed["generation_tokens_per_s"] > 0
