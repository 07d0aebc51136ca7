"""The union optimizer: one optax state for every optimizer a grid uses, selected per member.

A grid such as S2's (Adam, RMSprop, SGD × 4 learning rates) must run as ONE vmapped program, but
the three optimizers keep different state. Design chosen here ("union state + select"):

* every member carries the state of every optimizer *present in its group* (a static set);
* each step computes every present optimizer's update direction from the same gradient and picks
  the member's own with ``jnp.where`` on its integer ``opt_id``;
* the learning rate (and momentum) are per-member arrays, applied after the direction:
  ``params ← params − lr · direction``.

The extra work is elementwise (a few multiply-adds per parameter and optimizer), small next to a
forward/backward pass, and in exchange all members share one batched forward/backward. A member
never reads another optimizer's state, so that unused state cannot change its trajectory: member
``k`` equals the same optax optimizer run alone (tested in ``tests/test_train.py``).

Directions are optax transforms. Epsilons follow Keras' defaults (1e-7), the framework the
papers used; Adam's betas (0.9, 0.999) and RMSprop's decay (0.9) are the shared defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam", "rmsprop")
"""Every optimizer name a member config may use (``optim.name``)."""

KERAS_EPSILON = 1e-7  # Keras' default epsilon for Adam and RMSprop.
ADAM_BETAS = (0.9, 0.999)
RMSPROP_DECAY = 0.9
DEFAULT_MOMENTUM = 0.9


class MemberHyper(NamedTuple):
    """Per-member dynamic optimizer hyperparameters (each a scalar; ``[G]`` on a grid)."""

    opt_id: jax.Array  # int32 index into OPTIMIZERS
    learning_rate: jax.Array  # float32
    momentum: jax.Array  # float32; used by "momentum" only


def check_optimizer(name: str) -> None:
    """Raises a clear ``ValueError`` when ``name`` is not a known optimizer."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid choices: {', '.join(OPTIMIZERS)}")


HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    "sgd": ("momentum",), "momentum": ("momentum",), "adam": ("momentum",),
    "rmsprop": ("momentum",),
}
"""Keys an ``optim`` section may hold beside ``name`` and ``learning_rate``, per optimizer.

``momentum`` is accepted for every optimizer (a grid over optimizers shares one base config);
only ``"momentum"`` uses it."""


def check_hyperparameters(name: str, hyper: dict[str, Any]) -> None:
    """Checks an optimizer's extra hyperparameters (the study schema calls this).

    Args:
        name: A valid optimizer name.
        hyper: The ``optim`` section without ``name`` and ``learning_rate``.

    Raises:
        ValueError: an unknown key or a value out of range; all problems in one message.
    """
    allowed = HYPERPARAMETERS.get(name, ())
    problems = [f"unknown key 'optim.{k}' for optimizer {name!r}; valid keys: name, "
                f"learning_rate{''.join(', ' + a for a in allowed)}"
                for k in hyper if k not in allowed]
    if "momentum" in hyper:
        m = hyper["momentum"]
        if isinstance(m, bool) or not isinstance(m, int | float) or not 0 <= m < 1:
            problems.append(f"momentum: must be in [0, 1), got {m!r}")
    if problems:
        raise ValueError("; ".join(problems))


def _direction(name: str, momentum: jax.Array) -> optax.GradientTransformation:
    """The update direction of one optimizer, before scaling by ``-learning_rate``."""
    if name == "sgd":
        return optax.identity()
    if name == "momentum":
        # Heavy-ball momentum as in optax.sgd / Keras SGD(momentum=m): t ← g + m·t.
        return optax.trace(decay=momentum, nesterov=False)
    if name == "adam":
        return optax.scale_by_adam(b1=ADAM_BETAS[0], b2=ADAM_BETAS[1], eps=KERAS_EPSILON)
    if name == "rmsprop":
        return optax.scale_by_rms(decay=RMSPROP_DECAY, eps=KERAS_EPSILON)
    check_optimizer(name)
    raise AssertionError("unreachable")


def present_optimizers(names: Sequence[str]) -> tuple[str, ...]:
    """The distinct optimizers of a group, in the canonical ``OPTIMIZERS`` order (static)."""
    for name in names:
        check_optimizer(name)
    return tuple(name for name in OPTIMIZERS if name in set(names))


def init(params: Any, present: Sequence[str], momentum: jax.Array) -> dict[str, Any]:
    """The union state for one member: ``{optimizer name: optax state}``."""
    return {name: _direction(name, momentum).init(params) for name in present}


def update(
    grads: Any, state: dict[str, Any], params: Any, hyper: MemberHyper, present: Sequence[str]
) -> tuple[Any, dict[str, Any]]:
    """Computes one member's new parameters and union state.

    Args:
        grads: Gradient pytree (same structure as params).
        state: The union state from :func:`init`.
        params: Current parameters.
        hyper: This member's hyperparameters.
        present: The group's static set of optimizers (from :func:`present_optimizers`).

    Returns:
        ``(new_params, new_state)``.
    """
    directions = {}
    new_state = {}
    for name in present:
        directions[name], new_state[name] = _direction(name, hyper.momentum).update(
            grads, state[name], params
        )
    if len(present) == 1:
        chosen = directions[present[0]]
    else:
        # Select this member's direction leaf by leaf; the other branches are computed but unused.
        def pick(*leaves):
            out = leaves[-1]
            for name, leaf in zip(present[:-1], leaves[:-1], strict=True):
                out = jnp.where(hyper.opt_id == OPTIMIZERS.index(name), leaf, out)
            return out

        chosen = jax.tree_util.tree_map(pick, *(directions[name] for name in present))
    new_params = jax.tree_util.tree_map(
        lambda p, d: p - hyper.learning_rate.astype(p.dtype) * d, params, chosen
    )
    return new_params, new_state


def reference_optimizer(name: str, learning_rate: float, momentum: float = DEFAULT_MOMENTUM):
    """The plain optax optimizer that a union member must match (used by the oracle tests)."""
    check_optimizer(name)
    if name == "sgd":
        return optax.sgd(learning_rate)
    if name == "momentum":
        return optax.sgd(learning_rate, momentum=momentum)
    if name == "adam":
        return optax.adam(learning_rate, b1=ADAM_BETAS[0], b2=ADAM_BETAS[1], eps=KERAS_EPSILON)
    return optax.rmsprop(learning_rate, decay=RMSPROP_DECAY, eps=KERAS_EPSILON)
