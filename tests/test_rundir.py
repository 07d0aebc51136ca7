"""The run-directory format: atomic writes, torn metrics lines, old run directories, bad folders."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from jaxmnist.engine.hooks import EpochInfo
from jaxmnist.runs import rundir, runview, tables

OLD_RUN = Path(__file__).resolve().parent / "data" / "run_7bdb1e0"
"""A smoke run (2 members, 2 epochs) written by the sweep at commit 7bdb1e0, before rundir.py:
``python -m jaxmnist.sweep sweeps/smoke.py --seeds 1 --config.data.train_limit=256
--config.data.test_limit=50 --config.data.val_size=50 --config.grid.model.hidden=[[8]]
--config.grid.optim.learning_rate=[0.1] --no-report`` (ckpt/, tables/, figures/ left out)."""

CONFIG = {"study": "t", "data": {"split": "none"},
          "members": [{"member": 0, "group": 0, "key": "k", "label": "a (seed 0)",
                       "experiments": [{"name": "main", "label": "a", "settings": {}}],
                       "config": {"model": {"name": "mlp"}, "seed": 0}}],
          "groups": [{"group": 0, "members": [0]}]}


def _info() -> EpochInfo:
    return EpochInfo(epochs=2, seconds=1.5, train_seconds=1.0, images_per_second=10.0,
                     compiles=0, resumed=False)


def _row(epoch: int, acc: float = 0.5) -> dict:
    return {"train_loss": 1.0, "train_acc": acc, "val_loss": None, "val_acc": None,
            "alive": True}


def test_writer_and_reader_round_trip(tmp_path):
    run = tmp_path / "run"
    writer, resuming = rundir.RunWriter.open(run, CONFIG)
    assert not resuming
    assert rundir.read_config(run) == {"config_format": rundir.CONFIG_FORMAT, **CONFIG}
    assert all((run / sub).is_dir() for sub in rundir.SUBDIRS)
    hook = writer.metrics_log([0])
    hook.on_epoch_end(0, 1, [_row(1)], _info())
    hook.on_epoch_end(0, 2, [{**_row(2), "train_loss": float("nan")}], _info())
    rows = rundir.read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["train_loss"] is None
    writer.export_member(0, {"name": "mlp"}, {"dense1": {"w": np.ones((2, 3), np.float32)}},
                         extra={"test_acc": 0.9})
    cfg, params, state = rundir.load_member(run, 0)
    assert cfg == {"name": "mlp"} and params["dense1"]["w"].shape == (2, 3) and state == {}
    # A model with state (BatchNorm statistics): both come back from the one .npz.
    writer.export_member(1, {"name": "bn.py:Net"}, {"dense1": {"w": np.ones(2, np.float32)}},
                         state={"batch_stats": {"bn": {"mean": np.full(3, 0.5, np.float32)}}})
    _, params, state = rundir.load_member(run, 1)
    assert params == {"dense1": {"w": params["dense1"]["w"]}}
    np.testing.assert_array_equal(state["batch_stats"]["bn"]["mean"], np.full(3, 0.5))
    assert rundir.member_meta(run, 0)["test_acc"] == 0.9
    writer.write_results({"study": "t", "members": [{"member": 0, "loss": float("inf")}]})
    assert rundir.read_results(run)["members"][0]["loss"] is None
    # Every write went through a temporary file that is gone now.
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]


def test_torn_last_metrics_line_is_skipped_then_cut_before_appending(tmp_path, caplog):
    run = tmp_path / "run"
    writer, _ = rundir.RunWriter.open(run, CONFIG)
    writer.metrics_log([0]).on_epoch_end(0, 1, [_row(1)], _info())
    with (run / rundir.METRICS).open("a") as fh:
        fh.write('{"member": 0, "group": 0, "epo')  # killed in the middle of a write
    with caplog.at_level(logging.WARNING, "jaxmnist.runs.rundir"):
        rows = rundir.read_metrics(run)
    assert [r["epoch"] for r in rows] == [1]
    assert "line 2 is damaged" in caplog.text and str(run / rundir.METRICS) in caplog.text
    # Resuming cuts the torn tail, so the next append starts on a fresh line.
    writer, resuming = rundir.RunWriter.open(run, CONFIG)
    assert resuming
    writer.metrics_log([0]).on_epoch_end(0, 2, [_row(2)], _info())
    lines = (run / rundir.METRICS).read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)


def test_report_survives_a_torn_metrics_line_of_an_unfinished_member(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    results = rundir.read_results(run)
    results["members"] = results["members"][:1]  # member 1 still training
    rundir.write_json(run / rundir.RESULTS, results)
    with (run / rundir.METRICS).open("a") as fh:
        fh.write('{"member": 1, "gro')
    loaded = runview.load(run)
    unfinished = [m for p in loaded.points for m in p.members if m["status"] == "unfinished"]
    assert len(unfinished) == 1 and len(unfinished[0]["history"]) == 2


def test_reads_a_run_directory_written_before_rundir_existed(tmp_path):
    run = tmp_path / "old"
    shutil.copytree(OLD_RUN, run)
    cfg, results = rundir.read_config(run), rundir.read_results(run)
    assert cfg["study"] == "smoke" and len(cfg["members"]) == 2 and results["complete"]
    assert set(rundir.histories(rundir.read_metrics(run))) == {0, 1}
    assert rundir.exported_members(run) == [0, 1]
    model_cfg, params, _ = rundir.load_member(run, 1)
    assert model_cfg["hidden"] == [8] and params["dense1"]["w"].shape == (784, 8)
    assert rundir.read_samples(run)["test_x"].shape == (25, 28, 28, 1)
    written = tables.generate(run)
    assert (run / "tables" / "summary.md") in written
    assert (run / "figures" / "ffnn.png") in written


def test_reads_a_run_in_progress(tmp_path):
    """A run still training (config, env, the metrics of epoch 1, no results.json yet), as the
    long runs started from 7bdb1e0 look while they train: built here from the recorded run."""
    run = tmp_path / "in-progress"
    shutil.copytree(OLD_RUN, run)
    (run / rundir.RESULTS).unlink()
    lines = (run / rundir.METRICS).read_text().splitlines()
    (run / rundir.METRICS).write_text("\n".join(lines[:2]) + "\n")  # epoch 1 of 2 only
    assert rundir.read_config(run)["members"]
    assert rundir.read_results(run, required=False) == {}
    with pytest.raises(rundir.RunDirError):
        rundir.read_results(run)
    env = rundir.read_env(run)
    assert env["git_commit"].startswith("7bdb1e0") and env["argv"][1] == "sweeps/smoke.py"
    rows = rundir.read_metrics(run)
    assert [(r["member"], r["epoch"]) for r in rows] == [(0, 1), (1, 1)]
    for row in rows:
        assert {"member", "group", "epoch", "train_loss", "alive"} <= row.keys()
    # The report of an unfinished run: every member unfinished, with its one epoch of history.
    members = [m for p in runview.load(run).points for m in p.members]
    assert len(members) == 2 and {m["status"] for m in members} == {"unfinished"}
    assert all(len(m["history"]) == 1 for m in members)


def test_a_run_of_the_earlier_config_format_gets_one_message_saying_how(tmp_path):
    """config.json of 7bdb1e0 records configs as written (format 1): not continued, still read."""
    from jaxmnist import config, runner

    run = tmp_path / "old"
    shutil.copytree(OLD_RUN, run)
    study = config.resolve(config.load_study("smoke"), seeds=1, overrides=[
        "data.train_limit=256", "data.test_limit=50", "data.val_size=50",
        "grid.model.hidden=[[8]]", "grid.optim.learning_rate=[0.1]"])
    new = runner.resolved_config(study)
    with pytest.raises(rundir.RunDirError, match="config.json format 1; this one writes format 3"):
        rundir.RunWriter.check(run, new)
    assert rundir.read_config(run)["study"] == "smoke"


def test_a_kill_during_a_member_export_leaves_no_temporary_file_after_resume(tmp_path, caplog):
    """SIGKILL while params/member_0.npz is written; reopening the run removes its temp file."""
    import signal
    import subprocess
    import time

    run = tmp_path / "run"
    rundir.RunWriter.open(run, CONFIG)
    code = f"""
