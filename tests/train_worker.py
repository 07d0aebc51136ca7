"""Subprocess helper for tests/test_train.py: train a small grid and save its outcome.

Runs as ``python tests/train_worker.py OUT.npz [--workdir DIR] [--kill-after-epoch N]`` so that
tests can (a) simulate several CPU devices with XLA_FLAGS, which must be set before jax starts,
and (b) kill a training process for real in the middle of a run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

# This checkout's jaxmnist (not whichever one is installed), and the test fixtures beside us.
sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from train_fixtures import (  # noqa: E402
    GRID_LEARNING_RATES,
    SMALL_MLP,
    STABLE_LEARNING_RATES,
    flat_params,
    grid_members,
    small_splits,
)

from jaxmnist.engine import fit  # noqa: E402
from jaxmnist.engine.fit import train_grid  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--workdir")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--kill-after-epoch", type=int, default=0)
    parser.add_argument("--stable", action="store_true",
                        help="STABLE_LEARNING_RATES instead of S2's (tolerance tests)")
    parser.add_argument("--prune", help="a pruning setting as JSON (saves each rung's layout)")
    parser.add_argument("--strategy", default="auto")
    args = parser.parse_args()
    layouts = []
    if args.prune:
        redeal = fit._redeal

        def recording(prog, active, state=None):  # the layout each re-deal leaves
            out = redeal(prog, active, state)
            layouts.append(prog.placement.layout.copy())
            return out

        fit._redeal = recording

    def on_epoch_end(group_index, epoch, metrics, info):
        if epoch == args.kill_after_epoch:
            # A hard kill, as an interrupted job would get: no cleanup, no atexit handlers.
            os.kill(os.getpid(), signal.SIGKILL)

    results = train_grid(
        grid_members(epochs=args.epochs, model=SMALL_MLP,
                     learning_rates=STABLE_LEARNING_RATES if args.stable
                     else GRID_LEARNING_RATES, **{"train.strategy": args.strategy}),
        small_splits(),
        args.workdir,
        callbacks=[SimpleNamespace(on_epoch_end=on_epoch_end)],
        prune=json.loads(args.prune) if args.prune else None,
    )
    save_results(args.out, results, layouts)


def save_results(path: str, results, layouts=()) -> None:
    """Saves what the comparisons need: params, histories, test accuracy, epochs trained."""
    arrays = {f"layout{i}": layout for i, layout in enumerate(layouts)}
    for k, result in enumerate(results):
        for name, leaf in flat_params(result.params).items():
            arrays[f"m{k}/{name}"] = leaf
        arrays[f"m{k}/history"] = np.asarray(result.history, np.float64)
        arrays[f"m{k}/test_acc"] = np.asarray(result.test_acc)
        arrays[f"m{k}/test_pred"] = np.asarray(result.test_pred)
        arrays[f"m{k}/epochs_trained"] = np.asarray(result.epochs_trained)
    np.savez(path, **arrays)


if __name__ == "__main__":
    main()
