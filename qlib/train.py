"""One training loop for every task: fine-tune the full-precision teacher (``method="fp"`` with the task loss), train
the full-precision control (``method="fp"``, distillation loss), or quantization-aware training of a student
initialised from the teacher, with the method's losses.

``train(TrainConfig(...))`` is the one entry point; ``python -m qlib train`` and the notebooks call it.
Checkpoints (model, optimizer, scheduler, memory bank, RNG states, step) are written atomically every
``save_every`` steps; ``resume=True`` continues a killed run so that it ends exactly where an uninterrupted run ends
(the data order is a pure function of seed and epoch); a finished run's checkpoint keeps only what evaluating it
needs. A NaN/inf loss stops the run with ``NonFiniteLossError`` and
leaves the last good checkpoint in place (the loss is checked on the device, read every 10 steps and before every
checkpoint and evaluation: no host sync per step). Validation is evaluated at step 0 (before any update), at log-spaced
steps of the budget and at the end: the learning curve of the result file.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed as dist
from .diagnostics import clipped_shares, gradient_parts, keep_compiled_graphs_reusable
from .config import DYNAMIC_SCALING, TrainConfig
from .losses import ContrastiveHeads, TokenContrastiveLoss
from .models import load_tokenizer
from .modules import compile_layers, quantizer_parameters
from .packing import size_mb
from .quant import bind_laq_hessians
from .runtime import (adamw, atomic_torch_save, autocast, load_checkpoint, provenance, resolve_device, rng_state,
                      seed_everything, set_rng_state, write_json)
from .students import build_models, save_weights
from .objective import compute_loss
from .tasks import make_task


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


@dataclass
class Run:
    """Everything one training run holds: its models, losses, optimizer and progress."""

    cfg: TrainConfig
    device: torch.device
    task: object
    teacher: torch.nn.Module | None
    student: torch.nn.Module
    forward_model: torch.nn.Module  # the student, or its DDP wrapper
    heads: ContrastiveHeads | None
    contrast: TokenContrastiveLoss | None
    optimizer: torch.optim.Optimizer
    scheduler: object
    total_steps: int
    step: int = 0
    history: list = field(default_factory=list)
    diagnose_at: set = field(default_factory=set)  # steps (updates done) whose update is split into L_dist/L_cont
    first_bad: torch.Tensor | None = None  # the first step with a NaN/inf loss since the last check (on the device)
    started: float = field(default_factory=time.time)  # this process's start
    wall_before: float = 0.0  # seconds the earlier processes of a resumed run took up to its checkpoint

    @property
    def wall_time_s(self) -> float:
        """The run's wall time as if never interrupted: every process up to its last checkpoint, plus this one."""
        return self.wall_before + time.time() - self.started

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.out_dir)

    @property
    def tokens_per_step(self) -> int:
        c = self.cfg
        return c.batch_size * dist.world()[1] * c.grad_accum * (c.seq_len if c.task == "lm" else 1)

    def parameters(self) -> list:
        return [p for g in self.optimizer.param_groups for p in g["params"]]


def setup(cfg: TrainConfig, data=None) -> Run:
    """Build the task, the models (``students.build_models``), the contrastive heads and bank, the optimizer (a
    second group with its own rate for the quantizers' parameters) and the linear-decay schedule."""
    device = dist.init_from_env(resolve_device(cfg.device))
    rank, world = dist.world()
    seed_everything(cfg.seed)  # the same on every rank: identical initial models and heads
    tokenizer = load_tokenizer(cfg.model)
    task = make_task(cfg, tokenizer, data)
    if len(task) == 0:
        raise ValueError("the training set is empty")
    teacher, student = build_models(cfg, tokenizer)
    teacher = teacher.to(device) if teacher is not None else None
    student.to(device).train()
    if cfg.compile:
        if cfg.uses_contrastive:  # the L_cont split's extra backward passes reuse the compiled graphs
            keep_compiled_graphs_reusable()
        compile_layers(student)
    heads = contrast = None
    if cfg.uses_contrastive:
        hidden = getattr(student.config, "hidden_size", None) or student.config.d_model
        heads = ContrastiveHeads(hidden, cfg.proj_dim).to(device)
        contrast = TokenContrastiveLoss(len(tokenizer), cfg.proj_dim, cfg.num_negatives, cfg.temperature,
                                        cfg.momentum, cfg.negatives, cfg.use_bank).to(device)
    seed_everything(cfg.seed + rank)  # from here on (negative sampling, dropout) each rank draws its own numbers
    forward_model = student if world == 1 else torch.nn.parallel.DistributedDataParallel(
        student, device_ids=[device.index] if device.type == "cuda" else None)
    qparams = quantizer_parameters(student)
    q_ids = {id(p) for p in qparams}
    backbone = [p for p in student.parameters() if id(p) not in q_ids and p.requires_grad]
    backbone += list(heads.parameters()) if heads is not None else []
    groups = [{"params": backbone, "lr": cfg.lr, "weight_decay": cfg.weight_decay}]
    if qparams:
        groups.append({"params": qparams, "lr": cfg.quant_lr, "weight_decay": 0.0})
    optimizer = adamw(groups, device)
    steps_per_epoch = max(len(task) // (cfg.batch_size * world * cfg.grad_accum), 1)
    total = cfg.max_steps or max(int(round(cfg.epochs * steps_per_epoch)), 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1.0 - s / total))
    return Run(cfg, device, task, teacher, student, forward_model, heads, contrast, optimizer, scheduler, total)


