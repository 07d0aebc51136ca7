"""Compile seconds of the engine's program for a 2-member NNX group (run from each checkout).

Usage::

    python benchmarks/nnx_compile.py [MODEL_NAME]   # default: the NNX S0 CNN of flax_examples

Prints ``build_program``'s ``compile_seconds`` (initial state + ahead-of-time epoch compile) on
256 synthetic digits, Adam, batch 32: the number docs/performance.md compares between the
adapter that rebuilt the module in every step and the one that splits it once.
"""

from __future__ import annotations

import sys

from jaxmnist import data
from jaxmnist.data import synthetic
from jaxmnist.engine.program import build_program

name = sys.argv[1] if len(sys.argv) > 1 else "jaxmnist.models.flax_examples:NnxCNN"
x, y = synthetic.make(256)
tx, ty = synthetic.make(100, "test")
members = [{"model": {"name": name}, "optim": {"name": "adam", "learning_rate": 1e-3},
            "reg": {"l1": 0.0, "l2": 0.0}, "loss": "xent",
            "train": {"epochs": 1, "batch_size": 32}, "seed": s} for s in (0, 1)]
prog = build_program(members, data.Splits(x, y, None, None, tx, ty))
print(f"{name}: compile_seconds {prog.compile_seconds:.2f}")
