"""Where a group's members train: how many devices, which member on which, and the strategy.

Results, histories and checkpoints are in member order whatever the layout (docs/architecture.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# What "auto" means on XLA:CPU: lax.map over the members (docs/performance.md, "The grid").
CPU_STRATEGY = "sequential"


def resolve_strategy(strategy: str) -> str:
    """``"auto"`` as a concrete strategy: ``vmap`` on accelerators, :data:`CPU_STRATEGY` on CPU."""
    if strategy != "auto":
        return strategy
    return CPU_STRATEGY if jax.default_backend() == "cpu" else "vmap"


def useful_devices(n_members: int, n_devices: int) -> int:
    """The fewest of ``n_devices`` that reach the least members per device (12 on 8: 6)."""
    if n_devices <= 1 or n_members <= 1:
        return 1
    return math.ceil(n_members / math.ceil(n_members / n_devices))


def member_layout(rates: Sequence[float], n_padded: int, n_devices: int,
                  active: Sequence[bool] | None = None) -> np.ndarray:
    """Grid position p trains member ``layout[p]`` (``[n_padded]`` int64, a permutation).

    Members are dealt by decreasing learning rate, then the padding, so the likeliest to diverge
    are spread out (docs/performance.md); ``active`` ones (after a pruning rung) first.
    """
    if n_devices <= 1:
        return np.arange(n_padded)
    first = [False] * len(rates) if active is None else [not a for a in active]
    order = sorted(range(len(rates)), key=lambda j: (first[j], -rates[j], j)) + list(
        range(len(rates), n_padded))
    per_device = n_padded // n_devices
    layout = np.empty(n_padded, np.int64)
    for i, j in enumerate(order):
        layout[(i % n_devices) * per_device + i // n_devices] = j
    return layout


@dataclass(frozen=True)
class Placement:
    """A group's devices, strategy and layout (grid position p trains member ``layout[p]``)."""

    mesh: Mesh
    strategy: str  # "vmap" or "sequential"
    layout: np.ndarray  # [padded] int; positions >= the member count hold padding

    @property
    def devices(self) -> int:
        """Devices the grid is sharded over."""
        return self.mesh.size

    @property
    def padded(self) -> int:
        """The grid size after padding to a multiple of the device count."""
        return len(self.layout)

    @property
    def grid(self) -> NamedSharding:
        """Sharding of per-member arrays: the leading grid axis split over the devices."""
        return NamedSharding(self.mesh, PartitionSpec("grid"))

    @property
    def replicated(self) -> NamedSharding:
        """Sharding of shared arrays (the dataset): a copy on every device."""
        return NamedSharding(self.mesh, PartitionSpec())

    def to_member_order(self, tree: Any) -> Any:
        """Host (NumPy) leaves with a leading grid axis, from grid order into member order."""
        if np.array_equal(self.layout, np.arange(self.padded)):
            return tree
        position = np.argsort(self.layout)  # member k sits at grid position position[k]
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[position], tree)

    def reorder(self, tree: Any, *, to_members: bool) -> Any:
        """Device arrays from grid into member order (``to_members``: checkpoints) or back."""
        if np.array_equal(self.layout, np.arange(self.padded)):
            return tree
        index = np.argsort(self.layout) if to_members else self.layout
        take = jax.jit(lambda t: jax.tree_util.tree_map(lambda a: a[index], t),
                       out_shardings=self.grid)
        return take(tree)


def place(strategy: str, rates: Sequence[float], devices: Sequence[Any] | None = None
          ) -> Placement:
    """A group's devices (default: all; in one process, the useful ones), strategy and layout."""
    if devices is None:
        devices = jax.devices()
        if jax.process_count() == 1:  # a distributed run feeds every process's devices
            devices = devices[: useful_devices(len(rates), len(devices))]
    devices = list(devices)
    strategy = resolve_strategy(strategy)
    padded = len(rates) + (-len(rates) % len(devices))
    # Dealt out in the sequential strategy alone (one process): a frozen member skips its
    # epochs there; under vmap it is computed anyway.
    layout = member_layout(rates, padded, len(devices)) \
        if strategy == "sequential" and jax.process_count() == 1 else np.arange(padded)
    return Placement(Mesh(np.asarray(devices), ("grid",)), strategy, layout)
