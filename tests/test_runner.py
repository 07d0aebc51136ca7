"""``jaxmnist.runner``: a finished run grows by seeds or epochs and trains only the new work."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import jaxmnist as jm
from jaxmnist import config as C
from jaxmnist.runs import rundir

LEARNING_RATES = [0.05, 0.02]  # two points: a grown run's new seeds interleave in study order


def _study(seeds: int = 2, epochs: int = 1) -> dict:
    """Two SGD points of a small MLP on 256 synthetic digits (4 steps an epoch)."""
    return C.resolve({
        "study": "grow",
        "data": {"split": "holdout", "val_size": 128, "train_limit": 256, "test_limit": 128,
                 "source": "synthetic"},
        "base": {"model": {"name": "mlp", "hidden": [16], "dropout": 0.2},
                 "optim": {"name": "sgd", "learning_rate": 0.05},
                 "train": {"epochs": epochs, "batch_size": 64}},
        "grid": {"optim": {"learning_rate": LEARNING_RATES}},
        "seeds": seeds})


class _Count:
    """A ``--callback`` factory that records which groups train which epochs."""

    def __init__(self):
        self.epochs: list[tuple[int, int]] = []  # (group, epoch) trained

    def __call__(self, run_dir, config):
        return self

    def on_epoch_end(self, group_index, epoch, member_metrics, info):
        self.epochs.append((group_index, epoch))


def _run(workdir: Path, study: dict, *, grow: bool = False, report: bool = False) -> _Count:
    count = _Count()
    jm.run(study, workdir=workdir, grow=grow, report=report, callbacks=[count], progress=False)
    return count


def _digests(run: Path) -> dict[str, str]:
    """sha256 of every file under params/ and ckpt/."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in ("params", "ckpt") for p in sorted((run / sub).rglob("*")) if p.is_file()}


def _params(run: Path, member: int) -> dict[str, np.ndarray]:
    with np.load(rundir.member_paths(run, member)[0]) as data:
        return dict(data)


def _assert_same_member(run_a: Path, a: int, run_b: Path, b: int) -> None:
    pa, pb = _params(run_a, a), _params(run_b, b)
    assert pa.keys() == pb.keys()
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=f"{a} vs {b}: {name}")
    ra = rundir.read_results(run_a)["members"][a]
    rb = rundir.read_results(run_b)["members"][b]
    def curve(r):  # the history without its wall seconds
        return [{k: v for k, v in row.items() if k != "seconds"} for row in r["history"]]

    assert ra["config"] == rb["config"] and curve(ra) == curve(rb)
    assert ra["test_pred"] == rb["test_pred"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run: 2 points x 2 seeds, 1 epoch (4 members, one group)."""
    run = tmp_path_factory.mktemp("grow") / "base"
    _run(run, _study())
    return run


def test_a_run_grows_by_seeds_and_trains_only_the_new_members(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before, old = _digests(run), rundir.read_results(run)["members"]
    count = _run(run, _study(seeds=7), grow=True, report=True)  # 2 seeds -> 7: five more
    # The old group trains nothing; the ten new members (5 seeds x 2 points) are a new group.
    assert count.epochs == [(1, 1)]
    cfg = rundir.read_config(run)
    assert [g["members"] for g in cfg["groups"]] == [[0, 1, 2, 3], list(range(4, 14))]
    new = [(lr, seed) for lr in LEARNING_RATES for seed in range(2, 7)]  # in study order
    assert [(m["config"]["optim"]["learning_rate"], m["config"]["seed"])
            for m in cfg["members"]] == [(0.05, 0), (0.05, 1), (0.02, 0), (0.02, 1), *new]
    # What existed is unchanged, byte for byte, and its members keep their indices.
    after = _digests(run)
    assert {k: after[k] for k in before} == before and len(after) > len(before)
    results = rundir.read_results(run)
    assert results["members"][:4] == old and results["complete"]
    # The new members are the members a fresh 7-seed run trains (its indices: study order).
    fresh = tmp_path / "fresh"
    _run(fresh, _study(seeds=7))
    for k, (lr, seed) in enumerate(new, start=4):
        _assert_same_member(run, k, fresh, LEARNING_RATES.index(lr) * 7 + seed)
    # The grown run reads like any other: the API's table, the report and the web demo.
    from jaxmnist.serve import app

    table = jm.open_run(run).table()
    assert len(table) == 14 and (run / "tables" / "summary.md").is_file()
    served, _ = app.load_members(run)
    assert [(m.member, m.available) for m in served] == [(k, True) for k in range(14)]
    assert served[4].config["seed"] == 2
    # Growing again by nothing is a plain resume: nothing trains.
    assert _run(run, _study(seeds=7), grow=True).epochs == []


def test_a_run_grows_by_epochs_continuing_its_members_from_their_checkpoints(finished,
                                                                             tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    count = _run(run, _study(epochs=3), grow=True)
    assert count.epochs == [(0, 2), (0, 3)]  # epoch 1 came from the checkpoint
    fresh = tmp_path / "fresh"
    _run(fresh, _study(epochs=3))
    for k in range(4):
        _assert_same_member(run, k, fresh, k)
    rows = rundir.histories(rundir.read_metrics(run))
    assert [r["epoch"] for r in rows[0]] == [1, 2, 3]


def test_a_study_that_grows_the_run_needs_grow_and_no_other_change_is_growth(finished):
    before = _digests(finished)
    with pytest.raises(rundir.RunDirError, match=r"grows \(2 new members\).*add --grow"):
        _run(finished, _study(seeds=3))
    with pytest.raises(rundir.RunDirError, match=r"member 0 \(.*\) is not in it.*new --workdir"):
        _run(finished, {**_study(seeds=3), "grid": {"optim": {"learning_rate": [0.1]}}},
             grow=True)
    assert _digests(finished) == before
    assert json.loads((finished / "config.json").read_text())["seeds"] == 2
