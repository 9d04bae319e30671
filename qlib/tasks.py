"""Tasks by name: each owns its data (training batches, evaluation splits), its forward pass in the shape the
losses need, its task loss (what a teacher is fine-tuned with) and its evaluation. Adding a task is one class here
and one line in ``TASKS``; the trainer never asks which task it runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.models.bart.modeling_bart import shift_tokens_right

from . import data as D
from . import evaluate as E
from .losses import logit_distillation


@dataclass
class Outputs:
    """A forward pass in a task-independent shape: the model's output object, token logits ``[N, L, V]`` (or
    ``[N, C]`` for classification), the mask of real tokens, the hidden states (when asked) and the token ids they
    belong to (the memory bank's rows)."""

    out: object
    logits: torch.Tensor
    mask: torch.Tensor | None
    states: tuple | None
    ids: torch.Tensor | None


def _token_cross_entropy(logits, targets, ignore_index=-100):
    """Next-token cross-entropy: position t predicts token t + 1."""
    logits = logits[..., :-1, :].float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[..., 1:].reshape(-1),
                           ignore_index=ignore_index)


class Task:
    """The interface every task implements (see the module docstring)."""

    def __init__(self, cfg, tokenizer, data=None):
        self.cfg, self.tokenizer = cfg, tokenizer

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, idx: torch.Tensor) -> dict:
        raise NotImplementedError

    @staticmethod
    def forward(cfg, model, batch: dict, hidden: bool) -> Outputs:
        raise NotImplementedError

    @staticmethod
    def task_loss(outputs: Outputs, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def model_kwargs(cfg) -> dict:
        """What ``models.load_model`` needs beyond the name for this task (a classifier's number of labels)."""
        return {}

    @staticmethod
    def extra_distillation(student: Outputs, teacher: Outputs) -> torch.Tensor | None:
        """A task's own distillation term beside the token logits (the double head's choice), or None."""
        return None

    def evaluate(self, model, device, final: bool) -> dict:
        raise NotImplementedError


class LMTask(Task):
    """Language modeling on contiguous token blocks; perplexity at the evaluation context."""

    def __init__(self, cfg, tokenizer, data=None):
        super().__init__(cfg, tokenizer)
        self.train = D.lm_blocks(cfg.dataset, "train", tokenizer, cfg.seq_len, cfg.train_tokens)
        self.valid = D.lm_blocks(cfg.dataset, "valid", tokenizer, cfg.eval_context, cfg.eval_tokens)
        self.test = D.lm_blocks(cfg.dataset, "test", tokenizer, cfg.eval_context, cfg.test_tokens)

    def __len__(self):
        return len(self.train)

    def batch(self, idx):
        return {"input_ids": self.train[idx]}

    @staticmethod
    def forward(cfg, model, batch, hidden):
        out = model(input_ids=batch["input_ids"], output_hidden_states=hidden)
        return Outputs(out, out.logits, torch.ones_like(batch["input_ids"]), out.hidden_states if hidden else None,
                       batch["input_ids"])

    @staticmethod
    def task_loss(outputs, batch):
        return _token_cross_entropy(outputs.logits, batch["input_ids"])

    def evaluate(self, model, device, final: bool):
        cfg, ppl = self.cfg, E.perplexity
        kw = dict(batch_size=cfg.eval_batch_size, device=device, progress=cfg.progress, dtype=cfg.dtype)
        out = {"valid_ppl": ppl(model, self.valid, desc="valid ppl", **kw)}
        if final:
            out["test_ppl"] = ppl(model, self.test, desc="test ppl", **kw)
            for name in cfg.extra_eval:  # zero-shot transfer sets
                blocks = D.lm_blocks(name, "test", self.tokenizer, cfg.eval_context, cfg.test_tokens)
                out[f"{name}_test_ppl"] = ppl(model, blocks, desc=f"{name} ppl", **kw)
        return out


class _ExampleTask(Task):
    """A task whose splits are lists of examples, turned into batches by ``collate``. ``splits`` names the training
    split, the validation split (learning curve) and optionally a test split (read at the end). ``examples`` may be
    given directly as {split: [...]} (tests, notebooks); otherwise ``load`` reads each split, the evaluation splits
    capped by ``eval_examples`` / ``test_examples``."""

    splits = ("train", "valid")

    def __init__(self, cfg, tokenizer, examples: dict | None = None):
        super().__init__(cfg, tokenizer)
        caps = (cfg.max_examples, cfg.eval_examples or cfg.max_examples, cfg.test_examples or cfg.max_examples)
        examples = examples or {s: self.load(s, cap) for s, cap in zip(self.splits, caps)}
        self.train_ex, self.eval_ex = examples[self.splits[0]], examples[self.splits[1]]
        self.test_ex = examples.get(self.splits[2]) if len(self.splits) > 2 else None

    def load(self, split: str, limit: int | None) -> list:
        raise NotImplementedError

    def collate(self, examples: list) -> dict:
        raise NotImplementedError

    def __len__(self):
        return len(self.train_ex)

    def batch(self, idx):
        return self.collate([self.train_ex[i] for i in idx.tolist()])

    def eval_batches(self, examples: list | None = None):
        examples, bs = self.eval_ex if examples is None else examples, self.cfg.eval_batch_size
        return [self.collate(examples[i:i + bs]) for i in range(0, len(examples), bs)]


class MCTask(_ExampleTask):
    """Next-utterance prediction with a double-head model (Persona-Chat, or the Chit-Chat stand-in): LM head +
    multiple-choice head. Training batches hold ``train_candidates`` replies per example (the gold one and the
    last distractors); evaluation always all ``num_candidates`` (hits@1 = accuracy of the MC head's argmax)."""

    splits = ("train", "valid", "test")

    def __init__(self, cfg, tokenizer, examples=None):
        if cfg.dataset == "personachat":  # the paper reports validation: the hub version has no test split
            self.splits = ("train", "valid")
        super().__init__(cfg, tokenizer, examples)

    def load(self, split, limit):
        return D.dialog_examples(self.cfg.dataset, split, limit)

    def collate(self, dialogs, candidates: int | None = None):
        return D.personachat_batch(dialogs, self.tokenizer, candidates or self.cfg.num_candidates, self.cfg.seq_len)

    def batch(self, idx):
        return self.collate([self.train_ex[i] for i in idx.tolist()], self.cfg.train_candidates)

    @staticmethod
    def forward(cfg, model, batch, hidden):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    mc_token_ids=batch["mc_token_ids"], output_hidden_states=hidden)
        B, C, L = batch["input_ids"].shape
        states = tuple(h.reshape(B * C, L, -1) for h in out.hidden_states) if hidden else None
        return Outputs(out, out.logits.view(B * C, L, -1), batch["attention_mask"].view(B * C, L), states,
                       batch["input_ids"].view(B * C, L))

    @staticmethod
    def task_loss(outputs, batch):
        lm = _token_cross_entropy(outputs.out.logits, batch["lm_labels"])
        return lm + F.cross_entropy(outputs.out.mc_logits.float(), batch["mc_labels"])

    @staticmethod
    def extra_distillation(student, teacher):
        return logit_distillation(student.out.mc_logits, teacher.out.mc_logits)

    def evaluate(self, model, device, final: bool):
        batches = self.eval_batches()
        # hits@1 over 40-100 examples moves in steps of 1-2.5 points: the gold reply's perplexity is the finer
        # signal a rate sweep reads (``dialogue-lr``)
        out = {"valid_mc_acc": E.mc_accuracy(model, batches, device, self.cfg.progress),
               "valid_reply_ppl": E.label_perplexity(model, [E.gold_reply_batch(b) for b in batches], device,
                                                     "reply ppl", self.cfg.progress, self.cfg.dtype)}
        if final and self.test_ex is not None:  # per example too: comparisons read their bootstrap spread
            picks, gold = E.mc_picks(model, self.eval_batches(self.test_ex), device, self.cfg.progress)
            hits = [int(p == g) for p, g in zip(picks, gold)]
            # the picks: which reply each run chose for the same examples (chapter 5's samples)
            out.update(test_mc_acc=100.0 * sum(hits) / max(len(hits), 1), test_mc_hits=hits, test_mc_picks=picks)
        return out


