"""How the book calls a claim: the measured seed band of the language-modeling runs, the verdict of a claimed
ordering against a band, a gap in words, and when a run counts as collapsed."""
from __future__ import annotations

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
                "`python -m qlib grid lm-seeds --preset " + preset + "`); every verdict stays inconclusive.")
    parts = [f"{method_name(m)} {100 * v:.1f}%" for m, v in spreads.items()]
    missing = [m for m in SEED_METHODS if m not in spreads]
    text = (f"**Seed band:** {100 * max(spreads.values()):.1f}%, the largest relative range of 2-2-8 test PPL over "
            f"three seeds ({', '.join(parts)}).")
    if missing:
        have = {method_name(m): sum(p is not None for p in _seed_ppls(runs, m)) for m in missing}
        text += (f" Not all seeds of {' and '.join(f'{k} ({v} of 3)' for k, v in have.items())} have run yet "
                 f"(`python -m qlib grid lm-seeds --preset {preset}`): the band may still widen, and verdicts near it "
                 f"may move.")
    return text


def verdict(lower: float | None, higher: float | None, band: float | None, absolute: bool = False,
            both_collapsed: bool = False) -> str:
    """The paper claims ``lower < higher`` (both PPL, or ratios to a teacher). "reproduced" when ours is lower by
    more than the band, "contradicted" when it is higher by more than the band, else "inconclusive". The band is
    relative (the seed band of the LM runs) or, with ``absolute``, in the values' own units (the bootstrap spread
    of a comparison on the other tasks' test examples). ``both_collapsed``: the claim compares two runs that both
    failed the task (``collapsed``); which failure scores higher says nothing about the methods."""
    if lower is None or higher is None:
        return "not run"
    if both_collapsed:
        return "inconclusive (both collapsed)"
    if band is None:
        return "inconclusive (seed band not measured yet)"
    if (lower + band if absolute else lower * (1 + band)) < higher:
        return "reproduced"
    if (lower > higher + band) if absolute else (lower > higher * (1 + band)):
        return "contradicted"
    return "inconclusive (inside the " + ("test-set spread)" if absolute else "seed band)")


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
