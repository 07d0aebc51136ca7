"""Unit tests for jaxmnist.models: counts, shapes, numerics vs NumPy, vmap, jit, Keras oracle."""

from __future__ import annotations

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmnist import models
from jaxmnist.models import common, layers

KEY = jax.random.PRNGKey(0)
RNG = np.random.default_rng(0)
X8 = jnp.asarray(RNG.integers(0, 256, (4, 28, 28, 1), np.uint8))

S0 = {"name": "cnn"}
S1 = {"name": "cnn", "dropout": [0.25, 0.5]}
# (config, pinned parameter count); the counts are documented in docs/models.md.
PINNED = [
    (S0, 225_034),
    (S1, 225_034),
    ({"name": "mlp"}, 50_890),
    ({"name": "mlp", "hidden": [32, 32]}, 26_506),
    ({"name": "mlp", "hidden": [64, 64]}, 55_050),
    ({"name": "mlp", "hidden": [128, 128]}, 118_282),
    ({"name": "mlp", "hidden": [64, 64, 64]}, 59_210),
    ({"name": "mlp", "hidden": [64, 64], "rmsnorm": True}, 55_178),
    ({"name": "cnn_depth", "depth": 1}, 804_170),
    ({"name": "cnn_depth", "depth": 2}, 878_730),
    ({"name": "cnn_depth", "depth": 3}, 3_029_770),
    ({"name": "cnn_depth", "depth": 4}, 5_914_378),
    ({"name": "squeezenet"}, 726_474),
]
FAMILY_CFGS = [
    {"name": "mlp", "hidden": [32, 16], "rmsnorm": True, "dropout": 0.2},
    S1,
    {"name": "cnn_depth", "depth": 2},
    # lax compiles SqueezeNet ~2x faster than im2col; the CPU default (im2col) is pinned to lax
    # by test_model_logits_same_for_every_conv_impl and, for gradients, at the layer level.
    {"name": "squeezenet", "conv_impl": "lax"},
]


def _jit_apply(model):
    # Tests run jitted: one compile is far cheaper than op-by-op dispatch of a whole network.
    # The zoo has no non-parameter state: these tests call it with {} and read the logits.
    def logits(params, x, *, train, key=None):
        return model.apply(params, {}, x, train=train, key=key)[0]

    return jax.jit(logits, static_argnames="train")


@functools.cache
def _cached(cfg_json: str):
    # One build, one params draw and one jitted apply per config for the whole file: XLA
    # compiles dominate this file's time, and a shared jitted function reuses its compiles.
    model = models.build(json.loads(cfg_json))
    return model, model.init(KEY)[0], _jit_apply(model)


def cached(cfg):
    """Returns (model, params, jitted apply) for ``cfg``, shared across tests."""
    return _cached(json.dumps(models.validate_model_config(cfg), sort_keys=True))


def _ids(cfgs):
    return [",".join(f"{k}={v}" for k, v in c.items()) for c in cfgs]


# --------------------------------------------------------------------------------------------
# Parameter counts, summary, shapes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cfg", "count"), PINNED, ids=_ids([c for c, _ in PINNED]))
def test_param_count_pinned_and_summary_agrees(cfg, count):
    model = models.build(cfg)
    shapes = jax.eval_shape(model.init, KEY)[0]  # no arrays allocated
    assert models.param_count(shapes) == count
    text = models.summary(cfg)
    assert f"Total params: {count:,}" in text


def test_s0_summary_matches_paper_rows():
    text = models.summary(S0)
    for name, shape, n in [
        ("conv1", "(None, 26, 26, 32)", "320"),
        ("conv2", "(None, 11, 11, 64)", "18,496"),
        ("flatten", "(None, 1600)", "0"),
        ("dense1", "(None, 128)", "204,928"),
        ("dense2", "(None, 10)", "1,290"),
    ]:
        line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
        assert shape in line and line.rstrip().endswith(n)


@pytest.mark.parametrize("cfg", FAMILY_CFGS, ids=_ids(FAMILY_CFGS))
def test_output_shape_dtype_and_uint8_equals_float(cfg):
    model, params, apply = cached(cfg)
    logits = apply(params, X8, train=False)
    assert logits.shape == (4, 10) and logits.dtype == jnp.float32
    assert model.name == cfg["name"]
    if cfg["name"] != "squeezenet":  # a float input is a second compile; cheap models suffice
        as_float = apply(params, X8.astype(jnp.float32) / 255.0, train=False)
        np.testing.assert_allclose(logits, as_float, atol=1e-5)


