"""jaxmnist: MNIST studies re-run in JAX, and your own Flax models trained as one grid.

The Python API (:mod:`jaxmnist.api`; nothing here imports jax until a run trains)::

    run = jm.grid(model="cnn", optimizers={"adam": [1e-3, 3e-4], "sgd": [0.1]}, seeds=2,
                  epochs=3, workdir="runs/mine")
    run.points(); run.compare(); run.best().predict(images)
    run = jm.run(jm.load_study("s2", preset="cpu"), workdir="runs/s2")
"""

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


def __getattr__(name: str) -> Any:
    """``jm.Member`` / ``jm.Study``: the typed configs (their module imports jax: on first use)."""
    if name in ("Member", "Study"):
        from jaxmnist import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'jaxmnist' has no attribute {name!r}")


def register(name: str):
    """Decorator: makes a model factory available as ``model.name = name`` (see models)."""
    from jaxmnist.models import register as _register

    return _register(name)
