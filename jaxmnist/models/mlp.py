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
    Row,
    dropout,
    get_activation,
    split_key,
    to_unit_float,
)

N_IN = 28 * 28


def make_apply(cfg: Mapping[str, Any]) -> Callable[..., Array]:
    """Returns ``apply(params, x, *, train, key=None) -> logits [B, 10]`` for ``cfg``."""
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


def rows(cfg: Mapping[str, Any]) -> list[Row]:
    """The layers: name, output shape without batch, param plan (``None``: no params)."""
    sizes = [N_IN, *cfg["hidden"], NUM_CLASSES]
    inits = specs.per_layer(cfg["init"], len(sizes) - 1, "init")
    out: list[Row] = [("flatten", (N_IN,), None)]
    for i, h in enumerate(cfg["hidden"]):
        out.append((f"dense{i + 1}", (h,), layers.dense_spec(sizes[i], h, inits[i])))
        if cfg["rmsnorm"]:
            out.append((f"norm{i + 1}", (h,), layers.rmsnorm_spec(h)))
        if cfg["dropout"] > 0:
            out.append((f"dropout{i + 1}", (h,), None))
    out.append(("output", (NUM_CLASSES,), layers.dense_spec(sizes[-2], NUM_CLASSES, inits[-1])))
    return out
