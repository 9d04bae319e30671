"""Datasets for the paper's tasks, read from ``QLIB_DATA_DIR`` when the files are there, else from the hub.

A split that is neither offline nor reachable raises ``FileNotFoundError`` naming what is missing and how to get
it; there is never a silent substitute.

- Language modeling (``ptb``, ``wikitext2``, ``wikitext103``): the split's text, tokenized and cut into contiguous
  blocks of ``seq_len`` tokens (the last partial block is dropped).
- Next-utterance prediction (``personachat`` from the hub; offline stand-in ``chitchat``, the BYU Chit-Chat corpus
  of the PyPI package ``chitchat-dataset``): GPT-2 double-head format, ``num_candidates`` replies per example with
  the gold reply last.
- Summarization (``xsum``): (document, one-sentence summary) pairs from the hub; offline stand-in ``xsum-sample``:
  the 321 offline XSum test articles cut into fixed train / valid / test parts.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import re
from pathlib import Path

import torch

from .runtime import atomic_torch_save, data_dir, package_dir

LM_DATASETS = {
    # name: {split: offline relative path}, hub (path, config, text field)
    "ptb": ({"train": "ptb/ptb.train.txt", "valid": "ptb/ptb.valid.txt", "test": "ptb/ptb.test.txt"},
            ("ptb_text_only", None, "sentence")),
    "wikitext2": ({"train": "wikitext-2/train.txt", "valid": "wikitext-2/valid.txt", "test": "wikitext-2/test.txt"},
                  ("wikitext", "wikitext-2-v1", "text")),
    "wikitext2-raw": ({"test": "wikitext-2-raw/wiki.test.raw"}, ("wikitext", "wikitext-2-raw-v1", "text")),
    "wikitext103": ({}, ("wikitext", "wikitext-103-v1", "text")),
}
HUB_SPLITS = {"valid": "validation"}


def _missing(what: str, offline_path: Path | None, hub: str, err: Exception | None) -> FileNotFoundError:
    where = f"{offline_path} does not exist" if offline_path else "QLIB_DATA_DIR is not set"
    return FileNotFoundError(
        f"{what} is not available: {where}, and loading it from the hub ({hub}) failed"
        + (f" ({type(err).__name__}: {str(err)[:200]})" if err else "")
        + ". Put the files in QLIB_DATA_DIR or run where the Hugging Face hub is reachable.")


def read_lm_text(name: str, split: str) -> str:
    """The raw text of an LM split (offline file, else the hub)."""
    if name not in LM_DATASETS:
        raise ValueError(f"unknown language-modeling dataset {name!r}; known: {sorted(LM_DATASETS)}")
    files, (hub_path, hub_cfg, field) = LM_DATASETS[name]
    if split not in ("train", "valid", "test"):
        raise ValueError(f"unknown split {split!r}; use train, valid or test")
    root = data_dir()
    path = root / files[split] if (root and split in files) else None
    if path is not None and path.is_file():
        return path.read_text(encoding="utf-8")
    try:
        import datasets

        ds = datasets.load_dataset(hub_path, hub_cfg, split=HUB_SPLITS.get(split, split))
        return "\n".join(ds[field])
    except Exception as e:  # noqa: BLE001 - any hub failure becomes the same clear error
        raise _missing(f"{name} {split}", path or (root / f"<no offline copy of {name} {split}>" if root else None),
                       f"{hub_path}/{hub_cfg or ''}", e) from e


def _cache_dir() -> Path:
    return Path(os.environ.get("QLIB_CACHE_DIR", Path.home() / ".cache" / "qlib"))


def tokenize_text(text: str, tokenizer, cache: bool = True) -> torch.Tensor:
    """Token ids of ``text`` (1-D int64). Lines are joined as they are in the file. Cached on disk by content."""
    key = hashlib.sha1((tokenizer.name_or_path + str(len(tokenizer)) + type(tokenizer).__name__).encode()
                       + text.encode()).hexdigest()[:20]
    path = _cache_dir() / f"tokens-{key}.pt"
    if cache and path.is_file():
        return torch.load(path)
    lines = text.splitlines(keepends=True)
    # chunks of whole lines: byte-level BPE never merges across a newline, so chunking changes no token
    chunks = ["".join(lines[i:i + 2000]) for i in range(0, len(lines), 2000)]
    ids = [tok for enc in tokenizer(chunks, add_special_tokens=False)["input_ids"] for tok in enc]
    out = torch.tensor(ids, dtype=torch.long)
    if cache:
        atomic_torch_save(out, path)
    return out


def lm_blocks(name: str, split: str, tokenizer, seq_len: int, max_tokens: int | None = None) -> torch.Tensor:
    """``[N, seq_len]`` contiguous token blocks of an LM split (optionally only its first ``max_tokens``)."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    ids = tokenize_text(read_lm_text(name, split), tokenizer)
    if max_tokens is not None:
        ids = ids[:max_tokens]
    n = ids.numel() // seq_len
    if n == 0:
        raise ValueError(f"{name} {split} has {ids.numel()} tokens: not one block of {seq_len}")
    return ids[: n * seq_len].view(n, seq_len)


