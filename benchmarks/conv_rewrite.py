"""Does ``fast_cpu_convs`` give a Flax ``nnx.Conv`` CNN the zoo's speed inside ``lax.scan``?

Command (what benchmarks/results/conv-rewrite-*.md record)::

    nice -n 10 python benchmarks/conv_rewrite.py --batch 128 --steps 20

Every case times training steps (forward, ``jax.value_and_grad`` of softmax cross-entropy,
``optax.adam``) on random images [B, 28, 28, 1]:

- ``a``: Flax's examples/mnist CNN without BatchNorm/Dropout in NNX (conv 3x3/32 SAME, ReLU,
  avg-pool 2, conv 3x3/64 SAME, ReLU, avg-pool 2, dense 256, ReLU, dense 10), native
  ``nnx.Conv``, the steps inside one ``lax.scan`` (how the engine runs an epoch);
- ``b``: the same, its apply through ``jaxmnist.models.cpu_kernels.fast_cpu_convs``;
- ``c``: the same native model stepped by a Python loop calling a jitted train step per
  batch (Flax's own style, no scan);
- ``d``: the zoo's S0 CNN (``jaxmnist.models.build({"name": "cnn"})``) in the scan harness.

``--extra`` adds the same CNN with ``nnx.max_pool``: ``a-max``, ``b-max``, ``c-max``. (The
options measured in docs/performance.md's issue-19 table, ``b-autodiff``, ``b-max-nopool`` and
``b-sumpool``, were removed from the library after the measurement; run this file at c32d3ed
to repeat them.) Rounds interleave the cases so machine load hits them alike; the best round counts.
GFLOP/s: XLA's cost analysis of one compiled step (it counts a while loop's body once) times
the steps, over the best time. ``CPU ms/step`` is the
process CPU time (all threads) of the best round: on a loaded machine it tracks the work done
better than the wall time does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

from jaxmnist.models import build
from jaxmnist.models.cpu_kernels import fast_cpu_convs, rewrite_stats


class FlaxExampleCNN(nnx.Module):
    """Flax examples/mnist's CNN without BatchNorm and Dropout (``pool``: avg or max)."""

    def __init__(self, rngs: nnx.Rngs, pool: str = "avg") -> None:
        self.conv1 = nnx.Conv(1, 32, (3, 3), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, (3, 3), padding="SAME", rngs=rngs)
        self.linear1 = nnx.Linear(7 * 7 * 64, 256, rngs=rngs)
        self.linear2 = nnx.Linear(256, 10, rngs=rngs)
        self.pool = nnx.avg_pool if pool == "avg" else nnx.max_pool

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits [B, 10] of images [B, 28, 28, 1]."""
        x = self.pool(nnx.relu(self.conv1(x)), (2, 2), strides=(2, 2))
        x = self.pool(nnx.relu(self.conv2(x)), (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        return self.linear2(nnx.relu(self.linear1(x)))


def flax_model(pool: str) -> tuple[Any, Any]:
    """``(params, apply(params, x, key) -> logits)`` of :class:`FlaxExampleCNN`."""
    graphdef, params = nnx.split(FlaxExampleCNN(nnx.Rngs(0), pool))

    def apply(params: Any, x: jax.Array, key: jax.Array) -> jax.Array:
        del key
        return nnx.merge(graphdef, params)(x.astype(jnp.float32) / 255.0)

    return params, apply


def zoo_model() -> tuple[Any, Any]:
    """``(params, apply)`` of the zoo's S0 CNN."""
    model = build({"name": "cnn"})

    def apply(params: Any, x: jax.Array, key: jax.Array) -> jax.Array:
        return model.apply(params, x, train=True, key=key)

    return model.init(jax.random.PRNGKey(0)), apply


