"""``python -m benchmarks.accelerator``: the one-command accelerator run (one GPU, < 10 minutes).

Three measurements, in this order, each written to the JSON and Markdown result as soon as it
finishes (a run stopped by a time limit keeps what it measured):

1. **Full S2.** ``sweeps/s2.py`` with its full settings and 1 seed (12 SqueezeNets, 30 epochs,
   50k/10k holdout, full test set) through ``jaxmnist.runner.run_study``: wall time and the
   optimizer x learning-rate test-accuracy matrix beside the paper's. The run directory (report
   included) stays under ``--workdir``.
2. **S0's time to 99 %.** The S0 study as published (1 seed: Adam 1e-3, batch 32, 60k images,
   up to 10 epochs) with the 10k test set evaluated after every epoch: the seconds until the
   first epoch whose test accuracy reaches 0.99 (compile apart, the evaluations included).
3. **Strategy x conv grid.** S0's CNN in a 12-member grid (optimizer {Adam, RMSprop, SGD} x
   learning rate {0.1, 0.01, 0.001, 0.0001}, S0's batch 32), trained as one program in all four
   combinations of ``train.strategy`` {vmap, sequential} x ``model.conv_impl`` {lax, im2col}:
   compile seconds and training images/s of all members together (the last epoch, on a slice
   of the training set; evaluation excluded; the engine compiles before the first epoch).
   Public reports say a vmapped convolution can be several times slower than ``lax.map`` on
   GPUs: this measures it for our models.

``--tiny`` runs the same code on a few hundred images, 1-2 epochs and small grids: it checks the
whole path end to end on a CPU in well under a minute (tests/test_accelerator.py). Results go
to ``<out>/accelerator-<UTC stamp>[-tiny].{json,md}`` with the device and versions.

Usage::

    python -m benchmarks.accelerator [--tiny] [--out benchmarks/results] [--workdir DIR]
                                   [--data-dir DIR] [--only s2,s0,grid]
    bash scripts/accelerator_run.sh       # the same on the GPU machine (docs/performance.md)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from jaxmnist import config as C

SCHEMA_VERSION = 1
PARTS = ("s2", "s0", "grid")  # in this order: the S2 wall time first
OPTIMIZERS = ("adam", "rmsprop", "sgd")
LEARNING_RATES = (0.1, 0.01, 0.001, 0.0001)
COMBINATIONS = (("vmap", "lax"), ("vmap", "im2col"), ("sequential", "lax"),
                ("sequential", "im2col"))
TARGET_ACC = 0.99  # the accuracy whose time part 2 measures: its definition, not a pass mark

# Sizes of the full (accelerator) run and of --tiny (a CPU check of the same code path).
FULL = {"grid_train_images": 16_000, "grid_members": 12, "grid_epochs": 2,
        "s0_epochs": 10, "s0_overrides": (), "s2_overrides": ()}
TINY = {"tiny": True, "grid_train_images": 64, "grid_members": 2, "grid_epochs": 1, "s0_epochs": 1,
        "s0_overrides": ("data.train_limit=256", "data.test_limit=256"),
        "s2_overrides": ("data.train_limit=128", "data.val_limit=64", "data.test_limit=128",
                         "base.train.epochs=1", "grid.optim.learning_rate=[0.001]")}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _study(name: str, overrides: Sequence[str] = (), synthetic: bool = False) -> dict[str, Any]:
    # --synthetic: the same sizes on synthetic digits (a machine without MNIST, e.g. a test).
    overrides = [*overrides, *(["data.source=synthetic"] if synthetic else [])]
    study = C.resolve(C.load_study(name), seeds=1, overrides=overrides)
    C.check(study)
    return study


def _splits(study: dict[str, Any], data_dir: str | None):
    from jaxmnist import data

    spec = {k: v for k, v in study["data"].items() if k != "source"}
    return data.make_splits(spec, source=study["data"].get("source", "auto"), data_dir=data_dir)


# --------------------------------------------------------------------------------------------
# 1. strategy x conv implementation
# --------------------------------------------------------------------------------------------


def grid_members(study: dict[str, Any], strategy: str, conv_impl: str, n_members: int,
                 epochs: int) -> list[dict[str, Any]]:
    """S0's member config in an optimizer x learning-rate grid of ``n_members`` (<= 12)."""
    base = C.expand(study)[0]["config"]
    pairs = [(o, lr) for lr in LEARNING_RATES for o in OPTIMIZERS]  # every optimizer early
    members = []
    for optimizer, lr in pairs[:n_members]:
        cfg = json.loads(json.dumps(base))
        cfg["model"]["conv_impl"] = conv_impl
        cfg["optim"].update(name=optimizer, learning_rate=lr)
        cfg["train"].update(strategy=strategy, epochs=epochs)
        members.append(cfg)
    return members