@pytest.mark.parametrize(("cfg", "_"), PINNED, ids=_ids([c for c, _ in PINNED]))
def test_every_pinned_model_traces_to_logits(cfg, _):
    # Abstract evaluation: shapes and dtypes of train-mode logits without compiling anything.
    model = models.build(cfg)
    params = jax.eval_shape(model.init, KEY)[0]
    out = jax.eval_shape(lambda p, x: model.apply(p, {}, x, train=True, key=KEY)[0], params, X8)
    assert out.shape == (4, 10) and out.dtype == jnp.float32


def test_to_unit_float():
    x = jnp.array([0, 128, 255], jnp.uint8)
    np.testing.assert_allclose(common.to_unit_float(x), [0.0, 128 / 255, 1.0], rtol=1e-7)
    assert common.to_unit_float(x).dtype == jnp.float32
    f = jnp.array([0.5], jnp.float16)
    assert common.to_unit_float(f).dtype == jnp.float32
    assert float(common.to_unit_float(f)[0]) == 0.5  # floats are not rescaled


def test_param_names_are_readable_and_weight_mask():
    params = cached({"name": "squeezenet"})[1]
    paths = models.layer_paths(params)
    assert "conv1/w" in paths and "fire2/squeeze/w" in paths and "fire9/expand3x3/b" in paths
    assert "conv10/w" in paths
    mask = models.weight_mask(params)
    assert mask["fire2"]["squeeze"]["w"] is True and mask["fire2"]["squeeze"]["b"] is False
    mlp = models.build({"name": "mlp", "hidden": [8], "rmsnorm": True}).init(KEY)[0]
    assert sorted(models.layer_paths(mlp)) == [
        "dense1/b", "dense1/w", "norm1/scale", "output/b", "output/w",
    ]  # fmt: skip
    assert [w.shape for w in models.weight_leaves(mlp)] == [(784, 8), (8, 10)]


def test_validated_config_is_json_and_filled():
    import json

    model = models.build({"name": "cnn_depth", "depth": 3})
    assert json.loads(json.dumps(model.cfg)) == model.cfg
    assert model.cfg["dropout"] == 0.25 and model.cfg["padding"] == "same"
    assert models.build(S1).cfg["dropout"] == [0.25, 0.5]
    assert models.build({"name": "cnn", "dropout": 0.3}).cfg["dropout"] == [0.3, 0.3]


# --------------------------------------------------------------------------------------------
# Validation errors list the valid choices
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg", "fragments"),
    [
        ({"name": "resnet"}, ["'resnet'", "'mlp'", "'cnn'", "'cnn_depth'", "'squeezenet'"]),
        ({"hidden": [3]}, ["'name'"]),
        ({"name": "mlp", "hiden": [3]}, ["hiden", "'hidden'", "'activation'"]),
        ({"name": "mlp", "activation": "relu6"}, ["'relu6'", "leaky_relu", "gelu", "swish"]),
        ({"name": "mlp", "activation": {"name": "relu", "alpha": 1}}, ["alpha"]),
        ({"name": "mlp", "init": "lecun"}, ["'lecun'", "he_normal", "uniform"]),
        ({"name": "mlp", "init": {"name": "normal", "std": 1, "variance": 1}}, ["not both"]),
        ({"name": "mlp", "init": {"name": "uniform", "low": 1, "high": 0}}, ["low must be"]),
        ({"name": "mlp", "hidden": [64], "activation": ["relu", "tanh"]}, ["1 entries"]),
        ({"name": "mlp", "hidden": [64], "init": ["he"]}, ["2 entries"]),
        ({"name": "mlp", "hidden": [0]}, ["positive ints"]),
        ({"name": "mlp", "dropout": 1.0}, ["[0, 1)"]),
        ({"name": "cnn", "dropout": [0.1, 0.2, 0.3]}, ["list of 2"]),
        ({"name": "cnn", "conv_impl": "fft"}, ["'fft'", "'lax'", "'im2col'", "'auto'"]),
        ({"name": "cnn_depth", "depth": 5}, ["5", "[1, 2, 3, 4]"]),
        ({"name": "cnn_depth", "depth": 2.0}, ["2.0", "[1, 2, 3, 4]"]),
        ({"name": "cnn_depth", "padding": "full"}, ["'full'", "'same'", "'valid'"]),
        ({"name": "cnn_depth", "depth": 4, "padding": "valid"}, ["does not fit"]),
        ({"name": "squeezenet", "depth": 2}, ["depth", "'final_relu'"]),
    ],
)
def test_validation_errors_list_valid_choices(cfg, fragments):
    with pytest.raises(ValueError) as err:
        models.validate_model_config(cfg)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_valid_specs_accepted():
    models.validate_model_config(
        {
            "name": "mlp",
            "hidden": [8, 8],
            "activation": [{"name": "leaky_relu", "alpha": 0.1}, "gelu"],
            "init": [
                {"name": "uniform", "low": -0.05, "high": 0.05},
                {"name": "normal", "mean": 0, "variance": 0.0025},
                "xavier",
            ],
        }
    )


