"""SqueezeNet (S2): v1.1's fire modules and pool positions on a 28x28x1 stem (docs/models.md).

A fire module is ``squeeze 1x1 -> ReLU`` then ``expand 1x1`` and ``expand 3x3 (same)`` (each ->
ReLU) concatenated on channels; ``final_relu`` keeps the ReLU on conv10. 726,474 params.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxmnist.models import layers, specs
from jaxmnist.models.common import (
    NUM_CLASSES,
    Array,
    Params,
    dropout,
    init_params,
    to_unit_float,
)

STEM = 64
# (name, squeeze, expand per branch); a 2x2 max-pool follows the names in POOL_AFTER.
FIRES = (
    ("fire2", 16, 64), ("fire3", 16, 64),
    ("fire4", 32, 128), ("fire5", 32, 128),
    ("fire6", 48, 192), ("fire7", 48, 192),
    ("fire8", 64, 256), ("fire9", 64, 256),
)
POOL_AFTER = ("conv1", "fire3", "fire5")


def init(key: Array, cfg: Mapping[str, Any]) -> Params:
    """Initialises conv1, fire2..fire9 (squeeze / expand1x1 / expand3x3) and conv10."""
    specs.resolved(cfg, "squeezenet")
    plan: dict[str, Any] = {"conv1": layers.conv_spec(3, 3, 1, STEM)}
    c_in = STEM
    for name, s, e in FIRES:
        plan[name] = {
            "squeeze": layers.conv_spec(1, 1, c_in, s),
            "expand1x1": layers.conv_spec(1, 1, s, e),
            "expand3x3": layers.conv_spec(3, 3, s, e),
        }
        c_in = 2 * e
    plan["conv10"] = layers.conv_spec(1, 1, c_in, NUM_CLASSES)
    return init_params(key, plan)


def make_apply(cfg: Mapping[str, Any]) -> Callable[..., Array]:
    """Returns ``apply(params, x, *, train, key=None) -> logits [B, 10]`` for ``cfg``."""
    cfg = specs.resolved(cfg, "squeezenet")
    impl = cfg["conv_impl"]  # "auto" resolves when traced: building a model starts no backend
    rate, final_relu = cfg["dropout"], cfg["final_relu"]

    def conv_relu(p: Params, h: Array) -> Array:
        return jax.nn.relu(layers.conv2d(h, p["w"], padding="same", impl=impl) + p["b"])

    def apply(params: Params, x: Array, *, train: bool, key: Array | None = None) -> Array:
        p = params["conv1"]
        h = layers.max_pool2(layers.conv2d(to_unit_float(x), p["w"], padding="valid", impl=impl))
        h = jax.nn.relu(h + p["b"])  # pool before bias+ReLU: same result, 4x less work
        for name, _, _ in FIRES:
            f = params[name]
            sq = conv_relu(f["squeeze"], h)
            h = jnp.concatenate([conv_relu(f["expand1x1"], sq), conv_relu(f["expand3x3"], sq)], -1)
            if name in POOL_AFTER:
                h = layers.max_pool2(h)
        h = dropout(h, rate, train=train, key=key)
        h = layers.conv2d(h, params["conv10"]["w"]) + params["conv10"]["b"]
        if final_relu:
            h = jax.nn.relu(h)
        return layers.global_avg_pool(h).astype(jnp.float32)

    return apply


def describe(cfg: Mapping[str, Any]) -> list[tuple[str, tuple[int, ...], int]]:
    """Rows ``(layer, output shape without batch, params)`` for :func:`jaxmnist.models.summary`."""
    cfg = specs.resolved(cfg, "squeezenet")
    rows = [("conv1", (26, 26, STEM), 9 * STEM + STEM), ("pool1", (13, 13, STEM), 0)]
    size, c_in = 13, STEM
    for name, s, e in FIRES:
        rows.append((f"{name}/squeeze", (size, size, s), c_in * s + s))
        rows.append((f"{name}/expand1x1", (size, size, e), s * e + e))
        rows.append((f"{name}/expand3x3", (size, size, e), 9 * s * e + e))
        c_in = 2 * e
        rows.append((f"{name}/concat", (size, size, c_in), 0))
        if name in POOL_AFTER:
            size //= 2
            rows.append((f"pool_{name}", (size, size, c_in), 0))
    if cfg["dropout"] > 0:
        rows.append(("dropout", (size, size, c_in), 0))
    rows.append(("conv10", (size, size, NUM_CLASSES), c_in * NUM_CLASSES + NUM_CLASSES))
    rows.append(("global_avg_pool", (NUM_CLASSES,), 0))
    return rows
