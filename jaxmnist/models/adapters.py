"""Bring-your-own models: Flax linen, Flax NNX or a plain ``(init, apply)`` pair -> the contract.

A model config names a user model by import path or by a registered name; every other key is a
keyword argument of the factory (JSON values: they are part of the group's static config)::

    {"name": "my_pkg.nets:make_cnn", "width": 64}          # module on sys.path
    {"name": "path/to/nets.py:CNN"}                        # a file, anywhere (a class works)
    {"name": "my_cnn"}                                     # @jaxmnist.models.register("my_cnn")
    {"name": "...", "weight_leaves": ["kernel"]}           # optional: which leaves are weights
    {"name": "...", "cpu_convs": False}                    # optional: keep XLA:CPU's own convs

What the factory returns decides the adapter; each accepts what the Flax docs and examples write:

* a ``flax.linen.Module`` (``factory(**kwargs)``): called as ``module.apply(variables, x, ...)``
  with its mode flag when ``__call__`` has one: ``train`` / ``training`` / ``is_training``
  (True in training steps) or ``deterministic`` / ``use_running_average`` (False in training
  steps). Dropout draws from the ``"dropout"`` RNG. Every variable collection other than
  ``params`` (``batch_stats``, ...) is the member's *state*: ``mutable`` in training steps,
  read as is in evaluation.
* a ``flax.nnx.Module``: the factory (or the class itself) takes ``rngs``; each member builds
  it from ``nnx.Rngs(key)`` of its own seed. The module is split once (``nnx.split``: graph
  definition, ``nnx.Param``, RNG streams, everything else) and merged in each traced call; it
  is switched with ``model.train()`` / ``model.eval()`` and called with ``rngs=`` when
  ``__call__`` takes ``rngs`` (positional or keyword, as Flax's ``examples/mnist`` CNN does)
  and with a mode flag as for linen. Streams the module holds itself (``nnx.Dropout(rate,
  rngs=rngs)``) are re-seeded in every training step from the member's step key, so dropout
  draws depend on the seed, epoch and step alone (a resumed run draws the same numbers).
  ``nnx.BatchStat`` and every other non-``Param`` variable is the member's state.
* a pair ``(init, apply)``: stateless ``init(key) -> params`` with ``apply(params, x, *, train,
  key) -> logits``, or, when ``apply`` has a parameter named ``state``, the engine's own
  contract ``init(key) -> (params, state)`` with ``apply(params, state, x, *, train, key) ->
  (logits, new_state)``.

Every adapter produces the engine's contract: ``init(key) -> (params, state)`` (vmappable) and
``apply(params, state, x, *, train, key=None) -> (logits [B, 10], new_state)``; params and state
are plain nested dicts. User code always receives float32 images in [0, 1] of shape
``[B, 28, 28, 1]`` (the uint8 -> float scaling happens here once). :func:`check` evaluates both
abstractly (``jax.eval_shape``: nothing is compiled or allocated) so that a model that cannot be
called, raises, or returns the wrong shape is reported while the study is validated.

On XLA:CPU the adapted ``apply`` goes through :func:`jaxmnist.models.cpu_kernels.fast_cpu_convs`:
its convolutions (``nn.Conv``, ``nnx.Conv``, any ``lax.conv_general_dilated``) and window ==
stride max-pools are rewritten at trace time into the im2col matmuls the zoo uses, because
XLA:CPU runs a convolution inside the engine's ``lax.scan`` an order of magnitude slower than
alone (jax-ml/jax#12868; ``benchmarks/conv_rewrite.py``). ``"cpu_convs": False`` in the model
config turns it off. On GPU/TPU the model's own convolutions run unchanged.
"""

from __future__ import annotations

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
from jaxmnist.models.common import IMAGE_SHAPE, NUM_CLASSES, WEIGHT_NAMES, to_unit_float

_REGISTERED: dict[str, Callable[..., Any]] = {}
RESERVED_KEYS = ("name", "weight_leaves", "cpu_convs")

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


class ModelError(ValueError):
    """A user model cannot be built or called the way jaxmnist calls it (one clear message)."""


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
    """``fn``'s call signature; for a class, its ``__init__`` without ``self``.

    Flax's module metaclasses hide a class's own signature behind ``*args, **kwargs``.
    """
    try:
        if inspect.isclass(fn):
            sig = inspect.signature(fn.__init__)
            return sig.replace(parameters=list(sig.parameters.values())[1:])
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _wants_rngs(factory: Callable[..., Any]) -> bool:
    sig = _signature(factory)
    return sig is not None and "rngs" in sig.parameters


def _user_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in RESERVED_KEYS}


