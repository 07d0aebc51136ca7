"""Flax models: the S0/S1 CNN (linen, NNX), Flax's own mnist CNN and imagenet ResNet-18.

Copy this file to bring your own model (docs/byo.md); the last two are what the studies of Flax's
examples train. With the same weights the S0 CNNs give the zoo's ``{"name": "cnn"}`` logits
(``conv1/w`` is ``conv1/kernel`` here); their ``nn.Conv`` / ``nnx.Conv`` run jaxmnist's kernels
unless ``conv_impl="flax"`` (far slower on XLA:CPU inside the engine's ``lax.scan``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from jaxmnist.models import layers, register
from jaxmnist.models.common import check_choice


def _rates(dropout: float | Sequence[float]) -> tuple[float, float]:
    """One rate for both places, or ``[after the 2nd pool, after dense 128]`` (S1)."""
    first, second = (dropout, dropout) if isinstance(dropout, int | float) else dropout
    return float(first), float(second)


def _conv(impl: str) -> Callable[..., jax.Array]:
    """A ``conv_general_dilated`` for ``nn.Conv`` / ``nnx.Conv``: ``layers.conv2d`` (stride 1)."""
    check_choice(impl, layers.CONV_IMPLS, "conv_impl")  # "auto" is resolved when traced

    def conv(x: jax.Array, kernel: jax.Array, strides: Any, padding: str, **_: Any) -> jax.Array:
        return layers.conv2d(x, kernel, padding=padding.lower(), impl=impl)

    return conv


class LinenCNN(nn.Module):
    """S0's CNN in Flax linen (``dropout=(0.25, 0.5)`` is S1's)."""

    dropout: tuple[float, float] = (0.0, 0.0)
    conv_impl: str = "auto"

    def _block(self, x: jax.Array, features: int, name: str) -> jax.Array:
        """Conv 3x3 valid -> ReLU -> max-pool 2."""
        flax_layers = self.conv_impl == "flax"
        kernels = None if flax_layers else _conv(self.conv_impl)  # None: lax's conv
        conv = nn.Conv(features, (3, 3), padding="VALID", name=name, conv_general_dilated=kernels,
                       kernel_init=nn.initializers.glorot_uniform())
        y = nn.relu(conv(x))
        return nn.max_pool(y, (2, 2), strides=(2, 2)) if flax_layers else layers.max_pool2(y)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits ``[B, 10]`` of float images ``[B, 28, 28, 1]``; dropout only when ``train``."""
        glorot = nn.initializers.glorot_uniform()
        x = self._block(self._block(x, 32, "conv1"), 64, "conv2")
        x = nn.Dropout(self.dropout[0], deterministic=not train)(x)
        x = x.reshape(x.shape[0], -1)  # NHWC flatten: Keras' channels_last order
        x = nn.relu(nn.Dense(128, kernel_init=glorot, name="dense1")(x))
        x = nn.Dropout(self.dropout[1], deterministic=not train)(x)
        return nn.Dense(10, kernel_init=glorot, name="dense2")(x)


@register("flax_cnn")
def linen_cnn(dropout: float | Sequence[float] = 0.0, conv_impl: str = "auto") -> LinenCNN:
    """Factory for the linen CNN (also registered as ``"flax_cnn"``)."""
    if conv_impl != "flax":
        check_choice(conv_impl, layers.CONV_IMPLS, "conv_impl")  # resolved when traced
    return LinenCNN(dropout=_rates(dropout), conv_impl=conv_impl)


