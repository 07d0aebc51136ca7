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


# A rung of successive halving, on hand-made validation numbers: members 0-5 are three points
# of Adam (two seeds each), 6-7 two points of SGD (one seed each).
POINTS = ["a1", "a1", "a2", "a2", "a3", "a3", "s1", "s2"]
FAMILIES = ["adam"] * 6 + ["sgd"] * 2
ACC = [0.90, 0.80, 0.86, 0.86, 0.70, 0.99, 0.50, 0.60]
LOSS = [0.3, 0.5, 0.2, 0.2, 0.9, 0.1, 1.0, 0.9]


def test_a_rung_keeps_the_top_third_of_each_family_by_seed_mean_whole_points():
    out = ranking.rung(POINTS, FAMILIES, ACC, LOSS, [True] * 8, eta=3)
    # Adam means: a1 0.85, a2 0.86, a3 0.845: a2 alone (ceil(3/3) = 1) survives, both seeds.
    assert {k: out[k] for k in range(6)} == {
        0: (2, 3, False), 1: (2, 3, False), 2: (1, 3, True), 3: (1, 3, True),
        4: (3, 3, False), 5: (3, 3, False)}
    # SGD: ceil(2/3) = 1 survivor, ranked apart from Adam.
    assert out[7] == (1, 2, True) and out[6] == (2, 2, False)


def test_a_rung_ranked_within_the_whole_group_and_by_loss():
    out = ranking.rung(POINTS, [""] * 8, ACC, LOSS, [True] * 8, eta=2)
    assert sorted(k for k, (_, _, keep) in out.items() if keep) == [0, 1, 2, 3, 4, 5]  # 3 of 5
    assert {of for _, of, _ in out.values()} == {5}
    # Lower is better for val_loss: a2 (mean 0.2) before a1 (0.4) and a3 (0.5).
    by_loss = ranking.rung(POINTS, FAMILIES, LOSS, LOSS, [True] * 8, eta=3, metric="val_loss")
    assert [by_loss[k][0] for k in (0, 2, 4)] == [2, 1, 3]
    # Equal accuracy means: the lower validation loss survives.
    tie = ranking.rung(["p", "q"], ["f", "f"], [0.8, 0.8], [0.4, 0.3], [True, True], eta=2)
    assert tie == {0: (2, 2, False), 1: (1, 2, True)}


def test_a_rung_ranks_only_active_points_and_a_diverged_seed_ranks_its_point_last():
    active = [True] * 8
    active[4] = active[5] = False  # a3 was stopped at an earlier rung
    out = ranking.rung(POINTS, FAMILIES, ACC, LOSS, active, eta=2)
    assert 4 not in out and 5 not in out and out[2] == (1, 2, True)
    # a2's second seed diverged (not active, its value NaN): a2 ranks after a1 and a3.
    acc = list(ACC)
    active, acc[3] = [True] * 8, math.nan
    active[3] = False
    out = ranking.rung(POINTS, FAMILIES, acc, LOSS, active, eta=3)
    assert out[2] == out[3] == (3, 3, False) and out[0] == (1, 3, True)
    # At least one point survives, whatever eta.
    assert ranking.rung(["p", "q"], ["f", "f"], [0.1, 0.2], [1, 1], [True, True], eta=100)[1][2]
