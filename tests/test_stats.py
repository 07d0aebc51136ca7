"""Statistics over seeds (jaxmnist.runs.stats) on small fixtures whose answers are worked out by
hand in the comments: IQM, intervals, paired probability of improvement, verdicts, performance
profiles, time to a validation target, and the choice of each optimizer's setting on validation."""

import math
from pathlib import Path

import numpy as np
import pytest

from jaxmnist.runs import stats
from jaxmnist.runs.runview import Point, RunView


def test_iqm_is_the_mean_of_the_middle_half():
    assert stats.iqm([1, 2, 3, 4]) == 2.5  # cut 1 from each end: (2 + 3) / 2
    # 8 values, cut 2 from each end (unsorted input): (3 + 4 + 5 + 6) / 4; the outlier is gone
    assert stats.iqm([100, 1, 7, 2, 6, 3, 5, 4]) == 4.5
    assert stats.iqm([1, 2, 3, 4, 100]) == 3.0  # 5 values: int(1.25) = 1 cut: (2 + 3 + 4) / 3
    assert math.isnan(stats.iqm([]))


def test_below_five_seeds_the_values_stand_alone_without_an_interval():
    d = stats.describe([0.90, None, 0.95])  # an unfinished seed is kept in values, not counted
    assert d["mean"] == pytest.approx(0.925) and d["iqm"] == pytest.approx(0.925)
    assert math.isnan(d["ci_low"]) and math.isnan(d["ci_high"])
    assert d["values"] == [0.90, None, 0.95] and d["note"] == "2 seeds < 5: no interval"


def test_the_interval_of_a_constant_sample_is_a_point():
    d = stats.describe([0.97] * 6)
    assert d["ci_low"] == d["ci_high"] == pytest.approx(0.97) and d["note"] == ""


def test_the_interval_lies_within_the_sample_and_is_reproducible():
    values = [0.90, 0.92, 0.95, 0.91, 0.93, 0.94]
    a, b = stats.describe(values), stats.describe(values)
    assert (a["ci_low"], a["ci_high"]) == (b["ci_low"], b["ci_high"])  # the bootstrap's own seed
    # A resample's mean lies between the smallest and largest value; this sample is not constant.
    assert 0.90 <= a["ci_low"] < a["mean"] < a["ci_high"] <= 0.95


def test_probability_of_improvement_pairs_the_seeds():
    # Per seed: .90<.91 (0), .92>.91 (1), .95>.94 (1), .91<.92 (0), .93=.93 (1/2): 2.5 / 5.
    x, y = [0.90, 0.92, 0.95, 0.91, 0.93], [0.91, 0.91, 0.94, 0.92, 0.93]
    row = stats.paired(x, y, ("a", "b"))
    assert row["n"] == 5 and row["p_improve"] == 0.5
    # Differences -.01, .01, .01, -.01, 0: mean 0, so the interval holds zero.
    assert row["diff_ci_low"] < 0 < row["diff_ci_high"]
    assert row["verdict"] == "not distinguishable with 5 seeds"
    # x beats y on every seed by 0.5: paired, P = 1 (every x against every y would give 15/25).
    row = stats.paired([1, 2, 3, 4, 5], [0.5, 1.5, 2.5, 3.5, 4.5], ("a", "b"))
    assert row["p_improve"] == 1.0 and row["p_ci_low"] == row["p_ci_high"] == 1.0
    assert row["diff_ci_low"] == row["diff_ci_high"] == 0.5
    assert row["verdict"].startswith("a better by 0.5000")


def test_a_difference_is_stated_only_when_its_interval_excludes_zero():
    x = np.array([0.95, 0.96, 0.94, 0.97, 0.95])
    d = np.array([0.01, 0.02, 0.015, 0.012, 0.018])  # all positive: every resample's mean is
    row = stats.paired(x - d, x, ("a", "b"))
    assert row["diff_ci_high"] < 0 and row["verdict"].startswith("b better by 0.0150")
    assert row["p_improve"] == 0.0
    # The same three seeds: all favour b, but three seeds give no interval and no claim.
    row = stats.paired((x - d)[:3], x[:3], ("a", "b"))
    assert math.isnan(row["diff_ci_low"]) and row["p_improve"] == 0.0
    assert row["verdict"] == "not distinguishable with 3 seeds (3 seeds < 5: no interval)"