def resume(run: Run) -> None:
    """Continue from the run's checkpoint when it has one (same settings and world size), else start afresh."""
    cfg, (rank, world) = run.cfg, dist.world()
    ckpt_path, metrics_path = run.out_dir / "checkpoint.pt", run.out_dir / "metrics.jsonl"
    if ckpt_path.exists() and not cfg.resume:
        raise FileExistsError(f"{ckpt_path} exists: pass resume=True to continue it, or use a new out_dir")
    if not ckpt_path.exists():
        if rank == 0 and metrics_path.exists():
            metrics_path.unlink()
        return
    ck = load_checkpoint(ckpt_path)
    now, defaults = asdict(cfg), asdict(TrainConfig())
    diff = sorted(k for k in now if k not in ("resume", "progress", "out_dir", "name")
                  and ck["config"].get(k, defaults[k]) != now[k])
    if diff:
        raise ValueError(f"checkpoint {ckpt_path} was written with other settings: {diff}")
    if ck.get("world_size", 1) != world:
        raise ValueError(f"checkpoint {ckpt_path} was written by {ck.get('world_size', 1)} processes, this run "
                         f"has {world}: the data order would change")
    run.student.load_state_dict(ck["model"])
    if run.heads is not None:
        run.heads.load_state_dict(ck["heads"])
        run.contrast.load_state_dict(ck["contrast"])
    run.step, run.history = ck["step"], ck["history"]
    run.wall_before = ck.get("wall_time_s", 0.0)
    if not ck.get("finished"):  # a finished run keeps no optimizer state: no step is left to take
        run.optimizer.load_state_dict(ck["optimizer"])
        run.scheduler.load_state_dict(ck["scheduler"])
        set_rng_state(ck["rng"][rank] if isinstance(ck["rng"], list) else ck["rng"])
    if rank == 0 and metrics_path.exists():  # keep the metrics lines up to the checkpoint (later ones are redone)
        lines = [json.loads(x) for x in metrics_path.read_text().splitlines() if x.strip()]
        metrics_path.write_text("".join(json.dumps(x) + "\n" for x in lines if x["step"] <= run.step))


def save_checkpoint(run: Run) -> None:
    rng = dist.gather_objects(rng_state())  # every rank's stream, so a resumed run draws the same numbers
    if dist.is_main():
        atomic_torch_save({"config": asdict(run.cfg), "step": run.step, "history": run.history, "rng": rng,
                           "world_size": dist.world()[1], "wall_time_s": run.wall_time_s,
                           "model": run.student.state_dict(),
                           "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                           "heads": run.heads.state_dict() if run.heads is not None else None,
                           "contrast": run.contrast.state_dict() if run.contrast is not None else None},
                          run.out_dir / "checkpoint.pt")
    dist.barrier()


def finish_checkpoint(path: Path) -> None:
    """Drop what only further steps need (the optimizer's moments, twice the model; the scheduler; the RNG streams)
    from a finished run's last checkpoint: what is left loads as the trained student, and a resume of it only redoes
    the final evaluation."""
    ck = load_checkpoint(path)
    for key in ("optimizer", "scheduler", "rng"):
        ck.pop(key, None)
    atomic_torch_save({**ck, "finished": True}, path)


