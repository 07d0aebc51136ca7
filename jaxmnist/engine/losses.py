"""Numerically stable losses on logits, and L1/L2 weight penalties.

Every loss has the signature ``loss(logits, labels, weights=None) -> scalar``:

- ``logits``: float ``[B, K]`` (models return logits; softmax/sigmoid live here).
- ``labels``: integer class ids ``[B]`` or one-hot / probability targets ``[B, K]`` — every loss
  accepts both (the choice is made from the static rank, so it costs nothing under jit).
- ``weights``: optional ``[B]`` per-example weights or a 0/1 mask for padded batches; the result
  is the weighted mean ``sum(w * l) / sum(w)`` (0 when all weights are 0).

Names for :func:`get_loss`:

- ``xent``: softmax cross-entropy with integer labels (Keras ``sparse_categorical_crossentropy``).
- ``xent_onehot``: softmax cross-entropy with one-hot targets (Keras ``categorical_crossentropy``).
- ``mse``: mean over the K classes of ``(softmax(logits) - onehot)**2`` — Keras MSE on a softmax
  output, as S3's FFNN computes it on its softmax layer.
- ``bce``: binary cross-entropy per class between ``sigmoid(logits)`` and the one-hot target,
  averaged over the K classes (Keras ``binary_crossentropy`` on a sigmoid output), computed from
  logits as ``max(z, 0) - z*t + log1p(exp(-|z|))``.

Penalties act on weight leaves only (``w`` in the zoo, ``kernel`` in Flax; see
``jaxmnist.models.common.WEIGHT_NAMES``): ``l1_penalty = sum |w|`` and
``l2_penalty = sum w**2 / 2``. The engine multiplies by lambda, giving S3's ``lambda*|w|`` and
``lambda*w**2/2`` (S3 uses lambda = 0.01).
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
    """Mean of per-example ``values`` ``[B]``, weighted by ``weights`` ``[B]`` when given.

    Returns 0 (not NaN) when every weight is 0, e.g. an all-padding batch.
    """
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


xent = _weighted(xent_per_example)
mse = _weighted(mse_per_example)
bce = _weighted(bce_per_example)

PER_EXAMPLE: dict[str, Callable[[Array, Array], Array]] = {
    "xent": xent_per_example,
    "xent_onehot": xent_per_example,
    "mse": mse_per_example,
    "bce": bce_per_example,
}
LOSSES: dict[str, Loss] = {"xent": xent, "xent_onehot": xent, "mse": mse, "bce": bce}


def get_loss(name: str) -> Loss:
    """Returns ``loss(logits, labels, weights=None) -> scalar`` for a loss name.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    if name not in LOSSES:
        raise ValueError(f"loss: {name!r} is not valid; valid choices are {list(LOSSES)}")
    return LOSSES[name]


def l1_penalty(params: Any, names: Sequence[str] = WEIGHT_NAMES) -> Array:
    """``sum |w|`` over weight leaves; biases and norm scales are not penalised.

    Weight leaves are named ``w`` or ``kernel`` unless ``names`` says otherwise.
    """
    return sum((jnp.sum(jnp.abs(w)) for w in weight_leaves(params, names)), jnp.float32(0.0))


def l2_penalty(params: Any, names: Sequence[str] = WEIGHT_NAMES) -> Array:
    """``sum w**2 / 2`` over weight leaves; biases and norm scales are not penalised.

    Weight leaves are named ``w`` or ``kernel`` unless ``names`` says otherwise.
    """
    return 0.5 * sum((jnp.sum(jnp.square(w)) for w in weight_leaves(params, names)),
                     jnp.float32(0.0))
