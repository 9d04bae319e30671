"""One training loop for every task: fine-tune the full-precision teacher (``method="fp"``), or quantization-aware
training of a student initialised from the teacher, with the method's losses.

``train(TrainConfig(...))`` is the one entry point; ``python -m qlib train`` and the notebooks call it.
Checkpoints (model, optimizer, scheduler, memory bank, RNG states, step) are written atomically every
``save_every`` steps; ``resume=True`` continues a killed run so that it ends exactly where an uninterrupted run ends
(the data order is a pure function of seed and epoch). A NaN/inf loss stops the run with ``NonFiniteLossError`` and
leaves the last good checkpoint in place.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import load_model as load_safetensors_model
from safetensors.torch import save_model as save_safetensors_model
from tqdm.auto import tqdm

from . import data as D
from . import distributed as dist
from . import evaluate as E
from .losses import (NEGATIVE_MODES, ContrastiveHeads, TokenContrastiveLoss, logit_distillation, teacher_entropy,
                     total_loss)
from .models import MODEL_NAMES, load_model, load_tokenizer
from .modules import QuantConfig, quantize_model, quantizer_parameters, set_gamma
from .packing import size_mb
from .quant import bind_laq_hessians
from .runtime import (DTYPES, atomic_torch_save, autocast, load_checkpoint, provenance, resolve_device, rng_state,
                      seed_everything, set_rng_state)

TASKS = ("lm", "mc", "summarization", "classification")
METHODS = ("fp", "minmax", "pact", "lsq", "laq", "mds", "mds_pact_grad", "twn", "bwn")
LOSSES = ("auto", "lm", "dist", "dist+cont", "xtc")
LAYERS = ("last", "first", "encoder")


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Everything a run needs. Defaults: a 2-2-8 QuantGPT student of SmolLM2-135M on PTB (paper hyper-parameters,
    a CPU-sized token budget)."""

    task: str = "lm"
    model: str = "smollm2-135m"
    dataset: str = "ptb"
    method: str = "mds"  # "fp": fine-tune the full-precision teacher
    w_bits: int = 2
    e_bits: int | None = None
    a_bits: int | None = 8
    teacher: str | None = None  # folder of a finished "fp" run (its model.safetensors); None: the pretrained model
    loss: str = "auto"  # auto: fp -> lm; mds -> dist+cont; other methods -> dist (as the paper's baselines)
    lam: float = 0.1
    num_negatives: int = 64
    temperature: float = 0.1
    momentum: float = 0.5
    negatives: str = "teacher"
    use_bank: bool = True
    contrast_layer: str = "last"
    proj_dim: int = 128
    seq_len: int = 512
    eval_seq_len: int | None = None  # context of the LM evaluations (None: seq_len); presets use the paper's 512
    batch_size: int = 4
    grad_accum: int = 1
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs
    train_tokens: int | None = None  # use only the first N tokens of the train split
    lr: float = 5e-4
    quant_lr: float = 1e-3
    gamma_init: float = 1.0  # where dynamic scaling's gamma starts (the paper: 1, i.e. alpha = mean|w|)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_every: int = 0  # 0: only at step 0, the curve points and the end
    curve_points: int = 6  # validation PPL at this many log-spaced steps of the budget (plus step 0 and the end)
    eval_tokens: int | None = None  # cap on validation tokens during training (test is always complete)
    test_tokens: int | None = None  # cap on test tokens (None: the whole test split)
    extra_eval: tuple[str, ...] = ()  # more LM test sets, zero-shot (e.g. "wikitext2")
    save_every: int = 50
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"  # auto: bf16 autocast on CUDA and on CPUs with bf16 matrix units, else fp32
    out_dir: str = "runs/default"
    resume: bool = False
    preset: str = "custom"
    progress: bool = True
    eval_batch_size: int = 8
    max_examples: int | None = None  # mc / summarization: cap on examples per split
    num_candidates: int = 20
    source_len: int = 512
    target_len: int = 64
    keep_layers: tuple[int, ...] = ()  # layer reduction (XTC): the teacher layers the student keeps
    init_from: str | None = None  # folder of a finished run whose final weights initialise the student
    extra: dict = field(default_factory=dict)  # free-form notes recorded in the result file

    def __post_init__(self):
        checks = [(self.task in TASKS, f"task must be one of {TASKS}, got {self.task!r}"),
                  (self.model in MODEL_NAMES, f"unknown model {self.model!r}; known: {MODEL_NAMES}"),
                  (self.method in METHODS, f"unknown method {self.method!r}; known: {METHODS}"),
                  (self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}"),
                  (self.negatives in NEGATIVE_MODES, f"negatives must be one of {NEGATIVE_MODES}"),
                  (self.contrast_layer in LAYERS, f"contrast_layer must be one of {LAYERS}"),
                  (self.lr > 0 and self.quant_lr > 0, f"learning rates must be > 0, got {self.lr}, {self.quant_lr}"),
                  (self.gamma_init > 0, f"gamma_init must be > 0, got {self.gamma_init}"),
                  (self.gamma_init == 1.0 or self.method in ("mds", "mds_pact_grad"),
                   f"gamma_init applies to dynamic scaling (mds, mds_pact_grad) only, not {self.method!r}"),
                  (self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1"),
                  (self.seq_len >= 2, f"seq_len must be >= 2, got {self.seq_len}"),
                  (self.eval_seq_len is None or self.eval_seq_len >= 2, "eval_seq_len must be >= 2"),
                  (self.epochs > 0 or (self.max_steps or 0) > 0, "train for epochs > 0 or max_steps > 0"),
                  (self.save_every >= 1, "save_every must be >= 1"),
                  (self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}"),
                  (self.curve_points >= 0, f"curve_points must be >= 0, got {self.curve_points}"),
                  (self.lam >= 0, f"lam must be >= 0, got {self.lam}")]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        if self.method != "fp":
            self.quant_config()  # validates bits
        if self.task == "lm" and self.num_negatives >= self.seq_len and self.uses_contrastive:
            raise ValueError(f"num_negatives={self.num_negatives} must be smaller than seq_len={self.seq_len}")
        if self.contrast_layer == "encoder" and self.task != "summarization":
            raise ValueError("contrast_layer='encoder' needs an encoder-decoder model (task='summarization')")
        self.extra_eval = tuple(self.extra_eval)
        self.keep_layers = tuple(self.keep_layers)
        if self.resolved_loss == "xtc" and self.task != "classification":
            raise ValueError("loss 'xtc' (XTC's one-stage distillation) is for task='classification'")

    @property
    def resolved_loss(self) -> str:
        if self.loss != "auto":
            return self.loss
        if self.task == "classification":  # XTC: task loss for the teacher, one-stage KD for every student
            return "lm" if self.method == "fp" and not self.keep_layers else "xtc"
        return {"fp": "lm", "mds": "dist+cont"}.get(self.method, "dist")

    @property
    def eval_context(self) -> int:
        return self.eval_seq_len or self.seq_len

    @property
    def uses_contrastive(self) -> bool:
        return self.resolved_loss == "dist+cont"

    def quant_config(self) -> QuantConfig:
        if self.resolved_loss == "xtc":
            from .xtc import xtc_quant_config
            return xtc_quant_config(self.method, self.w_bits)
        extra = ("multiple_choice_head.summary",) if self.task == "mc" else ()
        return QuantConfig(self.method, self.w_bits, self.e_bits, self.a_bits, extra_modules=extra)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**d)


