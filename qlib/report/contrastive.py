"""Does the contrastive loss matter? Its gradient beside L_dist's (``result["cont_grad"]``), its weight lambda
against the seed band (grid ``lm-lambda``) and the paired runs at five times the budget (grid ``lm-long``).

Every comparison here is between QuantGPT students, so it is read against QuantGPT's own seed spread (the range
of its three 2-2-8 seeds); the gap to LAQ against the larger of the two methods' spreads."""
from __future__ import annotations

import math
import statistics

import pandas as pd

from .. import experiments as X
from . import verdicts
from .common import GridResults, load_grids, ppl_text

LAMBDA_GRID, LONG_GRID = "lm-lambda", "lm-long"
# lambda -> the run of grid lm-lambda trained with it (0: L_dist alone; 0.1: the paper's weight, the main run)
LAMBDA_RUNS = {0.0: "mds-228-dist-only", 0.1: "mds-228", 1.0: "mds-228-lam1", 10.0: "mds-228-lam10"}
# the long runs and the preset's own runs of the same methods, whose curves they continue
LONG_RUNS = {"QuantGPT, L_dist + L_cont": ("mds-228-long", "mds-228"),
             "QuantGPT, L_dist only": ("mds-228-dist-only-long", "mds-228-dist-only"),
             "LAQ, L_dist only": ("laq-228-long", "laq-228")}


def bands(preset: str, runs: GridResults | None = None) -> tuple[float | None, float | None]:
    """QuantGPT's seed spread (for QuantGPT against QuantGPT) and the largest measured spread (for QuantGPT against
    LAQ); the first falls back to the second while QuantGPT's three seeds are incomplete. ``runs``: loaded grids
    that include ``verdicts.SEED_GRIDS``, so nothing is read twice."""
    spreads = verdicts.seed_spreads(preset, runs)
    widest = max(spreads.values()) if spreads else None
    return spreads.get("mds", widest), widest


def band_words(rel: float, band: float | None, direction: bool = False) -> str:
    """Where a relative change of PPL lies against a band: "no effect (inside the band)" or "beyond the band"
    (``direction``: "lower PPL, beyond the band")."""
    if band is None:
        return "no band measured yet"
    if abs(rel) <= band:
        return "no effect (inside the band)"
    return (("lower" if rel < 0 else "higher") + " PPL, " if direction else "") + "beyond the band"


def change_text(rel: float) -> str:
    """A relative change to two decimals: read beside a band of about a percent, one decimal can tie."""
    return f"{100 * rel:+.2f}%"


# ----------------------------------------------------------------------------------------------------------------
# the gradient split (qlib.diagnostics)
# ----------------------------------------------------------------------------------------------------------------


def grad_share_curves(preset: str) -> dict[str, list[dict]]:
    """Each L_cont run of grids ``lm-lambda`` and ``lm-long`` whose result records the gradient split, by a display
    name with its lambda and budget: its ``cont_grad`` points (step, tokens, ratio, cosine, ...)."""
    runs = load_grids(preset, LAMBDA_GRID, LONG_GRID)
    curves = {}
    for key, res in runs.done().items():
        points = res.get("cont_grad") or []
        if points:
            cfg = runs.configs[key]
            curves[f"lambda = {cfg.lam:g}, {res['steps'] * res['tokens_per_step']:,} tokens"] = points
    return curves


def later_points(points: list[dict]) -> list[dict]:
    """The diagnostic points of the later half of a run on the log-step axis the curve points are spaced on (steps
    from the square root of the last one): a median over them reads several points, each one batch."""
    return [p for p in points if p["step"] >= math.sqrt(points[-1]["step"])]


def grad_share_table(preset: str) -> pd.DataFrame:
    """Per L_cont run with diagnostics: the ratio |lambda dL_cont/dW| / |dL_dist/dW| and the cosine between the two
    at the first update (measured before it) and the last recorded one, and their medians over ``later_points``."""
    rows = []
    for name, points in grad_share_curves(preset).items():
        late = later_points(points)
        rows.append({"run": name, "ratio at the first update": f"{points[0]['ratio']:.3f}",
                     "ratio, later half (median)": f"{statistics.median(p['ratio'] for p in late):.3f}",
                     "ratio at the end": f"{points[-1]['ratio']:.3f}",
                     "cosine, later half (median)": f"{statistics.median(p['cosine'] for p in late):.2f}",
                     "L_cont's share of the clipped gradient, end": f"{100 * points[-1]['cont_share']:.1f}%"})
    return pd.DataFrame(rows or [{"run": "not run: " + X.grid_command(LAMBDA_GRID, preset)}])


