"""The benchmark's measurements (they need torch): one phase's step built as a run builds it (``make_step``), timed
after its warm-up steps (``measure_phase``) or profiled (``profile_phase``); the L_dist and L_dist + L_cont steps
timed in alternation in one process (``interleaved_cost``); the device's dense matmul peak (``matmul_peak``) and the
model's FLOPs per token (``flops_per_token``), the two halves of MFU; the check that nothing else uses the CPU before
a phase (``check_idle``); and ``in_fresh_process``, which runs one of this module's measurements in a Python process
of its own and returns its JSON result.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..config import TrainConfig
from ..losses import ContrastiveHeads, TokenContrastiveLoss
from ..models import load_tokenizer
from ..modules import compile_layers
from ..packing import export_packed, load_packed, size_mb
from ..runtime import adamw, autocast, cpu_busy_cores, cpu_steal_seconds, resolve_device
from ..students import build_student, load_teacher
from ..objective import compute_loss

DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16}
BUSY_CORES = 0.25  # other work using more than a quarter of a core makes CPU figures not the machine's
PHASE_LOSS = {"a_fp_finetune": "lm", "c_qat_dist_cont": "dist+cont"}  # every other phase: "dist"


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: str, n: int | None = None, reps: int = 10) -> float:
    """The device's measured dense matmul throughput in ``dtype`` (FLOP/s): the denominator of MFU."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=DTYPE[dtype])
    b = torch.randn(n, n, device=device, dtype=DTYPE[dtype])
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def flops_per_token(model, seq_len: int, phase: str) -> float:
    """Model FLOPs per token: 2 per weight of every matmul (the head included) per forward, plus attention's
    2 * 2 * seq_len * d per layer; a training step is forward + backward (3x), plus the teacher's forward when
    distilling."""
    cfg = model.config
    d, layers = cfg.hidden_size, cfg.num_hidden_layers
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) or
                 type(m).__name__ in ("QuantLinear", "QuantTiedHead"))
    forward = 2 * matmul + 4 * seq_len * d * layers
    return {"a_fp_finetune": 3 * forward, "b_qat_dist": 4 * forward, "c_qat_dist_cont": 4 * forward}.get(
        phase, forward)


def make_step(model: str, phase: str, dtype: str, w_bits: int, batch_size: int, seq_len: int, device: str,
              num_negatives: int, compiled: bool = False):
    """The device, one step of ``phase`` as a closure, the student and its size figures. ``compiled``: the student
    and L_dist are compiled as ``TrainConfig.compile`` does it."""
    dev = resolve_device(device)
    torch.manual_seed(0)
    method = "fp" if phase == "a_fp_finetune" else "mds"
    loss = PHASE_LOSS.get(phase, "dist")
    cfg = TrainConfig(model=model, method=method, w_bits=w_bits, loss=loss, seq_len=seq_len, dtype=dtype,
                      num_negatives=num_negatives, device=device, compile=compiled)
    tokenizer = load_tokenizer(model)
    teacher = load_teacher(cfg, tokenizer).to(dev)
    student = build_student(cfg, teacher).to(dev)
    if student is not teacher:
        teacher.eval().requires_grad_(False)
    batch = {"input_ids": torch.randint(0, len(tokenizer), (batch_size, seq_len),
                                        generator=torch.Generator().manual_seed(0)).to(dev)}
    heads = contrast = None
    if cfg.uses_contrastive:
        heads = ContrastiveHeads(student.config.hidden_size, cfg.proj_dim).to(dev)
        contrast = TokenContrastiveLoss(len(tokenizer), cfg.proj_dim, cfg.num_negatives).to(dev)
    extra = {"size_mb": size_mb(student)} if method != "fp" else {}
    if compiled:
        compile_layers(student)
    if phase.startswith("d_"):
        student, step = _eval_step(student, phase, batch, dev, dtype, extra)
    else:
        step = _train_step(cfg, student, None if loss == "lm" else teacher, heads, contrast, batch, dev, dtype)
    return dev, step, student, extra


def _eval_step(student, phase: str, batch: dict, dev: torch.device, dtype: str, extra: dict):
    """The model an evaluation phase times (the fake-quantized student, or for ``d_eval_packed`` the model rebuilt
    from its packed export, whose file size goes into ``extra``) and its forward as a closure."""
    student.eval()
    if phase == "d_eval_packed":
        with tempfile.TemporaryDirectory() as d:
            path = export_packed(student, Path(d) / "packed.safetensors")
            extra["packed_file_mib"] = path.stat().st_size / 2 ** 20
            student = load_packed(path, dev)

    @torch.no_grad()
    def step():
        with autocast(dev, dtype):
            student(**batch)
    return student, step


def _train_step(cfg: TrainConfig, student, teacher, heads, contrast, batch: dict, dev: torch.device, dtype: str):
    """One training step (loss, backward, optimizer update, the contrastive memory's update) as a closure;
    ``teacher`` None for the fine-tuning step."""
    student.train()
    params = [p for p in student.parameters() if p.requires_grad] + (list(heads.parameters()) if heads else [])
    opt = adamw(params, dev, lr=1e-5)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(dev, dtype):
            loss_, _ = compute_loss(cfg, student, teacher, heads, contrast, batch)
        loss_.backward()
        opt.step()
        if contrast is not None:
            contrast.update_memory()
    return step


