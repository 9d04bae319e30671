"""The deployment page: a trained 2-bit student in llama.cpp beside qlib's PyTorch student, read from
``results/deploy/<run>.json`` (``python -m qlib deploy-bench``)."""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from .. import experiments as X

# the student the page deploys: the longest-trained QuantGPT 2-2-8 of these, once its result is committed
DEPLOY_CANDIDATES = (("lm-long", "mds-228-long"), ("lm-table", "mds-228"))


def _trained(preset: str) -> list:
    """The configs of ``DEPLOY_CANDIDATES`` with a committed result, the longest-trained first."""
    found = []
    for grid, key in DEPLOY_CANDIDATES:
        cfg = X.runs(grid, preset).get(key)
        res = X.load_result(cfg) if cfg is not None else None
        if res is not None:
            found.append((res["steps"] * (res.get("tokens_per_step") or 0), cfg))
    return [cfg for _, cfg in sorted(found, key=lambda t: -t[0])]


def deploy_run(preset: str):
    """The config of the longest-trained QuantGPT 2-2-8 student with a committed result, the one ``deploy_command``
    measures (None: none has run)."""
    trained = _trained(preset)
    return trained[0] if trained else None


def _benchmark(cfg) -> dict | None:
    """The deployment benchmark of ``cfg``'s student (None: not run, or run on a student of another config, which a
    retrained run of the same name would not reproduce)."""
    path = X.results_dir() / "deploy" / f"{cfg.out_dir.rsplit('/', 1)[-1]}.json"
    res = json.loads(path.read_text()) if path.is_file() else None
    return res if res is not None and X.same_config(res.get("config", {}), asdict(cfg)) else None


def deploy_result(preset: str) -> dict | None:
    """The benchmark the page shows: that of the longest-trained student that has one (None: none has)."""
    return next((res for res in map(_benchmark, _trained(preset)) if res is not None), None)


def deploy_command(preset: str) -> str:
    """The commands that make the page's measurements: llama.cpp's tools, then the benchmark of ``deploy_run``'s
    student (QuantGPT 2-2-8 at the preset's budget before any has run), which trains the student when its weights
    are not on the machine: run folders are not committed."""
    from ..deploy import bench_command

    cfg = deploy_run(preset)
    grid, run = DEPLOY_CANDIDATES[-1] if cfg is None else next(c for c in DEPLOY_CANDIDATES if c[1] == cfg.name)
    return f"make llama-cpp && {bench_command(grid, run, preset)}"


def deploy_reading(preset: str) -> str:
    """The deployment tables read from the deployment result (Markdown): where and how idle, the command, the speed
    and size ratios, and how far llama.cpp's perplexity and next-token choices are from qlib's."""
    res = deploy_result(preset)
    if res is None:
        return f"**Reading the tables:** not run yet (`{deploy_command(preset)}`)."
    longest = deploy_run(preset)
    pending = ("" if res["run"] == longest.out_dir.rsplit("/", 1)[-1] else
               f" The longer-trained student `{longest.name}` is not deployed yet (`{deploy_command(preset)}`).")
    s, lc, pt, ppl = res["sizes"], res["llama_cpp"], res["qlib_torch"], res["perplexity"]
    ratio = lambda key: lc[key] / pt[key]  # noqa: E731
    return (f"**Reading the tables** (`results/deploy/{res['run']}.json`, measured on {res['date']} with "
            f"{lc['threads']} threads on a {res['cores']}-core {res.get('cpu_model') or 'x86-64 CPU'}, load average "
            f"{res['load_average_before']:.2f} before and {res['load_average']:.2f} after, its own threads counted; "
            f"`{res['command']}`): "
            f"llama.cpp reads the prompt {ratio('prompt_tokens_per_s'):.1f}x and generates "
            f"{ratio('generation_tokens_per_s'):.1f}x as fast as qlib's PyTorch student, from a file "
            f"{s['gguf_mib'] / s['packed_mib']:.1f}x the size of qlib's packed one. On the same "
            f"{ppl['positions']:,} scored tokens its perplexity is {ppl['ppl_llama_cpp']:.2f} against qlib's "
            f"{ppl['ppl_qlib']:.2f} ({100 * (ppl['ppl_llama_cpp'] / ppl['ppl_qlib'] - 1):+.1f}%), and the two pick "
            f"the same next token at {100 * ppl['top1_agreement']:.0f}% of positions (mean KL "
            f"{ppl['mean_kl']:.3f} nats). The weights agree up to each step's rounding to fp16; the rest of the gap "
            "is how each runtime quantizes activations and keeps its KV cache." + pending)


