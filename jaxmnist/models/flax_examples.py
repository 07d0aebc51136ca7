"""The S0/S1 CNN written in Flax, twice (linen and NNX): copy this file to bring your own model.

Use it in a study as::

    base.model = {"name": "jaxmnist.models.flax_examples:linen_cnn"}            # Flax linen
    base.model = {"name": "jaxmnist.models.flax_examples:NnxCNN", "dropout": [0.25, 0.5]}

or, for your copy, ``{"name": "path/to/my_nets.py:linen_cnn"}``. Both are the zoo's
``{"name": "cnn"}``: ``conv 3x3/32 valid -> ReLU -> max-pool 2 -> conv 3x3/64 valid -> ReLU ->
max-pool 2 -> [dropout] -> flatten (NHWC) -> dense 128 -> ReLU -> [dropout] -> dense 10``, Keras'
glorot-uniform kernels and zero biases, 225,034 parameters. With the same weights they give the
zoo's logits (``tests/test_models.py``); the zoo's leaf ``conv1/w`` is Flax's ``conv1/kernel``
and ``b`` is ``bias``.

The model contract (see ``jaxmnist.models.adapters``): images arrive as float32 in [0, 1],
shape ``[B, 28, 28, 1]``; return logits ``[B, 10]``; dropout uses the ``"dropout"`` RNG.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
from flax import nnx

from jaxmnist.models import register


def _rates(dropout: float | Sequence[float]) -> tuple[float, float]:
    """One rate for both places, or ``[after the 2nd pool, after dense 128]`` (S1)."""
    if isinstance(dropout, int | float):
        return float(dropout), float(dropout)
    first, second = dropout
    return float(first), float(second)


class LinenCNN(nn.Module):
    """S0's CNN in Flax linen (``dropout=(0.25, 0.5)`` is S1's)."""

    dropout: tuple[float, float] = (0.0, 0.0)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits ``[B, 10]`` of float images ``[B, 28, 28, 1]``; dropout only when ``train``."""
        glorot = nn.initializers.glorot_uniform()
        x = nn.relu(nn.Conv(32, (3, 3), padding="VALID", kernel_init=glorot, name="conv1")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(64, (3, 3), padding="VALID", kernel_init=glorot, name="conv2")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.Dropout(self.dropout[0], deterministic=not train)(x)
        x = x.reshape(x.shape[0], -1)  # NHWC flatten: Keras' channels_last order
        x = nn.relu(nn.Dense(128, kernel_init=glorot, name="dense1")(x))
        x = nn.Dropout(self.dropout[1], deterministic=not train)(x)
        return nn.Dense(10, kernel_init=glorot, name="dense2")(x)


@register("flax_cnn")
def linen_cnn(dropout: float | Sequence[float] = 0.0) -> LinenCNN:
    """Factory for the linen CNN (also registered as ``"flax_cnn"``)."""
    return LinenCNN(dropout=_rates(dropout))


class NnxCNN(nnx.Module):
    """S0's CNN in Flax NNX; ``rngs`` is passed by jaxmnist (one stream per member)."""

    def __init__(self, dropout: float | Sequence[float] = 0.0, *, rngs: nnx.Rngs):
        glorot = nnx.initializers.glorot_uniform()
        first, second = _rates(dropout)
        self.conv1 = nnx.Conv(1, 32, (3, 3), padding="VALID", kernel_init=glorot, rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, (3, 3), padding="VALID", kernel_init=glorot, rngs=rngs)
        self.dense1 = nnx.Linear(5 * 5 * 64, 128, kernel_init=glorot, rngs=rngs)
        self.dense2 = nnx.Linear(128, 10, kernel_init=glorot, rngs=rngs)
        self.drop1 = nnx.Dropout(first, rngs=rngs)
        self.drop2 = nnx.Dropout(second, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits ``[B, 10]``; dropout follows ``model.train()`` / ``model.eval()``."""
        x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), strides=(2, 2))
        x = nnx.max_pool(nnx.relu(self.conv2(x)), (2, 2), strides=(2, 2))
        x = self.drop1(x).reshape(x.shape[0], -1)
        x = self.drop2(nnx.relu(self.dense1(x)))
        return self.dense2(x)
