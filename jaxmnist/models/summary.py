"""Keras-like text summary of a model config: layer, output shape, params, total."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def summary(cfg: Mapping[str, Any]) -> str:
    """Returns a Keras-style table (layer, output shape, params) and the total for ``cfg``.

    Computed from the config alone (no arrays are built); the test suite checks that the total
    equals ``param_count(build(cfg).init(key))``.
    """
    from jaxmnist.models import family, validate_model_config  # local: avoid an import cycle

    cfg = validate_model_config(cfg)
    rows = family(cfg["name"]).describe(cfg)
    shapes = ["(None, " + ", ".join(str(d) for d in shape) + ")" for _, shape, _ in rows]
    w_name = max(len("Layer"), *(len(r[0]) for r in rows))
    w_shape = max(len("Output shape"), *(len(s) for s in shapes))
    w_par = max(len("Params"), *(len(f"{r[2]:,}") for r in rows))
    width = w_name + w_shape + w_par + 6
    lines = [
        f'Model: "{cfg["name"]}"',
        "=" * width,
        f"{'Layer':<{w_name}}   {'Output shape':<{w_shape}}   {'Params':>{w_par}}",
        "-" * width,
    ]
    for (name, _, n), shape in zip(rows, shapes, strict=True):
        lines.append(f"{name:<{w_name}}   {shape:<{w_shape}}   {n:>{w_par},}")
    total = sum(r[2] for r in rows)
    lines += ["=" * width, f"Total params: {total:,}"]
    return "\n".join(lines)