# ----------------------------------------------------------------------------------------------------------------
# XSum
# ----------------------------------------------------------------------------------------------------------------

_XSUM_FIELD = re.compile(r"\[XSUM\](URL|INTRODUCTION|RESTBODY)\[XSUM\]\n")


def parse_xsum_file(text: str) -> dict:
    parts = _XSUM_FIELD.split(text)
    fields = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    if "INTRODUCTION" not in fields or "RESTBODY" not in fields:
        raise ValueError("not an XSum .data file (no [XSUM]INTRODUCTION[XSUM] / [XSUM]RESTBODY[XSUM] fields)")
    return {"id": fields.get("URL", "").rsplit("/", 1)[-1], "document": fields["RESTBODY"],
            "summary": fields["INTRODUCTION"]}


def xsum_examples(split: str, limit: int | None = None) -> list[dict]:
    """XSum (document, summary) pairs. Offline: the test sample in ``QLIB_DATA_DIR/xsum-sample`` (test only)."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"unknown split {split!r}; use train, valid or test")
    root = data_dir()
    folder = root / "xsum-sample" if root else None
    if split == "test" and folder is not None and folder.is_dir():
        files = sorted(folder.glob("*.data"))
        return [parse_xsum_file(f.read_text(encoding="utf-8")) for f in files[:limit]]
    try:
        import datasets

        ds = datasets.load_dataset("EdinburghNLP/xsum", split=HUB_SPLITS.get(split, split))
        rows = ds if limit is None else ds.select(range(min(limit, len(ds))))
        return [{"id": r["id"], "document": r["document"], "summary": r["summary"]} for r in rows]
    except Exception as e:  # noqa: BLE001
        offline = folder if split == "test" else (root / f"<no offline XSum {split} split>" if root else None)
        raise _missing(f"XSum {split}", offline, "EdinburghNLP/xsum", e) from e


# the offline stand-in for XSum's training split: the 321 offline test articles, shuffled once with a fixed seed
# and cut into parts (the valid part picks the budget; the test part is read once per finished run)
XSUM_SAMPLE_PARTS = {"train": 221, "valid": 50, "test": 50}


def summarization_examples(name: str, split: str, limit: int | None = None, seed: int = 0) -> list[dict]:
    """(document, summary) pairs of ``xsum`` (the real splits, hub) or ``xsum-sample`` (the offline stand-in: fixed
    parts of the 321 offline test articles, disjoint by article)."""
    if name == "xsum":
        return xsum_examples(split, limit)
    if name != "xsum-sample":
        raise ValueError(f"unknown summarization dataset {name!r}: 'xsum' (hub) or 'xsum-sample' (offline)")
    if split not in XSUM_SAMPLE_PARTS:
        raise ValueError(f"unknown split {split!r}; use train, valid or test")
    articles = xsum_examples("test")
    if len(articles) != sum(XSUM_SAMPLE_PARTS.values()):
        raise ValueError(f"xsum-sample expects the {sum(XSUM_SAMPLE_PARTS.values())} offline XSum articles, found "
                         f"{len(articles)}: check QLIB_DATA_DIR/xsum-sample")
    order = random.Random(seed).sample(range(len(articles)), len(articles))
    start = 0
    for part, n in XSUM_SAMPLE_PARTS.items():
        if part == split:
            return [articles[i] for i in order[start:start + n]][:limit]
        start += n
    raise AssertionError("unreachable")


# decoder-only summarization: the article, this prompt, then the summary (the model learns to stop with EOS)
SUMMARY_PROMPT = "\nSummary in one sentence:"


def summarization_lm_batch(examples: list[dict], tokenizer, source_len: int = 512, target_len: int = 64) -> dict:
    """Decoder-only inputs: article (its first ``source_len`` tokens) + ``SUMMARY_PROMPT`` + summary + EOS, right
    padded; ``labels`` are the summary's tokens (-100 elsewhere); ``summary_mask`` marks the positions whose next
    token is one of them (where distillation compares the logits, as a BART decoder's positions)."""
    eos = tokenizer.eos_token_id
    prompts = summarization_prompts(examples, tokenizer, source_len)
    rows = []
    for p, e in zip(prompts, examples):
        target = tokenizer(" " + e["summary"], add_special_tokens=False)["input_ids"][:target_len] + [eos]
        rows.append((p + target, len(p)))
    L = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), L), eos, dtype=torch.long)
    labels = torch.full((len(rows), L), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    predicts = torch.zeros((len(rows), L), dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, n_prompt: len(ids)] = input_ids[i, n_prompt: len(ids)]
        mask[i, : len(ids)] = 1
        predicts[i, n_prompt - 1: len(ids) - 1] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "summary_mask": predicts}


