"""The GPU-slot command, on the CPU with the tiny model: it stops within its limit and packs what it made."""
import tarfile
import time

import pytest

from qlib import experiments as X
from qlib import gpu_slot

from .conftest import offline_data


@pytest.mark.slow
def test_gpu_run_stops_in_time_and_packs_its_results(tmp_path, monkeypatch):
    offline_data()
    monkeypatch.setenv("QLIB_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("QLIB_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(X, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(X, "RUNS", tmp_path / "runs")
    start = time.time()
    # one minute, less a margin of 20 s: the benchmark and a few tiny runs fit, the whole queue does not
    states = gpu_slot.gpu_run(1.0, tmp_path / "out", preset="smoke", bench_minutes=0.3, margin_s=20.0)
    assert time.time() - start < 60, states
    assert states["lm-table/teacher"] == "done" and "cut" in states.values(), states
    with tarfile.open(states["archive"]) as tar:
        names = tar.getnames()
    assert "lm/ptb-tiny-llama-fp-smoke.json" in names
    assert all(n.endswith(".json") for n in names)
    # a second slot skips what is done
    again = gpu_slot.gpu_run(0.2, tmp_path / "out2", preset="smoke", bench_minutes=0.05, margin_s=5.0)
    assert again["lm-table/teacher"] == "done before"
