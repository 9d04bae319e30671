"""Data-parallel training under torchrun with the gloo backend (CPU, 2 processes, tiny model)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from .conftest import offline_data

pytestmark = pytest.mark.slow  # separate processes per test: not in the edit-test loop

ARGS = ["--model", "tiny-llama", "--method", "mds", "--w-bits", "2", "--seq-len", "32", "--num-negatives", "8",
        "--train-tokens", "4096", "--eval-tokens", "256", "--test-tokens", "256", "--max-steps", "10",
        "--save-every", "3", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(out_dir, extra=(), popen=False):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "qlib",
           "train", *ARGS, "--batch-size", "2", "--out-dir", str(out_dir), *extra]
    if popen:
        return subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    # every rank's traceback: the first one to fail is rarely the last in the output
    assert proc.returncode == 0, "\n".join(x for x in proc.stderr.splitlines() if "[rank" in x)[-6000:]
    return json.loads((out_dir / "result.json").read_text())


def _single(out_dir, extra=()):
    cmd = [sys.executable, "-m", "qlib", "train", *ARGS, "--batch-size", "4", "--out-dir", str(out_dir), *extra]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out_dir / "result.json").read_text())


def test_two_processes_keep_identical_banks_and_record_the_effective_batch(tmp_path):
    offline_data()
    res = _torchrun(tmp_path / "ddp")
    assert res["world_size"] == 2 and res["effective_batch"] == 4 and res["steps"] == 10
    a, b = res["bank_checksums"]
    assert a == b and a != 0.0


def test_two_processes_of_batch_b_match_one_process_of_batch_2b(tmp_path):
    offline_data()
    two = _torchrun(tmp_path / "two", ["--loss", "dist"])
    one = _single(tmp_path / "one", ["--loss", "dist"])
    l2 = [h["loss"] for h in two["history"] if "loss" in h]
    l1 = [h["loss"] for h in one["history"] if "loss" in h]
    assert len(l1) == len(l2) >= 1
    assert all(abs(x - y) <= 1e-3 * abs(y) for x, y in zip(l2, l1)), (l2, l1)
    assert two["metrics"]["test_ppl"] == pytest.approx(one["metrics"]["test_ppl"], rel=1e-3)


def test_a_killed_distributed_run_resumes(tmp_path):
    offline_data()
    full = _torchrun(tmp_path / "full")
    proc = _torchrun(tmp_path / "killed", popen=True)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                if torch.load(ckpt, weights_only=False)["step"] >= 3:
                    break
            except Exception:  # noqa: BLE001 - being written; the rename makes it appear whole
                pass
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "result.json").exists()
    resumed = _torchrun(tmp_path / "killed", ["--resume"])
    assert resumed["steps"] == 10 and resumed["metrics"] == full["metrics"]
