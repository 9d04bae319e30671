"""Benchmark: throughput, MFU and peak memory of (a) a full-precision fine-tuning step, (b) a QAT step with L_dist
only, (c) a QAT step with L_dist + lambda * L_cont, (d) evaluation forwards of the fake-quantized model and of the
model rebuilt from its packed export.

``python -m qlib.bench --model smollm2-135m --w-bits 2 --batch-size 4 --seq-len 128`` measures every phase in a
process of its own (so that one phase's memory and caches never count for another), warm-up steps excluded, in each
compute dtype the device offers (fp32 and bf16 autocast side by side on CPU; bf16 on CUDA), and prints a table with
tokens/s, MFU (model FLOPs per token x tokens/s / the device's own measured matmul peak in that dtype) and true peak
memory (CUDA: max allocated; CPU: the peak resident set of the phase's fresh process). It records the load average
and the cores, and warns loudly (and marks the JSON ``"busy": true``) when other work shares the machine: figures
taken then are not the machine's. A phase's s/iter is its median step; ``--repeats N`` measures every phase N times
(in turns) and gives the spread between repeats (the matmul peak is measured before every round and the highest
kept), and each phase records the share of its cores the hypervisor gave to other guests ("steal"), which no load
average inside a virtual machine shows. ``target_checks`` reads the speed targets (``TARGETS``) from a result round
by round, and the printed table ends with them. The paper's Table 5 compares c with b: 0.61 -> 0.67 s/iter,
14700 -> 14839 MB.

``--interleave`` measures what separate processes cannot resolve on a machine whose speed drifts: the time the
contrastive loss adds, with the b and c steps built side by side in one process and timed in alternation
(``interleaved_cost``).
"""
from __future__ import annotations

import argparse
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

from .config import TrainConfig
from .losses import ContrastiveHeads, TokenContrastiveLoss
from .models import load_tokenizer
from .modules import compile_layers
from .packing import export_packed, load_packed, size_mb
from .runtime import (adamw, autocast, cpu_busy_cores, cpu_has_bf16_matrix_units, cpu_steal_seconds, device_name,
                      provenance, resolve_device)
from .students import build_student, load_teacher
from .train import compute_loss

