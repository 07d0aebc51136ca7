"""Fast XLA:CPU convolutions for ANY JAX function, by rewriting its jaxpr: :func:`fast_cpu_convs`.

On XLA:CPU a ``lax.conv_general_dilated`` inside a loop body (``lax.scan``, ``lax.while_loop``,
``lax.map``: how the engine runs an epoch) is an order of magnitude slower than the same
convolution jitted alone (jax-ml/jax#12868): a Flax ``nnx.Conv`` CNN trains at ~1,000 images/s
jitted per step but ~90 images/s inside ``lax.scan`` on 2 cores. The zoo avoids it with
hand-written im2col convolutions (:mod:`jaxmnist.models.layers`); user models (Flax ``nn.Conv``
/ ``nnx.Conv``, ``nn.max_pool``) emit the primitive itself. :func:`fast_cpu_convs` traces the
function to a jaxpr and evaluates it with an interpreter that replaces

- every ``conv_general_dilated`` by an equivalent im2col formulation (strided slices of the
  padded/dilated input written into one patch matrix, then ONE matmul; depthwise convolutions
  as a sum of per-tap elementwise products; grouped ones as one batched matmul) with a
  hand-written backward pass (:func:`_im2col_matmul`), and
- every ``reduce_window_max`` whose window equals its stride (``nn.max_pool(x, (2, 2),
  strides=(2, 2))``, any padding >= 0) by a reshape + max, whose backward gives the whole
  cotangent to the first maximum of each window (what XLA's ``select_and_scatter_add`` does).

Everything else is bound unchanged. The rewrite happens at trace time, so the result composes
with ``jax.jit``, ``jax.grad``/``value_and_grad`` (taken AFTER the rewrite: the gradient never
sees a convolution), ``jax.vmap``, ``lax.scan``/``lax.map`` and ``shard_map``.
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


def fast_cpu_convs(
    fn: F,
    *,
    backend: str | None = None,
    max_pool: bool = True,
    sum_pool: bool = False,
    custom_vjp: bool = True,
) -> F:
    """Returns ``fn`` with its convolutions rewritten to im2col matmuls that XLA:CPU runs fast.

    ``fn`` is any JAX function (a model's apply: arrays/pytrees in, pytrees out). Each call of
    the returned function traces ``fn`` to a jaxpr with the call's arguments (array leaves are
    traced; every other leaf, e.g. ``train=True`` or a Python float, is a static constant, as
    with ``jax.jit``'s static arguments) and evaluates it with an interpreter that replaces:

    - ``lax.conv_general_dilated`` (Flax ``nn.Conv``/``nnx.Conv``/``ConvTranspose``, and any
      ``jax.lax`` conv) of floating dtype with ``batch_group_count == 1``: any
      ``dimension_numbers`` (transposed to NHWC/HWIO and back), 1-, 2- or N-D, window strides,
      explicit (also asymmetric or negative) padding, ``lhs_dilation``, ``rhs_dilation``,
      ``feature_group_count`` (grouped, depthwise); ``preferred_element_type`` and
      ``precision`` pass to the matmul. The result equals the primitive's to float rounding.
    - ``lax.reduce_window_max`` (``nn.max_pool``) with window == strides, no dilation, padding
      >= 0, when ``max_pool`` (inside ``lax.scan`` on 2 cores the reshape form trains ~2.6x
      faster than ``reduce_window`` + ``select_and_scatter_add``). Average pools
      (``reduce_window_sum``) are left alone unless ``sum_pool``: XLA:CPU runs them fast.

    Falls back to the original primitive (correct, just not rewritten) for anything else:
    ``batch_group_count > 1`` (only the kernel gradient of a grouped conv has it), integer
    convs, zero-size outputs, dynamic shapes. The interpreter recurses into ``jax.jit``
    (``pjit``), ``closed_call``, ``lax.scan``, ``lax.while_loop``, ``lax.cond``/``switch``,
    ``jax.checkpoint`` and the PRIMAL of ``jax.custom_jvp``/``jax.custom_vjp`` functions; a
    user-written derivative rule keeps its own code (wrap your ``fwd``/``bwd`` in
    ``fast_cpu_convs`` yourself if they convolve). Any other higher-order primitive is bound
    unchanged. Sub-jaxprs without a rewritable equation are never touched.

    ``jax.vmap`` of the result is correct, but the patch matrix's in-place writes
    (``dynamic_update_slice``, one pass instead of a ``concatenate``'s two) batch into a
    ``scatter``: on CPU run a grid's members one after another, as the engine does
    (``jaxmnist.engine.train.CPU_STRATEGY``), as for the zoo's own im2col convolutions.

    Only CPU: on any other backend ``fn`` itself is returned. cuDNN and TPU convolutions are
    fast kernels, inside loops too; whether ``vmap``-ed (grouped) convolutions beat sequential
    ones on GPU is an open question (jax-ml/jax#26568) this transform does not address.

    Gradients: take them OUTSIDE (``jax.value_and_grad(fast_cpu_convs(loss))``); the im2col
    conv has a custom VJP (two matmuls and a col2im, no convolution). ``fast_cpu_convs`` of an
    already-differentiated function rewrites the transposed convolutions too (they are
    ``conv_general_dilated`` with ``lhs_dilation``), except the kernel gradient of a grouped
    conv (``batch_group_count > 1``).

    Args:
        fn: the function to transform.
        backend: ``"cpu"``, ``"gpu"``, ``"tpu"``...; defaults to ``jax.default_backend()`` at
            the time of this call.
        max_pool: also rewrite window == stride ``reduce_window_max``.
        sum_pool: also rewrite window == stride ``reduce_window_sum`` (average pools) as a
            reshape + sum (off by default: no faster inside ``lax.scan`` on XLA:CPU,
            benchmarks/conv_rewrite.py ``--extra``).
        custom_vjp: give the im2col matmul its hand-written backward pass (default); False
            leaves its gradient to autodiff (kept for measurements).

    Returns:
        a function with ``fn``'s signature and results (``fn`` itself when not on CPU).
    """
    backend = backend or _default_backend()
    if backend != "cpu":
        return fn
    opts = _Options(max_pool=max_pool, sum_pool=sum_pool, custom_vjp=custom_vjp)

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return _trace_and_eval(fn, args, kwargs, opts)

    return wrapped  # type: ignore[return-value]


def rewrite_stats(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, int]:
    """Counts what :func:`fast_cpu_convs` rewrites in ``fn(*args, **kwargs)`` (a debug helper).

    Traces abstractly (no computation), with :func:`fast_cpu_convs`' defaults, on any backend
    (the rewrite is forced to CPU mode). Pass the untransformed ``fn``.

    Returns:
        ``{"conv": n, "max_pool": n, "conv_fallback": n, "max_pool_fallback": n,
        "subjaxpr": n}``: equations rewritten, equations left as the original primitive (an
        unsupported case), and higher-order equations whose sub-jaxprs were rewritten
        (``jit``, ``scan``, ``cond``...).
    """
    opts = _Options(max_pool=True, custom_vjp=True)
    dyn, rebuild = _split_static(args, kwargs)
    jax.eval_shape(lambda *d: _trace_and_eval(fn, *rebuild(d), opts), *dyn)
    keys = ("conv", "max_pool", "conv_fallback", "max_pool_fallback", "subjaxpr")
    return {k: opts.stats.get(k, 0) for k in keys}


# --------------------------------------------------------------------------------------------
# Tracing and the interpreter
# --------------------------------------------------------------------------------------------


def _default_backend() -> str:
    return jax.default_backend()


class _Options:
    def __init__(self, *, max_pool: bool, custom_vjp: bool, sum_pool: bool = False) -> None:
        self.max_pool = max_pool
        self.custom_vjp = custom_vjp
        self.stats: collections.Counter[str] = collections.Counter()
        self.pool_prims = frozenset(
            (["reduce_window_max"] if max_pool else []) + (["reduce_window_sum"] if sum_pool
                                                           else []))
        self.targets = frozenset({"conv_general_dilated"} | self.pool_prims)


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


def _trace_and_eval(fn: Callable[..., Any], args: tuple, kwargs: dict, opts: _Options) -> Any:
    dyn, rebuild = _split_static(args, kwargs)

    def flat_fn(*d: Any) -> Any:
        a, k = rebuild(d)
        return fn(*a, **k)

    closed, out_shape = jax.make_jaxpr(flat_fn, return_shape=True)(*dyn)
    outs = _eval_jaxpr(closed.jaxpr, closed.consts, dyn, opts)
    return jax.tree.unflatten(jax.tree.structure(out_shape), outs)


def _eval_jaxpr(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any], opts: _Options) -> list:
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
            outs = _eval_eqn(eqn, invals, opts)
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


def _eval_eqn(eqn: Any, invals: Sequence[Any], opts: _Options) -> Any:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
        out = _conv_rule(eqn, invals, opts)
        opts.stats["conv" if out is not None else "conv_fallback"] += 1
        if out is not None:
            return out
    elif name in opts.pool_prims:
        out = _pool_rule(eqn, invals)
        kind = "max_pool" if name == "reduce_window_max" else "sum_pool"
        opts.stats[kind if out is not None else f"{kind}_fallback"] += 1
        if out is not None:
            return out
    elif name in _CLOSED_JAXPR_PARAMS or name in _REMAT_NAMES:
        if _has_target(eqn, opts):
            out = _higher_order_rule(eqn, invals, opts)
            if out is not None:
                opts.stats["subjaxpr"] += 1
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


def _has_target(eqn: Any, opts: _Options) -> bool:
    """Whether a sub-jaxpr of ``eqn`` (at any depth) holds an equation to rewrite."""

    def walk(jaxpr: Any) -> bool:
        return any(e.primitive.name in opts.targets or any(walk(j) for j in _subjaxprs(e.params))
                   for e in jaxpr.eqns)

    return any(walk(j) for j in _subjaxprs(eqn.params))


def _rewrite_closed(closed: Any, opts: _Options) -> Any:
    """A ClosedJaxpr with the same in/out avals whose body is the rewritten one."""
    in_avals = [v.aval for v in closed.jaxpr.invars]
    if not all(hasattr(a, "shape") and hasattr(a, "dtype") for a in in_avals):
        return None  # tokens and other non-array inputs
    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=getattr(a, "weak_type", False))
             for a in in_avals]
    new = jax.make_jaxpr(lambda *a: _eval_jaxpr(closed.jaxpr, closed.consts, a, opts))(*specs)
    if [v.aval for v in new.jaxpr.outvars] != [v.aval for v in closed.jaxpr.outvars]:
        return None
    return new


def _higher_order_rule(eqn: Any, invals: Sequence[Any], opts: _Options) -> Any:
    name = eqn.primitive.name
    if name in _REMAT_NAMES:
        p = eqn.params
        if p.get("differentiated") or set(p) - {"jaxpr", "prevent_cse", "differentiated",
                                                "policy"}:
            return None
        inner = p["jaxpr"]

        def body(*a: Any) -> list:
            return _eval_jaxpr(inner, (), a, opts)

        return jax.checkpoint(body, prevent_cse=p["prevent_cse"], policy=p["policy"])(*invals)
    params = dict(eqn.params)
    for key in _CLOSED_JAXPR_PARAMS[name]:
        old = params.get(key)
        if old is None:
            return None
        if isinstance(old, tuple):
            new = tuple(_rewrite_closed(c, opts) for c in old)
            if any(c is None for c in new):
                return None
        else:
            new = _rewrite_closed(old, opts)
            if new is None:
                return None
        params[key] = new
    return _bind_original(eqn, invals, params)


# --------------------------------------------------------------------------------------------
# Convolution as im2col
# --------------------------------------------------------------------------------------------


def _conv_rule(eqn: Any, invals: Sequence[Any], opts: _Options) -> Any:
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
        preferred=p["preferred_element_type"], custom_vjp=opts.custom_vjp,
    )
    if out.shape != out_aval.shape:
        return None  # not expected; the original primitive is the reference
    return out.astype(out_aval.dtype)


def _tap_slices(x: jax.Array, ks: Sequence[int], strides: Sequence[int],
                dil: Sequence[int], outs: Sequence[int]) -> list[jax.Array]:
    """One strided slice ``[N, *outs, C]`` of ``x`` ``[N, *spatial, C]`` per kernel tap."""
    n, c = x.shape[0], x.shape[-1]
    cols = []
    for tap in itertools.product(*(range(k) for k in ks)):
        start = [t * d for t, d in zip(tap, dil, strict=True)]
        limit = [s + (o - 1) * st + 1 for s, o, st in zip(start, outs, strides, strict=True)]
        cols.append(lax.slice(x, (0, *start, 0), (n, *limit, c), (1, *strides, 1)))
    return cols


def _patches(x: jax.Array, ks: Sequence[int], strides: Sequence[int], dil: Sequence[int],
             outs: Sequence[int]) -> jax.Array:
    """The patch tensor ``[N, *outs, T*C]``, feature order (taps row-major, then channel).

    Written tap by tap into one buffer (``dynamic_update_slice``, in place): XLA:CPU runs a
    ``concatenate`` of the slices as two passes over the T-times larger matrix.
    """
    cols = _tap_slices(x, ks, strides, dil, outs)
    if len(cols) == 1:
        return cols[0]
    c = x.shape[-1]
    buf = jnp.zeros((*cols[0].shape[:-1], len(cols) * c), x.dtype)
    zeros = (0,) * (buf.ndim - 1)
    for t, col in enumerate(cols):
        buf = lax.dynamic_update_slice(buf, col, (*zeros, t * c))
    return buf


def _col2im(dp: jax.Array, xp_shape: tuple, ks: Sequence[int], strides: Sequence[int],
            dil: Sequence[int], outs: Sequence[int]) -> jax.Array:
    """The transpose of :func:`_patches`: each tap's cotangent slab summed onto the input grid.

    Separable, like :func:`jaxmnist.models.layers._col2im`: for each tap of the first spatial
    axis, the col2im of the remaining axes (recursively), then ONE 1-D pad along the first
    axis (its stride as interior padding), summed over the taps. XLA:CPU vectorises 1-D pads
    over channels and fuses the sums; autodiff's transpose (one sum of T multi-axis pads)
    and the innermost-axis-first order measured 1.2-1.4x slower for a 3x3 conv in
    ``lax.scan``.
    """
    nsp = len(ks)
    a = dp.reshape(xp_shape[0], *outs, -1, xp_shape[-1])  # [N, *outs, T, C]

    def slab(tap: tuple[int, ...]) -> jax.Array:
        return lax.index_in_dim(a, int(np.ravel_multi_index(tap, ks)), axis=1 + nsp,
                                keepdims=False)

    def stage(tap: tuple[int, ...]) -> jax.Array:
        i = len(tap)
        if i == nsp:
            return slab(tap)
        size, k, d, s, o = xp_shape[1 + i], ks[i], dil[i], strides[i], outs[i]
        acc = None
        for j in range(k):
            sub = stage((*tap, j))  # the col2im of the remaining axes
            lo = j * d
            cfg = [(0, 0, 0)] * sub.ndim
            cfg[1 + i] = (lo, size - (lo + (o - 1) * s + 1), s - 1)
            term = lax.pad(sub, jnp.zeros((), sub.dtype), cfg)
            acc = term if acc is None else acc + term
        return acc

    return stage(())


def _im2col_matmul(xp: jax.Array, w2: jax.Array, geom: tuple, precision: Any, preferred: Any,
                   custom_vjp: bool) -> jax.Array:
    """``patches(xp) @ w2`` as ``[N*prod(outs), T*C] @ [T*C, O]``, with a hand-written VJP.

    Returns ``[N, *outs, O]``. Autodiff's transpose of patches+dot forms ``dW = P^T dY`` with
    ``dY`` physically transposed and the col2im as one sum of T multi-axis pads. The custom
    backward contracts the rows of ``P`` and ``dY`` directly (a ``dot_general`` over axis 0 of
    both: XLA transposes the small operand), computes ``dP = dY W^T`` in the standard
    ``A B^T`` form and runs :func:`_col2im` one axis at a time.
    """
    ks, strides, dil, outs = geom
    k, o = w2.shape

    def forward(xp: jax.Array, w2: jax.Array) -> jax.Array:
        pt = _patches(xp, ks, strides, dil, outs).reshape(-1, k)
        y = lax.dot(pt, w2, precision=precision, preferred_element_type=preferred)
        return y.reshape(xp.shape[0], *outs, o)

    if not custom_vjp:
        return forward(xp, w2)

    @jax.custom_vjp
    def f(xp: jax.Array, w2: jax.Array) -> jax.Array:
        return forward(xp, w2)

    def fwd(xp: jax.Array, w2: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        # Keep xp, not the T-times larger patch matrix: the backward rebuilds it (XLA merges
        # the two copies when forward and backward are in one program).
        return forward(xp, w2), (xp, w2)

    def bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
        xp, w2 = res
        g2 = g.reshape(-1, o)
        pt = _patches(xp, ks, strides, dil, outs).reshape(-1, k)
        dw = lax.dot_general(pt, g2, (((0,), (0,)), ((), ())), precision=precision,
                             preferred_element_type=w2.dtype)
        dp = lax.dot_general(g2, w2, (((1,), (1,)), ((), ())), precision=precision,
                             preferred_element_type=xp.dtype)
        return _col2im(dp, xp.shape, ks, strides, dil, outs), dw

    f.defvjp(fwd, bwd)
    return f(xp, w2)


def _conv_im2col(lhs: jax.Array, rhs: jax.Array, *, lhs_spec: tuple, rhs_spec: tuple,
                 out_spec: tuple, strides: tuple, padding: tuple, lhs_dilation: tuple,
                 rhs_dilation: tuple, groups: int, precision: Any, preferred: Any,
                 custom_vjp: bool) -> jax.Array:
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
        y = _im2col_matmul(x, w.reshape(taps * cin, cout), (ks, strides, rhs_dilation, outs),
                           precision, preferred, custom_vjp)
    elif cg == 1:
        # Depthwise (channel multiplier og): a sum over taps of elementwise products.
        dtype = preferred or jnp.result_type(x.dtype, w.dtype)
        wt = w.reshape(taps, groups, og).astype(dtype)
        y = None
        for t, col in enumerate(_tap_slices(x, ks, strides, rhs_dilation, outs)):
            term = col.astype(dtype)[..., None] * wt[t]
            y = term if y is None else y + term
        y = y.reshape(n, *outs, cout)
    else:
        # Grouped: one batched matmul over the groups.
        pt = _patches(x, ks, strides, rhs_dilation, outs).reshape(-1, taps, groups, cg)
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
    """Window == stride ``reduce_window_{max,sum}`` as a reshape + reduction (else None)."""
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
    if eqn.primitive.name == "reduce_window_sum":
        view, axes = _window_view(x, win, pads, 0.0)
        return jnp.sum(view, axis=axes)
    return _window_max(x, win, pads)


def _window_view(x: jax.Array, win: tuple, pads: tuple,
                 fill: float) -> tuple[jax.Array, tuple[int, ...]]:
    """``x`` padded with ``fill``, trimmed to whole windows, each pooled axis split in two.

    Axis ``d`` becomes ``(outs[d], win[d])``; returns the view and the window axes.
    """
    if any(lo or hi for lo, hi in pads):
        x = lax.pad(x, jnp.array(fill, x.dtype), [(lo, hi, 0) for lo, hi in pads])
    outs = [s // w for s, w in zip(x.shape, win, strict=True)]
    x = lax.slice(x, (0,) * x.ndim, tuple(o * w for o, w in zip(outs, win, strict=True)))
    shape = [n for o, w in zip(outs, win, strict=True) for n in ((o, w) if w != 1 else (o,))]
    return x.reshape(shape), _window_axes(win)


def _window_axes(win: tuple) -> tuple[int, ...]:
    """Positions of the window axes in :func:`_window_view`'s reshaped layout."""
    axes, pos = [], 0
    for w in win:
        pos += 1
        if w != 1:
            axes.append(pos)
            pos += 1
    return tuple(axes)


def _window_max(x: jax.Array, win: tuple, pads: tuple) -> jax.Array:
    """Non-overlapping window max; the gradient goes to the FIRST maximum of each window.

    Row-major window order, as XLA's ``select_and_scatter_add`` (the transpose of
    ``reduce_window_max``) picks it. Autodiff of ``max`` would split the cotangent among ties
    (a count and a divide over the larger input); this backward is one select, from an int8
    window position saved by the forward pass (cf. :func:`jaxmnist.models.layers.max_pool2`).
    """
    shape = x.shape
    k = int(np.prod(win))
    idx_dtype = np.int8 if k <= 127 else np.int32
    axes = _window_axes(win)
    rank = x.ndim + len(axes)
    # Row-major position of each element in its window, broadcastable to the window view.
    grid = np.zeros([1] * rank, np.int32)
    mult = 1
    for a, w in zip(reversed(axes), reversed([w for w in win if w != 1]), strict=True):
        grid = grid + np.arange(w).reshape([-1 if i == a else 1 for i in range(rank)]) * mult
        mult *= w
    grid = grid.astype(idx_dtype)

    @jax.custom_vjp
    def pool(x: jax.Array) -> jax.Array:
        view, _ = _window_view(x, win, pads, -np.inf)
        return jnp.max(view, axis=axes)

    def fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        view, _ = _window_view(x, win, pads, -np.inf)
        m = jnp.max(view, axis=axes)
        pos = jnp.where(view == lax.expand_dims(m, axes), grid, np.array(k, idx_dtype))
        return m, jnp.min(pos, axis=axes)

    def bwd(first: jax.Array, g: jax.Array) -> tuple[jax.Array]:
        hit = lax.expand_dims(first, axes) == grid
        dv = jnp.where(hit, lax.expand_dims(g, axes), jnp.zeros((), g.dtype))
        outs = first.shape
        dv = dv.reshape(tuple(o * w for o, w in zip(outs, win, strict=True)))
        # Back onto x: zero for a trimmed tail, the padding cut off.
        cfg = [(-lo, s + lo - o * w, 0)
               for s, (lo, _), o, w in zip(shape, pads, outs, win, strict=True)]
        return (lax.pad(dv, jnp.zeros((), g.dtype), cfg),)

    pool.defvjp(fwd, bwd)
    return pool(x)