def validate(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Checks a user model config: the factory resolves and accepts the keyword arguments.

    Returns the config unchanged (as a dict). Nothing is built; :func:`check` calls the model.

    Raises:
        ValueError: what is wrong and how to fix it.
    """
    name = cfg["name"]
    factory = resolve_factory(name)
    kwargs = _user_kwargs(cfg)
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
    if not isinstance(cfg.get("cpu_convs", True), bool):
        raise ValueError(f"model {name!r}: 'cpu_convs' must be true or false, "
                         f"got {cfg['cpu_convs']!r}")
    leaves = cfg.get("weight_leaves", list(WEIGHT_NAMES))
    if not (isinstance(leaves, list | tuple) and all(isinstance(s, str) for s in leaves)):
        raise ValueError(f"model {name!r}: 'weight_leaves' must be a list of leaf names, "
                         f"got {leaves!r}")
    return dict(cfg)


# --------------------------------------------------------------------------------------------
# Calling conventions
# --------------------------------------------------------------------------------------------


def _call_params(module: Any) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):
        return {}


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


def _linen_adapter(module: Any) -> tuple[Callable[..., Any], Callable[..., Any], str]:
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

    return init, apply, "\n".join(_describe_call("linen", params, t) for t in (True, False))


def _nnx_adapter(factory: Callable[..., Any], kwargs: Mapping[str, Any],
                 name: str) -> tuple[Callable[..., Any], Callable[..., Any], str]:
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
        values = []
        for i, leaf in enumerate(leaves):
            if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                values.append(jax.random.wrap_key_data(jax.random.fold_in(key, i)))
            else:
                values.append(jnp.zeros(leaf.shape, leaf.dtype))
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

    return init, apply, "\n".join(_describe_call("nnx", call, t) for t in (True, False))


def _pair_adapter(user_init: Callable[..., Any],
                  user_apply: Callable[..., Any]) -> tuple[Callable[..., Any], Callable[..., Any],
                                                           str]:
    sig = _signature(user_apply)
    if sig is not None and "state" in sig.parameters:
        def apply(params: Any, state: Any, x: Any, *, train: bool, key: Any = None):
            return user_apply(params, state, to_unit_float(x), train=train, key=key)

        return user_init, apply, "init(key) -> (params, state); apply(params, state, x, " \
            "train=..., key=...) -> (logits, new_state)"

    def init(key: Any) -> tuple[Any, Any]:
        return user_init(key), {}

    def stateless(params: Any, state: Any, x: Any, *, train: bool, key: Any = None):
        return user_apply(params, to_unit_float(x), train=train, key=key), state

    return init, stateless, "init(key) -> params; apply(params, x, train=..., key=...) -> logits"


@functools.cache
def _build_cached(cfg_json: str, factory: Callable[..., Any]) -> tuple[
        Callable[..., Any], Callable[..., Any], str, Callable[..., Any]]:
    # Keyed by the factory object too: a name registered again (a class redefined in a
    # notebook) builds anew; holding the object here means its identity is never reused.
    cfg = json.loads(cfg_json)
    init, apply, calls = _adapt(cfg)
    # The plain apply last: the check traces it (the rewrite keeps shapes, and asking which
    # backend runs it would start one while a study is validated).
    return init, _fast_on_cpu(cfg, apply), calls, apply


def _adapt(cfg: Mapping[str, Any]) -> tuple[Callable[..., Any], Callable[..., Any], str]:
    import flax.linen as nn
    from flax import nnx

    name = cfg["name"]
    factory = resolve_factory(name)
    kwargs = _user_kwargs(cfg)
    try:
        if _wants_rngs(factory):
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
    """Returns ``(init, apply)`` in the engine's contract for a user model config.

    Raises:
        ModelError: the factory raised, or returned something that is not a model.
    """
    init, apply, _, _ = _build_cached(*_cache_key(cfg))
    return init, apply


def _fast_on_cpu(cfg: Mapping[str, Any], apply: Callable[..., Any]) -> Callable[..., Any]:
    """``apply`` with im2col convolutions on XLA:CPU unless the config says ``cpu_convs: False``."""
    if cfg.get("cpu_convs", True) is False:
        return apply
    from jaxmnist.models.cpu_kernels import fast_cpu_convs

    return fast_cpu_convs(apply)


def weight_names(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """The leaf names that count as weights for this model (penalties, histograms, drawing)."""
    return tuple(cfg.get("weight_leaves", WEIGHT_NAMES))


# --------------------------------------------------------------------------------------------
# Abstract check (jax.eval_shape: no compile, no allocation)
# --------------------------------------------------------------------------------------------


def _user_line(err: BaseException) -> str:
    """``" (at file.py:12: source)"`` for the innermost frame of user code in ``err``'s traceback.

    User code is any frame outside jax, flax, optax, jaxmnist and the standard library.
    """
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
    """Builds a user model and evaluates init, a training call and an evaluation call abstractly.

    ``jax.eval_shape`` traces the calls exactly as the engine makes them, without compiling or
    allocating anything, so a study with a model that cannot be called, raises, or returns
    something other than logits ``[batch, 10]`` fails while it is validated.

    Raises:
        ModelError: one message naming the model, the call that was made, the user's source
            line (when the error came from user code) and the accepted calling conventions.
    """
    _check_cached(*_cache_key(cfg))
