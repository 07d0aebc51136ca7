"""A small grid and dataset for the multi-process tests (tests/test_distributed.py).

Real MNIST when ``JAXMNIST_DATA_DIR`` is set, otherwise jaxmnist's synthetic digits, so the tests
run (and compare runs with each other) on any machine.
"""

from __future__ import annotations

import functools
import os

from jaxmnist import data

MLP = {"name": "mlp", "hidden": [32], "dropout": 0.2}
# Optimizers x learning rates, cycled: SGD and the adaptive ones, each at a high and a low rate.
POINTS = (("sgd", 0.1), ("adam", 0.01), ("rmsprop", 0.001), ("sgd", 0.01), ("adam", 0.001),
          ("rmsprop", 0.01), ("momentum", 0.05))


def members(n: int, epochs: int = 2, strategy: str = "auto", model: dict | None = None
            ) -> list[dict]:
    """``n`` members of one group (one small MLP, or ``model``; optimizer, learning rate and
    seed vary)."""
    return [
        {
            "model": dict(model or MLP),
            "optim": {"name": POINTS[k % len(POINTS)][0],
                      "learning_rate": POINTS[k % len(POINTS)][1]},
            "reg": {"l1": 0.0, "l2": 0.0},
            "loss": "xent",
            "train": {"epochs": epochs, "batch_size": 32, "strategy": strategy},
            "seed": k // len(POINTS),
        }
        for k in range(n)
    ]


@functools.cache
def splits(n_train: int = 320, n_val: int = 100, n_test: int = 200) -> data.Splits:
    """The first images of MNIST, or of jaxmnist's synthetic digits without it."""
    if os.environ.get("JAXMNIST_DATA_DIR"):
        train_x, train_y = data.load_dataset("train", source="idx")
        test_x, test_y = data.load_dataset("test", source="idx")
    else:  # jaxmnist's synthetic digits: no files needed
        from jaxmnist.data import synthetic

        train_x, train_y = synthetic.make(n_train + n_val, "train")
        test_x, test_y = synthetic.make(n_test, "test")
    return data.Splits(
        train_x[:n_train], train_y[:n_train],
        train_x[n_train:n_train + n_val], train_y[n_train:n_train + n_val],
        test_x[:n_test], test_y[:n_test],
    )
