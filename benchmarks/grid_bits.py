"""Bit-identity check of an engine change: train a small mixed grid, save or compare results.

Usage (from each checkout; the saved file of the old one is compared with the new one's)::

    python benchmarks/grid_bits.py save OLD.npz sequential      # in the old checkout
    python benchmarks/grid_bits.py save NEW.npz sequential      # in the new checkout
    python benchmarks/grid_bits.py compare OLD.npz NEW.npz      # the arrays that differ

The grid: the zoo's S1 CNN, an MLP with dropout and the Flax linen CNN, each with Adam 1e-3,
SGD 0.05 and RMSprop 10 (L2 1e-4, 2 epochs, 640 synthetic digits, batch 32); saved are every
parameter, the test predictions, the per-epoch history and the status of every member.
"""

from __future__ import annotations

import sys

import numpy as np

MODELS = (("cnn", {"name": "cnn", "dropout": [0.25, 0.5]}),
          ("mlp", {"name": "mlp", "hidden": [64], "dropout": 0.2}),
          ("linen", {"name": "jaxmnist.models.flax_examples:linen_cnn", "dropout": [0.25, 0.5]}))
FIELDS = ("train_loss", "train_acc", "val_loss", "val_acc")


def save(path: str, strategy: str) -> None:
    """Trains the grid with ``strategy`` and writes its results to ``path``."""
    from jaxmnist import data, models
    from jaxmnist.data import synthetic
    from jaxmnist.engine.fit import train_grid
    from jaxmnist.runs import results

    x, y = synthetic.make(640)
    vx, vy = synthetic.make(200, "test", seed=1)
    tx, ty = synthetic.make(300, "test")
    splits = data.Splits(x, y, vx, vy, tx, ty)
    out = {}
    for name, model in MODELS:
        members = [{"model": model, "optim": {"name": o, "learning_rate": lr},
                    "reg": {"l1": 0.0, "l2": 1e-4}, "loss": "xent",
                    "train": {"epochs": 2, "batch_size": 32, "strategy": strategy}, "seed": s}
                   for o, lr, s in (("adam", 1e-3, 0), ("sgd", 0.05, 1), ("rmsprop", 10.0, 2))]
        for k, result in enumerate(train_grid(members, splits)):
            r = {**results.member_record(result, ty), "params": result.params}
            for leaf_path, leaf in models.layer_paths(r["params"]).items():
                out[f"{name}/{k}/{leaf_path}"] = np.asarray(leaf)
            out[f"{name}/{k}/test_pred"] = np.asarray(r["test_pred"])
            out[f"{name}/{k}/history"] = np.asarray(
                [[np.nan if h.get(f) is None else h[f] for f in FIELDS] for h in r["history"]])
            out[f"{name}/{k}/status"] = np.asarray(r["status"])
    np.savez(path, **out)
    print(f"saved {len(out)} arrays to {path}")


def compare(a_path: str, b_path: str) -> int:
    """Prints the arrays that differ between two saved files; returns 1 if any does."""
    a, b = np.load(a_path), np.load(b_path)
    if a.files != b.files:
        print("the files hold different arrays")
        return 1
    bad = [k for k in a.files
           if not np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f")]
    print(f"{len(a.files)} arrays; differing: {bad or 'none'}")
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["save"]:
        save(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["compare"]:
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
