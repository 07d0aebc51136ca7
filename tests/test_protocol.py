"""The tuning protocol (jaxmnist.runner, jm.compare) on synthetic digits: tune on validation,
re-run the choices on fresh seeds in the same run directory, report; resumable at each phase."""

from __future__ import annotations

import json

import pytest

import jaxmnist as jm
from jaxmnist import config as C
from jaxmnist.runs import runview, stats

TINY = {"split": "holdout", "val_size": 300, "train_limit": 1200, "test_limit": 300}


def _compare(workdir, **kwargs):
    return jm.compare(model={"name": "mlp", "hidden": [16]}, optimizers=["adam", "sgd"],
                      samples=3, final_seeds=5, epochs=2, synthetic=True, data=TINY,
                      workdir=workdir, progress=False, **kwargs)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    return _compare(tmp_path_factory.mktemp("cmp") / "run", prune={"eta": 3, "rungs": [1]})


def test_phase_2_re_runs_each_optimizers_validation_choice_on_fresh_seeds(compared):
    view = runview.load(compared.path)
    tuned = stats.chosen(view, tuning=True)
    finals = dict(view.points_of("final"))
    assert len(finals) == 2
    for family, point in stats.chosen(view).items():
        # the same configuration as the tuning point chosen on validation, fresh seeds only
        assert point.key == tuned[family].key and point in finals.values()
        assert [m["config"]["seed"] for m in point.members] == [1000, 1001, 1002, 1003, 1004]
        # ... and that point ranks first in its family on validation (seed mean)
        family_points = [p for p in view.points
                         if stats.optimizer(p) == family and not stats.is_final(p)]
        assert runview.rank_points(family_points)[0] is tuned[family]
    results = json.loads((compared.path / "results.json").read_text())
    final_groups = {m["group"] for m in results["members"] if m["config"]["seed"] >= 1000}
    assert len(final_groups) == 1  # the chosen settings train as one program


def test_the_report_gives_intervals_pairs_and_tuning_cost(compared):
    report = (compared.path / "tables" / "report.md").read_text()
    assert "## Tuning protocol" in report and "re-run on fresh seeds" in report
    cost = stats.tuning_cost(runview.load(compared.path))
    assert list(cost.index) == ["adam", "sgd"] and (cost["members"] == 3).all()
    assert (cost["member_epochs"] < cost["full_grid"]).all()  # pruned at the rung
    table = compared.compare()
    assert len(table) == 1 and (table["n"] == 5).all() and table["p_ci_low"].notna().all()


def test_calling_again_trains_nothing_and_changes_nothing(compared):
    def recorded():
        results = json.loads((compared.path / "results.json").read_text())
        return results["members"], results["groups"], (compared.path / "config.json").read_text()

    before = recorded()
    _compare(compared.path, prune={"eta": 3, "rungs": [1]})
    assert recorded() == before  # the same members, groups (train seconds) and config


def test_a_run_stopped_between_the_phases_goes_on_with_phase_2(compared, tmp_path, monkeypatch):
    """A kill after phase 1 (here: while phase 2 is being chosen), then the same call: phase 1 is
    read back, not retrained, and phase 2 is what the uninterrupted run chose."""
    from jaxmnist import runner

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    run = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(runner, "final_experiment", killed)
        with pytest.raises(KeyboardInterrupt):
            _compare(run, prune={"eta": 3, "rungs": [1]})
    phase1 = json.loads((run / "results.json").read_text())["members"]
    assert phase1 and all(m["config"]["seed"] < 1000 for m in phase1)
    _compare(run, prune={"eta": 3, "rungs": [1]})
    results = json.loads((run / "results.json").read_text())["members"]
    assert results[: len(phase1)] == phase1
    uninterrupted = json.loads((compared.path / "results.json").read_text())["members"]
    assert [(m["label"], m["test"]) for m in results] == [
        (m["label"], m["test"]) for m in uninterrupted]


@pytest.mark.parametrize("change, message", [
    ({"data": {"split": "none"}}, "final_seeds: the protocol chooses each optimizer's setting "
                                  "on the validation split"),
    ({"final_seeds": -1}, "final_seeds: must be an integer >= 0"),
])
def test_bad_protocol_settings_are_one_message(tmp_path, change, message):
    kwargs = {"data": TINY, "final_seeds": 5, **change}
    with pytest.raises(C.ConfigError, match=message):
        jm.compare(model={"name": "mlp", "hidden": [16]}, optimizers=["adam"], samples=2,
                   epochs=1, synthetic=True, workdir=tmp_path / "run", progress=False,
                   **kwargs)
    assert not (tmp_path / "run").exists()


def test_an_experiment_may_not_take_the_protocols_name():
    s = C.resolve(C.load_study("smoke"))
    s["experiments"] = [{"name": "final", "grid": {"optim": {"learning_rate": [0.1]}}}]
    assert any("'final' is the tuning protocol's own experiment" in p
               for p in C.validate_study(s))
