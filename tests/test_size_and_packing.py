"""Size accounting against the paper's Size column; bit packing and the packed export round trip."""
import copy
import os

import pandas as pd
import pytest
import torch
import transformers as tf

import qlib
from qlib.models import meta_model
from qlib.packing import pack_bits, to_signed, to_unsigned, unpack_bits
from qlib.paper import PAPER_SIZES

from .conftest import TINY_MODELS, model_inputs


@pytest.mark.parametrize("kind", ["gpt2-small", "bart-base", "gpt2-medium", "bart-large"])
def test_size_reproduces_the_papers_size_column(kind):
    model = meta_model(kind)
    if PAPER_SIZES[kind]["fp32"] is not None:  # Table 9 (the 24-layer models) gives no full-precision size
        assert abs(qlib.size_mb(model) - PAPER_SIZES[kind]["fp32"]) <= 0.2
    for bits in (8, 4, 2):
        student = qlib.quantize_model(copy.deepcopy(model), qlib.QuantConfig("mds", bits))
        assert abs(qlib.size_mb(student) - PAPER_SIZES[kind][bits]) <= 0.2, bits


def test_the_books_size_table_is_the_same_accounting():
    from qlib import report
    table = report.size_table().set_index(["model", "W-E-A"])
    assert abs(table.loc[("gpt2-small", "2-2-8"), "ours: size (MiB)"] - 33.0) <= 0.2
    assert table.loc[("bart-base", "fp32"), "paper: compression"] == "1.0x"
    assert abs(table.loc[("bart-large", "2-2-8"), "ours: size (MiB)"] - 106.0) <= 0.2
    assert pd.isna(table.loc[("gpt2-medium", "fp32"), "paper: compression"])  # not given by the paper


def test_an_unknown_meta_model_is_refused():
    with pytest.raises(ValueError, match="known: gpt2-small"):
        meta_model("gpt2-xl")


def test_size_table_breakdown():
    student = qlib.quantize_model(TINY_MODELS["gpt2"](), qlib.QuantConfig("mds", 2))
    rows = {r["name"]: r for r in qlib.size_table(student)}
    assert rows["transformer.wte.weight"]["bits"] == 2 and rows["transformer.wte.weight"]["scales"] == 97
    assert rows["transformer.wpe.weight"]["bits"] == 32
    assert rows["transformer.h.0.attn.c_attn.weight"]["scales"] == 1
    assert rows["transformer.h.0.ln_1.weight"]["bits"] == 32
    assert not any("quantizer" in n for n in rows)
    assert abs(sum(r["mib"] for r in rows.values()) - qlib.size_mb(student)) < 1e-9


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_pack_unpack_are_inverse(bits):
    g = torch.Generator().manual_seed(bits)
    for numel in (1, 7, 64, 1001):
        vals = torch.randint(0, 2 ** bits, (numel,), generator=g, dtype=torch.uint8)
        packed = pack_bits(vals, bits)
        assert packed.numel() == -(-numel * bits // 8)
        assert torch.equal(unpack_bits(packed, bits, numel), vals)
    n = 1 if bits == 1 else 2 ** (bits - 1) - 1
    codes = torch.randint(-n, n + 1, (50,), generator=g).to(torch.int8)
    if bits == 1:
        codes = torch.where(codes >= 0, 1, -1).to(torch.int8)
    assert torch.equal(to_signed(to_unsigned(codes, bits), bits), codes)


@pytest.mark.parametrize("method,bits", [("mds", 2), ("mds_pact_grad", 4), ("pact", 4), ("pact_clip_grid", 4),
                                         ("lsq", 8), pytest.param("laq", 2, marks=pytest.mark.slow), ("minmax", 4), ("twn", 2), ("bwn", 1)])
def test_export_load_round_trip_gives_equal_logits(tmp_path, tiny_kind, tiny_model, method, bits):
    student = qlib.quantize_model(copy.deepcopy(tiny_model), qlib.QuantConfig(method, bits))
    student.train()
    student(**model_inputs(tiny_kind))  # one training-mode forward: learned state (LSQ/LAQ) initialised
    student.eval()
    path = qlib.export_packed(student, tmp_path / "m.safetensors")
    loaded = qlib.load_packed(path)
    with torch.no_grad():
        assert torch.equal(loaded(**model_inputs(tiny_kind)).logits, student(**model_inputs(tiny_kind)).logits)


def test_packed_file_size_matches_size_mb_and_really_shrinks(tmp_path):
    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=4, n_embd=256, n_head=4, vocab_size=4000, n_positions=128))
    fp_path = tmp_path / "fp.safetensors"
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}, str(fp_path))
    for bits in (8, 4, 2):
        student = qlib.quantize_model(copy.deepcopy(model), qlib.QuantConfig("mds", bits))
        path = qlib.export_packed(student, tmp_path / f"w{bits}.safetensors")
        on_disk = os.path.getsize(path) / 2 ** 20
        assert abs(on_disk - qlib.size_mb(student)) / qlib.size_mb(student) < 0.03, (bits, on_disk)
    assert os.path.getsize(tmp_path / "w2.safetensors") < os.path.getsize(fp_path) / 8


def test_export_and_load_errors(tmp_path):
    with pytest.raises(ValueError, match="quantize_model"):
        qlib.export_packed(TINY_MODELS["gpt2"](), tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError):
        qlib.load_packed(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file
    save_file({"a": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a qlib packed model"):
        qlib.load_packed(tmp_path / "other.safetensors")
