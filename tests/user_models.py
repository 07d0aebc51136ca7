"""Model files written the way users write them, for tests to copy into a temp folder.

``FLAX_EXAMPLE_CNN`` is the CNN of Flax's own ``examples/mnist/train.py`` (NNX, BatchNorm,
Dropout, ``__call__(self, x, rngs)``) as a user copies it into a file, imports included;
``FLAX_NNX_TUTORIAL_CNN`` is the same network as Flax's NNX MNIST tutorial writes it
(``__init__(self, *, rngs)``, ``__call__(self, x, rngs: nnx.Rngs | None = None)``). The
others cover linen BatchNorm + dropout with a ``train`` flag, NNX streams held by the module,
and models that cannot work (each names the mistake it makes). ``FLAX_IMAGENET_MODELS`` is Flax's
own ``examples/imagenet/models.py`` (ResNets whose BatchNorm averages over the named axis
``batch``, a 3x3 stride-2 max-pool).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

FLAX_EXAMPLE_CNN = '''
from functools import partial

from flax import nnx


class CNN(nnx.Module):
  """A simple CNN model."""

  def __init__(self, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
    self.batch_norm1 = nnx.BatchNorm(32, rngs=rngs)
    self.dropout1 = nnx.Dropout(rate=0.025)
    self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
    self.batch_norm2 = nnx.BatchNorm(64, rngs=rngs)
    self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
    self.linear1 = nnx.Linear(3136, 256, rngs=rngs)
    self.dropout2 = nnx.Dropout(rate=0.025)
    self.linear2 = nnx.Linear(256, 10, rngs=rngs)

  def __call__(self, x, rngs: nnx.Rngs):
    x = self.avg_pool(nnx.relu(self.batch_norm1(self.dropout1(self.conv1(x), rngs=rngs))))
    x = self.avg_pool(nnx.relu(self.batch_norm2(self.conv2(x))))
    x = x.reshape(x.shape[0], -1)  # flatten
    x = nnx.relu(self.dropout2(self.linear1(x), rngs=rngs))
    x = self.linear2(x)
    return x
'''

FLAX_NNX_TUTORIAL_CNN = '''
from functools import partial

from flax import nnx


class CNN(nnx.Module):
  """A simple CNN model."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
    self.batch_norm1 = nnx.BatchNorm(32, rngs=rngs)
    self.dropout1 = nnx.Dropout(rate=0.025)
    self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
    self.batch_norm2 = nnx.BatchNorm(64, rngs=rngs)
    self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
    self.linear1 = nnx.Linear(3136, 256, rngs=rngs)
    self.dropout2 = nnx.Dropout(rate=0.025)
    self.linear2 = nnx.Linear(256, 10, rngs=rngs)

  def __call__(self, x, rngs: nnx.Rngs | None = None):
    x = self.avg_pool(nnx.relu(self.batch_norm1(self.dropout1(self.conv1(x), rngs=rngs))))
    x = self.avg_pool(nnx.relu(self.batch_norm2(self.conv2(x))))
    x = x.reshape(x.shape[0], -1)  # flatten
    x = nnx.relu(self.dropout2(self.linear1(x), rngs=rngs))
    x = self.linear2(x)
    return x
'''

LINEN_BN_MLP = '''
import flax.linen as nn


class BNMLP(nn.Module):
    hidden: int = 32

    @nn.compact
    def __call__(self, x, train: bool):
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(self.hidden)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        x = nn.Dropout(0.2, deterministic=not train)(x)
        return nn.Dense(10)(x)
'''

NNX_HELD_RNGS_MLP = '''
from flax import nnx


class HeldRngs(nnx.Module):
    """Dropout holds its own stream (the NNX default); BatchNorm keeps running statistics."""

    def __init__(self, hidden: int = 32, *, rngs: nnx.Rngs):
        self.dense1 = nnx.Linear(784, hidden, rngs=rngs)
        self.norm = nnx.BatchNorm(hidden, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(0.3, rngs=rngs)
        self.dense2 = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        return self.dense2(self.drop(nnx.relu(self.norm(self.dense1(x)))))
'''

# A linen MLP with dropout and a `train` flag, built by `make(width)` (test_train's Flax member).
LINEN_DROPOUT_MLP = '''
import flax.linen as nn


class DropoutMLP(nn.Module):
    width: int = 64

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(self.width)(x.reshape(x.shape[0], -1)))
        x = nn.Dropout(0.2, deterministic=not train)(x)
        return nn.Dense(10)(x)


def make(width=64):
    return DropoutMLP(width=width)
'''

# A linen MLP without dropout, built by `make(width)` (test_sweep's Flax file through the CLI).
LINEN_TINY_MLP = '''
import flax.linen as nn


class Tiny(nn.Module):
    width: int = 16

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(self.width)(x.reshape(x.shape[0], -1)))
        return nn.Dense(10)(x)


def make(width=16):
    return Tiny(width=width)
'''

BAD_MODELS = '''
import flax.linen as nn
from flax import nnx


class NeedsKey(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.dense = nnx.Linear(784, 10, rngs=rngs)

    def __call__(self, x, key):
        return self.dense(x.reshape((x.shape[0], -1)))


class Raises(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], 100))  # 784 pixels do not fit: raises while tracing
        return nn.Dense(10)(x)


