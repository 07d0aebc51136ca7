"""Shared pieces of the model zoo: input scaling, activations, initializers, dropout, validation.

Specs (names with optional parameters) are validated eagerly: a bad study fails before compiling.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxmnist.checks import is_number, rule

Array = jax.Array
Params = dict[str, Any]
Spec = str | Mapping[str, Any]
Row = tuple[str, tuple[int, ...], Any]  # a layer, its output shape without batch, its plan

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)


def to_unit_float(x: Array) -> Array:
    """Images as float32: uint8 pixels scaled to [0, 1], floats (already scaled) only cast.

    THE one place of the ``/255``: data stays uint8 on the device and every model calls this.
    """
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.integer):
        # Multiply by a float32 constant: one fused convert+mul, no float64 promotion.
        return x.astype(jnp.float32) * np.float32(1.0 / 255.0)
    return x.astype(jnp.float32)


def check_choice(value: Any, choices: Sequence[Any], what: str) -> None:
    """Raises ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{what}: {value!r} is not valid; valid choices are {list(choices)}")


def spec_name(spec: Spec, what: str) -> tuple[str, dict[str, Any]]:
    """Splits a spec (``"relu"`` or ``{"name": "leaky_relu", "alpha": 0.1}``) into name, kwargs."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        return spec["name"], {k: v for k, v in spec.items() if k != "name"}
    raise ValueError(f"{what}: expected a name or a dict with a 'name', got {spec!r}")


def _checked_spec(spec: Spec, what: str, params: Mapping[str, Sequence[str]],
                  aliases: Mapping[str, str]) -> tuple[str, dict[str, float]]:
    """A spec's canonical name and numeric parameters, once its name and keys are valid."""
    name, kwargs = spec_name(spec, what)
    check_choice(name, (*params, *aliases), what)
    name = aliases.get(name, name)
    allowed = params[name]
    if unknown := sorted(set(kwargs) - set(allowed)):
        raise ValueError(f"{what} {name!r}: unknown key(s) {unknown}; valid keys are "
                         f"{sorted(allowed)}")
    return name, {k: rule(is_number, f"{what} {name!r} {k}: expected a finite number")(v)
                  for k, v in kwargs.items()}


_ACTIVATIONS: dict[str, Callable[..., Array]] = {
    "linear": lambda x: x,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    # Softmax over the feature axis, as a hidden activation (S3 lists it per layer).
    "softmax": lambda x: jax.nn.softmax(x, axis=-1),
    "leaky_relu": lambda x, alpha=0.01: jnp.where(x >= 0, x, alpha * x),
    "elu": lambda x, alpha=1.0: jax.nn.elu(x, alpha),
    # Exact (erf) GELU, like Keras' default and PyTorch's nn.GELU(); not the tanh approximation.
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "swish": jax.nn.silu,
    "silu": jax.nn.silu,
}
_ACTIVATION_PARAMS = {n: ("alpha",) if n in ("leaky_relu", "elu") else () for n in _ACTIVATIONS}
ACTIVATIONS = tuple(_ACTIVATIONS)


def validate_activation(spec: Spec, what: str = "activation") -> Spec:
    """Returns an activation spec unchanged once valid (``leaky_relu``/``elu`` take ``alpha``)."""
    _checked_spec(spec, what, _ACTIVATION_PARAMS, {})
    return spec


def get_activation(spec: Spec) -> Callable[[Array], Array]:
    """Returns the activation function for a valid spec (see :func:`validate_activation`)."""
    name, kwargs = spec_name(spec, "activation")
    fn = _ACTIVATIONS[name]
    return functools.partial(fn, **{k: float(v) for k, v in kwargs.items()}) if kwargs else fn


# Std of a standard normal truncated to [-2, 2]; dividing by it keeps the variance exact.
_TRUNC_STD = 0.87962566103423978

