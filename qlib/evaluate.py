"""Evaluation under one protocol for teacher and students alike.

Perplexity: token level, over non-overlapping blocks of ``seq_len`` tokens (the split cut as in ``qlib.data``); each
block predicts its tokens 2..seq_len from the ones before, and PPL = exp(total NLL / number of predicted tokens).
Multiple choice: accuracy of the double head's argmax. Summarization: beam search (beam 6, length penalty 1) and
ROUGE-1/2/L F1 (``rouge-score``, with stemming), in percent.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .runtime import autocast


@torch.no_grad()
def perplexity(model, blocks: torch.Tensor, batch_size: int = 8, device="cpu", desc: str = "ppl",
               progress: bool = True, dtype: str = "auto") -> float:
    """exp(mean NLL) over all predicted tokens of ``blocks`` ([N, seq_len] token ids)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    nll, count = torch.zeros((), dtype=torch.float64, device=device), 0
    for i in tqdm(range(0, len(blocks), batch_size), desc=desc, disable=not progress, leave=False):
        ids = blocks[i:i + batch_size].to(device)
        with autocast(device, dtype):
            logits = model(input_ids=ids).logits
        nll += F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                               reduction="sum").double()
        count += ids[:, 1:].numel()
    model.train(was_training)
    return math.exp(nll.item() / max(count, 1))


def gold_reply_batch(batch: dict) -> dict:
    """The gold candidate alone (stored last) of a ``qlib.data.personachat_batch``, with its reply as ``labels``:
    what ``label_perplexity`` reads for the reply perplexity."""
    gold = slice(-1, None)
    return {"input_ids": batch["input_ids"][:, gold], "attention_mask": batch["attention_mask"][:, gold],
            "mc_token_ids": batch["mc_token_ids"][:, gold], "labels": batch["lm_labels"][:, gold]}


@torch.no_grad()
def mc_picks(model, batches, device="cpu", progress: bool = True) -> tuple[list[int], list[int]]:
    """Per example, the candidate the multiple-choice head ranks first and the gold candidate, over batches from
    ``qlib.data.personachat_batch``."""
    from .models import CausalLMDoubleHeads

    device = torch.device(device)
    model.eval()
    picks, gold = [], []
    skip_lm = {"lm_logits": False} if isinstance(model, CausalLMDoubleHeads) else {}  # GPT-2's head always has them
    for b in tqdm(batches, desc="hits@1", disable=not progress, leave=False):
        out = model(input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device),
                    mc_token_ids=b["mc_token_ids"].to(device), **skip_lm)
        picks += out.mc_logits.argmax(-1).cpu().tolist()
        gold += b["mc_labels"].tolist()
    return picks, gold


def mc_hits(model, batches, device="cpu", progress: bool = True) -> list[int]:
    """Per example, 1 where the multiple-choice head's first choice is the gold candidate (hits@1)."""
    picks, gold = mc_picks(model, batches, device, progress)
    return [int(p == g) for p, g in zip(picks, gold)]


def mc_accuracy(model, batches, device="cpu", progress: bool = True) -> float:
    """hits@1 in percent (``mc_hits`` averaged)."""
    hits = mc_hits(model, batches, device, progress)
    return 100.0 * sum(hits) / max(len(hits), 1)


@torch.no_grad()
def summarize(model, tokenizer, documents: list[str], source_len: int = 512, max_new_tokens: int = 62,
              num_beams: int = 6, length_penalty: float = 1.0, batch_size: int = 4, device="cpu",
              progress: bool = True) -> list[str]:
    """Beam-search summaries of ``documents`` by an encoder-decoder (BART)."""
    device = torch.device(device)
    model.eval()
    out = []
    for i in tqdm(range(0, len(documents), batch_size), desc="beam search", disable=not progress, leave=False):
        enc = tokenizer(documents[i:i + batch_size], max_length=source_len, truncation=True, padding=True,
                        return_tensors="pt").to(device)
        gen = model.generate(**enc, num_beams=num_beams, length_penalty=length_penalty,
                             max_new_tokens=max_new_tokens, early_stopping=True)
        out.extend(tokenizer.batch_decode(gen, skip_special_tokens=True))
    return [s.strip() for s in out]