# ----------------------------------------------------------------------------------------------------------------
# the weight lambda, at the preset's budget
# ----------------------------------------------------------------------------------------------------------------


def lambda_table(preset: str) -> pd.DataFrame:
    """lambda (0, 0.1, 1, 10) against test PPL, each as a change from the paper's 0.1 read against QuantGPT's seed
    band; a missing run says "not run" with its command."""
    runs = load_grids(preset, LAMBDA_GRID)
    band, _ = bands(preset)
    ref = runs.metric(LAMBDA_RUNS[0.1])
    rows = []
    for lam, key in LAMBDA_RUNS.items():
        ppl = runs.metric(key)
        row = {"lambda": f"{lam:g}" + (" (L_dist only)" if lam == 0 else " (paper)" if lam == 0.1 else ""),
               "test PPL": ppl_text(ppl) if ppl is not None else "not run", "against lambda = 0.1": "",
               "reading": ""}
        if ppl is None:
            row["reading"] = X.grid_command(LAMBDA_GRID, preset, key)
        elif ref is not None and lam != 0.1:
            row["against lambda = 0.1"] = change_text(ppl / ref - 1)
            row["reading"] = band_words(ppl / ref - 1, band, direction=True)
        rows.append(row)
    rows.append({"lambda": "0.1, three seeds", "test PPL": seed_range_text(preset),
                 "against lambda = 0.1": f"band: range {100 * band:.2f}%" if band is not None else "",
                 "reading": "QuantGPT's run-to-run spread"})
    return pd.DataFrame(rows)


def seed_range_text(preset: str) -> str:
    """The range of QuantGPT 2-2-8's test PPL over its three seeds, or "not run"."""
    runs = load_grids(preset, *verdicts.SEED_GRIDS)
    ppl = [runs.metric(k) for k in ("mds-228", "mds-228-seed1", "mds-228-seed2")]
    return "not run" if None in ppl else f"{ppl_text(min(ppl))}-{ppl_text(max(ppl))}"


# ----------------------------------------------------------------------------------------------------------------
# five times the budget
# ----------------------------------------------------------------------------------------------------------------


def no_long_runs(preset: str) -> str | None:
    """Why ``preset`` has no long runs (it trains epochs, not a number of steps to multiply), or None if it has."""
    if X.grid(LONG_GRID, preset):
        return None
    return (f"no long runs in the `{preset}` preset: it trains by epochs, so it has no step budget to multiply "
            f"(grid `{LONG_GRID}` exists for presets that train a number of steps, such as `cpu`)")


def long_points(runs: GridResults) -> tuple[int, int]:
    """The two steps the long runs are read at: where the preset's own runs end (``curve_at``) and their end."""
    cfg = runs.configs[LONG_RUNS["QuantGPT, L_dist + L_cont"][0]]
    return cfg.curve_at[0], cfg.max_steps


def long_curves(preset: str) -> dict[str, list[tuple[int, float]]]:
    """Validation PPL against training tokens: each long run (5x the budget) and the preset's own run of the same
    method ("..., cpu budget"), by display name; runs without a result are left out (all: a preset without long
    runs)."""
    if no_long_runs(preset):
        return {}
    runs = load_grids(preset, "lm-table", "lm-ablations", LONG_GRID)
    curves = {}
    for name, (long, short) in LONG_RUNS.items():
        for key, label in ((long, name), (short, f"{name} ({preset} budget)")):
            res = runs.result(key)
            if res and res.get("curve"):
                per_step = res.get("tokens_per_step") or runs.configs[key].batch_size * runs.configs[key].seq_len
                curves[label] = [(p.get("tokens", p["step"] * per_step), p["valid_ppl"]) for p in res["curve"]]
    return curves


