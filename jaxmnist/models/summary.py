"""Keras-like text summary of a model config: layer, output shape, params, total."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def summary(cfg: Mapping[str, Any]) -> str:
    """A Keras-style table (layer, output shape, params) and the total, from the config alone.

    A user model lists its parameter leaves instead, from ``jax.eval_shape`` of its init.
    """
    from jaxmnist.models import adapters, family, validate_model_config  # avoid an import cycle

    cfg = validate_model_config(cfg)
    head = "Output shape"
    if adapters.is_user_model(cfg["name"]):
        head = "Param shape"
        rows = _user_rows(cfg)
        shapes = ["(" + ", ".join(str(d) for d in shape) + ")" for _, shape, _ in rows]
    else:
        rows = family(cfg["name"]).describe(cfg)
        shapes = ["(None, " + ", ".join(str(d) for d in shape) + ")" for _, shape, _ in rows]
    w_name = max(len("Layer"), *(len(r[0]) for r in rows))
    w_shape = max(len(head), *(len(s) for s in shapes))
    w_par = max(len("Params"), *(len(f"{r[2]:,}") for r in rows))
    width = w_name + w_shape + w_par + 6
    lines = [
        f'Model: "{cfg["name"]}"',
        "=" * width,
        f"{'Layer':<{w_name}}   {head:<{w_shape}}   {'Params':>{w_par}}",
        "-" * width,
    ]
    for (name, _, n), shape in zip(rows, shapes, strict=True):
        lines.append(f"{name:<{w_name}}   {shape:<{w_shape}}   {n:>{w_par},}")
    total = sum(r[2] for r in rows)
    lines += ["=" * width, f"Total params: {total:,}"]
    return "\n".join(lines)


def _user_rows(cfg: Mapping[str, Any]) -> list[tuple[str, tuple[int, ...], int]]:
    """A user model's rows: one per parameter leaf (its shape; output shapes are unknown)."""
    import math

    import jax

    from jaxmnist.models import build
    from jaxmnist.models.common import layer_paths

    shapes, _ = jax.eval_shape(build(cfg).init, jax.random.PRNGKey(0))  # params, not state
    return [(path, tuple(leaf.shape), math.prod(leaf.shape))
            for path, leaf in layer_paths(shapes).items()]
