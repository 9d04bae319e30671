"""Running grids: ``run(cfg)`` trains a config unless a committed result file for exactly that config exists, in
which case it loads it; a killed run resumes from its checkpoint. The notebooks call ``run_grid``, and so does
``python -m qlib grid NAME --preset P`` for long runs in the background: both write the same result files under
``results/``, which the book reads."""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from tqdm.auto import tqdm

from ..config import TrainConfig
from ..train import train
from .grids import lm_xtc_grid, xtc_grid
from .presets import lm_teacher
from .store import ROOT, Store, load_result, write_result
from .task_grids import TASK_GRIDS, task_teacher


def run(cfg: TrainConfig, progress: bool = True, store: Store | None = None) -> dict:
    """Load the committed result of ``cfg`` or train it (resuming a killed run) and commit-ready save it."""
    done = load_result(cfg, store)
    if done is not None:
        return done
    ensure_dependencies(cfg, progress, store)
    return _train_and_save(replace(cfg, progress=progress, resume=True), store)


def ensure_dependencies(cfg: TrainConfig, progress: bool, store: Store | None = None) -> None:
    """Rebuild the runs ``cfg`` starts from (teacher, init_from) when their weights are not on this machine."""
    for dep in (cfg.teacher, cfg.init_from):
        if dep and not (Path(dep) / "model.safetensors").is_file():
            recipe = recipe_for(dep, cfg)
            if recipe is None:
                raise FileNotFoundError(f"weights missing in {dep} and no recipe to rebuild them")
            _train_and_save(replace(recipe, progress=progress, resume=True), store)


def recipe_for(out_dir: str, cfg: TrainConfig) -> TrainConfig | None:
    """The config whose run folder is ``out_dir``, among the runs that others start from."""
    candidates = []
    if cfg.task == "lm":
        candidates += [lm_teacher(cfg.preset, cfg.dataset)] + lm_xtc_grid(cfg.preset, cfg.dataset)
    if cfg.task == "classification":
        candidates += xtc_grid(cfg.preset, cfg.dataset)
    if cfg.task in ("mc", "summarization", "summarization-lm"):
        candidates += [task_teacher(name, cfg.preset) for name in TASK_GRIDS]
    return next((c for c in candidates if c.out_dir == out_dir), None)


def _train_and_save(cfg: TrainConfig, store: Store | None = None) -> dict:
    res = train(cfg)
    write_result(cfg, res, store)
    return res


def run_grid(configs: list[TrainConfig], progress: bool = True, run_missing: bool = True) -> list[dict | None]:
    """Run (or load) every config in order, with a progress bar over the grid. With ``run_missing=False`` nothing
    is trained: configs without a committed result give None (the book shows them as "not run")."""
    out = []
    for cfg in tqdm(configs, desc="runs", disable=not progress):
        out.append(run(cfg, progress=progress) if run_missing else load_result(cfg))
    return out


def trained_model(cfg: TrainConfig, device: str = "cpu", run_missing: bool = True):
    """The trained model of ``cfg`` from its run folder's checkpoint (trained again, resumably, when the folder
    is missing, e.g. on a fresh clone that only has the committed result files; with ``run_missing=False`` it
    prints the command that would make it and returns None)."""
    from ..models import load_tokenizer
    from ..students import load_trained_student

    ckpt = Path(cfg.out_dir) / "checkpoint.pt"
    if not ckpt.is_file() and not run_missing:
        print(f"weights of {Path(cfg.out_dir).name} are not on this machine (run folders are not committed): "
              f"{command(cfg)}")
        return None
    if not ckpt.is_file():
        ensure_dependencies(cfg, cfg.progress)
        train(replace(cfg, resume=True))
    return load_trained_student(cfg, load_tokenizer(cfg.model), ckpt).to(device)


def status(configs: list[TrainConfig]) -> list[dict]:
    """Which configs have a committed result (for the book's 'not run' rows)."""
    return [{"name": Path(c.out_dir).name, "done": load_result(c) is not None, "command": command(c)}
            for c in configs]


def command(cfg: TrainConfig) -> str:
    """The shell command that runs ``cfg`` from the repository root."""
    defaults = TrainConfig()
    args = []
    for k, v in asdict(cfg).items():
        if k in ("progress", "resume", "extra") or v == getattr(defaults, k):
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            args.append(flag if v else f"--no-{k.replace('_', '-')}")
        elif isinstance(v, (tuple, list)):
            args.append(f"{flag} {' '.join(map(str, v))}")
        else:
            args.append(f"{flag} {v}")
    return ("python -m qlib train " + " ".join(args)).replace(str(ROOT) + "/", "")
