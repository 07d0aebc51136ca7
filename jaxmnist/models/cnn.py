"""Plain conv nets: the S0/S1 CNN (``"cnn"``) and the S4 depth family (``"cnn_depth"``).

Both are ``[conv3x3 -> maxpool2 -> relu] * n -> dropout -> flatten (NHWC, as Keras) -> dense
+relu -> dropout -> dense(10)``, Keras' initialisers; configs and counts: docs/models.md.
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
    split_key,
    to_unit_float,
)

DEPTH_FILTERS = (64, 128, 512, 1024)
DEPTH_DENSE = (64, 128, 512, 512)


def _plan(cfg: dict[str, Any]) -> tuple[list[int], str, int, list[float]]:
    """Returns (conv filters, padding, dense units, [dropout after pool, after dense])."""
    if cfg["name"] == "cnn":
        return [32, 64], "valid", 128, cfg["dropout"]
    depth, rate = cfg["depth"], cfg["dropout"]
    return list(DEPTH_FILTERS[:depth]), cfg["padding"], DEPTH_DENSE[depth - 1], [rate, rate]


def init(key: Array, cfg: Mapping[str, Any]) -> Params:
    """Initialises params ``conv1..convN, dense1, dense2`` for a ``cnn`` or ``cnn_depth`` cfg."""
    cfg = specs.resolved(cfg)
    filters, _, units, _ = _plan(cfg)
    plan: dict[str, Any] = {}
    c_in = 1
    for i, f in enumerate(filters):
        plan[f"conv{i + 1}"] = layers.conv_spec(3, 3, c_in, f)
        c_in = f
    flat = next(shape[0] for name, shape, _ in describe(cfg) if name == "flatten")
    plan["dense1"] = layers.dense_spec(flat, units)
    plan["dense2"] = layers.dense_spec(units, NUM_CLASSES)
    return init_params(key, plan)


def make_apply(cfg: Mapping[str, Any]) -> Callable[..., Array]:
    """Returns ``apply(params, x, *, train, key=None) -> logits [B, 10]`` for ``cfg``."""
    cfg = specs.resolved(cfg)
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


def describe(cfg: Mapping[str, Any]) -> list[tuple[str, tuple[int, ...], int]]:
    """Rows ``(layer, output shape without batch, params)`` for :func:`jaxmnist.models.summary`."""
    cfg = specs.resolved(cfg)
    filters, padding, units, rates = _plan(cfg)
    rows = []
    size, c_in = 28, 1
    for i, f in enumerate(filters):
        conv_size = size if padding == "same" else size - 2
        rows.append((f"conv{i + 1}", (conv_size, conv_size, f), 9 * c_in * f + f))
        size = conv_size // 2
        rows.append((f"pool{i + 1}", (size, size, f), 0))
        c_in = f
    if rates[0] > 0:
        rows.append(("dropout1", (size, size, c_in), 0))
    flat = size * size * c_in
    rows.append(("flatten", (flat,), 0))
    rows.append(("dense1", (units,), flat * units + units))
    if rates[1] > 0:
        rows.append(("dropout2", (units,), 0))
    rows.append(("dense2", (NUM_CLASSES,), units * NUM_CLASSES + NUM_CLASSES))
    return rows