def measure_grid(sizes: dict[str, Any], data_dir: str | None) -> list[dict[str, Any]]:
    """Compile s and training images/s of S0's grid for every (strategy, conv_impl)."""
    from jaxmnist.engine.fit import train_grid

    study = _study("s0", (f"data.train_limit={sizes['grid_train_images']}",
                          "data.test_limit=1000"), sizes.get("synthetic", False))
    splits = _splits(study, data_dir)
    rows = []
    for strategy, conv_impl in COMBINATIONS:
        members = grid_members(study, strategy, conv_impl, sizes["grid_members"],
                               sizes["grid_epochs"])
        epochs: list[Any] = []
        t0 = time.perf_counter()
        out = train_grid(members, splits, None, callbacks=[SimpleNamespace(
            on_epoch_end=lambda g, e, _m, info, acc=epochs: acc.append(info))])
        wall = time.perf_counter() - t0
        last = epochs[-1]
        stats = dataclasses.asdict(out[0].group)
        row = {"strategy": strategy, "conv_impl": conv_impl, "members": len(members),
               "resolved_strategy": stats["strategy"], "batch_size": members[0]["train"]
               ["batch_size"], "train_images": int(len(splits.train_y)),
               "epochs": sizes["grid_epochs"], "compile_seconds": stats["compile_seconds"],
               "epoch_train_seconds": last.train_seconds,
               "images_per_second": last.images_per_second, "wall_seconds": wall}
        _say(f"grid {strategy:10s} {conv_impl:7s}: {row['images_per_second']:,.0f} images/s "
             f"(all {len(members)} members), compile {row['compile_seconds']:.1f}s")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# 2. S0's time to 99 % test accuracy
# --------------------------------------------------------------------------------------------


def measure_time_to_target(sizes: dict[str, Any], data_dir: str | None,
                           target: float = TARGET_ACC) -> dict[str, Any]:
    """Trains S0 (1 seed) with the test set as the per-epoch evaluation set."""
    from jaxmnist import data
    from jaxmnist.engine.fit import train_grid

    study = _study("s0", sizes["s0_overrides"], sizes.get("synthetic", False))
    splits = _splits(study, data_dir)
    # S0 has no validation split: evaluate the test set after every epoch instead.
    splits = data.Splits(splits.train_x, splits.train_y, splits.test_x, splits.test_y,
                         splits.test_x, splits.test_y)
    cfg = C.expand(study)[0]["config"]
    cfg["train"]["epochs"] = sizes["s0_epochs"]
    rows: list[dict[str, Any]] = []

    def on_epoch_end(group: int, epoch: int, metrics: list[dict[str, Any]], info: Any) -> None:
        elapsed = (rows[-1]["elapsed_seconds"] if rows else 0.0) + info.seconds
        rows.append({"epoch": epoch, "test_acc": metrics[0]["val_acc"],
                     "epoch_seconds": info.seconds, "elapsed_seconds": elapsed})

    t0 = time.perf_counter()
    out = train_grid([cfg], splits, None, callbacks=[SimpleNamespace(on_epoch_end=on_epoch_end)])
    wall = time.perf_counter() - t0
    hit = next((r for r in rows if r["test_acc"] is not None and r["test_acc"] >= target), None)
    result = {"target": target, "reached": hit is not None,
              "epoch": hit["epoch"] if hit else None,
              "seconds_to_target": hit["elapsed_seconds"] if hit else None,
              "compile_seconds": out[0].group.compile_seconds,
              "final_test_acc": out[0].test_acc, "epochs_run": len(rows),
              "batch_size": cfg["train"]["batch_size"], "train_images": int(len(splits.train_y)),
              "wall_seconds": wall, "per_epoch": rows}
    _say(f"S0 to {target:.0%}: " + (f"epoch {result['epoch']}, {result['seconds_to_target']:.1f}s"
                                    if hit else f"not reached in {len(rows)} epochs"))
    return result


