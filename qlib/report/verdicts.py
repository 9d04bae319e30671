"""How the book calls a claim: the measured run-to-run spread of each method, the band of a comparison, the one
verdict function (reproduced / contradicted / inside the noise / not reached at this budget / untestable), a gap in
words, and when a run counts as collapsed."""
from __future__ import annotations

import pandas as pd

from ..experiments import grid_command
from ..labels import method_name
from .common import GridResults, load_grids

SEED_METHODS = ("mds", "laq")  # QuantGPT and the paper's best baseline at 2-2-8: the noise yardstick
SEED_GRIDS = ("lm-table", "lm-seeds")  # the main runs (seed 0) and seeds 1 and 2


def _seed_ppls(runs: GridResults, method: str) -> list[float | None]:
    return [runs.metric(f"{method}-228")] + [runs.metric(f"{method}-228-seed{s}") for s in (1, 2)]


def seed_spreads(preset: str, runs: GridResults | None = None) -> dict[str, float]:
    """Run-to-run spread per method whose three seeds of 2-2-8 all have results: the relative range of test PPL
    (max / min - 1) over seeds 0 (the main run), 1 and 2. ``runs``: the grids ``SEED_GRIDS`` already loaded."""
    runs = runs if runs is not None else load_grids(preset, *SEED_GRIDS)
    spreads = {}
    for method in SEED_METHODS:
        ppl = _seed_ppls(runs, method)
        if None not in ppl:
            spreads[method] = max(ppl) / min(ppl) - 1
    return spreads


def seed_band(preset: str, runs: GridResults | None = None) -> float | None:
    """The measured run-to-run spread every LM verdict is read against: the largest of ``seed_spreads`` (None
    until one method has all three seeds; ``seed_band_note`` says which methods it covers)."""
    spreads = seed_spreads(preset, runs)
    return max(spreads.values()) if spreads else None


def seed_band_note(preset: str) -> str:
    """One sentence for the book: the band, what it was measured on and what is still missing."""
    runs = load_grids(preset, *SEED_GRIDS)
    spreads = seed_spreads(preset, runs)
    if not spreads:
        return ("**Seed band:** not measured yet (needs three seeds of QuantGPT or LAQ at 2-2-8: "
                f"`{grid_command('lm-seeds', preset)}`); an ordering of two runs cannot be called yet.")
    parts = [f"{method_name(m)} {100 * v:.2f}%" for m, v in spreads.items()]
    missing = [m for m in SEED_METHODS if m not in spreads]
    text = (f"**Seed spread** (relative range of 2-2-8 test PPL over three seeds): {', '.join(parts)}. Each "
            f"comparison reads the larger of its two sides' spreads, by quantizer: a QuantGPT variant takes "
            f"QuantGPT's, a quantizer without three seeds of its own the largest, {100 * max(spreads.values()):.2f}% "
            f"(the results chapter states it in full).")
    if missing:
        have = {method_name(m): sum(p is not None for p in _seed_ppls(runs, m)) for m in missing}
        text += (f" Not all seeds of {' and '.join(f'{k} ({v} of 3)' for k, v in have.items())} have run yet "
                 f"(`{grid_command('lm-seeds', preset)}`): the band may still widen, and verdicts near it "
                 f"may move.")
    return text


def method_spread(preset_or_spreads, method: str) -> tuple[float | None, str]:
    """The run-to-run spread a comparison reads for ``method``, with the words that say where it comes from: its own
    measured spread over three seeds when it has one, else the largest measured spread ("one seed"). ``None`` while
    no method has three seeds. Accepts a preset or a ``seed_spreads`` dict already computed."""
    spreads = seed_spreads(preset_or_spreads) if isinstance(preset_or_spreads, str) else preset_or_spreads
    if method in spreads:
        return spreads[method], f"{method_name(method)} {100 * spreads[method]:.2f}% over 3 seeds"
    if not spreads:
        return None, f"{method_name(method)}: no spread measured yet"
    return max(spreads.values()), f"{method_name(method)}: 1 seed, the largest spread"


def pair_band(spreads: dict[str, float], *methods: str) -> tuple[float | None, str]:
    """The band of a comparison between ``methods`` (a "teacher" or a fixed threshold has none): the largest of
    their spreads (``method_spread``), and the words for each."""
    parts = [method_spread(spreads, m) for m in methods if m not in ("teacher", "fp")]
    values = [v for v, _ in parts if v is not None]
    return (max(values) if values else None), "; ".join(dict.fromkeys(t for _, t in parts))