def summarization_prompts(examples: list[dict], tokenizer, source_len: int = 512) -> list[list[int]]:
    """The token ids a decoder-only summarizer is given: the article's first ``source_len`` tokens + the prompt."""
    prompt = tokenizer(SUMMARY_PROMPT, add_special_tokens=False)["input_ids"]
    return [tokenizer(e["document"], add_special_tokens=False)["input_ids"][:source_len] + prompt for e in examples]


def summarization_batch(examples: list[dict], tokenizer, source_len: int = 512, target_len: int = 64) -> dict:
    """Tokenize (document -> summary) pairs for BART; padding positions of the labels are -100."""
    src = tokenizer([e["document"] for e in examples], max_length=source_len, truncation=True, padding=True,
                    return_tensors="pt")
    tgt = tokenizer([e["summary"] for e in examples], max_length=target_len, truncation=True, padding=True,
                    return_tensors="pt")
    labels = tgt["input_ids"].masked_fill(tgt["attention_mask"] == 0, -100)
    return {"input_ids": src["input_ids"], "attention_mask": src["attention_mask"], "labels": labels,
            "decoder_attention_mask": tgt["attention_mask"]}


# ----------------------------------------------------------------------------------------------------------------
# Persona-Chat (double-head GPT-2)
# ----------------------------------------------------------------------------------------------------------------


def personachat_dialogs(split: str, limit: int | None = None) -> list[dict]:
    """Persona-Chat turns as dicts with ``personality`` (list of str), ``history`` (list of str) and ``candidates``
    (list of str, gold reply last). Not available offline: needs the hub."""
    try:
        import datasets

        ds = datasets.load_dataset("bavard/personachat_truecased", split=HUB_SPLITS.get(split, split))
        rows = ds if limit is None else ds.select(range(min(limit, len(ds))))
        return [{"personality": r["personality"], "history": r["history"], "candidates": r["candidates"]}
                for r in rows]
    except Exception as e:  # noqa: BLE001
        raise _missing(f"Persona-Chat {split}", None, "bavard/personachat_truecased", e) from e


CHITCHAT_PACKAGE = ("chitchat_dataset", "chitchat-dataset==0.9.0")
DIALOGUE_SPLITS = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0)}  # by conversation


@functools.lru_cache(maxsize=1)
def chitchat_conversations() -> tuple[dict, ...]:
    """The BYU Chit-Chat Challenge conversations (2018) as strictly alternating turns (a speaker's consecutive
    messages merged), those with at least 4 turns, in id order: ({"id", "prompt", "turns"}, ...)."""
    path = package_dir(*CHITCHAT_PACKAGE) / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall `pip install --no-deps --force-reinstall "
                                f"{CHITCHAT_PACKAGE[1]}`")
    raw = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for cid in sorted(raw):
        turns, last = [], None
        for group in raw[cid]["messages"]:
            for m in group:
                text = " ".join(m["text"].split())
                if not text:
                    continue
                if m["sender"] == last:
                    turns[-1] += " " + text
                else:
                    turns.append(text)
                    last = m["sender"]
        if len(turns) >= 4:
            out.append({"id": cid, "prompt": raw[cid].get("prompt") or "", "turns": tuple(turns)})
    return tuple(out)


