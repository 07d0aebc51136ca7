"""The engine's typed results shaped as the run directory's JSON (``results.json`` members).

The format: docs/architecture.md (the params go to ``RunWriter.export_member``). NumPy only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxmnist.engine import metrics
from jaxmnist.engine.hooks import HISTORY_FIELDS

if TYPE_CHECKING:  # the engine imports jax; this module reads its results only
    from jaxmnist.engine.evaluate import GroupStats, MemberResult

NUM_CLASSES = 10
HIST_BINS = 30  # bins of the per-layer weight and gradient histograms

COLLAPSE_SHARE = 0.9
"""``collapsed``: one class gets this share of the test predictions (MNIST's largest is 11%)."""


def member_status(alive: bool, test_pred: np.ndarray,
                  rungs: Sequence[Mapping[str, Any]] = ()) -> tuple[str, float]:
    """``(status, top_class_share)``: pruned, diverged (not alive), collapsed or ok.

    A pruned member (a rung of ``rungs`` stopped it) reads ``pruned at epoch e (rank r of n by
    val_acc)``.
    """
    counts = np.bincount(np.asarray(test_pred, np.int64), minlength=NUM_CLASSES)
    share = float(counts.max() / max(counts.sum(), 1))
    lost = [r for r in rungs if not r["survived"]]
    if lost:
        r = lost[0]
        return f"pruned at epoch {r['epoch']} (rank {r['rank']} of {r['of']} by {r['by']})", share
    if not alive:
        return "diverged", share
    return ("collapsed" if share >= COLLAPSE_SHARE else "ok"), share


def histograms(layers: Mapping[str, np.ndarray]) -> dict[str, dict[str, list[float]]]:
    """``{layer: {"counts", "edges"}}`` of each layer's finite values (:data:`HIST_BINS` bins)."""
    out = {}
    for layer, leaf in layers.items():
        values = np.asarray(leaf, np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        counts, edges = np.histogram(values, bins=HIST_BINS)
        out[layer] = {"counts": counts.tolist(), "edges": edges.tolist()}
    return out


def member_record(result: MemberResult, test_labels: np.ndarray) -> dict[str, Any]:
    """One member's ``results.json`` entry (without ``member``, ``group``, ``label``).

    ``confusion_train`` is None here: the runner adds it for the member the report draws.
    """
    status, share = member_status(result.alive, result.test_pred, result.rungs)
    fields = [(j, f) for j, f in enumerate(HISTORY_FIELDS)
              if result.has_val or not f.startswith("val")]
    return {
        "config": result.member.config(),
        "status": status,
        "diverged_epoch": result.diverged_epoch,
        "epochs_trained": result.epochs_trained,
        "rungs": result.rungs,
        "top_class_share": share,
        # [{"epoch", "train_loss", "train_acc", ["val_loss", "val_acc"], "seconds"}, ...]
        "history": [{"epoch": e + 1, **{f: metrics.finite_or_none(row[j]) for j, f in fields},
                     "seconds": float(result.epoch_seconds[e])}
                    for e, row in enumerate(result.history)],
        "test": {"loss": metrics.finite_or_none(result.test_loss), "acc": result.test_acc},
        # restore_best: the epoch whose parameters count, and the last epoch's test beside
        **({"kept_epoch": result.kept_epoch, "test_last": {
            "loss": metrics.finite_or_none(result.last_test[0]), "acc": result.last_test[1]}}
           if result.last_test is not None else {}),
        "test_pred": result.test_pred.tolist(),
        "confusion_test": metrics.confusion_matrix(np.asarray(test_labels),
                                                   result.test_pred).tolist(),
        "confusion_train": None,
        # A diverged member's logits can overflow: non-finite probabilities -> None.
        "test_probs_first25": [[metrics.finite_or_none(v) for v in row]
                               for row in result.test_probs],
        "weight_hist": histograms(result.weights),
        "grad_hist": histograms(result.grads),
        "param_count": result.param_count,
    }


def group_record(stats: GroupStats) -> dict[str, Any]:
    """A group's ``results.json`` ``groups`` entry (without ``group`` and ``members``)."""
    return dataclasses.asdict(stats)
