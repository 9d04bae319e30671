"""The one verdict function (``qlib.report.verdict``): every category from inputs built here, and the pieces a
claim passes to it (the band of a comparison, the fall of a curve over the last half of its budget)."""
import pytest

from qlib import report

BUDGET = "204,800 tokens"


def test_an_ordering_won_by_more_than_the_band_is_reproduced():
    assert report.verdict(100.0, 110.0, 0.05, budget=BUDGET) == "reproduced at 204,800 tokens"


def test_an_ordering_inside_the_band_either_way_is_inside_the_noise():
    assert report.verdict(100.0, 104.0, 0.05, budget=BUDGET) == "inside the noise"
    assert report.verdict(104.0, 100.0, 0.05, budget=BUDGET) == "inside the noise"


def test_a_lost_ordering_whose_gap_has_settled_is_contradicted_at_the_budget():
    assert report.verdict(120.0, 100.0, 0.05, budget=BUDGET, falling=0.01) == "contradicted at 204,800 tokens"
    assert report.verdict(120.0, 100.0, 0.05, budget=BUDGET) == "contradicted at 204,800 tokens"  # no curve


def test_a_lost_claim_whose_curve_still_falls_by_more_than_the_band_is_not_reached():
    assert report.verdict(120.0, 100.0, 0.05, budget=BUDGET, falling=0.35) == "not reached at 204,800 tokens"
    # a threshold: 4.6x the teacher against 1.10x, the student's curve 35% lower over the last half
    assert report.verdict(4.6, 1.10, 0.012, budget=BUDGET, falling=0.35) == \
        "not reached at 204,800 tokens"
    assert report.verdict(4.6, 1.10, 0.012, budget=BUDGET, falling=0.005).startswith("contradicted")


def test_a_threshold_met_by_less_than_the_band_is_noise_not_reproduced():
    # the control at 24.35 against the teacher's 24.38: 0.999x, below 1.02 by less than a 4.8% band
    assert report.verdict(24.35 / 24.38, 1.02, 0.048) == "inside the noise"
    assert report.verdict(24.35 / 24.38, 1.02, None).startswith("inside the noise")
    # met by more than the band: 0.95x against 1.02 with a 1.2% band
    assert report.verdict(0.95, 1.02, 0.012) == "reproduced at this budget"


def test_two_collapsed_runs_make_a_claim_untestable():
    assert report.verdict(6.0, 7.0, 6.0, absolute=True, both_collapsed=True, budget="300 examples") == \
        "untestable: both collapsed at 300 examples"


def test_an_absolute_band_is_read_in_the_metrics_units():
    assert report.verdict(40.0, 43.0, 2.0, absolute=True) == "reproduced at this budget"
    assert report.verdict(40.0, 41.0, 2.0, absolute=True) == "inside the noise"
    assert report.verdict(43.0, 6.0, 10.5, absolute=True, budget="300 examples", falling=0.5) == \
        "not reached at 300 examples"


def test_missing_runs_and_missing_bands():
    assert report.verdict(None, 12.0, 0.05) == "not run"
    assert report.verdict(100.0, 120.0, None).startswith("inside the noise (no spread")


def test_a_comparison_reads_its_own_methods_spreads():
    spreads = {"mds": 0.012, "laq": 0.048}
    assert report.pair_band(spreads, "mds", "teacher")[0] == pytest.approx(0.012)
    band, words = report.pair_band(spreads, "mds", "lsq")
    assert band == pytest.approx(0.048) and "LSQ: 1 seed, the largest spread" in words
    assert report.pair_band({}, "mds", "lsq")[0] is None


def test_the_last_half_fall_reads_the_curve_from_half_the_budget():
    curve = [(0, 1e6), (18_432, 442.0), (61_952, 193.0), (204_800, 124.6)]
    assert report.last_half_fall(curve) == pytest.approx(193.0 / 124.6 - 1)
    assert report.last_half_fall([(0, 10.0), (100, 5.0)]) is None  # no point in the first half past step 0
    assert report.budget_text(204_800) == BUDGET and report.budget_text(300, "examples") == "300 examples"
