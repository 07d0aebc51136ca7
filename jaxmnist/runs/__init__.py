"""Run directories: the one writer and reader, and what is made from them.

* :mod:`~jaxmnist.runs.rundir` -- THE run-directory format (one writer, atomic writes, the
  reader) and :mod:`~jaxmnist.runs.results` -- the engine's typed results shaped as its JSON.
* :mod:`~jaxmnist.runs.runview` -- a run read as grid points; :mod:`~jaxmnist.runs.tables`
  (the report's tables, Markdown + CSV), :mod:`~jaxmnist.runs.figures` (PNGs),
  :mod:`~jaxmnist.runs.published` (the papers' numbers), :mod:`~jaxmnist.runs.loggers`
  (TensorBoard, user callbacks).

This file imports nothing, and no module here but ``loggers`` and ``results`` imports jax.
"""
