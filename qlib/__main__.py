"""Command line: ``python -m qlib train --model smollm2-135m --method mds --w-bits 2 ...`` (``--help`` lists all).

Every option is a field of ``qlib.train.TrainConfig``; the notebooks build the same config and call the same
``train`` function.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from .train import TrainConfig, train


def _optional(base):
    def parse(value: str):
        return None if value.lower() == "none" else base(value)
    parse.__name__ = base.__name__
    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m qlib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fine-tune a teacher (--method fp) or train a quantized student",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        hint = hints[f.name]
        if hint is bool:
            t.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif f.name == "extra_eval":
            t.add_argument(flag, nargs="*", default=list(default))
        elif f.name in ("keep_layers", "curve_at"):
            t.add_argument(flag, nargs="*", type=int, default=list(default))
        else:
            args = typing.get_args(hint)
            base = next((a for a in args if a is not type(None)), hint)
            if type(None) in args:  # optional: "None" on the command line means None
                t.add_argument(flag, type=_optional(base), default=default)
            else:
                t.add_argument(flag, type=base, default=default)
    g = sub.add_parser("grid", help="run (or load) a named grid of the paper's experiments, resumably")
    g.add_argument("name", help="lm-table, lm-lr, lm-step0, lm-ablations, lm-xtc, lm-gamma-init, lm-seeds or "
                                "xtc[-<glue task>]")
    g.add_argument("--preset", default="cpu", help="smoke, cpu, gpu or paper")
    g.add_argument("--only", nargs="*", default=None, help="run only these runs: short names (teacher, control, mds-228: exact) or parts of run folder "
                        "names")
    g.add_argument("--list", action="store_true", help="list the configs, their state and commands; run nothing")
    g.add_argument("--compile", action="store_true",
                   help="train with the student compiled (torch.compile; the same results up to kernel rounding)")
    g.add_argument("--transfer", default=None, metavar="DATASET",
                   help="after each run, its zero-shot test PPL on DATASET (e.g. wikitext2), saved under transfer/")
    g.add_argument("--step0", action="store_true",
                   help="instead of training, the validation PPL of each student before its first update (step0/)")
    g.add_argument("--samples", action="store_true",
                   help="after each run, greedy continuations of the book's prompts, saved under samples/")
    g.add_argument("--figures", action="store_true",
                   help="after each run, the data of the 'why hard' figures (Figs. 2-4), saved under figures/")
    _tool_parsers(sub)
    return p


def _tool_parsers(sub) -> None:
    """The commands beside training: a lent GPU slot, the GGUF export, the deployment benchmark."""
    s = sub.add_parser("gpu-run", help="a lent GPU slot: benchmark, then the queue of runs, within MINUTES; packs "
                                       "the result files into OUT/results.tar.gz")
    s.add_argument("--minutes", type=float, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--preset", default="gpu")
    s.add_argument("--gguf", default=None, help="SmolLM2-135M-Instruct's GGUF file, when its package is not installed")
    s.add_argument("--bench-minutes", type=float, default=4.0, help="0 skips the benchmark")
    s.add_argument("--profile-minutes", type=float, default=1.5, help="0 skips the profile of the QAT step")
    e = sub.add_parser("export-gguf", help="write a quantized Llama-family student (run folder or packed file) as a "
                                           "GGUF file for llama.cpp, its weights exactly the trained ones")
    e.add_argument("source", help="a run folder (result.json + checkpoint.pt) or a packed .safetensors file")
    e.add_argument("--out", required=True, help="the .gguf file to write")
    e.add_argument("--teacher-gguf", default=None,
                   help="the GGUF file whose tokenizer and metadata to copy (default: the model's own, when known)")
    d = sub.add_parser("deploy-bench", help="a trained student in llama.cpp beside PyTorch: sizes, tokens/s, PTB PPL "
                                            "(needs `make llama-cpp`; measure on an idle machine)")
    d.add_argument("run_folder", nargs="?", default=None,
                   help="a finished run folder of a quantized Llama-family student (or --grid and --run)")
    d.add_argument("--grid", default=None, help="with --run: a grid's run, trained first when its weights are missing")
    d.add_argument("--run", default=None, help="the run's short name in --grid (e.g. mds-228)")
    d.add_argument("--preset", default="cpu")
    d.add_argument("--out", default=None, help="the result file (default: results/deploy/<run>.json)")
    d.add_argument("--threads", type=int, default=2)


def _selects(only: str, cfg, configs) -> bool:
    """``--only`` names a run by its short name (exactly: "mds-228" is not "mds-228-seed1") or, when no run has that
    short name, by a part of its run folder's name."""
    from pathlib import Path

    from .experiments import run_key

    if any(run_key(c) == only for c in configs):
        return run_key(cfg) == only
    return only in Path(cfg.out_dir).name


