"""Which XLA:CPU layout is fastest for a group: devices, threads, member order (issue 21).

Every case is a bench worker (``benchmarks.bench_workers``, the engine through ``train_grid``)
in its own process with its own ``XLA_FLAGS``; the cases run interleaved in rounds (one timed
epoch each per round, the order rotated), so load changes hit all alike. Ratios are printed
per round and of medians. Usage, from the repository root (``PYTHONPATH=.`` imports this
checkout, not an installed copy)::

    PYTHONPATH=. python benchmarks/cpu_layout.py --repeats 5 --model cnn
    # --only g1,g12,frozen selects the comparisons
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from benchmarks import bench

ONE_MT = ""  # JAX's default: one device, multi-threaded
TWO_ST = "--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false"
TWO_MT = "--xla_force_host_platform_device_count=2"
MODELS = {"cnn": {"name": "cnn"}, "squeezenet": {"name": "squeezenet"},
          "s4_l4": {"name": "cnn_depth", "depth": 4, "dropout": 0.25, "padding": "same"}}


def cases(args: argparse.Namespace) -> list[dict]:
    """The cases of the selected comparisons (see the module docstring)."""
    model = MODELS[args.model]
    solo_steps = {"cnn": 100, "squeezenet": 25, "s4_l4": 8}[args.model]
    batch = 32 if args.model == "s4_l4" else 64

    def case(name: str, flags: str, members: int, steps: int, **extra) -> dict:
        env = {"XLA_FLAGS": flags, "JAXMNIST_CPU_DEVICES": "1"}
        return {"name": name, "framework": "jax", "runner": "jax_engine", "model": model,
                "batch_size": batch, "steps": steps, "repeats": args.repeats,
                "test_images": 100, "members": members, "strategy": "sequential",
                "env": env, **extra}

    out = []
    if "g1" in args.only:
        out += [case("g1_one_mt", ONE_MT, 1, solo_steps),
                case("g1_two_st_padded", TWO_ST, 1, solo_steps, devices=2),
                case("g1_two_st_one", TWO_ST, 1, solo_steps, devices=1),
                case("g1_two_mt_one", TWO_MT, 1, solo_steps, devices=1)]
    if "g12" in args.only:
        out += [case("g12_one_mt", ONE_MT, 12, solo_steps // 4),
                case("g12_two_st", TWO_ST, 12, solo_steps // 4),
                case("g12_two_mt", TWO_MT, 12, solo_steps // 4)]
    if "frozen" in args.only:  # S2's case: members 0 and 4 (Adam, RMSprop at the top lr) diverge
        out += [case("frozen_contiguous", TWO_ST, 12, solo_steps // 4, diverge=[0, 4],
                     layout="contiguous"),
                case("frozen_dealt", TWO_ST, 12, solo_steps // 4, diverge=[0, 4])]
    return out


def main(argv: list[str] | None = None) -> int:
    """Runs the cases interleaved and prints rates and ratios."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn")
    parser.add_argument("--only", default="g1,g12,frozen")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.only = args.only.split(",")
    print(f"load at start {os.getloadavg()}", flush=True)
    records, loads = bench.run_interleaved(cases(args), args.repeats, timeout=1800,
                                           log=lambda m: print(m, flush=True))
    rates: dict[str, list[float]] = {}
    for name, rec in records.items():
        rounds = rec.get("rounds", [])
        rates[name] = [r["images"] / r["seconds"] for r in rounds]
        fin = rec.get("finish", {})
        median = statistics.median(rates[name]) if rounds else 0.0
        print(f"{name:20s} {rec['status']:6s} median {median:9.1f} img/s"
              f"  rounds {[round(x) for x in rates[name]]}  devices {fin.get('devices')} "
              f"statuses {fin.get('statuses')}", flush=True)
    pairs = [("g1_two_st_padded", "g1_one_mt"), ("g1_two_st_one", "g1_one_mt"),
             ("g1_two_mt_one", "g1_one_mt"), ("g12_two_st", "g12_one_mt"),
             ("g12_two_mt", "g12_one_mt"), ("frozen_dealt", "frozen_contiguous")]
    ratios = {}
    for a, b in pairs:
        if rates.get(a) and rates.get(b):
            per = [x / y for x, y in zip(rates[a], rates[b], strict=False)]
            ratios[f"{a}/{b}"] = {"of_medians": statistics.median(rates[a]) /
                                  statistics.median(rates[b]), "per_round": per}
            print(f"{a} / {b}: {ratios[f'{a}/{b}']['of_medians']:.3f} of medians, per round "
                  f"{[round(x, 3) for x in per]}", flush=True)
    print(f"load per round {[round(x[0], 2) for x in loads]}", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"records": records, "loads": loads, "ratios": ratios,
                                        "model": args.model}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
