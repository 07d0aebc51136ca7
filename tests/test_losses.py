"""Unit tests for jaxmnist.engine.losses against NumPy formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmnist.engine import losses

RNG = np.random.default_rng(1)
LOGITS = (RNG.normal(size=(6, 10)) * 3).astype(np.float32)
LABELS = np.array([0, 3, 9, 1, 1, 7], np.int32)
ONEHOT = np.eye(10, dtype=np.float32)[LABELS]
W = np.array([1, 1, 0, 2, 1, 0], np.float32)


def _np_log_softmax(z):
    z = z.astype(np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def _np_per_example(name, z, t):
    z = z.astype(np.float64)
    if name in ("xent", "xent_onehot"):
        return -(t * _np_log_softmax(z)).sum(-1)
    if name == "mse":
        return ((np.exp(_np_log_softmax(z)) - t) ** 2).mean(-1)
    s = 1 / (1 + np.exp(-z))
    return -(t * np.log(s) + (1 - t) * np.log(1 - s)).mean(-1)


@pytest.mark.parametrize("name", ["xent", "xent_onehot", "mse", "bce"])
def test_loss_matches_numpy_with_int_and_onehot_labels(name):
    fn = losses.get_loss(name)
    want = _np_per_example(name, LOGITS, ONEHOT)
    for labels in (LABELS, ONEHOT):
        np.testing.assert_allclose(fn(jnp.asarray(LOGITS), jnp.asarray(labels)), want.mean(), 1e-5)
        got_w = fn(jnp.asarray(LOGITS), jnp.asarray(labels), jnp.asarray(W))
        np.testing.assert_allclose(got_w, (want * W).sum() / W.sum(), rtol=1e-5)
    per_ex = losses.PER_EXAMPLE[name](jnp.asarray(LOGITS), jnp.asarray(LABELS))
    np.testing.assert_allclose(per_ex, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["xent", "mse", "bce"])
def test_mask_ignores_padded_examples(name):
    fn = losses.get_loss(name)
    keep = W > 0
    padded = fn(jnp.asarray(LOGITS), jnp.asarray(LABELS), jnp.asarray(keep.astype(np.float32)))
    np.testing.assert_allclose(padded, fn(LOGITS[keep], LABELS[keep]), rtol=1e-6)
    assert float(fn(LOGITS, LABELS, jnp.zeros(6))) == 0.0  # all padding: 0, not NaN


@pytest.mark.parametrize("name", ["xent", "mse", "bce"])
def test_stable_for_huge_logits(name):
    z = jnp.array([[1e4, -1e4] + [0.0] * 8, [-3e4, 3e4] + [0.0] * 8], jnp.float32)
    y = jnp.array([0, 0])
    fn = losses.get_loss(name)
    value, grad = jax.value_and_grad(lambda z: fn(z, y))(z)
    assert np.isfinite(float(value)) and bool(jnp.all(jnp.isfinite(grad)))
    if name == "xent":
        np.testing.assert_allclose(value, 0.5 * (0.0 + 6e4), rtol=1e-6)  # exact, no overflow


def test_get_loss_unknown_lists_choices():
    with pytest.raises(ValueError) as err:
        losses.get_loss("hinge")
    for name in ("'hinge'", "'xent'", "'xent_onehot'", "'mse'", "'bce'"):
        assert name in str(err.value)


def test_bad_label_shape():
    with pytest.raises(ValueError, match="labels shape"):
        losses.mse(jnp.zeros((4, 10)), jnp.zeros((4, 3)))


def test_penalties_act_on_kernels_only():
    params = {
        "dense1": {"w": jnp.array([[1.0, -2.0], [3.0, -4.0]]), "b": jnp.array([100.0, -100.0])},
        "norm1": {"scale": jnp.array([50.0, 50.0])},
        "fire2": {"squeeze": {"w": jnp.array([-0.5]), "b": jnp.array([9.0])}},
    }
    np.testing.assert_allclose(losses.l1_penalty(params), 1 + 2 + 3 + 4 + 0.5)
    np.testing.assert_allclose(losses.l2_penalty(params), (1 + 4 + 9 + 16 + 0.25) / 2)
    g = jax.grad(lambda p: 0.01 * losses.l2_penalty(p))(params)
    np.testing.assert_allclose(g["dense1"]["w"], 0.01 * params["dense1"]["w"])  # d(λw²/2) = λw
    assert not np.any(g["dense1"]["b"]) and not np.any(g["norm1"]["scale"])


def test_penalties_vmap_over_a_grid():
    stacked = {"l": {"w": jnp.stack([jnp.ones(3), 2 * jnp.ones(3)]), "b": jnp.ones((2, 3))}}
    np.testing.assert_allclose(jax.vmap(losses.l1_penalty)(stacked), [3.0, 6.0])
    np.testing.assert_allclose(jax.vmap(losses.l2_penalty)(stacked), [1.5, 6.0])
