"""One command for a short lent GPU slot: ``python -m qlib gpu-run --minutes 9 --out OUT``.

Within the time it is given it runs the benchmark first (at most ``bench_minutes``; it times the QAT step eager
and compiled), then a queue of runs in order (the teacher if missing, the control, the 2-2-8 students, ...), each in
its own process and resumable (a run cut short by the limit keeps its checkpoint for the next slot), compiled when
the benchmark found that faster (``COMPILE_WINS``), and packs every result file of the preset into one
archive ``OUT/results.tar.gz`` (a slot brings back a handful of files, so one archive is the unit). It needs nothing
from the network: the model comes from the offline package or from a GGUF file given with ``--gguf``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import torch

from . import experiments as X

COMPILE_WINS = 0.95  # train compiled when a compiled QAT step (L_dist + L_cont) takes under this share of an eager one

# what a slot runs, in order: (grid, run names); the teacher comes first through its students' dependency
QUEUE = (("lm-dtype", ("mds-228-bf16", "mds-228-bf16-seed1", "mds-228-fp32")),  # minutes; needs no teacher
         ("lm-table", ("teacher", "control", "mds-228", "lsq-228", "laq-228", "pact-228")),
         ("lm-seeds", ("mds-228-seed1", "mds-228-seed2")),
         ("lm-table", ("mds-448", "lsq-448", "laq-448", "pact-448", "mds-888", "lsq-888", "laq-888", "pact-888")),
         *((g, ("teacher", "control", "mds-228", "lsq-228", "laq-228", "pact-228")) for g in ("xsum-table",
                                                                                         "dialogue-table")))


def _run(cmd: list[str], limit_s: float, log) -> str:
    """Run ``cmd`` for at most ``limit_s`` seconds; returns "done", "failed" or "cut"."""
    if limit_s <= 5:
        return "cut"
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        return "done" if proc.wait(timeout=limit_s) == 0 else "failed"
    except subprocess.TimeoutExpired:
        proc.terminate()  # the last checkpoint stays: the next slot resumes the run
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        return "cut"


def pack_results(preset: str, out: Path) -> Path:
    """Every result file of ``preset`` (and the benchmark's) into ``out/results.tar.gz``, paths relative to
    ``results/``."""
    out.mkdir(parents=True, exist_ok=True)
    archive = out / "results.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted([*X.results_dir().rglob("*.json"), *(X.results_dir() / "bench").glob("*.txt")]):
            if path.stem.endswith(f"-{preset}") or f"-{preset}-" in path.stem or path.parent.name == "bench":
                tar.add(path, arcname=str(path.relative_to(X.results_dir())))
    return archive


def compile_wins(bench: Path) -> tuple[bool, float | None]:
    """Whether the benchmark in ``bench`` found the compiled QAT step faster (by ``COMPILE_WINS``), and the ratio;
    (False, None) when it has no compiled figure. A benchmark cut short after its compiled phase still counts."""
    if not bench.is_file():
        return False, None
    res = json.loads(bench.read_text())
    ratio = res.get("ratios", {}).get("c_qat_dist_cont compiled/eager time")
    if ratio is None:
        eager = {k: v for k, v in res.get("phases", {}).items() if k.startswith("c_qat_dist_cont/")}
        compiled = [k for k in eager if k.endswith("+compile")]
        if compiled and compiled[0].removesuffix("+compile") in eager:
            ratio = eager[compiled[0]]["sec_per_iter"] / eager[compiled[0].removesuffix("+compile")]["sec_per_iter"]
    return (ratio is not None and ratio < COMPILE_WINS), ratio


def gpu_run(minutes: float, out: Path, preset: str = "gpu", bench_minutes: float = 4.0, gguf: str | None = None,
            queue=QUEUE, margin_s: float = 30.0, profile_minutes: float = 1.5) -> dict:
    """Run the slot (module docstring); returns {"bench": state, "compile": [chosen, ratio], "profile": state,
    "grid/run name": state, "archive": path}. ``bench_minutes`` or ``profile_minutes`` 0 skips that step."""
    if gguf:
        os.environ["QLIB_SMOLLM2_GGUF"] = str(Path(gguf).resolve())
    deadline = time.time() + 60 * minutes - margin_s
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    states = {}
    with open(out / "gpu-run.log", "a") as log:
        bench_json = X.results_dir() / "bench" / f"{preset}-slot.json"
        base = X.lm_base(preset)  # the benchmark at the preset's own batch and sequence length
        shape = ["--model", base["model"], "--batch-size", str(base["batch_size"]), "--seq-len", str(base["seq_len"]),
                 "--num-negatives", str(base["num_negatives"])]
        bench = [sys.executable, "-m", "qlib.bench", *shape, "--compile", "--out", str(bench_json)]
        states["bench"] = _run(bench, min(60 * bench_minutes, deadline - time.time()), log)
        states["compile"] = list(compile_wins(bench_json))
        use_compile = states["compile"][0]
        # where the QAT step's time goes on this device (operators and the library's functions), for the next change
        dtype = "bf16" if torch.cuda.is_available() else "fp32"
        profile_txt = X.results_dir() / "bench" / f"profile-{base['model']}-c_qat_dist_cont-{dtype}-{preset}-slot.txt"
        profile = [sys.executable, "-m", "qlib.bench", *shape, "--profile", "c_qat_dist_cont", "--dtype", dtype]
        profile_txt.parent.mkdir(parents=True, exist_ok=True)
        with open(profile_txt, "w") as txt:
            states["profile"] = _run(profile, min(60 * profile_minutes, deadline - time.time()), txt)
        if states["profile"] != "done":  # a cut profile has no table yet: nothing to bring back
            profile_txt.unlink()
        for grid, names in queue:
            for name in names:
                if X.load_result(X.runs(grid, preset)[name]) is not None:
                    states[f"{grid}/{name}"] = "done before"
                    continue
                cmd = [sys.executable, "-m", "qlib", "grid", grid, "--preset", preset, f"--only={name}"]
                cmd += ["--compile"] if use_compile else []
                states[f"{grid}/{name}"] = _run(cmd, deadline - time.time(), log)
    states["archive"] = str(pack_results(preset, out))
    return states
