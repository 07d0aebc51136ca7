"""THE run-directory format: one writer (the sweep and its engine hooks), one reader (the rest).

A run directory ``runs/<study>/<timestamp>/`` holds::

    config.json     the resolved study + members + groups         (written once, atomically)
    env.json        versions, devices, commit; ``sessions`` grows on each resume  (atomic)
    metrics.jsonl   one :class:`MetricRow` per member and epoch     (append-only, torn-tail safe)
    results.json    :class:`Results`, rewritten after every group  (atomic)
    samples.npz     the first 25 train/test images and labels      (atomic)
    ckpt/group_<g>/ orbax checkpoints of a group's grid state      (jaxmnist.engine.checkpoint)
    params/member_<k>.npz + .json  one member's final params + model config  (atomic)
    tables/ figures/               written by jaxmnist.runs.tables

Only this module knows these names and shapes. Writes never leave half a file: JSON and NPZ go to a
temporary file in the same folder, then ``os.replace``; metrics lines are appended with one
``write`` per epoch, and a torn last line (a kill during that write) is skipped by the reader with
a warning and cut off by the writer before it appends again. The reader also reads run
directories written before this module existed (same file names and keys).

No jax, no matplotlib: the report and the web demo import it freely.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from jaxmnist import trees
from jaxmnist.engine.hooks import Callback, EpochInfo

CONFIG = "config.json"
ENV = "env.json"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
SAMPLES = "samples.npz"
SUBDIRS = ("ckpt", "params", "tables", "figures")
METRIC_FIELDS = ("train_loss", "train_acc", "val_loss", "val_acc")
SAMPLE_IMAGES = 25  # images kept in samples.npz (a 5x5 grid; test_probs_first25 covers them)
_KEY_SEP = "/"  # nested param names in a member's .npz: "dense1/w"

log = logging.getLogger(__name__)


class RunDirError(RuntimeError):
    """A run directory cannot be used or read; the message says what, where and how to fix.

    ``exit_code`` is 2 when the user gave an unusable folder (bad input) and 1 when writing
    failed midway (disk full, permissions changed); in that case nothing finished is lost.
    """

    def __init__(self, message: str, *, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------------------------
# Schema (documentation and type checking; the files are plain JSON)
# --------------------------------------------------------------------------------------------


class MetricRow(TypedDict):
    """One line of ``metrics.jsonl``: a member's metrics after one epoch."""

    member: int  # index in the study (config.json "members")
    group: int
    epoch: int  # 1-based
    train_loss: float | None  # None: not finite
    train_acc: float | None
    val_loss: float | None  # None: no validation split
    val_acc: float | None
    alive: bool
    seconds: float | None  # wall seconds of the group's epoch


class MemberEntry(TypedDict):
    """One entry of ``config.json`` ``members``."""

    member: int
    group: int
    key: str  # the config without its seed: members of one grid point share it
    label: str
    experiments: list[dict[str, Any]]
    config: dict[str, Any]


class Results(TypedDict, total=False):
    """``results.json``: the engine's per-member dicts (see docs/architecture.md) and more."""

    study: str
    title: str
    preset: str | None
    reduced: bool
    reduced_reasons: list[str]
    complete: bool  # every group trained (and the baseline, if any)
    data: dict[str, int]  # {"train": n, "val": n, "test": n}
    members: list[dict[str, Any]]  # sorted by "member"
    groups: list[dict[str, Any]]  # {"group"} + runs.results.group_record ("members": a count)
    baseline: list[dict[str, Any]]
    wall_seconds: float


# --------------------------------------------------------------------------------------------
# Low-level safe I/O
# --------------------------------------------------------------------------------------------