# --------------------------------------------------------------------------------------------
# Activations, initializers, RMSNorm against NumPy
# --------------------------------------------------------------------------------------------

_Z = np.linspace(-6, 6, 101, dtype=np.float32).reshape(1, -1)


def _np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


_NP_ACTS = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "softmax": _np_softmax,
    "leaky_relu": lambda z: np.where(z >= 0, z, 0.01 * z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(z)),
    "gelu": lambda z: 0.5 * z * (1 + np.vectorize(math.erf)(z / math.sqrt(2))),
    "swish": lambda z: z / (1 + np.exp(-z)),
    "silu": lambda z: z / (1 + np.exp(-z)),
}


@pytest.mark.parametrize("name", common.ACTIVATIONS)
def test_activation_matches_numpy(name):
    got = common.get_activation(name)(jnp.asarray(_Z))
    np.testing.assert_allclose(got, _NP_ACTS[name](_Z.astype(np.float64)), atol=1e-6, rtol=1e-5)


def test_parametrised_activations():
    leaky = common.get_activation({"name": "leaky_relu", "alpha": 0.1})(jnp.asarray(_Z))
    np.testing.assert_allclose(leaky, np.where(_Z >= 0, _Z, 0.1 * _Z), rtol=1e-6)
    elu = common.get_activation({"name": "elu", "alpha": 2.0})(jnp.asarray(_Z))
    np.testing.assert_allclose(elu, np.where(_Z > 0, _Z, 2 * np.expm1(_Z)), rtol=1e-5, atol=1e-6)


_FI, _FO = 300, 200
_SHAPE = (_FI, 1000)  # 300k draws: moments to ~0.5%


@pytest.mark.parametrize(
    ("spec", "mean", "std", "bound"),
    [
        ("zeros", 0.0, 0.0, 0.0),
        ({"name": "uniform", "low": -0.1, "high": 0.3}, 0.1, 0.4 / math.sqrt(12), (-0.1, 0.3)),
        ("uniform", 0.0, 0.1 / math.sqrt(12), (-0.05, 0.05)),
        ({"name": "normal", "mean": 0.5, "std": 0.2}, 0.5, 0.2, None),
        ({"name": "normal", "mean": 0, "variance": 0.0025}, 0.0, 0.05, None),
        ("normal", 0.0, 0.05, None),
        ("glorot_uniform", 0.0, math.sqrt(2 / (_FI + _FO)), math.sqrt(6 / (_FI + _FO))),
        ("xavier", 0.0, math.sqrt(2 / (_FI + _FO)), math.sqrt(6 / (_FI + _FO))),
        ("glorot_normal", 0.0, math.sqrt(2 / (_FI + _FO)), 2 * math.sqrt(2 / (_FI + _FO)) / 0.8796),
        ("he_uniform", 0.0, math.sqrt(2 / _FI), math.sqrt(6 / _FI)),
        ("he_normal", 0.0, math.sqrt(2 / _FI), 2 * math.sqrt(2 / _FI) / 0.8796),
        ("he", 0.0, math.sqrt(2 / _FI), 2 * math.sqrt(2 / _FI) / 0.8796),
    ],
    ids=lambda v: str(v) if not isinstance(v, float) else None,
)
def test_init_moments(spec, mean, std, bound):
    raw = common.init_params(KEY, {"w": common.ParamSpec(_SHAPE, spec, _FI, _FO)})["w"]
    assert raw.dtype == jnp.float32 and raw.shape == _SHAPE
    w = np.asarray(raw, np.float64)
    assert abs(w.mean() - mean) <= 0.01 * std + 1e-7  # ~5 standard errors
    np.testing.assert_allclose(w.std(), std, rtol=0.01, atol=1e-9)
    if isinstance(bound, tuple):
        assert bound[0] <= w.min() and w.max() <= bound[1]
    elif bound is not None:
        assert np.abs(w - mean).max() <= bound + 1e-6


def test_biases_start_at_zero():
    params = models.build({"name": "mlp", "init": "uniform"}).init(KEY)[0]
    assert not np.any(params["dense1"]["b"]) and not np.any(params["output"]["b"])


