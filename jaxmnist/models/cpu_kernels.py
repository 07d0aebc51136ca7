"""Fast XLA:CPU convolutions for ANY JAX function, by rewriting its jaxpr: :func:`fast_cpu_convs`.

On XLA:CPU a convolution inside a loop body (how the engine runs an epoch) is an order of
magnitude slower than jitted alone (jax-ml/jax#12868). User models (Flax ``nn.Conv``,
``nn.max_pool``) emit the primitives, which this interpreter replaces at trace time by the zoo's
kernels (:mod:`jaxmnist.models.layers`; docs/byo.md, docs/performance.md, issue 19).
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
    "pjit": ("jaxpr",), "jit": ("jaxpr",), "closed_call": ("call_jaxpr",),
    "core_call": ("call_jaxpr",), "custom_jvp_call": ("call_jaxpr",),
    "custom_vjp_call": ("call_jaxpr",), "custom_vjp_call_jaxpr": ("fun_jaxpr",),
    "scan": ("jaxpr",), "while": ("cond_jaxpr", "body_jaxpr"), "cond": ("branches",)}
_REMAT_NAMES = ("remat2", "checkpoint", "remat")


def fast_cpu_convs(fn: F, *, backend: str | None = None) -> F:
    """Returns ``fn`` with its convolutions and max-pools rewritten for XLA:CPU.

    Each call traces ``fn`` (array leaves traced, the rest static) and evaluates the jaxpr with
    floating convolutions and window == stride max-pools replaced; what it covers: docs/byo.md.
    Take gradients outside (``jax.value_and_grad(fast_cpu_convs(loss))``). ``backend`` (default
    ``jax.default_backend()``, asked at the first call) other than ``"cpu"``: ``fn`` unchanged.
    """

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if (backend or jax.default_backend()) != "cpu":
            return fn(*args, **kwargs)
        return _trace_and_eval(fn, args, kwargs, _Stats())

    return wrapped  # type: ignore[return-value]


def rewrite_stats(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, int]:
    """Counts what :func:`fast_cpu_convs` rewrites in ``fn(*args, **kwargs)`` (a debug helper).

    Traces the untransformed ``fn`` abstractly, on any backend. Returns ``{"conv", "max_pool",
    "conv_fallback", "max_pool_fallback", "subjaxpr"}``: equations rewritten, left as the
    original primitive, and higher-order equations rewritten inside.
    """
    stats = _Stats()
    dyn, rebuild = _split_static(args, kwargs)
    jax.eval_shape(lambda *d: _trace_and_eval(fn, *rebuild(d), stats), *dyn)
    return {k: stats.get(k, 0) for k in ("conv", "max_pool", "conv_fallback",
                                         "max_pool_fallback", "subjaxpr")}


_RULES = {"conv_general_dilated": "conv", "reduce_window_max": "max_pool"}
_Stats = collections.Counter  # equations rewritten (or not) by kind, for rewrite_stats


def _split_static(args: tuple, kwargs: dict) -> tuple[list, Callable[[Sequence], tuple]]:
    """The array leaves of ``(args, kwargs)`` and a function putting new ones in their place."""
    leaves, treedef = jax.tree.flatten((args, kwargs))
    dyn_idx = [i for i, leaf in enumerate(leaves)
               if isinstance(leaf, jax.Array | np.ndarray | np.generic)]

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
    name, out = eqn.primitive.name, None
    if name in _RULES:
        kind = _RULES[name]
        out = (_conv_rule if kind == "conv" else _pool_rule)(eqn, invals)
        stats[kind if out is not None else f"{kind}_fallback"] += 1
    elif (name in _CLOSED_JAXPR_PARAMS or name in _REMAT_NAMES) and _has_target(eqn):
        out = _higher_order_rule(eqn, invals, stats)
        stats["subjaxpr"] += out is not None
    return out if out is not None else _bind_original(eqn, invals)


def _subjaxprs(params: dict) -> list:
    """The (open) jaxprs held by an equation's params, in tuples too (``cond`` branches)."""
    out, stack = [], list(params.values())
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
        return any(e.primitive.name in _RULES or any(walk(j) for j in _subjaxprs(e.params))
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
    same = [v.aval for v in new.jaxpr.outvars] == [v.aval for v in closed.jaxpr.outvars]
    return new if same else None


def _higher_order_rule(eqn: Any, invals: Sequence[Any], stats: _Stats) -> Any:
    name = eqn.primitive.name
    if name in _REMAT_NAMES:
        p = eqn.params
        if p.get("differentiated") or set(p) - {"jaxpr", "prevent_cse", "differentiated",
                                                "policy"}:
            return None
        return jax.checkpoint(lambda *a: _eval_jaxpr(p["jaxpr"], (), a, stats),
                              prevent_cse=p["prevent_cse"], policy=p["policy"])(*invals)
    params = dict(eqn.params)
    for key in _CLOSED_JAXPR_PARAMS[name]:
        old = params.get(key)
        if old is None:
            return None
        new = tuple(_rewrite_closed(c, stats) for c in (old if isinstance(old, tuple) else [old]))
        if any(c is None for c in new):
            return None
        params[key] = new if isinstance(old, tuple) else new[0]
    return _bind_original(eqn, invals, params)


def _conv_rule(eqn: Any, invals: Sequence[Any]) -> Any:
    """A ``conv_general_dilated`` as im2col (None: left to the primitive)."""
    lhs, rhs = invals
    p, out_aval = eqn.params, eqn.outvars[0].aval
    shapes = (lhs.shape, rhs.shape, out_aval.shape)
    if (p["batch_group_count"] != 1
            or not all(jnp.issubdtype(a.dtype, jnp.floating) for a in (lhs, rhs, out_aval))
            # symbolic (shape-polymorphic) or zero-size dimensions
            or not all(isinstance(d, int | np.integer) and d > 0 for s in shapes for d in s)):
        return None
    lhs_spec, rhs_spec, out_spec = (tuple(d) for d in p["dimension_numbers"])
    strides, dil, groups = tuple(p["window_strides"]), tuple(p["rhs_dilation"]), \
        p["feature_group_count"]
    precision, preferred = p["precision"], p["preferred_element_type"]
    nsp = len(lhs_spec) - 2
    # Activations to [N, *spatial, C], kernel to [*spatial, I, O] (no-ops when already so).
    x = lax.transpose(lhs, (lhs_spec[0], *lhs_spec[2:], lhs_spec[1]))
    w = lax.transpose(rhs, (*rhs_spec[2:], rhs_spec[1], rhs_spec[0]))
    ks, cin, cout = w.shape[:nsp], x.shape[-1], w.shape[-1]
    cg, og = w.shape[-2], cout // groups
    # Explicit padding (possibly negative) and input dilation in one lax.pad.
    if any(lo or hi for lo, hi in p["padding"]) or any(d != 1 for d in p["lhs_dilation"]):
        cfg = [(0, 0, 0), *[(lo, hi, d - 1) for (lo, hi), d in
                            zip(p["padding"], p["lhs_dilation"], strict=True)], (0, 0, 0)]
        x = lax.pad(x, jnp.zeros((), x.dtype), cfg)
    outs = tuple((size - (k - 1) * d - 1) // s + 1 for size, k, d, s in
                 zip(x.shape[1:-1], ks, dil, strides, strict=True))
    taps, n = int(np.prod(ks)), x.shape[0]
    if groups == 1:
        y = im2col_matmul(x, w.reshape(taps * cin, cout), (ks, strides, dil, outs), precision,
                          preferred)
    elif cg == 1:  # depthwise (channel multiplier og): a sum over taps of elementwise products
        dtype = preferred or jnp.result_type(x.dtype, w.dtype)
        wt = w.reshape(taps, groups, og).astype(dtype)
        y = None
        for t, col in enumerate(tap_slices(x, ks, strides, dil, outs)):
            term = col.astype(dtype)[..., None] * wt[t]
            y = term if y is None else y + term
        y = y.reshape(n, *outs, cout)
    else:  # grouped: one batched matmul over the groups
        pt = patches(x, ks, strides, dil, outs).reshape(-1, taps, groups, cg)
        y = lax.dot_general(pt, w.reshape(taps, cg, groups, og),
                            (((1, 3), (0, 1)), ((2,), (2,))), precision=precision,
                            preferred_element_type=preferred)  # [G, M, og]
        y = lax.transpose(y, (1, 0, 2)).reshape(n, *outs, cout)
    # [N, *spatial, O] to the requested output layout.
    y = lax.transpose(y, tuple(int(a) for a in np.argsort((out_spec[0], *out_spec[2:],
                                                            out_spec[1]))))
    if y.shape != out_aval.shape:
        return None  # not expected; the original primitive is the reference
    return y.astype(out_aval.dtype)


def _pool_rule(eqn: Any, invals: Sequence[Any]) -> Any:
    """A window == stride ``reduce_window_max`` as :func:`layers.window_max` (else None)."""
    (x,) = invals
    p = eqn.params
    win, strides = tuple(p["window_dimensions"]), tuple(p["window_strides"])
    pads = tuple(tuple(q) for q in p["padding"])
    if (win != strides or any(d != 1 for d in (*p["base_dilation"], *p["window_dilation"]))
            or not jnp.issubdtype(x.dtype, jnp.floating) or any(min(q) < 0 for q in pads)
            or not all(isinstance(d, int | np.integer) and d > 0 for d in x.shape)):
        return None
    outs = tuple((s + lo + hi) // w for s, (lo, hi), w in zip(x.shape, pads, win, strict=True))
    if int(np.prod(win)) > 64 or tuple(eqn.outvars[0].aval.shape) != outs or 0 in outs:
        return None
    return window_max(x, win, pads)
