"""Every failure path of the CLIs: one message (what, where, how to fix), an exit code, no
traceback, nothing written for bad input and nothing finished lost for a failed write.

The CLIs run in-process through ``main(argv)`` (fast, and capsys sees their stderr)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import datasource
import pytest

from jaxmnist import report as report_cli
from jaxmnist import sweep
from jaxmnist.runs import rundir
from jaxmnist.serve import app as serve

ROOT = Path(__file__).resolve().parent.parent
OLD_RUN = Path(__file__).resolve().parent / "data" / "run_7bdb1e0"
# The smallest smoke run: 2 members (adam, sgd), one group, 256 training images, 1 epoch.
TINY = ["--seeds", "1", "--config.data.train_limit=256", "--config.data.test_limit=50",
        "--config.data.val_size=50", "--config.base.train.epochs=1",
        "--config.grid.model.hidden=[[8]]", "--config.grid.optim.learning_rate=[0.1]",
        "--no-report"]


def _sweep(capsys, *argv) -> tuple[int, str]:
    code = sweep.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


# --------------------------------------------------------------------------------------------
# Study files
# --------------------------------------------------------------------------------------------

BAD_STUDIES = [
    ("broken.py", "def get_config(:\n", "broken.py, line 1: syntax error"),
    ("raises.py", "def get_config():\n    x = 1\n    return {}['data']\n",
     "raises.py, line 3: get_config() raised KeyError"),
    ("none.py", "def get_config():\n    c = {'study': 'x'}\n",
     "get_config() returned NoneType, not an ml_collections.ConfigDict or dict"),
    ("noconf.py", "X = 1\n", "defines no get_config() function"),
    ("import_fails.py", "import no_such_module_xyz\n",
     "import_fails.py, line 1: importing the study failed: ModuleNotFoundError"),
    ("study.yaml", "study: s2\n", "is not a Python study file (.py)"),
]


@pytest.mark.parametrize("name, text, message", BAD_STUDIES)
def test_bad_study_files_exit_2_with_one_message(tmp_path, capsys, name, text, message):
    study = tmp_path / name
    study.write_text(text)
    run = tmp_path / "run"
    code, err = _sweep(capsys, study, "--workdir", run)
    assert code == 2 and message in err and "Nothing was written." in err, err
    assert not run.exists()


def test_bad_pruning_setting_exits_2_and_writes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    code, err = _sweep(capsys, ROOT / "sweeps" / "smoke.py", "--workdir", run,
                       "--config.prune={'eta': 3, 'rungs': [1, 5]}")
    assert code == 2 and "prune.rungs: 5 is past the last epoch (2)" in err
    assert err.count("prune") == 1 and not run.exists()


def test_a_folder_as_study_file(tmp_path, capsys):
    code, err = _sweep(capsys, tmp_path, "--workdir", tmp_path / "run")
    assert code == 2 and "is a folder; give a study file" in err


# --------------------------------------------------------------------------------------------
# Work folders
# --------------------------------------------------------------------------------------------


def test_workdir_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    code, err = _sweep(capsys, ROOT / "sweeps" / "smoke.py", "--workdir", target)
    assert code == 2 and f"--workdir {target} is a file, not a folder" in err
    assert target.read_text() == "mine" and sorted(tmp_path.iterdir()) == [target]


def test_workdir_under_a_file(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    code, err = _sweep(capsys, ROOT / "sweeps" / "smoke.py", "--workdir", target / "run")
    assert code == 2 and "is a file, so no folder can be made there" in err


def _as_if_not_root(monkeypatch, *, unwritable: Path | None = None,
                    unreadable: Path | None = None) -> None:
    """Root may read and write anywhere, so a permission test running as root (a container)
    is told by the OS calls themselves what a user would be told: no write permission in
    ``unwritable``, EACCES on reading ``unreadable``. Nothing changes for other users."""
    if os.geteuid() != 0:
        return
    if unwritable is not None:
        real_access = os.access

        def access(path, mode, *args, **kwargs):
            if Path(path) == unwritable and mode & os.W_OK:
                return False
            return real_access(path, mode, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
    if unreadable is not None:
        real_read = Path.read_bytes

        def read_bytes(self):
            if self == unreadable:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return real_read(self)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)


def test_workdir_without_write_permission(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    _as_if_not_root(monkeypatch, unwritable=locked)
    code, err = _sweep(capsys, ROOT / "sweeps" / "smoke.py", "--workdir", locked / "run")
    assert code == 2 and "no permission to write" in err
    assert not (locked / "run").exists()


# --------------------------------------------------------------------------------------------
# Damaged data files: exit 2, the file named, nothing written (the run dir comes after the data)
# --------------------------------------------------------------------------------------------

DAMAGE = {
    "truncated": lambda p, src: p.write_bytes((lambda b: b[:len(b) // 2])(src.read_bytes())),
    "corrupt": lambda p, src: p.write_bytes(  # the middle third of the bytes flipped
        (lambda b, i, j: b[:i] + bytes(x ^ 0xFF for x in b[i:j]) + b[j:])(
            src.read_bytes(), len(src.read_bytes()) // 3, 2 * len(src.read_bytes()) // 3)),
    "empty": lambda p, src: p.write_bytes(b""),
    "folder": lambda p, src: p.mkdir(),
    "unreadable": lambda p, src: (shutil.copy(src, p), p.chmod(0)),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_data_file_is_exit_2_and_nothing_written(tmp_path, capsys, kind, idx_dir,
                                                         monkeypatch):
    """On MNIST's files, or (without MNIST) synthetic IDX files standing in for them."""
    data_dir = tmp_path / "mnist"
    data_dir.mkdir()
    victim = "train-labels-idx1-ubyte.gz"
    for src in Path(idx_dir).glob("*-ubyte.gz"):
        if src.name == victim:
            DAMAGE[kind](data_dir / victim, src)
        else:
            (data_dir / src.name).symlink_to(src)
    if kind == "unreadable":
        _as_if_not_root(monkeypatch, unreadable=data_dir / victim)
    run = tmp_path / "run"
    code, err = _sweep(capsys, ROOT / "sweeps" / "smoke.py", "--workdir", run,
                       "--data-dir", data_dir, *TINY)
    assert code == 2, err
    assert victim in err and "Nothing was written." in err, err
    assert not run.exists()


