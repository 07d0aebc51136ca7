"""jaxmnist: MNIST studies re-run in JAX, and your own Flax models trained as one grid.

The Python API (:mod:`jaxmnist.api`; nothing here imports jax until a run trains)::

    run = jm.grid(model="cnn", optimizers={"adam": [1e-3, 3e-4], "sgd": [0.1]}, seeds=2,
                  epochs=3, workdir="runs/mine")
    run.points(); run.compare(); run.best().predict(images)
    run = jm.run(jm.load_study("s2", preset="cpu"), workdir="runs/s2")
"""

import importlib
from typing import Any

from jaxmnist.api import (
    APIError,
    Run,
    TrainedMember,
    compare,
    grid,
    load_study,
    open_run,
    run,
)

__version__ = "0.1.0"

__all__ = ["APIError", "Member", "Run", "Study", "TrainedMember", "compare", "grid",
           "load_study", "open_run", "register", "run"]


_LAZY = {"Member": "jaxmnist.schema", "Study": "jaxmnist.schema", "register": "jaxmnist.models"}


def __getattr__(name: str) -> Any:
    """``jm.Member``, ``jm.Study`` (typed configs) and ``jm.register``: imported on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jaxmnist' has no attribute {name!r}")