def flops_of(compiled: Any) -> float:
    """FLOPs from ``compiled.cost_analysis()`` (a dict, or a list of dicts in older jax)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


def make_case(apply: Any, params: Any, *, scan: bool, batch: int, steps: int) -> dict[str, Any]:
    """A ready-to-time run: ``run()`` does ``steps`` training steps; ``flops`` per run."""
    opt = optax.adam(1e-3)
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.integers(0, 256, (steps, batch, 28, 28, 1), np.uint8))
    ys = jnp.asarray(rng.integers(0, 10, (steps, batch), np.int32))

    def step(carry: Any, x: jax.Array, y: jax.Array) -> tuple[Any, jax.Array]:
        params, opt_state, key = carry
        key, sub = jax.random.split(key)

        def objective(p: Any) -> jax.Array:
            logits = apply(p, x, sub)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        value, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, key), value

    state = {"carry": (params, opt.init(params), jax.random.PRNGKey(1))}
    # XLA's cost analysis counts a while loop's body once, whatever its trip count: take the
    # FLOPs of one compiled step (the same computation as one scan iteration) times steps.
    step_compiled = jax.jit(step).lower(state["carry"], xs[0], ys[0]).compile()
    flops = flops_of(step_compiled) * steps
    if scan:
        def epoch(carry: Any, xs: jax.Array, ys: jax.Array) -> Any:
            return lax.scan(lambda c, xy: step(c, *xy), carry, (xs, ys))

        jitted = jax.jit(epoch, donate_argnums=0)
        compiled = jitted.lower(state["carry"], xs, ys).compile()

        def run() -> None:
            state["carry"], losses = compiled(state["carry"], xs, ys)
            jax.block_until_ready(losses)
    else:
        compiled = jax.jit(step, donate_argnums=0).lower(state["carry"], xs[0], ys[0]).compile()
        batches = [(xs[i], ys[i]) for i in range(steps)]

        def run() -> None:
            losses = []
            for x, y in batches:
                state["carry"], value = compiled(state["carry"], x, y)
                losses.append(value)
            jax.block_until_ready(losses)

    return {"run": run, "flops": flops}


def cases(extra: bool) -> list[tuple[str, str, Any, bool]]:
    """``(key, label, model factory, scan)`` per case."""
    def flax(pool: str, rewrite: bool) -> Any:
        def factory() -> tuple[Any, Any]:
            params, apply = flax_model(pool)
            return params, (fast_cpu_convs(apply) if rewrite else apply)
        return factory

    out = [
        ("a", "flax nnx CNN, native nnx.Conv, lax.scan", flax("avg", False), True),
        ("b", "flax nnx CNN, fast_cpu_convs, lax.scan", flax("avg", True), True),
        ("c", "flax nnx CNN, native, Python loop of jitted steps", flax("avg", False), False),
        ("d", "zoo S0 CNN (im2col), lax.scan", zoo_model, True),
    ]
    if extra:
        out += [
            ("a-max", "flax CNN with nnx.max_pool, native, lax.scan", flax("max", False), True),
            ("b-max", "flax CNN with nnx.max_pool, fast_cpu_convs, lax.scan",
             flax("max", True), True),
            ("c-max", "flax CNN with nnx.max_pool, native, Python loop",
             flax("max", False), False),
        ]
    return out


def main() -> int:
    """Runs the rounds, prints the table, writes JSON + Markdown into benchmarks/results/."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--extra", action="store_true", help="also the max-pool CNN")
    parser.add_argument("--only", default="", help="comma-separated case keys")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()

    selected = [c for c in cases(args.extra) if not args.only or c[0] in args.only.split(",")]
    load = [os.getloadavg()]
    prepared = {}
    for key, _label, factory, scan in selected:
        params, apply = factory()
        t0 = time.perf_counter()
        prepared[key] = make_case(apply, params, scan=scan, batch=args.batch, steps=args.steps)
        prepared[key]["run"]()  # warm-up
        prepared[key]["compile_s"] = time.perf_counter() - t0
        if key.startswith("b"):
            x = jnp.zeros((args.batch, 28, 28, 1), jnp.uint8)
            prepared[key]["rewrites"] = rewrite_stats(
                flax_model("max" if "max" in key else "avg")[1], params, x,
                jax.random.PRNGKey(0))
        print(f"compiled {key} in {prepared[key]['compile_s']:.1f} s", file=sys.stderr,
              flush=True)
    times: dict[str, list[float]] = {k: [] for k in prepared}
    cpu: dict[str, list[float]] = {k: [] for k in prepared}
    for r in range(args.rounds):
        for key in prepared:
            t0, c0 = time.perf_counter(), time.process_time()
            prepared[key]["run"]()
            times[key].append(time.perf_counter() - t0)
            cpu[key].append(time.process_time() - c0)
            print(f"round {r + 1} {key}: {times[key][-1]:.2f} s", file=sys.stderr, flush=True)
    load.append(os.getloadavg())

    images = args.batch * args.steps
    rows = []
    for key, label, _, scan in selected:
        best = min(times[key])
        rows.append({
            "case": key, "label": label, "scan": scan,
            "images_per_s": round(images / best, 1),
            "gflop_per_s": round(prepared[key]["flops"] / best / 1e9, 2),
            "gflop_per_step": round(prepared[key]["flops"] / args.steps / 1e9, 4),
            "step_ms": round(1e3 * best / args.steps, 2),
            "cpu_ms_per_step": round(1e3 * min(cpu[key]) / args.steps, 2),
            "times_s": [round(t, 3) for t in times[key]],
            "compile_s": round(prepared[key]["compile_s"], 2),
            **({"rewrites": prepared[key]["rewrites"]} if "rewrites" in prepared[key] else {}),
        })
    by = {r["case"]: r for r in rows}
    ratios = {}
    if {"b", "d"} <= by.keys():
        ratios["b_gflops_over_d"] = round(by["b"]["gflop_per_s"] / by["d"]["gflop_per_s"], 3)
    if {"b", "c"} <= by.keys():
        ratios["b_images_over_c"] = round(by["b"]["images_per_s"] / by["c"]["images_per_s"], 3)
    if {"b", "a"} <= by.keys():
        ratios["b_images_over_a"] = round(by["b"]["images_per_s"] / by["a"]["images_per_s"], 3)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": platform.node(), "nproc": os.cpu_count(),
        "jax": jax.__version__, "backend": jax.default_backend(),
        "python": platform.python_version(),
        "loadavg_start_end": [[round(v, 2) for v in la] for la in load],
        "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
        "command": "python benchmarks/conv_rewrite.py " + " ".join(sys.argv[1:]),
        "rows": rows, "ratios": ratios,
        "targets": {"b_gflops_over_d": ">= 0.8", "b_images_over_c": ">= 2"},
    }
    head = ("| case | what | images/s | GFLOP/s | GFLOP/step | step ms | CPU ms/step |"
            " compile s |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['label']} | {r['images_per_s']:.0f} | "
                     f"{r['gflop_per_s']:.2f} | {r['gflop_per_step']:.3f} | {r['step_ms']:.1f} |"
                     f" {r['cpu_ms_per_step']:.1f} | {r['compile_s']:.1f} |")
    table = "\n".join(lines)
    print(table)
    print(json.dumps(ratios))
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, f"conv-rewrite-{stamp}")
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(f"# fast_cpu_convs bench, {result['date']}\n\n"
                f"`{result['command']}`; {result['nproc']} CPUs, jax {result['jax']} "
                f"({result['backend']}), batch {args.batch}, {args.steps} steps per timed call, "
                f"best of {args.rounds} rounds; load average (1/5/15 min) at start "
                f"{load[0][0]:.2f}/{load[0][1]:.2f}/{load[0][2]:.2f}, end "
                f"{load[1][0]:.2f}/{load[1][1]:.2f}/{load[1][2]:.2f}.\n\n{table}\n\n"
                f"Ratios: {json.dumps(ratios)} (targets: b/d GFLOP/s >= 0.8, "
                f"b/c images/s >= 2).\n")
    print(f"wrote {base}.json and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