class SummarizationTask(_ExampleTask):
    """XSum with an encoder-decoder (BART), evaluated by beam search and ROUGE on the test split."""

    splits = ("train", "test")

    def load(self, split, limit):
        return D.xsum_examples(split, limit)

    def collate(self, examples):
        return D.summarization_batch(examples, self.tokenizer, self.cfg.source_len, self.cfg.target_len)

    @staticmethod
    def forward(cfg, model, batch, hidden):
        labels = batch["labels"]
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                    decoder_attention_mask=batch["decoder_attention_mask"], output_hidden_states=hidden)
        mcfg = getattr(model, "module", model).config  # DDP wraps the model
        dec_ids = shift_tokens_right(labels.masked_fill(labels == -100, mcfg.pad_token_id), mcfg.pad_token_id,
                                     mcfg.decoder_start_token_id)
        return Outputs(out, out.logits, batch["decoder_attention_mask"],
                       out.decoder_hidden_states if hidden else None, dec_ids)

    @staticmethod
    def task_loss(outputs, batch):
        return outputs.out.loss

    def evaluate(self, model, device, final: bool):
        preds = E.summarize(model, self.tokenizer, [e["document"] for e in self.eval_ex], self.cfg.source_len,
                            self.cfg.target_len, batch_size=self.cfg.eval_batch_size, device=device,
                            progress=self.cfg.progress)
        return _rouge_and_samples(preds, self.eval_ex, "test")


