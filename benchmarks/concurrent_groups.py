"""Two one-member groups at once, one per XLA:CPU host device, vs one after the other.

S4 trains four one-member groups (one per depth). With the CLI's default CPU layout (one
single-threaded host device per core, ``jaxmnist.engine.hostdevices``) a one-member group runs
on one device; this measures whether running two such groups concurrently (a thread each,
``devices=[device_i]``) beats running them in turn, and how many cores one group already keeps
busy (process CPU time over wall time). Both orders must give the same parameters.

    PYTHONPATH=. python benchmarks/concurrent_groups.py     # from the repository root
"""

from __future__ import annotations

import os
import resource
import threading
import time

# Before JAX starts: the CLI's default layout on a 2-core machine.
os.environ["XLA_FLAGS"] = ("--xla_force_host_platform_device_count=2 "
                           "--xla_cpu_multi_thread_eigen=false")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxmnist import data  # noqa: E402
from jaxmnist.data import synthetic  # noqa: E402
from jaxmnist.engine.fit import train_grid  # noqa: E402


def _member(depth: int, seed: int) -> dict:
    return {"model": {"name": "cnn_depth", "depth": depth},
            "optim": {"name": "adam", "learning_rate": 1e-3}, "reg": {"l1": 0.0, "l2": 0.0},
            "loss": "xent", "train": {"epochs": 1, "batch_size": 32}, "seed": seed}


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    """Prints the wall times, their ratio, the cores one group uses, and whether bits agree."""
    x, y = synthetic.make(3072)
    tx, ty = synthetic.make(1000, "test")
    splits = data.Splits(x, y, None, None, tx, ty)
    groups = [[_member(2, 0)], [_member(3, 1)]]  # S4's L2 and L3 CNNs, 96 steps of 32 images
    devices = jax.devices()[:2]
    for group in groups:  # compile every (group, device) pair first: only training is timed
        for device in devices:
            train_grid(group, splits, devices=[device])

    c0, t0 = _cpu_seconds(), time.perf_counter()
    one = train_grid(groups[1], splits, devices=[devices[0]])
    wall_one, cpu_one = time.perf_counter() - t0, _cpu_seconds() - c0

    t0 = time.perf_counter()
    in_turn = [train_grid(g, splits, devices=[devices[0]])
               for g in groups]
    wall_turn = time.perf_counter() - t0

    together: list = [None, None]

    def run(i: int) -> None:
        together[i] = train_grid(groups[i], splits, devices=[devices[i]])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall_together = time.perf_counter() - t0
    same = all(np.array_equal(a, b)
               for ga, gb in zip(in_turn, together, strict=True)
               for ra, rb in zip(ga, gb, strict=True)
               for a, b in zip(jax.tree_util.tree_leaves(ra.params),
                               jax.tree_util.tree_leaves(rb.params), strict=True))
    same = same and all(np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(one[0].params), jax.tree_util.tree_leaves(in_turn[1][0].params),
        strict=True))
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"one group (L3) alone on one device: {wall_one:.2f} s wall, {cpu_one:.2f} s CPU = "
          f"{cpu_one / wall_one:.2f} cores busy")
    print(f"two groups in turn: {wall_turn:.2f} s; together (one per device): "
          f"{wall_together:.2f} s; speed-up {wall_turn / wall_together:.2f}x")
    print(f"parameters identical in every order: {same}; load average {load}; "
          f"jax {jax.__version__}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