# --------------------------------------------------------------------------------------------
# 3. the full S2 study
# --------------------------------------------------------------------------------------------


def run_s2(sizes: dict[str, Any], data_dir: str | None, workdir: Path) -> dict[str, Any]:
    """Runs sweeps/s2.py (1 seed) into ``workdir`` through the sweep; wall time and matrix."""
    from jaxmnist import runner
    from jaxmnist.runs import published

    study = _study("s2", sizes["s2_overrides"], sizes.get("synthetic", False))
    t0 = time.perf_counter()
    results = runner.run_study(study, workdir, data_dir=data_dir, report=False)
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    from jaxmnist.runs import tables

    tables.generate(workdir, figures=not sizes.get("tiny", False))  # tiny: tables suffice
    report_seconds = time.perf_counter() - t1
    cells = []
    for m in results["members"]:
        optim = m["config"]["optim"]
        paper = published.lookup("s2", "main", "", m["config"])
        cells.append({"optimizer": optim["name"], "learning_rate": optim["learning_rate"],
                      "test_acc": m["test"]["acc"], "status": m["status"],
                      "paper_test_acc": paper.values.get("test_acc") if paper else None})
    stats = results["groups"][0] if results["groups"] else {}
    out = {"run_dir": str(workdir), "reduced_reasons": study["reduced_reasons"],
           "members": len(results["members"]), "epochs": study["base"]["train"]["epochs"],
           "data": results["data"], "wall_seconds": wall,
           "train_wall_seconds": results.get("wall_seconds"),
           "compile_seconds": stats.get("compile_seconds"),
           "images_per_second": stats.get("images_per_second"),
           "strategy": stats.get("strategy"), "report_seconds": report_seconds, "cells": cells}
    _say(f"S2 ({out['members']} members, {out['epochs']} epochs): {wall:.1f}s wall")
    return out


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def to_markdown(result: dict[str, Any]) -> str:
    """The result as Markdown: device, versions, then one table per measurement."""
    env = result["env"]
    lines = [f"# Accelerator run {result['started']}" + (" (tiny)" if result["tiny"] else ""),
             "",
             f"Command: `{result['command']}`. Device: {env.get('device_kind')} "
             f"({env.get('backend')}, {len(env.get('devices', []))} device(s)); jax "
             f"{env.get('jax')}, jaxlib {env.get('jaxlib')}, flax {env.get('flax')}, optax "
             f"{env.get('optax')}, Python {env.get('python')}; commit "
             f"{str(env.get('git_commit'))[:12]}; host {env.get('hostname')}, "
             f"{env.get('cpu_count')} CPUs. Total {result.get('total_seconds', 0):.1f} s.", ""]
    if result.get("tiny"):
        lines += ["**Tiny run**: a few hundred images, 1-2 epochs: checks the code path, "
                  "measures nothing worth quoting.", ""]
    if result.get("grid"):
        g = result["grid"][0]
        lines += ["## S0's CNN, grid of optimizer x learning rate: strategy x conv",
                  "", f"{g['members']} members, batch {g['batch_size']}, {g['train_images']:,} "
                  f"training images, epoch {g['epochs']} timed (evaluation excluded).", "",
                  "| strategy | conv_impl | images/s (all members) | compile s |",
                  "| --- | --- | ---: | ---: |"]
        lines += [f"| {r['strategy']} | {r['conv_impl']} | {r['images_per_second']:,.0f} | "
                  f"{r['compile_seconds']:.1f} |" for r in result["grid"]]
        lines.append("")
    s0 = result.get("s0_time_to_target")
    if s0:
        lines += [f"## S0 to {s0['target']:.0%} test accuracy", "",
                  f"Batch {s0['batch_size']}, {s0['train_images']:,} training images, test set "
                  "evaluated after every epoch; compile "
                  f"{s0['compile_seconds']:.1f} s apart. "
                  + (f"Reached at epoch {s0['epoch']}: **{s0['seconds_to_target']:.1f} s**."
                     if s0["reached"] else f"Not reached in {s0['epochs_run']} epochs."), "",
                  "| epoch | test acc | elapsed s |", "| ---: | ---: | ---: |"]
        lines += [f"| {r['epoch']} | {r['test_acc']:.4f} | {r['elapsed_seconds']:.1f} |"
                  for r in s0["per_epoch"] if r["test_acc"] is not None]
        lines.append("")
    s2 = result.get("s2")
    if s2:
        d = s2["data"]
        lines += ["## Full S2 (1 seed)", "",
                  f"{s2['members']} members, {s2['epochs']} epochs, {d['train']:,} / {d['val']:,} "
                  f"/ {d['test']:,} images, strategy {s2['strategy']}: **{s2['wall_seconds']:.1f}"
                  f" s** wall (compile {s2['compile_seconds'] or 0:.1f} s), "
                  f"{s2['images_per_second'] or 0:,.0f} images/s; report {s2['report_seconds']:.1f}"
                  " s more." + (" Reduced: " + "; ".join(s2["reduced_reasons"])
                                if s2["reduced_reasons"] else ""), "",
                  "| optimizer | learning rate | test acc | status | paper |",
                  "| --- | ---: | ---: | --- | ---: |"]
        for c in s2["cells"]:
            paper = f"{c['paper_test_acc']:.4f}" if c["paper_test_acc"] is not None else "-"
            lines.append(f"| {c['optimizer']} | {c['learning_rate']:g} | {c['test_acc']:.4f} | "
                         f"{c['status']} | {paper} |")
        lines.append("")
    return "\n".join(lines)