def _rouge_and_samples(preds: list[str], examples: list[dict], split: str, samples: int = 3) -> dict:
    """ROUGE of ``preds`` against the examples' summaries, with the first few generated summaries (Table 10)."""
    per = E.rouge_per_example(preds, [e["summary"] for e in examples])
    scores = {k: sum(v) / max(len(v), 1) for k, v in per.items()}
    return {**{f"{split}_{k}": v for k, v in scores.items()}, f"{split}_rougeL_per_article": per["rougeL"],
            "examples": [
        {"document": e["document"][:500], "reference": e["summary"], "generated": p}
        for e, p in list(zip(examples, preds))[:samples]]}


class SummarizationLMTask(_ExampleTask):
    """Summarization by a decoder-only LM (the offline stand-in for BART): the article, a prompt, then the summary.
    The task loss, the distillation and the contrastive loss read the summary's positions only (as BART's
    decoder; ``distill_span="all"``: the distillation losses read every position); the learning curve is the summary's perplexity given the article on the validation part; the end
    adds beam search (beam 6, length penalty 1, the paper's) and ROUGE on the test part."""

    splits = ("train", "valid", "test")

    def load(self, split, limit):
        return D.summarization_examples(self.cfg.dataset, split, limit)

    def collate(self, examples):
        return D.summarization_lm_batch(examples, self.tokenizer, self.cfg.source_len, self.cfg.target_len)

    @staticmethod
    def forward(cfg, model, batch, hidden):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    output_hidden_states=hidden)
        mask = batch["summary_mask"] if cfg.distill_span == "target" else batch["attention_mask"]
        return Outputs(out, out.logits, mask, out.hidden_states if hidden else None, batch["input_ids"])

    @staticmethod
    def task_loss(outputs, batch):
        return _token_cross_entropy(outputs.logits, batch["labels"])

    def evaluate(self, model, device, final: bool):
        cfg = self.cfg
        out = {"valid_ppl": E.label_perplexity(model, self.eval_batches(), device, "summary ppl", cfg.progress,
                                               cfg.dtype)}
        if final:
            prompts = D.summarization_prompts(self.test_ex, self.tokenizer, cfg.source_len)
            preds = E.summarize_lm(model, self.tokenizer, prompts, cfg.target_len, batch_size=cfg.eval_batch_size,
                                   device=device, progress=cfg.progress)
            out.update(_rouge_and_samples(preds, self.test_ex, "test"))
        return out


class ClassificationTask(_ExampleTask):
    """GLUE sentence(-pair) classification or regression (XTC)."""

    def load(self, split, limit):
        return D.glue_examples(self.cfg.dataset, split, limit)

    def collate(self, examples):
        return D.classification_batch(examples, self.tokenizer, self.cfg.seq_len)

    @staticmethod
    def model_kwargs(cfg):
        return {"num_labels": D.glue_num_labels(cfg.dataset)}

    @staticmethod
    def forward(cfg, model, batch, hidden):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        xtc = cfg.resolved_loss == "xtc"  # XTC distills hidden states and attention scores
        out = model(**inputs, output_hidden_states=xtc, output_attentions=xtc)
        return Outputs(out, out.logits, batch["attention_mask"], None, None)

    @staticmethod
    def task_loss(outputs, batch):
        logits = outputs.logits
        if logits.shape[-1] == 1:  # regression (STS-B)
            return F.mse_loss(logits[:, 0].float(), batch["labels"].float())
        return F.cross_entropy(logits.float(), batch["labels"])

    def evaluate(self, model, device, final: bool):
        preds, labels = E.classify(model, self.eval_batches(), device, self.cfg.progress)
        regression = D.glue_num_labels(self.cfg.dataset) == 1
        return {f"valid_{k}": v for k, v in E.glue_metrics(preds, labels, regression).items()}


TASKS: dict[str, type[Task]] = {"lm": LMTask, "mc": MCTask, "summarization": SummarizationTask,
                                "summarization-lm": SummarizationLMTask, "classification": ClassificationTask}


def make_task(cfg, tokenizer, data=None) -> Task:
    return TASKS[cfg.task](cfg, tokenizer, data)
