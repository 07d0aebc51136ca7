"""Per-class metrics from a confusion matrix, and seed statistics (no jax, no sklearn).

Precision, recall (S2's "per-class accuracy") and F1 as scikit-learn's
``precision_recall_fscore_support`` with ``zero_division=0`` (tests/test_report.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def finite_or_none(value: float) -> float | None:
    """``float(value)``, or None when it is not finite (strict JSON has no NaN or infinity)."""
    return float(value) if math.isfinite(value) else None


def confusion_matrix(labels: Sequence[int], preds: Sequence[int], n: int = 10) -> np.ndarray:
    """Counts ``[true, predicted]`` pairs (rows: true class, columns: predicted class)."""
    flat = np.asarray(labels, np.int64) * n + np.asarray(preds, np.int64)
    return np.bincount(flat, minlength=n * n).reshape(n, n)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_class(confusion: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
    """Per-class rows: digit, actual, predicted, correct, precision, recall, f1."""
    cm = np.asarray(confusion, np.int64)
    actual, predicted, correct = cm.sum(1), cm.sum(0), np.diag(cm)
    precision = _safe_div(correct, predicted)
    recall = _safe_div(correct, actual)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return [{"digit": c, "actual": int(actual[c]), "predicted": int(predicted[c]),
             "correct": int(correct[c]), "precision": float(precision[c]),
             "recall": float(recall[c]), "f1": float(f1[c])} for c in range(cm.shape[0])]


def summary(confusion: Sequence[Sequence[int]]) -> dict[str, float]:
    """Accuracy and macro / support-weighted precision, recall and F1."""
    rows = per_class(confusion)
    cm = np.asarray(confusion, np.int64)
    total = cm.sum()
    weights = np.array([r["actual"] for r in rows], np.float64)
    out = {"accuracy": float(np.trace(cm) / total) if total else 0.0}
    for key in ("precision", "recall", "f1"):
        vals = np.array([r[key] for r in rows])
        out[f"macro_{key}"] = float(vals.mean())
        out[f"weighted_{key}"] = float((vals * weights).sum() / weights.sum()) if total else 0.0
    return out


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count of finite values."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan, 0
    arr = np.asarray(vals)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return float(arr.mean()), std, len(arr)


def fmt_mean_std(values: Iterable[float | None], digits: int = 4, scale: float = 1.0) -> str:
    """``"0.9871 ± 0.0012"`` (or just the mean for one value, ``"n/a"`` for none)."""
    mean, std, n = mean_std(values)
    if n == 0:
        return "n/a"
    if n == 1:
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"
