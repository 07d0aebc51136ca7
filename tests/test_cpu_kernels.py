"""fast_cpu_convs: the im2col rewrite equals lax.conv_general_dilated, forward and backward.

Every test forces the rewrite with ``backend="cpu"`` so that it is checked on any backend.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from jaxmnist.models.cpu_kernels import fast_cpu_convs, rewrite_stats

fast = functools.partial(fast_cpu_convs, backend="cpu")

# (name, lhs shape in NHWC-like order [N, *spatial, C], kernel spatial, out features, kwargs)
CONV_CASES = [
    ("same", (2, 7, 8, 3), (3, 3), 4, dict(padding="SAME")),
    ("valid", (2, 7, 8, 3), (3, 3), 4, dict(padding="VALID")),
    ("batch1", (1, 6, 6, 2), (3, 3), 5, dict(padding="SAME")),
    ("stride2_same_even", (2, 8, 8, 3), (3, 3), 4, dict(window_strides=(2, 2), padding="SAME")),
    ("stride_2x3_asym", (2, 9, 10, 3), (2, 3), 4,
     dict(window_strides=(2, 3), padding=((1, 2), (0, 1)))),
    ("kernel_even_same", (2, 7, 7, 3), (4, 2), 3, dict(padding="SAME")),
    ("negative_pad", (2, 9, 9, 2), (3, 3), 3, dict(padding=((-1, 2), (1, -2)))),
    ("rhs_dilation", (2, 9, 10, 3), (3, 2), 4, dict(padding="SAME", rhs_dilation=(2, 3))),
    ("lhs_dilation", (2, 5, 6, 3), (3, 3), 4,
     dict(padding=((2, 2), (1, 2)), lhs_dilation=(2, 3), window_strides=(1, 2))),
    ("all_dilations", (1, 6, 7, 2), (2, 3), 3,
     dict(padding=((1, 0), (2, 2)), lhs_dilation=(2, 1), rhs_dilation=(1, 2),
          window_strides=(2, 1))),
    ("groups2", (2, 7, 8, 6), (3, 3), 4, dict(padding="SAME", feature_group_count=2)),
    ("groups3_stride", (2, 8, 8, 6), (3, 3), 9,
     dict(padding="SAME", feature_group_count=3, window_strides=(2, 2))),
    ("depthwise", (2, 7, 8, 5), (3, 3), 5, dict(padding="SAME", feature_group_count=5)),
    ("depthwise_mult2", (2, 7, 8, 3), (3, 3), 6,
     dict(padding=((0, 1), (1, 1)), feature_group_count=3, window_strides=(2, 1))),
    ("1x1", (2, 5, 5, 4), (1, 1), 6, dict(padding="VALID")),
    ("1d", (2, 11, 3), (3,), 4, dict(padding="SAME", window_strides=(2,))),
    ("1d_dilated", (2, 11, 3), (2,), 4, dict(padding=((1, 1),), rhs_dilation=(3,))),
    ("3d", (1, 5, 4, 6, 2), (2, 3, 2), 3, dict(padding="SAME", window_strides=(1, 2, 1))),
]

LAYOUTS = {
    1: [("NWC", "WIO", "NWC"), ("NCW", "OIW", "NCW")],
    2: [("NHWC", "HWIO", "NHWC"), ("NCHW", "OIHW", "NCHW"), ("NHWC", "OIHW", "NCHW")],
    3: [("NDHWC", "DHWIO", "NDHWC")],
}


def _operands(lhs_shape, kernel, out_features, groups, layout, seed=0):
    """Random lhs/rhs laid out as ``layout`` from a channels-last ``lhs_shape``.

    Drawn with NumPy: an eager ``jax.random`` draw and transpose compile a program per shape,
    ~0.4 s a case on a CPU, more than the convolutions under test."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(lhs_shape, np.float32)
    w = rng.standard_normal((*kernel, lhs_shape[-1] // groups, out_features), np.float32)
    lhs_l, rhs_l, _ = layout
    nhwc = "N" + lhs_l.replace("N", "").replace("C", "") + "C"
    x = np.transpose(x, [nhwc.index(a) for a in lhs_l])
    hwio = rhs_l.replace("O", "").replace("I", "") + "IO"
    w = np.transpose(w, [hwio.index(a) for a in rhs_l])
    return jnp.asarray(x), jnp.asarray(w)


def _conv_fn(layout, kw):
    def conv(x, w):
        return lax.conv_general_dilated(x, w, kw.get("window_strides", (1,) * (len(layout[0])
                                                                                - 2)),
                                        kw["padding"], lhs_dilation=kw.get("lhs_dilation"),
                                        rhs_dilation=kw.get("rhs_dilation"),
                                        dimension_numbers=layout,
                                        feature_group_count=kw.get("feature_group_count", 1))
    return conv


def _cases_with_layouts():
    for name, shape, kernel, out, kw in CONV_CASES:
        for layout in LAYOUTS[len(kernel)]:
            yield pytest.param(shape, kernel, out, kw, layout, id=f"{name}-{layout[0]}{layout[1]}")


def _assert_close(a, b, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def test_forward_matches_lax_conv():
    """Every case and layout, rewritten and compiled as ONE program (one XLA compile instead of
    one per case: the compiles, not the convolutions, are this test's cost)."""
    cases = list(_cases_with_layouts())
    operands, convs = [], []
    for case in cases:
        shape, kernel, out, kw, layout = case.values
        operands.append(_operands(shape, kernel, out, kw.get("feature_group_count", 1), layout))
        convs.append(_conv_fn(layout, kw))
    rewritten = jax.jit(lambda ops: [fast(c)(x, w)
                                     for c, (x, w) in zip(convs, ops, strict=True)])(operands)
    reference = jax.jit(lambda ops: [c(x, w)
                                     for c, (x, w) in zip(convs, ops, strict=True)])(operands)
    for case, conv, (x, w), got, want in zip(cases, convs, operands, rewritten, reference,
                                            strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5,
                                   err_msg=case.id)
        stats = rewrite_stats(conv, x, w)
        assert (stats["conv"], stats["conv_fallback"]) == (1, 0), case.id


GRAD_CASES = ["same", "stride_2x3_asym", "lhs_dilation", "all_dilations", "groups3_stride",
              "depthwise_mult2", "1d_dilated", "3d", "negative_pad"]


def test_gradients_match_lax_conv():
    """The gradients of every case, the rewritten ones compiled as one program."""
    cases, operands = [], []
    for name in GRAD_CASES:
        _, shape, kernel, out, kw = next(c for c in CONV_CASES if c[0] == name)
        layout = LAYOUTS[len(kernel)][0]
        operands.append(_operands(shape, kernel, out, kw.get("feature_group_count", 1), layout,
                                  seed=1))
        cases.append(_conv_fn(layout, kw))

    def loss(f):
        return lambda x, w: jnp.sum(jnp.sin(f(x, w)) * jnp.arange(f(x, w).size).reshape(
            f(x, w).shape) / 100.0)

    rewritten = jax.jit(lambda ops: [
        jax.grad(loss(fast(c)), (0, 1))(x, w)
        for c, (x, w) in zip(cases, ops, strict=True)])(operands)
    reference = jax.jit(lambda ops: [jax.grad(loss(c), (0, 1))(x, w)
                                     for c, (x, w) in zip(cases, ops, strict=True)])(operands)
    for got, want in zip(rewritten, reference, strict=True):
        for g, ref in zip(got, want, strict=True):
            _assert_close(g, ref, rtol=1e-4, atol=1e-4 * float(jnp.abs(ref).max()))


def test_transposed_convs_of_a_gradient_are_rewritten_too():
    # The gradient of a strided conv holds convs with lhs_dilation (input gradient) and a
    # batch/feature swap (kernel gradient); fast_cpu_convs of the gradient function covers them.
    _, shape, kernel, out, kw = next(c for c in CONV_CASES if c[0] == "stride2_same_even")
    layout = LAYOUTS[2][0]
    x, w = _operands(shape, kernel, out, 1, layout)
    conv = _conv_fn(layout, kw)
    grad_fn = jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), (0, 1))
    for g, ref in zip(jax.jit(fast(grad_fn))(x, w), grad_fn(x, w), strict=True):
        _assert_close(g, ref, rtol=1e-4, atol=1e-4)
    assert rewrite_stats(grad_fn, x, w)["conv"] == 3


def test_preferred_element_type_and_bfloat16():
    x, w = _operands((2, 6, 6, 3), (3, 3), 4, 1, LAYOUTS[2][0])
    x, w = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        preferred_element_type=jnp.float32)

    got = fast(conv)(x, w)
    assert got.dtype == jnp.float32
    _assert_close(got, conv(x, w), rtol=1e-2, atol=1e-2)


