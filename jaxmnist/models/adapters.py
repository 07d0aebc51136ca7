"""Bring-your-own models: Flax linen, Flax NNX or a plain ``(init, apply)`` pair -> the contract.

A model config names a factory by import path or registered name; its other keys are the
factory's keyword arguments. What the factory returns picks the adapter, and :func:`check` calls
the result abstractly while the study is validated. The conventions: docs/byo.md ("Models").
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxmnist import importspec
from jaxmnist.models.common import IMAGE_SHAPE, NUM_CLASSES, to_unit_float

_REGISTERED: dict[str, Callable[..., Any]] = {}
RESERVED_KEYS = ("name", "weight_leaves", "cpu_convs", "axis_names")

# Mode flags of ``__call__`` and the value each takes in a training step.
TRAIN_FLAGS: dict[str, bool] = {
    "train": True, "training": True, "is_training": True,
    "deterministic": False, "use_running_average": False,
}
CONVENTIONS = (
    "accepted calling conventions: a Flax linen Module called as __call__(x) with an optional "
    f"mode flag ({', '.join(TRAIN_FLAGS)}); a Flax NNX Module built as factory(rngs=...) and "
    "called as __call__(x), __call__(x, rngs) or with a mode flag (model.train()/eval() are "
    "applied); an (init, apply) pair: init(key) -> params, apply(params, x, *, train, key) -> "
    "logits, or with state: init(key) -> (params, state), apply(params, state, x, *, train, "
    "key) -> (logits, new_state); every call returns logits of shape [batch, 10]"
)
_PROBE_BATCH = 2  # images in the abstract check (any batch size works; 2 catches batch-1 bugs)
# init, apply, the calls described, the named axes the module's collectives reduce over
_Adapted = tuple[Callable[..., Any], Callable[..., Any], str, tuple[str, ...]]


class ModelError(ValueError):
    """A user model cannot be built or called the way jaxmnist calls it (one clear message)."""


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: a model factory (or Module class) as ``model.name = name`` once imported."""

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
    """The factory a user model name refers to (``ValueError``: what cannot be found and why)."""
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
                             f"{type(err).__name__}: {err}{_user_line(err)}") from err
        if isinstance(err, ImportError):
            raise ValueError(f"model name {name!r}: cannot import {module_part!r} ({err}); "
                             f"{forms}") from err
        raise ValueError(f"model name {name!r}: importing {module_part!r} failed: "
                         f"{type(err).__name__}: {err}{_user_line(err)}") from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise ValueError(f"model name {name!r}: {module_part!r} has no callable {attr!r}; "
                         f"callables there: {', '.join(public) or 'none'}")
    return factory


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    """``fn``'s signature; a class's ``__init__`` without ``self`` (Flax's metaclasses hide it)."""
    try:
        if inspect.isclass(fn):
            sig = inspect.signature(fn.__init__)
            return sig.replace(parameters=list(sig.parameters.values())[1:])
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _factory(cfg: Mapping[str, Any]) -> tuple[Callable[..., Any], dict[str, Any],
                                               inspect.Signature | None]:
    """The factory, its keyword arguments (the config's other keys) and its signature."""
    factory = resolve_factory(cfg["name"])
    return factory, {k: v for k, v in cfg.items() if k not in RESERVED_KEYS}, _signature(factory)


def validate(cfg: Mapping[str, Any]) -> None:
    """Checks that the factory resolves and takes the keyword arguments; nothing is built."""
    name = cfg["name"]
    _, kwargs, sig = _factory(cfg)
    if sig is not None:
        try:
            sig.bind(**kwargs, **({"rngs": None} if "rngs" in sig.parameters else {}))
        except TypeError as err:
            params = [p for p in sig.parameters if p not in ("self", "rngs")]
            raise ValueError(f"model {name!r}: {err}; its parameters: {params}") from None


# Calling conventions
def _call_params(module: Any) -> Mapping[str, inspect.Parameter]:
    sig = _signature(type(module).__call__)
    return {} if sig is None else sig.parameters


def _mode_kwargs(params: Mapping[str, inspect.Parameter]) -> Callable[[bool], dict[str, Any]]:
    """``train -> {flag: value}`` for every mode flag that ``__call__`` names."""
    flags = [f for f in TRAIN_FLAGS if f in params]
    return lambda train: {f: train if TRAIN_FLAGS[f] else not train for f in flags}


