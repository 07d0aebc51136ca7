"""Which point ranks first: the one rule that pruning, the report, the API and the web demo share.

Plain Python, no jax: a validation metric (over a point's seeds, their mean), ties by validation
loss, then index; a missing or non-finite metric (a diverged seed) ranks after every finite one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

RANKING_METRICS: dict[str, bool] = {"val_acc": True, "val_loss": False}
"""The metrics a ranking may use, each with whether higher is better."""

Values = float | None | Sequence[float | None]


def seed_mean(values: Values) -> float:
    """A point's value: the mean over its seeds; NaN when any seed's value is missing or NaN."""
    if values is None or isinstance(values, (int, float)):
        values = [values]
    if not values or any(v is None or not math.isfinite(float(v)) for v in values):
        return math.nan
    return math.fsum(float(v) for v in values) / len(values)


def check_metric(metric: str) -> str:
    """``metric`` if points can be ranked by it, else ValueError naming the choices."""
    if metric not in RANKING_METRICS:
        raise ValueError(f"cannot rank by {metric!r}: choose one of {sorted(RANKING_METRICS)}")
    return metric


def rank(metric_values: Sequence[Values], val_losses: Sequence[Values] | None = None, *,
         metric: str = "val_acc") -> list[int]:
    """Every index of the points once, best first (non-finite values last, in index order).

    Args:
        metric_values: Per point, its ``metric`` value or per-seed values (ranked by their mean).
        val_losses: Per point, its validation loss(es): the tie-break, lower first (None: none).
        metric: A key of :data:`RANKING_METRICS`.
    """
    sign = -1.0 if RANKING_METRICS[check_metric(metric)] else 1.0
    if val_losses is not None and len(val_losses) != len(metric_values):
        raise ValueError(f"{len(metric_values)} metric values but {len(val_losses)} losses")

    def key(i: int) -> tuple[float, float, float, int]:
        value = seed_mean(metric_values[i])
        loss = seed_mean(val_losses[i]) if val_losses is not None else math.nan
        finite = math.isfinite(value)
        return (0.0 if finite else 1.0, sign * value if finite else 0.0,
                loss if math.isfinite(loss) else math.inf, i)

    return sorted(range(len(metric_values)), key=key)


def rung(points: Sequence[str], families: Sequence[str], values: Sequence[float],
         losses: Sequence[float], active: Sequence[bool], *, eta: float,
         metric: str = "val_acc") -> dict[int, tuple[int, int, bool]]:
    """One successive-halving rung: ``{member: (rank, of, survives)}`` for each active point.

    Members sharing ``points[k]`` (they differ only by seed) are one point, ranked by its seed
    mean (:func:`rank`) among the points of its family; the top ``ceil(n / eta)`` (at least one)
    survive, whole. A point takes part while any of its members is ``active``; an inactive
    member's value should be NaN (a diverged seed ranks its point last).
    """
    by_point: dict[tuple[str, str], list[int]] = {}
    for k, (point, family) in enumerate(zip(points, families, strict=True)):
        by_point.setdefault((family, point), []).append(k)
    out: dict[int, tuple[int, int, bool]] = {}
    for family in dict.fromkeys(f for f, _ in by_point):
        entries = [ks for (f, _), ks in by_point.items()
                   if f == family and any(active[k] for k in ks)]
        order = rank([[values[k] for k in ks] for ks in entries],
                     [[losses[k] for k in ks] for ks in entries], metric=metric)
        keep = max(1, math.ceil(len(entries) / eta))
        for place, i in enumerate(order):
            out.update({k: (place + 1, len(entries), place < keep) for k in entries[i]})
    return out