@torch.no_grad()
def summarize_lm(model, tokenizer, prompts: list[list[int]], max_new_tokens: int = 62, num_beams: int = 6,
                 length_penalty: float = 1.0, batch_size: int = 4, device="cpu", progress: bool = True) -> list[str]:
    """Beam-search continuations of token-id ``prompts`` by a decoder-only LM (left padded, so that every prompt
    ends where generation starts); only the generated tokens are decoded."""
    device = torch.device(device)
    model.eval()
    pad = tokenizer.pad_token_id
    out = []
    for i in tqdm(range(0, len(prompts), batch_size), desc="beam search", disable=not progress, leave=False):
        chunk = prompts[i:i + batch_size]
        L = max(len(p) for p in chunk)
        ids = torch.tensor([[pad] * (L - len(p)) + p for p in chunk], device=device)
        mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in chunk], device=device)
        gen = model.generate(input_ids=ids, attention_mask=mask, num_beams=num_beams, length_penalty=length_penalty,
                             max_new_tokens=max_new_tokens, early_stopping=True, do_sample=False, pad_token_id=pad,
                             eos_token_id=tokenizer.eos_token_id)
        out.extend(tokenizer.batch_decode(gen[:, L:], skip_special_tokens=True))
    return [" ".join(s.split()) for s in out]


@torch.no_grad()
def label_perplexity(model, batches, device="cpu", desc: str = "ppl", progress: bool = True,
                     dtype: str = "auto") -> float:
    """exp(mean NLL) of the labelled tokens (``labels`` != -100; position t predicts token t + 1) over batches
    of ``input_ids``, ``attention_mask`` and ``labels``: a summary's perplexity given its article. Batches with
    ``mc_token_ids`` ([B, C, L] inputs) go through a double-head model and read its LM head: a reply's perplexity
    given the conversation (``gold_reply_batch``)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    nll, count = torch.zeros((), dtype=torch.float64, device=device), 0
    for b in tqdm(batches, desc=desc, disable=not progress, leave=False):
        mc = {"mc_token_ids": b["mc_token_ids"].to(device)} if "mc_token_ids" in b else {}
        with autocast(device, dtype):
            logits = model(input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device),
                           **mc).logits
        if mc:  # [B, C, L, V] -> [B * C, L, V]
            logits = logits.flatten(0, 1)
        labels = b["labels"].flatten(0, -2)[:, 1:].to(device)
        nll += F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               ignore_index=-100, reduction="sum").double()
        count += int((labels != -100).sum())
    model.train(was_training)
    return math.exp(nll.item() / max(count, 1))


def rouge_per_example(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """ROUGE-1/2/L F1 in percent of each (prediction, reference) pair (``rouge-score``, with stemming)."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(r, p) for p, r in zip(predictions, references)]
    return {k: [100.0 * s[k].fmeasure for s in scores] for k in ("rouge1", "rouge2", "rougeL")}


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 in percent."""
    per = rouge_per_example(predictions, references)
    return {k: sum(v) / max(len(v), 1) for k, v in per.items()}


def paired_bootstrap(a: list[float], b: list[float], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The 95% interval of mean(a) - mean(b) over examples resampled with replacement (a and b scored on the same
    examples): the spread a test set of this size leaves in a comparison."""
    import numpy as np

    if len(a) != len(b) or not a:
        raise ValueError(f"paired scores needed, got {len(a)} and {len(b)}")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(d), size=(reps, len(d)))
    means = d[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


@torch.no_grad()
def generate_text(model, tokenizer, prompts: list[str], max_new_tokens: int = 30, device="cpu") -> list[str]:
    """Greedy continuations of ``prompts`` (for side-by-side samples of teacher and students)."""
    device = torch.device(device)
    model.eval()
    outs = []
    for p in prompts:
        ids = tokenizer(p, return_tensors="pt").input_ids.to(device)
        gen = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
        outs.append(tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True))
    return outs


def glue_metrics(predictions, labels, regression: bool) -> dict[str, float]:
    """GLUE's official metrics in percent: accuracy and F1 (binary), Matthews correlation, or Pearson/Spearman."""
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    p, y = np.asarray(predictions), np.asarray(labels)
    if regression:
        return {"pearson": 100 * float(pearsonr(p, y)[0]), "spearman": 100 * float(spearmanr(p, y)[0])}
    tp, tn = float(((p == 1) & (y == 1)).sum()), float(((p == 0) & (y == 0)).sum())
    fp, fn = float(((p == 1) & (y == 0)).sum()), float(((p == 0) & (y == 1)).sum())
    f1 = 2 * tp / max(2 * tp + fp + fn, 1.0)
    denom = math.sqrt(max((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn), 1e-12))
    return {"accuracy": 100 * float((p == y).mean()), "f1": 100 * f1, "mcc": 100 * (tp * tn - fp * fn) / denom}


@torch.no_grad()
def classify(model, batches, device="cpu", progress: bool = True):
    """Predictions (class ids, or scores for regression) and labels over batches."""
    device = torch.device(device)
    model.eval()
    preds, labels = [], []
    for b in tqdm(batches, desc="classify", disable=not progress, leave=False):
        logits = model(**{k: v.to(device) for k, v in b.items() if k != "labels"}).logits.float().cpu()
        preds.append(logits[:, 0] if logits.shape[-1] == 1 else logits.argmax(-1))
        labels.append(b["labels"])
    return torch.cat(preds).numpy(), torch.cat(labels).numpy()
