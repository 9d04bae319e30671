"""The trainer end to end on tiny configs: each task, overfitting, resume after SIGKILL, NaN guard, bad configs."""
import math
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from qlib import objective as O
from qlib import train as T
from qlib.train import NonFiniteLossError, TrainConfig, train

from .conftest import offline_data

TINY_LM = dict(task="lm", model="tiny-gpt2", dataset="ptb", method="mds", w_bits=2, seq_len=32, batch_size=4,
               num_negatives=8, train_tokens=4096, eval_tokens=1024, test_tokens=1024, progress=False)


def _cfg(tmp_path, name="run", **kw):
    return TrainConfig(**{**TINY_LM, "out_dir": str(tmp_path / name), **kw})


@pytest.mark.slow
def test_teacher_and_student_overfit_a_few_batches_and_write_their_files(tmp_path):
    offline_data()
    few = dict(train_tokens=128, lr=3e-3, quant_lr=3e-3)  # one batch of 4 x 32 tokens, seen again and again
    # a sharp teacher (high lr): a nearly uniform one leaves the student nothing to learn
    teacher = train(_cfg(tmp_path, "teacher", method="fp", max_steps=30, **{**few, "lr": 1e-2}))
    lm = [h["lm"] for h in teacher["history"] if "lm" in h]
    assert lm[-1] < 0.8 * lm[0] and teacher["loss"] == "lm"
    assert (tmp_path / "teacher" / "model.safetensors").is_file()

    res = train(_cfg(tmp_path, "student", teacher=str(tmp_path / "teacher"), max_steps=30, save_every=10, **few))
    kl = [h["kl"] for h in res["history"] if "kl" in h]  # soft CE minus the teacher's entropy
    steps = [h for h in res["history"] if "loss" in h]
    assert kl[-1] < 0.8 * kl[0] and "cont" in steps[0]
    # the learning curve: step 0 (before any update), log-spaced points, the end
    curve = res["curve"]
    assert curve[0]["step"] == 0 and curve[0]["tokens"] == 0 and curve[-1]["step"] == 30
    assert [c["step"] for c in curve] == sorted({0, *T.curve_steps(30, 6), 30}) and len(curve) >= 7
    assert all(math.isfinite(c["valid_ppl"]) for c in curve)
    assert res["metrics"]["test_ppl"] > 1 and res["setting"] == "2-2-8" and res["loss"] == "dist+cont"
    out = Path(res["config"]["out_dir"])
    assert (out / "checkpoint.pt").is_file() and (out / "metrics.jsonl").is_file()
    assert json.loads((out / "result.json").read_text())["metrics"] == res["metrics"]
    assert set(res["gamma"]) and all(v > 0 for v in res["gamma"].values())
    with pytest.raises(ValueError, match="does not fit"):  # a gpt2 teacher for a llama student
        train(_cfg(tmp_path, "s3", model="tiny-llama", teacher=str(tmp_path / "teacher"), max_steps=1))


@pytest.mark.slow
@pytest.mark.parametrize("method,bits", [("pact", 4), ("lsq", 2), ("laq", 2), ("mds_pact_grad", 2)])
def test_baselines_train_with_distillation_only(tmp_path, method, bits):
    offline_data()
    res = train(_cfg(tmp_path, method=method, w_bits=bits, max_steps=3))
    assert res["loss"] == "dist" and "cont" not in [h for h in res["history"] if "loss" in h][-1]
    assert torch.isfinite(torch.tensor(res["metrics"]["test_ppl"]))


