"""The Performance and Deploy pages' tables and readings (``qlib.report.bench``, ``qlib.report.deploy``): each follows
its committed result file and says what has not run with the command that runs it."""
from dataclasses import asdict

from qlib import experiments as X
from qlib import report
from qlib.runtime import write_json


def test_the_performance_page_is_computed_from_the_benchmark_file(dirs):
    """The Performance page follows the benchmark file: one row per dtype and step kind with eager and compiled
    tokens/s, and a reading whose ratios are the file's median step times and peak memories; no file: not run."""

    assert report.performance_table().iloc[0, 0].startswith("not run: python -m qlib.bench")
    assert report.performance_reading().startswith("Not run yet")
    assert report.performance_tldr().startswith("**TL;DR:** not measured yet")

    def phase(secs, dtype, mem=1000.0):
        return {"sec_per_iter": sorted(secs)[1], "tokens_per_s": 512 / sorted(secs)[1], "peak_mem_mib": mem,
                "dtype": dtype, "repeat_sec_per_iter": secs, "spread": max(secs) / min(secs) - 1, "mfu": 0.1}
    b = {"model": "smollm2-135m", "w_bits": 2, "batch_size": 4, "seq_len": 128, "steps": 15, "warmup": 3,
         "repeats": 3, "device": "cpu", "code_version": "abc1234", "cores": 2, "date": "2026-12-06", "load_avg": 0.1,
         "busy": False, "others_busy_cores": {"x": 0.02}, "cpu_bf16_matrix_units": True,
         "peak_flops": {"fp32": 1e11, "bf16": 5e11}, "phases": {}}
    for dtype, scale in (("fp32", 2.0), ("bf16", 1.0)):
        b["phases"].update({f"c_qat_dist_cont/{dtype}": phase([2.0 * scale, 2.2 * scale, 2.1 * scale], dtype, 1010.0),
                            f"c_qat_dist_cont/{dtype}+compile": phase([1.5 * scale, 1.6 * scale, 1.4 * scale], dtype),
                            f"a_fp_finetune/{dtype}": phase([1.0 * scale] * 3, dtype),
                            f"b_qat_dist/{dtype}": phase([2.0 * scale] * 3, dtype)})
    write_json(X.results_dir() / "bench" / f"{report.CPU_BENCH}.json", b)
    table = report.performance_table()
    assert len(table) == 6 and table["device and dtype"].iloc[0] == "2-core x86-64 CPU with AMX matrix units, fp32"
    cont = table[(table["step"] == "QAT, L_dist + L_cont")]
    assert cont["tokens/s"].tolist() == ["122", "244"] and cont["tokens/s compiled"].tolist() == ["171", "341"]
    assert table[table["step"] == "QAT, L_dist"]["tokens/s compiled"].tolist() == ["-", "-"]
    text = report.performance_reading()
    # medians: fine-tuning 2.0 s, L_dist 4.0 s, with L_cont 4.2 s (fp32); peak memory 1010 against 1000 MiB
    assert ("on the 2-core x86-64 CPU with AMX matrix units in fp32, a QAT step with L_cont takes 2.1x the "
            "fine-tuning step's time, and L_cont 1.05x the L_dist step's time and 1.01x its memory") in text
    # bf16's tokens/s, eager and compiled, in every round; memory (one round) in both dtypes; "met in 2 of 3
    # rounds" (four checks) does not count
    assert "4 of its 12 checks were met in every round it measured." in text
    # medians, fine-tuning against the L_cont step: 2.0 / 4.2 s (fp32), 1.0 / 2.1 s (bf16); L_cont 1.05x L_dist
    assert report.performance_tldr().startswith(
        "**TL;DR.** A QAT step with L_cont of SmolLM2-135M-Instruct at 2-2-8 (batch 4 x 128 unless noted) takes, "
        "against a full-precision fine-tuning step's time: on the 2-core x86-64 CPU with AMX matrix units, 2.1x in "
        "fp32, 2.1x in bf16. The L_cont step takes 1.05x the L_dist step's time (the paper: 1.10x on V100s).")
    # a GPU file, cut short, at another batch, where the L_cont step measured faster than the L_dist one
    gpu = {**b, "device": "cuda", "device_name": "NVIDIA H200", "batch_size": 32, "seq_len": 512, "complete": False,
           "peak_flops": {"bf16": 1e15}, "phases": {"a_fp_finetune/bf16": phase([1.0] * 3, "bf16"),
                                                    "b_qat_dist/bf16": phase([3.0] * 3, "bf16"),
                                                    "c_qat_dist_cont/bf16": phase([2.7] * 3, "bf16")}}
    write_json(X.results_dir() / "bench" / "gpu-slot.json", gpu)
    text = report.performance_tldr()
    assert "; on the NVIDIA H200, 2.7x in bf16 (batch 32 x 512, cut short)." in text
    assert "The L_cont step takes 0.90x to 1.05x the L_dist step's time, no cost these measurements resolve" in text