def finite_json(value: Any) -> Any:
    """Replaces NaN/inf floats with ``None`` (JSON ``null``) anywhere in a nested structure.

    A diverged member can leave non-finite numbers in its results; strict JSON has no NaN, and
    refusing to write would lose every other member's results after a long training run.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    if isinstance(value, np.generic):
        return finite_json(value.item())
    return value


def _write_failed(path: Path, err: OSError) -> RunDirError:
    why = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
           errno.EACCES: "permission denied", errno.EPERM: "permission denied",
           errno.EROFS: "the file system is read-only"}.get(err.errno, err.strerror or str(err))
    return RunDirError(
        f"cannot write {path}: {why}. Everything finished before is kept (results.json, "
        f"params/, the checkpoints in ckpt/); fix the cause and run the same command again "
        f"to resume.", exit_code=1)


# The temporary files of the atomic writes below: ".results.json.tmp1234" beside results.json.
_TEMP_FILE = re.compile(r"^\.(?P<name>.+)\.tmp\d+$")
_MEMBER_FILE = re.compile(r"^member_\d+\.(npz|json)$")


def _atomic_write(path: Path, write: Any) -> None:
    """Calls ``write(tmp_path)`` then renames the temporary file over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _write_failed(path, err) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_npz(path: Path, arrays: Mapping[str, Any], *, compressed: bool = False) -> None:
    """Writes an ``.npz`` atomically (through a file object: np.savez then adds no suffix)."""
    save = np.savez_compressed if compressed else np.savez

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            save(fh, **arrays)

    _atomic_write(path, write)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Writes JSON atomically (temporary file + rename), non-finite floats as ``null``.

    Raises:
        RunDirError: the file could not be written (exit code 1; the old file is intact).
    """
    text = json.dumps(finite_json(data), indent=1, allow_nan=False)
    _atomic_write(Path(path), lambda tmp: tmp.write_text(text))


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(
            f"{path} is missing: is {path.parent} a jaxmnist run directory? Make one with "
            "python -m jaxmnist.sweep STUDY --workdir DIR") from None
    except IsADirectoryError:
        raise RunDirError(f"{path} is a folder, not the run's {what} file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RunDirError(f"cannot read {path} ({what}): {err}") from None
    except json.JSONDecodeError as err:
        raise RunDirError(
            f"{path} ({what}) is damaged: {err.msg} at line {err.lineno}. It is written "
            "atomically, so this file was changed by something else; restore it from a copy "
            "or re-run the study into a new --workdir") from None


# --------------------------------------------------------------------------------------------
# Member params (.npz + .json)
# --------------------------------------------------------------------------------------------


def flatten_params(tree: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Nested dict of arrays -> ``{"layer/leaf": ndarray}`` (the .npz layout)."""
    bad = [k for k in trees.flatten(tree, "\0") if any(_KEY_SEP in p for p in k.split("\0"))]
    if bad:
        raise ValueError(f"parameter name {bad[0]!r} must not contain {_KEY_SEP!r}")
    return {k: np.asarray(v) for k, v in trees.flatten(tree, _KEY_SEP).items()}


