"""Feed-forward network (S3): 784 inputs -> hidden layers -> 10 logits (docs/models.md).

Each hidden layer is ``dense -> [RMSNorm] -> activation -> [dropout]``. Params: ``dense1 ..
denseN`` and ``output`` (``w``, ``b``); ``norm1 .. normN`` (``scale``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp

from jaxmnist.models import layers, specs
from jaxmnist.models.common import (
    NUM_CLASSES,
    Array,
    Params,
    dropout,
    get_activation,
    init_params,
    split_key,
    to_unit_float,
)

N_IN = 28 * 28


def init(key: Array, cfg: Mapping[str, Any]) -> Params:
    """Initialises MLP params for ``cfg``."""
    cfg = specs.resolved(cfg, "mlp")
    hidden = cfg["hidden"]
    inits = specs.per_layer(cfg["init"], len(hidden) + 1, "init")
    sizes = [N_IN, *hidden, NUM_CLASSES]
    plan: dict[str, Any] = {}
    for i in range(len(hidden)):
        plan[f"dense{i + 1}"] = layers.dense_spec(sizes[i], sizes[i + 1], inits[i])
        if cfg["rmsnorm"]:
            plan[f"norm{i + 1}"] = layers.rmsnorm_spec(sizes[i + 1])
    plan["output"] = layers.dense_spec(sizes[-2], sizes[-1], inits[-1])
    return init_params(key, plan)


def make_apply(cfg: Mapping[str, Any]) -> Callable[..., Array]:
    """Returns ``apply(params, x, *, train, key=None) -> logits [B, 10]`` for ``cfg``."""
    cfg = specs.resolved(cfg, "mlp")
    n = len(cfg["hidden"])
    acts = [get_activation(a) for a in specs.per_layer(cfg["activation"], n, "activation")]
    rate, use_norm = cfg["dropout"], cfg["rmsnorm"]

    def apply(params: Params, x: Array, *, train: bool, key: Array | None = None) -> Array:
        h = to_unit_float(x).reshape(x.shape[0], -1)
        keys = split_key(key if rate > 0 else None, n)
        for i in range(n):
            h = layers.dense(params[f"dense{i + 1}"], h)
            if use_norm:
                h = layers.rmsnorm(params[f"norm{i + 1}"], h)
            h = dropout(acts[i](h), rate, train=train, key=keys[i])
        return layers.dense(params["output"], h).astype(jnp.float32)

    return apply


def describe(cfg: Mapping[str, Any]) -> list[tuple[str, tuple[int, ...], int]]:
    """Rows ``(layer, output shape without batch, params)`` for :func:`jaxmnist.models.summary`."""
    cfg = specs.resolved(cfg, "mlp")
    rows = [("flatten", (N_IN,), 0)]
    prev = N_IN
    for i, h in enumerate(cfg["hidden"]):
        rows.append((f"dense{i + 1}", (h,), prev * h + h))
        if cfg["rmsnorm"]:
            rows.append((f"norm{i + 1}", (h,), h))
        if cfg["dropout"] > 0:
            rows.append((f"dropout{i + 1}", (h,), 0))
        prev = h
    rows.append(("output", (NUM_CLASSES,), prev * NUM_CLASSES + NUM_CLASSES))
    return rows