PHASES = ("a_fp_finetune", "b_qat_dist", "c_qat_dist_cont", "d_eval_fake_quant", "d_eval_packed")
DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: str, n: int | None = None, reps: int = 10) -> float:
    """The device's measured dense matmul throughput in ``dtype`` (FLOP/s): the denominator of MFU."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=DTYPE[dtype])
    b = torch.randn(n, n, device=device, dtype=DTYPE[dtype])
    for _ in range(3):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
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


def _phase(model: str, phase: str, dtype: str, w_bits: int, batch_size: int, seq_len: int, steps: int,
           warmup: int, device: str, num_negatives: int, compiled: bool = False) -> dict:
    """Measure one phase in this process (``main`` runs each in a fresh one); compilation happens in warm-up."""
    dev, step, student, extra = _make_step(model, phase, dtype, w_bits, batch_size, seq_len, device, num_negatives,
                                           compiled)
    for _ in range(warmup):
        step()
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step_sec, steal0, t_all = [], cpu_steal_seconds(), time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        step()
        _sync(dev)  # per step, so that each step's time is its own (a few microseconds on CUDA)
        step_sec.append(time.perf_counter() - t)
    wall, steal1 = time.perf_counter() - t_all, cpu_steal_seconds()
    # the median step: one slow step (a page fault, a neighbour on the host) does not move it, as it moves the mean
    sec = statistics.median(step_sec)
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if dev.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    tokens = batch_size * seq_len
    steal = None if None in (steal0, steal1) else (steal1 - steal0) / ((os.cpu_count() or 1) * wall)
    return {"sec_per_iter": sec, "tokens_per_s": tokens / sec, "peak_mem_mib": peak, "dtype": dtype,
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

    dev, step, _, _ = _make_step(model, phase, dtype, w_bits, batch_size, seq_len, device, num_negatives)
    step()
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA]
                                                          if dev.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        _sync(dev)
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    ops = prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=48)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    _sync(dev)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(r"qlib[/\\]", top)
    return f"== {phase} ({dtype}, {steps} steps): torch operators by self time ==\n{ops}\n" \
           f"== the library's functions by cumulative time ==\n{out.getvalue()}"


def _make_step(model: str, phase: str, dtype: str, w_bits: int, batch_size: int, seq_len: int, device: str,
               num_negatives: int, compiled: bool = False):
    """The device, one step of ``phase`` as a closure, the student and its size figures. ``compiled``: the student
    and L_dist are compiled as ``TrainConfig.compile`` does it."""
    dev = resolve_device(device)
    torch.manual_seed(0)
    method = "fp" if phase == "a_fp_finetune" else "mds"
    loss = {"a_fp_finetune": "lm", "c_qat_dist_cont": "dist+cont"}.get(phase, "dist")
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
    else:
        student.train()
        params = [p for p in student.parameters() if p.requires_grad] + (list(heads.parameters()) if heads else [])
        opt = adamw(params, dev, lr=1e-5)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast(dev, dtype):
                loss_, _ = compute_loss(cfg, student, None if loss == "lm" else teacher, heads, contrast, batch)
            loss_.backward()
            opt.step()
            if contrast is not None:
                contrast.update_memory()
    return dev, step, student, extra


def dtypes_for(device: torch.device) -> tuple[str, ...]:
    """fp32 and bf16 side by side on CPU (bf16 is the training dtype only with matrix units); bf16 on CUDA."""
    return ("bf16",) if device.type == "cuda" else ("fp32", "bf16")


BUSY_CORES = 0.25  # other work using more than a quarter of a core makes CPU figures not the machine's


def _check_idle(out: dict, phase: str) -> None:
    """Sample other work's CPU use just before a phase (nothing of ours runs then); warn and mark the JSON if busy."""
    if out["device"] != "cpu":
        return
    others = cpu_busy_cores()
    out["others_busy_cores"][phase] = None if others is None else round(others, 2)
    if others is not None and others > BUSY_CORES:
        out["busy"] = True
        print(f"WARNING: other work keeps {others:.2f} of {os.cpu_count()} cores busy before {phase}: these figures "
              f"are not the machine's (the JSON says busy: true)", file=sys.stderr)


# what `--compile` also measures compiled: the step every student takes, then the fine-tuning step (so that the QAT
# step's time over the fine-tuning step's compares compiled with compiled)
COMPILED_PHASES = ("c_qat_dist_cont", "a_fp_finetune")


