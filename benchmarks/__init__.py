"""Benchmark and profiling tools of the repository, outside the installed library.

Run from the repository root (``python -m benchmarks.bench``, ``python -m
benchmarks.step_profile``, ``python -m benchmarks.accelerator``); they import ``jaxmnist``, and
nothing in ``jaxmnist`` imports them (tests/test_imports.py). The wheel does not ship this
folder (pyproject.toml lists the library's packages).
"""
