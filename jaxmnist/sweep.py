"""``python -m jaxmnist.sweep s2``: train a study's grid, write its run directory.

The command line over :func:`jaxmnist.runner.run_study` (which the Python API calls too): its
arguments, messages and exit codes (2: bad input, nothing written; 1: a failed write; 130:
interrupted). ``--help`` lists the options; docs/studies.md ("Commands") shows them in use,
docs/distributed.md ``--distributed``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from jaxmnist import config as C
from jaxmnist.engine import distributed, hostdevices
from jaxmnist.runner import group_label, resolved_config, run_study, say, stable_members
from jaxmnist.runs import rundir

EXIT_CONFIG = 2
FIRST_RUN = """first run (a tiny study; MNIST is downloaded once into ~/.cache/jaxmnist):
  python -m jaxmnist.sweep smoke --workdir runs/smoke
  python -m jaxmnist.sweep smoke --workdir runs/smoke-synthetic --synthetic  # offline
then: tables and figures are in runs/smoke/; curves: tensorboard --logdir runs/"""


def _parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m jaxmnist.sweep",
        description="Train a study's grid and write tables and figures.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=FIRST_RUN + "\n\nAny --config.KEY=VALUE overrides a study field, type-checked "
        "against its current value,\ne.g. --config.base.train.epochs=2 "
        "--config.grid.optim.learning_rate=[0.1,0.01]",
    )
    parser.add_argument("study", nargs="?", help="a study's name, e.g. s2 (see --list), or "
                        "the path of a study file, e.g. sweeps/s2.py or my_study.py")
    parser.add_argument("--workdir", help="run directory (default runs/<study>/<timestamp>); "
                        "an existing one is resumed")
    parser.add_argument("--grow", action="store_true",
                        help="grow the run in --workdir by this study's new seeds, grid points, "
                        "experiments or epochs: train only those, keep the rest as it is")
    parser.add_argument("--seeds", type=int, help="seeds per grid point (default: the study's)")
    parser.add_argument("--preset", help="apply one of the study's named presets, e.g. 'cpu' "
                        "(S2, S4: full data, fewer epochs) or 'quick'; default: full settings")
    for flag, text in (
            ("--quick", "the same as --preset quick: a smoke-sized run (data slice, fewer epochs)"),
            ("--list", "list the studies that ship with jaxmnist (with a study file: the study "
             "files in its folder)"),
            ("--synthetic", "train on synthetic digits instead of the dataset: no files, no "
             "network (the same as --config.data.source=synthetic)"),
            ("--dry-run", "validate (the study and the run directory), print members and "
             "groups, train nothing")):
        parser.add_argument(flag, action="store_true", help=text)
    parser.add_argument("--data-dir", help="folder with the four MNIST IDX files "
                        "(default $JAXMNIST_DATA_DIR)")
    parser.add_argument("--no-report", action="store_true", help="skip tables and figures")
    parser.add_argument("--callback", action="append", default=[], metavar="MODULE:FACTORY",
                        help="add your own logger (W&B, MLflow, ...): 'pkg.module:factory' or "
                        "'file.py:factory', called as factory(run_dir, config) and returning an "
                        "object with on_group_start / on_epoch_end / on_group_end hooks "
                        "(docs/tensorboard.md); repeatable")
    parser.add_argument("--distributed", action="store_true",
                        help="one of several processes training the study together: settings "
                        f"from {distributed.ENV_COORDINATOR}, {distributed.ENV_NUM_PROCESSES}, "
                        f"{distributed.ENV_PROCESS_ID} (or SLURM / Open MPI / Cloud TPU); "
                        "--workdir must be on a filesystem every host shares")
    args, rest = parser.parse_known_args(argv)
    overrides, unknown = [], []
    it = iter(rest)
    for item in it:
        if item.startswith("--config."):
            body = item[len("--config."):]
            if "=" not in body:  # "--config.key value"
                body = f"{body}={next(it, '')}"
            overrides.append(body)
        else:
            unknown.append(item)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not args.list and not args.study:
        parser.error("give a study name (e.g. smoke for a first run) or a study file, or "
                     "--list")
    if args.synthetic:
        overrides.append("data.source=synthetic")
    return args, overrides


def _dry_run(study: dict[str, Any], members: list[dict[str, Any]],
             groups: list[list[int]]) -> None:
    train_n, val_n, test_n = C.expected_sizes(study["data"])
    print(f"study {study['study']}: {study.get('title', '')}")
    print(f"data: {train_n} train / {val_n} val / {test_n} test "
          f"(split {study['data']['split']!r})")
    print(f"preset: {study.get('preset') or 'none (full settings)'}; study presets: "
          f"{', '.join(sorted(C.presets(study))) or 'none'}")
    if study["reduced"]:
        print("reduced: " + "; ".join(study["reduced_reasons"]))
    print(f"{len(members)} members in {len(groups)} groups, {study['seeds']} seeds each")
    for g, ks in enumerate(groups):
        print(f"  group {g}: {group_label([members[k] for k in ks])} ({len(ks)} members)")
        for k in ks:
            print(f"    member {k}: {C.describe(members[k])}")
    if study.get("final_seeds") and not study.get("final"):
        print(f"then the final phase: each optimizer's setting chosen on validation, "
              f"{study['final_seeds']} fresh seeds each (jaxmnist.runner.with_final)")


def _list(study: str | None) -> int:
    """Prints the shipped studies (names, titles), or the study files beside ``study``."""
    shipped = study is None or C.is_study_name(study)
    folder = None if shipped else Path(study).parent
    try:
        if folder is not None and not folder.is_dir():
            raise C.ConfigError([f"--list {study}: no folder {folder}; give a study file in an "
                                 "existing folder, or --list alone for the shipped studies"])
        rows = C.list_studies(folder)
        print(f"studies that ship with jaxmnist ({C.studies_dir()}); run one by name, e.g. "
              "python -m jaxmnist.sweep s2 --dry-run:" if shipped else
              f"study files in {folder}:")
        for path, name, title in rows:
            print(f"  {name:11s} " + ("" if shipped else f"{str(path):24s} ") + title)
    except C.ConfigError as err:
        say(f"jaxmnist.sweep: {err}")
        return EXIT_CONFIG
    print("\n" + FIRST_RUN)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    try:  # before anything starts JAX: XLA reads its flags once (jaxmnist.engine.hostdevices)
        hostdevices.configure()
    except ValueError as err:
        say(f"jaxmnist.sweep: {err}\nNothing was written.")
        return EXIT_CONFIG
    args, overrides = _parse(argv)
    if args.list:
        return _list(args.study)
    join = args.distributed and not args.dry_run
    try:
        settings = distributed.settings_from_env() if join else None
        if join and not args.workdir:
            raise distributed.DistributedError(
                "--distributed needs --workdir: every process must name the same run directory, "
                "on a filesystem that every host shares")
        study = C.resolve(C.load_study(args.study), preset=args.preset, quick=args.quick,
                          seeds=args.seeds, overrides=overrides)
        members = C.check(study)  # the run's one expansion of the study
        if join and study.get("final_seeds"):
            raise distributed.DistributedError(
                "--distributed does not run a tuning protocol (final_seeds) yet: run its phases "
                "in one process, or set --config.final_seeds=0 to train the tuning phase alone.")
    except (C.ConfigError, distributed.DistributedError) as err:
        say(f"jaxmnist.sweep: {err}\nNothing was written.")
        return EXIT_CONFIG
    if join:
        status = _join(settings)
        if status:
            return status
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.workdir) if args.workdir else Path("runs") / study["study"] / stamp
    if args.dry_run:
        try:  # the run's own check of the run directory, which writes nothing
            members, groups = stable_members(members, run_dir, args.grow)
            resuming = rundir.RunWriter.check(run_dir, resolved_config(study, members, groups),
                                              grow=args.grow)
        except rundir.RunDirError as err:
            say(f"jaxmnist.sweep: {err}\nNothing was written.")
            return err.exit_code
        _dry_run(study, members, groups)
        print(f"run directory: {run_dir}" + (" (resumes the run there)" if resuming else
                                             " (new)"))
        return 0
    from jaxmnist.runs import loggers

    try:
        factories = [loggers.load_callback(spec) for spec in args.callback]
    except loggers.CallbackError as err:
        say(f"jaxmnist.sweep: {err}\nNothing was written.")
        return EXIT_CONFIG
    return _run_cli(study, run_dir, data_dir=args.data_dir, report=not args.no_report,
                    callbacks=factories, members=members, grow=args.grow)


def _run_cli(study: dict[str, Any], run_dir: Path, **kwargs: Any) -> int:
    """:func:`run` with every expected failure turned into one message and an exit code."""
    from jaxmnist.data import DataError

    existed = run_dir.exists()
    # In a multi-process run, a failure of another process (or of this one) mid-run gives one
    # message and exit status 3 at once; the errors below are raised alike by every process.
    guard = distributed.stop_together(
        f"from the last checkpoint in {run_dir / 'ckpt'}",
        passthrough=(C.ConfigError, DataError, rundir.RunDirError,
                     distributed.DistributedError))
    try:
        with guard:
            run_study(study, run_dir, **kwargs)
    except distributed.DistributedError as err:
        say(f"jaxmnist.sweep: {err}")
        return EXIT_CONFIG
    except (C.ConfigError, DataError) as err:
        say(f"jaxmnist.sweep: {err}\n" + ("Nothing was written." if not existed else
                                           f"Nothing more was written to {run_dir}."))
        return EXIT_CONFIG
    except rundir.RunDirError as err:
        tail = "Nothing was written." if err.exit_code == EXIT_CONFIG and not existed else ""
        say(f"jaxmnist.sweep: {err}" + (f"\n{tail}" if tail else ""))
        return err.exit_code
    except OSError as err:  # e.g. orbax or numpy hitting a full disk outside rundir's writes
        where = f" {err.filename}" if err.filename else ""
        say(f"jaxmnist.sweep: cannot write{where}: {err.strerror or err}. Everything finished "
             f"before is kept in {run_dir} (results.json, params/, ckpt/); fix the cause and "
             "run the same command again to resume.")
        return 1
    except KeyboardInterrupt:
        say(f"jaxmnist.sweep: interrupted. Finished groups are in {run_dir / rundir.RESULTS} "
             "and the running group's last epoch in ckpt/; run the same command to resume.")
        return 130
    if distributed.is_primary():
        print(run_dir)
    return 0


def _join(settings: distributed.Settings) -> int:
    """Joins the distributed run; returns 0, or the exit status after saying what failed."""
    where = (f"the coordinator {settings.coordinator}" if settings.coordinator
             else "the coordinator that JAX detects (SLURM, Open MPI, Cloud TPU)")
    try:
        distributed.initialize(settings)
    except ValueError as err:  # JAX found no cluster to detect
        say(f"jaxmnist.sweep: --distributed: {str(err).rstrip('.')}. Set "
             f"{distributed.ENV_COORDINATOR}, "
             f"{distributed.ENV_NUM_PROCESSES} and {distributed.ENV_PROCESS_ID}, or launch "
             "under SLURM (srun), Open MPI (mpirun) or on a Cloud TPU VM.\nNothing was written.")
        return EXIT_CONFIG
    except Exception as err:  # noqa: BLE001 - JAX raises its runtime error on a time-out
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        say(f"jaxmnist.sweep: --distributed: could not join {where} within "
             f"{settings.init_timeout} s ({type(err).__name__}: {first[:300]}). Start every "
             "process with the same coordinator address and process count, and ids 0..N-1 "
             f"({distributed.ENV_INIT_TIMEOUT} sets the wait).\nNothing was written.")
        return distributed.EXIT_PEER_LOST
    say(f"distributed: process {jax.process_index()} of {jax.process_count()}"
         f", {len(jax.local_devices())} local / {len(jax.devices())} devices")
    return 0


def _main_closing_pipe() -> int:
    """:func:`main`, quiet when a reader of its output (``| head``) closed the pipe early."""
    try:
        return main()
    except BrokenPipeError:
        # Python's own advice: point stdout at devnull so the exit flush raises nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(_main_closing_pipe())
