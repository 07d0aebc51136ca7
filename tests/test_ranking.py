"""The one ranking rule: metric (seed mean), then validation loss, then index; non-finite last."""

from __future__ import annotations

import math

import pytest

from jaxmnist import ranking


def test_higher_accuracy_first_and_ties_by_lower_loss_then_index():
    acc = [0.90, 0.95, 0.95, 0.95]
    loss = [0.1, 0.30, 0.20, 0.20]
    assert ranking.rank(acc, loss) == [2, 3, 1, 0]


def test_lower_loss_first_when_ranking_by_loss():
    assert ranking.rank([0.5, 0.2, 0.9], metric="val_loss") == [1, 0, 2]


def test_points_rank_by_their_seed_mean():
    # (0.99 + 0.91) / 2 = 0.95 < (0.96 + 0.96) / 2 = 0.96, though 0.99 is the best single seed.
    assert ranking.rank([[0.99, 0.91], [0.96, 0.96]]) == [1, 0]


def test_missing_or_diverged_values_rank_last_in_index_order():
    acc = [None, 0.5, [0.9, math.nan], math.inf, 0.7]
    assert ranking.rank(acc) == [4, 1, 0, 2, 3]


def test_seed_mean():
    assert ranking.seed_mean([0.25, 0.75]) == 0.5
    assert ranking.seed_mean(0.5) == 0.5
    assert math.isnan(ranking.seed_mean([0.5, None]))
    assert math.isnan(ranking.seed_mean([]))


def test_unknown_metric_and_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="cannot rank by 'test_acc'.*val_acc"):
        ranking.rank([0.5], metric="test_acc")
    with pytest.raises(ValueError, match="2 metric values but 1 losses"):
        ranking.rank([0.5, 0.6], [0.1])