def run_benchmark(model: str = "tiny-llama", w_bits: int = 2, batch_size: int = 4, seq_len: int = 128,
                  steps: int = 5, warmup: int = 2, device: str = "auto", num_negatives: int = 64,
                  compare_compile: bool = False, save_to: Path | None = None, phases: tuple[str, ...] = PHASES,
                  dtypes: tuple[str, ...] | None = None, repeats: int = 1) -> dict:
    """Every phase in every dtype, each in a fresh process; figures with MFU against the measured peak. With
    ``compare_compile`` the phases of ``COMPILED_PHASES`` are measured a second time with the student compiled
    (key suffix "+compile"), so that a run's ``compile`` setting can follow what wins. With ``save_to`` the JSON is
    written after every phase ("complete": false until the end), so a benchmark cut short keeps what it measured.
    ``phases`` and ``dtypes`` measure a subset (the ratios of what was measured). With ``repeats`` > 1 every phase
    runs that many times (fresh processes, in turns); a phase's figure is its median repeat, with every repeat's
    s/iter and their spread (max / min - 1) beside it, and each ratio is also given per round."""
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise ValueError(f"unknown phases {sorted(unknown)}; known: {PHASES}")
    dev = resolve_device(device)
    load = os.getloadavg()[0]
    if repeats < 1 or steps < 1:
        raise ValueError(f"steps ({steps}) and repeats ({repeats}) must be at least 1")
    out = {"model": model, "w_bits": w_bits, "batch_size": batch_size, "seq_len": seq_len, "steps": steps,
           "warmup": warmup, "repeats": repeats, **provenance(dev), "device_name": device_name(dev),
           "load_avg": round(load, 2),
           "busy": False, "others_busy_cores": {}, "cpu_bf16_matrix_units": cpu_has_bf16_matrix_units(),
           "peak_flops": {}, "phases": {}}
    done: dict[str, list[dict]] = {}  # every repeat of every phase
    peaks: dict[str, list[float]] = {}  # the matmul peak before every round: one measurement can come out low
    for dtype in dtypes or dtypes_for(dev):
        # with compare_compile the compiled QAT step and its eager twin come first: a benchmark cut short by a GPU
        # slot's limit still tells the slot whether to compile; the other compiled phases come last
        compiled_runs = [(p, True) for p in COMPILED_PHASES if p in phases] if compare_compile else []
        leading = [(p, c) for p, _ in compiled_runs[:1] for c in (False, True)]
        runs = leading + [(phase, False) for phase in phases if (phase, False) not in leading] + compiled_runs[1:]
        # repeats go round the phases in turn, so that a slow spell of the machine falls on every phase alike
        for rnd in range(repeats):
            peaks.setdefault(dtype, []).append(matmul_peak(dev, dtype))
            out["peak_flops"][dtype], out["peak_flops_by_round"] = max(peaks[dtype]), peaks
            for phase, compiled in runs:
                key = f"{phase}/{dtype}" + ("+compile" if compiled else "")
                _check_idle(out, key if repeats == 1 else f"{key}#{rnd}")
                res = _in_fresh_process("_phase", [model, phase, dtype, w_bits, batch_size, seq_len, steps, warmup,
                                                    device, num_negatives, compiled], f"benchmark phase {key}")
                res["mfu"] = res["flops_per_token"] * res["tokens_per_s"] / out["peak_flops"][dtype]
                done.setdefault(key, []).append(res)
                out["phases"][key] = _median_repeat(done[key])
                if save_to is not None:
                    _write(save_to, {**out, "complete": False})
    for v in out["phases"].values():  # MFU against the highest peak measured, known only now
        v["mfu"] = v["flops_per_token"] * v["tokens_per_s"] / out["peak_flops"][v["dtype"]]
    first = (dtypes or dtypes_for(dev))[0]
    p = {k.split("/")[0]: v for k, v in out["phases"].items() if k.endswith("/" + first)}
    if "d_eval_fake_quant" in p:
        out["size_mb"] = p["d_eval_fake_quant"]["size_mb"]
    if "d_eval_packed" in p:
        out["packed_file_mib"] = p["d_eval_packed"]["packed_file_mib"]
    ratios = {"b/a time": ("b_qat_dist", "a_fp_finetune", "sec_per_iter"),
              "c/b time": ("c_qat_dist_cont", "b_qat_dist", "sec_per_iter"),
              "c/b memory": ("c_qat_dist_cont", "b_qat_dist", "peak_mem_mib"),
              "packed/fake eval time": ("d_eval_packed", "d_eval_fake_quant", "sec_per_iter")}
    out["ratios"] = {name: p[num][key] / max(p[den][key], 1e-9) for name, (num, den, key) in ratios.items()
                     if num in p and den in p}
    if repeats > 1:  # each ratio within each round: how far the machine's drift moves it
        r = {k.split("/")[0]: v for k, v in done.items() if k.endswith("/" + first)}
        out["ratios_by_repeat"] = {name: [a[key] / max(b[key], 1e-9) for a, b in zip(r[num], r[den])]
                                   for name, (num, den, key) in ratios.items() if num in r and den in r}
    for phase in COMPILED_PHASES if compare_compile else ():
        if phase in p and f"{phase}/{first}+compile" in out["phases"]:
            compiled = out["phases"][f"{phase}/{first}+compile"]["sec_per_iter"]
            out["ratios"][f"{phase} compiled/eager time"] = compiled / p[phase]["sec_per_iter"]
    out["complete"] = True
    if save_to is not None:
        _write(save_to, out)
    return out


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
        dev, step, _, _ = _make_step(model, phase, dtype, w_bits, batch_size, seq_len, device, num_negatives,
                                     compiled)
        for _ in range(warmup):
            step()
        made[phase] = step
    _sync(dev)
    sec = {phase: [] for phase in made}
    for i in range(steps):
        for phase in (made if i % 2 == 0 else reversed(made)):
            t = time.perf_counter()
            made[phase]()
            _sync(dev)
            sec[phase].append(time.perf_counter() - t)
    ratios = [c / b for b, c in zip(sec["b_qat_dist"], sec["c_qat_dist_cont"])]
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    return {"dtype": dtype, "compiled": compiled, "b_sec_per_iter": statistics.median(sec["b_qat_dist"]),
            "c_sec_per_iter": statistics.median(sec["c_qat_dist_cont"]),
            "step_sec": {k: [round(x, 6) for x in v] for k, v in sec.items()},  # to the microsecond: tiny steps
            "ratios": [round(r, 4) for r in ratios], "median_ratio": median, "quartiles": [q1, q3]}


