"""``python -m benchmarks.step_profile`` — where a training step's time goes, per XLA op.

Traces the engine's compiled epoch (the program users run: ``engine.program.build_program``,
one member) with ``jax.profiler``, then sums the duration of every XLA op of that program over
the traced steps and writes a per-op table and a per-category summary::

    python -m benchmarks.step_profile --model cnn                  # S0's CNN, batch 64
    python -m benchmarks.step_profile --model squeezenet --steps 20
    python -m benchmarks.step_profile --model s4_l4 --batch-size 32
    python -m benchmarks.step_profile --model mlp --steps 50 --out /tmp/profile

Results: ``<out>/profile-<model>-<UTC stamp>.json`` and ``.md``. Each op is named as in the
optimized HLO (``fusion.12``, ``ynn_fusion.3``, ...) with its kind (what it computes: the root
instruction of a fusion) and the JAX operation it came from (HLO metadata ``op_name``).
Durations are the profiler's per-op events on every thread, so the op time of a step can
exceed its wall time when XLA runs two ops at once; on a busy machine every op waits for
cores, so profile on a quiet one (the load average is recorded).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import gzip
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.bench import machine
from jaxmnist import envinfo

MODELS: dict[str, dict[str, Any]] = {
    "cnn": {"name": "cnn"},
    "squeezenet": {"name": "squeezenet"},
    "s4_l4": {"name": "cnn_depth", "depth": 4, "dropout": 0.25, "padding": "same"},
    "mlp": {"name": "mlp", "hidden": [64]},
}
# What an op computes, from the opcode of its root instruction (a fusion's root) or its name.
CATEGORIES = (
    ("matmul (dot)", ("dot",)),
    ("convolution", ("convolution",)),
    ("copy / transpose", ("copy", "transpose")),
    ("patch writes (dynamic-update-slice)", ("dynamic-update-slice",)),
    ("gather / scatter / slices", ("gather", "scatter", "dynamic-slice", "slice")),
    ("reduce (pool, sums)", ("reduce", "reduce-window", "select-and-scatter")),
    ("random bits", ("rng", "threefry", "random")),
    ("elementwise", ("add", "multiply", "subtract", "divide", "maximum", "minimum", "select",
                     "compare", "exponential", "log", "sqrt", "rsqrt", "tanh", "convert", "and",
                     "or", "negate", "abs", "power", "clamp", "broadcast", "iota", "pad",
                     "concatenate", "reshape", "bitcast", "tuple")),
)


def category(kind: str) -> str:
    """The category of an op kind (a root opcode such as ``dot`` or ``dynamic-update-slice``)."""
    k = kind.lower()
    for label, keys in CATEGORIES:
        if any(k == key or k.startswith(key) for key in keys):
            return label
    return "other"


_INSTR = re.compile(r"^\s*(ROOT\s+)?%?([\w.\-]+)\s*=\s*[^=]*?\s([a-z][\w\-]*)\(")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_COMP = re.compile(r"^\s*(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")


def hlo_ops(hlo_text: str) -> dict[str, dict[str, str]]:
    """Every instruction of an optimized HLO module: name -> ``{"kind", "source"}``.

    ``kind`` is the opcode, or for a fusion (or a call) the opcode of the called computation's
    root; ``source`` is the JAX operation recorded in the metadata (``op_name``), shortened.
    """
    roots: dict[str, str] = {}
    instrs: dict[str, dict[str, str]] = {}
    computation = None
    for line in hlo_text.splitlines():
        comp = _COMP.match(line)
        if comp and "=" not in line.split("{")[0]:
            computation = comp.group(2)
            continue
        m = _INSTR.match(line)
        if not m:
            continue
        is_root, name, opcode = m.group(1), m.group(2), m.group(3)
        if is_root and computation:
            roots[computation] = opcode
        called = _CALLS.search(line)
        source = _OP_NAME.search(line)
        instrs[name] = {"opcode": opcode, "calls": called.group(1) if called else "",
                        "source": _short_source(source.group(1)) if source else ""}
    out = {}
    for name, info in instrs.items():
        kind = info["opcode"]
        if info["calls"] and info["calls"] in roots:
            kind = f"{info['opcode']}:{roots[info['calls']]}"
        out[name] = {"kind": kind, "source": info["source"]}
    return out


def _short_source(op_name: str) -> str:
    # "jit(<lambda>)/while/body/closed_call/.../jvp(dense)/dot_general" -> the last 3 parts
    skip = ("jit(", "while", "body", "closed_call", "cond", "branch_")
    parts = [p for p in op_name.split("/") if p and not p.startswith(skip)]
    return "/".join(parts[-3:])


def op_durations(trace_events: Sequence[dict[str, Any]], names: set[str]) -> dict[str, float]:
    """Microseconds per op name, summed over all complete ("X") events of the given names."""
    out: dict[str, float] = collections.defaultdict(float)
    for e in trace_events:
        if e.get("ph") == "X" and e.get("name") in names:
            out[e["name"]] += float(e.get("dur", 0.0))
    return dict(out)


def _read_trace(folder: Path) -> list[dict[str, Any]]:
    files = sorted(folder.rglob("perfetto_trace.json.gz")) or sorted(
        folder.rglob("*.trace.json.gz"))
    if not files:
        raise RuntimeError(f"jax.profiler wrote no trace under {folder}")
    with gzip.open(files[-1], "rt") as f:
        data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


def profile(model: str, batch_size: int, steps: int, repeats: int = 2) -> dict[str, Any]:
    """Traces ``repeats`` epochs of ``steps`` steps of one member; returns the per-op record.

    Args:
        model: a key of :data:`MODELS`.
        batch_size: images per step.
        steps: training steps per traced epoch.
        repeats: traced epochs (after one untraced warm-up epoch).
    """
    import jax
    import jax.numpy as jnp

    from benchmarks.bench_workers import load_data, member_config
    from jaxmnist.data import Splits
    from jaxmnist.engine.program import build_program

    arrays, source = load_data(steps * batch_size, 100)
    splits = Splits(arrays["train_x"], arrays["train_y"], None, None, arrays["test_x"],
                    arrays["test_y"])
    prog = build_program([member_config(MODELS[model], 1 + repeats, batch_size)], splits)
    hlo = hlo_ops(prog.epoch_exec.as_text())
    state = prog.init_state

    def epoch(e: int) -> float:
        nonlocal state
        t0 = time.perf_counter()
        state, *_ = prog.epoch_exec(state, prog.arrays, prog.train_x, prog.train_y,
                                    jnp.asarray(e, jnp.int32))
        jax.block_until_ready(state)
        return time.perf_counter() - t0

    epoch(1)  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            walls = [epoch(2 + r) for r in range(repeats)]
        events = _read_trace(Path(tmp))
    durations = op_durations(events, set(hlo))
    n_steps = steps * repeats
    ops = sorted(({"op": name, "kind": hlo[name]["kind"],
                   "category": category(hlo[name]["kind"].split(":")[-1]),
                   "source": hlo[name]["source"], "us_per_step": us / n_steps}
                  for name, us in durations.items()), key=lambda o: -o["us_per_step"])
    total = sum(o["us_per_step"] for o in ops)
    by_category: dict[str, float] = collections.defaultdict(float)
    for o in ops:
        o["percent"] = 100 * o["us_per_step"] / total if total else 0.0
        by_category[o["category"]] += o["us_per_step"]
    return {
        "model": model, "model_config": MODELS[model], "batch_size": batch_size,
        "steps_traced": n_steps, "data": source,
        "wall_ms_per_step": 1e3 * sum(walls) / n_steps,
        "op_ms_per_step": total / 1e3,
        "images_per_second_traced": n_steps * batch_size / sum(walls),
        "categories": {k: {"us_per_step": v, "percent": 100 * v / total if total else 0.0}
                       for k, v in sorted(by_category.items(), key=lambda kv: -kv[1])},
        "ops": ops,
    }


def to_markdown(result: dict[str, Any], top: int = 25) -> str:
    """The profile as Markdown: header, per-category table, the ``top`` slowest ops."""
    r = result
    lines = [
        f"# Step profile — {r['model']} (batch {r['batch_size']}) — {r['date']}", "",
        f"Machine: {r['machine']['cpu']}, {r['machine']['usable_cores']} cores; jax "
        f"{r['versions']['jax']}; commit {r['git_commit']}; load average (1 min) "
        f"{r['load_average'][0]:.2f} before, {r['load_average_end'][0]:.2f} after. "
        f"Command: `{r['command']}`. Data: {r['data']}.", "",
        f"{r['steps_traced']} traced steps: wall **{r['wall_ms_per_step']:.2f} ms/step** "
        f"({r['images_per_second_traced']:.0f} images/s under the profiler), op time "
        f"{r['op_ms_per_step']:.2f} ms/step summed over threads.", "",
        "| category | µs/step | % of op time |", "| --- | ---: | ---: |",
    ]
    for k, v in r["categories"].items():
        lines.append(f"| {k} | {v['us_per_step']:.0f} | {v['percent']:.1f} |")
    lines += ["", f"Slowest {top} ops:", "", "| op | kind | from (JAX op) | µs/step | % |",
              "| --- | --- | --- | ---: | ---: |"]
    for o in r["ops"][:top]:
        lines.append(f"| {o['op']} | {o['kind']} | {o['source'] or '–'} | "
                     f"{o['us_per_step']:.0f} | {o['percent']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Profiles one model's training step, writes JSON + Markdown under ``--out``, prints it."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.step_profile",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="cnn")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=50, help="steps per traced epoch (default 50)")
    p.add_argument("--repeats", type=int, default=2, help="traced epochs (default 2)")
    p.add_argument("--out", default="benchmarks/results", help="folder for the JSON + Markdown")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.steps < 1 or args.repeats < 1:
        p.error("--batch-size, --steps and --repeats must be positive")
    out = Path(args.out)
    try:  # before the profile: a bad --out should not cost a profiling run
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"step_profile: cannot create --out {out}: {e}; choose a writable folder",
              file=sys.stderr)
        return 2
    started = dt.datetime.now(dt.timezone.utc)
    load = list(os.getloadavg())
    result = profile(args.model, args.batch_size, args.steps, args.repeats)
    result.update({
        "date": started.strftime("%Y-%m-%d %H:%M UTC"), "load_average": load,
        "load_average_end": list(os.getloadavg()),
        "command": " ".join(["python -m benchmarks.step_profile",
                             *(sys.argv[1:] if argv is None else list(argv))]),
        "machine": machine(), "versions": envinfo.versions(("jax", "jaxlib")),
        "git_commit": envinfo.git_commit(short=True),
    })
    try:
        stem = f"profile-{args.model}-" + started.strftime("%Y%m%d-%H%M%S")
        (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
        markdown = to_markdown(result)
        (out / f"{stem}.md").write_text(markdown)
    except OSError as e:
        print(f"step_profile: cannot write to --out {out}: {e}; choose a writable folder",
              file=sys.stderr)
        return 2
    print(markdown)
    print(f"[step_profile] wrote {out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