# --------------------------------------------------------------------------------------------
# A failed write while training: exit 1, nothing finished lost, the same command resumes
# --------------------------------------------------------------------------------------------


def test_disk_full_while_writing_results_loses_nothing_and_resumes(tmp_path, capsys,
                                                                    monkeypatch):
    run = tmp_path / "run"
    real_replace = os.replace

    def full_disk(src, dst):
        if Path(dst).name == rundir.RESULTS:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    code, err = _sweep(capsys, ROOT / "sweeps" / "smoke.py", "--workdir", run, *TINY,
                       *datasource.SWEEP_ARGS)
    assert code == 1, err
    assert f"cannot write {run / rundir.RESULTS}: the disk is full" in err
    assert "run the same command again to resume" in err
    # What finished is on disk: both members' params, the group's checkpoint, the metrics.
    assert rundir.exported_members(run) == [0, 1]
    assert list((run / "ckpt" / "group_0").iterdir())
    assert len(rundir.read_metrics(run)) == 2
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
    monkeypatch.setattr(os, "replace", real_replace)
    code, err = _sweep(capsys, ROOT / "sweeps" / "smoke.py", "--workdir", run, *TINY,
                       *datasource.SWEEP_ARGS)
    assert code == 0 and "(resuming)" in err, err
    results = rundir.read_results(run)
    assert results["complete"] and results["groups"][0]["resumed"] is True


# --------------------------------------------------------------------------------------------
# report and serve
# --------------------------------------------------------------------------------------------


def test_report_on_damaged_results(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    (run / rundir.RESULTS).write_text('{"members": [')
    assert report_cli.main([str(run)]) == 1
    err = capsys.readouterr().err
    assert "results.json (results) is damaged" in err and "Traceback" not in err


def test_report_with_a_torn_metrics_line(tmp_path, capsys, caplog):
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    with (run / rundir.METRICS).open("a") as fh:
        fh.write('{"member": 0, "ep')
    assert report_cli.main([str(run)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert "metrics.jsonl line 5 is damaged" in caplog.text


def test_report_that_cannot_write_its_tables(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    (run / "tables").write_text("a file where the tables folder belongs")
    assert report_cli.main([str(run)]) == 1
    err = capsys.readouterr().err
    assert "jaxmnist.report: cannot write" in err and "Traceback" not in err
    assert json.loads((run / rundir.RESULTS).read_text())["complete"]


@pytest.mark.parametrize("what", ["missing", "file", "empty dir"])
def test_serve_on_something_that_is_not_a_run(tmp_path, capsys, what):
    target = tmp_path / "x"
    if what == "file":
        target.write_text("hello")
    elif what == "empty dir":
        target.mkdir()
    assert serve.main([str(target)]) == 2
    err = capsys.readouterr().err
    assert "jaxmnist.serve:" in err and str(target) in err and "Traceback" not in err