# ----------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------


def save_weights(model, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_safetensors_model(model, str(tmp))
    os.replace(tmp, path)


def load_run_weights(model, run_dir: str, what: str) -> None:
    """Load the final weights of a finished run (``run_dir/model.safetensors``) into ``model``, or say why not."""
    weights = Path(run_dir) / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{what} weights {weights} not found: run that run first")
    missing, unexpected = load_safetensors_model(model, str(weights), strict=False)
    if unexpected or missing:
        raise ValueError(f"{weights} does not fit the {what}: missing {list(missing)[:3]}, unexpected "
                         f"{list(unexpected)[:3]} (wrong model/teacher pairing, or other keep_layers?)")


def load_teacher(cfg: TrainConfig, tokenizer):
    kwargs = {"num_labels": D.glue_num_labels(cfg.dataset)} if cfg.task == "classification" else {}
    teacher = load_model(cfg.model, cfg.task, vocab_size=len(tokenizer), seed=cfg.seed, **kwargs)
    if cfg.teacher:
        load_run_weights(teacher, cfg.teacher, "teacher")
    return teacher


# ----------------------------------------------------------------------------------------------------------------
# tasks: data, one forward for the losses, evaluation
# ----------------------------------------------------------------------------------------------------------------


class LMTask:
    def __init__(self, cfg: TrainConfig, tokenizer):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.train = D.lm_blocks(cfg.dataset, "train", tokenizer, cfg.seq_len, cfg.train_tokens)
        self.valid = D.lm_blocks(cfg.dataset, "valid", tokenizer, cfg.eval_context, cfg.eval_tokens)
        self.test = D.lm_blocks(cfg.dataset, "test", tokenizer, cfg.eval_context, cfg.test_tokens)

    def __len__(self):
        return len(self.train)

    def batch(self, idx):
        ids = self.train[idx]
        return {"input_ids": ids}

    def evaluate(self, model, device, final: bool):
        bs, prog = self.cfg.eval_batch_size, self.cfg.progress
        dt = self.cfg.dtype
        out = {"valid_ppl": E.perplexity(model, self.valid, bs, device, "valid ppl", prog, dt)}
        if final:
            out["test_ppl"] = E.perplexity(model, self.test, bs, device, "test ppl", prog, dt)
            for name in self.cfg.extra_eval:  # zero-shot transfer sets
                blocks = D.lm_blocks(name, "test", self.tokenizer, self.cfg.eval_context, self.cfg.test_tokens)
                out[f"{name}_test_ppl"] = E.perplexity(model, blocks, bs, device, f"{name} ppl", prog, dt)
        return out


class _ExampleTask:
    """A task whose splits are lists of examples, turned into batches by ``collate``. ``examples`` may be given
    directly as {split: [...]} (tests, notebooks); otherwise ``load`` reads each split."""

    splits = ("train", "valid")

    def __init__(self, cfg: TrainConfig, tokenizer, examples: dict | None = None):
        self.cfg, self.tokenizer = cfg, tokenizer
        examples = examples or {s: self.load(s) for s in self.splits}
        self.train_ex, self.eval_ex = examples[self.splits[0]], examples[self.splits[1]]

    def __len__(self):
        return len(self.train_ex)

    def batch(self, idx):
        return self.collate([self.train_ex[i] for i in idx.tolist()])

    def eval_batches(self):
        bs = self.cfg.eval_batch_size
        return [self.collate(self.eval_ex[i:i + bs]) for i in range(0, len(self.eval_ex), bs)]


class MCTask(_ExampleTask):
    """Next-utterance prediction with double-head GPT-2 (Persona-Chat)."""

    def load(self, split):
        return D.personachat_dialogs(split, self.cfg.max_examples)

    def collate(self, dialogs):
        return D.personachat_batch(dialogs, self.tokenizer, self.cfg.num_candidates, self.cfg.seq_len)

    def evaluate(self, model, device, final: bool):
        return {"valid_mc_acc": E.mc_accuracy(model, self.eval_batches(), device, self.cfg.progress)}


class SummarizationTask(_ExampleTask):
    """XSum with BART, evaluated by beam search and ROUGE on the test split."""

    splits = ("train", "test")

    def load(self, split):
        return D.xsum_examples(split, self.cfg.max_examples)

    def collate(self, examples):
        return D.summarization_batch(examples, self.tokenizer, self.cfg.source_len, self.cfg.target_len)

    def evaluate(self, model, device, final: bool):
        preds = E.summarize(model, self.tokenizer, [e["document"] for e in self.eval_ex], self.cfg.source_len,
                            self.cfg.target_len, batch_size=self.cfg.eval_batch_size, device=device,
                            progress=self.cfg.progress)
        scores = E.rouge(preds, [e["summary"] for e in self.eval_ex])
        return {**{f"test_{k}": v for k, v in scores.items()}, "examples": [
            {"document": e["document"][:500], "reference": e["summary"], "generated": p}
            for e, p in list(zip(self.eval_ex, preds))[:3]]}


class ClassificationTask(_ExampleTask):
    """GLUE sentence(-pair) classification or regression (XTC)."""

    def load(self, split):
        return D.glue_examples(self.cfg.dataset, split, self.cfg.max_examples)

    def collate(self, examples):
        return D.classification_batch(examples, self.tokenizer, self.cfg.seq_len)

    def evaluate(self, model, device, final: bool):
        preds, labels = E.classify(model, self.eval_batches(), device, self.cfg.progress)
        regression = D.glue_num_labels(self.cfg.dataset) == 1
        return {f"valid_{k}": v for k, v in E.glue_metrics(preds, labels, regression).items()}


def make_task(cfg: TrainConfig, tokenizer, data=None):
    if cfg.task == "classification":
        return ClassificationTask(cfg, tokenizer, data)
    if cfg.task == "lm":
        return LMTask(cfg, tokenizer)
    if cfg.task == "mc":
        return MCTask(cfg, tokenizer, data)
    return SummarizationTask(cfg, tokenizer, data)


def _forward(cfg: TrainConfig, model, batch, hidden: bool):
    """Model outputs plus (logits, mask, contrast states, contrast ids) in a task-independent shape."""
    if cfg.task == "classification":
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        xtc = cfg.resolved_loss == "xtc"
        out = model(**inputs, output_hidden_states=xtc, output_attentions=xtc)
        return out, out.logits, batch["attention_mask"], None, None
    if cfg.task == "lm":
        out = model(input_ids=batch["input_ids"], output_hidden_states=hidden)
        mask = torch.ones_like(batch["input_ids"])
        states = out.hidden_states if hidden else None
        return out, out.logits, mask, states, batch["input_ids"]
    if cfg.task == "mc":
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    mc_token_ids=batch["mc_token_ids"], output_hidden_states=hidden)
        B, C, L = batch["input_ids"].shape
        mask = batch["attention_mask"].view(B * C, L)
        states = tuple(h.reshape(B * C, L, -1) for h in out.hidden_states) if hidden else None
        return out, out.logits.view(B * C, L, -1), mask, states, batch["input_ids"].view(B * C, L)
    labels = batch["labels"]
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                decoder_attention_mask=batch["decoder_attention_mask"], output_hidden_states=hidden)
    states = out.decoder_hidden_states if hidden else None
    from transformers.models.bart.modeling_bart import shift_tokens_right

    mcfg = getattr(model, "module", model).config  # DDP wraps the model
    dec_ids = shift_tokens_right(labels.masked_fill(labels == -100, mcfg.pad_token_id), mcfg.pad_token_id,
                                 mcfg.decoder_start_token_id)
    return out, out.logits, batch["decoder_attention_mask"], states, dec_ids


