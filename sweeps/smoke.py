"""Smoke study: a tiny end-to-end run of the whole pipeline (tests, CI, first contact).

Command::

    python -m jaxmnist.sweep sweeps/smoke.py --workdir /tmp/smoke

Reproduces nothing published: two MLPs (784-32-10, 784-16-10) x {sgd, adam} x lr {0.1, 0.01}
x 2 seeds = 16 members in 2 groups, on 2,000 training / 500 validation / 1,000 test images for
2 epochs. It exercises data splits, the vmapped grid, checkpoints, resume, results and report.

Expected (CPU, 2 cores): test accuracy 0.80-0.92 per member; runtime to be measured.
"""

import ml_collections

from jaxmnist.config import nested


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.study = "smoke"
    c.title = "Smoke test: 2 MLPs x {sgd, adam} x lr {0.1, 0.01}, 2k images, 2 epochs"
    c.data = dict(split="holdout", val_size=500, seed=0, train_limit=2000, test_limit=1000)
    c.base = dict(
        model=dict(name="mlp", hidden=[32], activation="relu", init="he_normal"),
        optim=dict(name="sgd", learning_rate=0.1),
        train=dict(epochs=2, batch_size=64),
    )
    c.grid = nested({
        "model.hidden": [[32], [16]],
        "optim.name": ["sgd", "adam"],
        "optim.learning_rate": [0.1, 0.01],
    })
    c.seeds = 2
    return c
