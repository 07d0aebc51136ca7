"""Models: the zoo of the five studies and the user's own models, behind ONE contract.

Zoo families (``cfg["name"]``): ``mlp`` (S3), ``cnn`` (S0, S1), ``cnn_depth`` (S4),
``squeezenet`` (S2); their params are nested dicts with kernel leaves ``w``, biases ``b`` and
RMSNorm scales ``scale``. User models (Flax linen, Flax NNX, or a plain ``(init, apply)`` pair)
are named by import path ``"pkg.module:factory"`` / ``"file.py:factory"`` or by a name given to
:func:`register` (see :mod:`jaxmnist.models.adapters`). A model is two pure functions with its
non-parameter state (BatchNorm statistics, ...) explicit::

    init(key) -> (params, state)
    apply(params, state, x, *, train, key=None) -> (logits float32 [B, 10], new_state)

``state`` is ``{}`` for the zoo (and for any stateless model): the engine carries it through the
same path for every model. See docs/models.md and docs/byo.md.
"""

from __future__ import annotations

import collections
import json
import types
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from jaxmnist.caches import kept
from jaxmnist.models import adapters, cnn, mlp, specs, squeezenet
from jaxmnist.models.adapters import register
from jaxmnist.models.common import (
    WEIGHT_NAMES,
    is_weight_path,
    layer_paths,
    param_count,
    to_unit_float,
    weight_leaves,
    weight_mask,
)
from jaxmnist.models.layers import CONV_IMPLS, resolve_conv_impl
from jaxmnist.models.summary import summary

__all__ = [
    "CONV_IMPLS",
    "FAMILIES",
    "WEIGHT_NAMES",
    "Model",
    "build",
    "check_model",
    "family",
    "is_weight_path",
    "layer_paths",
    "param_count",
    "register",
    "resolve_conv_impl",
    "summary",
    "to_unit_float",
    "validate_model_config",
    "weight_leaves",
    "weight_mask",
]

FAMILIES: dict[str, types.ModuleType] = {
    "mlp": mlp,
    "cnn": cnn,
    "cnn_depth": cnn,
    "squeezenet": squeezenet,
}


class Model(NamedTuple):
    """A built model: its name, validated config and two pure functions.

    Attributes:
        name: family name (``cfg["name"]``).
        cfg: the validated config with every default filled in (JSON-serialisable).
        init: ``init(key) -> (params, state)``; ``state`` holds the non-parameter variables
            (BatchNorm running statistics, ...), ``{}`` when there are none.
        apply: ``apply(params, state, x, *, train, key=None) -> (logits float32 [B, 10],
            new_state)``; ``x`` is ``uint8`` or float ``[B, 28, 28, 1]``; ``key`` is needed
            when ``train`` and the model has dropout; ``new_state`` is ``state`` unless
            ``train`` (running statistics are updated in training steps only).
        weight_names: leaf names that count as weights (L1/L2, histograms, drawing).
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
    """Returns the module implementing family ``name``.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    if name not in FAMILIES:
        user = list(adapters.registered())
        raise ValueError(
            f"model name: {name!r} is not valid; valid choices are {list(FAMILIES) + user} or "
            "your own model as 'package.module:factory' / 'path/to/file.py:factory'"
        )
    return FAMILIES[name]


def validate_model_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Checks a model config without building anything; returns it with every default.

    Raises:
        ValueError: what is wrong (key, value, valid choices); see :mod:`.specs`.
    """
    return specs.resolved(cfg)


def check_model(cfg: Mapping[str, Any]) -> None:
    """Checks that a model can be called the way the engine calls it, without compiling.

    The zoo is checked by :func:`validate_model_config`; a user model is built and its init, a
    training call and an evaluation call are evaluated abstractly
    (:func:`jaxmnist.models.adapters.check`).

    Raises:
        ValueError: (``adapters.ModelError`` for a user model) one message naming the model,
            the call made, the user's source line and the accepted calling conventions.
    """
    cfg = validate_model_config(cfg)
    if adapters.is_user_model(cfg["name"]):
        adapters.check(cfg)


BUILT_MODELS_KEPT = 64  # built models kept per process (a Model is two closures: small)
_BUILT: collections.OrderedDict[tuple[str, Any], Model] = collections.OrderedDict()


def build(cfg: Mapping[str, Any]) -> Model:
    """Builds the model described by ``cfg`` (see :func:`validate_model_config`).

    The same config (for a user model: and the same factory object, so a class redefined in a
    notebook builds anew) gives the same :class:`Model` object, so functions jitted over it
    (the engine's programs) keep their compiles from one call to the next.
    """
    cfg = validate_model_config(cfg)
    factory = adapters.resolve_factory(cfg["name"]) if adapters.is_user_model(cfg["name"]) \
        else None
    key = (json.dumps(cfg, sort_keys=True), factory)
    return kept(_BUILT, key, lambda: _build(cfg), BUILT_MODELS_KEPT)


def _build(cfg: dict[str, Any]) -> Model:
    if adapters.is_user_model(cfg["name"]):
        init, apply = adapters.build(cfg)
        return Model(cfg["name"], cfg, init, apply, adapters.weight_names(cfg))
    mod = family(cfg["name"])
    zoo_apply = mod.make_apply(cfg)

    def init(key: Any) -> tuple[Any, dict[str, Any]]:
        return mod.init(key, cfg), {}

    def apply(params: Any, state: Any, x: Any, *, train: bool,
              key: Any = None) -> tuple[Any, Any]:
        # The zoo has no non-parameter state: the (empty) state passes through unchanged.
        return zoo_apply(params, x, train=train, key=key), state

    return Model(name=cfg["name"], cfg=cfg, init=init, apply=apply)
