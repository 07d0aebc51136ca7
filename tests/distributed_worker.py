"""Subprocess helper for tests/test_distributed.py: one process of a small distributed grid.

Runs as ``python tests/distributed_worker.py OUT.npz --devices D [--workdir DIR] [--kill-after-epoch
N --kill-process P]`` with the ``JAXMNIST_COORDINATOR`` / ``JAXMNIST_NUM_PROCESSES`` /
``JAXMNIST_PROCESS_ID`` environment of jaxmnist.engine.distributed (none of them: a plain
single-process run). Each process simulates ``D`` CPU devices (XLA_FLAGS must be set before jax
starts, hence a subprocess). Process 0 saves the results.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

# This checkout's jaxmnist (not whichever one is installed), and the test fixtures beside us.
sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--workdir")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--members", type=int, default=6)
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--kill-after-epoch", type=int, default=0)
    parser.add_argument("--kill-process", type=int, default=1)
    parser.add_argument("--prune", help="a pruning setting as JSON")
    parser.add_argument("--model", help="a model config as JSON (default: the small MLP)")
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"

    import jax

    from jaxmnist.engine import distributed
    from jaxmnist.engine.fit import train_grid

    settings = distributed.settings_from_env()
    if settings.coordinator is not None:
        distributed.initialize(settings)

    from distributed_fixtures import members, splits
    from train_worker import save_results

    def on_epoch_end(group_index, epoch, metrics, info):
        print(f"process {jax.process_index()}: epoch {epoch} done", flush=True)
        if epoch == args.kill_after_epoch and jax.process_index() == args.kill_process:
            # A hard kill, as a crashed or preempted host would get: no cleanup at all.
            os.kill(os.getpid(), signal.SIGKILL)

    with distributed.stop_together("from the last checkpoint"):
        results = train_grid(
            members(args.members, epochs=args.epochs, strategy=args.strategy,
                    model=json.loads(args.model) if args.model else None),
            splits(),
            args.workdir,
            callbacks=[SimpleNamespace(on_epoch_end=on_epoch_end)],
            prune=json.loads(args.prune) if args.prune else None,
        )
    if distributed.is_primary():
        save_results(args.out, results)
        stats = results[0].group
        print(f"devices {stats.devices}, padded {stats.padded_members}, "
              f"strategy {stats.strategy}, resumed {stats.resumed}", flush=True)


if __name__ == "__main__":
    main()
