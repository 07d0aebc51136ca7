"""S3's scikit-learn baseline (jaxmnist.engine.baselines) on synthetic digits: one fit per point
and seed of the depth x width experiment, with the settings its docstring promises."""

from __future__ import annotations

import numpy as np
import pytest
from train_fixtures import small_splits

from jaxmnist import config as C
from jaxmnist.engine import baselines

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def s3_rows():
    study = C.resolve(C.load_study("s3"), seeds=2, overrides=["base.train.epochs=2"])
    members = C.check(study)
    splits = small_splits(n_train=640, n_val=64, n_test=400)
    return members, splits, baselines.run_sklearn(study, members, splits, log=lambda _: None)


def test_one_fit_per_depth_width_point_and_seed(s3_rows):
    members, _, rows = s3_rows
    expected = sorted((e["label"], m["config"]["seed"]) for m in members
                      for e in m["experiments"] if e["name"] == "depth_width")
    assert len(expected) == 10  # 5 points x 2 seeds
    assert sorted((r["label"], r["seed"]) for r in rows) == expected
    by_label = {e["label"]: m["config"]["model"]["hidden"] for m in members
                for e in m["experiments"] if e["name"] == "depth_width"}
    for row in rows:
        assert row["experiment"] == "depth_width" and row["hidden"] == by_label[row["label"]]
        assert row["settings"] == {"learning_rate": 0.01, "batch_size": 32, "epochs": 2}
        assert len(row["loss_curve"]) == 2 and 0.0 <= row["test_acc"] <= 1.0


def test_the_baseline_learns_and_equals_sklearn_configured_by_hand(s3_rows):
    from sklearn.neural_network import MLPClassifier

    _, splits, rows = s3_rows
    row = next(r for r in rows if r["label"] == "2x64" and r["seed"] == 1)
    # It learns: above twice chance (10 classes) after 2 passes, its loss falling.
    assert row["test_acc"] > 0.2 and row["loss_curve"][1] < row["loss_curve"][0]
    # The docstring's settings written out: plain SGD (no Nesterov momentum), no L2, constant
    # rate, exactly `epochs` passes.
    clf = MLPClassifier(hidden_layer_sizes=(64, 64), solver="sgd", learning_rate_init=0.01,
                        momentum=0.0, nesterovs_momentum=False, alpha=0.0, batch_size=32,
                        max_iter=2, random_state=1, n_iter_no_change=3, tol=0.0)
    with pytest.warns(Warning):  # sklearn: "did not converge" after 2 passes
        clf.fit(splits.train_x.reshape(len(splits.train_x), -1).astype(np.float32) / 255.0,
                splits.train_y)
    test_x = splits.test_x.reshape(len(splits.test_x), -1).astype(np.float32) / 255.0
    assert row["test_acc"] == float(np.mean(clf.predict(test_x) == splits.test_y))
    # (the baseline fits with one BLAS thread: sums in another order, equal to ~1e-9)
    assert row["loss_curve"] == pytest.approx(clf.loss_curve_, rel=1e-6)