@pytest.mark.slow
def test_a_compiled_student_trains_like_the_eager_one(tmp_path):
    """torch.compile with the fake-quantizers, the tied head's shared table and the contrastive loss in the graph:
    the same losses and test PPL as eager (up to kernel rounding), and a checkpoint with the same names."""
    offline_data()
    # fp32: on a CPU with AMX "auto" is bf16 autocast, whose rounding differs between kernels by more than 1e-4
    kw = dict(model="tiny-llama", max_steps=3, save_every=1, curve_points=1, dtype="fp32")
    from torch._dynamo.utils import counters
    eager = train(_cfg(tmp_path, "eager", **kw))
    counters.clear()
    compiled = train(_cfg(tmp_path, "compiled", compile=True, **kw))
    assert counters["stats"]["unique_graphs"] >= 2  # compiled graphs ran (training and evaluation), not eager
    losses = [[h["loss"] for h in r["history"] if "loss" in h] for r in (eager, compiled)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4) and losses[0]
    curves = [[c["valid_ppl"] for c in r["curve"]] for r in (eager, compiled)]  # step 0, a point, the end
    assert curves[0] == pytest.approx(curves[1], rel=1e-4) and len(curves[0]) >= 3
    assert compiled["metrics"]["test_ppl"] == pytest.approx(eager["metrics"]["test_ppl"], rel=1e-4)
    keys = [set(torch.load(tmp_path / n / "checkpoint.pt", weights_only=False)["model"]) for n in ("eager", "compiled")]
    assert keys[0] == keys[1]


@pytest.mark.slow
def test_compiled_layers_share_one_graph():
    """Regional compilation: every layer runs the same compiled graph (no recompilation per layer, e.g. for a KV
    cache object per layer), so compiling a 30-layer model costs what one layer costs."""
    from torch._dynamo.utils import counters

    from qlib.models import load_model
    from qlib.modules import compile_layers, layer_list
    torch._dynamo.reset()
    model = load_model("tiny-llama", vocab_size=100)
    assert len(layer_list(model)[2]) >= 2
    counters.clear()
    compile_layers(model.train())
    model(input_ids=torch.randint(0, 100, (2, 16))).logits.sum().backward()
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])


@pytest.mark.parametrize("layer", ["last", "first"])
def test_only_the_compared_teacher_state_outlives_the_teacher_forward(monkeypatch, layer):
    """L_cont reads one teacher hidden state; the others must be freed before L_dist (the step's memory peak): kept,
    they cost a [B, T, d] tensor per layer (+3% of the peak at 32 x 512 on SmolLM2)."""
    import weakref

    from qlib.losses import ContrastiveHeads, TokenContrastiveLoss
    from qlib.students import build_student
    from qlib.models import load_model
    from qlib.tasks import LMTask

    cfg = TrainConfig(**{**TINY_LM, "model": "tiny-llama", "loss": "dist+cont", "contrast_layer": layer})
    teacher = load_model("tiny-llama", vocab_size=100).eval().requires_grad_(False)
    student = build_student(cfg, teacher)
    heads = ContrastiveHeads(teacher.config.hidden_size, cfg.proj_dim)
    contrast = TokenContrastiveLoss(100, cfg.proj_dim, 4)
    teacher_states, alive = [], {}
    forward, distill = LMTask.forward, O.logit_distillation

    def recording_forward(cfg, model, batch, hidden):
        out = forward(cfg, model, batch, hidden)
        if model is teacher:
            teacher_states.extend(weakref.ref(h) for h in out.states)
        return out

    def counting_distillation(*args, **kwargs):
        alive["during L_dist"] = sum(r() is not None for r in teacher_states)
        return distill(*args, **kwargs)

    monkeypatch.setattr(LMTask, "forward", staticmethod(recording_forward))
    monkeypatch.setattr(O, "logit_distillation", counting_distillation)
    batch = {"input_ids": torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(0))}
    loss, parts = O.compute_loss(cfg, student, teacher, heads, contrast, batch)
    assert len(teacher_states) == teacher.config.num_hidden_layers + 1
    assert alive["during L_dist"] == 1
    assert torch.isfinite(parts["cont"]) and parts["cont"] > 0


@pytest.mark.slow
def test_gamma_init_sets_where_every_dynamic_scaling_starts(tmp_path):
    offline_data()
    res = train(_cfg(tmp_path, loss="dist", gamma_init=3.0, max_steps=2))
    # AdamW moves each gamma by about quant_lr (1e-3) per step: two steps leave them next to their start
    assert res["gamma"] and all(abs(v - 3.0) < 0.01 for v in res["gamma"].values())


def test_missing_teacher_weights(tmp_path):
    offline_data()
    with pytest.raises(FileNotFoundError, match="teacher weights"):
        train(_cfg(tmp_path, "s2", teacher=str(tmp_path / "nowhere"), max_steps=1))