def unflatten_params(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The inverse of :func:`flatten_params`."""
    return trees.unflatten(flat, _KEY_SEP)


def member_paths(run_dir: str | os.PathLike, member: int) -> tuple[Path, Path]:
    """The ``(.npz, .json)`` paths of one exported member."""
    base = Path(run_dir) / "params" / f"member_{member}"
    return base.with_suffix(".npz"), base.with_suffix(".json")


STATE_PREFIX = "__state__"
"""Leaves of a member's non-parameter state (BatchNorm statistics) sit in the same ``.npz`` as its
params, under this first path component, so that one atomic write exports both."""


def export_member(run_dir: str | os.PathLike, member: int, model_cfg: Mapping[str, Any],
                  params: Mapping[str, Any], extra: Mapping[str, Any] | None = None,
                  state: Mapping[str, Any] | None = None) -> Path:
    """Writes one member's final params, state (NumPy, no grid axis) and model config, atomically.

    Args:
        run_dir: The run directory.
        member: Member index within the run.
        model_cfg: The member's model config (JSON-serialisable).
        params: Nested dict of arrays for ONE member.
        extra: JSON-serialisable metadata stored beside the config (e.g. test accuracy).
        state: The member's non-parameter variables (nested dict; ``None`` or ``{}``: none).

    Returns:
        The path of the ``.npz`` file.

    Raises:
        RunDirError: writing failed (exit code 1).
    """
    npz_path, json_path = member_paths(run_dir, member)
    try:
        npz_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_failed(npz_path.parent, err) from None
    if STATE_PREFIX in params:
        raise ValueError(f"a top-level parameter must not be named {STATE_PREFIX!r}")
    flat = flatten_params(params)
    if state:
        flat.update(flatten_params({STATE_PREFIX: dict(state)}))
    _write_npz(npz_path, flat)
    write_json(json_path, {"member": member, "model": dict(model_cfg), **dict(extra or {})})
    return npz_path


def exported_members(run_dir: str | os.PathLike) -> list[int]:
    """Indices of the members whose params were exported, sorted."""
    out = []
    for path in Path(run_dir, "params").glob("member_*.npz"):
        suffix = path.stem.removeprefix("member_")
        if suffix.isdigit():
            out.append(int(suffix))
    return sorted(out)


def member_meta(run_dir: str | os.PathLike, member: int) -> dict[str, Any]:
    """The ``params/member_<k>.json`` metadata (``{}`` when missing or unreadable)."""
    try:
        meta = json.loads(member_paths(run_dir, member)[1].read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def load_member(run_dir: str | os.PathLike,
                member: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Reads one exported member back as ``(model_cfg, params, state)`` (NumPy leaves).

    ``state`` is the member's non-parameter variables (BatchNorm statistics), ``{}`` for models
    without any and for runs exported before state existed.

    Raises:
        RunDirError: the member was never exported or its files are unreadable.
    """
    npz_path, json_path = member_paths(run_dir, member)
    if not npz_path.is_file() or not json_path.is_file():
        names = ", ".join(f"member_{k}" for k in exported_members(run_dir)) or "none"
        raise RunDirError(
            f"no exported params for member {member} in {Path(run_dir) / 'params'} "
            f"(available: {names}). Train the run to the end with `python -m jaxmnist.sweep`, "
            "or pick one of the available members.")
    try:
        meta = json.loads(json_path.read_text())
        with np.load(npz_path) as data:
            flat = {name: data[name] for name in data.files}
        model_cfg = meta["model"]
    except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
        raise RunDirError(f"cannot read exported member {member} from {npz_path}: {err}. "
                          "Re-export it by resuming the run, or pick another member.") from None
    tree = unflatten_params(flat)
    state = tree.pop(STATE_PREFIX, {})
    return model_cfg, tree, state


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


def is_run_dir(path: str | os.PathLike) -> bool:
    """True for a folder with a ``config.json`` or ``results.json`` or ``params/``."""
    p = Path(path)
    return p.is_dir() and any((p / n).exists() for n in (CONFIG, RESULTS, "params"))


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``config.json``: the resolved study with ``members`` (:class:`MemberEntry`) and ``groups``.

    Raises:
        RunDirError: missing, unreadable or damaged.
    """
    cfg = _read_json(Path(run_dir) / CONFIG, "study config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("members"), list):
        raise RunDirError(f"{Path(run_dir) / CONFIG} has no member list: not a jaxmnist run "
                          "config (python -m jaxmnist.sweep writes it)")
    return cfg


def read_results(run_dir: str | os.PathLike, *, required: bool = True) -> Results:
    """``results.json`` (``{}`` when absent and not ``required``).

    Raises:
        RunDirError: missing (when required), unreadable or damaged.
    """
    path = Path(run_dir) / RESULTS
    if not required and not path.exists():
        return {}
    results = _read_json(path, "results")
    if not isinstance(results, dict):
        raise RunDirError(f"{path} holds no results object")
    return results


def read_env(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``env.json`` (``{}`` when missing or damaged: it only labels figures)."""
    path = Path(run_dir) / ENV
    if not path.exists():
        return {}
    try:
        env = _read_json(path, "environment")
    except RunDirError as err:
        log.warning("%s; figures will say 'unknown device'", err)
        return {}
    return env if isinstance(env, dict) else {}


def read_metrics(run_dir: str | os.PathLike) -> list[MetricRow]:
    """Every valid line of ``metrics.jsonl`` in file order (``[]`` when absent).

    A line that is not a JSON object with ``member`` and ``epoch`` (e.g. the torn last line of a
    killed run) is skipped with one warning naming the file and line.
    """
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        log.warning("cannot read %s (%s); training curves of unfinished members are left out",
                    path, err)
        return []
    rows: list[MetricRow] = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("member"), int) \
                    or not isinstance(row.get("epoch"), int):
                raise ValueError("not a metrics row")
        except ValueError:
            log.warning("%s line %d is damaged (a run killed mid-write?); skipped it", path,
                        number)
            continue
        rows.append(row)  # type: ignore[arg-type]
    return rows