def _describe_call(kind: str, params: Mapping[str, inspect.Parameter], train: bool) -> str:
    args = ["x"]
    if "rngs" in params:
        args.append("rngs=nnx.Rngs(key)")
    args += [f"{f}={v}" for f, v in _mode_kwargs(params)(train).items()]
    mode = "training step" if train else "evaluation"
    if kind == "nnx":
        return f"model.{'train' if train else 'eval'}(); model({', '.join(args)})  [{mode}]"
    return f"module.apply(variables, {', '.join(args)})  [{mode}]"


def _linen_adapter(module: Any) -> _Adapted:
    import flax

    params = _call_params(module)
    mode = _mode_kwargs(params)
    dummy = jnp.zeros((1, *IMAGE_SHAPE), jnp.float32)

    def init(key: Any) -> tuple[Any, Any]:
        variables = flax.core.unfreeze(module.init({"params": key, "dropout": key}, dummy,
                                                   **mode(False)))
        state = {k: v for k, v in variables.items() if k != "params"}
        return variables.get("params", {}), state

    def apply(params: Any, state: Any, x: Any, *, train: bool, key: Any = None):
        rngs = {"dropout": key} if key is not None else {}
        variables = {"params": params, **state}
        if train and state:
            logits, updates = module.apply(variables, to_unit_float(x), rngs=rngs,
                                           mutable=list(state), **mode(True))
            return logits, {**state, **flax.core.unfreeze(updates)}
        return module.apply(variables, to_unit_float(x), rngs=rngs, **mode(train)), state

    return (init, apply, "\n".join(_describe_call("linen", params, t) for t in (True, False)),
            _linen_axis_names(init))


def _nnx_adapter(factory: Callable[..., Any], kwargs: Mapping[str, Any], name: str) -> _Adapted:
    from flax import nnx

    def make(key: Any) -> Any:
        model = factory(**kwargs, rngs=nnx.Rngs(key))
        if not isinstance(model, nnx.Module):
            raise ModelError(f"model {name!r}: a factory taking 'rngs' must return a "
                             f"flax.nnx.Module, got {type(model).__name__}")
        return model

    # Split once: the graph definition is static, the three kinds of state are pytrees. The
    # traced calls below merge it back (no module construction, no initialisers traced).
    abstract = nnx.eval_shape(lambda: make(jax.random.PRNGKey(0)))
    graphdef, abs_params, abs_rngs, abs_rest = nnx.split(abstract, nnx.Param, nnx.RngState, ...)
    call = _call_params(abstract)
    mode = _mode_kwargs(call)
    takes_rngs = "rngs" in call
    rng_template = nnx.to_pure_dict(abs_rngs)

    def filled(template: Any, pure: Any) -> Any:
        state = jax.tree_util.tree_map(lambda a: a, template)
        nnx.replace_by_pure_dict(state, pure)
        return state

    def fresh_rngs(key: Any) -> Any:
        # Every stream the module holds restarts from the step key: count 0, key fold_in(key, i).
        leaves, tree = jax.tree_util.tree_flatten(rng_template)
        values = [jax.random.wrap_key_data(jax.random.fold_in(key, i))
                  if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
                  else jnp.zeros(leaf.shape, leaf.dtype) for i, leaf in enumerate(leaves)]
        return filled(abs_rngs, jax.tree_util.tree_unflatten(tree, values))

    def init(key: Any) -> tuple[Any, Any]:
        _, params, _, rest = nnx.split(make(key), nnx.Param, nnx.RngState, ...)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(rest)

    def apply(params: Any, state: Any, x: Any, *, train: bool, key: Any = None):
        key = key if key is not None else jax.random.PRNGKey(0)
        model = nnx.merge(graphdef, filled(abs_params, params), fresh_rngs(key),
                          filled(abs_rest, state))
        if train:
            model.train()
        else:
            model.eval()
        extra = {"rngs": nnx.Rngs(key)} if takes_rngs else {}
        logits = model(to_unit_float(x), **extra, **mode(train))
        if not train:
            return logits, state
        _, _, _, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
        return logits, nnx.to_pure_dict(rest)

    found = (a for _, node in nnx.iter_graph(abstract) for a in _axis_list(node))
    return (init, apply, "\n".join(_describe_call("nnx", call, t) for t in (True, False)),
            tuple(dict.fromkeys(found)))


