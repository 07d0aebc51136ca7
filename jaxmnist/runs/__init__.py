"""Run directories: the one writer and reader, and what is made from them.

:mod:`~jaxmnist.runs.rundir` (THE format), results, runview, tables, figures, published,
loggers. No module here but ``loggers`` and ``results`` imports jax; this file imports nothing.
"""
