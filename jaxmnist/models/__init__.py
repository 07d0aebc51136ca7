"""Models: the zoo of the five studies and the user's own models, behind ONE contract.

``init(key) -> (params, state)`` and ``apply(params, state, x, *, train, key=None) -> (logits
float32 [B, 10], new_state)``; ``state`` (BatchNorm statistics, ...) is ``{}`` for the zoo.
A zoo family's module gives ``rows(cfg)`` (its layers and param plans) and ``make_apply(cfg)`` of
a resolved config (docs/models.md); user models (:func:`register`, import paths): docs/byo.md.
"""

from __future__ import annotations

import collections
import json
import math
import types
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax

from jaxmnist.caches import kept
from jaxmnist.models import adapters, cnn, mlp, specs, squeezenet
from jaxmnist.models.adapters import register
from jaxmnist.models.common import (
    WEIGHT_NAMES,
    init_params,
    is_weight_path,
    layer_paths,
    param_count,
    plan_size,
    to_unit_float,
    weight_leaves,
    weight_mask,
)
from jaxmnist.models.layers import CONV_IMPLS, resolve_conv_impl

__all__ = [
    "CONV_IMPLS", "FAMILIES", "WEIGHT_NAMES", "Model", "build", "check_model", "family",
    "is_weight_path", "layer_paths", "param_count", "register", "resolve_conv_impl", "summary",
    "to_unit_float", "validate_model_config", "weight_leaves", "weight_mask",
]

FAMILIES: dict[str, types.ModuleType] = {
    "mlp": mlp,
    "cnn": cnn,
    "cnn_depth": cnn,
    "squeezenet": squeezenet,
}


class Model(NamedTuple):
    """A built model: its name, config with every default, and the contract's two functions.

    ``apply`` takes ``uint8`` or float ``x``, needs ``key`` when ``train`` with dropout and
    updates ``state`` in training steps only; ``weight_names``: the leaves L1/L2 count.
    """

    name: str
    cfg: dict[str, Any]
    init: Callable[..., Any]
    apply: Callable[..., Any]
    weight_names: tuple[str, ...] = WEIGHT_NAMES

    def predict(self, params: Any, state: Any, x: Any) -> Any:
        """Evaluation-mode logits ``[B, 10]`` (dropout off, running statistics used)."""
        return self.apply(params, state, x, train=False)[0]


def family(name: str) -> types.ModuleType:
    """The module implementing zoo family ``name`` (``ValueError`` listing the choices)."""
    if name not in FAMILIES:
        raise ValueError(specs.unknown_model(name))
    return FAMILIES[name]


def validate_model_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A model config with every default, checked without building anything (``ValueError``)."""
    return specs.resolved(cfg)


def check_model(cfg: Mapping[str, Any]) -> None:
    """Checks that a model can be called as the engine calls it (a user model: abstractly).

    Raises:
        ValueError: a bad config; ``adapters.ModelError`` for a user model (:func:`adapters.check`).
    """
    cfg = validate_model_config(cfg)
    if adapters.is_user_model(cfg["name"]):
        adapters.check(cfg)


BUILT_MODELS_KEPT = 64  # built models kept per process (a Model is two closures: small)
_BUILT: collections.OrderedDict[tuple[str, Any], Model] = collections.OrderedDict()


def build(cfg: Mapping[str, Any]) -> Model:
    """Builds the model ``cfg`` describes.

    The same config (and for a user model the same factory object) gives the same
    :class:`Model`, so functions jitted over it keep their compiles between calls.
    """
    cfg = validate_model_config(cfg)
    factory = adapters.resolve_factory(cfg["name"]) if adapters.is_user_model(cfg["name"]) \
        else None
    key = (json.dumps(cfg, sort_keys=True), factory)
    return kept(_BUILT, key, lambda: _build(cfg), BUILT_MODELS_KEPT)


def _build(cfg: dict[str, Any]) -> Model:
    if adapters.is_user_model(cfg["name"]):
        init, apply = adapters.build(cfg)
        return Model(cfg["name"], cfg, init, apply, tuple(cfg["weight_leaves"]))
    mod = family(cfg["name"])
    plan: dict[str, Any] = {}  # "fire2/squeeze" is plan["fire2"]["squeeze"]
    for layer, _, spec in mod.rows(cfg):
        if spec is not None:
            outer, _, inner = layer.rpartition("/")
            (plan.setdefault(outer, {}) if outer else plan)[inner] = spec
    zoo_apply = mod.make_apply(cfg)

    def init(key: Any) -> tuple[Any, dict[str, Any]]:
        return init_params(key, plan), {}

    def apply(params: Any, state: Any, x: Any, *, train: bool,
              key: Any = None) -> tuple[Any, Any]:
        # The zoo has no non-parameter state: the (empty) state passes through unchanged.
        return zoo_apply(params, x, train=train, key=key), state

    return Model(name=cfg["name"], cfg=cfg, init=init, apply=apply)


def summary(cfg: Mapping[str, Any]) -> str:
    """A Keras-style table (layer, output shape, params) and the total, from the config alone.

    A user model lists its parameter leaves instead, from ``jax.eval_shape`` of its init.
    """
    cfg = validate_model_config(cfg)
    head, opening = "Output shape", "(None, "
    if adapters.is_user_model(cfg["name"]):
        # One row per parameter leaf: its shape (a user model's output shapes are unknown).
        head, opening = "Param shape", "("
        shapes, _ = jax.eval_shape(build(cfg).init, jax.random.PRNGKey(0))  # params, not state
        rows = [(path, tuple(leaf.shape), math.prod(leaf.shape))
                for path, leaf in layer_paths(shapes).items()]
    else:
        rows = [(n, shape, plan_size(p)) for n, shape, p in family(cfg["name"]).rows(cfg)]
    cells = [("Layer", head, "Params")] + [
        (name, opening + ", ".join(map(str, shape)) + ")", f"{n:,}") for name, shape, n in rows]
    w = [max(len(c[i]) for c in cells) for i in range(3)]
    table = [f"{a:<{w[0]}}   {b:<{w[1]}}   {c:>{w[2]}}" for a, b, c in cells]
    rule = "=" * (sum(w) + 6)
    return "\n".join([f'Model: "{cfg["name"]}"', rule, table[0], "-" * len(rule), *table[1:],
                      rule, f"Total params: {sum(n for _, _, n in rows):,}"])
