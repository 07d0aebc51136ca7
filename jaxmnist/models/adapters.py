"""Bring-your-own models: Flax linen, Flax NNX or a plain ``(init, apply)`` pair -> the contract.

A model config names a user model by import path or by a registered name; every other key is a
keyword argument of the factory (JSON values: they are part of the group's static config)::

    {"name": "my_pkg.nets:make_cnn", "width": 64}          # module on sys.path
    {"name": "path/to/nets.py:make_cnn"}                   # a file, anywhere
    {"name": "my_cnn"}                                     # @jaxmnist.models.register("my_cnn")
    {"name": "...", "weight_leaves": ["kernel"]}           # optional: which leaves are weights

What the factory returns decides the adapter:

* a ``flax.linen.Module`` (``factory(**kwargs)``): ``__call__(x, train=...)`` (or
  ``deterministic=`` / ``training=``, or no such flag); dropout draws from the ``"dropout"`` RNG
  collection. Only the ``params`` collection is supported (no ``batch_stats``).
* a ``flax.nnx.Module``: the factory (or the class itself) takes ``rngs`` and is called with
  ``rngs=nnx.Rngs(params=key, dropout=...)``; ``model.train()`` / ``model.eval()`` switch
  dropout. Params travel as a plain nested dict (``nnx.State.to_pure_dict``).
* a pair ``(init, apply)``: ``init(key) -> params``, ``apply(params, x, *, train, key) ->
  logits``, used as is.

Every adapter produces the engine's contract: ``init(key) -> params`` (vmappable),
``apply(params, x, *, train, key=None) -> logits [B, 10]``; user code always receives float32
images in [0, 1] of shape ``[B, 28, 28, 1]`` (the uint8 -> float scaling happens here once).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxmnist import importspec
from jaxmnist.models.common import IMAGE_SHAPE, WEIGHT_NAMES, to_unit_float

_REGISTERED: dict[str, Callable[..., Any]] = {}
RESERVED_KEYS = ("name", "weight_leaves")


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: makes a model factory (or Module class) available as ``model.name = name``.

    The module holding the decorated factory must be imported before the study is validated
    (e.g. import it at the top of the study file).
    """

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTERED[name] = factory
        return factory

    return wrap


def registered() -> tuple[str, ...]:
    """Names registered with :func:`register`."""
    return tuple(_REGISTERED)


def is_user_model(name: Any) -> bool:
    """True for an import path (``"pkg.mod:factory"``, ``"file.py:factory"``) or a name."""
    return isinstance(name, str) and (":" in name or name in _REGISTERED)


def resolve_factory(name: str) -> Callable[..., Any]:
    """Returns the factory a user model name refers to.

    Raises:
        ValueError: the module or attribute cannot be found or imported (the message says
            which and what forms are accepted).
    """
    if name in _REGISTERED:
        return _REGISTERED[name]
    module_part, _, attr = name.rpartition(":")
    forms = ("use 'package.module:factory', 'path/to/file.py:factory' or a name registered "
             "with @jaxmnist.models.register")
    if not module_part or not attr:
        raise ValueError(f"model name {name!r}: {forms}")
    try:
        module = importspec.import_module_part(module_part, "jaxmnist_user")
    except FileNotFoundError as err:
        raise ValueError(f"model file {module_part!r} does not exist") from err
    except Exception as err:  # noqa: BLE001 - user code: report, do not crash the CLI
        if module_part.endswith(".py"):
            raise ValueError(f"model file {module_part!r} failed to import: "
                             f"{type(err).__name__}: {err}") from err
        if isinstance(err, ImportError):
            raise ValueError(f"model name {name!r}: cannot import {module_part!r} ({err}); "
                             f"{forms}") from err
        raise ValueError(f"model name {name!r}: importing {module_part!r} failed: "
                         f"{type(err).__name__}: {err}") from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise ValueError(f"model name {name!r}: {module_part!r} has no callable {attr!r}; "
                         f"callables there: {', '.join(public) or 'none'}")
    return factory


def _signature(factory: Callable[..., Any]) -> inspect.Signature | None:
    """The factory's call signature; for a class, its ``__init__`` without ``self``.

    Flax's module metaclasses hide a class's own signature behind ``*args, **kwargs``.
    """
    try:
        if inspect.isclass(factory):
            sig = inspect.signature(factory.__init__)
            return sig.replace(parameters=list(sig.parameters.values())[1:])
        return inspect.signature(factory)
    except (TypeError, ValueError):
        return None


def _wants_rngs(factory: Callable[..., Any]) -> bool:
    sig = _signature(factory)
    return sig is not None and "rngs" in sig.parameters