def _contrast_inputs(cfg, out, states, ids, mask, batch):
    if cfg.contrast_layer == "encoder":
        return out.encoder_last_hidden_state, batch["input_ids"], batch["attention_mask"]
    layer = -1 if cfg.contrast_layer == "last" else 1
    return states[layer], ids, mask


# ----------------------------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------------------------


def train(cfg: TrainConfig, data=None) -> dict:
    """Run ``cfg`` and return its result dict (also written to ``out_dir/result.json``)."""
    t_start = time.time()
    device = dist.init_from_env(resolve_device(cfg.device))
    rank, world = dist.world()
    main = rank == 0
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = out_dir / "checkpoint.pt", out_dir / "metrics.jsonl"
    if ckpt_path.exists() and not cfg.resume:
        raise FileExistsError(f"{ckpt_path} exists: pass resume=True to continue it, or use a new out_dir")
    seed_everything(cfg.seed)  # the same on every rank: identical initial models and heads

    tokenizer = load_tokenizer(cfg.model)
    task = make_task(cfg, tokenizer, data)
    if len(task) == 0:
        raise ValueError("the training set is empty")
    teacher = load_teacher(cfg, tokenizer)
    vocab = teacher.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > vocab:
        raise ValueError(f"tokenizer of {cfg.model!r} has {len(tokenizer)} tokens but the model's embedding only "
                         f"{vocab} rows: wrong tokenizer/model pairing")
    needs_teacher = cfg.resolved_loss != "lm"
    if cfg.resolved_loss == "xtc":  # attention probabilities are distilled: they must be returned
        teacher.set_attn_implementation("eager")
    if not needs_teacher and not cfg.keep_layers and not cfg.init_from and cfg.method == "fp":
        student, teacher = teacher, None
    else:
        if cfg.keep_layers:
            from .xtc import reduce_layers
            student = reduce_layers(teacher, cfg.keep_layers)
        else:
            student = copy.deepcopy(teacher)
        if cfg.init_from:
            load_run_weights(student, cfg.init_from, "student")
        if cfg.method != "fp":
            quantize_model(student, cfg.quant_config())
            if cfg.gamma_init != 1.0:
                set_gamma(student, cfg.gamma_init)
        if needs_teacher:
            teacher.eval().requires_grad_(False).to(device)
        else:
            teacher = None
    student.to(device).train()

    heads = contrast = None
    if cfg.uses_contrastive:
        hidden = student.config.hidden_size if hasattr(student.config, "hidden_size") else student.config.d_model
        heads = ContrastiveHeads(hidden, cfg.proj_dim).to(device)
        contrast = TokenContrastiveLoss(len(tokenizer), cfg.proj_dim, cfg.num_negatives, cfg.temperature,
                                        cfg.momentum, cfg.negatives, cfg.use_bank).to(device)

    seed_everything(cfg.seed + rank)  # from here on (negative sampling, dropout) each rank draws its own numbers
    forward_model = student
    if world > 1:
        forward_model = torch.nn.parallel.DistributedDataParallel(
            student, device_ids=[device.index] if device.type == "cuda" else None)
    qparams = quantizer_parameters(student)
    q_ids = {id(p) for p in qparams}
    backbone = [p for p in student.parameters() if id(p) not in q_ids and p.requires_grad]
    if heads is not None:
        backbone += list(heads.parameters())
    groups = [{"params": backbone, "lr": cfg.lr, "weight_decay": cfg.weight_decay}]
    if qparams:
        groups.append({"params": qparams, "lr": cfg.quant_lr, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups)

    global_batch = cfg.batch_size * world  # per-device batch x devices
    steps_per_epoch = max(len(task) // (global_batch * cfg.grad_accum), 1)
    total_steps = cfg.max_steps or max(int(round(cfg.epochs * steps_per_epoch)), 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1.0 - s / total_steps))

    step, history = 0, []
    if cfg.resume and ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        now, defaults = asdict(cfg), asdict(TrainConfig())
        diff = sorted(k for k in now if k not in ("resume", "progress", "out_dir")
                      and ck["config"].get(k, defaults[k]) != now[k])
        if diff:
            raise ValueError(f"checkpoint {ckpt_path} was written with other settings: {diff}")
        if ck.get("world_size", 1) != world:
            raise ValueError(f"checkpoint {ckpt_path} was written by {ck.get('world_size', 1)} processes, this run "
                             f"has {world}: the data order would change")
        student.load_state_dict(ck["model"])
        if heads is not None:
            heads.load_state_dict(ck["heads"])
            contrast.load_state_dict(ck["contrast"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        step, history = ck["step"], ck["history"]
        set_rng_state(ck["rng"][rank] if isinstance(ck["rng"], list) else ck["rng"])
        # keep only the metrics lines up to the checkpoint (later ones are redone)
        if main and metrics_path.exists():
            lines = [json.loads(x) for x in metrics_path.read_text().splitlines() if x.strip()]
            metrics_path.write_text("".join(json.dumps(x) + "\n" for x in lines if x["step"] <= step))
    elif main and metrics_path.exists():
        metrics_path.unlink()
    bind_laq_hessians(student, optimizer)

    def save_checkpoint():
        rng = dist.gather_objects(rng_state())  # every rank's stream, so a resumed run draws the same numbers
        if main:
            atomic_torch_save({"config": asdict(cfg), "step": step, "history": history, "rng": rng,
                               "world_size": world, "model": student.state_dict(),
                               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                               "heads": heads.state_dict() if heads is not None else None,
                               "contrast": contrast.state_dict() if contrast is not None else None}, ckpt_path)
        dist.barrier()

    def log(entry):
        history.append(entry)
        if main:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    evaluate_at = curve_steps(total_steps, cfg.curve_points)

    def evaluate_now():
        if main:
            log({"step": step, "tokens": step * tokens_per_step, **task.evaluate(student, device, final=False)})
            student.train()
        dist.barrier()

    tokens_per_step = cfg.batch_size * world * cfg.grad_accum * (cfg.seq_len if cfg.task == "lm" else 1)
    if step == 0:  # the quantizer's damage before any update (and the teacher's starting point)
        evaluate_now()
    bar = tqdm(total=total_steps, initial=step, desc=f"{cfg.method} {setting_label(cfg)}",
               disable=not (cfg.progress and main), dynamic_ncols=True)
    tokens_seen, t_loop = 0, time.time()
    while step < total_steps:
        # the data order is a pure function of (seed, epoch); each rank reads its slice of the global batch
        epoch, pos = divmod(step * global_batch * cfg.grad_accum, max(len(task), 1))
        order = torch.randperm(len(task), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        optimizer.zero_grad(set_to_none=True)
        parts = {}
        for micro in range(cfg.grad_accum):
            start = (pos + micro * global_batch) % len(task)
            idx = order[(torch.arange(global_batch) + start) % len(task)]
            idx = idx[rank * cfg.batch_size:(rank + 1) * cfg.batch_size]
            batch = {k: v.to(device) for k, v in task.batch(idx).items()}
            sync = world == 1 or micro == cfg.grad_accum - 1  # DDP all-reduces on the last micro-batch only
            with autocast(device, cfg.dtype), (contextlib.nullcontext() if sync else forward_model.no_sync()):
                want_kl = (step + 1) % 10 == 0 or step + 1 == total_steps  # logged steps only: costs a softmax
                loss, parts = compute_loss(cfg, forward_model, teacher, heads, contrast, batch, want_kl)
                finite = torch.isfinite(loss) if world == 1 else dist.mean_scalar(torch.isfinite(loss).float()) == 1
                if not finite:
                    bar.close()
                    raise NonFiniteLossError(f"loss is {loss.item()} at step {step}; stopped. The last good "
                                             f"checkpoint is {ckpt_path if ckpt_path.exists() else 'none yet'}")
                (loss / cfg.grad_accum).backward()
            tokens_seen += int(batch["input_ids"].numel()) * world
        if heads is not None:
            dist.all_reduce_grads(heads.parameters())  # the heads live outside the DDP module
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        bind_laq_hessians(student, optimizer)
        if contrast is not None:  # Eq. 3 with every rank's updates, applied in rank order on every rank
            contrast.update_memory(*dist.gather_rows(*contrast.take_pending()))
        step += 1
        bar.update(1)
        if step % 10 == 0 or step == total_steps:  # host sync only every few steps
            bar.set_postfix(loss=f"{loss.item():.4g}", tok_s=f"{tokens_seen / (time.time() - t_loop):.0f}")
            log({"step": step, "loss": dist.mean_scalar(loss).item(),
                 **{k: dist.mean_scalar(v).item() for k, v in parts.items()}, "lr": scheduler.get_last_lr()[0]})
        if step < total_steps and (step in evaluate_at or (cfg.eval_every and step % cfg.eval_every == 0)):
            evaluate_now()
        if step % cfg.save_every == 0 and step < total_steps:
            save_checkpoint()
    bar.close()
    save_checkpoint()

    bank_checksums = dist.gather_objects(contrast.memory.vectors.double().sum().item()) if contrast else None
    final = task.evaluate(student, device, final=True) if main else {}
    log({"step": step, "tokens": step * tokens_per_step, **{k: v for k, v in final.items() if k != "examples"}})
    if cfg.method == "fp" and main:  # teachers and layer-reduced students initialise later runs
        save_weights(student, out_dir / "model.safetensors")
    result = {
        "config": asdict(cfg), "preset": cfg.preset, "setting": setting_label(cfg), "loss": cfg.resolved_loss,
        "metrics": final, "steps": step, "tokens_per_step": tokens_per_step if cfg.task == "lm" else None,
        "curve": learning_curve(history), "size_mb": size_mb(student), **provenance(device, cfg.dtype),
        "wall_time_s": time.time() - t_start, "history": history, "world_size": world,
        "effective_batch": cfg.batch_size * world * cfg.grad_accum, "bank_checksums": bank_checksums,
    }
    if cfg.method in ("mds", "mds_pact_grad"):
        result["gamma"] = {n.removesuffix(".weight_quantizer.gamma"): p.detach().float().mean().item()
                           for n, p in student.named_parameters() if n.endswith("weight_quantizer.gamma")}
    if main:
        (out_dir / "result.json").write_text(json.dumps(result, indent=1, default=float))
    dist.barrier()
    return result


def curve_steps(total_steps: int, points: int) -> set[int]:
    """``points`` log-spaced steps in [1, total_steps] (fewer when the budget has fewer steps): where a learning
    curve is evaluated, besides step 0 and the end."""
    if points <= 0:
        return set()
    grid = torch.logspace(0, math.log10(max(total_steps, 1)), points).round().long().tolist()
    return {int(s) for s in grid if 1 <= s <= total_steps}


def learning_curve(history: list[dict]) -> list[dict]:
    """The validation points of a run's history: [{"step", "tokens", "valid_ppl"}], step 0 first."""
    return [{"step": h["step"], "tokens": h.get("tokens"), "valid_ppl": h["valid_ppl"]}
            for h in history if "valid_ppl" in h]


def setting_label(cfg: TrainConfig) -> str:
    """W-E-A bits of a run ("2-2-8"), or "fp32" for a full-precision model (teacher or control)."""
    return "fp32" if cfg.method == "fp" else cfg.quant_config().label


def compute_loss(cfg: TrainConfig, student, teacher, heads, contrast, batch: dict, want_kl: bool = False):
    """The training loss of one batch and its logged parts: the task loss for a teacher ("lm"), else
    L_dist (+ lambda * L_cont) against the teacher (Eq. 5). Used by ``train`` and by the benchmark."""
    need_hidden = contrast is not None
    out, logits, mask, states, ids = _forward(cfg, student, batch, need_hidden)
    if cfg.resolved_loss == "lm":
        loss = _lm_loss(cfg, out, batch)
        return loss, {"lm": loss.detach()}
    with torch.no_grad():
        t_out, t_logits, _, t_states, _ = _forward(cfg, teacher, batch, need_hidden)
    if cfg.resolved_loss == "xtc":
        from .xtc import xtc_distillation
        keep = list(cfg.keep_layers) or list(range(len(t_out.attentions)))
        loss, parts = xtc_distillation(out, t_out, keep, mask, regression=t_logits.shape[-1] == 1)
        return loss, parts
    l_dist = logit_distillation(logits, t_logits, mask)
    if cfg.task == "mc":
        l_dist = l_dist + logit_distillation(out.mc_logits, t_out.mc_logits)
    l_cont = None
    if contrast is not None:
        s_h, c_ids, c_mask = _contrast_inputs(cfg, out, states, ids, mask, batch)
        t_h, _, _ = _contrast_inputs(cfg, t_out, t_states, ids, mask, batch)
        l_cont = contrast(heads.student(s_h.float()), heads.teacher(t_h.float()), c_ids, c_mask)
    loss = total_loss(l_dist, l_cont, cfg.lam)
    parts = {"dist": l_dist.detach(), **({"cont": l_cont.detach()} if l_cont is not None else {})}
    if want_kl:
        parts["kl"] = parts["dist"] - teacher_entropy(t_logits, mask)
    return loss, parts


def _lm_loss(cfg, out, batch):
    """Task loss of the full-precision teacher fine-tuning."""
    if cfg.task == "lm":
        logits = out.logits[:, :-1].float()
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 batch["input_ids"][:, 1:].reshape(-1))
    if cfg.task == "classification":
        if out.logits.shape[-1] == 1:
            return torch.nn.functional.mse_loss(out.logits[:, 0].float(), batch["labels"].float())
        return torch.nn.functional.cross_entropy(out.logits.float(), batch["labels"])
    if cfg.task == "mc":
        logits = out.logits[..., :-1, :].float()
        labels = batch["lm_labels"][..., 1:]
        lm = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                               ignore_index=-100)
        return lm + torch.nn.functional.cross_entropy(out.mc_logits.float(), batch["mc_labels"])
    return out.loss
