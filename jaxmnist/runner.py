"""Trains a checked study into its run directory: data -> engine -> run directory -> report.

The one implementation of a run, under the Python API and ``python -m jaxmnist.sweep`` (the steps:
docs/studies.md, "How a study runs"), the tuning protocol included. In a multi-process run every
process trains and process 0 alone writes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxmnist import config as C
from jaxmnist import envinfo
from jaxmnist.engine import distributed
from jaxmnist.engine.hooks import Callback, EpochInfo, GroupStart
from jaxmnist.runs import rundir, runview

FIRST_FRESH_SEED = 1000  # above any tuning seed: the protocol's final phase never reuses one


def say(msg: str) -> None:
    """One message line on stderr (progress and results go there; stdout stays for data)."""
    print(msg, file=sys.stderr, flush=True)


class Progress(Callback):
    """One tqdm bar per group: epochs done, members, images/s, best validation accuracy."""

    def __init__(self, n_groups: int, label: str):
        self.n_groups, self.label = n_groups, label
        self.bar = None
        self.best: float | None = None

    def on_group_start(self, group_index: int, info: GroupStart) -> None:
        """Opens the bar at the epoch training starts from (> 0 when resumed)."""
        # tqdm.auto: a widget in a notebook, a text bar in a terminal.
        from tqdm.auto import tqdm

        self.bar = tqdm(total=info.epochs, initial=info.start_epoch - 1,
                        desc=f"group {group_index + 1}/{self.n_groups} {self.label}",
                        unit="epoch", file=sys.stderr, dynamic_ncols=True, leave=True)

    def on_epoch_end(self, group_index: int, epoch: int, member_metrics: list[dict[str, Any]],
                     info: EpochInfo) -> None:
        """Advances the bar and shows the best accuracy so far."""
        vals = [m["val_acc"] for m in member_metrics if m.get("val_acc") is not None]
        accs = vals or [m["train_acc"] for m in member_metrics if m.get("train_acc") is not None]
        if accs:
            self.best = max(accs + ([self.best] if self.best is not None else []))
        self.bar.set_postfix(
            members=len(member_metrics), img_s=f"{info.images_per_second:,.0f}",
            **{("best_val" if vals else "best_train"): f"{self.best:.4f}"}
            if self.best is not None else {},
        )
        self.bar.update(epoch - self.bar.n)

    def close(self) -> None:
        """Closes the bar (also when training failed)."""
        if self.bar is not None:
            self.bar.close()


def group_label(members: list[dict[str, Any]]) -> str:
    """The group's first grid point (and how many more it holds), for the progress bar."""
    labels = list(dict.fromkeys(C.describe(m).rsplit(" (seed", 1)[0] for m in members))
    text = labels[0] + (f" +{len(labels) - 1} more" if len(labels) > 1 else "")
    return text if len(text) <= 50 else text[:47] + "..."


def stable_members(members: list[dict[str, Any]], run_dir: Path,
                   grow: bool = False) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """``(members, groups)`` in run order: the study's, or with ``grow`` those of the grown run.

    Old members keep their indices and groups, new ones follow as new groups (docs/architecture.md,
    "Growing a run"). RunDirError when the study does not grow the run.
    """
    if not (grow and (run_dir / rundir.CONFIG).is_file()):
        return members, C.group_members([m["config"] for m in members])
    old = rundir.read_config(run_dir)
    order = rundir.grown_order(old, [m["config"] for m in members], run_dir)
    members = [{**members[i], "member": k} for k, i in enumerate(order)]
    n = len(old["members"])
    new = C.group_members([m["config"] for m in members[n:]])
    return members, [g["members"] for g in old["groups"]] + [[n + k for k in ks] for ks in new]


def resolved_config(study: dict[str, Any], members: list[dict[str, Any]] | None = None,
                    groups: list[list[int]] | None = None) -> dict[str, Any]:
    """A resolved study as ``config.json`` stores it: members, their groups and labels."""
    members = C.check(study) if members is None else members
    groups = C.group_members([m["config"] for m in members]) if groups is None else groups
    group_of = {k: g for g, ks in enumerate(groups) for k in ks}
    return {
        **study,
        "experiment_list": C.experiments(study),
        "groups": [{"group": g, "members": ks} for g, ks in enumerate(groups)],
        "members": [
            {
                "member": m["member"],
                "group": group_of[m["member"]],
                "key": m["key"],
                "label": C.describe(m),
                "experiments": m["experiments"],
                "config": m["config"],
            }
            for m in members
        ],
    }