def validate(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Checks a user model config: the factory resolves and accepts the keyword arguments.

    Returns the config unchanged (as a dict). Nothing is built.

    Raises:
        ValueError: what is wrong and how to fix it.
    """
    name = cfg["name"]
    factory = resolve_factory(name)
    kwargs = {k: v for k, v in cfg.items() if k not in RESERVED_KEYS}
    sig = _signature(factory)
    if sig is not None:
        try:
            if _wants_rngs(factory):
                sig.bind(**kwargs, rngs=None)
            else:
                sig.bind(**kwargs)
        except TypeError as err:
            params = [p for p in sig.parameters if p not in ("self", "rngs")]
            raise ValueError(f"model {name!r}: {err}; its parameters: {params}") from None
    leaves = cfg.get("weight_leaves", list(WEIGHT_NAMES))
    if not (isinstance(leaves, list | tuple) and all(isinstance(s, str) for s in leaves)):
        raise ValueError(f"model {name!r}: 'weight_leaves' must be a list of leaf names, "
                         f"got {leaves!r}")
    return dict(cfg)


def _linen_train_kwarg(module: Any) -> Callable[[bool], dict[str, Any]]:
    params = inspect.signature(type(module).__call__).parameters
    if "train" in params:
        return lambda train: {"train": train}
    if "training" in params:
        return lambda train: {"training": train}
    if "deterministic" in params:
        return lambda train: {"deterministic": not train}
    return lambda train: {}


def build(cfg: Mapping[str, Any]) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Returns ``(init, apply)`` in the engine's contract for a user model config."""
    import flax.linen as nn
    from flax import nnx

    factory = resolve_factory(cfg["name"])
    kwargs = {k: v for k, v in cfg.items() if k not in RESERVED_KEYS}
    dummy = jnp.zeros((1, *IMAGE_SHAPE), jnp.float32)

    if _wants_rngs(factory):  # Flax NNX: the module owns its variables; build it per call
        def make(params_key: Any, dropout_key: Any) -> Any:
            model = factory(**kwargs, rngs=nnx.Rngs(params=params_key, dropout=dropout_key))
            if not isinstance(model, nnx.Module):
                raise ValueError(f"model {cfg['name']!r}: a factory taking 'rngs' must return "
                                 f"a flax.nnx.Module, got {type(model).__name__}")
            return model

        def nnx_init(key: Any) -> Any:
            return nnx.to_pure_dict(nnx.state(make(key, 0), nnx.Param))

        def nnx_apply(params: Any, x: Any, *, train: bool, key: Any = None) -> Any:
            # Parameter initialisers traced here are unused and removed by XLA.
            model = make(0, key if key is not None else 0)
            state = nnx.state(model, nnx.Param)
            nnx.replace_by_pure_dict(state, params)
            nnx.update(model, state)
            if train:
                model.train()
            else:
                model.eval()
            return model(to_unit_float(x))

        return nnx_init, nnx_apply

    made = factory(**kwargs)
    if isinstance(made, nn.Module):
        module = made
        flag = _linen_train_kwarg(module)

        def linen_init(key: Any) -> Any:
            variables = module.init({"params": key, "dropout": key}, dummy, **flag(False))
            extra = sorted(k for k in variables if k != "params")
            if extra:
                raise ValueError(f"model {cfg['name']!r} has variable collections {extra}; "
                                 "only 'params' is supported (no batch statistics)")
            return variables["params"]

        def linen_apply(params: Any, x: Any, *, train: bool, key: Any = None) -> Any:
            rngs = {"dropout": key} if key is not None else {}
            return module.apply({"params": params}, to_unit_float(x), rngs=rngs, **flag(train))

        return linen_init, linen_apply
    if isinstance(made, nnx.Module):
        raise ValueError(f"model {cfg['name']!r} returned an NNX module built with fixed rngs; "
                         "let the factory take 'rngs' so every member draws its own weights")
    if isinstance(made, tuple | list) and len(made) == 2 and all(map(callable, made)):
        user_init, user_apply = made

        def pair_apply(params: Any, x: Any, *, train: bool, key: Any = None) -> Any:
            return user_apply(params, to_unit_float(x), train=train, key=key)

        return user_init, pair_apply
    raise ValueError(f"model {cfg['name']!r}: the factory returned {type(made).__name__}; "
                     "expected a flax.linen.Module, a flax.nnx.Module (factory taking 'rngs') "
                     "or an (init, apply) pair")


def weight_names(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """The leaf names that count as weights for this model (penalties, histograms, drawing)."""
    return tuple(cfg.get("weight_leaves", WEIGHT_NAMES))


def eval_params(init: Callable[..., Any]) -> Any:
    """Shapes and dtypes of ``init``'s params without allocating them."""
    return jax.eval_shape(init, jax.random.PRNGKey(0))