def test_rmsnorm_matches_numpy():
    x = RNG.normal(size=(5, 16)).astype(np.float32) * 3
    scale = RNG.normal(size=(16,)).astype(np.float32)
    got = layers.rmsnorm({"scale": jnp.asarray(scale)}, jnp.asarray(x))
    want = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-6) * scale
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_max_pool_floors_odd_sizes():
    x = RNG.normal(size=(2, 11, 7, 3)).astype(np.float32)
    got = layers.max_pool2(jnp.asarray(x))
    want = x[:, :10, :6].reshape(2, 5, 2, 3, 2, 3).max(axis=(2, 4))
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------------
# Dropout, gradients, jit, vmap
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", FAMILY_CFGS, ids=_ids(FAMILY_CFGS))
def test_dropout_off_in_eval_on_in_train(cfg):
    _, params, apply = cached(cfg)
    k1, k2 = jax.random.split(jax.random.PRNGKey(7))
    ev = apply(params, X8, train=False)
    np.testing.assert_array_equal(ev, apply(params, X8, train=False, key=k1))
    t1 = apply(params, X8, train=True, key=k1)
    np.testing.assert_array_equal(t1, apply(params, X8, train=True, key=k1))
    assert not np.allclose(t1, apply(params, X8, train=True, key=k2))
    assert not np.allclose(t1, ev)
    with pytest.raises(ValueError, match="PRNG key"):
        apply(params, X8, train=True)


def test_no_dropout_train_equals_eval_without_key():
    _, params, apply = cached(S0)
    np.testing.assert_array_equal(apply(params, X8, train=True), apply(params, X8, train=False))


def test_dropout_rate_and_scaling():
    x = jnp.ones((200, 500))
    y = np.asarray(common.dropout(x, 0.25, train=True, key=KEY))
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.01
    assert abs(y.mean() - 1.0) < 0.01


@pytest.mark.parametrize("cfg", [  # SqueezeNet's backward compiles for ~4 s: end-to-end tier
    pytest.param(c, marks=pytest.mark.e2e) if c["name"] == "squeezenet" else c
    for c in FAMILY_CFGS], ids=_ids(FAMILY_CFGS))
def test_gradients_finite(cfg):
    from jaxmnist.engine.losses import xent

    model, params, _ = cached(cfg)
    y = jnp.arange(4) % 10

    def loss(p):
        return xent(model.apply(p, {}, X8, train=True, key=jax.random.PRNGKey(3))[0], y)

    grads = jax.jit(jax.grad(loss))(params)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.abs(g).max()) > 0 for g in leaves)


def test_jitted_apply_does_not_recompile():
    model = models.build({"name": "mlp", "hidden": [8], "dropout": 0.5})
    params = model.init(KEY)[0]
    fn = _jit_apply(model)
    fn(params, X8, train=True, key=jax.random.PRNGKey(1)).block_until_ready()
    fn(params, X8, train=True, key=jax.random.PRNGKey(2)).block_until_ready()
    other = jax.tree_util.tree_map(lambda a: a + 1.0, params)
    fn(other, X8, train=True, key=jax.random.PRNGKey(3)).block_until_ready()
    assert fn._cache_size() == 1
    fn(params, X8, train=False).block_until_ready()
    assert fn._cache_size() == 2  # eval is its own (static) program; and only one


@pytest.mark.parametrize("impl", [pytest.param("lax", marks=pytest.mark.e2e), "auto"])
def test_vmap_over_params_and_keys_equals_separate_calls(impl):
    model, _, apply = cached({**S1, "conv_impl": impl})
    keys = jax.random.split(KEY, 3)
    stacked = jax.vmap(model.init)(keys)[0]
    drop_keys = jax.random.split(jax.random.PRNGKey(9), 3)
    batched = jax.jit(jax.vmap(lambda p, k: model.apply(p, {}, X8, train=True, key=k)[0]))(
        stacked, drop_keys
    )
    for i in range(3):
        p = jax.tree_util.tree_map(lambda a, i=i: a[i], stacked)
        solo = apply(p, X8, train=True, key=drop_keys[i])
        np.testing.assert_allclose(batched[i], solo, atol=1e-5, rtol=1e-5)
    # members differ: vmapped init really gave each its own params
    assert not np.allclose(batched[0], batched[1])