def _peak_mem_mib(dev: torch.device) -> float:
    """True peak memory: CUDA's max allocated, or on CPU the peak resident set of this process."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_phase(model: str, phase: str, dtype: str, w_bits: int, batch_size: int, seq_len: int, steps: int,
                  warmup: int, device: str, num_negatives: int, compiled: bool = False) -> dict:
    """Measure one phase in this process (the benchmark runs each in a fresh one); compilation happens in warm-up."""
    dev, step, student, extra = make_step(model, phase, dtype, w_bits, batch_size, seq_len, device, num_negatives,
                                          compiled)
    for _ in range(warmup):
        step()
    sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step_sec, steal0, t_all = [], cpu_steal_seconds(), time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        step()
        sync(dev)  # per step, so that each step's time is its own (a few microseconds on CUDA)
        step_sec.append(time.perf_counter() - t)
    wall, steal1 = time.perf_counter() - t_all, cpu_steal_seconds()
    # the median step: one slow step (a page fault, a neighbour on the host) does not move it, as it moves the mean
    sec = statistics.median(step_sec)
    tokens = batch_size * seq_len
    steal = None if None in (steal0, steal1) else (steal1 - steal0) / ((os.cpu_count() or 1) * wall)
    return {"sec_per_iter": sec, "tokens_per_s": tokens / sec, "peak_mem_mib": _peak_mem_mib(dev), "dtype": dtype,
            "flops_per_token": flops_per_token(student, seq_len, phase), "step_sec": [round(x, 4) for x in step_sec],
            "mean_sec_per_iter": sum(step_sec) / steps, "steal_frac": steal, **extra}


def profile_phase(model: str, phase: str, dtype: str = "fp32", w_bits: int = 2, batch_size: int = 4,
                  seq_len: int = 128, steps: int = 3, device: str = "auto", num_negatives: int = 64,
                  top: int = 20) -> str:
    """Where one phase's step spends its time: the torch operators by self time, and the library's own
    functions by cumulative time (cProfile), over ``steps`` steps after one warm-up step."""
    import cProfile
    import io
    import pstats

    dev, step, _, _ = make_step(model, phase, dtype, w_bits, batch_size, seq_len, device, num_negatives)
    step()
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA]
                                                          if dev.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(dev)
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    ops = prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=48)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    sync(dev)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(r"qlib[/\\]", top)
    return f"== {phase} ({dtype}, {steps} steps): torch operators by self time ==\n{ops}\n" \
           f"== the library's functions by cumulative time ==\n{out.getvalue()}"


def interleaved_cost(model: str = "tiny-llama", dtype: str = "fp32", w_bits: int = 2, batch_size: int = 4,
                     seq_len: int = 128, steps: int = 12, warmup: int = 2, device: str = "auto",
                     num_negatives: int = 64, compiled: bool = False) -> dict:
    """The contrastive loss's time cost resolved in one process: the L_dist step (b) and the L_dist + L_cont step
    (c) built side by side and timed in alternation, the order swapped every pair, so that a slow spell of the
    machine falls on both. Returns every step's time, each pair's c/b ratio, and their median and quartiles. Peak
    memory is not measured here (one process holds both): the phases of ``run_benchmark`` measure it."""
    if steps < 4:
        raise ValueError(f"steps ({steps}) must be at least 4: the quartiles need several pairs")
    made = {}
    for phase in ("b_qat_dist", "c_qat_dist_cont"):
        dev, step, _, _ = make_step(model, phase, dtype, w_bits, batch_size, seq_len, device, num_negatives,
                                    compiled)
        for _ in range(warmup):
            step()
        made[phase] = step
    sync(dev)
    sec = {phase: [] for phase in made}
    for i in range(steps):
        for phase in (made if i % 2 == 0 else reversed(made)):
            t = time.perf_counter()
            made[phase]()
            sync(dev)
            sec[phase].append(time.perf_counter() - t)
    ratios = [c / b for b, c in zip(sec["b_qat_dist"], sec["c_qat_dist_cont"])]
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    return {"dtype": dtype, "compiled": compiled, "b_sec_per_iter": statistics.median(sec["b_qat_dist"]),
            "c_sec_per_iter": statistics.median(sec["c_qat_dist_cont"]),
            "step_sec": {k: [round(x, 6) for x in v] for k, v in sec.items()},  # to the microsecond: tiny steps
            "ratios": [round(r, 4) for r in ratios], "median_ratio": median, "quartiles": [q1, q3]}


def dtypes_for(device: torch.device) -> tuple[str, ...]:
    """fp32 and bf16 side by side on CPU (bf16 is the training dtype only with matrix units); bf16 on CUDA."""
    return ("bf16",) if device.type == "cuda" else ("fp32", "bf16")


def check_idle(out: dict, phase: str) -> None:
    """Sample other work's CPU use just before a phase (nothing of ours runs then); warn and mark the JSON if busy."""
    if out["device"] != "cpu":
        return
    others = cpu_busy_cores()
    out["others_busy_cores"][phase] = None if others is None else round(others, 2)
    if others is not None and others > BUSY_CORES:
        out["busy"] = True
        print(f"WARNING: other work keeps {others:.2f} of {os.cpu_count()} cores busy before {phase}: these figures "
              f"are not the machine's (the JSON says busy: true)", file=sys.stderr)


def in_fresh_process(function: str, args: list, what: str) -> dict:
    """``function(*args)`` of this module run in a fresh Python process (so that one measurement's memory, caches and
    compiled graphs never count for another), its JSON result returned."""
    code = f"import json, qlib.bench.measure as m; print('RESULT' + json.dumps(m.{function}(*{args!r})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-2000:]}")
    return json.loads(line[0][len("RESULT"):])
