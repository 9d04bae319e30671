"""What every chapter's tables share: display helpers (``show``, ``markdown``, number formats), the results of a
grid loaded once per call (``load_grid``), and the provenance line a reading opens with."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

import pandas as pd

from .. import experiments as X

BASELINES = tuple(m for m in X.LM_METHODS if m != "mds")  # the paper's baselines, each compared with QuantGPT


def show(df: pd.DataFrame, caption: str = "", html_columns: tuple[str, ...] = ()):
    """A table as the book shows it: no index column, a caption, every cell's text escaped (a sample's ``<unk>``
    is text, not a tag) except in ``html_columns`` (links the library wrote), big numbers with thousands
    separators."""
    style = df.style.hide(axis="index").set_caption(caption)
    rest = [c for c in df.columns if c not in html_columns]
    style = style.format(number_cell, na_rep="-", escape="html", subset=rest)
    return style.format(na_rep="-", subset=list(html_columns)) if html_columns else style


def number_cell(v) -> str:
    """A table cell: floats with two decimals (thousands separated; three significant digits once astronomical),
    everything else as its text."""
    if isinstance(v, float) and not isinstance(v, bool):
        return ppl_text(v) if abs(v) >= 1e5 else f"{v:,.2f}"
    return str(v)


def markdown(text: str):
    """Text the book renders as Markdown (a key-results box, a reading computed from the results)."""
    from IPython.display import Markdown

    return Markdown(text)


def ppl_text(v: float) -> str:
    """A perplexity as the tables print it: two decimals, or three significant digits once it is astronomical."""
    return f"{v:.2f}" if v < 1e5 else f"{v:.3g}"


def device_label(res: dict) -> str:
    """Where a result was made, short: "CPU" or the GPU's name."""
    if res["device"] == "cpu":
        return "CPU"
    return res.get("device_name", res["device"]).replace("NVIDIA ", "").split(" ")[0]


# ----------------------------------------------------------------------------------------------------------------
# results: every grid built once and every result file read once per call
# ----------------------------------------------------------------------------------------------------------------


class Run(NamedTuple):
    cfg: object  # the run's TrainConfig
    result: dict | None  # its committed result, None until it has run


class GridResults(Mapping):
    """The runs of one or more grids of ``preset`` by short name (later grids win a shared name, which names the
    same config), each with its committed result: ``experiments.runs`` once per grid, ``experiments.load_result``
    at most once per run, on first use. Made per call, so a result file written since is always read."""

    def __init__(self, preset: str, *names: str):
        self.preset = preset
        self.configs = {}
        for name in names:
            self.configs.update(X.runs(name, preset))
        self._results: dict[str, dict | None] = {}

    def __getitem__(self, key: str) -> Run:
        return Run(self.configs[key], self.result(key))

    def __iter__(self) -> Iterator[str]:
        return iter(self.configs)

    def __len__(self) -> int:
        return len(self.configs)

    def result(self, key: str) -> dict | None:
        """The committed result of run ``key``, or None."""
        if key not in self._results:
            self._results[key] = X.load_result(self.configs[key])
        return self._results[key]

    def metric(self, key: str, metric: str = "test_ppl") -> float | None:
        """One final metric of run ``key`` (test PPL unless told), or None until it has run."""
        res = self.result(key)
        return res["metrics"][metric] if res else None

    def done(self, keys: Iterable[str] | None = None) -> dict[str, dict]:
        """The results of ``keys`` (default: every run) that exist, by key, in that order."""
        return {k: r for k in (self.configs if keys is None else keys) if (r := self.result(k)) is not None}


def load_grid(name: str, preset: str) -> GridResults:
    """The runs of grid ``name`` in ``preset`` with their committed results (``GridResults``)."""
    return GridResults(preset, name)


def load_grids(preset: str, *names: str) -> GridResults:
    """The runs of several grids of ``preset`` looked up together by short name (``GridResults``)."""
    return GridResults(preset, *names)


# ----------------------------------------------------------------------------------------------------------------
# provenance: where, when and with which code the results a reading reads were made
# ----------------------------------------------------------------------------------------------------------------


def provenance(results: Iterable[dict]) -> dict[str, str]:
    """What a reading says about the results it reads: "devices", "dtypes", "steps" (joined by "/"), "versions"
    (code) and "dates" (first to last)."""
    results = list(results)
    dates = sorted({r.get("date", "?") for r in results})
    return {"devices": ", ".join(sorted({device_label(r) for r in results})),
            "dtypes": ", ".join(sorted({r.get("dtype") or "?" for r in results})),
            "steps": "/".join(map(str, sorted({r["steps"] for r in results}))),
            "versions": ", ".join(sorted({r.get("code_version", "?") for r in results})),
            "dates": " to ".join(dict.fromkeys((dates[0], dates[-1]))) if dates else "?"}


def reading_head(title: str, preset: str, *details: str) -> str:
    """The opening of a reading: its title in bold, then the preset and ``details`` (from ``provenance``)."""
    return f"**Reading {title}** (`{preset}` preset, {', '.join(details)}; computed from the committed results)."


def not_run_reading(title: str, preset: str, grid: str) -> str:
    """A reading whose runs have not landed: its title and the command that makes them."""
    return (f"**Reading {title}:** not run yet in the `{preset}` preset "
            f"(`{X.grid_command(grid, preset)}`).")


def missing_text(keys: Iterable[str], hint: bool = True) -> str:
    """The closing bullet naming the runs a reading could not read."""
    return "Not run yet: " + ", ".join(f"`{k}`" for k in keys) + (" (`report.not_run` below)." if hint else ".")


def bullets(head: str, items: Iterable[str]) -> str:
    """A reading as Markdown: its opening paragraph, then one bullet per item."""
    return head + "\n\n" + "\n".join(f"- {b}" for b in items)
