"""SqueezeNet (S2): v1.1's fire modules and pool positions on a 28x28x1 stem (docs/models.md).

A fire module is ``squeeze 1x1 -> ReLU`` then ``expand 1x1`` and ``expand 3x3 (same)`` (each ->
ReLU) concatenated on channels; ``final_relu`` keeps the ReLU on conv10. 726,474 params.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxmnist.models import layers
from jaxmnist.models.common import NUM_CLASSES, Array, Params, Row, dropout, to_unit_float

STEM = 64
# (name, squeeze, expand per branch); a 2x2 max-pool follows the names in POOL_AFTER.
FIRES = (
    ("fire2", 16, 64), ("fire3", 16, 64),
    ("fire4", 32, 128), ("fire5", 32, 128),
    ("fire6", 48, 192), ("fire7", 48, 192),
    ("fire8", 64, 256), ("fire9", 64, 256),
)
POOL_AFTER = ("conv1", "fire3", "fire5")


def make_apply(cfg: Mapping[str, Any]) -> Callable[..., Array]:
    """Returns ``apply(params, x, *, train, key=None) -> logits [B, 10]`` for ``cfg``."""
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


def rows(cfg: Mapping[str, Any]) -> list[Row]:
    """The layers: name, output shape without batch, param plan (``None``: no params)."""
    out: list[Row] = [("conv1", (26, 26, STEM), layers.conv_spec(3, 3, 1, STEM)),
                      ("pool1", (13, 13, STEM), None)]
    size, c_in = 13, STEM
    for name, s, e in FIRES:
        out.append((f"{name}/squeeze", (size, size, s), layers.conv_spec(1, 1, c_in, s)))
        out.append((f"{name}/expand1x1", (size, size, e), layers.conv_spec(1, 1, s, e)))
        out.append((f"{name}/expand3x3", (size, size, e), layers.conv_spec(3, 3, s, e)))
        c_in = 2 * e
        out.append((f"{name}/concat", (size, size, c_in), None))
        if name in POOL_AFTER:
            size //= 2
            out.append((f"pool_{name}", (size, size, c_in), None))
    if cfg["dropout"] > 0:
        out.append(("dropout", (size, size, c_in), None))
    out.append(("conv10", (size, size, NUM_CLASSES), layers.conv_spec(1, 1, c_in, NUM_CLASSES)))
    out.append(("global_avg_pool", (NUM_CLASSES,), None))
    return out