def final_experiment(run_dir: Path, seeds: int) -> dict[str, Any]:
    """The protocol's phase 2: each optimizer's setting chosen on validation, on fresh seeds."""
    from jaxmnist.runs import stats  # pandas and scipy: not for a run without the protocol

    chosen = stats.chosen(runview.load(run_dir), tuning=True)
    return {"name": stats.FINAL, "title": f"chosen on validation, {seeds} fresh seeds",
            "seeds": seeds, "first_seed": FIRST_FRESH_SEED,
            "points": [{"label": f"{family} (chosen: {point.label})",
                        "set": dict(point.experiments[0]["settings"])}
                       for family, point in chosen.items()]}


def with_final(study: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """The study with its final phase once ``run_dir`` holds all of its own members (phase 1).

    Else the study as it is. ``study`` has ``final_seeds`` and no ``final`` yet; phase 2 is
    chosen again from phase 1's results, so a resumed run picks the same.
    """
    done = {r["member"] for r in rundir.read_results(run_dir, required=False).get("members", [])}
    if not set(range(len(C.expand(study)))) <= done:
        return dict(study)
    return {**study, "final": final_experiment(run_dir, int(study["final_seeds"]))}


def run_study(study: dict[str, Any], run_dir: Path, *, data_dir: str | None = None,
              report: bool = True, callbacks: Sequence[Callable[..., Any]] = (),
              progress: bool = True, members: list[dict[str, Any]] | None = None,
              grow: bool = False, phases: bool = True) -> dict[str, Any]:
    """Trains (or resumes, or with ``grow`` grows) a resolved study into ``run_dir``.

    Returns results.json. The run directory is made only after the data loaded. ``callbacks``:
    factories ``factory(run_dir, config) -> hooks`` (``--callback``); ``members``: the study's
    from ``jaxmnist.config.check`` (checked here when not given). A study with ``final_seeds``
    runs the tuning protocol (:func:`with_final`; ``phases=False``: its phase 1 alone).

    Raises:
        ConfigError: ``members`` not given, and the study is invalid.
        RunDirError: ``run_dir`` is unusable (exit 2) or writing failed (exit 1).
        jaxmnist.data.DataError: the data cannot be loaded (nothing written).
    """
    from jaxmnist import data
    from jaxmnist.engine.fit import train_grid
    from jaxmnist.runs import loggers
    from jaxmnist.runs import results as results_json

    if phases and study.get("final_seeds") and not study.get("final"):
        # The tuning protocol: the study as written, then its final phase.
        kwargs = dict(data_dir=data_dir, callbacks=callbacks, progress=progress)
        full = with_final(study, run_dir)
        if not full.get("final"):
            run_study(study, run_dir, report=False, members=members, grow=grow, phases=False,
                      **kwargs)
            full = with_final(study, run_dir)
        say(f"final phase: the setting each optimizer chose on validation, "
            f"{study['final_seeds']} fresh seeds each ({len(full['final']['points'])} points)")
        return run_study(full, run_dir, report=report, grow=True, **kwargs)
    members, groups = stable_members(C.check(study) if members is None else members, run_dir,
                                     grow)
    configs = [m["config"] for m in members]
    resolved = resolved_config(study, members, groups)
    # Every process checks (read-only); in a multi-process run only process 0 writes the run
    # directory, the others train, save their checkpoint shards and read what process 0 wrote.
    resuming = rundir.RunWriter.check(run_dir, resolved, grow=grow)  # before the (slow) data load
    primary = distributed.is_primary()
    data_spec = {k: v for k, v in study["data"].items() if k != "source"}
    splits = data.make_splits(data_spec, source=study["data"].get("source", "auto"),
                              data_dir=data_dir)
    writer = _open_run_dir(run_dir, resolved, grow)
    say(f"run directory: {run_dir}" + ("  (resuming)" if resuming else ""))
    if primary:
        writer.write_env(envinfo.environment())
        writer.save_samples(splits)
    sizes = {"train": int(len(splits.train_y)),
             "val": int(len(splits.val_y)) if splits.val_y is not None else 0,
             "test": int(len(splits.test_y))}

    previous = rundir.read_results(run_dir, required=False)
    # A member grown by epochs trains on: its record of fewer epochs is not done.
    done = {r["member"]: r for r in previous.get("members", [])
            if r["config"]["train"]["epochs"] == configs[r["member"]]["train"]["epochs"]}
    group_stats = {g["group"]: g for g in previous.get("groups", [])}
    results = {"study": study["study"], "title": study.get("title", ""),
               "preset": study.get("preset"),
               "reduced": study["reduced"], "reduced_reasons": study["reduced_reasons"],
               "complete": False, "data": sizes, "members": [], "groups": [],
               "baseline": previous.get("baseline", [])}

    def save() -> None:
        results["members"] = [done[k] for k in sorted(done)]
        results["groups"] = [group_stats[g] for g in sorted(group_stats)]
        writer.write_results(results)

    # Loggers write files: process 0's alone.
    tensorboard = loggers.TensorBoardLog(run_dir, resolved) if primary else None
    extra = [tensorboard, *(factory(run_dir, resolved) for factory in callbacks)] \
        if primary else []
    t_start = time.perf_counter()
    for g, ks in enumerate(groups):
        if all(k in done for k in ks):
            say(f"group {g + 1}/{len(groups)}: finished earlier, read from results.json")
            continue
        bar = Progress(len(groups), group_label([members[k] for k in ks]))
        bars = [bar] if progress else []
        try:
            out = train_grid([members[k]["typed"] for k in ks], splits,
                             workdir=str(writer.ckpt_dir(g)), group_index=g,
                             prune=study.get("prune"),
                             callbacks=[writer.metrics_log(ks), *bars, *extra]
                             if primary else [])
        finally:
            bar.close()
            if tensorboard is not None:
                tensorboard.close()
        if not primary:
            continue
        for k, res in zip(ks, out, strict=True):
            record = results_json.member_record(res, splits.test_y)
            writer.export_member(k, configs[k]["model"], res.params,
                                 extra={"test_acc": record["test"]["acc"],
                                        "status": record["status"]},
                                 state=res.model_state)
            done[k] = {"member": k, "group": g, "label": C.describe(members[k]), **record}
            # "members" is the group's member count (config.json lists its members).
            group_stats[g] = {"group": g, **results_json.group_record(res.group)}
        save()
        stats = group_stats.get(g, {})
        say(f"group {g + 1}/{len(groups)}: {len(ks)} members, "
             f"compile {stats.get('compile_seconds', 0):.1f}s, "
             f"train {stats.get('train_seconds', 0):.1f}s, "
             f"{stats.get('images_per_second') or 0:,.0f} images/s")

    if jax.process_count() > 1:
        # Training is over: leave the distributed runtime before the host-only steps, so that
        # no process waits on process 0's baseline and report (the shutdown time-out).
        jax.distributed.shutdown()
        if not primary:
            say(f"process {jax.process_index()}: done; process 0 writes the results")
            return results
    if primary and _add_train_confusion(run_dir, done, splits):
        save()
    if study.get("baseline") == "sklearn" and not results["baseline"]:
        from jaxmnist.engine import baselines

        results["baseline"] = baselines.run_sklearn(study, members, splits, log=say)
    results["complete"] = True
    results["wall_seconds"] = time.perf_counter() - t_start
    save()
    say(f"trained in {results['wall_seconds']:.1f}s; results: {run_dir / rundir.RESULTS}")
    if report:
        from jaxmnist.runs import tables as report_mod

        written = report_mod.generate(run_dir)
        say(f"report: {len(written)} files under {run_dir}/tables and {run_dir}/figures")
    return results


def _add_train_confusion(run_dir: Path, done: dict[int, dict[str, Any]], splits: Any) -> bool:
    """Adds the training-set confusion matrix of the member the report draws it for; True if so.

    That is the representative of ``RunView.featured`` alone: predicting the training set with
    every member of S2's grid took minutes of a CPU preset.
    """
    from jaxmnist.engine import metrics
    from jaxmnist.engine.evaluate import predict_classes

    try:
        best = runview.load(run_dir).featured().rep
    except runview.ReportError:
        return False
    k = best.get("member")
    if k not in done or done[k].get("confusion_train") is not None:
        return False
    try:
        model_cfg, params, state = rundir.load_member(run_dir, k)
    except rundir.RunDirError:
        return False  # never exported (a diverged member): the report draws no train matrix
    preds = predict_classes(model_cfg, params, state, splits.train_x)
    done[k]["confusion_train"] = metrics.confusion_matrix(
        np.asarray(splits.train_y), preds).tolist()
    return True


def _open_run_dir(run_dir: Path, resolved: dict[str, Any], grow: bool) -> rundir.RunWriter:
    """Opens the run directory on process 0 (the others' writer only names checkpoint folders).

    RunDirError on every process when process 0 could not open it; DistributedError when another
    process cannot see it.
    """
    if jax.process_count() == 1:
        return rundir.RunWriter.open(run_dir, resolved, grow=grow)[0]
    writer, error = rundir.RunWriter(run_dir), None
    if distributed.is_primary():
        try:
            writer = rundir.RunWriter.open(run_dir, resolved, grow=grow)[0]
        except rundir.RunDirError as err:
            error = err
    agreed = distributed.all_true(error is None)
    if error is not None:
        raise error
    if not all(agreed):
        raise rundir.RunDirError(
            f"process 0 could not open the run directory {run_dir}; see its message",
            exit_code=1)
    distributed.check_shared_dir(run_dir)
    return writer
