"""The Python API: ``jm.grid`` with objects, tables, members, resume; ``jm.open_run`` (no jax)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import numpy as np
import pytest

import jaxmnist as jm
from jaxmnist.runs import rundir

# jm.grid's default split holds out 10,000 training images; the first 300 of them validate here.
TINY_DATA = {"train_limit": 512, "val_limit": 300, "test_limit": 300}


class TinyMLP(nn.Module):
    width: int = 16

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(10)(nn.relu(nn.Dense(self.width)(x.reshape(x.shape[0], -1))))


@pytest.fixture(scope="module")
def api_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("api") / "run"
    run = jm.grid(model=TinyMLP(width=8), optimizers={"adam": [3e-3, 1e-3], "sgd": 0.1},
                  seeds=2, epochs=2, data=TINY_DATA, synthetic=True, workdir=workdir,
                  progress=False)
    return run, workdir


def test_config_json_alone_rebuilds_the_members(api_run):
    from jaxmnist import schema
    from jaxmnist.groups import group_members
    from jaxmnist.runs import rundir

    _, workdir = api_run
    recorded = rundir.read_config(workdir)
    assert recorded["config_format"] == rundir.CONFIG_FORMAT
    rebuilt = [schema.member(m["config"]) for m in recorded["members"]]
    # Every default is written out (Adam's Keras epsilon, SGD's constant schedule) ...
    assert rebuilt[0].optim.hyper == {"b1": 0.9, "b2": 0.999, "eps": 1e-7}
    assert recorded["members"][0]["config"]["optim"]["eps"] == 1e-7
    assert [m.config() for m in rebuilt] == [m["config"] for m in recorded["members"]]
    # ... and the members split into the same groups as the run's.
    groups = [g["members"] for g in recorded["groups"]]
    assert group_members([m.config() for m in rebuilt]) == groups


def test_a_run_directory_of_the_earlier_format_gets_one_message_saying_how(api_run, tmp_path):
    import shutil

    from jaxmnist.runs import rundir

    _, workdir = api_run
    old = tmp_path / "old"
    shutil.copytree(workdir, old)
    cfg = rundir.read_config(old)
    del cfg["config_format"]
    rundir.write_json(old / rundir.CONFIG, cfg)
    with pytest.raises(rundir.RunDirError, match="earlier jaxmnist .config.json format 1") as err:
        jm.grid(model=TinyMLP(width=8), optimizers={"adam": [3e-3, 1e-3], "sgd": 0.1},
                seeds=2, epochs=2, data=TINY_DATA, synthetic=True, workdir=old, progress=False)
    assert "results stay readable" in str(err.value)
    assert len(jm.open_run(old).table()) == 6


def test_grid_returns_a_table_per_member_and_per_point(api_run):
    run, _ = api_run
    assert run.complete
    table = run.table()
    assert list(table.index) == list(range(6))
    assert set(table["optim.name"]) == {"adam", "sgd"} and set(table["seed"]) == {0, 1}
    assert table["test_acc"].between(0, 1).all() and (table["epochs"] == 2).all()
    points = run.points()
    assert len(points) == 3 and (points["seeds"] == 2).all()
    by_label = table.groupby("label")["test_acc"]
    for label, row in points.iterrows():
        assert row["mean_test_acc"] == pytest.approx(by_label.get_group(label).mean())
        seeds = table[table["label"] == label].sort_values("seed")["test_acc"].tolist()
        assert row["values"] == seeds and row["iqm"] == pytest.approx(np.mean(seeds))  # 2: none cut
        assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"])
        assert row["note"] == "2 seeds < 5: no interval"
    assert list(run.history(0).index) == [1, 2]
    # One pair (adam at its chosen lr, sgd), paired by seed: P(x > y) from the member table.
    (_, pair), = run.compare().iterrows()
    x, y = (table[table["label"] == pair[k]].sort_values("seed")["test_acc"].to_numpy()
            for k in ("x", "y"))
    assert {pair["x"].split()[0], pair["y"].split()[0]} == {"adam", "sgd"} and pair["n"] == 2
    assert pair["p_improve"] == np.mean((x > y) + 0.5 * (x == y))
    assert pair["verdict"] == "not distinguishable with 2 seeds (2 seeds < 5: no interval)"


def test_grid_holds_out_a_validation_split_by_default(api_run, monkeypatch):
    from jaxmnist import api
    from jaxmnist.runs import rundir

    run, workdir = api_run
    data = rundir.read_config(workdir)["data"]
    assert (data["split"], data["val_size"]) == ("holdout", 10_000)
    assert run.view.results["data"]["val"] == TINY_DATA["val_limit"]
    assert run.table()["val_acc"].notna().all() and run.view.best() is not None
    # The default without data; a split given in ``data`` replaces it whole (no val_size left).
    studies = []
    monkeypatch.setattr(api, "run", lambda study, **_: studies.append(study["data"]))
    api.grid(model="mlp", optimizers={"adam": 1e-3}, workdir="unused")
    api.grid(model="mlp", optimizers={"adam": 1e-3}, data={"split": "none"}, workdir="unused")
    assert [(d["split"], d["val_size"]) for d in studies] == [("holdout", 10_000), ("none", None)]


def _rewritten(src: Path, dst: Path, edit) -> Path:
    """A copy of a run directory whose ``results.json`` went through ``edit(results)``."""
    from jaxmnist.runs import rundir

    shutil.copytree(src, dst)
    results = rundir.read_results(dst)
    edit(results)
    rundir.RunWriter(dst).write_results(results)
    return dst


def _three_views(workdir: Path):
    """One run as the API, the report's files (written again) and the web demo read it."""
    from fastapi.testclient import TestClient

    from jaxmnist.runs import tables
    from jaxmnist.serve import app as serve

    tables.generate(workdir, figures=False)
    summary = json.loads((workdir / "tables" / "results_summary.json").read_text())
    with TestClient(serve.create_app(serve.Predictor(workdir, warm=False))) as client:
        served = client.get("/api/members").json()
    return jm.open_run(workdir), summary, served


