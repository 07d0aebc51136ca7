"""Plain conv nets: the S0/S1 CNN (``"cnn"``) and the S4 depth family (``"cnn_depth"``).

Both are ``[conv3x3 -> maxpool2 -> relu] * n -> dropout -> flatten (NHWC, as Keras) -> dense
+relu -> dropout -> dense(10)``, Keras' initialisers; configs and counts: docs/models.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxmnist.models import layers
from jaxmnist.models.common import (
    NUM_CLASSES,
    Array,
    Params,
    Row,
    dropout,
    split_key,
    to_unit_float,
)

DEPTH_FILTERS = (64, 128, 512, 1024)
DEPTH_DENSE = (64, 128, 512, 512)


def _plan(cfg: Mapping[str, Any]) -> tuple[list[int], str, int, list[float]]:
    """Returns (conv filters, padding, dense units, [dropout after pool, after dense])."""
    if cfg["name"] == "cnn":
        return [32, 64], "valid", 128, cfg["dropout"]
    depth, rate = cfg["depth"], cfg["dropout"]
    return list(DEPTH_FILTERS[:depth]), cfg["padding"], DEPTH_DENSE[depth - 1], [rate, rate]


def make_apply(cfg: Mapping[str, Any]) -> Callable[..., Array]:
    """Returns ``apply(params, x, *, train, key=None) -> logits [B, 10]`` for ``cfg``."""
    filters, padding, _, rates = _plan(cfg)
    impl = cfg["conv_impl"]  # "auto" resolves when traced: building a model starts no backend
    n = len(filters)

    def apply(params: Params, x: Array, *, train: bool, key: Array | None = None) -> Array:
        k1, k2 = split_key(key if max(rates) > 0 else None, 2)
        h = to_unit_float(x)
        for i in range(n):
            p = params[f"conv{i + 1}"]
            h = layers.max_pool2(layers.conv2d(h, p["w"], padding=padding, impl=impl))
            h = jax.nn.relu(h + p["b"])
        h = dropout(h, rates[0], train=train, key=k1)
        h = h.reshape(h.shape[0], -1)  # NHWC flatten == Keras channels_last Flatten
        h = jax.nn.relu(layers.dense(params["dense1"], h))
        h = dropout(h, rates[1], train=train, key=k2)
        return layers.dense(params["dense2"], h).astype(jnp.float32)

    return apply


def rows(cfg: Mapping[str, Any]) -> list[Row]:
    """The layers: name, output shape without batch, param plan (``None``: no params)."""
    filters, padding, units, rates = _plan(cfg)
    out: list[Row] = []
    size, c_in = 28, 1
    for i, f in enumerate(filters):
        conv_size = size if padding == "same" else size - 2
        out.append((f"conv{i + 1}", (conv_size, conv_size, f), layers.conv_spec(3, 3, c_in, f)))
        size = conv_size // 2
        out.append((f"pool{i + 1}", (size, size, f), None))
        c_in = f
    if rates[0] > 0:
        out.append(("dropout1", (size, size, c_in), None))
    flat = size * size * c_in
    out.append(("flatten", (flat,), None))
    out.append(("dense1", (units,), layers.dense_spec(flat, units)))
    if rates[1] > 0:
        out.append(("dropout2", (units,), None))
    out.append(("dense2", (NUM_CLASSES,), layers.dense_spec(units, NUM_CLASSES)))
    return out
