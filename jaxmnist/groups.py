"""Groups: which member configs train together as ONE compiled program (plain Python, no jax).

Static keys (shapes: architecture, batch, epochs, loss) agree inside a group; the
:data:`DYNAMIC_KEYS` become per-member arrays with a leading grid axis.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from jaxmnist.trees import get_dotted

STRATEGIES: tuple[str, ...] = ("auto", "vmap", "sequential")
"""``train.strategy``: how a group's members share its program (``jaxmnist.engine.placement``)."""

DYNAMIC_KEYS: tuple[str, ...] = ("optim", "reg.l1", "reg.l2", "seed", "model.init")
"""Member-config keys that may differ inside a group; all others are static (docs/architecture.md,
"Groups": ``optim`` is the whole section, ``model.init`` only draws the starting weights)."""


def group_key(member: Mapping[str, Any]) -> str:
    """The canonical string of the config without its dynamic keys: equal keys train together."""
    static = copy.deepcopy(dict(member))
    for key in DYNAMIC_KEYS:
        parent, _, leaf = key.rpartition(".")
        node = get_dotted(static, parent, None) if parent else static
        if isinstance(node, dict):
            node.pop(leaf, None)
    return json.dumps(static, sort_keys=True, default=str)


def group_members(members: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Member indices in groups (one compiled program each), in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for index, member in enumerate(members):
        groups.setdefault(group_key(member), []).append(index)
    return list(groups.values())
