"""The tuning protocol: tune on validation, re-run each optimizer's choice on fresh seeds, report.

A study with ``final_seeds`` > 0 is a protocol in ONE run directory (DeepOBS' and AlgoPerf's
shape; docs/statistics.md):

1. its own members (a search, successive halving, a grid) train; each optimizer's setting is
   chosen on the validation split (:func:`jaxmnist.runs.stats.chosen`);
2. the chosen settings are re-run over ``final_seeds`` fresh seeds, as the experiment ``final``
   grown into the same run (one compiled program where their static keys agree);
3. the report gives their test metrics with intervals, the pairwise table and each optimizer's
   tuning cost.

The same command resumes whichever phase was interrupted: phase 2's settings are computed again
from phase 1's finished results, so they are the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxmnist.runs import rundir, runview, stats

FINAL = stats.FINAL
FIRST_FRESH_SEED = 1000  # above any tuning seed: the final phase never reuses one


def final_experiment(run_dir: Path, seeds: int) -> dict[str, Any]:
    """Phase 2's experiment: each optimizer's setting chosen on validation, on fresh seeds."""
    chosen = stats.chosen(runview.load(run_dir), tuning=True)
    return {"name": FINAL, "title": f"chosen on validation, {seeds} fresh seeds",
            "seeds": seeds, "first_seed": FIRST_FRESH_SEED,
            "points": [{"label": f"{family} (chosen: {point.label})",
                        "set": dict(point.experiments[0]["settings"])}
                       for family, point in chosen.items()]}


def tuned(run_dir: Path, members: int) -> bool:
    """Whether the run directory holds finished results for the first ``members`` members."""
    results = rundir.read_results(run_dir, required=False)
    done = {r["member"] for r in results.get("members", [])}
    return set(range(members)) <= done


def with_final(study: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """The study with its final phase, once phase 1 finished in ``run_dir`` (else as it is)."""
    from jaxmnist import config as C

    if not study.get("final_seeds") or study.get("final"):
        return dict(study)
    if not tuned(run_dir, len(C.expand(study))):
        return dict(study)
    return {**study, "final": final_experiment(run_dir, int(study["final_seeds"]))}
