"""Where runs live and how a committed result is found: a ``Store`` of two roots (result files, committed; run
folders with checkpoints, not committed), and the comparison that says a result file is exactly a config's run.

The default store reads ``QLIB_RESULTS_DIR`` / ``QLIB_RUNS_DIR`` when it is asked for (tests point them at a
temporary folder), else ``results/`` and ``runs/`` in the repository. Functions that read results take ``store=``
to read another.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent.parent
# fields that do not change what a run computes (beyond kernel rounding: the evaluation batch, compiling) or only
# name it
VOLATILE = ("progress", "resume", "out_dir", "eval_batch_size", "compile", "name")
# fields naming the run folder a run starts from: compared by folder name, not by where the checkout lies
RUN_FOLDERS = ("init_from", "teacher")
# fields that only say how long and how a run trains: a student before its first update does not depend on them
BUDGET_FIELDS = ("max_steps", "epochs", "save_every", "curve_points", "curve_at", "eval_every", "lr", "quant_lr",
                 "grad_accum")


@dataclass(frozen=True)
class Store:
    results: Path  # committed result files, one JSON per run, under <task>/
    runs: Path  # run folders (checkpoints, weights): not committed

    def result_path(self, cfg: TrainConfig) -> Path:
        return self.results / cfg.task / f"{Path(cfg.out_dir).name}.json"

    def eval_path(self, cfg: TrainConfig, kind: str, suffix: str = "") -> Path:
        """A cached evaluation of ``cfg`` (``kind``: step0, transfer, samples, figures)."""
        return self.results / cfg.task / kind / f"{Path(cfg.out_dir).name}{suffix}.json"


def default_store() -> Store:
    return Store(Path(os.environ.get("QLIB_RESULTS_DIR", ROOT / "results")),
                 Path(os.environ.get("QLIB_RUNS_DIR", ROOT / "runs")))


def results_dir() -> Path:
    """Where committed result files live (``QLIB_RESULTS_DIR``, read at call time; else ``results/``)."""
    return default_store().results


def runs_dir() -> Path:
    """Where run folders (checkpoints, not committed) live (``QLIB_RUNS_DIR``; else ``runs/``)."""
    return default_store().runs


def result_path(cfg: TrainConfig, store: Store | None = None) -> Path:
    return (store or default_store()).result_path(cfg)


def same_config(a: dict, b: dict, ignore: tuple[str, ...] = ()) -> bool:
    """Equal configs, up to fields that do not change the computation (and ``ignore``); a field missing from an
    older file counts as its default (so adding a field does not orphan earlier results). ``a`` is a stored config
    (see ``recorded_config``), ``b`` the one asked for: asking for dtype "auto" accepts the dtype a run was made in."""
    d = asdict(TrainConfig())

    def norm(k, x):
        # a run folder is known by its name: a result made in another checkout (absolute path) is the same run
        if k in RUN_FOLDERS and x:
            return Path(x).name
        return list(x) if isinstance(x, tuple) else x

    skip = set(VOLATILE) | set(ignore) | ({"dtype"} if b.get("dtype", "auto") == "auto" else set())
    return all(norm(k, a.get(k, d.get(k))) == norm(k, b.get(k, d.get(k))) for k in set(a) | set(b) if k not in skip)


def recorded_config(res: dict) -> dict:
    """A result file's config with dtype "auto" replaced by the dtype the run resolved it to (recorded beside it; a
    CPU run from before the dtype field computed in fp32)."""
    cfg = dict(res["config"])
    if cfg.get("dtype", "auto") == "auto":
        predates = "dtype" not in cfg and res.get("device") == "cpu"
        cfg["dtype"] = res.get("dtype") or ("fp32" if predates else "auto")
    return cfg


def load_result(cfg: TrainConfig, store: Store | None = None) -> dict | None:
    """The committed result of exactly this config, or None."""
    path = result_path(cfg, store)
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    return res if same_config(recorded_config(res), asdict(cfg)) else None


def write_result(cfg: TrainConfig, res: dict, store: Store | None = None) -> Path:
    from ..runtime import write_json

    path = result_path(cfg, store)
    write_json(path, res)
    return path
