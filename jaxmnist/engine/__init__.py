"""The training engine: one compiled program per group of members, and what it needs.

* :mod:`~jaxmnist.engine.train` -- build a group's program, fit it (checkpoints, hooks),
  evaluate it; returns typed results (arrays), never JSON.
* :mod:`~jaxmnist.engine.optim` (optax by name, per-member hyperparameters),
  :mod:`~jaxmnist.engine.losses`, :mod:`~jaxmnist.engine.metrics` (confusion-matrix numbers,
  NumPy only), :mod:`~jaxmnist.engine.checkpoint` (orbax),
  :mod:`~jaxmnist.engine.distributed` (multi-process), :mod:`~jaxmnist.engine.hostdevices`
  (the CPU device layout), :mod:`~jaxmnist.engine.hooks` (the callback protocol, no jax),
  :mod:`~jaxmnist.engine.baselines` (scikit-learn's MLP, S3's baseline).

This file imports nothing: the run-directory readers use ``hooks`` and ``metrics`` without jax.
"""
