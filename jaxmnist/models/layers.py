"""Layer primitives as pure functions on NHWC float32 arrays, and the one im2col convolution.

A layer is a ``*_spec`` (a plan for :func:`jaxmnist.models.common.init_params`) and a forward
function. Convolutions run as ``"lax"`` (GPU/TPU) or ``"im2col"`` (XLA:CPU, where a convolution
in a loop is slow); why each kernel looks as it does: docs/performance.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxmnist.models.common import Array, Params, ParamSpec, Spec, check_choice

CONV_IMPLS = ("auto", "lax", "im2col")
PADDINGS = ("valid", "same")


def resolve_conv_impl(impl: str = "auto", backend: str | None = None) -> str:
    """A concrete implementation; ``"auto"`` asks ``backend`` (default: JAX's, started)."""
    check_choice(impl, CONV_IMPLS, "conv_impl")
    if impl != "auto":
        return impl
    # Accelerators have tuned convolution kernels (cuDNN, TPU).
    return "im2col" if (backend or jax.default_backend()) == "cpu" else "lax"


def dense_spec(n_in: int, n_out: int, init: Spec = "glorot_uniform") -> dict[str, ParamSpec]:
    """Plan for ``{"w": [n_in, n_out], "b": zeros [n_out]}``."""
    return {"w": ParamSpec((n_in, n_out), init, n_in, n_out), "b": ParamSpec((n_out,), const=0.0)}


def dense(p: Params, x: Array) -> Array:
    """``x @ w + b`` on the last axis."""
    return jnp.dot(x, p["w"]) + p["b"]


def conv_spec(kh: int, kw: int, c_in: int, c_out: int,
              init: Spec = "glorot_uniform") -> dict[str, ParamSpec]:
    """Plan for ``{"w": [kh, kw, c_in, c_out], "b": zeros [c_out]}``, Keras fan-in/fan-out."""
    return {"w": ParamSpec((kh, kw, c_in, c_out), init, kh * kw * c_in, kh * kw * c_out),
            "b": ParamSpec((c_out,), const=0.0)}


def tap_slices(x: Array, ks: Sequence[int], strides: Sequence[int], dil: Sequence[int],
               outs: Sequence[int]) -> list[Array]:
    """One strided slice ``[N, *outs, C]`` of ``x`` ``[N, *spatial, C]`` per kernel tap."""
    n, c, cols = x.shape[0], x.shape[-1], []
    for tap in itertools.product(*(range(k) for k in ks)):
        start = [t * d for t, d in zip(tap, dil, strict=True)]
        limit = [s + (o - 1) * st + 1 for s, o, st in zip(start, outs, strides, strict=True)]
        cols.append(lax.slice(x, (0, *start, 0), (n, *limit, c), (1, *strides, 1)))
    return cols


def patches(x: Array, ks: Sequence[int], strides: Sequence[int], dil: Sequence[int],
            outs: Sequence[int]) -> Array:
    """The patch tensor ``[N, *outs, T*C]``, features in HWIO order (taps, then channel).

    Written in place tap by tap: a ``concatenate`` makes two passes (S0 conv2: 1.6 vs 0.85 ms).
    """
    cols = tap_slices(x, ks, strides, dil, outs)
    if len(cols) == 1:
        return cols[0]
    c = x.shape[-1]
    buf = jnp.zeros((*cols[0].shape[:-1], len(cols) * c), x.dtype)
    zeros = (0,) * (buf.ndim - 1)
    for t, col in enumerate(cols):
        buf = lax.dynamic_update_slice(buf, col, (*zeros, t * c))
    return buf


def _col2im(dp: Array, xp_shape: tuple, ks: Sequence[int], strides: Sequence[int],
            dil: Sequence[int], outs: Sequence[int]) -> Array:
    """The transpose of :func:`patches`, one axis at a time (1-D pads vectorise on XLA:CPU).

    Per tap of the first spatial axis, the col2im of the other axes, then one 1-D pad along it.
    """
    nsp = len(ks)
    a = dp.reshape(xp_shape[0], *outs, -1, xp_shape[-1])  # [N, *outs, T, C]

    def stage(tap: tuple[int, ...]) -> Array:
        i = len(tap)
        if i == nsp:
            return lax.index_in_dim(a, int(np.ravel_multi_index(tap, ks)), axis=1 + nsp,
                                    keepdims=False)
        size, k, d, s, o = xp_shape[1 + i], ks[i], dil[i], strides[i], outs[i]
        acc = None
        for j in range(k):
            sub = stage((*tap, j))
            cfg = [(0, 0, 0)] * sub.ndim
            cfg[1 + i] = (j * d, size - (j * d + (o - 1) * s + 1), s - 1)
            term = lax.pad(sub, jnp.zeros((), sub.dtype), cfg)
            acc = term if acc is None else acc + term
        return acc

    return stage(())


def im2col_matmul(xp: Array, w2: Array, geom: tuple, precision: Any = None,
                  preferred: Any = None) -> Array:
    """A valid convolution as ``patches(xp) @ w2`` -> ``[N, *outs, O]``, with a custom VJP.

    ``xp`` is ``[N, *spatial, C]``, already padded; ``w2`` the HWIO kernel as ``[T*C, O]``;
    ``geom`` ``(kernel sizes, strides, kernel dilation, output sizes)`` per spatial axis. The
    backward contracts rows (no transpose of the big operand) and runs :func:`_col2im`.
    """
    ks, strides, dil, outs = geom
    k, o = w2.shape

    def forward(xp: Array, w2: Array) -> Array:
        pt = patches(xp, ks, strides, dil, outs).reshape(-1, k)
        y = lax.dot(pt, w2, precision=precision, preferred_element_type=preferred)
        return y.reshape(xp.shape[0], *outs, o)

    f = jax.custom_vjp(forward)

    def fwd(xp: Array, w2: Array) -> tuple[Array, tuple[Array, Array]]:
        # Keep xp, not the T-times larger patch matrix: the backward rebuilds it (XLA merges
        # the two copies when forward and backward are in one program).
        return forward(xp, w2), (xp, w2)

    def bwd(res: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
        xp, w2 = res
        g2 = g.reshape(-1, o)
        pt = patches(xp, ks, strides, dil, outs).reshape(-1, k)
        dw = lax.dot_general(pt, g2, (((0,), (0,)), ((), ())), precision=precision,
                             preferred_element_type=w2.dtype)
        dp = lax.dot_general(g2, w2, (((1,), (1,)), ((), ())), precision=precision,
                             preferred_element_type=xp.dtype)
        return _col2im(dp, xp.shape, ks, strides, dil, outs), dw

    f.defvjp(fwd, bwd)
    return f(xp, w2)


def conv2d(x: Array, w: Array, *, padding: str = "valid", impl: str = "auto") -> Array:
    """Stride-1 2-D convolution (cross-correlation, like Keras) of NHWC by HWIO, WITHOUT bias.

    The caller adds the bias, after a max-pool if any (the same values on 4x fewer elements).
    ``padding``: ``"valid"`` or ``"same"`` (TF convention); ``impl`` is resolved when traced.
    """
    impl = resolve_conv_impl(impl)
    kh, kw, c, o = w.shape
    if kh == 1 and kw == 1:  # a 1x1 conv is a matmul over channels
        return jnp.dot(x, w.reshape(c, o))
    if impl == "lax":
        return lax.conv_general_dilated(
            x, w, (1, 1), padding.upper(), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if padding == "same":  # TF/Keras: total pad k-1, the extra one (even k) bottom/right
        ph, pw = kh - 1, kw - 1
        x = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    outs = (x.shape[1] - kh + 1, x.shape[2] - kw + 1)
    return im2col_matmul(x, w.reshape(kh * kw * c, o), ((kh, kw), (1, 1), (1, 1), outs))


def _window_view(x: Array, win: tuple, pads: tuple) -> Array:
    """``x`` padded with -inf, trimmed to whole windows, pooled axes split as (outs, win)."""
    if any(lo or hi for lo, hi in pads):
        x = lax.pad(x, jnp.array(-np.inf, x.dtype), [(lo, hi, 0) for lo, hi in pads])
    outs = [s // w for s, w in zip(x.shape, win, strict=True)]
    x = lax.slice(x, (0,) * x.ndim, tuple(o * w for o, w in zip(outs, win, strict=True)))
    shape = [n for o, w in zip(outs, win, strict=True) for n in ((o, w) if w != 1 else (o,))]
    return x.reshape(shape)


def window_max(x: Array, win: tuple, pads: tuple) -> Array:
    """Window == stride max-pool; the gradient goes to each window's FIRST max (row-major).

    As TensorFlow's MaxPool. ``win``: window (= stride) per axis of ``x``, 1 where not pooled;
    ``pads``: ``(lo, hi)`` padding >= 0 per axis.
    """
    shape, k = x.shape, int(np.prod(win))
    idx_dtype = np.int8 if k <= 127 else np.int32
    layout = [n for w in win for n in ((1, w) if w != 1 else (1,))]  # the view's, outs as 1
    axes = tuple(i for i, n in enumerate(layout) if n != 1)
    # Row-major position of each element in its window, broadcastable to the window view.
    grid = np.arange(k, dtype=idx_dtype).reshape(layout)

    @jax.custom_vjp
    def pool(x: Array) -> Array:
        return jnp.max(_window_view(x, win, pads), axis=axes)

    def fwd(x: Array) -> tuple[Array, Array]:
        view = _window_view(x, win, pads)
        m = jnp.max(view, axis=axes)
        pos = jnp.where(view == lax.expand_dims(m, axes), grid, np.array(k, idx_dtype))
        return m, jnp.min(pos, axis=axes)

    def bwd(first: Array, g: Array) -> tuple[Array]:
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


def max_pool2(x: Array) -> Array:
    """2x2 max-pool, stride 2, Keras ``"valid"`` (odd trailing row/column dropped)."""
    return window_max(x, (1, 2, 2, 1), ((0, 0),) * 4)


def global_avg_pool(x: Array) -> Array:
    """Mean over the spatial axes: ``[B, H, W, C] -> [B, C]``."""
    return x.mean(axis=(1, 2))


def rmsnorm_spec(n: int) -> dict[str, ParamSpec]:
    """Plan for ``{"scale": ones [n]}``."""
    return {"scale": ParamSpec((n,), const=1.0)}


def rmsnorm(p: Params, x: Array, eps: float = 1e-6) -> Array:
    """RMSNorm on the last axis: ``x / sqrt(mean(x**2) + eps) * scale`` (no centring, no bias)."""
    ms = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    return x * lax.rsqrt(ms + eps) * p["scale"]