def test_the_api_the_report_and_the_web_demo_read_one_run_alike(api_run, tmp_path):
    _, workdir = api_run
    run, summary, served = _three_views(_rewritten(workdir, tmp_path / "run", lambda r: None))
    points, table = run.points(), run.table()
    reported = {p["label"]: p for p in summary["points"]}
    assert list(points.index) and set(points.index) == set(reported)
    for label, row in points.iterrows():
        assert row["mean_test_acc"] == pytest.approx(np.mean(reported[label]["test_acc"]))
        assert row["mean_val_acc"] == pytest.approx(np.mean(reported[label]["val_acc"]))
    members = {m["member"]: m for m in served["members"]}
    assert sorted(members) == list(table.index)
    for k, row in table.iterrows():
        assert (members[k]["test_acc"], members[k]["val_acc"]) == pytest.approx(
            (row["test_acc"], row["val_acc"]))
    # One best: the API's, the report's and the demo's default, first of points() by validation.
    best = run.best().index
    assert summary["best"] == {"label": points.index[0], "member": best}
    assert served["default"] == best and table.loc[best, "label"] == points.index[0]
    assert points["mean_val_acc"].iloc[0] == points["mean_val_acc"].max()
    mine = table[table["label"] == points.index[0]]
    assert mine.loc[best, "val_acc"] == mine["val_acc"].max()
    assert f"its best member: {best} " in (run.path / "tables" / "report.md").read_text()


def test_best_is_chosen_on_validation_not_on_test(api_run, tmp_path):
    """The point worst on test is made best on validation, and within it the seed that is worse
    on test: the API, the report and the web demo all choose that seed; no view looks at test."""
    run, workdir = api_run
    label = run.table()["label"].iloc[-1]
    low, high = run.table().index[run.table()["label"] == label]  # two seeds

    def edit(results):
        for m in results["members"]:
            val, test = {low: (0.97, 0.55), high: (0.99, 0.50)}.get(m["member"], (0.90, 0.95))
            m["history"][-1]["val_acc"], m["test"]["acc"] = val, test

    run, summary, served = _three_views(_rewritten(workdir, tmp_path / "run", edit))
    assert run.view.best().label == label and run.points().index[0] == label
    assert run.best().index == summary["best"]["member"] == served["default"] == high
    assert run.table()["test_acc"].idxmax() not in (low, high)