def test_fallback_batch_group_count():
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 6, 6, 3))
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 4))

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        batch_group_count=2)

    _assert_close(fast(conv)(x, w), conv(x, w))
    assert rewrite_stats(conv, x, w) == {"conv": 0, "max_pool": 0, "conv_fallback": 1,
                                         "max_pool_fallback": 0, "subjaxpr": 0}


def test_vmap_and_scan():
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 2, 6, 6, 2))  # leading axis: members
    w = jax.random.normal(jax.random.PRNGKey(2), (3, 3, 3, 2, 4))
    conv = _conv_fn(LAYOUTS[2][0], dict(padding="SAME"))
    want = jax.vmap(conv)(x, w)
    _assert_close(jax.vmap(fast(conv))(x, w), want)
    _assert_close(fast(jax.vmap(conv))(x, w), want)  # grouped conv after batching

    def loss(f):
        return lambda x, w: jnp.sum(jnp.sin(f(x, w)))

    grads = jax.jit(jax.vmap(jax.grad(loss(fast(conv)), (0, 1))))(x, w)
    for got, ref in zip(grads, jax.vmap(jax.grad(loss(conv), (0, 1)))(x, w), strict=True):
        _assert_close(got, ref, rtol=1e-4, atol=1e-4)

    def body(carry, xw):
        y = fast(conv)(*xw)
        return carry + y.sum(), y

    total, ys = jax.jit(lambda x, w: lax.scan(body, 0.0, (x, w)))(x, w)
    _assert_close(ys, want)
    _assert_close(lax.map(lambda xw: fast(conv)(*xw), (x, w)), want)

    # A scan INSIDE the transformed function: its body is rewritten.
    def scanned(x, w):
        return lax.scan(lambda c, xw: (c, conv(*xw)), 0.0, (x, w))[1]

    _assert_close(fast(scanned)(x, w), want)
    assert rewrite_stats(scanned, x, w)["subjaxpr"] == 1


