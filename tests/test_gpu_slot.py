"""The GPU-slot command, on the CPU with the tiny model: it stops within its limit and packs what it made."""
import dataclasses
import json
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
    # how fast torch.compile is on this machine must not decide whether the queue's head fits: train eager here
    # (the choice itself is tested below, from benchmark files)
    monkeypatch.setattr(gpu_slot, "COMPILE_WINS", 0.0)
    start = time.time()
    # 1.5 minutes, less a margin of 20 s: the benchmark, the profile and a few tiny runs fit, the whole queue does not
    states = gpu_slot.gpu_run(1.5, tmp_path / "out", preset="smoke", bench_minutes=0.3, margin_s=20.0,
                              profile_minutes=0.3)
    assert time.time() - start < 90, states
    first = f"{gpu_slot.QUEUE[0][0]}/{gpu_slot.QUEUE[0][1][0]}"  # the queue runs in order: its head is done
    assert states[first] == "done" and "cut" in states.values(), states
    # the choice is read from the benchmark this slot wrote (its ratio when the compiled phase ran, else None)
    assert states["compile"] == [False, gpu_slot.compile_wins(tmp_path / "results" / "bench" / "smoke-slot.json")[1]]
    with tarfile.open(states["archive"]) as tar:
        names = tar.getnames()
    assert "lm/ptb-tiny-llama-mds-228-bf16-smoke.json" in names
    assert all(n.endswith(".json") or n.startswith("bench/") for n in names)
    assert states["profile"] in ("done", "cut")  # cut when the machine is busy; never "failed"
    assert ("bench/profile-tiny-llama-c_qat_dist_cont-fp32-smoke-slot.txt" in names) == (states["profile"] == "done")
    # a second slot skips what is done
    again = gpu_slot.gpu_run(0.2, tmp_path / "out2", preset="smoke", bench_minutes=0, margin_s=5.0, profile_minutes=0)
    assert again[first] == "done before"


def test_the_slot_trains_compiled_only_when_the_benchmark_found_it_faster(tmp_path):
    bench = tmp_path / "bench.json"
    assert gpu_slot.compile_wins(bench) == (False, None)  # no benchmark: eager
    for ratio, wins in ((0.7, True), (0.97, False), (1.3, False)):
        bench.write_text(json.dumps({"ratios": {"c_qat_dist_cont compiled/eager time": ratio}}))
        assert gpu_slot.compile_wins(bench) == (wins, ratio)
    bench.write_text(json.dumps({"ratios": {}}))  # measured without --compile
    assert gpu_slot.compile_wins(bench) == (False, None)
    step = {"c_qat_dist_cont/bf16": {"sec_per_iter": 0.4}, "c_qat_dist_cont/bf16+compile": {"sec_per_iter": 0.3}}
    bench.write_text(json.dumps({"phases": step, "complete": False}))  # cut after its compiled phase
    assert gpu_slot.compile_wins(bench) == (True, 0.3 / 0.4)


def test_grid_compile_flag_trains_compiled_and_finds_eager_results(monkeypatch):
    from qlib.__main__ import _parser
    args = vars(_parser().parse_args(["grid", "lm-table", "--preset", "smoke", "--compile", "--list"]))
    assert args["compile"] is True
    cfg = X.runs("lm-table", "smoke")["mds-228"]
    assert X.same_config(dataclasses.asdict(cfg), dataclasses.asdict(dataclasses.replace(cfg, compile=True)))