def _pair_adapter(user_init: Callable[..., Any], user_apply: Callable[..., Any]) -> _Adapted:
    sig = _signature(user_apply)
    if sig is not None and "state" in sig.parameters:
        def apply(params: Any, state: Any, x: Any, *, train: bool, key: Any = None):
            return user_apply(params, state, to_unit_float(x), train=train, key=key)

        return user_init, apply, ("init(key) -> (params, state); apply(params, state, x, "
                                  "train=..., key=...) -> (logits, new_state)"), ()

    def stateless(params: Any, state: Any, x: Any, *, train: bool, key: Any = None):
        return user_apply(params, to_unit_float(x), train=train, key=key), state

    return (lambda key: (user_init(key), {}), stateless,
            "init(key) -> params; apply(params, x, train=..., key=...) -> logits", ())


@functools.cache
def _build_cached(cfg_json: str, factory: Callable[..., Any]) -> tuple[
        Callable[..., Any], Callable[..., Any], str, Callable[..., Any]]:
    # Keyed by the factory object too: a name registered again (a class redefined in a
    # notebook) builds anew; holding the object here means its identity is never reused.
    cfg = json.loads(cfg_json)
    init, apply, calls, found = _adapt(cfg)
    # Each named axis bound to one member by a size-1 named vmap: a model written for pmap /
    # shard_map then reduces over its own batch (docs/byo.md).
    if names := tuple(dict.fromkeys([*cfg.get("axis_names", ()), *found])):
        init, unbound = functools.partial(_on_named_axes, init, names), apply

        def apply(params: Any, state: Any, x: Any, *, train: bool, key: Any = None):
            return _on_named_axes(lambda p, s, xb: unbound(p, s, xb, train=train, key=key),
                                  names, params, state, x)

    # im2col convolutions on XLA:CPU unless ``cpu_convs: False`` (imported here: 0.15 s). The
    # plain apply last: the check traces it (asking for the backend would start one).
    fast = apply
    if cfg.get("cpu_convs", True) is not False:
        from jaxmnist.models.cpu_kernels import fast_cpu_convs
        fast = fast_cpu_convs(apply)
    return init, fast, calls, apply


def _axis_list(module: Any) -> list[str]:
    """A module's ``axis_name`` (a name, several, or none) as a list."""
    axis = getattr(module, "axis_name", None)
    return [axis] if isinstance(axis, str) else list(axis or ())


def _on_named_axes(fn: Callable[..., Any], names: tuple[str, ...], *args: Any) -> Any:
    """``fn(*args)`` inside a size-1 named ``vmap`` per name (the axes bound to this call)."""
    for name in names:
        fn = jax.vmap(fn, axis_name=name)
    out = fn(*jax.tree_util.tree_map(lambda a: a[(None,) * len(names)], args))
    return jax.tree_util.tree_map(lambda a: a[(0,) * len(names)], out)


def _linen_axis_names(init: Callable[..., Any]) -> tuple[str, ...]:
    """The ``axis_name`` of every linen module ``init`` calls (BatchNorm, GroupNorm, ...).

    Noted while tracing it (``jax.eval_shape``: nothing compiled); a call that reduces over a
    name not bound yet stops the trace there, after its module was noted, so the trace runs
    again with the names found so far bound until no new name appears.
    """
    import flax.linen as nn

    names: dict[str, None] = {}

    def record(next_fun: Any, args: Any, kwargs: Any, context: Any) -> Any:
        names.update(dict.fromkeys(_axis_list(context.module)))
        return next_fun(*args, **kwargs)

    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    for _ in range(8):
        seen = len(names)
        with contextlib.suppress(Exception), nn.intercept_methods(record):
            jax.eval_shape(lambda k: _on_named_axes(init, tuple(names), k), key)
        if len(names) == seen:
            break
    return tuple(names)