@pytest.mark.slow
def test_mc_task_end_to_end(tmp_path):
    offline_data()
    dialogs = [{"personality": [f"i like thing {i} ."], "history": ["hi", "hello"],
                "candidates": [f"wrong {j}" for j in range(3)] + [f"right answer {i}"]} for i in range(6)]
    res = train(_cfg(tmp_path, task="mc", seq_len=48, num_candidates=4, batch_size=2, num_negatives=4,
                     max_steps=3, eval_batch_size=3), data={"train": dialogs, "valid": dialogs[:3]})
    assert 0 <= res["metrics"]["valid_mc_acc"] <= 100


@pytest.mark.slow
def test_summarization_task_end_to_end(tmp_path):
    offline_data()
    from qlib.data import xsum_examples
    ex = xsum_examples("test", limit=4)  # smoke only: the offline sample has no train split
    res = train(_cfg(tmp_path, task="summarization", model="tiny-bart", source_len=48, target_len=12,
                     batch_size=2, num_negatives=4, max_steps=2, eval_batch_size=2),
                data={"train": ex, "test": ex[:2]})
    assert {"test_rouge1", "test_rouge2", "test_rougeL"} <= set(res["metrics"])
    enc = train(_cfg(tmp_path, "enc", task="summarization", model="tiny-bart", source_len=48, target_len=12,
                     batch_size=2, num_negatives=4, max_steps=1, eval_batch_size=2, contrast_layer="encoder"),
                data={"train": ex, "test": ex[:2]})
    assert enc["steps"] == 1


