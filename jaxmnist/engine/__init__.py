"""The training engine: one compiled program per group of members, and what it needs.

Read in this order: :mod:`~jaxmnist.engine.fit` (``train_grid``: build, fit, evaluate; the epoch
loop with checkpoints and hooks) -> :mod:`~jaxmnist.engine.program` (the per-member step, the
epoch ``lax.scan``, evaluation) -> :mod:`~jaxmnist.engine.placement` (devices, layout, strategy)
-> :mod:`~jaxmnist.engine.evaluate` (typed results, arrays, never JSON). Beside them:
:mod:`~jaxmnist.engine.optim`, :mod:`~jaxmnist.engine.losses`, :mod:`~jaxmnist.engine.metrics`
(NumPy only), :mod:`~jaxmnist.engine.checkpoint` (orbax), :mod:`~jaxmnist.engine.distributed`,
:mod:`~jaxmnist.engine.hostdevices` (the CPU device layout, no jax), :mod:`~jaxmnist.engine.hooks`
(no jax) and :mod:`~jaxmnist.engine.baselines` (scikit-learn, S3).

This file imports nothing: the run-directory readers use ``hooks`` and ``metrics`` without jax.
"""