def run_interleaved(model: str = "tiny-llama", w_bits: int = 2, batch_size: int = 4, seq_len: int = 128,
                    steps: int = 12, warmup: int = 2, device: str = "auto", num_negatives: int = 64,
                    dtypes: tuple[str, ...] | None = None, save_to: Path | None = None,
                    compiled: bool = False) -> dict:
    """``interleaved_cost`` in every dtype, each in a fresh process, with the benchmark's provenance and idle check."""
    dev = resolve_device(device)
    out = {"kind": "interleaved", "compiled": compiled, "model": model, "w_bits": w_bits, "batch_size": batch_size,
           "seq_len": seq_len, "steps": steps, "warmup": warmup, **provenance(dev), "device_name": device_name(dev),
           "load_avg": round(os.getloadavg()[0], 2), "busy": False, "others_busy_cores": {}, "dtypes": {}}
    for dtype in dtypes or dtypes_for(dev):
        _check_idle(out, dtype)
        out["dtypes"][dtype] = _in_fresh_process(
            "interleaved_cost", [model, dtype, w_bits, batch_size, seq_len, steps, warmup, device, num_negatives,
                                 compiled], f"interleaved measurement in {dtype}")
        if save_to is not None:
            _write(save_to, {**out, "complete": False})
    out["complete"] = True
    if save_to is not None:
        _write(save_to, out)
    return out


def interleaved_checks(res: dict) -> list[dict]:
    """The contrastive loss's time target (``TARGETS["any"]``) read from an interleaved measurement: met when the
    median pair's ratio is within it, and whether its interquartile range is too."""
    target = TARGETS["any"]["cont_over_dist_time"]
    rows = []
    for dtype, v in res["dtypes"].items():
        q1, q3 = v["quartiles"]
        if v["median_ratio"] <= target:
            verdict = "met, its quartiles too" if q3 <= target else "met, but not its upper quartile"
        else:
            verdict = "missed, its quartiles too" if q1 > target else "missed, but not its lower quartile"
        rows.append({"dtype": dtype, "check": "L_cont: time over L_dist alone (interleaved, one process)",
                     "target": f"<= {target:g}", "median": v["median_ratio"], "per round": [q1, q3],
                     "verdict": verdict})
    return rows


# The speed issue's targets (read from a benchmark's JSON, never asserted by a timed test): tokens/s of the QAT step
# with the contrastive loss in the target's own setting, that step's time over the fp fine-tuning step's, and what the
# contrastive loss adds in time and memory over L_dist alone.
TARGETS = {"cpu": {"setting": (4, 128), "tokens_per_s": 200, "qat_over_fp_time": 1.5},
           "cuda": {"setting": (32, 512), "tokens_per_s": 150_000},
           "any": {"cont_over_dist_time": 1.05, "cont_over_dist_memory": 1.02}}


