"""Fast XLA:CPU convolutions for ANY JAX function, by rewriting its jaxpr: :func:`fast_cpu_convs`.

On XLA:CPU a ``lax.conv_general_dilated`` inside a loop body (``lax.scan``, ``lax.map``: how the
engine runs an epoch) is an order of magnitude slower than jitted alone (jax-ml/jax#12868): a Flax
``nnx.Conv`` CNN trains at ~90 images/s in ``lax.scan`` on 2 cores, ~1,000 jitted per step. The
zoo calls :mod:`jaxmnist.models.layers`' im2col kernels itself; user models (Flax ``nn.Conv``,
``nn.max_pool``) emit the primitives, which this interpreter replaces by the same kernels at
trace time (measurements: docs/performance.md, issue 19).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

from jaxmnist.models.layers import im2col_matmul, patches, tap_slices, window_max

__all__ = ["fast_cpu_convs", "rewrite_stats"]

F = TypeVar("F", bound=Callable[..., Any])

# Higher-order primitives whose ClosedJaxpr params are substituted by rewritten ones and the
# primitive re-bound with every other param unchanged (names across jax 0.4 .. 0.11).
_CLOSED_JAXPR_PARAMS = {
    "pjit": ("jaxpr",),
    "jit": ("jaxpr",),
    "closed_call": ("call_jaxpr",),
    "core_call": ("call_jaxpr",),
    "custom_jvp_call": ("call_jaxpr",),
    "custom_vjp_call": ("call_jaxpr",),
    "custom_vjp_call_jaxpr": ("fun_jaxpr",),
    "scan": ("jaxpr",),
    "while": ("cond_jaxpr", "body_jaxpr"),
    "cond": ("branches",),
}
_REMAT_NAMES = ("remat2", "checkpoint", "remat")


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def fast_cpu_convs(fn: F, *, backend: str | None = None) -> F:
    """Returns ``fn`` with its convolutions and max-pools rewritten for XLA:CPU.

    Each call traces ``fn`` to a jaxpr (array leaves traced; any other leaf, e.g. ``train=True``,
    is a static constant) and evaluates it with an interpreter that replaces:

    - ``conv_general_dilated`` of floating dtype with ``batch_group_count == 1`` (any dimension
      numbers, 1-3-D, strides, explicit or negative padding, input and kernel dilation, feature
      groups) by :func:`jaxmnist.models.layers.im2col_matmul` (depthwise: a sum of per-tap
      products; grouped: one batched matmul), equal to the primitive to float rounding;
    - ``reduce_window_max`` with window == strides, no dilation, padding >= 0 (``nn.max_pool``)
      by :func:`jaxmnist.models.layers.window_max` (~2.6x faster inside ``lax.scan``).

    Anything else binds unchanged (``batch_group_count > 1``: the kernel gradient of a grouped
    conv; integer or zero-size convs; dynamic shapes; average pools, which XLA:CPU runs fast).
    The interpreter recurses into ``jit``, ``closed_call``, ``scan``, ``while``, ``cond``,
    ``checkpoint`` and the primal of ``custom_jvp``/``custom_vjp`` functions. Take gradients
    outside (``jax.value_and_grad(fast_cpu_convs(loss))``); the result composes with ``jit``,
    ``vmap`` (a grid runs members one after another on CPU: the patch writes batch into a
    scatter), ``lax.scan`` and ``shard_map``.

    Args:
        fn: The function to transform.
        backend: Where it will run; default ``jax.default_backend()``, asked at the first call
            (so wrapping a model starts no backend). Not ``"cpu"``: ``fn`` runs unchanged (cuDNN
            and TPU convolutions are fast inside loops).

    Returns:
        A function with ``fn``'s signature and results.
    """

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if (backend or jax.default_backend()) != "cpu":
            return fn(*args, **kwargs)
        return _trace_and_eval(fn, args, kwargs, _Stats())

    return wrapped  # type: ignore[return-value]


def rewrite_stats(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, int]:
    """Counts what :func:`fast_cpu_convs` rewrites in ``fn(*args, **kwargs)`` (a debug helper).

    Traces abstractly, on any backend; pass the untransformed ``fn``.

    Returns:
        ``{"conv", "max_pool", "conv_fallback", "max_pool_fallback", "subjaxpr"}``: equations
        rewritten, left as the original primitive, and higher-order equations rewritten inside.
    """
    stats = _Stats()
    dyn, rebuild = _split_static(args, kwargs)
    jax.eval_shape(lambda *d: _trace_and_eval(fn, *rebuild(d), stats), *dyn)
    return {k: stats.get(k, 0) for k in ("conv", "max_pool", "conv_fallback",
                                         "max_pool_fallback", "subjaxpr")}


_TARGETS = frozenset({"conv_general_dilated", "reduce_window_max"})
_Stats = collections.Counter  # equations rewritten (or not) by kind, for rewrite_stats


def _is_traced_leaf(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray | np.generic)


def _split_static(args: tuple, kwargs: dict) -> tuple[list, Callable[[Sequence], tuple]]:
    """The array leaves of ``(args, kwargs)`` and a function putting new ones in their place."""
    leaves, treedef = jax.tree.flatten((args, kwargs))
    dyn_idx = [i for i, leaf in enumerate(leaves) if _is_traced_leaf(leaf)]

    def rebuild(dyn: Sequence[Any]) -> tuple:
        full = list(leaves)
        for i, d in zip(dyn_idx, dyn, strict=True):
            full[i] = d
        return jax.tree.unflatten(treedef, full)

    return [leaves[i] for i in dyn_idx], rebuild


def _trace_and_eval(fn: Callable[..., Any], args: tuple, kwargs: dict, stats: _Stats) -> Any:
    dyn, rebuild = _split_static(args, kwargs)

    def flat_fn(*d: Any) -> Any:
        a, k = rebuild(d)
        return fn(*a, **k)

    closed, out_shape = jax.make_jaxpr(flat_fn, return_shape=True)(*dyn)
    outs = _eval_jaxpr(closed.jaxpr, closed.consts, dyn, stats)
    return jax.tree.unflatten(jax.tree.structure(out_shape), outs)


def _eval_jaxpr(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any], stats: _Stats) -> list:
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, x in itertools.chain(zip(jaxpr.constvars, consts, strict=True),
                                zip(jaxpr.invars, args, strict=True)):
        env[v] = x
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        ctx = getattr(getattr(eqn, "ctx", None), "manager", None) or contextlib.nullcontext()
        with ctx:
            outs = _eval_eqn(eqn, invals, stats)
        if not eqn.primitive.multiple_results:
            outs = [outs]
        for v, x in zip(eqn.outvars, outs, strict=True):
            if not isinstance(v, jcore.DropVar):
                env[v] = x
    return [read(v) for v in jaxpr.outvars]


def _bind_original(eqn: Any, invals: Sequence[Any], params: dict | None = None) -> Any:
    bind = eqn.primitive.get_bind_params(eqn.params if params is None else params)
    # jax >= 0.5: a dict of params; older: (subfuns, params).
    subfuns, bind = bind if isinstance(bind, tuple) else ((), bind)
    return eqn.primitive.bind(*subfuns, *invals, **bind)


def _eval_eqn(eqn: Any, invals: Sequence[Any], stats: _Stats) -> Any:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
        out = _conv_rule(eqn, invals)
        stats["conv" if out is not None else "conv_fallback"] += 1
        if out is not None:
            return out
    elif name == "reduce_window_max":
        out = _pool_rule(eqn, invals)
        stats["max_pool" if out is not None else "max_pool_fallback"] += 1
        if out is not None:
            return out
    elif name in _CLOSED_JAXPR_PARAMS or name in _REMAT_NAMES:
        if _has_target(eqn):
            out = _higher_order_rule(eqn, invals, stats)
            if out is not None:
                stats["subjaxpr"] += 1
                return out
    return _bind_original(eqn, invals)


def _subjaxprs(params: dict) -> list:
    """The (open) jaxprs held by an equation's params, in tuples too (``cond`` branches)."""
    out = []
    stack = list(params.values())
    while stack:
        v = stack.pop()
        if isinstance(v, jcore.ClosedJaxpr):
            out.append(v.jaxpr)
        elif isinstance(v, jcore.Jaxpr):
            out.append(v)
        elif isinstance(v, tuple | list):
            stack.extend(v)
    return out