def test_higher_order_primitives_are_recursed():
    x, w = _operands((2, 6, 6, 2), (3, 3), 4, 1, LAYOUTS[2][0])
    conv = _conv_fn(LAYOUTS[2][0], dict(padding="SAME"))

    @jax.custom_jvp
    def cj(x, w):
        return conv(x, w)

    cj.defjvp(lambda p, t: (conv(*p), conv(t[0], p[1]) + conv(p[0], t[1])))

    @jax.custom_vjp
    def cv(x, w):
        return conv(x, w)

    cv.defvjp(lambda x, w: (conv(x, w), (x, w)),
              lambda r, g: jax.vjp(conv, *r)[1](g))

    def f(x, w):
        a = jax.jit(conv)(x, w)
        b = jax.checkpoint(conv)(x, w)
        c = lax.cond(x.sum() > 0, conv, lambda x, w: -conv(x, w), x, w)
        d = lax.while_loop(lambda s: s[0] < 2, lambda s: (s[0] + 1, s[1] + conv(x, w)),
                           (0, jnp.zeros_like(a)))[1]
        return a + b + c + d + cj(x, w) + cv(x, w)

    _assert_close(jax.jit(fast(f))(x, w), f(x, w), rtol=1e-5, atol=1e-4)
    stats = rewrite_stats(f, x, w)
    assert stats["conv_fallback"] == 0 and stats["subjaxpr"] == 6
    # Their gradients stay right (the custom rules keep their own, original, convs).
    def g(x, w):
        a = jax.jit(conv)(x, w) + jax.checkpoint(conv)(x, w) + cj(x, w) + cv(x, w)
        return a + lax.cond(x.sum() > 0, conv, lambda x, w: -conv(x, w), x, w)

    loss = lambda f: jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.tanh(f(x, w))), (0, 1)))  # noqa
    for got, ref in zip(loss(fast(g))(x, w), loss(g)(x, w), strict=True):
        _assert_close(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("window,pad", [((2, 2), "VALID"), ((2, 2), "SAME"), ((3, 2), "VALID"),
                                        ((2, 3), ((1, 0), (1, 1)))])
def test_max_pool_forward_and_gradient(window, pad):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 9, 3))
    x = x.at[:, :4, :4].set(0.5)  # ties: the gradient goes to the first maximum, as XLA's

    def pool(x):
        return nn.max_pool(x, window, strides=window, padding=pad)

    _assert_close(fast(pool)(x), pool(x))
    assert rewrite_stats(pool, x)["max_pool"] == 1
    gfn = lambda f: jax.grad(lambda x: jnp.sum(f(x) * jnp.arange(f(x).size).reshape(  # noqa
        f(x).shape)))
    _assert_close(jax.jit(gfn(fast(pool)))(x), gfn(pool)(x))


