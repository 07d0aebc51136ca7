"""Small grids shared by tests/test_train.py and tests/train_worker.py (MNIST or synthetic)."""

from __future__ import annotations

import copy
import functools

import datasource
import numpy as np

from jaxmnist import data, models
from jaxmnist.data import synthetic

GRID_OPTIMIZERS = ("adam", "rmsprop", "sgd")
GRID_LEARNING_RATES = (0.1, 0.01, 0.001, 0.0001)
# The learning rates of the tolerance tests (a grid member against its solo run, 4 devices
# against 1): S2's without 0.1. Those tests compare two trajectories that start equal and differ
# by float32 rounding, so every member must be on a trajectory that does not amplify rounding.
# At 0.1 the S2 members are not: Adam and RMSprop collapse (every test image called one class,
# S2's degenerate models, status "collapsed"), and SGD trains at its edge of stability, where a
# last-bit difference grows ~1e4-fold in 20 steps (synthetic digits, 2026-12-01: vmap SGD 0.1
# ends 3.3e-3 from its solo run, SGD 0.01 1.5e-8). No bound below the weights' own scale holds
# on such a trajectory, and one that does would say nothing about the engine. At 0.01 and below
# every member trains (status "ok", which the tests assert as the premise of their bounds).
STABLE_LEARNING_RATES = (0.01, 0.001, 0.0001)
# A small MLP with dropout: the engine's mechanics (keys, resume, isolation, devices) at a
# fraction of the CNN's CPU time. The CNN (S1's shape) is kept for the oracle test.
SMALL_MLP = {"name": "mlp", "hidden": [64], "dropout": 0.2}


def base_member(**overrides) -> dict:
    """A small CNN member (S1's dropout CNN shape on a slice of MNIST)."""
    member = {
        "model": {"name": "cnn", "dropout": [0.25, 0.5]},
        "optim": {"name": "adam", "learning_rate": 1e-3},
        "reg": {"l1": 0.0, "l2": 0.0},
        "loss": "xent",
        "train": {"epochs": 1, "batch_size": 32},
        "seed": 0,
    }
    if "model" in overrides:
        member["model"] = copy.deepcopy(overrides.pop("model"))
    for key, value in overrides.items():
        node = member
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return member


def grid_members(epochs: int = 1, seed: int = 0, learning_rates=GRID_LEARNING_RATES,
                 **overrides) -> list[dict]:
    """S2's 3 optimizers x 4 learning rates (or ``learning_rates``) as member configs."""
    out = []
    for name in GRID_OPTIMIZERS:
        for lr in learning_rates:
            out.append(
                base_member(**{"optim.name": name, "optim.learning_rate": lr,
                               "train.epochs": epochs, "seed": seed, **overrides})
            )
    return copy.deepcopy(out)


@functools.lru_cache(maxsize=4)
def small_splits(n_train: int = 640, n_val: int = 500, n_test: int = 500) -> data.Splits:
    """640 train (20 steps of 32), 500 val (the last training images), 500 test images.

    Validation and test of one size: the engine evaluates both with one compiled program.

    Real MNIST when ``$JAXMNIST_DATA_DIR`` is set, else the synthetic digits (tests/datasource.py).
    """
    if datasource.SOURCE == "synthetic":
        train_x, train_y = synthetic.make(n_train)
        last = np.arange(synthetic.SIZES["train"] - n_val, synthetic.SIZES["train"])
        val_x, val_y = synthetic.images("train", last), synthetic.labels("train", last)
        test_x, test_y = synthetic.make(n_test, "test")
        return data.Splits(train_x, train_y, val_x, val_y, test_x, test_y)
    train_x, train_y = datasource.load("train")
    test_x, test_y = datasource.load("test")
    return data.Splits(
        train_x[:n_train], train_y[:n_train],
        train_x[-n_val:], train_y[-n_val:],
        test_x[:n_test], test_y[:n_test],
    )


def as_float64(tree):
    """Nested dict of arrays -> nested dict of float64 NumPy arrays."""
    return {k: as_float64(v) if isinstance(v, dict) else np.asarray(v, np.float64)
            for k, v in tree.items()}



def flat_params(tree) -> dict:
    """Nested dict of arrays -> ``{"layer/leaf": ndarray}`` (for comparisons and saving)."""
    return {path: np.asarray(leaf) for path, leaf in models.layer_paths(tree).items()}
