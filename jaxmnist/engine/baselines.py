"""S3's scikit-learn baseline: ``MLPClassifier`` set as the members (docs/studies.md). No jax."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

EXPERIMENT = "depth_width"  # the S3 experiment whose points get a baseline


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32).reshape(len(x), -1) / np.float32(255.0)


def fit_one(hidden: Sequence[int], splits: Any, *, learning_rate: float, batch_size: int,
            epochs: int, seed: int) -> dict[str, Any]:
    """Fits one ``MLPClassifier`` and returns its test accuracy, log-loss and loss curve."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import log_loss
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=tuple(int(h) for h in hidden), activation="relu", solver="sgd",
        learning_rate="constant", learning_rate_init=learning_rate, momentum=0.0,
        nesterovs_momentum=False, alpha=0.0, batch_size=batch_size, max_iter=epochs,
        shuffle=True, random_state=seed, early_stopping=False, n_iter_no_change=epochs + 1,
        tol=0.0)
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    # Batch-32 matmuls are tiny: one BLAS thread avoids thread hand-off costs (2-4x faster here).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(_flat(splits.train_x), np.asarray(splits.train_y))
    seconds = time.perf_counter() - t0
    test_x, test_y = _flat(splits.test_x), np.asarray(splits.test_y)
    probs = clf.predict_proba(test_x)
    return {"test_acc": float(np.mean(probs.argmax(1) == test_y)),
            "test_loss": float(log_loss(test_y, probs, labels=list(range(10)))),
            "loss_curve": [float(v) for v in clf.loss_curve_], "seconds": seconds}


def run_sklearn(study: Mapping[str, Any], members: Sequence[Mapping[str, Any]], splits: Any,
                log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """A row per (point, seed) of the depth x width experiment; none without scikit-learn.

    Row: ``experiment``, ``label``, ``hidden``, ``seed``, :func:`fit_one`'s numbers, ``settings``.
    """
    try:
        import sklearn  # noqa: F401
    except ImportError:
        log("baseline: scikit-learn is not installed; skipping (pip install scikit-learn)")
        return []
    rows = []
    for member in members:
        exps = [e for e in member["experiments"] if e["name"] == EXPERIMENT]
        if not exps or member["config"]["model"]["name"] != "mlp":
            continue
        cfg = member["config"]
        settings = {"learning_rate": cfg["optim"]["learning_rate"],
                    "batch_size": cfg["train"]["batch_size"], "epochs": cfg["train"]["epochs"]}
        out = fit_one(cfg["model"]["hidden"], splits, seed=cfg["seed"], **settings)
        rows.append({"experiment": EXPERIMENT, "label": exps[0]["label"],
                     "hidden": list(cfg["model"]["hidden"]), "seed": cfg["seed"],
                     "member": member["member"], **out, "settings": settings})
        log(f"baseline sklearn {exps[0]['label']} seed {cfg['seed']}: "
            f"test acc {out['test_acc']:.4f} ({out['seconds']:.1f}s)")
    return rows