def test_average_pools_are_left_alone():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 9, 3))

    def pool(x):
        return nn.avg_pool(x, (2, 3), strides=(2, 3), padding=((0, 1), (1, 1)))

    assert rewrite_stats(pool, x)["max_pool"] == 0
    assert "reduce_window_sum" in {e.primitive.name for e in jax.make_jaxpr(fast(pool))(x).eqns}


def test_overlapping_max_pool_falls_back():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 7, 3))

    def pool(x):
        return nn.max_pool(x, (3, 3), strides=(2, 2))

    _assert_close(fast(pool)(x), pool(x))
    _assert_close(jax.grad(lambda x: fast(pool)(x).sum())(x), jax.grad(lambda x: pool(x).sum())(x))
    assert rewrite_stats(pool, x)["max_pool_fallback"] == 1

    def pool2(x):
        return nn.max_pool(x, (2, 2), strides=(2, 2))

    assert "reduce_window_max" not in {e.primitive.name for e in jax.make_jaxpr(fast(pool2))(
        x).eqns}


class LinenNet(nn.Module):
    """Conv + max-pool + dense, with a train flag and dropout (a static kwarg and a key)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.max_pool(nn.relu(nn.Conv(4, (3, 3), padding="SAME")(x)), (2, 2), (2, 2))
        x = nn.avg_pool(nn.relu(nn.Conv(6, (3, 3), strides=2)(x)), (2, 2), (2, 2))
        x = nn.Dropout(0.5, deterministic=not train)(x)
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


@pytest.mark.e2e
def test_flax_linen_model_logits_and_grads():
    model = LinenNet()
    x = jax.random.uniform(jax.random.PRNGKey(0), (3, 12, 12, 1))
    params = model.init(jax.random.PRNGKey(1), x)

    def apply(params, x, *, train, key=None):
        return model.apply(params, x, train=train, rngs={"dropout": key} if train else {})

    key = jax.random.PRNGKey(2)
    for train in (False, True):
        run = jax.jit(lambda p, k, f, train=train: f(p, x, train=train, key=k),
                      static_argnums=2)
        _assert_close(run(params, key, fast(apply)), run(params, key, apply))

    def loss(f):
        return lambda p: jnp.sum(jax.nn.log_softmax(f(p, x, train=True, key=key))[:, 3])

    got, want = jax.jit(jax.grad(loss(fast(apply))))(params), jax.jit(jax.grad(loss(apply)))(
        params)
    jax.tree.map(lambda a, b: _assert_close(a, b, rtol=1e-4, atol=1e-5), got, want)
    stats = rewrite_stats(apply, params, x, train=True, key=key)
    assert stats["conv"] == 2 and stats["max_pool"] == 1


class NnxNet(nnx.Module):
    """An NNX conv net."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 4, (3, 3), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(4, 8, (3, 3), padding="SAME", feature_group_count=2, rngs=rngs)
        self.dense = nnx.Linear(8 * 3 * 3, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), (2, 2))
        x = nnx.avg_pool(nnx.relu(self.conv2(x)), (2, 2), (2, 2))
        return self.dense(x.reshape(x.shape[0], -1))


