"""Analyses behind the book's figures (paper Sec. 2.2 and 5): token embeddings, representation similarity, weight
distributions, clipping factors and the gradient of the clipping factor."""
from __future__ import annotations

import numpy as np
import torch

from .modules import QuantEmbedding, layer_index, quantized_modules
from .quant import QUANTIZERS, MDSQuantizer, PACTQuantizer, make_quantizer


def most_frequent_tokens(blocks: torch.Tensor, top: int = 500) -> torch.Tensor:
    """Ids of the ``top`` most frequent tokens in ``blocks``."""
    counts = torch.bincount(blocks.reshape(-1))
    return counts.argsort(descending=True)[:top]


@torch.no_grad()
def used_embeddings(model) -> torch.Tensor:
    """The word-embedding table the forward pass uses (quantized for a student)."""
    emb = model.get_input_embeddings()
    w = emb.quantized_weight() if isinstance(emb, QuantEmbedding) else emb.weight
    return w.detach().float().cpu()


def tsne(vectors: torch.Tensor, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of row vectors (Fig. 2)."""
    from sklearn.manifold import TSNE

    x = vectors.float().numpy().astype(np.float64)
    # quantized tables repeat rows exactly; a tiny fixed jitter keeps t-SNE's affinities finite
    x = x + np.random.default_rng(seed).normal(0.0, 1e-4 * (x.std() + 1e-12), x.shape)
    perplexity = min(30.0, max(2.0, (len(x) - 1) / 3))
    # exact t-SNE: quantized embeddings repeat rows, which sends Barnes-Hut's quad tree into unbounded recursion
    return TSNE(n_components=2, perplexity=perplexity, init="pca", method="exact",
                random_state=seed).fit_transform(x)


def embedding_spread(vectors: torch.Tensor) -> float:
    """Mean pairwise cosine similarity of row vectors: higher means more homogeneous embeddings."""
    v = torch.nn.functional.normalize(vectors.float(), dim=-1)
    sim = v @ v.T
    n = len(v)
    return ((sim.sum() - n) / (n * (n - 1))).item()


@torch.no_grad()
def token_similarity(model, input_ids: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """Cosine similarity between the hidden states of every pair of tokens of one sequence (Fig. 3)."""
    model.eval()
    hs = model(input_ids=input_ids[None], output_hidden_states=True).hidden_states[layer][0].float()
    hs = torch.nn.functional.normalize(hs, dim=-1)
    return (hs @ hs.T).cpu()


@torch.no_grad()
def clipping_factors(model) -> dict[str, dict]:
    """Per (tensor-wise) quantized module: the ends of the grid its quantizer uses now, ``n * step`` from the same
    codes and steps the forward pass uses (MDS: gamma*mean|w|, with ``gamma``; PACT: the largest clipped
    magnitude, with its clipping factors ``clip_neg``/``clip_pos``; LSQ: n steps; LAQ: its solver's alpha, as in
    evaluation)."""
    out = {}
    for name, m in quantized_modules(model):
        q = m.weight_quantizer
        if q.granularity != "tensor":
            continue
        was_training = q.training
        enc = q.eval().encode(m.weight.detach())  # eval: LAQ's solver does not advance its warm start
        q.train(was_training)
        n = enc.codes.abs().max().clamp_min(1).item() if q.n == 1 else q.n
        step_neg = enc.step if enc.step_neg is None else enc.step_neg
        entry = {"neg": -n * step_neg.item(), "pos": n * enc.step.item()}
        if isinstance(q, MDSQuantizer):
            entry["gamma"] = q.gamma.item()
        if isinstance(q, PACTQuantizer):
            entry["clip_neg"], entry["clip_pos"] = -q.alpha_neg.item(), q.alpha_pos.item()
        out[name] = entry
    return out


def clipped_share(model) -> dict:
    """The share of the (tensor-wise quantized) layer weights outside their module's clipping range now, as
    ``{"clipped", "total", "share"}``. With dynamic scaling's initial gamma = 1 the range is mean|w|: near the best
    range for a ternary grid, far too narrow for 8 bits, where most of the error is then clipping."""
    ranges = clipping_factors(model)
    clipped = total = 0
    for name, m in quantized_modules(model):
        if name in ranges:
            w = m.weight.detach()
            clipped += int(((w > ranges[name]["pos"]) | (w < ranges[name]["neg"])).sum())
            total += w.numel()
    return {"clipped": clipped, "total": total, "share": clipped / max(total, 1)}


def weight_histogram(w: torch.Tensor, bins: int = 200, coverage: float = 0.999) -> dict:
    """Density histogram of a weight matrix over the symmetric range holding ``coverage`` of its values (Fig. 4);
    the outliers beyond it are summarised by their share and the largest magnitude."""
    x = w.detach().flatten().float().cpu().numpy()
    lim = float(np.quantile(np.abs(x), coverage))
    density, edges = np.histogram(x, bins=bins, range=(-lim, lim), density=True)
    inside = float((np.abs(x) <= lim).mean())
    return {"density": (density * inside).tolist(), "edges": edges.tolist(), "outside": 1.0 - inside,
            "max_abs": float(np.abs(x).max())}


@torch.no_grad()
def figure_data(model, token_ids: torch.Tensor, sentence: torch.Tensor, modules: tuple[str, ...]) -> dict:
    """What Figs. 2-4 draw from one trained model, small enough to commit (the weights are not): the t-SNE map and
    mean cosine similarity of the embeddings of ``token_ids``, the token-token similarity of the last hidden states
    on ``sentence``, and the weight histogram and clipping range of each of ``modules``."""
    emb = used_embeddings(model)[token_ids]
    clips = clipping_factors(model)
    return {"tsne": tsne(emb).tolist(), "embedding_mean_cos": embedding_spread(emb),
            "token_similarity": token_similarity(model, sentence.to(next(model.parameters()).device)).tolist(),
            "modules": {m: {"weight_hist": weight_histogram(model.get_submodule(m).weight), "clip": clips.get(m)}
                        for m in modules}}


@torch.no_grad()
def nonzero_codes(student) -> dict[str, dict]:
    """How many weights a quantized model maps off zero, for its word embedding and for its other quantized
    matrices: ``{"embedding" | "layers": {"nonzero", "total", "share"}}``, from the quantizers' own codes. (With
    PACT's initial clipping factors of 2.5, a 2-bit grid {-2.5, 0, 2.5} keeps only weights above 1.25.)"""
    counts = {"embedding": [0, 0], "layers": [0, 0]}
    for _, m in quantized_modules(student):
        codes = m.weight_quantizer.encode(m.weight).codes
        c = counts["embedding" if isinstance(m, QuantEmbedding) else "layers"]
        c[0] += int((codes != 0).sum())
        c[1] += codes.numel()
    return {k: {"nonzero": n, "total": t, "share": n / max(t, 1)} for k, (n, t) in counts.items()}


# the matrices of chapter 1's at-initialisation table: every module type of a first, a middle and the last layer
INIT_TABLE_LAYERS = (0, 11, 29)
# every quantizer but the ablation whose forward is QuantGPT's (only its gamma gradient differs)
INIT_TABLE_METHODS = tuple(m for m in QUANTIZERS if m != "mds_pact_grad")


def layer_matrices(model, layers=INIT_TABLE_LAYERS) -> dict[str, torch.Tensor]:
    """The weight matrices of the given Transformer layers (every linear module), by name."""
    out = {}
    for name, m in model.named_modules():
        where = layer_index(name)
        if where is not None and where[0] in layers and isinstance(m, torch.nn.Linear):
            out[name] = m.weight.detach()
    return out


@torch.no_grad()
def init_error_table(matrices: dict[str, torch.Tensor], embedding: torch.Tensor | None = None,
                     methods=INIT_TABLE_METHODS, bits=(2, 4, 8)) -> list[dict]:
    """Each quantizer at initialisation (its paper's start, before any training step) on real matrices: relative
    error ||w_q - w|| / ||w|| and the share of non-zero codes, over the given layer matrices (one scale per matrix)
    and over the word embedding (one scale per row). Methods that do not support a width are skipped (TWN: 2 bits
    only; BWN: 1 bit, shown in the 2-bit row)."""
    rows = []
    for b in bits:
        for method in methods:
            width = 1 if method == "bwn" else b
            if width not in QUANTIZERS[method].allowed_bits or (method == "bwn" and b != 2):
                continue
            row = {"W bits": width, "method": method}
            groups = {"layers": [(make_quantizer(method, width), w) for w in matrices.values()]}
            if embedding is not None:
                groups["embedding"] = [(make_quantizer(method, width, "row", rows=embedding.shape[0]), embedding)]
            for group, pairs in groups.items():
                err = norm = nonzero = total = 0.0
                for q, w in pairs:
                    enc = q.eval().encode(w)
                    err += float(((enc.dequantize() - w) ** 2).sum())
                    norm += float((w ** 2).sum())
                    nonzero += float((enc.codes != 0).sum())
                    total += enc.codes.numel()
                row[f"{group}: relative error"] = (err / norm) ** 0.5
                row[f"{group}: non-zero codes"] = nonzero / total
            rows.append(row)
    return rows


GAMMA_SWEEP = tuple(0.3 + 0.1 * i for i in range(38))  # the gammas chapter 1 sweeps (0.3 to 4.0)


def gamma_gradient_curve(w: torch.Tensor, bits: int, gammas) -> dict[str, list[float]]:
    """dL/dgamma of the reconstruction loss L = ||w_q - w||^2 / 2 as gamma varies, under Eq. 7 (``mds``) and
    under PACT's rule that only clipped weights count (``mds_pact_grad``); also L itself. Shows why ignoring the
    weights inside the range leaves a too-large clipping factor without a push back."""
    curves = {"gamma": [float(g) for g in gammas], "mds": [], "mds_pact_grad": [], "loss": []}
    for g in gammas:
        for method in ("mds", "mds_pact_grad"):
            q = make_quantizer(method, bits)
            with torch.no_grad():
                q.gamma.fill_(float(g))
            wq = q(w)
            loss = 0.5 * ((wq - w) ** 2).sum()
            loss.backward()
            curves[method].append(q.gamma.grad.item())
            if method == "mds":
                curves["loss"].append(loss.item())
    return curves


def least_error_gamma(w: torch.Tensor, bits: int, step: float = 0.25) -> float:
    """The gamma whose clipping factor alpha = gamma * mean|w| reconstructs ``w`` with the least squared error at
    ``bits`` (Eq. 6's grid), searched in steps of ``step`` from 0.5 up to the point where nothing is clipped
    (max|w| / mean|w|): beyond it a larger alpha only widens the grid's steps, so the least error lies inside."""
    top = float(w.abs().max() / w.abs().mean())
    gammas = [0.5 + step * i for i in range(int((top - 0.5) / step) + 2)]
    loss = gamma_gradient_curve(w, bits, gammas)["loss"]
    return gammas[loss.index(min(loss))]


def method_demo(base: dict) -> dict[str, str]:
    """Chapter 3's walk-through on one real batch: the teacher (the pretrained ``base["model"]``) and its 2-2-8
    QuantGPT student, both losses of Eq. 5 on two PTB blocks, one backward pass, one bank update (Eq. 3) and the
    clipping ranges of dynamic scaling. Returns printable summaries."""
    import copy

    from .data import lm_blocks
    from .losses import ContrastiveHeads, TokenContrastiveLoss, logit_distillation
    from .models import load_model, load_tokenizer
    from .modules import QuantConfig, quantize_model, quantizer_parameters

    torch.manual_seed(0)
    tokenizer = load_tokenizer(base["model"])
    teacher = load_model(base["model"], "lm", vocab_size=len(tokenizer)).eval()
    student = quantize_model(copy.deepcopy(teacher), QuantConfig("mds", 2, a_bits=8))
    seq_len, k = base["seq_len"], base["num_negatives"]
    batch = lm_blocks("ptb", "train", tokenizer, seq_len, max_tokens=2 * seq_len)
    with torch.no_grad():
        t_out = teacher(input_ids=batch, output_hidden_states=True)
    s_out = student(input_ids=batch, output_hidden_states=True)
    heads = ContrastiveHeads(teacher.config.hidden_size, 128)
    contrast = TokenContrastiveLoss(len(tokenizer), 128, k)
    l_cont = contrast(heads.student(s_out.hidden_states[-1]), heads.teacher(t_out.hidden_states[-1]), batch)
    l_dist = logit_distillation(s_out.logits, t_out.logits)
    (l_dist + 0.1 * l_cont).backward()
    contrast.update_memory()
    written = int(contrast.memory.written.sum())
    alphas = [v["pos"] for v in clipping_factors(student).values()]
    return {
        "summary": (f"batch {tuple(batch.shape)}: {tokenizer.decode(batch[0, :12])!r} ...\n"
                    f"L_dist = {l_dist.item():.3f}   L_cont = {l_cont.item():.3f}   log(1+K) = "
                    f"{float(np.log(1 + k)):.3f} (L_cont of a student whose anchors match no positive better than "
                    f"the {k} negatives)"),
        "bank": (f"bank rows written: {written} (the distinct token ids of the batch) of {len(tokenizer)}; "
                 f"row norms of the first five tokens: "
                 f"{[round(x, 3) for x in contrast.memory.vectors[batch[0, :5]].norm(dim=1).tolist()]}"),
        "scaling": (f"{len(alphas)} tensor-wise modules; alpha = gamma * mean|w| ranges from {min(alphas):.4f} to "
                    f"{max(alphas):.4f}; the gradient reached every gamma: "
                    f"{all(p.grad is not None for p in quantizer_parameters(student))}"),
    }
