"""The benchmark runs end to end and reports every phase in every dtype (figures are printed, not asserted: no
timed tests)."""
import json

import pytest

from qlib import bench

pytestmark = pytest.mark.slow  # separate processes per test: not in the edit-test loop


def test_benchmark_reports_every_phase_dtype_and_ratio(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert bench.main(["--model", "tiny-gpt2", "--seq-len", "16", "--batch-size", "2", "--steps", "1",
                       "--warmup", "0", "--num-negatives", "4", "--device", "cpu", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["phases"]) == {f"{p}/{d}" for p in bench.PHASES for d in ("fp32", "bf16")}
    assert all(v["sec_per_iter"] > 0 and v["tokens_per_s"] > 0 and 0 < v["mfu"] and v["peak_mem_mib"] > 0
               for v in res["phases"].values())
    assert set(res["peak_flops"]) == {"fp32", "bf16"} and "busy" in res and "load_avg" in res
    assert set(res["ratios"]) == {"b/a time", "c/b time", "c/b memory", "packed/fake eval time"}
    assert abs(res["packed_file_mib"] - res["size_mb"]) / res["size_mb"] < 0.2
    assert "ratios:" in capsys.readouterr().out


def test_benchmark_compares_compiled_training_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "dtypes_for", lambda device: ("fp32",))  # one dtype is enough to check the keys
    saved = tmp_path / "b.json"
    res = bench.run_benchmark("tiny-gpt2", seq_len=16, batch_size=2, steps=1, warmup=1, device="cpu",
                              num_negatives=4, compare_compile=True, save_to=saved)
    assert {f"{p}/fp32+compile" for p in bench.COMPILED_PHASES} <= set(res["phases"])
    order = list(res["phases"])  # the compiled step and its eager twin first: a cut benchmark still decides compile
    assert order[:2] == ["c_qat_dist_cont/fp32", "c_qat_dist_cont/fp32+compile"] and len(order) == 6
    assert json.loads(saved.read_text()) == {**res, "complete": True}
    assert all(res["ratios"][f"{p} compiled/eager time"] > 0 for p in bench.COMPILED_PHASES)


def test_benchmark_measures_a_subset_of_phases_and_dtypes(tmp_path):
    out = tmp_path / "b.json"
    assert bench.main(["--model", "tiny-gpt2", "--seq-len", "16", "--batch-size", "2", "--steps", "1", "--warmup", "0",
                       "--num-negatives", "4", "--device", "cpu", "--phases", "b_qat_dist", "c_qat_dist_cont",
                       "--dtypes", "fp32", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert list(res["phases"]) == ["b_qat_dist/fp32", "c_qat_dist_cont/fp32"] and set(res["peak_flops"]) == {"fp32"}
    assert set(res["ratios"]) == {"c/b time", "c/b memory"} and res["complete"]
    with pytest.raises(ValueError, match="unknown phases"):
        bench.run_benchmark("tiny-gpt2", phases=("e_nothing",))


def test_cpu_busy_cores_sees_a_spinning_process():
    """The idle check measures other work now (not the 1-minute load average): a spinning child shows up."""
    import subprocess
    import sys

    from qlib.runtime import cpu_busy_cores
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert cpu_busy_cores(1.0) > 0.5
    finally:
        spinner.kill()


def test_profile_names_the_operators_and_the_library_functions_of_a_step():
    out = bench.profile_phase("tiny-llama", "c_qat_dist_cont", "fp32", batch_size=2, seq_len=16, steps=1,
                              device="cpu", num_negatives=4)
    assert "aten::" in out and "losses.py" in out and "quant.py" in out
