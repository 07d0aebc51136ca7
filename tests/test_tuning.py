"""The optional Optuna driver: each batch of asked trials trains as one jaxmnist run, every
trial is reported its validation metric per epoch and told its last one."""

from __future__ import annotations

import pytest

from jaxmnist import config as C

optuna = pytest.importorskip("optuna")


def _study(**data) -> dict:
    return C.resolve({
        "study": "tuned", "seeds": 1,
        "data": {"split": "holdout", "val_size": 128, "source": "synthetic", "train_limit": 384,
                 "test_limit": 128, **data},
        "base": {"model": {"name": "mlp", "hidden": [8]},
                 "optim": {"name": "adam", "learning_rate": 1e-3},
                 "train": {"epochs": 2, "batch_size": 32}}})


def _suggest(trial) -> dict:
    return {"optim.name": trial.suggest_categorical("optimizer", ["adam", "sgd"]),
            "optim.learning_rate": trial.suggest_float("lr", 1e-3, 1e-1, log=True)}


def test_each_batch_is_one_run_and_every_trial_is_told_its_validation_metric(tmp_path):
    from jaxmnist import tuning
    from jaxmnist.runs import rundir

    sampler = optuna.create_study(direction="maximize",
                                  sampler=optuna.samplers.RandomSampler(seed=0))
    tuning.optimize(sampler, _study(), _suggest, batches=2, trials=3, workdir=tmp_path)
    done = sampler.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 6
    for b in range(2):
        recorded = rundir.read_config(tmp_path / f"batch_{b}")
        assert len(recorded["groups"]) == 1  # the batch trained as one program
        results = {m["member"]: m for m in rundir.read_results(tmp_path / f"batch_{b}")["members"]}
        for m in recorded["members"]:
            (trial,) = [t for t in done if f"trial {t.number}" == m["label"].split(" (")[0]]
            assert m["config"]["optim"]["learning_rate"] == trial.params["lr"]
            assert m["config"]["optim"]["name"] == trial.params["optimizer"]
            history = results[m["member"]]["history"]
            assert trial.intermediate_values == {h["epoch"]: h["val_acc"] for h in history}
            assert trial.value == history[-1]["val_acc"]


def test_a_direction_against_the_metric_or_no_validation_split_is_refused(tmp_path):
    from jaxmnist import tuning

    minimize = optuna.create_study(direction="minimize")
    with pytest.raises(ValueError, match="direction='maximize'"):
        tuning.optimize(minimize, _study(), _suggest, batches=1, trials=1, workdir=tmp_path)
    with pytest.raises(C.ConfigError, match="no validation set"):
        tuning.optimize(optuna.create_study(direction="maximize"),
                        _study(split="none", val_size=None), _suggest, batches=1, trials=1,
                        workdir=tmp_path)
    assert not list(tmp_path.iterdir())
