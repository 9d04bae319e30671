"""What the chapters compute from a model when the book is built, not from a training run's result: quantizers at
initialisation, where dynamic scaling starts, sizes and the packed round trip, and the why-hard figures' data
(saved per run by ``experiments.figure_data``) in numbers."""
from __future__ import annotations

import pandas as pd

from .. import experiments as X
from ..labels import method_name, run_name
from ..paper import PAPER_SIZES


def init_error_table(model: str, layers=None) -> pd.DataFrame:
    """Every quantizer at initialisation on real matrices of the pretrained ``model``."""
    from .. import analysis
    from ..models import load_model

    lm = load_model(model, "lm")
    n_layers = lm.config.num_hidden_layers
    layers = layers or tuple(sorted({0, n_layers // 2 - 4 if n_layers > 8 else 0, n_layers - 1}))
    matrices = analysis.layer_matrices(lm, layers)
    rows = analysis.init_error_table(matrices, lm.get_input_embeddings().weight.detach())
    df = pd.DataFrame(rows)
    df["method"] = df["method"].map(method_name)
    return df


def gamma_start_table(model: str, module: str) -> pd.DataFrame:
    """Where dynamic scaling starts: per bit width, the share of the model's layer weights beyond alpha at gamma =
    1, and the gamma with the least reconstruction error on ``module``."""
    from .. import analysis
    from ..models import load_model
    from ..modules import QuantConfig, quantize_model

    rows = []
    lm = load_model(model, "lm")
    w = lm.get_submodule(module).weight.detach()
    for b in (2, 4, 8):
        student = quantize_model(load_model(model, "lm"), QuantConfig("mds", b, a_bits=8))
        rows.append({"W bits": b, "layer weights clipped at gamma = 1": analysis.clipped_share(student)["share"],
                     f"gamma with least error ({module})": analysis.least_error_gamma(w, b)})
    return pd.DataFrame(rows)


def size_table() -> pd.DataFrame:
    """The paper's size columns and compression ratios (its Tables 1-3 and Table 2's ratios for GPT-2 small and
    BART-base, Table 9 for the 24-layer models) from ``qlib.size_mb`` on each backbone built on the meta device
    (shapes only), beside the paper's numbers."""
    import copy

    from ..models import meta_model
    from ..modules import QuantConfig, quantize_model
    from ..packing import size_mb

    rows = []
    for name, paper in PAPER_SIZES.items():
        model = meta_model(name)
        fp = size_mb(model)
        for bits in ("fp32", 8, 4, 2):
            size = fp if bits == "fp32" else size_mb(quantize_model(copy.deepcopy(model), QuantConfig("mds", bits)))
            rows.append({"model": name, "W-E-A": "fp32" if bits == "fp32" else f"{bits}-{bits}-8",
                         "ours: size (MiB)": size, "ours: compression": f"{fp / size:.1f}x",
                         "paper: size (MB)": paper[bits],
                         "paper: compression": f"{paper['fp32'] / paper[bits]:.1f}x" if paper["fp32"] else None})
    return pd.DataFrame(rows)


def packed_roundtrip(model: str, bits: int = 2) -> str:
    """Quantize the pretrained ``model`` (QuantGPT W-E-A bits-bits-8), export it bit-packed, load the file back and
    compare logits on a PTB block: the file's size, ``size_mb`` and the largest logit difference."""
    import copy
    import tempfile
    from pathlib import Path

    import torch

    from ..data import lm_blocks
    from ..models import load_model, load_tokenizer
    from ..modules import QuantConfig, quantize_model
    from ..packing import export_packed, load_packed, size_mb

    tokenizer = load_tokenizer(model)
    student = quantize_model(copy.deepcopy(load_model(model, "lm", vocab_size=len(tokenizer))),
                             QuantConfig("mds", bits, a_bits=8)).eval()
    ids = lm_blocks("ptb", "test", tokenizer, 64, max_tokens=128)
    with tempfile.TemporaryDirectory() as d, torch.no_grad():
        path = export_packed(student, Path(d) / "student.safetensors")
        file_mib = path.stat().st_size / 2 ** 20
        diff = (load_packed(path)(input_ids=ids).logits - student(input_ids=ids).logits).abs().max().item()
    return (f"{model} at {bits}-{bits}-8: packed file {file_mib:.1f} MiB, size_mb {size_mb(student):.1f} MiB; "
            f"largest |logit difference| between the student and the model loaded from its file: {diff:.3g}")


def why_hard_data(preset: str, top_tokens: int = 500, run_missing: bool = False) -> dict[str, dict]:
    """The data of the paper's Figs. 2-4 (``experiments.figure_data``) for the teacher and each 2-bit student that
    has it."""
    out = {}
    for key, cfg in X.runs("lm-table", preset).items():
        if key == "teacher" or key.endswith("-228"):
            d = X.figure_data(cfg, top_tokens, run_missing=run_missing)
            if d is not None:
                out[run_name(cfg)] = d
    return out


def grid_text(clip: dict | None) -> str:
    """A grid's range, short: "±0.108" when symmetric, "-0.2 .. 0.3" otherwise, "-" without one."""
    if not clip:
        return "-"
    if abs(clip["neg"] + clip["pos"]) < 5e-4:
        return f"±{clip['pos']:.3f}"
    return f"{clip['neg']:.3f} .. {clip['pos']:.3f}"


def homogeneity_table(data: dict[str, dict]) -> pd.DataFrame:
    """The paper's Figs. 2-4 in numbers, one row per model: mean cosine similarity of the embeddings, mean and
    minimum token-token similarity of the last hidden states (off the diagonal), and the clipping range of each of
    the clipping figure's modules."""
    import numpy as np

    rows = []
    for name, d in data.items():
        sim = np.asarray(d["token_similarity"])
        off = sim[~np.eye(len(sim), dtype=bool)]
        row = {"model": name, "embeddings: mean cos": d["embedding_mean_cos"],
               "hidden: mean cos": float(off.mean()), "hidden: min cos": float(off.min())}
        for module, m in d["modules"].items():  # "model.layers.3.self_attn.o_proj" -> "grid of o_proj"
            row[f"grid of {module.rsplit('.', 1)[-1]}"] = grid_text(m["clip"])
        rows.append(row)
    return pd.DataFrame(rows or [{"model": "not run"}])
