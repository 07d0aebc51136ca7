"""Run directories: :mod:`~jaxmnist.runs.rundir` (THE format) and what is made from them.

No module here imports jax; this file imports nothing.
"""
