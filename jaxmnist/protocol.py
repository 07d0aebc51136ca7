"""The tuning protocol: tune on validation, re-run each optimizer's choice on fresh seeds, report.

A study with ``final_seeds`` > 0, in one run directory: phase 2's experiment ``final`` is computed
again from phase 1's finished results, so a resumed run picks the same (docs/studies.md, "The
tuning protocol").
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxmnist.runs import rundir, runview, stats

FIRST_FRESH_SEED = 1000  # above any tuning seed: the final phase never reuses one


def final_experiment(run_dir: Path, seeds: int) -> dict[str, Any]:
    """Phase 2's experiment: each optimizer's setting chosen on validation, on fresh seeds."""
    chosen = stats.chosen(runview.load(run_dir), tuning=True)
    return {"name": stats.FINAL, "title": f"chosen on validation, {seeds} fresh seeds",
            "seeds": seeds, "first_seed": FIRST_FRESH_SEED,
            "points": [{"label": f"{family} (chosen: {point.label})",
                        "set": dict(point.experiments[0]["settings"])}
                       for family, point in chosen.items()]}


def with_final(study: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """The study with its final phase once ``run_dir`` holds all of its own members (phase 1).

    Else the study as it is. ``study`` has ``final_seeds`` and no ``final`` yet.
    """
    from jaxmnist import config as C

    done = {r["member"] for r in rundir.read_results(run_dir, required=False).get("members", [])}
    if not set(range(len(C.expand(study)))) <= done:
        return dict(study)
    return {**study, "final": final_experiment(run_dir, int(study["final_seeds"]))}