def _has_target(eqn: Any) -> bool:
    """Whether a sub-jaxpr of ``eqn`` (at any depth) holds an equation to rewrite."""

    def walk(jaxpr: Any) -> bool:
        return any(e.primitive.name in _TARGETS or any(walk(j) for j in _subjaxprs(e.params))
                   for e in jaxpr.eqns)

    return any(walk(j) for j in _subjaxprs(eqn.params))


def _rewrite_closed(closed: Any, stats: _Stats) -> Any:
    """A ClosedJaxpr with the same in/out avals whose body is the rewritten one."""
    in_avals = [v.aval for v in closed.jaxpr.invars]
    if not all(hasattr(a, "shape") and hasattr(a, "dtype") for a in in_avals):
        return None  # tokens and other non-array inputs
    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=getattr(a, "weak_type", False))
             for a in in_avals]
    new = jax.make_jaxpr(lambda *a: _eval_jaxpr(closed.jaxpr, closed.consts, a, stats))(*specs)
    if [v.aval for v in new.jaxpr.outvars] != [v.aval for v in closed.jaxpr.outvars]:
        return None
    return new


def _higher_order_rule(eqn: Any, invals: Sequence[Any], stats: _Stats) -> Any:
    name = eqn.primitive.name
    if name in _REMAT_NAMES:
        p = eqn.params
        if p.get("differentiated") or set(p) - {"jaxpr", "prevent_cse", "differentiated",
                                                "policy"}:
            return None
        inner = p["jaxpr"]

        def body(*a: Any) -> list:
            return _eval_jaxpr(inner, (), a, stats)

        return jax.checkpoint(body, prevent_cse=p["prevent_cse"], policy=p["policy"])(*invals)
    params = dict(eqn.params)
    for key in _CLOSED_JAXPR_PARAMS[name]:
        old = params.get(key)
        if old is None:
            return None
        if isinstance(old, tuple):
            new = tuple(_rewrite_closed(c, stats) for c in old)
            if any(c is None for c in new):
                return None
        else:
            new = _rewrite_closed(old, stats)
            if new is None:
                return None
        params[key] = new
    return _bind_original(eqn, invals, params)


