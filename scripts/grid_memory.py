"""Device memory of one grid epoch per member count: how many members fit on a device.

    python scripts/grid_memory.py        # MLP and the S0 CNN, 1, 4, 16 members, both strategies
    python scripts/grid_memory.py --members 1 4 --models mlp

For each model, strategy and number of members G on ONE device, it builds the group's program
(jaxmnist.engine.program.build_program: data on the device, initial state, the compiled epoch) and
reads XLA's buffer assignment of the compiled epoch (``memory_analysis()``): arguments (the members'
state + the dataset, replicated on every device), outputs (aliased with the donated state) and
temporaries (activations, gradients). No training runs. The data are zeros of full-MNIST shape
(60,000 training images), since memory does not depend on the pixel values.

On several devices each device holds G / devices members plus its own copy of the dataset, so
these per-device numbers are what a multi-device or multi-host grid needs per device. Numbers
come from the backend this runs on; on CPU they are XLA:CPU's, and a GPU or TPU compiler fuses
differently, so run it there for that device.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODELS = {
    "mlp": {"name": "mlp", "hidden": [512, 512]},
    "cnn": {"name": "cnn"},
}
MIB = 2**20


def _member(model: dict, k: int, strategy: str) -> dict:
    return {
        "model": dict(model),
        # One optimizer for all: a grid of several carries every present optimizer's state in
        # every member (the union state), which would mix two effects in the slope.
        "optim": {"name": "adam", "learning_rate": 1e-3 * (k + 1)},
        "reg": {"l1": 0.0, "l2": 0.0},
        "loss": "xent",
        "train": {"epochs": 1, "batch_size": 64, "strategy": strategy},
        "seed": k,
    }


def measure(model_name: str, strategy: str, g: int, splits) -> dict:
    """Builds one group of ``g`` members on one device and returns its memory in bytes."""
    import jax

    from jaxmnist.engine.program import build_program

    members = [_member(MODELS[model_name], k, strategy) for k in range(g)]
    prog = build_program(members, splits, devices=jax.devices()[:1])
    stats = prog.epoch_exec.memory_analysis()
    state_bytes = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(prog.init_state))
    data_bytes = sum(a.nbytes for a in (prog.train_x, prog.train_y))
    return {
        "model": model_name, "strategy": prog.placement.strategy, "members": g,
        "state": state_bytes, "data": data_bytes,
        "arguments": stats.argument_size_in_bytes, "outputs": stats.output_size_in_bytes,
        "aliased": stats.alias_size_in_bytes, "temp": stats.temp_size_in_bytes,
        # The epoch's peak: its inputs stay live; the donated state is reused for the outputs.
        "peak": stats.argument_size_in_bytes + stats.output_size_in_bytes
        - stats.alias_size_in_bytes + stats.temp_size_in_bytes,
    }


def main() -> None:
    """Measures every (model, strategy, members) and prints a Markdown table and the slopes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--members", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--strategies", nargs="+", default=["sequential", "vmap"])
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    import jax

    from jaxmnist import data

    splits = data.Splits(
        np.zeros((60_000, 28, 28, 1), np.uint8), np.zeros(60_000, np.int32), None, None,
        np.zeros((10_000, 28, 28, 1), np.uint8), np.zeros(10_000, np.int32),
    )
    rows = [measure(m, s, g, splits) for m in args.models for s in args.strategies
            for g in args.members]
    print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), "
          f"jax {jax.__version__}, {platform.machine()}; MiB per device, batch 64")
    print("| model | strategy | members | state | dataset | temp | peak | peak / member |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['model']} | {r['strategy']} | {r['members']} | {r['state'] / MIB:.1f} | "
              f"{r['data'] / MIB:.1f} | {r['temp'] / MIB:.1f} | {r['peak'] / MIB:.1f} | "
              f"{r['peak'] / MIB / r['members']:.2f} |")
    print("\nPer extra member (slope between the smallest and largest grid), MiB:")
    for m in args.models:
        for s in args.strategies:
            sel = sorted((r for r in rows if r["model"] == m and r["strategy"] == s),
                         key=lambda r: r["members"])
            lo, hi = sel[0], sel[-1]
            if hi["members"] == lo["members"]:
                continue
            span = hi["members"] - lo["members"]
            print(f"  {m} {s}: state {(hi['state'] - lo['state']) / span / MIB:.2f}, "
                  f"temp {(hi['temp'] - lo['temp']) / span / MIB:.2f}, "
                  f"peak {(hi['peak'] - lo['peak']) / span / MIB:.2f}; "
                  f"fixed (peak at 0 members) "
                  f"{(lo['peak'] - lo['members'] * (hi['peak'] - lo['peak']) / span) / MIB:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
