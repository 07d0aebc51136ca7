"""Which digits the tests train on: real MNIST when ``$JAXMNIST_DATA_DIR`` is set, else synthetic.

Engine, sweep, resume, report and web-demo tests check mechanics and contracts, which hold on
either set; on a fresh clone without MNIST they run on ``jaxmnist.data.synthetic`` instead of
skipping. Only tests of published numbers or of MNIST's own files need the real thing (the
``mnist_dir`` fixture in conftest.py).
"""

from __future__ import annotations

import os

import numpy as np

from jaxmnist import data
from jaxmnist.data import synthetic

MNIST_DIR = os.environ.get("JAXMNIST_DATA_DIR") or None
SOURCE = "idx" if MNIST_DIR else "synthetic"
# What a `python -m jaxmnist.sweep` command in a test adds to train on the same data.
SWEEP_ARGS: tuple[str, ...] = () if MNIST_DIR else ("--config.data.source=synthetic",)


def load(split: str, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` (default all) images and labels of ``split`` from :data:`SOURCE`."""
    if SOURCE == "synthetic" and n is not None:
        return synthetic.make(n, split)
    x, y = data.load_dataset(split, source=SOURCE, data_dir=MNIST_DIR)
    return (x, y) if n is None else (x[:n], y[:n])