def chitchat_dialogs(split: str, limit: int | None = None, num_candidates: int = 20, max_history: int = 8,
                     seed: int = 0) -> list[dict]:
    """A Persona-Chat-style next-utterance task from the Chit-Chat corpus, generated deterministically: the
    conversations are split 80/10/10 (a seeded shuffle); every turn from the third on is the gold reply to the up to
    ``max_history`` turns before it, with ``num_candidates - 1`` distractors drawn from the replies of *other*
    conversations of the same split (never a copy of the gold text, such as another "haha"); the conversation's topic prompt stands where Persona-Chat has personas.
    Examples come in a seeded order, so ``limit`` takes a spread of conversations. Same dict shape as
    ``personachat_dialogs`` (gold reply last)."""
    if split not in DIALOGUE_SPLITS:
        raise ValueError(f"unknown split {split!r}; use train, valid or test")
    convs = chitchat_conversations()
    order = random.Random(seed).sample(range(len(convs)), len(convs))
    lo, hi = (round(f * len(convs)) for f in DIALOGUE_SPLITS[split])
    part = [convs[i] for i in order[lo:hi]]
    replies = [(ci, t) for ci, c in enumerate(part) for t in range(1, len(c["turns"]))]
    slots = [(ci, t) for ci, c in enumerate(part) for t in range(2, len(c["turns"]))]
    random.Random(f"{seed}:{split}:order").shuffle(slots)
    out = []
    for ci, t in slots[:limit]:
        c = part[ci]
        rng, distractors = random.Random(f"{seed}:{split}:{ci}:{t}"), []
        while len(distractors) < num_candidates - 1:
            cj, tj = replies[rng.randrange(len(replies))]
            if cj != ci and part[cj]["turns"][tj] != c["turns"][t]:  # a copy of the gold text cannot be told apart
                distractors.append(part[cj]["turns"][tj])
        out.append({"personality": [f"Topic: {c['prompt']}"] if c["prompt"] else [],
                    "history": list(c["turns"][max(0, t - max_history):t]),
                    "candidates": distractors + [c["turns"][t]], "conversation": c["id"]})
    return out


def dialog_examples(name: str, split: str, limit: int | None = None) -> list[dict]:
    """Next-utterance examples of ``personachat`` (hub) or ``chitchat`` (offline stand-in)."""
    if name == "personachat":
        return personachat_dialogs(split, limit)
    if name == "chitchat":
        return chitchat_dialogs(split, limit)
    raise ValueError(f"unknown dialogue dataset {name!r}: 'personachat' (hub) or 'chitchat' (offline)")


def personachat_batch(dialogs: list[dict], tokenizer, num_candidates: int = 20, max_len: int = 512,
                      max_history: int = 2) -> dict:
    """Double-head inputs: ``input_ids`` [B, C, L] (persona + history + candidate), ``mc_token_ids`` [B, C] (the
    last token of each candidate), ``lm_labels`` (-100 except the gold reply's tokens), ``mc_labels`` [B] (the gold
    candidate, the last one), ``attention_mask``. Sequences are left-truncated to ``max_len``."""
    eos = tokenizer.eos_token_id
    if num_candidates < 2:
        raise ValueError("num_candidates must be >= 2")
    all_ids, all_lab, all_mc = [], [], []
    for d in dialogs:
        cands = d["candidates"][-num_candidates:]
        if len(cands) < num_candidates:
            raise ValueError(f"a dialog has {len(cands)} candidates, fewer than num_candidates={num_candidates}")
        context = " ".join(d["personality"]) + " " + " ".join(d["history"][-(2 * max_history + 1):])
        ctx = tokenizer(context, add_special_tokens=False)["input_ids"] + [eos]
        for c_i, cand in enumerate(cands):
            reply = tokenizer(" " + cand, add_special_tokens=False)["input_ids"] + [eos]
            ids = (ctx + reply)[-max_len:]
            gold = c_i == len(cands) - 1
            n_reply = min(len(reply), len(ids))
            labels = [-100] * (len(ids) - n_reply) + (ids[-n_reply:] if gold else [-100] * n_reply)
            all_ids.append(ids), all_lab.append(labels), all_mc.append(len(ids) - 1)
    L = max(len(x) for x in all_ids)
    B, C = len(dialogs), num_candidates
    input_ids = torch.full((B * C, L), eos, dtype=torch.long)
    lm_labels = torch.full((B * C, L), -100, dtype=torch.long)
    mask = torch.zeros((B * C, L), dtype=torch.long)
    for i, (ids, lab) in enumerate(zip(all_ids, all_lab)):
        input_ids[i, : len(ids)], lm_labels[i, : len(lab)], mask[i, : len(ids)] = (torch.tensor(ids),
                                                                                    torch.tensor(lab), 1)
    return {"input_ids": input_ids.view(B, C, L), "attention_mask": mask.view(B, C, L),
            "mc_token_ids": torch.tensor(all_mc).view(B, C), "lm_labels": lm_labels.view(B, C, L),
            "mc_labels": torch.full((B,), C - 1, dtype=torch.long)}