def test_performance_profile_fractions():
    # a: 4 runs, one without a score; above 0: 3/4, above 0.6: 2/4, above 0.8: 1/4, above 0.9: 0.
    frame = stats.profile({"a": [0.5, 0.7, None, 0.9], "b": [0.8, 0.8]}, [0, 0.6, 0.8, 0.9])
    assert frame["a"].tolist() == [0.75, 0.5, 0.25, 0.0]
    assert frame["b"].tolist() == [1.0, 1.0, 0.0, 0.0]  # strictly above: 0.8 is not above 0.8


def _member(i: int, optim: str, lr: float, seed: int, val: list[float], test: float) -> dict:
    hist = [{"epoch": e + 1, "val_acc": v, "val_loss": 1 - v, "seconds": 2.0 if e == 0 else 1.0}
            for e, v in enumerate(val)]
    return {"member": i, "status": "ok", "history": hist, "test": {"acc": test, "loss": 1 - test},
            "config": {"seed": seed, "optim": {"name": optim, "learning_rate": lr}}}


def _view(points: dict[tuple[str, float], list[tuple[list[float], float]]]) -> RunView:
    """A run of ``{(optimizer, lr): [(val_acc per epoch, test_acc) per seed]}``."""
    out, i = [], 0
    for (optim, lr), seeds in points.items():
        p = Point(f"{optim}-{lr}", {"optim": {"name": optim, "learning_rate": lr}},
                  [{"name": "main", "label": f"{optim} lr={lr}"}])
        for seed, (val, test) in enumerate(seeds):
            p.members.append(_member(i, optim, lr, seed, val, test))
            i += 1
        out.append(p)
    return RunView(Path("."), {"study": "t"}, {}, {}, out, None)


def test_compare_chooses_each_optimizer_on_validation_and_pairs_the_seeds():
    sgd = [0.90, 0.91, 0.92, 0.93, 0.94]
    run = _view({
        ("adam", 0.01): [([0.5, 0.8], 0.99)] * 5,  # best test accuracy, worse validation
        ("adam", 0.001): [([0.5, 0.9], t + 0.01) for t in sgd],  # chosen: val 0.9
        ("sgd", 0.1): [([0.5, 0.85], t) for t in sgd],
    })
    assert [p.label for p in stats.chosen(run).values()] == ["adam lr=0.001", "sgd lr=0.1"]
    frame = stats.compare(run)
    assert list(frame.columns) == stats.COMPARE_COLUMNS and len(frame) == 1
    row = frame.iloc[0]
    assert (row["x"], row["y"], row["n"], row["p_improve"]) == ("adam lr=0.001", "sgd lr=0.1",
                                                                5, 1.0)
    assert row["diff"] == pytest.approx(0.01)
    assert row["verdict"].startswith("adam lr=0.001 better by 0.0100")


def test_epochs_and_seconds_to_a_validation_target():
    run = _view({("adam", 0.001): [([0.5, 0.8, 0.9], 0.9), ([0.5, 0.7, 0.8], 0.9),
                                   ([0.5, 0.6, 0.7], 0.9)],
                 ("sgd", 0.1): [([0.8, 0.8, 0.8], 0.9)] * 3})
    members = stats.time_to_target(run, 0.8)
    # Seed 0 reaches 0.8 at epoch 2 (2 s + 1 s), seed 1 at epoch 3 (4 s), seed 2 never.
    assert members["epochs"].iloc[:2].tolist() == [2, 3] and np.isnan(members["epochs"].iloc[2])
    assert members["seconds"].iloc[:2].tolist() == [3.0, 4.0]
    by_opt = stats.time_to_target_by_optimizer(run, 0.8)
    # adam: median of (2, 3, never) = 3 epochs, 4 s; sgd reaches it in its first epoch (2 s).
    assert by_opt.loc["adam", ["reached", "n", "epochs", "seconds"]].tolist() == [2, 3, 3, 4]
    assert by_opt.loc["sgd", ["reached", "epochs", "seconds"]].tolist() == [3, 1, 2]
    assert by_opt.loc["adam", "point"] == "adam lr=0.001"