def long_marker(preset: str) -> int | None:
    """The training tokens where the preset's own 2-2-8 runs end (the long curves' first reading point); None for a
    preset without long runs."""
    if no_long_runs(preset):
        return None
    runs = load_grids(preset, LONG_GRID)
    cfg = runs.configs[LONG_RUNS["QuantGPT, L_dist + L_cont"][0]]
    return long_points(runs)[0] * cfg.batch_size * cfg.seq_len


def missing_note(preset: str, grid: str) -> str:
    """For a figure: "not run: <runs>" and the grid's command, or "" once every run of ``grid`` has landed (why
    there is nothing, for a preset without long runs)."""
    if grid == LONG_GRID and no_long_runs(preset):
        return no_long_runs(preset)
    runs = load_grids(preset, grid)
    missing = [k for k in runs if runs.result(k) is None]
    return f"not run: {', '.join(missing)}\n({X.grid_command(grid, preset)})" if missing else ""


def valid_at(res: dict | None, step: int) -> float | None:
    """A run's validation PPL at ``step`` (None when it has not run or was not evaluated there)."""
    return next((p["valid_ppl"] for p in (res or {}).get("curve") or [] if p["step"] == step), None)


def long_table(preset: str) -> pd.DataFrame:
    """Validation PPL of the long runs where the preset's runs end and at 5x that, then the effect of L_cont (with
    L_cont over L_dist only; against QuantGPT's seed band) and the gap to LAQ (LAQ over QuantGPT with L_cont; against
    the larger band) at both points."""
    if no_long_runs(preset):
        return pd.DataFrame([{"validation PPL": no_long_runs(preset)}])
    runs = load_grids(preset, LONG_GRID)
    short, end = long_points(runs)
    per_step = runs.configs[LONG_RUNS["QuantGPT, L_dist + L_cont"][0]]
    cols = [f"{s * per_step.batch_size * per_step.seq_len:,} tokens" for s in (short, end)]
    vals = {name: [valid_at(runs.result(long), s) for s in (short, end)] for name, (long, _) in LONG_RUNS.items()}
    rows = [{"validation PPL": name, **{c: ppl_text(v) if v is not None else
                                        "not run: " + X.grid_command(LONG_GRID, preset, LONG_RUNS[name][0])
                                        for c, v in zip(cols, vs)}} for name, vs in vals.items()]
    own, widest = bands(preset)
    cont, dist, laq = vals.values()
    for what, num, den, band in (("adding L_cont (with / L_dist only)", cont, dist, own),
                                 ("LAQ / QuantGPT L_dist only (the same loss: the quantizer)", laq, dist, widest),
                                 ("LAQ / QuantGPT with L_cont", laq, cont, widest)):
        rows.append({"validation PPL": what, **{c: ratio_reading(n, d, band) for c, n, d in zip(cols, num, den)}})
    return pd.DataFrame(rows)


def ratio_reading(num: float | None, den: float | None, band: float | None) -> str:
    """"+0.57%: no effect (inside the band), band 1.18%", or "not run"."""
    if num is None or den is None:
        return "not run"
    rel = num / den - 1
    return f"{change_text(rel)}: {band_words(rel, band)}" + (f", band {100 * band:.2f}%" if band else "")


# ----------------------------------------------------------------------------------------------------------------
# what they show, in words
# ----------------------------------------------------------------------------------------------------------------


def contrastive_verdict(preset: str) -> str:
    """What the gradient split, the weight and the long runs show (Markdown bullets), "no effect" included; for
    what has not run, what would decide it and the command."""
    return "\n".join(f"- {x}" for x in (gradient_sentence(preset), lambda_sentence(preset), long_sentence(preset)))


def gradient_sentence(preset: str) -> str:
    curves = grad_share_curves(preset)
    if not curves:
        return ("**Gradient ratio:** not recorded yet; it shows whether lambda L_cont moves the weights at all "
                f"(`{X.grid_command(LAMBDA_GRID, preset)}`).")
    parts = []
    for name, points in curves.items():
        late = later_points(points)
        parts.append(f"{name}: |lambda dL_cont/dW| is {100 * statistics.median(p['ratio'] for p in late):.1f}% of "
                     f"|dL_dist/dW|, cosine {statistics.median(p['cosine'] for p in late):.2f}")
    return ("**Gradient ratio** (median over the later half of each run in log steps, each point one batch): "
            + "; ".join(parts) + "." + gradient_conclusion(curves))