def histories(rows: Iterable[Mapping[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Per-member epoch rows sorted by epoch; a re-run epoch (after resume) keeps its last row."""
    by_member: dict[int, dict[int, dict[str, Any]]] = {}
    for row in rows:
        by_member.setdefault(row["member"], {})[row["epoch"]] = dict(row)
    return {k: [v[e] for e in sorted(v)] for k, v in by_member.items()}


def read_samples(run_dir: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """``samples.npz`` as a dict (``None`` when missing or unreadable)."""
    path = Path(run_dir) / SAMPLES
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as err:
        log.warning("cannot read %s (%s); the sample figure is left out", path, err)
        return None


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def check_workdir(path: str | os.PathLike) -> None:
    """Checks that ``path`` can become (or is) a run directory, writing nothing.

    Raises:
        RunDirError: it is a file, lies under a file, is not writable, or is a non-empty folder
            that holds no run (exit code 2).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise RunDirError(f"--workdir {p} is a file, not a folder; pick a folder path "
                          "(it is created) with --workdir DIR")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise RunDirError(f"--workdir {p}: {probe} is a file, so no folder can be made there; "
                          "pick another --workdir")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunDirError(f"--workdir {p}: no permission to write in {probe}; pick a folder you "
                          "can write to with --workdir DIR")
    if p.is_dir() and not (p / CONFIG).exists() and any(p.iterdir()):
        raise RunDirError(f"{p} exists, is not empty and holds no {CONFIG}; pick a new --workdir")


def _same_run(old: Mapping[str, Any], new: Mapping[str, Any], run_dir: Path) -> None:
    from jaxmnist.data import DATA_DEFAULTS  # no jax

    old_members = [m.get("config") for m in old.get("members", [])]
    new_members = [m["config"] for m in new["members"]]
    # A run written before the studies had every data default filled in (``name``) is the same.
    old_data, new_data = ({**DATA_DEFAULTS, **d} if isinstance(d, Mapping) else d
                          for d in (old.get("data"), new["data"]))
    if old.get("study") == new["study"] and old_members == new_members and old_data == new_data:
        return
    differ = sum(a != b for a, b in zip(old_members, new_members, strict=False))
    differ += abs(len(old_members) - len(new_members))
    what = (f"{differ} of {len(new_members)} member configs differ" if differ
            else "its data split differs")
    raise RunDirError(
        f"{run_dir} already holds a run of study {old.get('study')!r} that differs from this "
        f"one ({what}); resume only with the same study, flags and overrides, or pick a new "
        "--workdir")


def _cut_torn_tail(path: Path) -> None:
    """Truncates ``path`` after its last newline (a torn line from a killed append)."""
    try:
        with path.open("rb+") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size == 0:
                return
            fh.seek(max(size - 1, 0))
            if fh.read(1) == b"\n":
                return
            block = 1 << 16
            pos = size
            while pos > 0:
                start = max(pos - block, 0)
                fh.seek(start)
                chunk = fh.read(pos - start)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    fh.truncate(start + cut + 1)
                    break
                pos = start
            else:
                fh.truncate(0)
        log.warning("%s ended in a torn line (a run killed mid-write); cut it off before "
                    "appending", path)
    except FileNotFoundError:
        return


def _remove_stale_temp_files(root: Path) -> list[Path]:
    """Removes the temporary files of this module's atomic writes that a killed run left behind.

    Only names this module writes are touched (``.results.json.tmp<pid>`` in the run directory,
    ``.member_<k>.npz.tmp<pid>`` in ``params/``, ...); a run directory has one writer, so any
    such file found when the run is reopened belongs to a process that is gone.

    Returns:
        The files removed.
    """
    own = {CONFIG, ENV, RESULTS, SAMPLES}
    removed = []
    for folder, is_own in ((root, own.__contains__), (root / "params", _MEMBER_FILE.match)):
        for path in sorted(folder.glob(".*.tmp*")):
            match = _TEMP_FILE.match(path.name)
            if not match or not is_own(match["name"]) or not path.is_file():
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as err:
                log.warning("cannot remove the stale temporary file %s: %s", path, err)
                continue
            removed.append(path)
    if removed:
        log.warning("removed %d temporary file(s) left by an interrupted run in %s: %s",
                    len(removed), root, ", ".join(str(p.relative_to(root)) for p in removed))
    return removed


class RunWriter:
    """Writes one run directory; used by the sweep and, through hooks, by the engine."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @staticmethod
    def check(root: str | os.PathLike, config: Mapping[str, Any]) -> bool:
        """Checks, writing nothing, that :meth:`open` will accept ``root`` for this study.

        Returns:
            True when ``root`` already holds this run (it will resume).

        Raises:
            RunDirError: as :meth:`open` (exit code 2).
        """
        root = Path(root)
        check_workdir(root)
        if (root / CONFIG).exists():
            _same_run(read_config(root), config, root)
            return True
        return False

    @classmethod
    def open(cls, root: str | os.PathLike, config: Mapping[str, Any]) -> tuple[RunWriter, bool]:
        """Creates the run directory, or reopens an existing run of the same study.

        Call it only after the study validated and the data loaded: a new folder appears here.
        Reopening a run cuts a torn last metrics line and removes the temporary files that a
        killed writer left (``params/.member_<k>.npz.tmp<pid>``, ...).

        Args:
            root: The run directory.
            config: The resolved study for ``config.json`` (with ``members`` and ``groups``).

        Returns:
            ``(writer, resuming)``.

        Raises:
            RunDirError: unusable folder or a different study there (2); write failure (1).
        """
        writer = cls(root)
        cfg_path = writer.root / CONFIG
        if cls.check(writer.root, config):
            _cut_torn_tail(writer.root / METRICS)
            _remove_stale_temp_files(writer.root)
            return writer, True
        try:
            for sub in SUBDIRS:
                (writer.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _write_failed(writer.root, err) from None
        write_json(cfg_path, config)
        return writer, False

    def ckpt_dir(self, group: int) -> Path:
        """Where group ``group`` keeps its orbax checkpoints."""
        return self.root / "ckpt" / f"group_{group}"

    def write_env(self, env: Mapping[str, Any]) -> None:
        """Writes ``env.json``; on resume, keeps the first session's and appends this one."""
        old = read_env(self.root) if (self.root / ENV).exists() else {}
        if old:
            old.setdefault("sessions", []).append(
                {k: env.get(k) for k in ("date", "hostname", "devices", "git_commit")})
            env = old
        write_json(self.root / ENV, env)

    def save_samples(self, splits: Any) -> None:
        """Keeps the first :data:`SAMPLE_IMAGES` train and test images (once)."""
        path = self.root / SAMPLES
        if path.exists():
            return
        arrays = {
            "train_x": np.asarray(splits.train_x[:SAMPLE_IMAGES]),
            "train_y": np.asarray(splits.train_y[:SAMPLE_IMAGES]),
            "test_x": np.asarray(splits.test_x[:SAMPLE_IMAGES]),
            "test_y": np.asarray(splits.test_y[:SAMPLE_IMAGES]),
        }
        _write_npz(path, arrays, compressed=True)

    def append_metrics(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Appends rows to ``metrics.jsonl`` with ONE write (a kill tears at most the tail)."""
        data = "".join(json.dumps(finite_json(dict(r)), allow_nan=False) + "\n" for r in rows)
        path = self.root / METRICS
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data.encode())
            finally:
                os.close(fd)
        except OSError as err:
            raise _write_failed(path, err) from None

    def metrics_log(self, members: Sequence[int]) -> Callback:
        """An engine hook that appends each epoch's :class:`MetricRow` s (study indices)."""
        return _MetricsLog(self, list(members))

    def export_member(self, member: int, model_cfg: Mapping[str, Any], params: Any,
                      extra: Mapping[str, Any] | None = None, state: Any = None) -> Path:
        """:func:`export_member` into this run."""
        return export_member(self.root, member, model_cfg, params, extra, state)

    def write_results(self, results: Results) -> None:
        """Rewrites ``results.json`` atomically (members sorted by index)."""
        write_json(self.root / RESULTS, results)


class _MetricsLog(Callback):
    def __init__(self, writer: RunWriter, members: list[int]):
        self.writer, self.members = writer, members

    def on_epoch_end(self, group_index: int, epoch: int, member_metrics: list[dict[str, Any]],
                     info: EpochInfo) -> None:
        rows = [
            {"member": k, "group": group_index, "epoch": epoch,
             **{f: m.get(f) for f in METRIC_FIELDS}, "alive": m.get("alive", True),
             "seconds": info.seconds}
            for k, m in zip(self.members, member_metrics, strict=True)
        ]
        self.writer.append_metrics(rows)