# End-to-end tier: the default tier's representatives are the op-level forward and gradient
# checks above and tests/test_adapters.py, whose NNX S0 (rewritten on CPU) gives the zoo's logits.
@pytest.mark.e2e
def test_flax_nnx_model_logits_and_grads():
    graphdef, state = nnx.split(NnxNet(nnx.Rngs(0)))
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 12, 12, 1))

    def apply(state, x):
        return nnx.merge(graphdef, state)(x)

    _assert_close(jax.jit(fast(apply))(state, x), jax.jit(apply)(state, x))

    def loss(f):
        return lambda s: jnp.sum(jax.nn.log_softmax(f(s, x))[:, 1])

    got, want = jax.jit(jax.grad(loss(fast(apply))))(state), jax.jit(jax.grad(loss(apply)))(
        state)
    jax.tree.map(lambda a, b: _assert_close(a, b, rtol=1e-4, atol=1e-5), got, want)
    assert rewrite_stats(apply, state, x)["conv"] == 2


def test_shard_map():
    from jax.sharding import Mesh, PartitionSpec

    shard_map = getattr(jax, "shard_map", None)
    if shard_map is None:  # jax < 0.7
        from jax.experimental.shard_map import shard_map
    mesh = Mesh(np.array(jax.devices()[:1]), ("d",))
    x, w = _operands((2, 6, 6, 2), (3, 3), 4, 1, LAYOUTS[2][0])
    conv = _conv_fn(LAYOUTS[2][0], dict(padding="SAME"))
    spec = (PartitionSpec("d"), PartitionSpec())
    sharded = shard_map(fast(conv), mesh=mesh, in_specs=spec, out_specs=PartitionSpec("d"))
    _assert_close(jax.jit(sharded)(x, w), conv(x, w))


def test_not_cpu_runs_the_function_itself(monkeypatch):
    x, w = _operands((2, 6, 6, 2), (3, 3), 4, 1, LAYOUTS[2][0])
    conv = _conv_fn(LAYOUTS[2][0], dict(padding="SAME"))

    def primitives(f):  # a new function each time: make_jaxpr caches traces by function
        return {e.primitive.name for e in jax.make_jaxpr(lambda *a: f(*a))(x, w).eqns}

    assert "conv_general_dilated" in primitives(fast_cpu_convs(conv, backend="gpu"))
    assert "conv_general_dilated" not in primitives(fast_cpu_convs(conv, backend="cpu"))
    lazy = fast_cpu_convs(conv)  # the backend is asked when it is called, not here
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert "conv_general_dilated" in primitives(lazy)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert "conv_general_dilated" not in primitives(lazy)