def gradient_conclusion(curves: dict[str, list[dict]]) -> str:
    """What the split says at the paper's lambda = 0.1, once a run with it has recorded one ("" before)."""
    paper = [later_points(points) for name, points in curves.items() if name.startswith("lambda = 0.1,")]
    if not paper:
        return ""
    ratio = statistics.median(p["ratio"] for late in paper for p in late)
    cosine = statistics.median(p["cosine"] for late in paper for p in late)
    size = "a small part of" if ratio < 0.1 else "comparable to" if ratio < 1 else "larger than"
    way = ("in a mostly unrelated direction (cosine below 0.5)" if abs(cosine) < 0.5 else
           "in the same direction" if cosine > 0 else "against it")
    return (f" At the paper's lambda = 0.1, L_cont's gradient is {size} L_dist's ({100 * ratio:.1f}%) and points "
            f"{way}" + (": it steers the update little." if ratio < 0.1 else "."))


def lambda_sentence(preset: str) -> str:
    runs = load_grids(preset, LAMBDA_GRID)
    band, _ = bands(preset)
    ref = runs.metric(LAMBDA_RUNS[0.1])
    done = {lam: runs.metric(k) for lam, k in LAMBDA_RUNS.items() if lam != 0.1 and runs.metric(k) is not None}
    missing = [k for lam, k in LAMBDA_RUNS.items() if runs.metric(k) is None]
    if ref is None or not done or band is None:
        return ("**Weight lambda:** not run yet; it is decided by whether lambda = 1 or 10 ends beyond QuantGPT's "
                f"seed band from lambda = 0.1 (`{X.grid_command(LAMBDA_GRID, preset)}`).")
    beyond = {lam: v for lam, v in done.items() if abs(v / ref - 1) > band}
    inside = [f"lambda = {lam:g}" for lam in done if lam not in beyond]
    parts = ", ".join(f"lambda = {lam:g} {change_text(v / ref - 1)}" for lam, v in done.items())
    text = (f"**Weight lambda:** against lambda = 0.1 ({ppl_text(ref)}), {parts}; QuantGPT's seed band (the "
            f"range of its three seeds) is {100 * band:.2f}%. ")
    text += (f"No weight {'run so far ' if missing else ''}moves the test PPL beyond it: no effect at this budget."
             if not beyond else
             "Beyond the band: " + ", ".join(f"lambda = {lam:g} ({'lower' if v < ref else 'higher'} PPL)"
                                              for lam, v in beyond.items())
             + (f"; inside it: {', '.join(inside)}." if inside else "."))
    if missing:
        return text + (" Not run yet: " + ", ".join(f"`{k}`" for k in missing)
                       + f" (`{X.grid_command(LAMBDA_GRID, preset)}`).")
    return text + " " + long_lambda_text({lam for lam, v in beyond.items() if v < ref and lam > 0.1})


def long_lambda_text(helped: set[float]) -> str:
    """Which weight the long L_cont run uses (``X.LONG_LAMBDA``, set in the grid) and whether the lambda runs support
    it: the paper's 0.1 unless a larger weight lowered the PPL beyond the band (``helped``)."""
    lam = X.LONG_LAMBDA
    if lam in helped or (lam == 0.1 and not helped):
        why = ("no larger weight lowered the PPL beyond the band" if lam == 0.1 else
               "it lowered the PPL beyond the band")
        return f"The long run with L_cont uses lambda = {lam:g}, which these runs support: {why}."
    return (f"The long run with L_cont uses lambda = {lam:g}, which these runs do not support"
            + (f" (lambda = {', '.join(f'{x:g}' for x in sorted(helped))} lowered the PPL beyond the band)."
               if helped else "."))