_INIT_PARAMS: dict[str, tuple[str, ...]] = {
    "zeros": (), "uniform": ("low", "high"), "normal": ("mean", "std", "variance"),
    "glorot_uniform": (), "glorot_normal": (), "he_uniform": (), "he_normal": ()}
# Aliases: Glorot & Bengio proposed the uniform form, He et al. the normal one.
_INIT_ALIASES = {"zero": "zeros", "xavier": "glorot_uniform", "xavier_uniform": "glorot_uniform",
                 "xavier_normal": "glorot_normal", "he": "he_normal"}


def validate_init(spec: Spec, what: str = "init") -> Spec:
    """Returns an initializer spec unchanged once valid (names, parameters: docs/models.md)."""
    name, vals = _checked_spec(spec, what, _INIT_PARAMS, _INIT_ALIASES)
    if name == "uniform" and vals.get("low", -0.05) >= vals.get("high", 0.05):
        raise ValueError(f"{what} 'uniform': low must be < high, got {vals}")
    if name == "normal":
        if "std" in vals and "variance" in vals:
            raise ValueError(f"{what} 'normal': give 'std' or 'variance', not both")
        if vals.get("std", 1.0) < 0 or vals.get("variance", 1.0) < 0:
            raise ValueError(f"{what} 'normal': std/variance must be >= 0, got {vals}")
    return spec


def _from_uniform(v: Array, spec: Spec, fan_in: int, fan_out: int) -> Array:
    """Maps uniform draws ``v`` in (-1, 1) to ``spec``'s distribution by its inverse CDF.

    Normals are ``sqrt(2) * erfinv(v)``, as ``jax.random.normal`` makes them (docs/models.md).
    """
    name, kw = spec_name(spec, "init")
    name = _INIT_ALIASES.get(name, name)
    f32 = jnp.float32
    if name == "zeros":
        return jnp.zeros_like(v)
    if name == "uniform":
        low, high = float(kw.get("low", -0.05)), float(kw.get("high", 0.05))
        return f32(low) + f32(high - low) * (v + 1.0) * f32(0.5)
    if name in ("glorot_uniform", "he_uniform"):
        denom = fan_in + fan_out if name == "glorot_uniform" else fan_in
        return f32(math.sqrt(6.0 / denom)) * v
    if name == "normal":
        mean = float(kw.get("mean", 0.0))
        std = math.sqrt(kw["variance"]) if "variance" in kw else float(kw.get("std", 0.05))
        return f32(mean) + f32(std * math.sqrt(2.0)) * lax.erf_inv(v)
    # glorot_normal / he_normal: a standard normal truncated to [-2, 2] (inverse CDF restricted
    # to [Phi(-2), Phi(2)]), rescaled so the variance is exactly the target.
    var = 2.0 / (fan_in + fan_out) if name == "glorot_normal" else 2.0 / fan_in
    z = lax.erf_inv(v * f32(math.erf(math.sqrt(2.0)))) * f32(math.sqrt(2.0))
    return jnp.clip(z, -2.0, 2.0) * f32(math.sqrt(var) / _TRUNC_STD)


class ParamSpec(NamedTuple):
    """How to create one params leaf: its shape and an initializer spec or a constant."""

    shape: tuple[int, ...]
    init: Spec = "zeros"  # see validate_init; ignored when const is set
    fan_in: int = 1  # for variance-scaling initializers
    fan_out: int = 1
    const: float | None = None  # fill value (biases 0, RMSNorm scales 1) instead of a draw


def _is_spec(x: Any) -> bool:  # a plan's leaf
    return isinstance(x, ParamSpec)


def _is_constant(sp: ParamSpec) -> bool:
    name = spec_name(sp.init, "init")[0]
    return sp.const is not None or _INIT_ALIASES.get(name, name) == "zeros"


def plan_size(plan: Any) -> int:
    """The number of scalars a plan (``None``: none) creates."""
    return sum(math.prod(sp.shape) for sp in jax.tree_util.tree_leaves(plan, is_leaf=_is_spec))