import time
import numpy as np
from jaxmnist.runs import rundir
def stuck(fh, **arrays):  # a slow disk: half the file written, then SIGKILL
    fh.write(b"PK" * 1000); fh.flush(); open({str(tmp_path / "ready")!r}, "w").close()
    time.sleep(60)
np.savez = stuck
rundir.RunWriter({str(run)!r}).export_member(0, {{"name": "mlp"}}, {{"w": np.zeros(3)}})
"""
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(600):
            if (tmp_path / "ready").exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert (tmp_path / "ready").exists(), "the export did not start"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    (stale,) = (run / "params").glob(".member_0.npz.tmp*")
    (run / ".results.json.tmp999999").write_text("{")  # a kill during write_results, too
    mine = [run / "params" / ".notes.tmp1", run / "params" / "mine.txt", run / ".other.tmp2"]
    for path in mine:
        path.write_text("the user's")
    with caplog.at_level(logging.WARNING, logger="jaxmnist.runs.rundir"):
        _, resuming = rundir.RunWriter.open(run, CONFIG)
    assert resuming and not stale.exists() and not (run / ".results.json.tmp999999").exists()
    assert all(p.read_text() == "the user's" for p in mine)  # only its own files
    assert "removed 2 temporary file(s) left by an interrupted run" in caplog.text
    assert rundir.exported_members(run) == []


def test_a_different_study_in_the_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    rundir.RunWriter.open(run, CONFIG)
    other = json.loads(json.dumps(CONFIG))
    other["members"][0]["config"]["seed"] = 1
    with pytest.raises(rundir.RunDirError, match="1 of 1 member configs differ") as err:
        rundir.RunWriter.open(run, other)
    assert err.value.exit_code == 2


def test_unusable_work_folders_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(rundir.RunDirError, match="is a file, not a folder"):
        rundir.check_workdir(a_file)
    with pytest.raises(rundir.RunDirError, match="is a file, so no folder can be made"):
        rundir.check_workdir(a_file / "run")
    full = tmp_path / "full"
    (full / "x").mkdir(parents=True)
    with pytest.raises(rundir.RunDirError, match="not empty and holds no config.json"):
        rundir.check_workdir(full)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root may write anywhere: os.access says what it says to a user
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: not (
            Path(path) == locked and mode & os.W_OK) and real_access(path, mode, *a, **k))
    with pytest.raises(rundir.RunDirError, match="no permission to write"):
        rundir.check_workdir(locked / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full", "locked"]


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full"),
                                         (errno.EACCES, "permission denied")])
def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch, code, words):
    path = tmp_path / "results.json"
    rundir.write_json(path, {"members": [1]})

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(rundir.RunDirError, match=words) as err:
        rundir.write_json(path, {"members": [1, 2]})
    assert err.value.exit_code == 1 and "run the same command again" in str(err.value)
    assert json.loads(path.read_text()) == {"members": [1]}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_damaged_json_and_params_are_clear_errors(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    (run / rundir.RESULTS).write_text('{"study": "smoke", "memb')
    with pytest.raises(rundir.RunDirError, match="results.json .* is damaged"):
        rundir.read_results(run)
    (run / "params" / "member_0.npz").write_bytes(b"not a zip")
    with pytest.raises(rundir.RunDirError, match="cannot read exported member 0"):
        rundir.load_member(run, 0)
    with pytest.raises(rundir.RunDirError, match="available: member_0, member_1"):
        rundir.load_member(run, 7)


def test_samples_are_written_once(tmp_path):
    writer, _ = rundir.RunWriter.open(tmp_path / "run", CONFIG)
    x = np.zeros((30, 28, 28, 1), np.uint8)
    y = np.arange(30) % 10
    writer.save_samples(SimpleNamespace(train_x=x, train_y=y, test_x=x, test_y=y))
    assert rundir.read_samples(writer.root)["train_y"].tolist() == y[:25].tolist()


def test_rundir_imports_no_jax():
    import subprocess

    code = ("import sys, jaxmnist.runs.rundir; "
            "print(sorted(m for m in sys.modules if m == 'jax' or m.startswith('jax.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def _member(seed: int, epochs: int = 1, lr: float = 0.1, schedule: str = "constant") -> dict:
    sched = {"name": schedule, **({"decay_steps": None} if schedule == "cosine" else {})}
    return {"model": {"name": "mlp"}, "train": {"epochs": epochs, "batch_size": 8},
            "optim": {"name": "sgd", "learning_rate": lr, "schedule": sched}, "seed": seed}


def _config(configs: list[dict], groups: list[list[int]]) -> dict:
    return {"config_format": rundir.CONFIG_FORMAT, "study": "t", "data": {"split": "none"},
            "members": [{"member": k, "label": f"m{k}", "config": c}
                        for k, c in enumerate(configs)],
            "groups": [{"group": g, "members": ks} for g, ks in enumerate(groups)]}


def test_grown_order_keeps_the_old_indices_and_appends_the_new_members():
    old = _config([_member(0), _member(1), _member(0, lr=0.01), _member(1, lr=0.01)],
                  [[0, 1, 2, 3]])
    # The study's own order interleaves the new seeds; the run's order appends them.
    study = [_member(0), _member(1), _member(2), _member(0, lr=0.01), _member(1, lr=0.01),
             _member(2, lr=0.01)]
    assert rundir.grown_order(old, study, "run") == [0, 1, 3, 4, 2, 5]
    # More epochs are growth too: the same members, trained on.
    longer = [_member(s, epochs=3, lr=lr) for lr in (0.1, 0.01) for s in (0, 1)]
    assert rundir.grown_order(old, longer, "run") == [0, 1, 2, 3]
    # A run of the earlier config.json format grows no more than it resumes.
    with pytest.raises(rundir.RunDirError, match="written by an earlier jaxmnist"):
        rundir.grown_order({**old, "config_format": 1}, study, "run")


@pytest.mark.parametrize(("old_epochs", "study", "message"), [
    (1, [_member(0), _member(1, lr=0.5)], r"member 1 \(m1\) is not in it"),
    (3, [_member(0, epochs=2), _member(1, epochs=2)], "from 3 to 2 epochs: a run never shrinks"),
])
def test_grown_order_refuses_what_is_no_growth(old_epochs, study, message):
    old = _config([_member(0, epochs=old_epochs), _member(1, epochs=old_epochs)], [[0, 1]])
    with pytest.raises(rundir.RunDirError, match=message):
        rundir.grown_order(old, study, "run")


def test_more_epochs_of_a_schedule_over_the_whole_run_is_refused():
    old = _config([_member(0, schedule="cosine")], [[0]])
    with pytest.raises(rundir.RunDirError, match="cosine schedule decays over the whole run"):
        rundir.grown_order(old, [_member(0, epochs=2, schedule="cosine")], "run")


def test_a_grown_study_is_refused_without_grow_and_opens_with_it(tmp_path):
    run = tmp_path / "run"
    old = _config([_member(0), _member(1)], [[0, 1]])
    rundir.RunWriter.open(run, old)
    grown = _config([_member(0), _member(1), _member(2)], [[0, 1], [2]])
    with pytest.raises(rundir.RunDirError, match=r"grows \(1 new members\).*add --grow"):
        rundir.RunWriter.open(run, grown)
    assert rundir.read_config(run)["members"] == old["members"]
    # Its new members must not join an old group (that group would train again).
    merged = _config([_member(0), _member(1), _member(2)], [[0, 1, 2]])
    with pytest.raises(rundir.RunDirError, match="differs from this one"):
        rundir.RunWriter.open(run, merged, grow=True)
    _, resuming = rundir.RunWriter.open(run, grown, grow=True)
    assert resuming and rundir.read_config(run)["members"] == grown["members"]
