"""Numerically stable losses on logits, and L1/L2 weight penalties (table: docs/models.md).

Every loss is ``loss(logits [B, K], labels [B] or targets [B, K], weights=None) -> scalar``, the
weighted mean (0 for an all-padding batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxmnist.models.common import WEIGHT_NAMES, weight_leaves

Array = jax.Array
Loss = Callable[..., Array]


def _targets(labels: Array, logits: Array) -> Array:
    """Integer labels ``[B]`` -> one-hot float32 ``[B, K]``; ``[B, K]`` targets pass through."""
    labels = jnp.asarray(labels)
    if labels.ndim == logits.ndim - 1:
        return jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    if labels.shape != logits.shape:
        raise ValueError(f"labels shape {labels.shape} fits neither [B] nor logits {logits.shape}")
    return labels.astype(jnp.float32)


def weighted_mean(values: Array, weights: Array | None = None) -> Array:
    """Mean of ``values`` ``[B]``, weighted by ``weights`` ``[B]``; 0 when all weights are 0."""
    if weights is None:
        return jnp.mean(values)
    weights = jnp.asarray(weights, jnp.float32)
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), jnp.float32(1e-12))


def xent_per_example(logits: Array, labels: Array) -> Array:
    """Softmax cross-entropy per example, from log-softmax (integer or one-hot labels)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    labels = jnp.asarray(labels)
    if labels.ndim == logits.ndim - 1 and jnp.issubdtype(labels.dtype, jnp.integer):
        # Gather, not a one-hot product: cheaper, and it is Keras' sparse form.
        return -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return -jnp.sum(_targets(labels, logits) * logp, axis=-1)


def mse_per_example(logits: Array, labels: Array) -> Array:
    """Mean over classes of ``(softmax(logits) - target)**2`` per example."""
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.mean(jnp.square(probs - _targets(labels, logits)), axis=-1)


def bce_per_example(logits: Array, labels: Array) -> Array:
    """Per-class sigmoid binary cross-entropy, averaged over classes, from logits (stable)."""
    z = logits.astype(jnp.float32)
    t = _targets(labels, logits)
    # -[t log s(z) + (1-t) log(1-s(z))] == max(z,0) - z t + log(1 + exp(-|z|)); no overflow.
    return jnp.mean(jnp.maximum(z, 0.0) - z * t + jnp.log1p(jnp.exp(-jnp.abs(z))), axis=-1)


def _weighted(per_example: Callable[[Array, Array], Array]) -> Loss:
    def loss(logits: Array, labels: Array, weights: Array | None = None) -> Array:
        return weighted_mean(per_example(logits, labels), weights)

    loss.__doc__ = f"Weighted batch mean of :func:`{per_example.__name__}`."
    loss.__name__ = per_example.__name__.replace("_per_example", "")
    return loss


PER_EXAMPLE: dict[str, Callable[[Array, Array], Array]] = {
    "xent": xent_per_example, "xent_onehot": xent_per_example, "mse": mse_per_example,
    "bce": bce_per_example}
LOSSES: dict[str, Loss] = {name: _weighted(fn) for name, fn in PER_EXAMPLE.items()}
xent, mse, bce = LOSSES["xent"], LOSSES["mse"], LOSSES["bce"]


def get_loss(name: str) -> Loss:
    """``loss(logits, labels, weights=None) -> scalar`` by name (``ValueError``: unknown)."""
    if name not in LOSSES:
        raise ValueError(f"loss: {name!r} is not valid; valid choices are {list(LOSSES)}")
    return LOSSES[name]


def l1_penalty(params: Any, names: Sequence[str] = WEIGHT_NAMES) -> Array:
    """``sum |w|`` over the weight leaves (``names``); biases and norm scales are not."""
    return sum((jnp.sum(jnp.abs(w)) for w in weight_leaves(params, names)), jnp.float32(0.0))


def l2_penalty(params: Any, names: Sequence[str] = WEIGHT_NAMES) -> Array:
    """``sum w**2 / 2`` over the weight leaves (``names``); biases and norm scales are not."""
    return 0.5 * sum((jnp.sum(jnp.square(w)) for w in weight_leaves(params, names)),
                     jnp.float32(0.0))
