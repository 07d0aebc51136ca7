"""Optuna as the sampler (``pip install jaxmnist[optuna]``): one run per batch of trials.

Each trial is reported its validation metric per epoch and told the last one (docs/studies.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jaxmnist import api, ranking


def optimize(sampler: Any, study: Mapping[str, Any], suggest: Callable[[Any], Mapping[str, Any]],
             *, batches: int, trials: int, workdir: str | Path, metric: str = "val_acc",
             progress: bool = False) -> Any:
    """Asks, trains and tells ``batches`` x ``trials`` trials of the ``optuna.Study`` ``sampler``.

    ``study``: a resolved jaxmnist study with a validation split; ``suggest(trial)`` returns
    ``{dotted member key: value}``; the rest: docs/studies.md, "Search spaces". Returns
    ``sampler``, told every trial.
    """
    import optuna

    from jaxmnist import config as C

    higher = ranking.RANKING_METRICS[ranking.check_metric(metric)]
    if (sampler.direction == optuna.study.StudyDirection.MAXIMIZE) != higher:
        raise ValueError(f"metric {metric!r} is {'higher' if higher else 'lower'} is better; "
                         f"create the optuna study with direction="
                         f"{'maximize' if higher else 'minimize'!r}")
    if C.expected_sizes(study["data"])[1] < 1:
        raise C.ConfigError(["data: trials are told a validation metric, and this split has no "
                             "validation set; use data.split 'keras' or 'holdout'"])
    for b in range(batches):
        asked = [sampler.ask() for _ in range(trials)]
        try:
            points = [{"label": f"trial {t.number}", "set": dict(suggest(t))} for t in asked]
            run = api.run({**study, "grid": {}, "search": {}, "experiments": [
                {"name": "main", "points": points}]}, workdir=Path(workdir) / f"batch_{b}",
                report=False, progress=progress)
        except BaseException:
            for t in asked:
                sampler.tell(t, state=optuna.trial.TrialState.FAIL)
            raise
        members = run.view.config["members"]
        for t in asked:
            # Equal settings of two trials are one member listing both labels.
            curves = [run.history(m["member"])[metric] for m in members
                      if any(e["label"] == f"trial {t.number}" for e in m["experiments"])]
            for epoch in curves[0].index:
                value = ranking.seed_mean([c.get(epoch) for c in curves])
                if math.isfinite(value):
                    t.report(value, int(epoch))
            final = ranking.seed_mean([c.iloc[-1] for c in curves])
            if math.isfinite(final):
                sampler.tell(t, final)
            else:
                sampler.tell(t, state=optuna.trial.TrialState.FAIL)
    return sampler
