"""Layer primitives as pure functions on NHWC float32 arrays, plus a train-step speed probe.

Every layer is a ``*_spec`` (a plan of ``w``/``b``/``scale`` leaves, turned into arrays by
:func:`jaxmnist.models.common.init_params`) and a forward function.
The 3x3 convolution has several interchangeable implementations (``CONV_IMPLS``) because which
one is fastest depends on the backend and on whether the model is vmapped over a grid:

- ``"lax"``: ``lax.conv_general_dilated`` (NHWC/HWIO). Best on GPU/TPU. Under ``jax.vmap`` over
  both params and images it becomes a grouped convolution, which XLA:CPU runs poorly.
- ``"im2col"``: the 9 shifted slices concatenated on the channel axis, then ONE matmul with the
  kernel reshaped to ``[9*C, O]``. Under vmap it becomes a batched matmul. Its backward pass is
  written out by hand (:func:`_im2col_conv`, a ``jax.custom_vjp``): two matmuls whose layouts
  XLA:CPU runs without transposing the big operand, and a two-stage col2im.
- ``"patches"``: ``lax.conv_general_dilated_patches`` to build the same patch matrix (channel-
  major feature order, so the kernel is transposed to match), then one matmul.
- ``"shiftsum"``: the sum of 9 matmuls, one per kernel tap, of a shifted slice (no patch matrix).

``"auto"`` resolves per backend with :func:`resolve_conv_impl` (measurements in
docs/performance.md). All implementations agree to float32 rounding (tested to 1e-5).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxmnist.models.common import Array, Params, ParamSpec, Spec

CONV_IMPLS = ("auto", "lax", "im2col", "patches", "shiftsum")
PADDINGS = ("valid", "same")

# Chosen from the measurements in docs/performance.md (XLA:CPU, 2 cores): "im2col" wins both
# solo and vmapped on CPU. Accelerators have tuned conv kernels (cuDNN, TPU convs): "lax".
_AUTO_IMPL = {"cpu": "im2col"}
_AUTO_DEFAULT = "lax"


def resolve_conv_impl(impl: str = "auto", backend: str | None = None) -> str:
    """Returns a concrete conv implementation name for ``impl`` (``"auto"`` picks per backend).

    Args:
        impl: one of ``CONV_IMPLS``.
        backend: ``"cpu"``, ``"gpu"``, ``"tpu"``; defaults to ``jax.default_backend()``.

    Raises:
        ValueError: unknown implementation name.
    """
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl: {impl!r} is not valid; valid choices are {list(CONV_IMPLS)}")
    if impl != "auto":
        return impl
    backend = backend or jax.default_backend()
    return _AUTO_IMPL.get(backend, _AUTO_DEFAULT)


# --------------------------------------------------------------------------------------------
# Dense
# --------------------------------------------------------------------------------------------


def dense_spec(n_in: int, n_out: int, init: Spec = "glorot_uniform") -> dict[str, ParamSpec]:
    """Plan for ``{"w": [n_in, n_out], "b": zeros [n_out]}`` (biases always start at zero).

    Turn a tree of plans into arrays with :func:`jaxmnist.models.common.init_params`.
    """
    return {
        "w": ParamSpec((n_in, n_out), init, n_in, n_out),
        "b": ParamSpec((n_out,), const=0.0),
    }


def dense(p: Params, x: Array) -> Array:
    """``x @ w + b`` on the last axis."""
    return jnp.dot(x, p["w"]) + p["b"]


# --------------------------------------------------------------------------------------------
# Convolution (stride 1, NHWC activations, HWIO kernels)
# --------------------------------------------------------------------------------------------


def conv_spec(
    kh: int, kw: int, c_in: int, c_out: int, init: Spec = "glorot_uniform"
) -> dict[str, ParamSpec]:
    """Plan for ``{"w": [kh, kw, c_in, c_out], "b": zeros [c_out]}``, Keras fan-in/fan-out."""
    return {
        "w": ParamSpec((kh, kw, c_in, c_out), init, kh * kw * c_in, kh * kw * c_out),
        "b": ParamSpec((c_out,), const=0.0),
    }


def _pad_same(x: Array, kh: int, kw: int) -> Array:
    # TF/Keras "same" for stride 1: total pad k-1, the extra one (even k) at the bottom/right.
    ph, pw = kh - 1, kw - 1
    return jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def _shifted(x: Array, kh: int, kw: int) -> tuple[list[Array], int, int]:
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    return [x[:, i : i + ho, j : j + wo, :] for i in range(kh) for j in range(kw)], ho, wo


def _im2col_patches(x: Array, kh: int, kw: int) -> Array:
    """The patch matrix ``[B*H'*W', kh*kw*C]`` of a valid stride-1 conv.

    Feature order (tap_i, tap_j, c) == HWIO flattening, so the kernel reshapes without a
    transpose. Built by ``kh*kw`` in-place ``dynamic_update_slice`` writes into one buffer:
    XLA:CPU runs a ``concatenate`` of slices as one materialised copy per slice plus the
    concatenation, two passes over the 9x larger matrix (~1.6 ms per S0 training step in XLA's
    profile); the in-place writes make one pass (~0.85 ms). Under ``jax.vmap`` the writes become
    a scatter; the CPU grid runs its members with ``lax.map``
    (``jaxmnist.engine.train.CPU_STRATEGY``).
    """
    cols, ho, wo = _shifted(x, kh, kw)
    c = x.shape[-1]
    out = jnp.zeros((x.shape[0], ho, wo, kh * kw * c), x.dtype)
    for t, col in enumerate(cols):
        out = lax.dynamic_update_slice(out, col, (0, 0, 0, t * c))
    return out.reshape(-1, kh * kw * c)


def _col2im(d_patches: Array, x_shape: tuple[int, ...], kh: int, kw: int) -> Array:
    """The transpose of :func:`_im2col_patches`: sums each tap's slab back onto the input grid.

    Two stages (the ``kw`` column shifts, then the ``kh`` row shifts of those sums) instead of
    one sum of ``kh*kw`` two-dimensional pads: XLA:CPU emits the 2-D-padded sum as scalar code,
    the 1-D pads vectorise over channels (3x faster in isolation for S0's conv2, 64x13x13x32).
    """
    b, h, w, c = x_shape
    ho, wo = h - kh + 1, w - kw + 1
    d = d_patches.reshape(b, ho, wo, kh, kw, c)
    out = None
    for i in range(kh):
        row = None
        for j in range(kw):
            term = jnp.pad(d[:, :, :, i, j, :], ((0, 0), (0, 0), (j, kw - 1 - j), (0, 0)))
            row = term if row is None else row + term
        term = jnp.pad(row, ((0, 0), (i, kh - 1 - i), (0, 0), (0, 0)))
        out = term if out is None else out + term
    return out


@jax.custom_vjp
def _im2col_conv(x: Array, w: Array) -> Array:
    """Valid stride-1 conv as ONE matmul of the patch matrix with ``w`` as ``[kh*kw*C, O]``."""
    kh, kw, c, o = w.shape
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    y = jnp.dot(_im2col_patches(x, kh, kw), w.reshape(kh * kw * c, o))
    return y.reshape(x.shape[0], ho, wo, o)


def _im2col_conv_fwd(x: Array, w: Array) -> tuple[Array, tuple[Array, Array]]:
    # Keep x, not the patch matrix (9x larger): the backward rebuilds the patches, and XLA
    # merges that copy with the forward's (common subexpression) when both are in one program.
    return _im2col_conv(x, w), (x, w)


def _im2col_conv_bwd(res: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
    # Autodiff's transpose of concat+dot computes dW = P^T dY with dY physically transposed
    # (fused with the pool mask: 5-6 ms per S0 step on XLA:CPU) and dX as one sum of 9 padded
    # slabs. Here: dW as a dot_general contracting the rows of both (XLA picks the small operand
    # to transpose), dP = dY W^T (the standard "A B^T" form) and a two-stage col2im.
    x, w = res
    kh, kw, c, o = w.shape
    k = kh * kw * c
    g2 = g.reshape(-1, o)
    dw = lax.dot_general(_im2col_patches(x, kh, kw), g2, (((0,), (0,)), ((), ())))
    d_patches = lax.dot_general(g2, w.reshape(k, o), (((1,), (1,)), ((), ())))
    return _col2im(d_patches, x.shape, kh, kw), dw.reshape(w.shape)


_im2col_conv.defvjp(_im2col_conv_fwd, _im2col_conv_bwd)


def conv2d(x: Array, w: Array, *, padding: str = "valid", impl: str = "auto") -> Array:
    """Stride-1 2-D convolution (cross-correlation, like Keras), WITHOUT bias.

    The bias is left to the caller so that it can be added after a max-pool (cheaper, same
    result: ``max(y) + b == max(y + b)``).

    Args:
        x: ``[B, H, W, C]`` float32.
        w: ``[kh, kw, C, O]``.
        padding: ``"valid"`` or ``"same"`` (TF convention).
        impl: one of ``CONV_IMPLS``.

    Returns:
        ``[B, H', W', O]``.
    """
    impl = resolve_conv_impl(impl)
    kh, kw, c, o = w.shape
    if kh == 1 and kw == 1:
        # A 1x1 conv is a matmul over channels; no implementation choice to make.
        return jnp.dot(x, w.reshape(c, o))
    if impl == "lax":
        return lax.conv_general_dilated(
            x, w, (1, 1), padding.upper(), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    if padding == "same":
        x = _pad_same(x, kh, kw)
    if impl == "im2col":
        return _im2col_conv(x, w)
    if impl == "patches":
        pt = lax.conv_general_dilated_patches(
            x, (kh, kw), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        # Patch features come out channel-major (c, tap_i, tap_j): reorder the (small) kernel.
        return jnp.dot(pt, w.transpose(2, 0, 1, 3).reshape(c * kh * kw, o))
    # shiftsum
    cols, _, _ = _shifted(x, kh, kw)
    out = jnp.dot(cols[0], w[0, 0])
    for t, col in enumerate(cols[1:], start=1):
        out = out + jnp.dot(col, w[t // kw, t % kw])
    return out


# --------------------------------------------------------------------------------------------
# Pooling and normalisation
# --------------------------------------------------------------------------------------------


@jax.custom_vjp
def max_pool2(x: Array) -> Array:
    """2x2 max-pool, stride 2, Keras ``"valid"`` (odd trailing row/column dropped).

    Forward: the elementwise max of the 4 window positions (a reshape, no ``reduce_window``,
    whose backward is slow on XLA:CPU). Backward (custom VJP): the whole gradient goes to the
    FIRST maximum of each window in row-major order, as TensorFlow's MaxPool does, through an
    int8 argmax saved by the forward pass. JAX's own rule for ``max`` (split the gradient among
    ties, which needs a count and a divide over the 4x-larger input) cost ~5 ms per S0 training
    step on 2 CPU cores; this one is a single select.
    """
    return _max_pool2_fwd(x)[0]


def _pool_windows(x: Array) -> list[Array]:
    b, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    xr = x[:, : 2 * h2, : 2 * w2, :].reshape(b, h2, 2, w2, 2, c)
    return [xr[:, :, i, :, j, :] for i in range(2) for j in range(2)]  # row-major window order


def _max_pool2_fwd(x: Array) -> tuple[Array, tuple[Array, tuple[int, ...]]]:
    b, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    v = _pool_windows(x)
    # A reduce, not jnp.maximum of the 4 windows: XLA does not fuse a reduce into its consumers,
    # so the pooled map is computed once. The elementwise form was recomputed inside each of
    # the next conv's 9 im2col slices (9 passes over the 4x larger input).
    m = x[:, : 2 * h2, : 2 * w2, :].reshape(b, h2, 2, w2, 2, c).max(axis=(2, 4))
    # Index of the first maximum: int8, 1/16 of the input's bytes, all the backward needs.
    first = jnp.where(v[0] == m, 0, jnp.where(v[1] == m, 1, jnp.where(v[2] == m, 2, 3)))
    return m, (first.astype(jnp.int8), x.shape)


def _max_pool2_bwd(res: tuple[Array, tuple[int, ...]], g: Array) -> tuple[Array]:
    first, shape = res
    b, h, w, c = shape
    h2, w2 = h // 2, w // 2
    window = np.arange(4, dtype=np.int8).reshape(1, 1, 2, 1, 2, 1)  # 2*i + j in each window
    hit = first[:, :, None, :, None, :] == window
    dx = jnp.where(hit, g[:, :, None, :, None, :], jnp.zeros((), g.dtype))
    dx = dx.reshape(b, 2 * h2, 2 * w2, c)
    if (h, w) != (2 * h2, 2 * w2):
        dx = jnp.pad(dx, ((0, 0), (0, h - 2 * h2), (0, w - 2 * w2), (0, 0)))
    return (dx,)


max_pool2.defvjp(_max_pool2_fwd, _max_pool2_bwd)


def global_avg_pool(x: Array) -> Array:
    """Mean over the spatial axes: ``[B, H, W, C] -> [B, C]``."""
    return x.mean(axis=(1, 2))


RMSNORM_EPS = 1e-6


def rmsnorm_spec(n: int) -> dict[str, ParamSpec]:
    """Plan for ``{"scale": ones [n]}``."""
    return {"scale": ParamSpec((n,), const=1.0)}


def rmsnorm(p: Params, x: Array, eps: float = RMSNORM_EPS) -> Array:
    """RMSNorm on the last axis: ``x / sqrt(mean(x**2) + eps) * scale`` (no centring, no bias)."""
    ms = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    return x * lax.rsqrt(ms + eps) * p["scale"]
