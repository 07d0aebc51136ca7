"""THE run-directory format: one writer (the sweep and its engine hooks), one reader (the rest).

Only this module knows the files' names and shapes; they and their promises (atomic writes, one
append per epoch, torn lines skipped and cut): docs/architecture.md, "Run directory". No jax.
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

    ``exit_code``: 2 for an unusable folder, 1 when writing failed midway (nothing finished lost).
    """

    def __init__(self, message: str, *, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


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


def finite_json(value: Any) -> Any:
    """NaN/inf floats -> ``None`` anywhere in a nested structure (strict JSON has no NaN)."""
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
MEMBER_FILE = re.compile(r"^member_(\d+)\.(npz|json)$")  # an exported member's two files


def _atomic_write(path: Path, write: Any) -> None:
    """Calls ``write(file)`` on a temporary file (binary) then renames it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _write_failed(path, err) from None
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Writes JSON atomically, non-finite floats as ``null``; RunDirError (exit 1) on failure."""
    text = json.dumps(finite_json(data), indent=1, allow_nan=False)
    _atomic_write(Path(path), lambda fh: fh.write(text.encode()))


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
"""The first path component of a member's state leaves in its ``.npz`` (one atomic write)."""


def export_member(run_dir: str | os.PathLike, member: int, model_cfg: Mapping[str, Any],
                  params: Mapping[str, Any], extra: Mapping[str, Any] | None = None,
                  state: Mapping[str, Any] | None = None) -> Path:
    """Writes one member's final params, state and model config atomically; the ``.npz`` path.

    ``params`` and ``state`` (BatchNorm statistics, may be empty) are ONE member's nested dicts
    of arrays; ``extra`` is JSON metadata beside the config (e.g. test accuracy).
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
    _atomic_write(npz_path, lambda fh: np.savez(fh, **flat))  # a file: np.savez adds no suffix
    write_json(json_path, {"member": member, "model": dict(model_cfg), **dict(extra or {})})
    return npz_path


def exported_members(run_dir: str | os.PathLike) -> list[int]:
    """Indices of the members whose params were exported, sorted."""
    stems = (p.stem.removeprefix("member_") for p in Path(run_dir, "params").glob("member_*.npz"))
    return sorted(int(s) for s in stems if s.isdigit())


def member_meta(run_dir: str | os.PathLike, member: int) -> dict[str, Any]:
    """The ``params/member_<k>.json`` metadata (``{}`` when missing or unreadable)."""
    try:
        meta = json.loads(member_paths(run_dir, member)[1].read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def load_member(run_dir: str | os.PathLike,
                member: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """One exported member as ``(model_cfg, params, state)``; ``state`` may be ``{}``."""
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
            flat = dict(data)
        model_cfg = meta["model"]
    except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
        raise RunDirError(f"cannot read exported member {member} from {npz_path}: {err}. "
                          "Re-export it by resuming the run, or pick another member.") from None
    tree = unflatten_params(flat)
    state = tree.pop(STATE_PREFIX, {})
    return model_cfg, tree, state


def is_run_dir(path: str | os.PathLike) -> bool:
    """True for a folder with a ``config.json`` or ``results.json`` or ``params/``."""
    p = Path(path)
    return p.is_dir() and any((p / n).exists() for n in (CONFIG, RESULTS, "params"))


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` (with ``members`` and ``groups``); RunDirError when missing or damaged."""
    cfg = _read_json(Path(run_dir) / CONFIG, "study config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("members"), list):
        raise RunDirError(f"{Path(run_dir) / CONFIG} has no member list: not a jaxmnist run "
                          "config (python -m jaxmnist.sweep writes it)")
    return cfg


def read_results(run_dir: str | os.PathLike, *, required: bool = True) -> Results:
    """``results.json`` (``{}`` when absent and not ``required``); RunDirError otherwise."""
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
    try:
        env = _read_json(path, "environment") if path.exists() else {}
    except RunDirError as err:
        log.warning("%s; figures will say 'unknown device'", err)
        return {}
    return env if isinstance(env, dict) else {}


def read_metrics(run_dir: str | os.PathLike) -> list[MetricRow]:
    """Every valid line of ``metrics.jsonl`` in file order; a damaged one is skipped, warned."""
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
            return dict(data)
    except (OSError, ValueError, EOFError) as err:
        log.warning("cannot read %s (%s); the sample figure is left out", path, err)
        return None


def check_workdir(path: str | os.PathLike) -> None:
    """Checks, writing nothing, that ``path`` can be (or is) a run directory; RunDirError (2)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise RunDirError(f"--workdir {p} is a file, not a folder; pick a folder path "
                          "(it is created) with --workdir DIR")
    probe = p
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise RunDirError(f"--workdir {p}: {probe} is a file, so no folder can be made there; "
                          "pick another --workdir")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunDirError(f"--workdir {p}: no permission to write in {probe}; pick a folder you "
                          "can write to with --workdir DIR")
    if p.is_dir() and not (p / CONFIG).exists() and any(p.iterdir()):
        raise RunDirError(f"{p} exists, is not empty and holds no {CONFIG}; pick a new --workdir")


CONFIG_FORMAT = 3  # config.json's config_format; its history: docs/architecture.md, "Run directory"


def _identity(cfg: Mapping[str, Any]) -> str:
    """A member config without its epoch count: what a run grown by epochs keeps."""
    train = {k: v for k, v in (cfg.get("train") or {}).items() if k != "epochs"}
    return json.dumps({**cfg, "train": train}, sort_keys=True)


def grown_order(old: Mapping[str, Any], configs: Sequence[Mapping[str, Any]],
                run_dir: str | os.PathLike) -> list[int]:
    """How a study's member ``configs`` grow the run ``old`` (its ``config.json``).

    ``order[k]`` indexes ``configs``: the run's members first, the study's new ones after; a
    study that is no growth raises RunDirError (docs/architecture.md, "Growing a run").
    """
    _check_format(old, run_dir)
    free: dict[str, list[int]] = {}
    for i, cfg in enumerate(configs):
        free.setdefault(_identity(cfg), []).append(i)
    order = []
    for m in old["members"]:
        cfg, label = m["config"], f"member {m['member']} ({m.get('label')})"
        mine = free.get(_identity(cfg)) or []
        if not mine:
            raise RunDirError(
                f"{run_dir} cannot grow into this study: its {label} is not in it (a run grows "
                "by seeds, grid points, experiments and epochs; every other setting must stay "
                "as it was). Keep the study's settings, or pick a new --workdir")
        i = next((j for j in mine if configs[j] == cfg), mine[0])
        mine.remove(i)
        was, now = cfg["train"]["epochs"], configs[i]["train"]["epochs"]
        schedule = cfg["optim"].get("schedule")
        if now < was or (now > was and isinstance(schedule, Mapping)
                         and "decay_steps" in schedule and schedule["decay_steps"] is None):
            why = ("a run never shrinks" if now < was else
                   f"its {schedule['name']} schedule decays over the whole run, so training it "
                   "on would not equal a longer run from scratch")
            raise RunDirError(f"{run_dir} cannot grow from {was} to {now} epochs: {why} "
                              f"({label}); pick a new --workdir")
        order.append(i)
    taken = set(order)
    return order + [i for i in range(len(configs)) if i not in taken]


def _check_format(old: Mapping[str, Any], run_dir: str | os.PathLike) -> None:
    if old.get("config_format", 1) != CONFIG_FORMAT:
        raise RunDirError(
            f"{run_dir} was written by an earlier jaxmnist (config.json format "
            f"{old.get('config_format', 1)}; this one writes format {CONFIG_FORMAT}: each "
            "member's resolved config with every default, and checkpoints with steps taken and "
            "rung decisions), so it cannot be continued here. Its "
            "results stay readable (jm.open_run, python -m jaxmnist.report); to train it "
            "further, use the jaxmnist commit its env.json names, or pick a new --workdir")


def _same_run(old: Mapping[str, Any], new: Mapping[str, Any], run_dir: Path,
              grow: bool = False) -> None:
    _check_format(old, run_dir)
    old_members = [m.get("config") for m in old.get("members", [])]
    new_members = [m["config"] for m in new["members"]]
    # A pruned group's checkpoints hold its rung decisions: another setting cannot resume them.
    same = old.get("study") == new["study"] and old.get("data") == new["data"] \
        and old.get("prune") == new.get("prune")
    if same and old_members == new_members:
        return
    try:  # growth? (a grown run lists its old members first: runner.stable_members)
        order = grown_order(old, new_members, run_dir) if same else None
    except RunDirError:
        if grow:
            raise  # it names the member that does not grow
        order = None
    if order is not None and grow:
        if order == list(range(len(order))) and \
                new["groups"][:len(old["groups"])] == old["groups"]:
            return
    elif order is not None:
        longer = sum(new_members[i] != c for i, c in zip(order, old_members, strict=False))
        what = [f"{len(order) - len(old_members)} new members"] * (len(order) > len(old_members))
        what += [f"{longer} members trained for more epochs"] * bool(longer)
        raise RunDirError(
            f"{run_dir} already holds a run of study {old.get('study')!r} that this study "
            f"grows ({', '.join(what)}). To train only the new work and keep what the run "
            "holds, add --grow (jm.run(..., grow=True)); or pick a new --workdir")
    differ = sum(a != b for a, b in zip(old_members, new_members, strict=False))
    differ += abs(len(old_members) - len(new_members))
    what = (f"{differ} of {len(new_members)} member configs differ" if differ
            else "its data split differs" if old.get("data") != new["data"]
            else "its prune setting differs")
    raise RunDirError(
        f"{run_dir} already holds a run of study {old.get('study')!r} that differs from this "
        f"one ({what}); resume only with the same study, flags and overrides"
        f"{'' if grow else ' (or grow it with --grow: more seeds, grid points or epochs)'}, "
        "or pick a new --workdir")


def _cut_torn_tail(path: Path) -> None:
    """Truncates ``path`` after its last newline (a torn line from a killed append)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if data and not data.endswith(b"\n"):
        with path.open("rb+") as fh:
            fh.truncate(data.rfind(b"\n") + 1)
        log.warning("%s ended in a torn line (a run killed mid-write); cut it off before "
                    "appending", path)


def _remove_stale_temp_files(root: Path) -> None:
    """Removes the temporary files of this module's writes that a killed run left (orphans)."""
    own = {CONFIG, ENV, RESULTS, SAMPLES}
    removed = []
    for folder, is_own in ((root, own.__contains__), (root / "params", MEMBER_FILE.match)):
        for path in sorted(folder.glob(".*.tmp*")):
            match = _TEMP_FILE.match(path.name)
            if not match or not is_own(match["name"]) or not path.is_file():
                continue
            try:
                path.unlink(missing_ok=True)
            except OSError as err:
                log.warning("cannot remove the stale temporary file %s: %s", path, err)
                continue
            removed.append(path)
    if removed:
        log.warning("removed %d temporary file(s) left by an interrupted run in %s: %s",
                    len(removed), root, ", ".join(str(p.relative_to(root)) for p in removed))


class RunWriter:
    """Writes one run directory; used by the sweep and, through hooks, by the engine."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @staticmethod
    def check(root: str | os.PathLike, config: Mapping[str, Any], *, grow: bool = False) -> bool:
        """True when ``root`` holds this run already (resume); RunDirError (2) as :meth:`open`.

        ``grow``: ``config`` may also grow the run there (:func:`grown_order`; its old members
        first, their groups first); without it, a study that grows the run is refused saying so.
        """
        root = Path(root)
        check_workdir(root)
        if (root / CONFIG).exists():
            _same_run(read_config(root), config, root, grow)
            return True
        return False

    @classmethod
    def open(cls, root: str | os.PathLike, config: Mapping[str, Any], *,
             grow: bool = False) -> tuple[RunWriter, bool]:
        """``(writer, resuming)``: creates the run directory, or reopens a run of the same study.

        Call it only once the study validated and the data loaded. Reopening cuts a torn metrics
        line and removes a killed writer's temporary files; ``grow`` (see :meth:`check`) rewrites
        ``config.json`` as the grown run's.
        """
        writer = cls(root)
        config = {"config_format": CONFIG_FORMAT, **config}
        if cls.check(writer.root, config, grow=grow):
            _cut_torn_tail(writer.root / METRICS)
            _remove_stale_temp_files(writer.root)
            if grow and read_config(writer.root) != json.loads(json.dumps(finite_json(config))):
                write_json(writer.root / CONFIG, config)
            return writer, True
        try:
            for sub in SUBDIRS:
                (writer.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _write_failed(writer.root, err) from None
        write_json(writer.root / CONFIG, config)
        return writer, False

    def ckpt_dir(self, group: int) -> Path:
        """Where group ``group`` keeps its orbax checkpoints."""
        return self.root / "ckpt" / f"group_{group}"

    def write_env(self, env: Mapping[str, Any]) -> None:
        """Writes ``env.json``; on resume, keeps the first session's and appends this one."""
        if old := read_env(self.root):
            old.setdefault("sessions", []).append(
                {k: env.get(k) for k in ("date", "hostname", "devices", "git_commit")})
            env = old
        write_json(self.root / ENV, env)

    def save_samples(self, splits: Any) -> None:
        """Keeps the first :data:`SAMPLE_IMAGES` train and test images (once)."""
        path = self.root / SAMPLES
        if path.exists():
            return
        arrays = {f"{s}_{a}": np.asarray(getattr(splits, f"{s}_{a}")[:SAMPLE_IMAGES])
                  for s in ("train", "test") for a in "xy"}
        _atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))

    def append_metrics(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Appends rows to ``metrics.jsonl`` with ONE write (a kill tears at most the tail)."""
        data = "".join(json.dumps(finite_json(dict(r)), allow_nan=False) + "\n" for r in rows)
        path = self.root / METRICS
        try:
            with open(path, "ab", buffering=0) as fh:  # unbuffered: one write call
                fh.write(data.encode())
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
            for k, m in zip(self.members, member_metrics, strict=True)]
        self.writer.append_metrics(rows)
