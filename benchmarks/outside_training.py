"""The time a finished run spends outside training: data load, train-set predictions, report.

Issue 21 asked the run to compute only what the report shows: the report draws the
training-set confusion matrix for the best point alone, so since ``ffe6093`` the runner predicts
the training set with that one member (``jaxmnist.runner._add_train_confusion``) instead of
with every member. This times, on a finished run directory (read-only; the report is written
into a temporary copy):

- ``load``: the run's data splits, as the runner loads them (``jaxmnist.data.make_splits``);
- ``train predictions, best member``: what the runner does now;
- ``train predictions, every member``: each exported member predicting the training set in
  turn, i.e. the work the runner no longer does (before ``ffe6093`` it ran as one grid
  evaluation; one member at a time is an estimate of that cost, not the old code);
- ``report``: ``jaxmnist.runs.tables.generate`` (tables and figures).

    JAXMNIST_DATA_DIR=/path/to/mnist PYTHONPATH=. python benchmarks/outside_training.py RUN_DIR
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from jaxmnist import data
from jaxmnist.engine.evaluate import predict_classes
from jaxmnist.runs import rundir, runview, tables


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    """Prints one markdown table of the phases' wall seconds for ``RUN_DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    cfg = rundir.read_config(args.run_dir)
    spec = {k: v for k, v in cfg["data"].items() if k != "source"}
    source = cfg["data"].get("source", "auto")
    splits, t_load = _timed(lambda: data.make_splits(spec, source=source))

    best = runview.load(args.run_dir).featured().rep["member"]
    exported = [m["member"] for m in cfg["members"]
                if rundir.member_paths(args.run_dir, m["member"])[0].exists()]

    def predict(k: int) -> np.ndarray:
        model_cfg, params, state = rundir.load_member(args.run_dir, k)
        return predict_classes(model_cfg, params, state, splits.train_x)

    predict(best)  # compile once: the runner's one call compiles too, but that is not the point
    _, t_best = _timed(lambda: predict(best))
    _, t_all = _timed(lambda: [predict(k) for k in exported])

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "run"
        shutil.copytree(args.run_dir, copy, ignore=shutil.ignore_patterns("ckpt", "tensorboard"))
        written, t_report = _timed(lambda: tables.generate(copy))

    n = len(splits.train_y)
    print(f"run: {args.run_dir.name}; {len(cfg['members'])} members, {len(exported)} exported; "
          f"{n:,} training images\n")
    print("| phase | seconds |\n| --- | ---: |")
    print(f"| load the splits | {t_load:.1f} |")
    print(f"| train predictions, best member (member {best}; the runner now) | {t_best:.1f} |")
    print(f"| train predictions, every exported member in turn (before `ffe6093`, estimated) "
          f"| {t_all:.1f} |")
    print(f"| report ({len(written)} files) | {t_report:.1f} |")


if __name__ == "__main__":
    main()