def _cli(out_dir, extra=()):
    args = [sys.executable, "-m", "qlib", "train", "--model", "tiny-gpt2", "--method", "mds", "--w-bits", "2",
            "--seq-len", "32", "--batch-size", "4", "--num-negatives", "8", "--train-tokens", "4096",
            "--eval-tokens", "512", "--test-tokens", "512", "--max-steps", "24", "--save-every", "4",
            "--no-progress", "--out-dir", str(out_dir), *extra]
    # fp32: two processes must compute bit for bit alike. bf16 autocast on a CPU with bf16 matrix units is not:
    # with two threads, about one run in eight differs from the others in the 5th digit from step 1 on.
    return args + ["--dtype", "fp32"]


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    offline_data()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(_cli(tmp_path / "full"), check=True, env=env, capture_output=True)
    full = json.loads((tmp_path / "full" / "result.json").read_text())

    proc = subprocess.Popen(_cli(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not ckpt.exists():
        time.sleep(0.02)  # kill as soon as the first checkpoint (step 4 of 24) is on disk, whatever the machine's speed
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = torch.load(ckpt, weights_only=False)["step"]
    assert 4 <= step_at_kill < 24 and not (tmp_path / "killed" / "result.json").exists()
    subprocess.run(_cli(tmp_path / "killed", ["--resume"]), check=True, env=env, capture_output=True)
    resumed = json.loads((tmp_path / "killed" / "result.json").read_text())
    assert resumed["metrics"] == full["metrics"]
    assert [h for h in resumed["history"] if "loss" in h] == [h for h in full["history"] if "loss" in h]


@pytest.mark.slow
def test_a_resumed_run_counts_the_wall_time_of_its_earlier_processes(tmp_path):
    offline_data()
    first = train(_cfg(tmp_path, max_steps=2))
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ck = T.load_checkpoint(ckpt)
    assert 0 < ck["wall_time_s"] <= first["wall_time_s"]
    ck["wall_time_s"] = 1000.0  # as if the first process had run for 1000 s before it was killed
    T.atomic_torch_save(ck, ckpt)
    again = train(_cfg(tmp_path, max_steps=2, resume=True))
    assert 1000.0 < again["wall_time_s"] < 1000.0 + first["wall_time_s"] + 300


@pytest.mark.slow
def test_a_finished_run_keeps_only_its_weights_and_they_give_its_result(tmp_path):
    """A grid of finished runs must not keep every optimizer's moments on disk (twice the model each): the final
    checkpoint drops them, still loads as the trained student, and resuming it only redoes the final evaluation."""
    offline_data()
    from qlib.students import load_trained_student
    from qlib.models import load_tokenizer
    from qlib.tasks import make_task
    cfg = _cfg(tmp_path, max_steps=4, save_every=2, curve_points=2)
    first = train(cfg)
    ck = T.load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck["finished"] and ck["step"] == 4 and not {"optimizer", "scheduler", "rng"} & set(ck)
    # the final evaluation is not in it (a resume redoes it once); the result keeps L_cont's split under its own key
    assert [h for h in ck["history"] if "cont_grad" not in h] == first["history"][:-1]
    tokenizer = load_tokenizer(cfg.model)
    student = load_trained_student(cfg, tokenizer, tmp_path / "run" / "checkpoint.pt")
    again = make_task(cfg, tokenizer).evaluate(student, torch.device("cpu"), final=True)
    assert again["test_ppl"] == pytest.approx(first["metrics"]["test_ppl"], rel=1e-5)
    resumed = train(replace(cfg, resume=True))
    assert resumed["metrics"] == first["metrics"] and resumed["history"] == first["history"]


def test_a_kill_during_the_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    T.atomic_torch_save({"step": 1}, path)

    def dying_save(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt  # the process dies mid-write
    monkeypatch.setattr(T.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        T.atomic_torch_save({"step": 2}, path)
    monkeypatch.undo()
    assert T.load_checkpoint(path)["step"] == 1


@pytest.mark.slow
def test_nan_loss_stops_with_an_error_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    offline_data()
    real = O.logit_distillation
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        return out * float("nan") if calls["n"] > 5 else out
    monkeypatch.setattr(O, "logit_distillation", flaky)
    with pytest.raises(NonFiniteLossError, match="step 5"):
        train(_cfg(tmp_path, max_steps=10, save_every=2))
    ck = T.load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck["step"] == 4 and all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_corrupt_checkpoint_and_existing_run_are_errors(tmp_path):
    offline_data()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FileExistsError, match="resume"):
        train(_cfg(tmp_path, max_steps=1))
    with pytest.raises(ValueError, match="corrupt"):
        train(_cfg(tmp_path, max_steps=1, resume=True))


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "foo"}, "unknown method"),
    ({"method": "twn", "w_bits": 3}, "supports bits"),
    ({"w_bits": 0}, "supports bits"),
    ({"lr": -1.0}, "learning rates"),
    ({"num_negatives": 40}, "num_negatives"),
    ({"model": "gpt5"}, "unknown model"),
    ({"task": "translation"}, "task must be"),
    ({"contrast_layer": "encoder"}, "encoder-decoder"),
    ({"negatives": "random"}, "negatives must be"),
    ({"gamma_init": 0.0}, "gamma_init must be > 0"),
    ({"method": "lsq", "gamma_init": 3.0}, "applies to dynamic scaling"),
])
def test_bad_configs_fail_at_construction(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _cfg(tmp_path, **kwargs)


def test_tokenizer_larger_than_the_model_vocabulary_is_an_error(tmp_path, monkeypatch):
    offline_data()
    from qlib import students
    real = students.load_model
    monkeypatch.setattr(students, "load_model", lambda name, task, vocab_size=None, seed=0: real(name, task, 1000,
                                                                                                  seed))
    with pytest.raises(ValueError, match="tokenizer/model pairing"):
        train(_cfg(tmp_path, max_steps=1))


def test_empty_dataset_is_an_error(tmp_path):
    offline_data()
    with pytest.raises(ValueError, match="empty|not one block"):
        train(_cfg(tmp_path, task="mc", seq_len=48, num_candidates=4, max_steps=1), data={"train": [], "valid": []})


@pytest.mark.slow
def test_cli_help_lists_the_options():
    out = subprocess.run([sys.executable, "-m", "qlib", "train", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for opt in ("--method", "--w-bits", "--num-negatives", "--resume", "--preset", "--teacher"):
        assert opt in out


def test_processes_writing_the_same_file_at_once_do_not_share_a_temporary(tmp_path):
    """The ranks of a data-parallel run fill the token cache at the same moment: each writes its own temporary, so
    none renames another's half-written file away (the race that crashed a rank in CI)."""
    import os
    from qlib.runtime import atomic_path
    with atomic_path(tmp_path / "same.pt") as tmp:
        assert str(os.getpid()) in tmp.name and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "same.pt").read_bytes() == b"x" and not tmp.exists()