def _write(result: dict[str, Any], stem: Path) -> list[Path]:
    from jaxmnist.runs import rundir

    paths = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    rundir.write_json(paths[0], result)
    paths[1].write_text(to_markdown(result))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.accelerator",
                                description="Grid strategy x conv timings, S0's time to 99%, "
                                "and the full S2 study, for one accelerator.")
    p.add_argument("--tiny", action="store_true",
                   help="a few hundred images and 1-2 epochs: the whole path on a CPU in seconds")
    p.add_argument("--out", default="benchmarks/results", help="folder for the JSON + Markdown")
    p.add_argument("--workdir", help="S2's run directory (default runs/accelerator/<stamp>/s2)")
    p.add_argument("--data-dir", help="folder with the four MNIST IDX files "
                   "(default $JAXMNIST_DATA_DIR)")
    p.add_argument("--synthetic", action="store_true",
                   help="synthetic digits instead of MNIST (no files; numbers not comparable)")
    p.add_argument("--only", default=",".join(PARTS),
                   help=f"comma-separated parts to run, of {','.join(PARTS)}")
    args = p.parse_args(argv)
    parts = [x for x in args.only.split(",") if x]
    bad = sorted(set(parts) - set(PARTS))
    if bad:
        p.error(f"--only: unknown part(s) {bad}; choose from {list(PARTS)}")
    sizes = dict(TINY if args.tiny else FULL, synthetic=args.synthetic)
    started = dt.datetime.now(dt.timezone.utc)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / (f"accelerator-{stamp}" + ("-tiny" if args.tiny else ""))
    workdir = Path(args.workdir or Path("runs") / "accelerator" / stamp / "s2")

    from jaxmnist import data, envinfo
    from jaxmnist.runs import rundir

    result: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "tiny": args.tiny, "started": started.isoformat("T", "seconds"),
        "command": "python -m benchmarks.accelerator " + " ".join(argv if argv is not None
                                                                  else sys.argv[1:]),
        "env": envinfo.environment(), "sizes": {k: list(v) if isinstance(v, tuple) else v
                                              for k, v in sizes.items()},
    }
    t0 = time.perf_counter()
    paths: list[Path] = []
    steps: list[tuple[str, str, Callable[[], Any]]] = [
        ("s2", "s2", lambda: run_s2(sizes, args.data_dir, workdir)),
        ("s0", "s0_time_to_target", lambda: measure_time_to_target(sizes, args.data_dir)),
        ("grid", "grid", lambda: measure_grid(sizes, args.data_dir)),
    ]
    try:
        for part, key, step in steps:
            if part in parts:
                result[key] = step()
                result["total_seconds"] = time.perf_counter() - t0
                paths = _write(result, stem)  # after every part: a time limit keeps the rest
    except (C.ConfigError, data.DataError) as err:
        _say(f"benchmarks.accelerator: {err}")
        return 2
    except rundir.RunDirError as err:
        _say(f"benchmarks.accelerator: {err}")
        return getattr(err, "exit_code", 1)
    if not paths:
        paths = _write(result, stem)
    _say("wrote " + " and ".join(str(x) for x in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