def test_a_run_without_validation_chooses_nothing(api_run, tmp_path):
    _, workdir = api_run

    def edit(results):
        results["data"]["val"] = 0
        for m in results["members"]:
            for row in m["history"]:
                del row["val_acc"], row["val_loss"]

    run, summary, served = _three_views(_rewritten(workdir, tmp_path / "run", edit))
    assert run.view.best() is None
    with pytest.raises(jm.APIError, match="no validation split: nothing chosen; train with a "
                                          "holdout split to choose"):
        run.best()
    assert summary["best"] is None and summary["no_choice"].startswith("no validation split")
    report = (run.path / "tables" / "report.md").read_text()
    assert "Best point: no validation split: nothing chosen" in report
    first_ok = min(k for k, row in run.table().iterrows() if row["status"] == "ok")
    assert served["default"] == first_ok and "first available ok" in served["default_rule"]


def test_a_member_predicts_what_its_results_say(api_run):
    run, workdir = api_run
    best = run.best()
    results = json.loads((workdir / "results.json").read_text())
    member = next(m for m in results["members"] if m["member"] == best.index)
    samples = run.view.samples
    probs = best.predict(samples["test_x"])
    assert probs.shape == (len(samples["test_x"]), 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs[:len(member["test_probs_first25"])],
                               np.asarray(member["test_probs_first25"]), atol=1e-5)


def test_calling_grid_again_resumes_without_training(api_run, capsys):
    run, workdir = api_run
    before = (workdir / "results.json").read_text()
    again = jm.grid(model=TinyMLP(width=8), optimizers={"adam": [3e-3, 1e-3], "sgd": 0.1},
                    seeds=2, epochs=2, data=TINY_DATA, synthetic=True, workdir=workdir,
                    progress=False)
    assert "finished earlier" in capsys.readouterr().err
    assert again.table()["test_acc"].tolist() == run.table()["test_acc"].tolist()
    assert json.loads(before)["members"] == json.loads(
        (workdir / "results.json").read_text())["members"]