# --------------------------------------------------------------------------------------------
# Convolution as im2col
# --------------------------------------------------------------------------------------------


def _conv_rule(eqn: Any, invals: Sequence[Any]) -> Any:
    lhs, rhs = invals
    p = eqn.params
    out_aval = eqn.outvars[0].aval
    if p["batch_group_count"] != 1:
        return None
    dtypes = (lhs.dtype, rhs.dtype, out_aval.dtype)
    if not all(jnp.issubdtype(d, jnp.floating) for d in dtypes):
        return None
    shapes = (lhs.shape, rhs.shape, out_aval.shape)
    if not all(isinstance(d, int | np.integer) for s in shapes for d in s):
        return None  # symbolic (shape-polymorphic) dimensions
    if 0 in out_aval.shape or 0 in lhs.shape or 0 in rhs.shape:
        return None
    lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
    out = _conv_im2col(
        lhs, rhs,
        lhs_spec=tuple(lhs_spec), rhs_spec=tuple(rhs_spec), out_spec=tuple(out_spec),
        strides=tuple(p["window_strides"]), padding=tuple(tuple(x) for x in p["padding"]),
        lhs_dilation=tuple(p["lhs_dilation"]), rhs_dilation=tuple(p["rhs_dilation"]),
        groups=p["feature_group_count"], precision=p["precision"],
        preferred=p["preferred_element_type"],
    )
    if out.shape != out_aval.shape:
        return None  # not expected; the original primitive is the reference
    return out.astype(out_aval.dtype)


