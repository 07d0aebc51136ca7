"""Search spaces: distributions over the settings that vary inside one program, sampled into points.

A study's ``search`` gives each optimizer family ``samples`` points, drawn quasi-randomly
(scrambled Halton) from ``search_seed`` when the study is loaded; ``jaxmnist.config`` expands
them into ordinary members. Plain Python and scipy, no jax. docs/studies.md, "Search spaces".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from jaxmnist.checks import is_int, is_number, suggest
from jaxmnist.groups import DYNAMIC_KEYS
from jaxmnist.trees import flatten

KINDS = ("log", "uniform", "loggrid")
"""The distributions a search setting may name (a bare ``(lo, hi)`` is ``uniform``)."""

SAMPLED_EXAMPLES = ("optim.learning_rate", "optim.b1", "optim.momentum", "optim.clip_norm",
                    "optim.schedule.alpha", "reg.l1", "reg.l2")
FORM = "('log', lo, hi), ('uniform', lo, hi), ('loggrid', lo, hi), (lo, hi) or a number"
SHORT = {"learning_rate": "lr"}  # label abbreviations, as jm.grid writes them


def _sampled(key: str) -> bool:
    """A numeric key of a dynamic section: it varies inside one program (never splits groups)."""
    dynamic = any(key == d or key.startswith(d + ".") for d in DYNAMIC_KEYS)
    # Seeds come from ``seeds``; names and initializers are choices, not numbers.
    return dynamic and key not in ("seed", "model.init") and not key.endswith(".name")


def _distribution(spec: Any) -> tuple[str, float, float] | float | str:
    """``(kind, lo, hi)``, a fixed number, or the message saying what is wrong with ``spec``."""
    if is_number(spec):
        return float(spec)
    spec = list(spec) if isinstance(spec, list | tuple) else [spec]
    if len(spec) == 2:
        spec = ["uniform", *spec]
    if len(spec) != 3 or not all(map(is_number, spec[1:])):
        return f"expected {FORM}, got {spec!r}"
    kind, lo, hi = spec[0], float(spec[1]), float(spec[2])
    if kind not in KINDS:
        return f"{kind!r} is not a distribution; valid: {', '.join(KINDS)}{suggest(kind, KINDS)}"
    if lo >= hi:
        return f"lo {lo:g} must be below hi {hi:g}"
    if kind != "uniform" and lo <= 0:
        return f"{kind!r} needs 0 < lo < hi, got lo={lo:g}"
    return kind, lo, hi


def problems(search: Any, families: Iterable[str]) -> list[str]:
    """Every problem with a study's ``search`` (empty when valid); ``families``: the optimizers.

    Keys an optimizer does not take are left to the member checks (the sampled members carry them).
    """
    if not isinstance(search, Mapping):
        return [f"search: expected {{optimizer: {{setting: distribution}}}}, got {search!r}"]
    families, found = tuple(families), []
    for family, space in search.items():
        if family not in families:
            found.append(f"search: {family!r} is not a valid optimizer; valid choices: "
                         f"{', '.join(families)}{suggest(family, families)}")
        if not isinstance(space, Mapping):
            found.append(f"search.{family}: expected {{setting: distribution}}, got {space!r}")
            continue
        for key, spec in flatten(space).items():
            if not _sampled(key):
                # A choice of a dynamic section (optim.name, seed) has no numeric namesake.
                found.append(
                    f"search.{family}: {key!r} cannot be sampled: only numbers that vary inside "
                    f"one program can ({', '.join(SAMPLED_EXAMPLES)}); model, train, loss and "
                    f"data settings shape the program, seeds come from `seeds`"
                    f"{'' if _sampled(key + '.x') else suggest(key, SAMPLED_EXAMPLES)}")
            elif isinstance(dist := _distribution(spec), str):
                found.append(f"search.{family}.{key}: {dist}")
    return found


def points(search: Mapping[str, Any], samples: int, seed: int) -> list[tuple[str, dict]]:
    """``(label, {dotted key: value})`` of every sampled point: ``samples`` per family, in order.

    Dimensions: learning rate first, then the other keys sorted (families share positions).
    Raises ``ValueError`` for a search :func:`problems` refuses (optimizer names unchecked).
    """
    from scipy.stats import qmc

    found = problems(search, search if isinstance(search, Mapping) else ())
    if not (is_int(samples) and samples >= 1) or not is_int(seed):
        found.append(f"samples {samples!r}, search_seed {seed!r}: expected integers, samples >= 1")
    if found:
        raise ValueError("\n".join(found))
    out = []
    for family, space in search.items():
        flat = flatten(space)
        keys = sorted(flat, key=lambda k: (k != "optim.learning_rate", k))
        dists = [_distribution(flat[k]) for k in keys]
        n_drawn = sum(isinstance(d, tuple) and d[0] != "loggrid" for d in dists)
        u = iter(qmc.Halton(d=n_drawn, scramble=True, seed=seed).random(samples).T
                 if n_drawn else ())
        columns = [np.full(samples, d) if not isinstance(d, tuple)
                   else np.geomspace(d[1], d[2], samples) if d[0] == "loggrid"
                   else np.clip(np.exp(np.log(d[1]) + next(u) * np.log(d[2] / d[1]))
                                if d[0] == "log" else d[1] + next(u) * (d[2] - d[1]), d[1], d[2])
                   for d in dists]
        for i in range(samples):
            values = {k: float(c[i]) for k, c in zip(keys, columns, strict=True)}
            parts = [f"{SHORT.get(k.rsplit('.', 1)[-1], k.rsplit('.', 1)[-1])}={v:.3g}"
                     for k, v in values.items()]
            out.append((f"{family} {', '.join(parts)}".strip(), {"optim.name": family, **values}))
    return out