def last_half_fall(curve: list[tuple[float, float]]) -> float | None:
    """How much a curve of (budget, value) points fell over the last half of its budget: value at the last point at
    or before half the final budget over the final value, minus 1 (0.35: 35% lower at the end). None for a curve
    without a point in its first half past step 0."""
    if len(curve) < 2:
        return None
    end_x, end_v = curve[-1]
    half = [v for x, v in curve[:-1] if 0 < x <= end_x / 2]
    return half[-1] / end_v - 1 if half else None


def budget_text(amount: int | None, unit: str = "tokens") -> str:
    """A budget as a verdict names it: "204,800 tokens"."""
    return "this budget" if amount is None else f"{amount:,} {unit}"


def verdict(lower: float | None, higher: float | None, band: float | None, absolute: bool = False,
            both_collapsed: bool = False, budget: str = "this budget",
            falling: float | None = None) -> str:
    """The one verdict of a claim that ``lower < higher`` (PPLs, ratios to a teacher, or a score and a threshold).

    - "reproduced at <budget>": the claim is met by more than the band: ``lower`` is below ``higher`` (another run's
      value, or a fixed bound, e.g. 1.10x the teacher) by more than the run-to-run spread; a smaller margin is noise,
      whichever side it falls on. It names the budget as the other verdicts do: a lead at a short budget, with
      curves still falling, is a lead there, not the paper's end point;
    - "untestable": both sides failed the task (``both_collapsed``): which failure scores higher says nothing;
    - "not reached at <budget>": not met by more than the band, but the relevant curve (``falling``: its fall over
      the last half of the budget, ``last_half_fall``; the gap between the two runs for an ordering, the run itself
      for a threshold) still falls by more than the band, so a longer budget could still meet it;
    - "contradicted at <budget>": not met by more than the band and the curve has settled;
    - "inside the noise": the two sides lie within the band.

    ``band`` is relative (run-to-run spread, ``pair_band``) or, with ``absolute``, in the values' own units (a
    bootstrap spread over test examples). Without a band only a collapse can be called."""
    if lower is None or higher is None:
        return "not run"
    if both_collapsed:
        return f"untestable: both collapsed at {budget}"
    if band is None:
        return "inside the noise (no spread measured yet)"
    beyond = (lambda a, b: a + band < b) if absolute else (lambda a, b: a * (1 + band) < b)  # noqa: E731
    if beyond(lower, higher):
        return f"reproduced at {budget}"
    if beyond(higher, lower):
        still = falling is not None and falling > (band if not absolute else NOISE_FALL)
        return f"not reached at {budget}" if still else f"contradicted at {budget}"
    return "inside the noise"


# where the band is in a score's own units (hits@1, ROUGE), the fall of the task's perplexity curve over the last half
# of its budget that counts as "still falling": about the largest run-to-run spread of a PPL the LM seeds measure
NOISE_FALL = 0.05


def gap_text(value: float, reference: float, what: str, band: float | None) -> str:
    """How far ``value`` lies from ``what``'s ``reference``, relative, and whether outside the seed band: "5.5% above
    QuantGPT (outside the seed band)"."""
    rel = value / reference - 1
    where = "" if band is None else " (inside the seed band)" if abs(rel) <= band else " (outside the seed band)"
    return f"{100 * abs(rel):.1f}% {'above' if rel >= 0 else 'below'} {what}{where}"


# a run has collapsed when it keeps less than COLLAPSED of the teacher's score above the task's floor (chance: 1 of
# 20 candidates; ROUGE: 0). The paper's own failed runs fall below it (PACT 2-2-8 on XSum, PACT and LSQ 2-2-8 on
# Persona-Chat), its working ones above (PACT 4-4-8 keeps 28% on Persona-Chat, 79% on XSum; ``paper.PAPER_TABLE1/3``)
COLLAPSED = 0.25


def collapsed(score: float, teacher: float, floor: float) -> bool:
    """Whether a run's score keeps less than ``COLLAPSED`` of the teacher's above ``floor``."""
    return score - floor < COLLAPSED * (teacher - floor)


def verdict_counts(verdicts) -> str:
    """How many claims got each kind of verdict, the budget named once: "5 not reached, 1 contradicted (at 102,400
    tokens)"."""
    verdicts = list(verdicts)
    kinds = pd.Series([v.split(":")[0].split(" at ")[0] for v in verdicts]).value_counts()
    budgets = sorted({v.split(" at ")[1] for v in verdicts if " at " in v})
    return ", ".join(f"{n} {v}" for v, n in kinds.items()) + (f" (at {' / '.join(budgets)})" if budgets else "")
