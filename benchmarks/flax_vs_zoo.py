"""Should the zoo move to Flax modules? S0's CNN as the zoo's pure functions vs Flax linen / NNX.

Command (what docs/models.md reports)::

    nice -n 10 python -m benchmarks.flax_vs_zoo --rounds 2 > benchmarks/results/flax_vs_zoo.json

Each case times one training step (forward, value_and_grad of xent, optax.adam) with
``benchmarks.bench_workers.measure_train_throughput`` (the bare reference step): batch 64,
steps inside one ``lax.scan`` (how the engine runs an epoch) and, for contrast, a Python loop
of jitted steps. Rounds interleave the cases so machine load hits them alike. Compile time is
the first (warm-up) call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

EX = "jaxmnist.models.flax_examples"
# (label, model config, run inside lax.scan too?). A lax conv inside lax.scan runs at ~40 img/s
# on XLA:CPU (docs/models.md, finding 1; measured again here in round 1: 40 img/s), so the
# lax-conv cases are timed in the Python-loop mode only.
CASES = [
    ("zoo cnn (im2col)", {"name": "cnn"}, True),
    ("flax linen cnn (im2col)", {"name": f"{EX}:linen_cnn"}, True),
    ("flax nnx cnn (im2col)", {"name": f"{EX}:NnxCNN"}, True),
    ("zoo cnn (lax conv)", {"name": "cnn", "conv_impl": "lax"}, False),
    ("flax linen cnn (nn.Conv)", {"name": f"{EX}:linen_cnn", "conv_impl": "flax"}, False),
    ("flax nnx cnn (nnx.Conv)", {"name": f"{EX}:NnxCNN", "conv_impl": "flax"}, False),
]


def main() -> int:
    """Runs the rounds; prints one JSON line per case to stderr and the summary to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    from benchmarks.bench_workers import measure_train_throughput

    rows = []
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for scan in (True, False):
            for label, cfg, in_scan in CASES:
                if scan and not in_scan:
                    continue
                out = measure_train_throughput(cfg, batch_size=64, steps=args.steps, repeats=3,
                                               scan=scan)
                rows.append({"round": r + 1, "case": label, "scan": scan,
                             "images_per_s": round(out["images_per_s"]),
                             "step_ms": round(out["step_ms"], 2),
                             "compile_s": round(out["compile_s"], 2)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    json.dump({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "host": platform.node(), "cpus": os.cpu_count(),
               "loadavg_1min_start_end": [*load, os.getloadavg()[0]], "rows": rows},
              sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