def deploy_table(preset: str, which: str) -> pd.DataFrame:
    """One of ``deploy_tables``' tables ("sizes", "speeds", "perplexity", "agreement"), or a row that says it has
    not run with the command that runs it."""
    tables = deploy_tables(preset)
    return tables[which] if tables else pd.DataFrame([{"not run": deploy_command(preset)}])


def export_demo(preset: str, bits: tuple[int, int, int] = (2, 2, 8)) -> pd.DataFrame:
    """The exporter on a real model: the preset's model quantized by dynamic scaling at ``bits`` (untrained: the
    export does not care), written to GGUF and read back; per GGUF type, how many quantized tensors and the largest
    difference between the file's weights and qlib's codes times their fp16-rounded steps (exact: 0)."""
    from .. import QuantConfig, quantize_model
    from ..gguf_export import export_gguf, gguf_names, read_gguf, student_encodings, teacher_gguf_of
    from ..models import load_model

    model = quantize_model(load_model(X.lm_base(preset)["model"]),
                           QuantConfig(method="mds", w_bits=bits[0], e_bits=bits[1], a_bits=bits[2]))
    encodings, to_gguf = student_encodings(model), gguf_names(model.config.num_hidden_layers)
    with tempfile.TemporaryDirectory() as tmp:
        out = export_gguf(model, Path(tmp) / "student.gguf", teacher_gguf_of(model.config))
        back = read_gguf(Path(tmp) / "student.gguf")
    rows = {}
    for name, enc in encodings.items():
        qtype = out["tensors"][to_gguf[name]]
        diff = (back[name] - enc.codes.float() * enc.step.half().float()).abs().max().item()
        n, worst = rows.get(qtype, (0, 0.0))
        rows[qtype] = (n + 1, max(worst, diff))
    table = [{"GGUF type": t, "quantized tensors": n, "largest |file - codes x fp16(step)|": w} for t, (n, w) in sorted(rows.items())]
    return pd.DataFrame(table + [{"GGUF type": f"whole file: {out['mib']:.1f} MiB", "quantized tensors": len(encodings),
                                  "largest |file - codes x fp16(step)|": max(w for _, w in rows.values())}])


def deploy_tables(preset: str) -> dict[str, pd.DataFrame] | None:
    """Sizes, speeds and perplexities of the deployed student (None until ``deploy_command`` has run)."""
    res = deploy_result(preset)
    if res is None:
        return None
    s, lc, pt, ppl = res["sizes"], res["llama_cpp"], res["qlib_torch"], res["perplexity"]
    types = ", ".join(f"{n} {t}" for t, n in sorted(s["gguf_types"].items()))
    sizes = pd.DataFrame([
        {"file": "paper's accounting (bits per weight + one fp32 scale per group)", "MiB": s["accounted_mib"]},
        {"file": "qlib's bit-packed safetensors", "MiB": s["packed_mib"]},
        {"file": f"GGUF for llama.cpp ({types})", "MiB": s["gguf_mib"]}])
    speeds = pd.DataFrame([
        {"runtime": f"llama.cpp ({lc['threads']} threads)", "prompt tokens/s": lc["prompt_tokens_per_s"],
         "generation tokens/s": lc["generation_tokens_per_s"]},
        {"runtime": f"qlib, PyTorch fake-quantized ({pt['threads']} threads)",
         "prompt tokens/s": pt["prompt_tokens_per_s"], "generation tokens/s": pt["generation_tokens_per_s"]}])
    ppls = pd.DataFrame([
        {"computed by": "llama.cpp, its defaults (8-bit matrix inputs per block of 32 or 256, f16 KV cache)",
         "PTB test PPL": ppl["ppl_llama_cpp"]},
        {"computed by": "qlib (8-bit activations per token)", "PTB test PPL": ppl["ppl_qlib"]}])
    ppls["scored"] = f"{ppl['chunks']} chunks of {ppl['n_ctx']} tokens, the last half of each"
    return {"sizes": sizes, "speeds": speeds, "perplexity": ppls,
            "agreement": pd.DataFrame([{"scored tokens": f"{ppl['positions']:,}",
                                        "same top-1 token": f"{100 * ppl['top1_agreement']:.1f}%",
                                        # a few thousandths: two decimals would print 0.00
                                        "mean KL (nats)": f"{ppl['mean_kl']:.4f}"}])}