def target_checks(res: dict) -> list[dict]:
    """Each target of ``TARGETS`` checked in a benchmark result, per dtype and for the eager and compiled QAT +
    L_cont step: the median figure, the figure of every round (repeats run in turns, so round i of two phases ran
    minutes apart on the same machine) and whether the target was met in every round, in some, or in none."""
    device = "cpu" if res["device"] == "cpu" else "cuda"
    t, rows = {**TARGETS[device], **TARGETS["any"]}, []

    def rounds(v):
        return v.get("repeat_sec_per_iter") or [v["sec_per_iter"]]

    def check(dtype, what, target, median, per_round, at_most=True):
        met = [x <= target if at_most else x >= target for x in per_round]
        verdict = ("met" if all(met) else "missed" if not any(met) else f"met in {sum(met)} of {len(met)} rounds") \
            + (" in every round" if len(met) > 1 and (all(met) or not any(met)) else "")
        rows.append({"dtype": dtype, "check": what, "target": ("<= " if at_most else ">= ") + f"{target:g}",
                     "median": median, "per round": per_round, "verdict": verdict})

    for dtype in res["peak_flops"]:
        ph = {k.split("/")[0] + ("+compile" if k.endswith("+compile") else ""): v
              for k, v in res["phases"].items() if k.split("/")[1].split("+")[0] == dtype}
        b = ph.get("b_qat_dist")
        for suffix in ("", "+compile"):
            c = ph.get("c_qat_dist_cont" + suffix)
            if c is None:
                continue
            step = "QAT + L_cont step" + (", compiled" if suffix else "")
            if (res["batch_size"], res["seq_len"]) == t["setting"]:
                tokens = c["tokens_per_s"] * c["sec_per_iter"]
                check(dtype, f"{step}: tokens/s", t["tokens_per_s"], c["tokens_per_s"],
                      [tokens / x for x in rounds(c)], at_most=False)
            # like with like: the compiled step over the compiled fine-tuning step where the file has it (older
            # files measured the fine-tuning step eager only, and say so)
            a_key = "a_fp_finetune" + (suffix if "a_fp_finetune" + suffix in ph else "")
            a = ph.get(a_key)
            if a is not None and "qat_over_fp_time" in t:
                over = ("compiled" if a_key.endswith("+compile") else "eager") + " fp fine-tuning step"
                check(dtype, f"{step}: time / {over}", t["qat_over_fp_time"],
                      c["sec_per_iter"] / a["sec_per_iter"], [x / y for x, y in zip(rounds(c), rounds(a))])
        c = ph.get("c_qat_dist_cont")
        if b is not None and c is not None:
            check(dtype, "L_cont: time over L_dist alone (eager)", t["cont_over_dist_time"],
                  c["sec_per_iter"] / b["sec_per_iter"], [x / y for x, y in zip(rounds(c), rounds(b))])
            mem = c["peak_mem_mib"] / b["peak_mem_mib"]  # the largest peak over the repeats of each
            check(dtype, "L_cont: peak memory over L_dist alone (eager)", t["cont_over_dist_memory"], mem, [mem])
    return rows


def _in_fresh_process(function: str, args: list, what: str) -> dict:
    """``function(*args)`` of this module run in a fresh Python process (so that one measurement's memory, caches and
    compiled graphs never count for another), its JSON result returned."""
    code = f"import json, qlib.bench as b; print('RESULT' + json.dumps(b.{function}(*{args!r})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-2000:]}")
    return json.loads(line[0][len("RESULT"):])


def _median_repeat(reps: list[dict]) -> dict:
    """A phase's figure over its repeats: the repeat with the median s/iter (the lower one of an even count), its
    peak memory the largest seen, and every repeat's s/iter with their spread."""
    ranked = sorted(reps, key=lambda r: r["sec_per_iter"])
    secs = [r["sec_per_iter"] for r in reps]
    return {**ranked[(len(ranked) - 1) // 2], "peak_mem_mib": max(r["peak_mem_mib"] for r in reps),
            "repeat_sec_per_iter": secs, "spread": max(secs) / min(secs) - 1}


def _write(path: Path, res: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1))


