"""Study configs: load a study (``"s2"`` or a file), override, validate, expand into members.

Fields and defaults: ``jaxmnist.schema.Study`` (docs/architecture.md, "Study files"). A bad study
is rejected with one message before anything compiles or any file is written.
"""

from __future__ import annotations

import ast
import collections
import copy
import itertools
import json
import traceback
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from jaxmnist import importspec, schema, search, trees
from jaxmnist.caches import kept
from jaxmnist.checks import is_int, suggest
from jaxmnist.data import expected_sizes
from jaxmnist.groups import DYNAMIC_KEYS, group_key, group_members  # noqa: F401 - config API
from jaxmnist.schema import ConfigError
from jaxmnist.trees import get_dotted, set_dotted  # noqa: F401 - public here too


# Dotted keys
def to_plain(value: Any) -> Any:
    """Returns ``value`` with every ConfigDict / tuple turned into plain dicts / lists."""
    if isinstance(value, ml_collections.ConfigDict):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


nested = trees.unflatten  # {"optim.name": [..]} -> {"optim": {"name": [..]}}, as study files write


def flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Flattens nested dicts (or ConfigDicts) to ``{"a.b": leaf}``; dotted keys kept as written."""
    return trees.flatten(to_plain(tree))


_MISSING = object()  # "no such key" marker returned by get_dotted(..., _MISSING)


# Loading and overriding
def _study_line(path: Path, err: BaseException) -> str:
    """``", line N"`` of the deepest traceback frame inside the study file, if any."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if Path(f.filename).resolve() == path.resolve()]
    return f", line {frames[-1].lineno}" if frames else ""


def studies_dir() -> Path:
    """The folder of the shipped studies (:func:`jaxmnist.importspec.studies_folder`)."""
    folder = importspec.studies_folder()
    if folder is None:
        raise ConfigError(["the studies that ship with jaxmnist (jaxmnist.sweeps) are not "
                           "installed; reinstall jaxmnist, or give a study file path"])
    return folder


def is_study_name(study: str | Path) -> bool:
    """True for a shipped study's name (``"s2"``); ``s2.py``, ``sweeps/s2`` and Paths are paths."""
    return (isinstance(study, str) and bool(study) and study not in (".", "..")
            and "/" not in study and "\\" not in study and not study.endswith(".py"))


def shipped_studies() -> list[str]:
    """Names of the studies that ship with jaxmnist, sorted (``["optimizers", "s0", ...]``)."""
    return sorted(p.stem for p in _study_files(studies_dir()))


def _study_files(folder: Path) -> list[Path]:
    """The study files in ``folder``, sorted (``_*.py`` files are helpers, not studies)."""
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def load_study(study: str | Path) -> ml_collections.ConfigDict:
    """Imports a study, given by name (``"s2"``) or as a file path; returns its ``get_config()``.

    Raises ``ConfigError`` naming the file (and line) for an unknown name, or a file that is
    missing, not ``.py``, unreadable, does not import, or whose ``get_config()`` is missing,
    raises or returns no dict.
    """
    path = studies_dir() / f"{study}.py" if is_study_name(study) else Path(study)
    if is_study_name(study) and not path.is_file():
        names = shipped_studies()
        raise ConfigError([f"unknown study {study!r}{suggest(str(study), names)}; the studies "
                           f"that ship with jaxmnist: {', '.join(names) or 'none'} "
                           "(python -m jaxmnist.sweep --list), or give a study file path such "
                           "as my_study.py"])

    def studies() -> str:
        # File names only: listing a folder must not import (run) the Python files in it.
        here = [str(p) for p in _study_files(path.parent)] if path.parent.is_dir() else []
        try:
            names = shipped_studies()
        except ConfigError:  # no jaxmnist.sweeps: the message about the file comes first
            names = []
        hint = (f"; the shipped study {path.stem!r} runs by name: python -m jaxmnist.sweep "
                f"{path.stem}" if path.stem in names else
                f"; or run a study that ships with jaxmnist by name: {', '.join(names)}"
                if names else "")
        return f"study files there: {', '.join(here) or 'none'}{hint}"

    if path.is_dir():
        raise ConfigError([f"{path} is a folder; give a study file such as sweeps/s2.py, or a "
                           f"study name such as s2 ({studies()})"])
    if not path.is_file():
        raise ConfigError([f"study file {str(path)!r} does not exist ({studies()})"])
    if path.suffix != ".py":
        raise ConfigError([f"{path} is not a Python study file (.py); give one such as "
                           "sweeps/s2.py, which defines get_config()"])
    try:
        code = compile(path.read_bytes(), str(path), "exec")
    except OSError as err:
        raise ConfigError([f"cannot read study file {path}: {err.strerror or err}"]) from None
    except (SyntaxError, ValueError) as err:
        line = f", line {err.lineno}" if getattr(err, "lineno", None) else ""
        msg = getattr(err, "msg", None) or str(err)
        raise ConfigError([f"{path}{line}: syntax error: {msg}; fix the study file"]) from None
    module = types.ModuleType(f"jaxmnist_study_{path.stem}")
    module.__file__ = str(path)
    try:
        exec(code, module.__dict__)  # noqa: S102 - a study file is the user's own Python config
    except Exception as err:  # noqa: BLE001 - any failure of the user's file: one clear message
        raise ConfigError([f"{path}{_study_line(path, err)}: importing the study failed: "
                           f"{type(err).__name__}: {err}"]) from None
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError([f"{path} defines no get_config() function; a study file defines "
                           "get_config() returning an ml_collections.ConfigDict"])
    try:
        cfg = get_config()
    except Exception as err:  # noqa: BLE001 - as above
        raise ConfigError([f"{path}{_study_line(path, err)}: get_config() raised "
                           f"{type(err).__name__}: {err}"]) from None
    if not isinstance(cfg, ml_collections.ConfigDict | Mapping):
        raise ConfigError([f"{path}: get_config() returned {type(cfg).__name__}, not an "
                           "ml_collections.ConfigDict or dict (does it end with `return c`?)"])
    return cfg


