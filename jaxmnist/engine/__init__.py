"""The training engine: one compiled program per group of members (map: docs/architecture.md).

This file imports nothing: the run-directory readers use ``hooks`` and ``metrics`` without jax.
"""