def _conv_im2col(lhs: jax.Array, rhs: jax.Array, *, lhs_spec: tuple, rhs_spec: tuple,
                 out_spec: tuple, strides: tuple, padding: tuple, lhs_dilation: tuple,
                 rhs_dilation: tuple, groups: int, precision: Any, preferred: Any) -> jax.Array:
    nsp = len(lhs_spec) - 2
    # Activations to [N, *spatial, C], kernel to [*spatial, I, O] (no-ops when already so).
    x = lax.transpose(lhs, (lhs_spec[0], *lhs_spec[2:], lhs_spec[1]))
    w = lax.transpose(rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0]))
    ks = w.shape[:nsp]
    cin, cout = x.shape[-1], w.shape[-1]
    cg, og = w.shape[-2], cout // groups
    # Explicit padding (possibly negative) and input dilation in one lax.pad.
    if any(lo or hi for lo, hi in padding) or any(d != 1 for d in lhs_dilation):
        cfg = [(0, 0, 0), *[(lo, hi, d - 1) for (lo, hi), d in
                            zip(padding, lhs_dilation, strict=True)], (0, 0, 0)]
        x = lax.pad(x, jnp.zeros((), x.dtype), cfg)
    outs = tuple((size - (k - 1) * d - 1) // s + 1 for size, k, d, s in
                 zip(x.shape[1:-1], ks, rhs_dilation, strides, strict=True))
    taps = int(np.prod(ks))
    n = x.shape[0]
    if groups == 1:
        y = im2col_matmul(x, w.reshape(taps * cin, cout), (ks, strides, rhs_dilation, outs),
                          precision, preferred)
    elif cg == 1:
        # Depthwise (channel multiplier og): a sum over taps of elementwise products.
        dtype = preferred or jnp.result_type(x.dtype, w.dtype)
        wt = w.reshape(taps, groups, og).astype(dtype)
        y = None
        for t, col in enumerate(tap_slices(x, ks, strides, rhs_dilation, outs)):
            term = col.astype(dtype)[..., None] * wt[t]
            y = term if y is None else y + term
        y = y.reshape(n, *outs, cout)
    else:
        # Grouped: one batched matmul over the groups.
        pt = patches(x, ks, strides, rhs_dilation, outs).reshape(-1, taps, groups, cg)
        wg = w.reshape(taps, cg, groups, og)
        y = lax.dot_general(pt, wg, (((1, 3), (0, 1)), ((2,), (2,))), precision=precision,
                            preferred_element_type=preferred)  # [G, M, og]
        y = lax.transpose(y, (1, 0, 2)).reshape(n, *outs, cout)
    # [N, *spatial, O] to the requested output layout.
    perm = [0] * (nsp + 2)
    perm[out_spec[0]] = 0
    perm[out_spec[1]] = nsp + 1
    for i in range(nsp):
        perm[out_spec[2 + i]] = 1 + i
    return lax.transpose(y, tuple(perm))


# --------------------------------------------------------------------------------------------
# Max-pool (window == stride) as reshape + max
# --------------------------------------------------------------------------------------------


def _pool_rule(eqn: Any, invals: Sequence[Any]) -> Any:
    """A window == stride ``reduce_window_max`` as :func:`layers.window_max` (else None)."""
    (x,) = invals
    p = eqn.params
    win, strides, pads = tuple(p["window_dimensions"]), tuple(p["window_strides"]), p["padding"]
    pads = tuple(tuple(q) for q in pads)
    if win != strides or any(d != 1 for d in (*p["base_dilation"], *p["window_dilation"])):
        return None
    if not jnp.issubdtype(x.dtype, jnp.floating) or any(lo < 0 or hi < 0 for lo, hi in pads):
        return None
    if not all(isinstance(d, int | np.integer) for d in x.shape) or 0 in x.shape:
        return None
    outs = tuple((s + lo + hi) // w for s, (lo, hi), w in zip(x.shape, pads, win, strict=True))
    if int(np.prod(win)) > 64 or tuple(eqn.outvars[0].aval.shape) != outs or 0 in outs:
        return None
    return window_max(x, win, pads)