def _adapt(cfg: Mapping[str, Any]) -> _Adapted:
    import flax.linen as nn
    from flax import nnx

    name = cfg["name"]
    factory, kwargs, sig = _factory(cfg)
    try:
        if sig is not None and "rngs" in sig.parameters:
            return _nnx_adapter(factory, kwargs, name)
        made = factory(**kwargs)
    except ModelError:
        raise
    except Exception as err:  # noqa: BLE001 - user code: one message, never a traceback
        raise ModelError(f"model {name!r}: building it raised {type(err).__name__}: {err}"
                         f"{_user_line(err)}") from err
    if isinstance(made, nn.Module):
        return _linen_adapter(made)
    if isinstance(made, nnx.Module):
        raise ModelError(f"model {name!r} returned an NNX module built with fixed rngs; let "
                         "the factory (or the class) take 'rngs' so every member draws its own "
                         "weights from its seed")
    if isinstance(made, tuple | list) and len(made) == 2 and all(map(callable, made)):
        return _pair_adapter(*made)
    raise ModelError(f"model {name!r}: the factory returned {type(made).__name__}; expected a "
                     "flax.linen.Module, a flax.nnx.Module (factory taking 'rngs') or an "
                     "(init, apply) pair")


def build(cfg: Mapping[str, Any]) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``(init, apply)`` in the engine's contract (``ModelError``: the factory failed)."""
    init, apply, _, _ = _build_cached(*_cache_key(cfg))
    return init, apply


# Abstract check (jax.eval_shape: no compile, no allocation)
def _user_line(err: BaseException) -> str:
    """``" (at file.py:12: source)"``: ``err``'s innermost frame of user code (not a library)."""
    skip = ("/jax/", "/jaxlib/", "/flax/", "/optax/", "/jaxmnist/", "/importlib/", "/functools",
            "/contextlib", "/inspect.py", "/site-packages/numpy/")
    found = None
    for frame in traceback.extract_tb(err.__traceback__):
        path = frame.filename.replace("\\", "/")
        if frame.filename.startswith("<") or any(s in path for s in skip):
            continue
        found = frame
    if found is None:
        return ""
    return f" (at {Path(found.filename).name}:{found.lineno}: {(found.line or '').strip()})"


def _cache_key(cfg: Mapping[str, Any]) -> tuple[str, Callable[..., Any]]:
    return json.dumps(dict(cfg), sort_keys=True), resolve_factory(cfg["name"])


@functools.cache
def _check_cached(cfg_json: str, factory: Callable[..., Any]) -> None:
    cfg = json.loads(cfg_json)
    name = cfg["name"]
    init, _, calls, apply = _build_cached(cfg_json, factory)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    x = jax.ShapeDtypeStruct((_PROBE_BATCH, *IMAGE_SHAPE), jnp.uint8)
    where = "init(key)"
    try:
        params, state = jax.eval_shape(init, key)
        for train in (True, False):
            where = calls.splitlines()[0 if train else -1]
            logits, new_state = jax.eval_shape(
                functools.partial(apply, train=train), params, state, x,
                key=key if train else None)
            shape = getattr(logits, "shape", None)
            if shape != (_PROBE_BATCH, NUM_CLASSES):
                raise ModelError(f"model {name!r}: {where} returned "
                                 f"{type(logits).__name__} of shape {shape}; expected logits "
                                 f"of shape [batch, {NUM_CLASSES}] ([{_PROBE_BATCH}, "
                                 f"{NUM_CLASSES}] here); {CONVENTIONS}")
            if jax.tree_util.tree_structure(new_state) != jax.tree_util.tree_structure(state):
                raise ModelError(f"model {name!r}: {where} changed the structure of its state "
                                 "(variables other than params); a training step may update "
                                 "their values, not add or remove them")
    except ModelError:
        raise
    except Exception as err:  # noqa: BLE001 - user code: one message, never a traceback
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelError(f"model {name!r}: {where} raised {type(err).__name__}: {msg}"
                         f"{_user_line(err)}; {CONVENTIONS}") from err


def check(cfg: Mapping[str, Any]) -> None:
    """Builds a user model and traces init, a training and an evaluation call (``eval_shape``).

    Raises:
        ModelError: naming the model, the call made, the user's source line and the conventions.
    """
    _check_cached(*_cache_key(cfg))