def _grid(args) -> int:
    from pathlib import Path

    from .experiments import figure_data, grid, run_grid, status, step0_eval, text_samples, transfer_eval

    configs = grid(args["name"], args["preset"])
    if args["compile"]:
        configs = [dataclasses.replace(c, compile=True) for c in configs]
    if args["only"]:
        configs = [c for c in configs if any(_selects(o, c, configs) for o in args["only"])]
    if args["list"]:
        for row in status(configs):
            print(f"{'done   ' if row['done'] else 'not run'}  {row['name']}\n         {row['command']}")
        return 0
    if args["step0"]:
        for cfg in configs:
            print(Path(cfg.out_dir).name, "step-0 valid PPL", round(step0_eval(cfg)["valid_ppl"], 2))
        return 0
    for res in run_grid(configs):
        print(Path(res["config"]["out_dir"]).name, {k: v for k, v in res["metrics"].items() if k != "examples"})
    for cfg in configs if args["transfer"] else ():
        res = transfer_eval(cfg, args["transfer"])
        print(Path(cfg.out_dir).name, f"{args['transfer']} test PPL (zero-shot)", round(res["test_ppl"], 2))
    for cfg in configs if args["samples"] else ():
        res = text_samples(cfg)
        print(Path(cfg.out_dir).name, *(f"\n  {p} | {c.strip()}" for p, c in zip(res["prompts"], res["continuations"])))
    for cfg in configs if args["figures"] else ():
        res = figure_data(cfg)
        print(Path(cfg.out_dir).name, "figure data: embedding mean cos", round(res["embedding_mean_cos"], 3))
    return 0


def main(argv=None) -> int:
    args = vars(_parser().parse_args(argv))
    command = args.pop("command")
    if command == "grid":
        return _grid(args)
    if command == "export-gguf":
        from .gguf_export import export_gguf_cli
        report = export_gguf_cli(args["source"], args["out"], args["teacher_gguf"])
        print(json.dumps({k: v for k, v in report.items() if k != "tensors"}, indent=1))
        return 0
    if command == "deploy-bench":
        from .deploy import bench_command, deploy_benchmark, run_folder_of
        folder = args["run_folder"] or run_folder_of(args["grid"], args["run"], args["preset"])
        command = None if args["run_folder"] else bench_command(args["grid"], args["run"], args["preset"],
                                                                   args["threads"])
        res = deploy_benchmark(folder, args["out"], args["threads"], command)
        print(json.dumps({k: res[k] for k in ("sizes", "llama_cpp", "qlib_torch", "perplexity")}, indent=1))
        return 0
    if command == "gpu-run":
        from .gpu_slot import gpu_run
        print(json.dumps(gpu_run(args["minutes"], args["out"], args["preset"], args["bench_minutes"], args["gguf"],
                                 profile_minutes=args["profile_minutes"]),
                         indent=1))
        return 0
    result = train(TrainConfig.from_dict(args))
    print(json.dumps({"out_dir": result["config"]["out_dir"], "metrics": {
        k: v for k, v in result["metrics"].items() if k != "examples"}, "size_mb": result["size_mb"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