def test_vmap_mlp_over_params():
    model = models.build({"name": "mlp", "hidden": [16], "rmsnorm": True})
    stacked = jax.vmap(model.init)(jax.random.split(KEY, 4))[0]
    xs = jnp.stack([X8] * 4)  # per-member batches (the grid's usual case)
    batched = jax.jit(jax.vmap(lambda p, x: model.apply(p, {}, x, train=False)[0]))(stacked, xs)
    apply = _jit_apply(model)
    for i in range(4):
        p = jax.tree_util.tree_map(lambda a, i=i: a[i], stacked)
        np.testing.assert_allclose(batched[i], apply(p, X8, train=False), atol=1e-6)


# --------------------------------------------------------------------------------------------
# Conv implementations agree
# --------------------------------------------------------------------------------------------

IMPLS = [i for i in layers.CONV_IMPLS if i != "auto"]


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize(("hw", "c", "o"), [(28, 1, 8), (13, 5, 7), (6, 16, 4)])
def test_conv_impls_agree(hw, c, o, padding):
    x = jnp.asarray(RNG.normal(size=(3, hw, hw, c)).astype(np.float32))
    w = jnp.asarray(RNG.normal(size=(3, 3, c, o)).astype(np.float32) / math.sqrt(9 * c))
    ref = layers.conv2d(x, w, padding=padding, impl="lax")
    expect_hw = hw if padding == "same" else hw - 2
    assert ref.shape == (3, expect_hw, expect_hw, o)
    for impl in IMPLS[1:]:
        got = layers.conv2d(x, w, padding=padding, impl=impl)
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5, err_msg=impl)


def test_conv_impl_gradients_agree():
    x = jnp.asarray(RNG.normal(size=(2, 9, 9, 4)).astype(np.float32))
    w = jnp.asarray(RNG.normal(size=(3, 3, 4, 6)).astype(np.float32) / 6)

    def grads(impl):  # jitted: one compile per impl instead of one per eager op
        return jax.jit(jax.grad(lambda x, w: jnp.sum(layers.conv2d(x, w, impl=impl) ** 2),
                                (0, 1)))(x, w)

    ref = grads("lax")
    for impl in IMPLS[1:]:
        for g, r in zip(grads(impl), ref, strict=True):
            np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-5, err_msg=impl)


@pytest.mark.parametrize(
    ("cfg", "impls"),
    [(S0, IMPLS[1:]), ({"name": "squeezenet"}, ["auto"]), (FAMILY_CFGS[2], ["auto"])],
)
def test_model_logits_same_for_every_conv_impl(cfg, impls):
    # Every impl on S0; on the bigger nets the backend default against lax (compiles are costly,
    # and the layer-level test above already pins every impl against lax).
    _, params, _ = cached(cfg)
    ref = cached({**cfg, "conv_impl": "lax"})[2](params, X8, train=False)
    for impl in impls:
        got = cached({**cfg, "conv_impl": impl})[2](params, X8, train=False)
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5, err_msg=impl)


def test_validating_a_study_starts_no_jax_backend():
    """A CNN study (and a user's Flax model) validates without asking JAX for a backend, so the
    API can still choose the host devices after it (conv implementations resolve when traced)."""
    import subprocess
    import sys

    code = ("import jaxmnist as jm, jax._src.xla_bridge as xb; jm.load_study('s2'); "
            "jm.load_study('flax_mnist'); print(len(xb._backends))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.split() == ["0"], out.stderr


def test_resolve_conv_impl():
    assert layers.resolve_conv_impl("auto", "cpu") == "im2col"
    assert layers.resolve_conv_impl("auto", "gpu") == "lax"
    assert layers.resolve_conv_impl("lax") == "lax"


# --------------------------------------------------------------------------------------------
# Oracle: S0 in Keras 3 with the same weights gives the same logits
# --------------------------------------------------------------------------------------------


@pytest.mark.e2e  # importing Keras and TensorFlow alone takes ~11 s of CPU
def test_s0_matches_keras_with_same_weights():
    pytest.importorskip("tensorflow")
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("Keras is not on the TensorFlow backend")
    from benchmarks.bench_workers import keras_s0_cnn

    net = keras_s0_cnn(keras)  # logits; the papers' softmax is in our loss
    assert net.count_params() == 225_034
    model = models.build(S0)
    params = model.init(jax.random.PRNGKey(42))[0]
    net.set_weights(
        [
            np.asarray(params[name][leaf])
            for name in ("conv1", "conv2", "dense1", "dense2")
            for leaf in ("w", "b")
        ]
    )
    x = RNG.integers(0, 256, (16, 28, 28, 1), np.uint8)
    want = net(x.astype(np.float32) / 255.0, training=False).numpy()
    for impl in ("lax", "auto"):  # the other impls are pinned to lax by the tests above
        got = cached({**S0, "conv_impl": impl})[2](params, x, train=False)
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, err_msg=impl)