def log(run: Run, entry: dict) -> None:
    run.history.append(entry)
    if dist.is_main():
        with open(run.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")


def evaluate(run: Run, final: bool = False) -> dict:
    """Evaluate the student on rank 0 and log it with the step and tokens seen (``final``: the test split too)."""
    out = run.task.evaluate(run.student, run.device, final=final) if dist.is_main() else {}
    log(run, {"step": run.step, "tokens": run.step * run.tokens_per_step,
              **{k: v for k, v in out.items() if k != "examples"}})
    run.student.train()
    dist.barrier()
    return out


def train_step(run: Run) -> tuple[torch.Tensor, dict]:
    """One optimizer step over ``grad_accum`` micro-batches; returns the last loss and its logged parts."""
    cfg, device, (rank, world) = run.cfg, run.device, dist.world()
    global_batch = cfg.batch_size * world
    # the data order is a pure function of (seed, epoch); each rank reads its slice of the global batch
    epoch, pos = divmod(run.step * global_batch * cfg.grad_accum, len(run.task))
    order = torch.randperm(len(run.task), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
    run.optimizer.zero_grad(set_to_none=True)
    want_kl = (run.step + 1) % 10 == 0 or run.step + 1 == run.total_steps  # logged steps only: costs a softmax
    # DDP's gradient hooks do not expect the extra backward passes: the split is measured on one process
    diagnose = run.contrast is not None and world == 1 and run.step in run.diagnose_at
    shares = None
    for micro in range(cfg.grad_accum):
        start = (pos + micro * global_batch) % len(run.task)
        idx = order[(torch.arange(global_batch) + start) % len(run.task)][rank * cfg.batch_size:
                                                                          (rank + 1) * cfg.batch_size]
        batch = {k: v.to(device) for k, v in run.task.batch(idx).items()}
        sync = world == 1 or micro == cfg.grad_accum - 1  # DDP all-reduces on the last micro-batch only
        with autocast(device, cfg.dtype), (contextlib.nullcontext() if sync else run.forward_model.no_sync()):
            terms = {} if diagnose and micro == cfg.grad_accum - 1 else None
            loss, parts = compute_loss(cfg, run.forward_model, run.teacher, run.heads, run.contrast, batch, want_kl,
                                       terms)
            _note_nonfinite(run, loss)
            if terms:  # the last micro-batch's two gradients (the whole step's when grad_accum is 1)
                shares = gradient_parts(terms["dist"] / cfg.grad_accum, terms["cont"] / cfg.grad_accum,
                                        student_weights(run.student))
            (loss / cfg.grad_accum).backward()
    if run.heads is not None:
        dist.all_reduce_grads(run.heads.parameters())  # the heads live outside the DDP module
    grad_norm = torch.nn.utils.clip_grad_norm_(run.parameters(), cfg.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    bind_laq_hessians(run.student, run.optimizer)
    if run.contrast is not None:  # Eq. 3 with every rank's updates, applied in rank order on every rank
        run.contrast.update_memory(*dist.gather_rows(*run.contrast.take_pending()))
    run.step += 1
    if shares is not None:  # update ``step`` was computed on the weights after ``step - 1`` updates
        log(run, {"step": run.step, "tokens": (run.step - 1) * run.tokens_per_step,
                  "cont_grad": clipped_shares(shares, grad_norm.item(), cfg.grad_clip)})
    return loss, parts


def student_weights(student: torch.nn.Module) -> list[torch.Tensor]:
    """The student's trained weights: its parameters without the quantizers' own (gamma, clip values, steps)."""
    q_ids = {id(p) for p in quantizer_parameters(student)}
    return [p for p in student.parameters() if p.requires_grad and id(p) not in q_ids]


def diagnostic_steps(total_steps: int, points: int, also: tuple[int, ...] = ()) -> set[int]:
    """The updates whose L_dist / L_cont split is measured: those taken from the weights of step 0, of each
    learning-curve point and of the step before the last, so each split sits beside a validation point."""
    curve = curve_steps(total_steps, points) | set(also)
    return {0, max(total_steps - 1, 0)} | {s for s in curve if s < total_steps}


NO_BAD_STEP = 2 ** 62


def _note_nonfinite(run: Run, loss: torch.Tensor) -> None:
    """Remember the first step whose loss is NaN/inf, on the device: no host sync per step (``check_finite``
    reads it every few steps and before anything is saved or evaluated)."""
    if run.first_bad is None:
        run.first_bad = torch.full((), NO_BAD_STEP, dtype=torch.long, device=loss.device)
    bad = ~torch.isfinite(loss.detach())
    run.first_bad = torch.where(bad & (run.first_bad == NO_BAD_STEP), torch.full_like(run.first_bad, run.step),
                                run.first_bad)


def check_finite(run: Run) -> None:
    """Stop with ``NonFiniteLossError`` if a loss since the last check was NaN/inf (on any rank). It runs before
    every checkpoint, so the checkpoint on disk is the last good state: resuming re-runs from there."""
    if run.first_bad is None:
        return
    local = run.first_bad.float()
    if dist.mean_scalar((local < NO_BAD_STEP).float()).item() == 0:
        return
    ckpt = run.out_dir / "checkpoint.pt"
    at = f"step {int(local.item())}" if local.item() < NO_BAD_STEP else "a step of another rank"
    raise NonFiniteLossError(f"the loss was NaN or inf at {at} (checked at step {run.step}); stopped. The last good "
                             f"checkpoint is {ckpt if ckpt.exists() else 'none yet'}: resume re-runs from there")


def train(cfg: TrainConfig, data=None) -> dict:
    """Run ``cfg`` and return its result dict (also written to ``out_dir/result.json``)."""
    t_start = time.time()
    run = setup(cfg, data)
    run.started = t_start  # model loading counts too
    main = dist.is_main()
    run.out_dir.mkdir(parents=True, exist_ok=True)
    resume(run)
    bind_laq_hessians(run.student, run.optimizer)
    evaluate_at = curve_steps(run.total_steps, cfg.curve_points) | set(cfg.curve_at)
    run.diagnose_at = diagnostic_steps(run.total_steps, cfg.curve_points, cfg.curve_at)
    if run.step == 0:  # the quantizer's damage before any update (and the teacher's starting point)
        evaluate(run)
    bar = tqdm(total=run.total_steps, initial=run.step, desc=f"{cfg.method} {cfg.label}",
               disable=not (cfg.progress and main), dynamic_ncols=True)
    t_loop, step0 = time.time(), run.step
    while run.step < run.total_steps:
        loss, parts = train_step(run)
        bar.update(1)
        evaluate_now = run.step < run.total_steps and (run.step in evaluate_at or
                                                       (cfg.eval_every and run.step % cfg.eval_every == 0))
        save_now = run.step % cfg.save_every == 0 and run.step < run.total_steps
        if run.step % 10 == 0 or run.step == run.total_steps or evaluate_now or save_now:
            try:
                check_finite(run)  # host sync only every few steps, and before anything is kept
            except NonFiniteLossError:
                bar.close()
                raise
        if run.step % 10 == 0 or run.step == run.total_steps:
            rate = (run.step - step0) * run.tokens_per_step / (time.time() - t_loop)
            # tokens_per_step counts examples outside language modeling: the bar says which
            bar.set_postfix(loss=f"{loss.item():.4g}", **({"tok_s": f"{rate:.0f}"} if run.cfg.task == "lm" else
                                                          {"examples_s": f"{rate:.2f}"}))
            log(run, {"step": run.step, "loss": dist.mean_scalar(loss).item(), "lr": run.scheduler.get_last_lr()[0],
                      **{k: dist.mean_scalar(v).item() for k, v in parts.items()}})
        if evaluate_now:
            evaluate(run)
        if save_now:
            save_checkpoint(run)
    bar.close()
    save_checkpoint(run)
    contrast = run.contrast
    bank_checksums = dist.gather_objects(contrast.memory.vectors.double().sum().item()) if contrast else None
    final = evaluate(run, final=True)
    if cfg.method == "fp" and main:  # teachers, controls and layer-reduced students initialise later runs
        save_weights(run.student, run.out_dir / "model.safetensors")
    result = _result(run, final, bank_checksums)
    if main:
        write_json(run.out_dir / "result.json", result)
        finish_checkpoint(run.out_dir / "checkpoint.pt")  # after the result: a crash before it resumes into it
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
    """The validation points of a run's history: [{"step", "tokens", <its valid_* metrics>}] ("valid_ppl" for
    language modeling and summaries, "valid_mc_acc" for next-utterance prediction), step 0 first."""
    out = []
    for h in history:
        valid = {k: v for k, v in h.items() if k.startswith("valid_")}
        if valid:
            out.append({"step": h["step"], "tokens": h.get("tokens"), **valid})
    return out


def _result(run: Run, final: dict, bank_checksums: list | None) -> dict:
    """A finished run's result file: config, final metrics, learning curve, size, provenance, history (with the
    L_dist / L_cont split of a contrastive run) and, for dynamic scaling, each module's learned gamma."""
    cfg = run.cfg
    result = {
        "config": asdict(cfg), "preset": cfg.preset, "setting": cfg.label, "loss": cfg.resolved_loss,
        "metrics": final, "steps": run.step, "tokens_per_step": run.tokens_per_step if cfg.task == "lm" else None,
        "curve": learning_curve(run.history), "size_mb": size_mb(run.student), **provenance(run.device, cfg.dtype),
        "wall_time_s": run.wall_time_s, "world_size": dist.world()[1],
        "effective_batch": cfg.batch_size * dist.world()[1] * cfg.grad_accum, "bank_checksums": bank_checksums,
    }
    # the history's L_cont split records go to their own key, once (the checkpoint keeps them in the history)
    result["history"] = [h for h in run.history if "cont_grad" not in h]
    if cfg.uses_contrastive:
        result["cont_grad"] = [{"step": h["step"], "tokens": h["tokens"], **h["cont_grad"]}
                               for h in run.history if "cont_grad" in h]
    if cfg.method in DYNAMIC_SCALING:
        result["gamma"] = {n.removesuffix(".weight_quantizer.gamma"): p.detach().float().mean().item()
                           for n, p in run.student.named_parameters() if n.endswith("weight_quantizer.gamma")}
    return result
