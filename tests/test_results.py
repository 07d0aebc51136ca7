"""jaxmnist.runs.results: the engine's typed results shaped as results.json (no jax needed)."""

from __future__ import annotations

import json

import numpy as np

from jaxmnist import schema
from jaxmnist.engine.evaluate import GroupStats, MemberResult
from jaxmnist.runs import results


def test_member_status_labels_collapse_and_divergence():
    one_class = np.full(10_000, 1)  # S2's degenerate models: every image called '1'
    assert results.member_status(True, one_class) == ("collapsed", 1.0)
    healthy = np.arange(10_000) % 10
    assert results.member_status(True, healthy) == ("ok", 0.1)
    assert results.member_status(False, healthy)[0] == "diverged"
    nearly = np.where(np.arange(1000) < 905, 7, 3)
    assert results.member_status(True, nearly)[0] == "collapsed"
    assert results.member_status(True, np.where(np.arange(1000) < 850, 7, 3))[0] == "ok"


def _result(**overrides) -> MemberResult:
    member = schema.member({"model": {"name": "mlp", "hidden": [4]},
                            "optim": {"name": "sgd", "learning_rate": 0.1},
                            "reg": {"l1": 0.0, "l2": 0.0}, "loss": "xent",
                            "train": {"epochs": 2, "batch_size": 8}, "seed": 0})
    stats = GroupStats(members=1, padded_members=1, devices=1, processes=1,
                       strategy="sequential", compile_seconds=1.0, train_seconds=2.0,
                       images_per_second=10.0, resumed=False)
    fields = dict(
        member=member, alive=True, diverged_epoch=None, epochs_trained=2.0, rungs=[],
        history=np.array([[2.0, 0.5, np.nan, np.nan], [np.inf, 0.75, np.nan, np.nan]],
                         np.float32),
        epoch_seconds=np.array([1.5, 0.5], np.float32), has_val=False,
        test_loss=float("nan"), test_acc=0.5, test_pred=np.array([0, 1, 1, 3], np.int32),
        test_probs=np.array([[np.inf] + [0.0] * 9]),
        params={}, model_state={},
        weights={"dense0": np.array([[1.0, np.nan], [2.0, 3.0]])}, grads={},
        param_count=10, group=stats)
    fields.update(overrides)
    return MemberResult(**fields)


def test_a_member_record_is_strict_json_with_nothing_non_finite():
    record = results.member_record(_result(), test_labels=np.array([0, 1, 2, 3]))
    json.dumps(record, allow_nan=False)
    # No validation split: the rows carry no val keys; a non-finite number is None.
    assert record["history"] == [
        {"epoch": 1, "train_loss": 2.0, "train_acc": 0.5, "seconds": 1.5},
        {"epoch": 2, "train_loss": None, "train_acc": 0.75, "seconds": 0.5}]
    assert record["test"] == {"loss": None, "acc": 0.5}
    assert record["test_probs_first25"][0][0] is None
    assert np.asarray(record["confusion_test"]).sum() == 4
    assert record["confusion_test"][2][1] == 1  # label 2 predicted as 1
    assert record["confusion_train"] is None and record["status"] == "ok"
    assert record["config"]["optim"] == {"name": "sgd", "learning_rate": 0.1,
                                         "schedule": {"name": "constant"}, "clip_norm": None}


def test_histograms_count_the_finite_values_of_each_layer():
    hist = results.histograms({"dense0": np.array([1.0, np.nan, 2.0, 3.0]),
                               "empty": np.array([np.nan])})
    assert list(hist) == ["dense0"]  # a layer with no finite value has no histogram
    assert sum(hist["dense0"]["counts"]) == 3
    assert len(hist["dense0"]["edges"]) == results.HIST_BINS + 1


def test_a_diverged_member_is_labelled_and_its_group_recorded():
    record = results.member_record(_result(alive=False, diverged_epoch=2),
                                   test_labels=np.array([0, 1, 2, 3]))
    assert record["status"] == "diverged" and record["diverged_epoch"] == 2
    group = results.group_record(_result().group)
    assert group["strategy"] == "sequential" and group["images_per_second"] == 10.0


def test_a_pruned_member_says_at_which_rung_and_rank_and_what_it_trained():
    rungs = [{"epoch": 1, "rank": 1, "of": 4, "by": "val_acc", "survived": True},
             {"epoch": 2, "rank": 2, "of": 2, "by": "val_loss", "survived": False}]
    record = results.member_record(_result(alive=False, rungs=rungs, epochs_trained=2.0),
                                   test_labels=np.array([0, 1, 2, 3]))
    assert record["status"] == "pruned at epoch 2 (rank 2 of 2 by val_loss)"
    assert record["epochs_trained"] == 2.0 and record["rungs"] == rungs
    json.dumps(record, allow_nan=False)
    # Survived every rung: its own status.
    assert results.member_status(False, np.array([0, 1]), rungs[:1])[0] == "diverged"