# ----------------------------------------------------------------------------------------------------------------
# GLUE (XTC)
# ----------------------------------------------------------------------------------------------------------------

# task: (offline folder, columns (text_a, text_b | None, label), has header, label map | None (regression), metric)
GLUE_TASKS = {
    "sst2": ("SST-2", ("sentence", None, "label"), True, {"0": 0, "1": 1}, "accuracy"),
    "cola": ("CoLA", (3, None, 1), False, {"0": 0, "1": 1}, "mcc"),
    "mrpc": ("MRPC", ("#1 String", "#2 String", "Quality"), True, {"0": 0, "1": 1}, "f1"),
    "rte": ("RTE", ("sentence1", "sentence2", "label"), True, {"not_entailment": 0, "entailment": 1}, "accuracy"),
    "stsb": ("STS-B", ("sentence1", "sentence2", "score"), True, None, "pearson"),
}
GLUE_SPLITS = {"train": "train.tsv", "valid": "dev.tsv"}


def glue_num_labels(task: str) -> int:
    return 1 if GLUE_TASKS[task][3] is None else len(GLUE_TASKS[task][3])


def glue_examples(task: str, split: str, limit: int | None = None) -> list[dict]:
    """GLUE examples as dicts (text_a, text_b, label); offline from ``QLIB_DATA_DIR/glue/<TASK>/`` (plain
    tab-separated text, no CSV quoting), else from the hub. The labelled splits are train and valid (dev)."""
    if task not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; known: {sorted(GLUE_TASKS)}")
    if split not in GLUE_SPLITS:
        raise ValueError(f"GLUE split must be train or valid (the test split has no labels), got {split!r}")
    folder, (ca, cb, cl), header, labels, _ = GLUE_TASKS[task]
    root = data_dir()
    path = root / "glue" / folder / GLUE_SPLITS[split] if root else None
    if path is not None and path.is_file():
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        names = lines[0].split("\t") if header else None
        rows = [line.split("\t") for line in (lines[1:] if header else lines) if line.strip()]
        col = (lambda c: names.index(c)) if header else (lambda c: c)
        ia, il = col(ca), col(cl)
        ib = col(cb) if cb is not None else None
        out = []
        for r in rows[:limit]:
            y = float(r[il]) if labels is None else labels[r[il].strip()]
            out.append({"text_a": r[ia], "text_b": r[ib] if ib is not None else None, "label": y})
        return out
    try:
        import datasets

        hub_split = {"valid": "validation"}.get(split, split)
        ds = datasets.load_dataset("nyu-mll/glue", task, split=hub_split)
        keys = [k for k in ds.column_names if k not in ("label", "idx")]
        return [{"text_a": r[keys[0]], "text_b": r[keys[1]] if len(keys) > 1 else None, "label": r["label"]}
                for r in (ds if limit is None else ds.select(range(min(limit, len(ds)))))]
    except Exception as e:  # noqa: BLE001
        raise _missing(f"GLUE {task} {split}", path, "nyu-mll/glue", e) from e


def classification_batch(examples: list[dict], tokenizer, max_len: int = 128) -> dict:
    a = [e["text_a"] for e in examples]
    b = [e["text_b"] for e in examples] if examples and examples[0]["text_b"] is not None else None
    enc = tokenizer(a, b, max_length=max_len, truncation=True, padding=True, return_tensors="pt")
    regression = isinstance(examples[0]["label"], float) if examples else False
    labels = torch.tensor([e["label"] for e in examples], dtype=torch.float if regression else torch.long)
    return {**{k: v for k, v in enc.items()}, "labels": labels}