def list_studies(directory: str | Path | None = None) -> list[tuple[Path, str, str]]:
    """``(path, study, title)`` of every study file in ``directory`` (default: the shipped)."""
    rows = []
    for path in _study_files(Path(studies_dir() if directory is None else directory)):
        try:
            cfg = load_study(path)
            rows.append((path, str(cfg.get("study", path.stem)), str(cfg.get("title", ""))))
        except Exception as err:  # noqa: BLE001 - a broken file must not hide the others
            rows.append((path, path.stem, f"(cannot load: {err})"))
    return rows


def _parse_value(text: str, current: Any, key: str) -> Any:
    """Parses ``text`` for a field whose current value is ``current`` (type-checked)."""
    if isinstance(current, bool):
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(f"--config.{key}: expected true/false, got {text!r}")
    for kind, what in ((int, "an integer"), (float, "a number")):
        if isinstance(current, kind):
            try:
                return kind(text)
            except ValueError:
                raise ValueError(f"--config.{key}: expected {what}, got {text!r}") from None
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if current is None:
            return text  # a None field accepts a bare string
        raise ValueError(f"--config.{key}: cannot parse {text!r} as a Python literal") from None
    if isinstance(current, list | tuple) and not isinstance(value, list | tuple):
        raise ValueError(f"--config.{key}: expected a list like [1, 2], got {text!r}")
    return list(value) if isinstance(value, tuple) else value


