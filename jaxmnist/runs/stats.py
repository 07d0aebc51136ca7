"""Statistics over seeds: IQM, bootstrap intervals, paired comparisons, profiles, time to target.

No jax; scipy.stats in rliable's definitions, seeds paired (docs/statistics.md: why not rliable,
what each column means).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from jaxmnist.runs.runview import Point, RunView, rank_points

MIN_SEEDS = 5  # fewer seeds have too few distinct bootstrap resamples for an interval to mean much
CONFIDENCE = 0.95
RESAMPLES = 10_000
SEED = 0  # the bootstrap's own seed: the same numbers always get the same intervals
COMPARE_COLUMNS = ["x", "y", "n", "p_improve", "p_ci_low", "p_ci_high", "diff", "diff_ci_low",
                   "diff_ci_high", "verdict"]


def finite(values: Iterable[float | None]) -> np.ndarray:
    """The finite values (a missing or diverged seed's ``None`` / NaN dropped) as float64."""
    return np.array([float(v) for v in values if v is not None and math.isfinite(float(v))])


def iqm(values: ArrayLike) -> float:
    """Interquartile mean as rliable defines it: the mean after cutting 25% from each end."""
    x = np.asarray(values, float)
    return float(stats.trim_mean(x, 0.25)) if x.size else math.nan


def interval(statistic: Callable[..., Any], *samples: ArrayLike) -> tuple[float, float]:
    """95% percentile bootstrap interval of ``statistic(*samples, axis)``, seeds paired.

    NaNs below :data:`MIN_SEEDS` values (docs/statistics.md).
    """
    arrays = [np.asarray(s, float) for s in samples]
    if len(arrays[0]) < MIN_SEEDS:
        return math.nan, math.nan
    ci = stats.bootstrap(arrays, statistic, paired=True,
                         confidence_level=CONFIDENCE, n_resamples=RESAMPLES,
                         method="percentile", rng=np.random.default_rng(SEED)).confidence_interval
    return float(ci.low), float(ci.high)


def _few(n: int) -> str:
    return f"{n} seeds < {MIN_SEEDS}: no interval" if n < MIN_SEEDS else ""


def describe(values: Sequence[float | None]) -> dict[str, Any]:
    """A point's seeds: ``mean``, ``iqm``, the mean's interval, raw ``values``, ``note``."""
    x = finite(values)
    low, high = interval(np.mean, x)
    return {"mean": float(x.mean()) if len(x) else math.nan, "iqm": iqm(x), "ci_low": low,
            "ci_high": high, "values": list(values), "note": _few(len(x))}


def _improve(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean((x > y) + 0.5 * (x == y), axis=axis)  # a tie counts half, as in rliable


def _diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def paired(x: ArrayLike, y: ArrayLike, names: tuple[str, str] = ("X", "Y")) -> dict[str, Any]:
    """X against Y, ``x[i]`` and ``y[i]`` from the same seed: P(X > Y) and x - y with intervals."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    n = len(a)
    row: dict[str, Any] = {"n": n, "p_improve": float(_improve(a, b)) if n else math.nan,
                           "diff": float(_diff(a, b)) if n else math.nan}
    row["p_ci_low"], row["p_ci_high"] = interval(_improve, a, b)
    low, high = row["diff_ci_low"], row["diff_ci_high"] = interval(_diff, a, b)
    if low > 0 or high < 0:  # False for NaN: no interval, no claim
        better = names[0] if low > 0 else names[1]
        row["verdict"] = (f"{better} better by {abs(row['diff']):.4f} (95% CI of x - y "
                          f"{low:+.4f} to {high:+.4f})")
    else:
        few = _few(n)
        row["verdict"] = f"not distinguishable with {n} seeds" + (f" ({few})" if few else "")
    return row


def optimizer(point: Point) -> str:
    """The point's optimizer family (``optim.name``)."""
    return str((point.config.get("optim") or {}).get("name", "?"))


FINAL = "final"  # the tuning protocol's phase 2: chosen settings on fresh seeds


def is_final(point: Point) -> bool:
    """Whether the point is a tuning protocol's phase 2 (a point is one set of experiments)."""
    return {e["name"] for e in point.experiments} == {FINAL}


def chosen(run: RunView, *, tuning: bool = False) -> dict[str, Point]:
    """Per optimizer family, its point ranked first on validation; best family first.

    After a protocol's phase 2: its points (fresh seeds); ``tuning``: the choice phase 2 re-ran.
    """
    if not tuning and any(e["name"] == FINAL for e in run.experiments()):
        return {optimizer(p): p for p in rank_points([p for _, p in run.points_of(FINAL)])}
    families: dict[str, list[Point]] = {}
    for p in (p for p in run.points if not is_final(p)):
        families.setdefault(optimizer(p), []).append(p)
    return {optimizer(p): p for p in rank_points([rank_points(ps)[0] for ps in families.values()])}


def _by_seed(point: Point) -> dict[int, float]:
    return {m["config"]["seed"]: float(v) for m, v in zip(point.members, point.test_acc(),
                                                         strict=True)
            if v is not None and math.isfinite(float(v))}


def compare(run: RunView) -> pd.DataFrame:
    """Test accuracy of every pair of optimizers at their chosen settings, paired over seeds."""
    rows = []
    for p, q in itertools.combinations(chosen(run).values(), 2):
        x, y = _by_seed(p), _by_seed(q)
        seeds = sorted(set(x) & set(y))
        rows.append({"x": p.label, "y": q.label, **paired(
            [x[s] for s in seeds], [y[s] for s in seeds], (p.label, q.label))})
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def profile(scores: Mapping[str, Sequence[float | None]], taus: ArrayLike) -> pd.DataFrame:
    """Per name, the fraction of its runs scoring above each ``tau`` (None / NaN: below all)."""
    t = np.asarray(taus, float)
    return pd.DataFrame({name: (finite(v)[:, None] > t).sum(0) / max(len(v), 1)
                         for name, v in scores.items()}, index=pd.Index(t, name="tau"))


def performance_profile(run: RunView, taus: ArrayLike | None = None) -> pd.DataFrame:
    """Per optimizer, the fraction of its runs (settings x seeds) with test accuracy > tau."""
    scores: dict[str, list[float | None]] = {}
    for p in run.points:
        scores.setdefault(optimizer(p), []).extend(p.test_acc())
    return profile(scores, np.linspace(0, 1, 101) if taus is None else taus)


def time_to_target(run: RunView, target: float) -> pd.DataFrame:
    """Per member: the first epoch with val accuracy >= ``target``, seconds to it; NaN: never."""
    rows = []
    for p in run.points:
        for m in p.members:
            hist = m.get("history") or []
            k = next((i for i, h in enumerate(hist)
                      if h.get("val_acc") is not None and h["val_acc"] >= target), None)
            rows.append({"member": m["member"], "point": p.label, "optimizer": optimizer(p),
                         "seed": m["config"]["seed"],
                         "epochs": math.nan if k is None else hist[k]["epoch"],
                         "seconds": math.nan if k is None else math.fsum(
                             h.get("seconds", math.nan) for h in hist[:k + 1])})
    return pd.DataFrame(rows, columns=["member", "point", "optimizer", "seed", "epochs",
                                       "seconds"]).set_index("member")


def time_to_target_by_optimizer(run: RunView, target: float) -> pd.DataFrame:
    """Per optimizer at its chosen setting: seeds ``reached`` of ``n``, median epochs, seconds."""
    members = time_to_target(run, target)
    rows = []
    for name, p in chosen(run).items():
        sel = members[members["point"] == p.label]
        rows.append({"optimizer": name, "point": p.label,
                     "reached": int(sel["epochs"].notna().sum()), "n": len(sel),
                     **{k: float(np.median(sel[k].fillna(math.inf)))
                        for k in ("epochs", "seconds")}})
    return pd.DataFrame(rows).set_index("optimizer")


def tuning_cost(run: RunView) -> pd.DataFrame:
    """Per optimizer: members tuned, member-epochs trained against the full grid's, seconds.

    Seconds: each group's training time shared by the epochs each member trained.
    """
    members = [(p, m) for p in run.points if not is_final(p) for m in p.members]
    def trained(m: dict[str, Any]) -> float:
        done = m.get("epochs_trained")
        return float(m["config"]["train"]["epochs"] if done is None else done)

    group_epochs: dict[int, float] = {}
    for p in run.points:
        for m in p.members:
            group_epochs[m.get("group", 0)] = group_epochs.get(m.get("group", 0), 0) + trained(m)
    seconds = {g["group"]: g.get("train_seconds") or 0.0 for g in run.results.get("groups", [])}
    rows: dict[str, dict[str, float]] = {}
    for p, m in members:
        row = rows.setdefault(optimizer(p), {"members": 0, "member_epochs": 0.0,
                                             "full_grid": 0.0, "seconds": 0.0})
        g = m.get("group", 0)
        row["members"] += 1
        row["member_epochs"] += trained(m)
        row["full_grid"] += m["config"]["train"]["epochs"]
        row["seconds"] += seconds.get(g, 0.0) * trained(m) / max(group_epochs[g], 1e-9)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "optimizer"
    if not frame.empty:
        frame["share"] = frame["member_epochs"] / frame["full_grid"]
    return frame