def format_table(res: dict) -> str:
    lines = [f"{res['model']}  W{res['w_bits']}  batch {res['batch_size']} x seq {res['seq_len']}  on "
             f"{res['device']} ({res['device_name']}), load average {res['load_avg']}"
             + ("  ** BUSY: not the machine's figures **" if res["busy"] else ""),
             "peak matmul: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in res["peak_flops"].items()),
             f"{'phase':<28}{'s/iter':>10}{'tokens/s':>12}{'MFU':>8}{'peak MiB':>12}{'spread':>9}{'steal':>8}"]
    for k, v in res["phases"].items():
        spread = f"{100 * v['spread']:>8.1f}%" if "spread" in v else f"{'-':>9}"
        steal = f"{100 * v['steal_frac']:>7.1f}%" if v.get("steal_frac") is not None else f"{'-':>8}"
        lines.append(f"{k:<28}{v['sec_per_iter']:>10.3f}{v['tokens_per_s']:>12.0f}{100 * v['mfu']:>7.1f}%"
                     f"{v['peak_mem_mib']:>12.0f}{spread}{steal}")
    lines.append("ratios: " + ", ".join(f"{k} = {v:.3f}" for k, v in res.get("ratios", {}).items()))
    for k, v in res.get("ratios_by_repeat", {}).items():
        lines.append(f"  {k} per round: " + ", ".join(f"{x:.3f}" for x in v))
    for r in target_checks(res):
        lines.append(f"  target {r['dtype']} {r['check']} {r['target']}: {r['median']:.3g} (rounds "
                     + ", ".join(f"{x:.3g}" for x in r["per round"]) + f"): {r['verdict']}")
    if "size_mb" in res and "packed_file_mib" in res:
        lines.append(f"size_mb = {res['size_mb']:.1f} MiB, packed file = {res['packed_file_mib']:.1f} MiB")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m qlib.bench", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--w-bits", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=1,
                   help="measure every phase this many times (fresh processes, in turns): median and spread")
    p.add_argument("--num-negatives", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="JSON file to write (default: results/bench/<setting>.json)")
    p.add_argument("--profile", default=None, choices=PHASES,
                   help="instead of the benchmark: profile this phase (operators and the library's functions)")
    p.add_argument("--dtype", default="fp32", choices=tuple(DTYPE), help="the dtype of --profile")
    p.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES, help="measure only these phases")
    p.add_argument("--dtypes", nargs="+", default=None, choices=tuple(DTYPE),
                   help="measure only these dtypes (default: fp32 and bf16 on CPU, bf16 on CUDA)")
    p.add_argument("--compile", action="store_true",
                   help="also measure the QAT step (L_dist + L_cont) and, last, the fine-tuning step with the "
                        "student compiled (torch.compile)")
    p.add_argument("--interleave", action="store_true",
                   help="instead of the benchmark: time the L_dist and L_dist + L_cont steps in alternation in one "
                        "process per dtype (the contrastive loss's time cost, free of the machine's drift; with "
                        "--compile both steps compiled)")
    a = p.parse_args(argv)
    if a.profile:
        print(profile_phase(a.model, a.profile, a.dtype, a.w_bits, a.batch_size, a.seq_len, a.steps, a.device,
                            a.num_negatives))
        return 0
    from .experiments import RESULTS

    dev = resolve_device(a.device).type
    setting = f"{a.model}-w{a.w_bits}-b{a.batch_size}-s{a.seq_len}-{dev}"
    if a.interleave:
        path = Path(a.out) if a.out else \
            RESULTS / "bench" / f"{setting}-interleaved{'-compile' if a.compile else ''}.json"
        res = run_interleaved(a.model, a.w_bits, a.batch_size, a.seq_len, a.steps, a.warmup, a.device,
                              a.num_negatives, tuple(a.dtypes) if a.dtypes else None, save_to=path,
                              compiled=a.compile)
        for r in interleaved_checks(res):
            print(f"{r['dtype']} {r['check']} {r['target']}: median {r['median']:.3f} (quartiles "
                  + ", ".join(f"{x:.3f}" for x in r["per round"]) + f"): {r['verdict']}")
        print(f"wrote {path}")
        return 0
    path = Path(a.out) if a.out else RESULTS / "bench" / f"{setting}.json"
    res = run_benchmark(a.model, a.w_bits, a.batch_size, a.seq_len, a.steps, a.warmup, a.device, a.num_negatives,
                        a.compile, save_to=path, phases=tuple(a.phases), dtypes=tuple(a.dtypes) if a.dtypes else None,
                        repeats=a.repeats)
    print(format_table(res))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