def test_open_run_reads_files_without_importing_jax(api_run):
    _, workdir = api_run
    code = ("import sys, jaxmnist as jm; run = jm.open_run(sys.argv[1]); "
            "print(len(run.table()), len(run.points())); assert 'jax' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code, str(workdir)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["6", "3"]


def test_an_nnx_module_object_is_refused_with_the_fix():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(784, 10, rngs=rngs)

    with pytest.raises(jm.APIError, match=r"pass its class \(model=Net\)"):
        jm.grid(model=Net(nnx.Rngs(0)), optimizers={"adam": 1e-3}, workdir="unused")


def test_model_objects_record_how_to_load_them_again():
    from jaxmnist.api import model_config

    cfg, note = model_config(TinyMLP(width=8))
    # the test module is importable by its path, so the config says how to import it
    assert cfg == {"name": f"{__name__}:TinyMLP", "width": 8} and note == ""
    with pytest.raises(jm.APIError, match="is not a model"):
        model_config(42)


def test_a_pruned_grid_records_each_members_fate_and_reports_the_cost(tmp_path):
    run = jm.grid(model=TinyMLP(width=8), optimizers={"adam": [3e-3, 1e-3, 1e-4], "sgd": 0.1},
                  seeds=2, epochs=3, data={**TINY_DATA, "split": "holdout", "val_size": 200},
                  synthetic=True, workdir=tmp_path / "run", progress=False,
                  prune={"eta": 2, "rungs": [1, 2]})
    table = run.table()
    adam = table[table.label.str.startswith("adam")]
    # 3 Adam points: 2 survive rung 1, 1 survives rung 2, seeds together; SGD alone survives.
    assert sorted(adam.epochs_trained) == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
    assert (table[table.label.str.startswith("sgd")].epochs_trained == 3.0).all()
    for _, row in adam.iterrows():
        trained = int(row.epochs_trained)
        assert (row.status == "ok") == (trained == 3)
        if trained < 3:
            assert row.status.startswith(f"pruned at epoch {trained} (rank ")
    report = (tmp_path / "run" / "tables" / "report.md").read_text()
    assert "| adam | 6 | 12 | 18 | 67% |" in report and "| sgd | 2 | 6 | 6 | 100% |" in report
    assert (tmp_path / "run" / "figures" / "rungs.png").stat().st_size > 0  # the rungs' figure
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert all(len(m["rungs"]) == 2 or m["epochs_trained"] == 1.0 for m in results["members"])
    with pytest.raises(ValueError, match="data.split is 'none'"):
        jm.grid(model="mlp", optimizers={"adam": 1e-3}, epochs=2, prune={"rungs": [1]},
                data={"split": "none"}, workdir=tmp_path / "bad", synthetic=True)
    assert not (tmp_path / "bad").exists()
    # The same grid with another pruning setting does not resume the pruned checkpoints.
    with pytest.raises(rundir.RunDirError, match="its prune setting differs"):
        jm.grid(model=TinyMLP(width=8), optimizers={"adam": [3e-3, 1e-3, 1e-4], "sgd": 0.1},
                seeds=2, epochs=3, data={**TINY_DATA, "split": "holdout", "val_size": 200},
                synthetic=True, workdir=tmp_path / "run", progress=False,
                prune={"eta": 3, "rungs": [1, 2]})


def test_a_bad_optimizer_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="adamq"):
        jm.grid(model="mlp", optimizers={"adamq": 1e-3}, workdir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.e2e
def test_the_readme_api_example_runs(tmp_path, monkeypatch):
    """The README's Python block, run as written except that it trains on synthetic digits
    (no MNIST here) and skips its last, long line (the S2 preset: its loading is covered by
    jm.load_study in tests/test_config.py)."""
    import functools
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"<!-- api-example -->\n```python\n(.*?)```", readme, re.S).group(1)
    lines = [ln for ln in block.splitlines() if "jm.run(jm.load_study" not in ln]
    assert len(lines) == len(block.splitlines()) - 1
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(jm, "grid", functools.partial(jm.grid, synthetic=True, progress=False))
    namespace: dict = {}
    exec(compile("\n".join(lines), "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["probs"].shape == (25, 10)
    assert namespace["run"].complete and len(namespace["run"].table()) == 6


def test_a_cnn_grid_gets_the_cli_device_layout(tmp_path):
    """``jm.grid`` configures the host devices before validating the study starts a backend
    (a zoo CNN resolves its convolution when traced), so it trains on the devices that
    ``python -m jaxmnist.sweep`` would give it: one single-threaded device per core on a
    CPU-only machine (2 here), as many as the members can use."""
    import os

    from jaxmnist.engine import hostdevices, placement

    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", hostdevices.ENV_DEVICES, "JAX_PLATFORMS")}
    cli = hostdevices.decide(env, cores=hostdevices.usable_cores(),
                             accelerator=hostdevices.accelerator_installed(), started=False)
    expected = placement.useful_devices(2, cli.devices or 1)
    code = ("import sys, jaxmnist as jm; run = jm.grid(model='cnn', optimizers={'adam': 1e-3, "
            "'sgd': 0.05}, data={'train_limit': 64, 'val_limit': 32, 'test_limit': 32}, "
            "synthetic=True, progress=False, workdir=sys.argv[1])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], env=env,
                         capture_output=True, text=True, timeout=600, check=True)
    assert "already started its backend" not in out.stderr
    groups = json.loads((tmp_path / "run" / "results.json").read_text())["groups"]
    assert [g["devices"] for g in groups] == [expected], out.stderr


def test_adams_own_betas_beside_sgd_reach_adam_alone(tmp_path):
    """{"adam": [{"b1": 0.5}], "sgd": [0.1]}: each point gets its own hyperparameters and only
    those (an optimizer's keys never reach another optimizer's points)."""
    run = jm.grid(model=TinyMLP(width=8), optimizers={
        "adam": [{"learning_rate": 1e-3, "b1": 0.9}, {"learning_rate": 1e-3, "b1": 0.5}],
        "sgd": [0.1]}, epochs=1, data=TINY_DATA, synthetic=True, workdir=tmp_path / "run",
        progress=False)
    optims = [m["config"]["optim"] for m in run.view.config["members"]]
    assert [o["name"] for o in optims] == ["adam", "adam", "sgd"]
    assert [o["b1"] for o in optims[:2]] == [0.9, 0.5]
    assert optims[2] == {"name": "sgd", "learning_rate": 0.1, "schedule": {"name": "constant"},
                         "clip_norm": None}
    assert len(run.table()) == 3
    # Two Adam points that differ in b1 alone are two points, each labelled by what differs.
    points = run.points()
    assert sorted(points.index) == ["adam lr=0.001 (b1=0.5)", "adam lr=0.001 (b1=0.9)",
                                    "sgd lr=0.1"]
    assert (points["seeds"] == 1).all()
