"""The registry of named grids: ``GRIDS[name](preset) -> [TrainConfig, ...]``, filled by ``@grid_builder(name)``
in ``grids`` (language modeling, XTC) and ``task_grids`` (next-utterance prediction, summarization).

``runs(name, preset)`` gives a grid by its runs' short names (tables look runs up by name, so a reordered grid cannot
mislabel a row) and ``grid(name, preset)`` the configs in order.
"""
from __future__ import annotations

from typing import Callable

from ..config import TrainConfig
from .presets import check_preset

GRIDS: dict[str, Callable[[str], list[TrainConfig]]] = {}


def grid_builder(name: str):
    """Register ``builder(preset) -> [TrainConfig, ...]`` as grid ``name``."""
    def register(builder):
        if name in GRIDS:
            raise ValueError(f"two grids named {name!r}")
        GRIDS[name] = builder
        return builder
    return register


def grid(name: str, preset: str) -> list[TrainConfig]:
    """The configs of grid ``name`` in ``preset``, in order. ``xtc-<glue task>`` names XTC on another GLUE task."""
    check_preset(preset)
    if name.startswith("xtc-") and name not in GRIDS:  # XTC on another GLUE task
        return GRIDS["xtc"](preset, name.split("-", 1)[1])
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; known: {', '.join(GRIDS)}, xtc-<glue task>")
    return GRIDS[name](preset)


def runs(name: str, preset: str) -> dict[str, TrainConfig]:
    """The configs of grid ``name`` by their short names."""
    out = {}
    for cfg in grid(name, preset):
        if cfg.name in out:
            raise ValueError(f"grid {name!r} has two runs named {cfg.name!r}")
        out[cfg.name] = cfg
    return out


def grid_command(name: str, preset: str, key: str | None = None, *flags: str) -> str:
    """The command that runs grid ``name`` in ``preset`` (or only its run ``key``), with extra ``flags`` ("--step0"):
    resumable, it skips what has run."""
    return " ".join(["python -m qlib grid", name, "--preset", preset, *(["--only", key] if key else []), *flags])


def run_key(cfg: TrainConfig) -> str:
    """A run's short name inside its grid ("teacher", "control", "mds-228-dist-only"), set where it was built."""
    if not cfg.name:
        raise ValueError(f"the run in {cfg.out_dir} has no short name: build it with qlib.experiments' builders")
    return cfg.name
