"""The benchmark runs end to end and reports every phase in every dtype (figures are printed, not asserted: no
timed tests)."""
import json
import re
from pathlib import Path

import pytest

from qlib import bench
from qlib.bench import runner

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
    monkeypatch.setattr(runner, "dtypes_for", lambda device: ("fp32",))  # one dtype is enough to check the keys
    saved = tmp_path / "b.json"
    res = bench.run_benchmark("tiny-gpt2", seq_len=16, batch_size=2, steps=1, warmup=1, device="cpu",
                              num_negatives=4, compare_compile=True, save_to=saved)
    assert {f"{p}/fp32+compile" for p in bench.COMPILED_PHASES} <= set(res["phases"])
    order = list(res["phases"])  # the compiled step and its eager twin first: a cut benchmark still decides compile
    assert order[:2] == ["c_qat_dist_cont/fp32", "c_qat_dist_cont/fp32+compile"] and len(order) == 7
    assert order[-1] == "a_fp_finetune/fp32+compile"  # the fine-tuning step compiled last: the least needed
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


def test_repeats_give_each_phase_its_median_repeat_the_spread_and_per_round_ratios(tmp_path):
    out = tmp_path / "b.json"
    assert bench.main(["--model", "tiny-gpt2", "--seq-len", "16", "--batch-size", "2", "--steps", "3", "--warmup", "0",
                       "--num-negatives", "4", "--device", "cpu", "--phases", "b_qat_dist", "c_qat_dist_cont",
                       "--dtypes", "fp32", "--repeats", "3", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    for v in res["phases"].values():
        reps = v["repeat_sec_per_iter"]
        assert len(reps) == 3 and v["sec_per_iter"] == sorted(reps)[1] and len(v["step_sec"]) == 3
        assert v["spread"] == pytest.approx(max(reps) / min(reps) - 1)
        assert v["steal_frac"] is None or 0 <= v["steal_frac"] <= 1
        # MFU against the highest of the matmul peaks measured before each round
        assert v["mfu"] == pytest.approx(v["flops_per_token"] * v["tokens_per_s"] / res["peak_flops"]["fp32"])
    assert len(res["peak_flops_by_round"]["fp32"]) == 3 and res["peak_flops"]["fp32"] == max(
        res["peak_flops_by_round"]["fp32"])
    rounds = res["ratios_by_repeat"]["c/b time"]
    c, b = (res["phases"][k]["repeat_sec_per_iter"] for k in ("c_qat_dist_cont/fp32", "b_qat_dist/fp32"))
    assert rounds == pytest.approx([x / y for x, y in zip(c, b)])
    with pytest.raises(ValueError, match="repeats"):
        bench.run_benchmark("tiny-gpt2", repeats=0)


def test_a_phase_figure_is_its_median_step_and_median_repeat():
    """One slow step or one slow repeat (a neighbour on the host) does not move the figure, as it moves a mean."""
    reps = [{"sec_per_iter": s, "peak_mem_mib": m} for s, m in ((1.0, 10), (5.0, 12), (1.2, 11))]
    med = bench.median_repeat(reps)
    assert med["sec_per_iter"] == 1.2 and med["peak_mem_mib"] == 12 and med["spread"] == pytest.approx(4.0)
    assert bench.median_repeat(reps[:2])["sec_per_iter"] == 1.0  # even count: the lower median


def _phase_result(secs, mem=1000.0, tokens=512):
    med = sorted(secs)[(len(secs) - 1) // 2]
    return {"sec_per_iter": med, "tokens_per_s": tokens / med, "peak_mem_mib": mem, "repeat_sec_per_iter": secs}


def test_targets_are_read_round_by_round_per_dtype_and_for_the_compiled_step():
    res = {"device": "cpu", "batch_size": 4, "seq_len": 128, "peak_flops": {"fp32": 1.0, "bf16": 1.0}, "phases": {
        "a_fp_finetune/bf16": _phase_result([1.0, 1.0, 1.0]),
        "b_qat_dist/bf16": _phase_result([2.0, 2.0, 2.0], mem=1000.0),
        # 512 tokens a step: 256, 200, 171 tokens/s; over the fine-tuning step 2.0, 2.56, 3.0; over L_dist 1.0-1.5
        "c_qat_dist_cont/bf16": _phase_result([2.0, 2.56, 3.0], mem=1030.0),
        "c_qat_dist_cont/bf16+compile": _phase_result([1.2, 1.4, 1.3]),
        "a_fp_finetune/fp32": _phase_result([1.0]), "b_qat_dist/fp32": _phase_result([2.0]),
        "c_qat_dist_cont/fp32": _phase_result([2.05])}}
    rows = {(r["dtype"], r["check"]): r for r in bench.target_checks(res)}
    assert rows[("bf16", "QAT + L_cont step: tokens/s")]["verdict"] == "met in 2 of 3 rounds"
    assert rows[("bf16", "QAT + L_cont step: time / eager fp fine-tuning step")]["verdict"] == "missed in every round"
    compiled = rows[("bf16", "QAT + L_cont step, compiled: time / eager fp fine-tuning step")]
    assert compiled["verdict"] == "met in every round" and compiled["per round"] == pytest.approx([1.2, 1.4, 1.3])
    assert rows[("bf16", "L_cont: peak memory over L_dist alone (eager)")]["verdict"] == "missed"  # +3% > +2%
    assert rows[("bf16", "L_cont: time over L_dist alone (eager)")]["per round"] == pytest.approx([1.0, 1.28, 1.5])
    assert rows[("fp32", "L_cont: time over L_dist alone (eager)")]["verdict"] == "met"  # one run: no rounds
    # with the fine-tuning step compiled too, the compiled QAT step is read against it (like with like)
    res["phases"]["a_fp_finetune/bf16+compile"] = _phase_result([0.5, 1.0, 0.6])
    rows = {(r["dtype"], r["check"]): r for r in bench.target_checks(res)}
    compiled = rows[("bf16", "QAT + L_cont step, compiled: time / compiled fp fine-tuning step")]
    assert compiled["verdict"] == "met in 1 of 3 rounds" and compiled["per round"] == pytest.approx([2.4, 1.4, 1.3/.6])
    assert ("bf16", "QAT + L_cont step, compiled: time / eager fp fine-tuning step") not in rows
    assert rows[("bf16", "QAT + L_cont step: time / eager fp fine-tuning step")]["median"] == pytest.approx(2.56)
    # a GPU file at another setting than the GPU target's has no tokens/s check, and no fine-tuning-ratio target
    gpu = {**res, "device": "cuda", "peak_flops": {"bf16": 1.0}}
    assert {r["check"] for r in bench.target_checks(gpu)} == {"L_cont: time over L_dist alone (eager)",
                                                              "L_cont: peak memory over L_dist alone (eager)"}


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
    # the quantizers' code: qlib/quant.py, or the package qlib/quant/ once split
    assert "aten::" in out and "losses.py" in out and re.search(r"qlib[/\\]quant(\.py|[/\\])", out)


def test_the_performance_page_reads_the_committed_benchmarks():
    """The committed CPU benchmark gives the page its rows: every step kind of it, in each dtype it measured."""
    from qlib import report
    from qlib.experiments import results_dir
    b = json.loads((results_dir() / "bench" / f"{report.CPU_BENCH}.json").read_text())
    table = report.performance_table()
    assert not table.iloc[0, 0].startswith("not run")
    cpu = table[table["device and dtype"].str.contains("CPU")]
    assert len(cpu) >= len([k for k in b["phases"] if "+" not in k])
    assert cpu["tokens/s"].str.replace(",", "").astype(float).gt(0).all()


def test_the_interleaved_measurement_times_both_steps_in_one_process(tmp_path):
    """--interleave: per dtype, both steps timed in alternation in one process, each pair's ratio kept, the median
    and quartiles computed from them, with provenance and the idle check."""
    out = tmp_path / "i.json"
    assert bench.main(["--model", "tiny-gpt2", "--seq-len", "16", "--batch-size", "2", "--steps", "6", "--warmup", "1",
                       "--num-negatives", "4", "--device", "cpu", "--dtypes", "fp32", "--interleave",
                       "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["kind"] == "interleaved" and res["complete"] and not res.get("phases")
    assert set(res["dtypes"]) == {"fp32"} and "fp32" in res["others_busy_cores"] and "code_version" in res
    v = res["dtypes"]["fp32"]
    assert len(v["ratios"]) == 6 and all(len(x) == 6 for x in v["step_sec"].values())
    assert v["ratios"] == pytest.approx([c / b for b, c in zip(v["step_sec"]["b_qat_dist"],
                                                               v["step_sec"]["c_qat_dist_cont"])], rel=1e-3)
    assert v["quartiles"][0] <= v["median_ratio"] <= v["quartiles"][1]
    with pytest.raises(ValueError, match="at least 4"):
        bench.interleaved_cost("tiny-gpt2", steps=3)


def test_an_interleaved_target_is_met_on_its_median_and_says_where_its_quartiles_lie():
    def res(median, q1, q3):
        return {"dtypes": {"bf16": {"median_ratio": median, "quartiles": [q1, q3]}}}
    assert bench.interleaved_checks(res(1.02, 1.0, 1.04))[0]["verdict"] == "met, its quartiles too"
    assert bench.interleaved_checks(res(1.02, 0.98, 1.09))[0]["verdict"] == "met, but not its upper quartile"
    assert bench.interleaved_checks(res(1.08, 1.03, 1.12))[0]["verdict"] == "missed, but not its lower quartile"
    assert bench.interleaved_checks(res(1.08, 1.06, 1.12))[0]["verdict"] == "missed, its quartiles too"


def test_the_targets_read_committed_results_without_torch():
    """qlib.bench.targets (and the package's own import) needs no torch: run in a process where importing torch
    fails, it checks the targets of every committed result file and prints their tables. The parent package ``qlib``
    is stood in for by an empty one, since its own ``__init__`` imports torch."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    code = f"""
import json, sys, types
from pathlib import Path
sys.modules["torch"] = None  # any import of torch now raises ImportError
qlib = types.ModuleType("qlib")
qlib.__path__ = [{str(root / "qlib")!r}]
sys.modules["qlib"] = qlib
from qlib.bench import targets
from qlib.bench import format_table, target_checks
rows = 0
for f in sorted(Path({str(root / "results" / "bench")!r}).glob("*.json")):
    res = json.loads(f.read_text())
    if res.get("kind") == "interleaved":
        rows += len([targets.format_interleaved_check(r) for r in targets.interleaved_checks(res)])
    else:
        assert format_table(res).startswith(res["model"])
        rows += len(target_checks(res))
assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None], "torch was imported"
print("ROWS", rows)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split("ROWS")[1]) > 0
