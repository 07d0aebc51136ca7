"""A run directory read as grid points (:func:`load`), what the tables and the figures share."""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxmnist import ranking
from jaxmnist.data import class_names, expected_sizes
from jaxmnist.runs import published, rundir
from jaxmnist.trees import flatten, get_dotted


class ReportError(RuntimeError):
    """The run directory lacks what the report needs."""


NO_VALIDATION = ("no validation split: nothing chosen; train with a holdout split to choose "
                 "(data={'split': 'holdout', 'val_size': 10000})")


def final(member: dict[str, Any], key: str) -> float | None:
    """A finished member's last-epoch ``key`` (``"val_acc"``); None while it trains or without."""
    hist = member.get("history") or []
    return hist[-1].get(key) if hist and member.get("status") != "unfinished" else None


def rank_members(members: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Members best first by :func:`jaxmnist.ranking.rank` of their own validation metrics."""
    order = ranking.rank([final(m, "val_acc") for m in members],
                         [final(m, "val_loss") for m in members])
    return [members[i] for i in order]


def rank_points(points: Sequence[Point]) -> list[Point]:
    """Points best first by :func:`jaxmnist.ranking.rank` of their seeds' validation metrics."""
    order = ranking.rank([p.final("val_acc") for p in points],
                         [p.final("val_loss") for p in points])
    return [points[i] for i in order]


@dataclass
class Point:
    """One grid point: the members (one per seed) that share a config up to the seed."""

    key: str
    config: dict[str, Any]
    experiments: list[dict[str, Any]]
    members: list[dict[str, Any]] = field(default_factory=list)
    suffix: str = ""  # the settings that tell it from points of the same label (load sets it)

    @property
    def label(self) -> str:
        """The first experiment's label, made unique by the settings that differ (``suffix``)."""
        return (self.experiments[0]["label"] if self.experiments else "base") + self.suffix

    @property
    def rep(self) -> dict[str, Any]:
        """The representative member: the lowest seed (its confusion matrix, params, ...)."""
        return self.members[0]

    def values(self, getter) -> list[float | None]:
        """One value per seed from ``getter(member_result)``."""
        return [getter(m) for m in self.members]

    def test_acc(self) -> list[float | None]:
        """Test accuracy per seed."""
        return self.values(lambda m: m["test"]["acc"])

    def final(self, key: str) -> list[float | None]:
        """Per seed, the last epoch's ``key`` (``"val_acc"``; None while training)."""
        return self.values(lambda m: final(m, key))

    def status(self) -> str:
        """``"ok 3"`` or e.g. ``"collapsed 2, ok 1"``."""
        counts = collections.Counter(m["status"] for m in self.members)
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


@dataclass
class RunView:
    """Everything the report reads from one run directory."""

    path: Path
    config: dict[str, Any]
    results: dict[str, Any]
    env: dict[str, Any]
    points: list[Point]
    samples: dict[str, np.ndarray] | None

    @property
    def study(self) -> str:
        """The study's short name (``"s2"``)."""
        return self.config["study"]

    @property
    def dataset(self) -> str:
        """The dataset's name (``data.name``; runs from before it existed are MNIST)."""
        return (self.config.get("data") or {}).get("name") or "mnist"

    @property
    def class_names(self) -> tuple[str, ...]:
        """Label 0..9 -> class name (the digits for MNIST)."""
        return class_names(self.dataset)

    @property
    def class_word(self) -> str:
        """What a class is called in tables and axes: "digit" for MNIST, else "class"."""
        return "digit" if self.dataset == "mnist" else "class"

    def class_label(self, k: int) -> str:
        """``"3"`` for MNIST, ``"0 T-shirt/top"`` elsewhere."""
        name = self.class_names[k]
        return name if name == str(k) else f"{k} {name}"

    def experiments(self) -> list[dict[str, Any]]:
        """``[{"name", "title", "labels"}]`` in the study's order."""
        return self.config.get("experiment_list") or [
            {"name": "main", "title": self.config.get("title", ""), "labels": []}]

    def points_of(self, experiment: str) -> list[tuple[str, Point]]:
        """``(label, point)`` for an experiment, in the study's order."""
        labels = [label for exp in self.experiments() if exp["name"] == experiment
                  for label in exp["labels"]]
        return [(label, p) for label in labels for p in self.points
                if any(e["name"] == experiment and e["label"] == label for e in p.experiments)]

    def paper(self, point: Point, experiment: str | None = None,
              label: str | None = None) -> dict[str, float | str]:
        """The published numbers of a point within an experiment (its first by default; ``{}``)."""
        exp = experiment or point.experiments[0]["name"]
        lab = label if label is not None else next(
            (e["label"] for e in point.experiments if e["name"] == exp), point.label)
        entry = published.lookup(self.study, exp, lab, point.config)
        return entry.values if entry else {}

    def ranked(self) -> list[Point]:
        """The points best first by THE rule (:func:`rank_points`: validation, seed means)."""
        return rank_points(self.points)

    def no_choice(self) -> str | None:
        """Why :meth:`best` chooses nothing (a sentence for users), or None when it chooses."""
        if not self.results.get("data", {}).get("val"):
            return NO_VALIDATION
        if not math.isfinite(ranking.seed_mean(self.ranked()[0].final("val_acc"))):
            return ("no point has a validation accuracy on every seed (diverged or still "
                    "training): nothing chosen")
        return None

    def best(self) -> Point | None:
        """The point chosen on validation (:meth:`ranked`'s first), never on test.

        None when nothing can be chosen (:meth:`no_choice` says why).
        """
        return None if self.no_choice() else self.ranked()[0]

    def best_member(self) -> dict[str, Any] | None:
        """The best point's member with the best validation metrics (:func:`rank_members`)."""
        best = self.best()
        return rank_members(best.members)[0] if best else None

    def featured(self) -> Point:
        """The point the figures draw (confusion matrices, ...): :meth:`best`, else the first."""
        return self.best() or self.points[0]

    @property
    def preset(self) -> str | None:
        """The preset that made the run (``"cpu"``, ``"quick"``) or None (no preset)."""
        preset = self.config.get("preset", self.results.get("preset"))
        if preset is None and self.config.get("quick_applied"):
            preset = "quick"  # run directories written before named presets existed
        return preset

    def reduced_reasons(self) -> list[str]:
        """How the run's settings fall short of the study's full settings (empty: full run)."""
        reasons = self.results.get("reduced_reasons")
        if reasons is None:
            reasons = self.config.get("reduced_reasons") or []
        # "quick preset" was a reason before presets were named: the footer names the preset.
        return [r for r in reasons if r not in ("quick preset", "CPU run")]

    def settings_label(self) -> str:
        """``"full settings"``, ``"preset cpu"`` or ``"custom settings"`` (overrides only)."""
        if self.preset:
            return f"preset {self.preset}"
        return "custom settings" if self.reduced_reasons() else "full settings"

    def device(self) -> str:
        """The device in words, e.g. ``"CPU, 2 cores"`` or ``"NVIDIA H200 (gpu)"``."""
        backend = self.env.get("backend", "")
        kind = self.env.get("device_kind") or backend or "unknown device"
        if backend == "cpu":
            cores = self.env.get("cpu_count")
            return "CPU" + (f", {cores} cores" if cores else "")
        return f"{kind} ({backend})" if backend else kind

    def footer(self) -> str:
        """Every figure's and table's footer: settings, data, seeds, device, commit.

        A run smaller than the study's full settings says "REDUCED RUN" and why (the device never).
        """
        data = self.results.get("data", {})
        full = expected_sizes({**self.config["data"], "train_limit": None, "val_limit": None,
                               "test_limit": None})
        frac = data.get("train", 0) / full[0] if full[0] else 1.0
        epochs = get_dotted(self.config, "base.train.epochs", "?")
        seeds = self.config.get("seeds", "?")
        line = (f"jaxmnist {self.study} | {self.settings_label()} | {epochs} epochs | "
                f"train {data.get('train', 0):,} ({frac:.0%} of {full[0]:,}) / val "
                f"{data.get('val', 0):,} / test {data.get('test', 0):,} images | {seeds} seeds | "
                f"device: {self.device()} | "
                f"commit {str(self.env.get('git_commit', 'unknown'))[:12]}")
        if reasons := self.reduced_reasons():
            line += "\nREDUCED RUN, not the paper's full setup: " + "; ".join(reasons)
        if not self.results.get("complete", True):
            line += "\n" + self.progress()
        return line

    def progress(self) -> str:
        """Unfinished run: members finished, still training (with their epoch), not started."""
        members = [m for p in self.points for m in p.members]
        running = [m for m in members if m.get("status") == "unfinished"]
        total = len(self.config.get("members", [])) or len(members)
        epochs = get_dotted(self.config, "base.train.epochs", "?")
        reached = max((h["epoch"] for m in running for h in m.get("history", [])), default=0)
        waiting = total - len(members)
        parts = [f"{len(members) - len(running)} of {total} members finished"]
        if running:
            parts.append(f"{len(running)} reached epoch {reached} of {epochs}")
        if waiting > 0:
            parts.append(f"{waiting} with no finished epoch yet")
        return ("UNFINISHED RUN: " + ", ".join(parts)
                + "; re-running the same sweep command resumes it")


def load(run_dir: str | Path) -> RunView:
    """Reads a run directory into a :class:`RunView` (ReportError: damaged, or nothing yet).

    While the first group trains, members come from ``metrics.jsonl`` alone (``unfinished``).
    """
    run_dir = Path(run_dir)
    try:
        config = rundir.read_config(run_dir)
        results = rundir.read_results(run_dir, required=False)
    except rundir.RunDirError as err:
        raise ReportError(str(err)) from None
    if not results:  # the first group is still training: its per-epoch metrics so far
        sizes = expected_sizes(config["data"])
        results = {"study": config["study"], "complete": False, "members": [], "groups": [],
                   "data": dict(zip(("train", "val", "test"), sizes, strict=True)),
                   "reduced_reasons": config.get("reduced_reasons") or []}
    env = rundir.read_env(run_dir)
    finished = {m["member"]: m for m in results.get("members", [])}
    partial = rundir.histories(rundir.read_metrics(run_dir))
    points: dict[tuple[str, tuple[str, ...]], Point] = {}
    for meta in config["members"]:
        # One point per config and set of experiments: the fresh seeds a protocol re-runs a
        # chosen setting with are a point apart from the tuning seed that chose it.
        names = tuple(sorted(e["name"] for e in meta["experiments"]))
        point = points.setdefault((meta["key"], names), Point(
            meta["key"], {k: v for k, v in meta["config"].items() if k != "seed"},
            meta["experiments"]))
        result = finished.get(meta["member"])
        if result is not None:
            point.members.append(result)
        elif meta["member"] in partial:  # unfinished: curves only, marked as running
            point.members.append({"member": meta["member"], "config": meta["config"],
                                  "status": "unfinished", "history": partial[meta["member"]],
                                  "test": {"acc": None, "loss": None}})
    kept = [p for p in points.values() if p.members]
    for p in kept:
        p.members.sort(key=lambda m: m["config"]["seed"])
    _unique_labels(kept)
    if not kept:
        raise ReportError(f"{run_dir} holds no finished member and no finished epoch yet "
                          f"({rundir.RESULTS} and {rundir.METRICS}); wait for the first epoch "
                          "(or resume the run)")
    samples = rundir.read_samples(run_dir)
    return RunView(run_dir, config, results, env, kept, samples)


def _unique_labels(points: list[Point]) -> None:
    """Gives points that share a label the settings that differ as a suffix.

    Two Adam points told apart by ``b1`` alone read ``adam lr=0.001 (b1=0.5)``.
    """
    flats = [{k: v for k, v in flatten(p.config).items() if not isinstance(v, list | dict)}
             for p in points]
    by_label: dict[str, list[int]] = collections.defaultdict(list)
    for i, p in enumerate(points):
        by_label[p.label].append(i)
    for twins in by_label.values():
        if len(twins) < 2:
            continue
        keys = sorted({k for i in twins for k in flats[i]
                       if len({repr(flats[j].get(k)) for j in twins}) > 1})
        for i in twins:
            values = [flats[i].get(k) for k in keys]
            points[i].suffix = " (" + ", ".join(
                f"{k.rsplit('.', 1)[-1]}={v:g}" if isinstance(v, float) else
                f"{k.rsplit('.', 1)[-1]}={v}" for k, v in zip(keys, values, strict=True)) + ")"


def grid(run: RunView) -> tuple[str, list[str], str, list[str], list[list[Point | None]]] | None:
    """A two-key grid (S2: optimizer x learning rate), else ``None``.

    Its row key and values, column key and values (as text), and each cell's point (or None).
    """
    flat = flatten(run.config.get("grid") or {})
    if run.config.get("experiments") or len(flat) != 2:
        return None
    (k1, v1), (k2, v2) = flat.items()
    # Strings (optimizer names) make better rows than numbers.
    if not isinstance(v1[0], str) and isinstance(v2[0], str):
        (k1, v1), (k2, v2) = (k2, v2), (k1, v1)
    equal = published.values_equal
    cells = [[next((p for p in run.points if equal(get_dotted(p.config, k1, None), a)
                    and equal(get_dotted(p.config, k2, None), b)), None) for b in v2] for a in v1]
    return (k1, [str(v) for v in v1], k2,
            [f"{v:g}" if isinstance(v, float) else str(v) for v in v2], cells)


def slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "x"