class NnxCNN(nnx.Module):
    """S0's CNN in Flax NNX; ``rngs`` is passed by jaxmnist (one stream per member)."""

    def __init__(self, dropout: float | Sequence[float] = 0.0, conv_impl: str = "auto", *,
                 rngs: nnx.Rngs):
        glorot = nnx.initializers.glorot_uniform()
        first, second = _rates(dropout)
        self.flax_layers = conv_impl == "flax"
        conv = functools.partial(
            nnx.Conv, kernel_size=(3, 3), padding="VALID", kernel_init=glorot, rngs=rngs,
            conv_general_dilated=lax.conv_general_dilated if self.flax_layers else _conv(conv_impl))
        self.conv1, self.conv2 = conv(1, 32), conv(32, 64)
        self.dense1 = nnx.Linear(5 * 5 * 64, 128, kernel_init=glorot, rngs=rngs)
        self.dense2 = nnx.Linear(128, 10, kernel_init=glorot, rngs=rngs)
        self.drop1 = nnx.Dropout(first, rngs=rngs)
        self.drop2 = nnx.Dropout(second, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits ``[B, 10]``; dropout follows ``model.train()`` / ``model.eval()``."""
        for conv in (self.conv1, self.conv2):
            x = nnx.relu(conv(x))
            x = (nnx.max_pool(x, (2, 2), strides=(2, 2)) if self.flax_layers
                 else layers.max_pool2(x))
        x = self.drop1(x).reshape(x.shape[0], -1)
        x = self.drop2(nnx.relu(self.dense1(x)))
        return self.dense2(x)


@register("flax_mnist_cnn")
class FlaxMnistCNN(nnx.Module):
    """The network of Flax's ``examples/mnist`` (NNX), for the ``flax_mnist`` study.

    Written here so the study runs from an installed package (docs/byo.md); called the example's
    way, ``model(x, rngs)``.
    """

    def __init__(self, dropout: float = 0.025, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.norm1 = nnx.BatchNorm(32, rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.norm2 = nnx.BatchNorm(64, rngs=rngs)
        self.hidden = nnx.Linear(7 * 7 * 64, 256, rngs=rngs)
        self.out = nnx.Linear(256, 10, rngs=rngs)
        self.drop_conv = nnx.Dropout(rate=dropout)
        self.drop_hidden = nnx.Dropout(rate=dropout)

    def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
        """Logits ``[B, 10]`` of float images ``[B, 28, 28, 1]``."""
        pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        x = pool(nnx.relu(self.norm1(self.drop_conv(self.conv1(x), rngs=rngs))))
        x = pool(nnx.relu(self.norm2(self.conv2(x))))
        x = x.reshape(x.shape[0], -1)
        x = nnx.relu(self.drop_hidden(self.hidden(x), rngs=rngs))
        return self.out(x)


class _ResidualBlock(nn.Module):
    """Two 3x3 conv-BatchNorm layers and a shortcut (projected when the shape changes)."""

    filters: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = functools.partial(nn.Conv, use_bias=False)  # BatchNorm follows every conv
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                                 epsilon=1e-5, axis_name="batch")
        s = (self.strides, self.strides)
        y = nn.relu(norm(name="BatchNorm_0")(conv(self.filters, (3, 3), s, name="Conv_0")(x)))
        # The second norm starts at scale 0: each block begins as the identity (Goyal et al.).
        y = norm(scale_init=nn.initializers.zeros_init(), name="BatchNorm_1")(
            conv(self.filters, (3, 3), name="Conv_1")(y))
        if x.shape != y.shape:
            x = norm(name="norm_proj")(conv(self.filters, (1, 1), s, name="conv_proj")(x))
        return nn.relu(x + y)


@register("flax_resnet18")
class FlaxResNet18(nn.Module):
    """ResNet-18 (v1.5) as Flax's ``examples/imagenet/models.py`` builds it (``resnet`` study).

    Written here so the study runs from an installed package; a test checks it against the
    example's own file. On 28x28 digits the four stages see 7, 4, 2 and 1 pixels square.
    """

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        """Logits ``[B, num_classes]`` of float images ``[B, H, W, C]``."""
        x = nn.Conv(64, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], use_bias=False,
                    name="conv_init")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         axis_name="batch", name="bn_init")(x)
        x = nn.max_pool(nn.relu(x), (3, 3), strides=(2, 2), padding="SAME")
        for stage in range(4):
            for block in range(2):
                x = _ResidualBlock(64 * 2**stage, 2 if stage and not block else 1,
                                   name=f"ResNetBlock_{2 * stage + block}")(x, train)
        return nn.Dense(self.num_classes, name="Dense_0")(jnp.mean(x, axis=(1, 2)))