def init_params(key: Array, plan: Any) -> Params:
    """Creates a params tree from a plan (a nested dict with :class:`ParamSpec` leaves).

    All random leaves come from ONE uniform draw, sliced per leaf: one PRNG call compiles much
    faster than one per layer (docs/models.md).
    """
    specs = jax.tree_util.tree_leaves(plan, is_leaf=_is_spec)
    sizes = [0 if _is_constant(sp) else math.prod(sp.shape) for sp in specs]
    total = sum(sizes)
    # In (-1, 1): the smallest float above -1 keeps erfinv finite, as in jax.random.normal.
    lo = np.nextafter(np.float32(-1.0), np.float32(0.0))
    v = jax.random.uniform(key, (total,), jnp.float32, lo, 1.0) if total else None
    offset, leaves = 0, []
    for sp, n in zip(specs, sizes, strict=True):
        if n == 0:
            leaves.append(jnp.full(sp.shape, sp.const or 0.0, jnp.float32))
            continue
        chunk = v[offset : offset + n].reshape(sp.shape)
        leaves.append(_from_uniform(chunk, sp.init, sp.fan_in, sp.fan_out))
        offset += n
    treedef = jax.tree_util.tree_structure(plan, is_leaf=_is_spec)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def dropout(x: Array, rate: float, *, train: bool, key: Array | None) -> Array:
    """Inverted dropout: in training zero each unit with prob. ``rate``, scale by 1/(1-rate).

    ``rate`` and ``train`` are static (eval and rate 0 compile to the identity); the key is
    traced, so every member of a grid has its own.
    """
    if not train or rate == 0.0:
        return x
    if key is None:
        raise ValueError("dropout needs a PRNG key when train=True (pass key=...)")
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x * jnp.asarray(1.0 / (1.0 - rate), x.dtype), jnp.zeros((), x.dtype))


def split_key(key: Array | None, n: int) -> list[Array | None]:
    """Splits ``key`` into ``n`` keys; ``None`` stays ``None`` (eval mode)."""
    return [None] * n if key is None else list(jax.random.split(key, n))


def param_count(params: Any) -> int:
    """Total number of scalars in a params tree (for a vmapped grid: all members together)."""
    return int(sum(np.prod(np.shape(p), dtype=np.int64) for p in jax.tree_util.tree_leaves(params)))


def _key_name(k: Any) -> str:  # one entry of a jax key path (dict key, attribute, index)
    return str(getattr(k, "key", getattr(k, "name", k)))


WEIGHT_NAMES: tuple[str, ...] = ("w", "kernel")
"""Which leaves are weights by default (penalties, histograms, the network drawing): ``w`` (the
zoo) and ``kernel`` (Flax); a user model may name its own (``weight_leaves`` in its config)."""


def is_weight_path(path: Any, names: Sequence[str] = WEIGHT_NAMES) -> bool:
    """True when a key path (or a ``"layer/leaf"`` string) ends in a weight leaf name."""
    if isinstance(path, str):
        return path.rpartition("/")[2] in names
    return _key_name(path[-1]) in names


def weight_mask(params: Any, names: Sequence[str] = WEIGHT_NAMES) -> Any:
    """A tree like ``params``, ``True`` at weight leaves (an ``optax.masked`` mask)."""
    return jax.tree_util.tree_map_with_path(lambda p, _: is_weight_path(p, names), params)


def weight_leaves(params: Any, names: Sequence[str] = WEIGHT_NAMES) -> list[Array]:
    """The weight leaves of ``params`` (what L1/L2 penalties act on)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return [leaf for path, leaf in flat if is_weight_path(path, names)]


def layer_paths(params: Any) -> dict[str, Array]:
    """A params tree as ``{"conv1/w": leaf, "fire2/squeeze/b": leaf, ...}`` (report names)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {"/".join(map(_key_name, path)): leaf for path, leaf in flat}