def long_effect(preset: str) -> dict | None:
    """L_cont at the long runs' end: training tokens, validation PPL with and without L_cont, the relative change
    adding L_cont makes, and the band it is read against with its name (QuantGPT's seed band; the largest measured
    one while QuantGPT's seeds are incomplete; None before any). None until both runs have landed, or for a preset
    without long runs."""
    if no_long_runs(preset):
        return None
    runs = load_grids(preset, LONG_GRID)
    end = long_points(runs)[1]
    cfg = runs.configs[LONG_RUNS["QuantGPT, L_dist + L_cont"][0]]
    keys = [LONG_RUNS[name][0] for name in ("QuantGPT, L_dist + L_cont", "QuantGPT, L_dist only")]
    cont, dist = (valid_at(runs.result(k), end) for k in keys)
    if cont is None or dist is None:
        return None
    own = "mds" in verdicts.seed_spreads(preset)
    return {"tokens": end * cfg.batch_size * cfg.seq_len, "with": cont, "without": dist, "change": cont / dist - 1,
            "test": tuple(runs.metric(k) for k in keys),
            "band": bands(preset)[0], "band_name": "QuantGPT's seed band" if own else
            "the largest measured seed band (QuantGPT's three seeds have not all run)"}


def long_effect_words(e: dict) -> str:
    """``long_effect`` in words: the change adding L_cont makes and where it lies against the band (a test-PPL
    spread of three seeds at the preset's budget; each long run is one seed)."""
    where = ("; no seed band is measured yet to read it against" if e["band"] is None else
             f", {'inside' if abs(e['change']) <= e['band'] else 'beyond'} {e['band_name']} "
             f"({100 * e['band']:.2f}%, the range of a test PPL over three seeds at the preset's budget; one seed per "
             "long run)")
    test_with, test_without = e.get("test") or (None, None)
    test = (f"; test PPL {change_text(test_with / test_without - 1)}, {ppl_text(test_without)} and "
            f"{ppl_text(test_with)}" if test_with and test_without else "")
    return (f"adding L_cont moves QuantGPT's validation PPL by {change_text(e['change'])} "
            f"({ppl_text(e['without'])} without, {ppl_text(e['with'])} with{test})" + where)


def long_sentence(preset: str) -> str:
    if no_long_runs(preset):
        return f"**Five times the budget:** {no_long_runs(preset)}."
    runs = load_grids(preset, LONG_GRID)
    cfg = runs.configs[LONG_RUNS["QuantGPT, L_dist + L_cont"][0]]
    e = long_effect(preset)
    if e is None:
        return (f"**Five times the budget:** not run yet; it is decided by whether, at "
                f"{long_points(runs)[1] * cfg.batch_size * cfg.seq_len:,} tokens, QuantGPT with L_cont ends beyond "
                f"QuantGPT's seed band from QuantGPT with L_dist alone (`{X.grid_command(LONG_GRID, preset)}`).")
    beyond = e["band"] is not None and abs(e["change"]) > e["band"]
    text = (f"**Five times the budget** ({e['tokens']:,} tokens): {long_effect_words(e)}"
            + (": no effect at this budget." if not beyond else ": L_cont helps once the budget is larger."
               if e["change"] < 0 else ": L_cont hurts at this budget."))
    q = long_quantizer_gap(preset)
    if q is not None:
        rel = q["laq"] / e["with"] - 1
        text += (f" LAQ ends {change_text(rel)} from QuantGPT with L_cont, {band_words(rel, q['band'])}, and "
                 f"{long_quantizer_words(q)}.")
    return text


def long_quantizer_gap(preset: str) -> dict | None:
    """The quantizer's gap at the long runs' end: LAQ's validation PPL over QuantGPT's with the same loss (L_dist
    only), with the band it is read against (the largest measured seed spread: two quantizers). None until both have
    landed or before any seed spread, or for a preset without long runs."""
    if no_long_runs(preset):
        return None
    runs = load_grids(preset, LONG_GRID)
    end = long_points(runs)[1]
    laq, dist = (valid_at(runs.result(LONG_RUNS[name][0]), end)
                 for name in ("LAQ, L_dist only", "QuantGPT, L_dist only"))
    band = bands(preset)[1]
    if laq is None or dist is None or band is None:
        return None
    return {"laq": laq, "dist": dist, "change": laq / dist - 1, "band": band}


def long_quantizer_words(q: dict) -> str:
    """``long_quantizer_gap`` in words."""
    return (f"{change_text(q['change'])} from QuantGPT with L_dist only, the same loss ({ppl_text(q['laq'])} against "
            f"{ppl_text(q['dist'])}): the quantizer's gap, {band_words(q['change'], q['band'])} "
            f"({100 * q['band']:.2f}%, the largest seed spread)")