def apply_overrides(study: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Applies ``key=value`` overrides (``--config.`` stripped), parsed as the value they replace.

    ``KEY=None`` clears a field (``prune=None`` switches pruning off). Raises ``ConfigError``
    listing every unknown key (with the closest valid key) or bad value.
    """
    study = copy.deepcopy(study)
    valid = list(flatten(study))
    sections = {k.rsplit(".", n)[0] for k in valid for n in range(1, k.count(".") + 1)}
    problems = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            problems.append(f"--config.{item}: expected --config.KEY=VALUE")
            continue
        current = get_dotted(study, key, _MISSING)
        if current is _MISSING and key.startswith("base.") and _member_setting(key[5:]):
            current = None  # a member setting left at its default: the member schema checks it
        if current is _MISSING:
            problems.append(f"unknown config key {key!r}{suggest(key, [*valid, *sections])}")
            continue
        field = schema.Study.model_fields.get(key)  # a section the study may lack, e.g. prune
        optional = field is not None and field.default is None
        if text.strip() == "None" and (optional or not isinstance(current, Mapping)):
            set_dotted(study, key, None)  # the schema says whether the field may be empty
            continue
        if isinstance(current, Mapping) and current:
            leaves = [k for k in valid if k.startswith(key + ".")][:6]
            problems.append(f"--config.{key} is a section; set one of its keys, e.g. {leaves}")
            continue
        try:
            set_dotted(study, key, _parse_value(text, current, key))
        except ValueError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError(problems, "--config override")
    return study


def presets(cfg: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Returns a study's named presets (``--preset NAME``; ``--quick`` is ``quick``)."""
    return dict(to_plain(cfg).get("presets") or {})


def resolve(cfg: ml_collections.ConfigDict | Mapping[str, Any], *, preset: str | None = None,
            quick: bool = False, seeds: int | None = None,
            overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Returns the study as a plain dict with a preset, ``--seeds`` and overrides applied.

    ``quick`` is ``preset="quick"``. Adds ``preset``, ``overrides``, ``reduced_reasons`` and
    ``reduced`` for the report's footers. ``ConfigError``: an unknown preset or key.
    """
    if quick:
        if preset not in (None, "quick"):
            raise ConfigError([f"--quick is --preset quick; it cannot be combined with "
                               f"--preset {preset}"])
        preset = "quick"

    pristine = schema.with_defaults(to_plain(cfg))
    available = presets(pristine)
    study = copy.deepcopy(pristine)
    problems = []
    if preset is not None:
        if preset not in available:
            problems.append(f"unknown preset {preset!r}{suggest(preset, available)}; this "
                            f"study's presets: {', '.join(sorted(available)) or 'none'}")
        else:
            for key, value in flatten(available[preset]).items():
                if get_dotted(study, key, _MISSING) is _MISSING:
                    problems.append(f"preset {preset!r}: unknown key {key!r}"
                                    f"{suggest(key, flatten(study))}")
                else:
                    set_dotted(study, key, copy.deepcopy(value))
    if seeds is not None:
        study["seeds"] = seeds
    if problems:
        raise ConfigError(problems)
    study = apply_overrides(study, overrides)
    reasons = reduced_reasons(pristine, study)
    study.update(preset=preset, quick_applied=preset == "quick", overrides=list(overrides),
                 reduced_reasons=reasons, reduced=bool(reasons))
    return study


# Settings that never make a run "reduced": seeds (the papers ran each model once; our seeds only
# add error bars), where the images come from, and bookkeeping fields.
_NOT_REDUCING = ("seeds", "title", "notes", "presets", "data.source", "data.train_limit",
                 "data.val_limit", "data.test_limit", "base.train.epochs", "base.train.strategy")


def reduced_reasons(full: Mapping[str, Any], study: Mapping[str, Any]) -> list[str]:
    """How ``study``'s settings are smaller than, or differ from, the ``full`` settings.

    Fewer epochs, images or grid points and any other changed setting; empty for the full
    settings whatever the seeds and the device (docs/architecture.md, "Study files").
    """
    reasons = []
    full_epochs = get_dotted(full, "base.train.epochs", None)
    epochs = get_dotted(study, "base.train.epochs", None)
    if is_int(full_epochs) and is_int(epochs) and epochs != full_epochs:
        reasons.append(f"{epochs} of {full_epochs} epochs")
    try:
        sizes, full_sizes = expected_sizes(study["data"]), expected_sizes(full["data"])
    except (KeyError, TypeError, ValueError):
        sizes = full_sizes = ()  # an invalid split: validation reports it
    for part, n, n_full in zip(("train", "validation", "test"), sizes, full_sizes, strict=False):
        if n != n_full:
            reasons.append(f"{part} set {n:,} of {n_full:,} images")
    if any(study.get(k) != full.get(k) for k in ("base", "grid", "experiments", "search",
                                                 "samples")):
        # Only then can the number of grid points (distinct member configs) differ.
        try:
            points, full_points = (len({m["key"] for m in expand({**s, "seeds": 1})})
                                   for s in (study, full))
        except (KeyError, TypeError, ValueError, AttributeError):
            points = full_points = None  # it cannot be expanded: validation says why
        if points is not None and points != full_points:
            reasons.append(f"{points} of {full_points} grid points")
    flat_full, flat = flatten(full), flatten(study)
    for key in sorted(set(flat_full) | set(flat)):
        if key.startswith((*_NOT_REDUCING, "prune")) or key in schema.RESOLVED_FIELDS:
            continue
        if flat.get(key, _MISSING) == flat_full.get(key, _MISSING):
            continue
        if key == "experiments":
            reasons.append("experiments differ from the study's")
        else:
            reasons.append(f"{key} {_short(flat.get(key))} (full: {_short(flat_full.get(key))})")
    if study.get("prune") and study.get("prune") != full.get("prune"):
        # pruning the study does not do itself: a pruned point's numbers are from its rung
        reasons.append(f"pruned (successive halving {study['prune']})")
    if get_dotted(study, "data.source", None) == "synthetic":
        reasons.append("synthetic digits, not the real dataset")
    return reasons


# Validation
def _experiments(study: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The study's experiments: its own, or ``main`` (its ``grid``), then ``search``, ``final``.

    A ``search``'s sampled points are ``main``'s points when the study has no experiments.
    """
    exps = ([to_plain(e) for e in study["experiments"]] if study.get("experiments") else
            [{"name": "main", "title": study.get("title", ""), "grid": study.get("grid") or {}}])
    if study.get("search"):
        full = schema.with_defaults(study)
        sampled = [{"label": label, "set": s} for label, s in search.points(
            full["search"], full["samples"], full["search_seed"])]
        if study.get("experiments"):
            exps.append({"name": "search", "title": "search", "points": sampled})
        else:
            exps[0]["points"] = sampled
    if study.get("final"):  # the tuning protocol's phase 2 (jaxmnist.runner.with_final)
        exps.append(to_plain(study["final"]))
    return exps


def validate_study(study: Mapping[str, Any]) -> list[str]:
    """Every problem with a resolved study (empty when valid), members included."""
    return _validate(study)[0]


def _validate(study: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """``(problems, members)``: the study checked and expanded once (members only if valid)."""
    problems = schema.study_problems(study)
    problems += schema.data_problems(study.get("data") or {})
    base = study.get("base") or {}
    problems += schema.member_problems(base)
    if not problems and study.get("search"):
        from jaxmnist.engine.optim import OPTIMIZERS

        problems += search.problems(study["search"], OPTIMIZERS)
        if any(e.get("name") == "search" for e in study.get("experiments") or []):
            problems.append("experiments: 'search' names the sampled points' experiment; "
                            "rename that experiment")
    if problems:
        return problems, []
    base_keys = flatten(base)
    for exp in _experiments(study):
        name = exp.get("name")
        grid = flatten(exp.get("grid") or {})
        sets = [flatten(p.get("set") or {}) for p in exp.get("points") or []]
        for where, keys in [("grid", grid), *[("points", s) for s in sets]]:
            for key in keys:
                if not _member_setting(key) and get_dotted(base, key, _MISSING) is _MISSING:
                    problems.append(f"experiment {name!r} {where}: unknown config key "
                                    f"'base.{key}'{suggest(key, base_keys)}")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                problems.append(f"experiment {name!r} grid: {key!r} needs a non-empty list of "
                                f"values, got {values!r}")
    if problems:
        return problems, []
    # Each grid point is validated once, and a problem names the points it hits; the other
    # seeds of a valid point are copies of its Member with their own seed.
    train_size = expected_sizes(study["data"])[0]
    hits: dict[str, list[str]] = {}
    members = expand(study)
    points: dict[str, schema.Member | None] = {}
    for member in members:
        if member["key"] not in points:
            typed, found = schema.validated(member["config"], "member")
            if typed is not None and typed.train.batch_size > train_size:
                found.append(f"train.batch_size {typed.train.batch_size} exceeds the "
                             f"{train_size} training images")
            for msg in found:
                hits.setdefault(msg, []).append(describe(member).rsplit(" (seed", 1)[0])
            points[member["key"]] = None if found else typed
        if (typed := points[member["key"]]) is not None:
            # config.json records the resolved config: every default, as the engine reads it.
            member["typed"] = typed.model_copy(update={"seed": member["config"]["seed"]})
            member["config"] = member["typed"].config()
    n_points = len({m["key"] for m in members})
    for msg, labels in hits.items():
        where = (f"all {n_points} grid points" if len(labels) == n_points
                 else "grid points " + "; ".join(labels[:3]) + (" ..." if len(labels) > 3 else ""))
        problems.append(f"{msg} ({where})")
    return problems, [] if problems else members


def check(study: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Validates ``study`` and returns its members, the one expansion a run uses.

    Each of :func:`expand`'s entries gains ``"typed"``, the ``schema.Member`` the engine trains;
    a ``ConfigError`` lists every problem with ``study``. A valid study checked again (by
    ``jm.load_study`` then ``jm.run``) against the same registries reuses its expansion.
    """
    def expand_valid() -> list[dict[str, Any]]:
        problems, members = _validate(study)
        if problems:
            raise ConfigError(problems, f"study {study.get('study', '?')!r}")
        return members

    from jaxmnist.engine import optim
    from jaxmnist.models import adapters

    # Registering an optimizer or a model can make an invalid study valid: part of the key.
    registries = (tuple(optim.OPTIMIZERS), tuple(adapters.registered()))
    key = (json.dumps(study, sort_keys=True, default=repr), repr(registries))
    # Each caller gets its own config dicts (the typed Members are frozen and shared).
    return [{**m, "config": copy.deepcopy(m["config"])}
            for m in kept(_CHECKED, key, expand_valid, CHECKED_KEPT)]


CHECKED_KEPT = 8  # checked studies kept per process (a notebook's few studies)
_CHECKED: collections.OrderedDict[tuple[str, str], list[dict[str, Any]]] = (
    collections.OrderedDict())


# Expansion
def _points(exp: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(label, {dotted: value})`` for every point of an experiment (points x grid)."""
    grid = flatten(exp.get("grid") or {})
    points = exp.get("points") or [{"label": "", "set": {}}]
    combos = list(itertools.product(*grid.values())) if grid else [()]
    out = []
    for point in points:
        for combo in combos:
            settings = flatten(point.get("set") or {})
            parts = [point.get("label", "")] if point.get("label") else []
            for key, value in zip(grid, combo, strict=True):
                settings[key] = value
                parts.append(f"{key.split('.')[-1]}={_short(value)}")
            out.append((", ".join(parts) or "base", settings))
    return out


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("name", value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _member_setting(key: str) -> bool:
    """A key a point or override may set though the base leaves it out (the schema checks it).

    A setting every member has (``reg.l2``), or an optimizer's or a model's own key.
    """
    return key.startswith(("optim.", "model.")) or key in schema.member_paths()


def inherit(base: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` as a grid point with ``settings`` inherits it, before they apply.

    A point that changes ``optim.name`` keeps only the keys every optimizer takes (learning
    rate, schedule, clipping); one that changes ``model.name`` keeps none of the base model's.
    """
    from jaxmnist.engine.optim import COMMON_KEYS

    cfg = copy.deepcopy(dict(base))
    for section, shared in (("optim", COMMON_KEYS), ("model", ())):
        name = settings.get(f"{section}.name")
        own = cfg.get(section)
        if name is not None and isinstance(own, Mapping) and own.get("name") != name:
            cfg[section] = {k: v for k, v in own.items() if k in shared}
    return cfg


def expand(study: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Expands a resolved study into members, one per (unique grid point, seed).

    Each is ``{"member": k, "config", "key", "experiments": [{"name", "label", "settings"}]}``
    (``key``: the config's JSON without its seed, one grid point's); identical configs of several
    experiments are ONE member listing them all.
    """
    base = to_plain(study["base"])
    by_key: dict[str, dict[str, Any]] = {}
    for exp in _experiments(study):
        first = int(exp.get("first_seed") or 0)
        seeds = range(first, first + int(exp.get("seeds") or study["seeds"]))
        for label, settings in _points(exp):
            cfg = inherit(base, settings)
            for key, value in settings.items():
                set_dotted(cfg, key, copy.deepcopy(value))
            key = json.dumps({k: v for k, v in cfg.items() if k != "seed"}, sort_keys=True)
            entry = by_key.setdefault(key, {"config": cfg, "experiments": []})
            entry["experiments"].append({"name": exp["name"], "label": label, "settings": settings,
                                         "seeds": seeds})
    members = []
    for key, entry in by_key.items():
        # A seed belongs to the experiments that list it (a tuning phase's seeds are not the
        # fresh seeds its chosen settings are re-run with).
        for seed in sorted({s for e in entry["experiments"] for s in e["seeds"]}):
            members.append({"member": len(members),
                            "config": {**copy.deepcopy(entry["config"]), "seed": seed},
                            "key": key, "experiments": [
                                {k: v for k, v in e.items() if k != "seeds"}
                                for e in entry["experiments"] if seed in e["seeds"]]})
    return members


def describe(member: Mapping[str, Any]) -> str:
    """A short human label: the first experiment's label plus the seed."""
    exp = member["experiments"][0]
    prefix = f"{exp['name']}: " if exp["name"] != "main" else ""
    return f"{prefix}{exp['label']} (seed {member['config']['seed']})"


def experiments(study: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Public view of the study's experiments (name, title, labels) for config.json."""
    return [
        {"name": e["name"], "title": e.get("title", ""), "labels": [lb for lb, _ in _points(e)]}
        for e in _experiments(study)
    ]