def test_the_deployment_page_reads_the_longest_trained_student_and_only_its_own_benchmark(dirs):
    """The page measures the longest-trained QuantGPT 2-2-8 with a result and prints the command that does; it
    shows the benchmark of the longest-trained student that has one whose config is that run's, and names a
    longer-trained student not deployed yet."""
    assert report.deploy_run("cpu") is None
    assert report.deploy_reading("cpu") == ("**Reading the tables:** not run yet (`make llama-cpp && python -m qlib "
                                            "deploy-bench --grid lm-table --run mds-228 --preset cpu`).")
    assert report.deploy_table("cpu", "sizes").iloc[0, 0] == ("make llama-cpp && python -m qlib deploy-bench --grid "
                                                              "lm-table --run mds-228 --preset cpu")
    short, long = X.runs("lm-table", "cpu")["mds-228"], X.runs("lm-long", "cpu")["mds-228-long"]
    for cfg, steps in ((short, 400), (long, 2000)):
        write_json(X.result_path(cfg), {"config": asdict(cfg), "metrics": {"test_ppl": 100.0}, "steps": steps,
                                        "tokens_per_step": 512, "device": "cpu", "dtype": "fp32"})
    assert report.deploy_run("cpu") == long
    assert report.deploy_command("cpu") == ("make llama-cpp && python -m qlib deploy-bench --grid lm-long "
                                            "--run mds-228-long --preset cpu")
    bench = {"run": long.out_dir.rsplit("/", 1)[-1], "config": asdict(long),
             "sizes": {"accounted_mib": 30.0, "packed_mib": 34.0, "gguf_mib": 66.0, "gguf_types": {"Q4_0": 181}},
             "llama_cpp": {"threads": 2, "prompt_tokens_per_s": 600.0, "generation_tokens_per_s": 115.0},
             "qlib_torch": {"threads": 2, "prompt_tokens_per_s": 378.0, "generation_tokens_per_s": 13.0},
             "perplexity": {"ppl_llama_cpp": 101.0, "ppl_qlib": 100.0, "chunks": 20, "n_ctx": 512, "positions": 5120,
                            "top1_agreement": 0.9, "mean_kl": 0.03},
             "date": "2026-12-07", "cores": 2, "cpu_model": "Some CPU", "load_average_before": 0.1, "load_average": 0.2,
             "command": "python -m qlib deploy-bench --grid lm-long --run mds-228-long --preset cpu"}
    short_bench = {**bench, "run": short.out_dir.rsplit("/", 1)[-1], "config": asdict(short)}
    write_json(X.results_dir() / "deploy" / f"{short_bench['run']}.json", short_bench)
    assert report.deploy_result("cpu")["run"] == short_bench["run"]
    assert report.deploy_reading("cpu").endswith(
        " The longer-trained student `mds-228-long` is not deployed yet (`make llama-cpp && python -m qlib "
        "deploy-bench --grid lm-long --run mds-228-long --preset cpu`).")
    path = X.results_dir() / "deploy" / f"{bench['run']}.json"
    write_json(path, bench)
    assert report.deploy_result("cpu")["run"] == bench["run"] and "not deployed yet" not in report.deploy_reading("cpu")
    assert report.deploy_table("cpu", "speeds")["generation tokens/s"].tolist() == [115.0, 13.0]
    assert report.deploy_table("cpu", "perplexity")["PTB test PPL"].tolist() == [101.0, 100.0]
    assert report.deploy_table("cpu", "agreement").iloc[0].tolist() == ["5,120", "90.0%", "0.0300"]
    text = report.deploy_reading("cpu")
    assert "measured on 2026-12-07 with 2 threads on a 2-core Some CPU, load average 0.10 before and 0.20 after, its own threads counted" in text
    assert "reads the prompt 1.6x and generates 8.8x as fast" in text and "1.9x the size of qlib's packed" in text
    assert "its perplexity is 101.00 against qlib's 100.00 (+1.0%)" in text and "at 90% of positions" in text
    write_json(path, {**bench, "config": {**asdict(long), "lam": 1.0}})  # another student under the same name
    assert report.deploy_result("cpu")["run"] == short_bench["run"]
    (X.results_dir() / "deploy" / f"{short_bench['run']}.json").unlink()
    assert report.deploy_result("cpu") is None
    assert report.deploy_table("cpu", "sizes").iloc[0, 0].startswith("make llama-cpp && python -m qlib deploy-bench")