class FiveClasses(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(5)(x.reshape((x.shape[0], -1)))


def broken_factory():
    raise RuntimeError("this factory is broken")
'''


# An NNX model whose BatchNorm averages over a named axis, as one written for shard_map. Its
# conv has no bias, as in Flax's ResNets: BatchNorm cancels a bias, whose gradient is then
# rounding noise that Adam scales up to full steps (grid and solo runs would part on it alone).
NNX_NAMED_AXIS = '''
from flax import nnx


class AxisBN(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.conv = nnx.Conv(1, 8, kernel_size=(3, 3), strides=(2, 2), use_bias=False, rngs=rngs)
    self.norm = nnx.BatchNorm(8, axis_name='batch', rngs=rngs)
    self.out = nnx.Linear(14 * 14 * 8, 10, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.norm(self.conv(x)))
    return self.out(x.reshape(x.shape[0], -1))
'''


# Flax's own examples/imagenet/models.py (google/flax, Apache 2.0), byte for byte: the file a
# user copies to train Flax's ResNets (FLAX_IMAGENET_MODELS_SHA256 checks it is unchanged).
FLAX_IMAGENET_MODELS = '''
# Copyright 2024 The Flax Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Flax implementation of ResNet V1.5."""

# See issue #620.
# pytype: disable=wrong-arg-count

from functools import partial
from typing import Any, Tuple
from collections.abc import Callable, Sequence

from flax import linen as nn
import jax.numpy as jnp

ModuleDef = Any


class ResNetBlock(nn.Module):
  """ResNet block."""

  filters: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable
  strides: tuple[int, int] = (1, 1)

  @nn.compact
  def __call__(
      self,
      x,
  ):
    residual = x
    y = self.conv(self.filters, (3, 3), self.strides)(x)
    y = self.norm()(y)
    y = self.act(y)
    y = self.conv(self.filters, (3, 3))(y)
    y = self.norm(scale_init=nn.initializers.zeros_init())(y)

    if residual.shape != y.shape:
      residual = self.conv(
          self.filters, (1, 1), self.strides, name='conv_proj'
      )(residual)
      residual = self.norm(name='norm_proj')(residual)

    return self.act(residual + y)


class BottleneckResNetBlock(nn.Module):
  """Bottleneck ResNet block."""

  filters: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable
  strides: tuple[int, int] = (1, 1)

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.filters, (1, 1))(x)
    y = self.norm()(y)
    y = self.act(y)
    y = self.conv(self.filters, (3, 3), self.strides)(y)
    y = self.norm()(y)
    y = self.act(y)
    y = self.conv(self.filters * 4, (1, 1))(y)
    y = self.norm(scale_init=nn.initializers.zeros_init())(y)

    if residual.shape != y.shape:
      residual = self.conv(
          self.filters * 4, (1, 1), self.strides, name='conv_proj'
      )(residual)
      residual = self.norm(name='norm_proj')(residual)

    return self.act(residual + y)


class ResNet(nn.Module):
  """ResNetV1.5."""

  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  num_classes: int
  num_filters: int = 64
  dtype: Any = jnp.float32
  act: Callable = nn.relu
  conv: ModuleDef = nn.Conv

  @nn.compact
  def __call__(self, x, train: bool = True):
    conv = partial(self.conv, use_bias=False, dtype=self.dtype)
    norm = partial(
        nn.BatchNorm,
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        dtype=self.dtype,
        axis_name='batch',
    )

    x = conv(
        self.num_filters,
        (7, 7),
        (2, 2),
        padding=[(3, 3), (3, 3)],
        name='conv_init',
    )(x)
    x = norm(name='bn_init')(x)
    x = nn.relu(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')
    for i, block_size in enumerate(self.stage_sizes):
      for j in range(block_size):
        strides = (2, 2) if i > 0 and j == 0 else (1, 1)
        x = self.block_cls(
            self.num_filters * 2**i,
            strides=strides,
            conv=conv,
            norm=norm,
            act=self.act,
        )(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype)(x)
    x = jnp.asarray(x, self.dtype)
    return x


ResNet18 = partial(ResNet, stage_sizes=[2, 2, 2, 2], block_cls=ResNetBlock)
ResNet34 = partial(ResNet, stage_sizes=[3, 4, 6, 3], block_cls=ResNetBlock)
ResNet50 = partial(
    ResNet, stage_sizes=[3, 4, 6, 3], block_cls=BottleneckResNetBlock
)
ResNet101 = partial(
    ResNet, stage_sizes=[3, 4, 23, 3], block_cls=BottleneckResNetBlock
)
ResNet152 = partial(
    ResNet, stage_sizes=[3, 8, 36, 3], block_cls=BottleneckResNetBlock
)
ResNet200 = partial(
    ResNet, stage_sizes=[3, 24, 36, 3], block_cls=BottleneckResNetBlock
)


ResNet18Local = partial(
    ResNet, stage_sizes=[2, 2, 2, 2], block_cls=ResNetBlock, conv=nn.ConvLocal
)


# Used for testing only.
_ResNet1 = partial(ResNet, stage_sizes=[1], block_cls=ResNetBlock)
_ResNet1Local = partial(
    ResNet, stage_sizes=[1], block_cls=ResNetBlock, conv=nn.ConvLocal
)
'''
FLAX_IMAGENET_MODELS_SHA256 = (
    "cd354ca3990ae35c3529e680b7d6e91f273508aa3cc087f03fdf41699063fb50")


def write(folder: Path, name: str, source: str) -> Path:
    """Writes ``source`` to ``folder/name`` (as a user would save a model file) and returns it."""
    path = Path(folder) / name
    path.write_text(textwrap.dedent(source).lstrip())
    return path
