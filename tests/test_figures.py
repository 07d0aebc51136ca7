"""Tests of jaxmnist.runs.figures' pure helpers (the figures themselves: tests/test_report.py)."""

import math

import pytest

from jaxmnist.runs import figures, stats


def test_band_below_five_seeds_is_the_seeds_range():
    # 3 seeds: describe gives a NaN interval, so the band is min..max of the seeds.
    d = stats.describe([0.91, 0.95, 0.93])
    assert math.isnan(d["ci_low"])
    assert figures.band(d) == (0.91, 0.95)


def test_band_skips_a_diverged_seed():
    assert figures.band(stats.describe([0.9, float("nan"), 0.8])) == (0.8, 0.9)


def test_band_from_five_seeds_is_the_interval():
    d = stats.describe([0.90, 0.91, 0.92, 0.93, 0.94])
    low, high = figures.band(d)
    assert (low, high) == (pytest.approx(d["ci_low"]), pytest.approx(d["ci_high"]))
    assert 0.90 <= low < 0.92 < high <= 0.94
