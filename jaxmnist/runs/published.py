"""Every number the papers published, keyed for the report. No jax.

The numbers are data: ``published.json`` beside the studies (``sweeps/``, in a wheel
``jaxmnist/sweeps/``), which says how an entry names its grid point.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jaxmnist import importspec
from jaxmnist.trees import get_dotted


@dataclass(frozen=True)
class Published:
    """One published result and the grid point it belongs to (by ``label`` or ``match``)."""

    study: str
    values: dict[str, float | str]  # metric -> number (a string where the paper gives none)
    experiment: str = "main"
    label: str | None = None  # S3's points
    match: dict[str, Any] = field(default_factory=dict)  # dotted config key -> value
    history: dict[int, dict[str, float]] = field(default_factory=dict)  # epoch -> train/val
    note: str = ""


_FOLDER = importspec.studies_folder()
if _FOLDER is None:
    raise ImportError("jaxmnist.sweeps (the studies and their published.json) is not "
                      "installed; reinstall jaxmnist")
_DATA = json.loads((_FOLDER / "published.json").read_text())
PAPERS: dict[str, str] = _DATA["papers"]
PUBLISHED: list[Published] = [
    Published(study, **{**e, "history": {int(k): v for k, v in e.get("history", {}).items()}})
    for study, entries in _DATA["studies"].items() for e in entries]


def values_equal(a: Any, b: Any) -> bool:
    """Equality for config values: numbers compare with a tolerance (0.1 vs 1e-1 spelled apart)."""
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def lookup(study: str, experiment: str, label: str | None,
           config: Mapping[str, Any]) -> Published | None:
    """Returns the published entry for one grid point of a study, or ``None``."""
    for entry in for_study(study):
        same_point = (entry.label == label if entry.label is not None else
                      all(values_equal(get_dotted(config, k, None), v)
                          for k, v in entry.match.items()))
        if entry.experiment == experiment and same_point:
            return entry
    return None


def for_study(study: str) -> list[Published]:
    """Every entry of one study."""
    return [e for e in PUBLISHED if e.study == study]


def history(study: str) -> dict[int, dict[str, float]]:
    """A study's published per-epoch training log (``{}``: none)."""
    return next((e.history for e in for_study(study) if e.history), {})
