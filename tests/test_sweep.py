"""``python -m jaxmnist.sweep``: the smoke study end to end, resume, the report, bad configs."""

import json
import subprocess
import sys
from pathlib import Path

import datasource
import pytest
import user_models

ROOT = Path(__file__).resolve().parent.parent
# Real MNIST when $JAXMNIST_DATA_DIR is set, else the synthetic digits (tests/datasource.py).
SMOKE = ("jaxmnist.sweep", "sweeps/smoke.py", *datasource.SWEEP_ARGS)


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke study at its own settings through the real CLI (end-to-end tier)."""
    run = tmp_path_factory.mktemp("smoke") / "run"
    out = cli(*SMOKE, "--workdir", str(run))
    assert out.returncode == 0, out.stderr[-3000:]
    return run, out


# The smoke study made small (1 seed, 256 / 128 / 128 images; validation and test of one size
# share one compiled evaluation), in-process: its 8 members in 2 groups of 4 keep every part of
# a run directory, resume and the report at a fraction of the cost (the default tier); the
# full-size CLI run is the end-to-end tier.
SMALL = ("--seeds", "1", "--config.data.train_limit=256", "--config.data.val_size=128",
         "--config.data.test_limit=128")


def _in_process(*argv) -> tuple[int, str]:
    """``python -m jaxmnist.sweep ARGV`` in this process: (exit code, what it wrote to stderr)."""
    import contextlib
    import io

    from jaxmnist import sweep

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = sweep.main([str(a) for a in argv])
    return code, err.getvalue()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("small-smoke") / "run"
    code, err = _in_process(*SMOKE[1:], *SMALL, "--workdir", run)
    assert code == 0, err[-3000:]
    return run, err


def _check_run_directory(run: Path, members: int, data: dict) -> dict:
    """The run-directory contract of a finished 2-epoch, 2-group run; returns its results."""
    for name in ("config.json", "env.json", "metrics.jsonl", "results.json", "samples.npz"):
        assert (run / name).is_file(), name
    results = json.loads((run / "results.json").read_text())
    config = json.loads((run / "config.json").read_text())
    # Labels compare settings with the study's full settings, never the device; synthetic
    # digits instead of MNIST are a reduction, and labelled so.
    reduced = data != {"train": 2000, "val": 500, "test": 1000}
    assert results["complete"]
    assert results["reduced"] == (reduced or datasource.SOURCE == "synthetic")
    assert results["data"] == data
    assert len(results["members"]) == len(config["members"]) == members
    assert len(config["groups"]) == 2 and len(results["groups"]) == 2
    for m in results["members"]:
        assert m["status"] in ("ok", "diverged", "collapsed")
        assert len(m["history"]) == 2 and 0.0 <= m["test"]["acc"] <= 1.0
        assert sum(map(sum, m["confusion_test"])) == data["test"]
        assert (run / "params" / f"member_{m['member']}.npz").is_file()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == members * 2
    env = json.loads((run / "env.json").read_text())
    assert env["jax"] and env["devices"] and env["git_commit"]
    assert (run / "tables" / "summary.md").is_file()
    assert (run / "figures" / "curves.png").is_file()
    assert list((run / "ckpt").glob("group_*"))
    return results


def test_small_study_writes_the_whole_run_directory(small_run):
    run, err = small_run
    assert "run directory:" in err and "group 2/2" in err
    results = _check_run_directory(run, 8, {"train": 256, "val": 128, "test": 128})
    best = max(m["test"]["acc"] for m in results["members"])
    assert best > 0.3, best  # 8 steps of the best member beat chance (0.1) by far


def test_small_study_rerun_resumes_without_retraining_finished_groups(small_run):
    _check_resume(small_run[0], lambda *argv: _in_process(*argv)[1], SMALL, members=8)


def test_small_study_rerun_with_a_different_study_is_refused(small_run):
    run, _ = small_run
    code, err = _in_process(*SMOKE[1:], *SMALL, "--workdir", run, "--seeds", "2")
    assert code == 2 and "already holds a run of study 'smoke'" in err
    assert "grows (8 new members)" in err and "add --grow" in err
    code, err = _in_process(*SMOKE[1:], *SMALL, "--workdir", run,
                            "--config.data.test_limit=100")
    assert code == 2 and "its data split differs" in err


def test_small_study_grow_dry_run_shows_the_new_groups_and_writes_nothing(small_run, capsys):
    run, _ = small_run
    before = (run / "config.json").read_bytes()
    code, err = _in_process(*SMOKE[1:], *SMALL, "--workdir", run, "--seeds", "2", "--grow",
                            "--dry-run")
    out = capsys.readouterr().out
    assert code == 0, err
    # The run's 8 members keep indices 0-7 and their 2 groups; the new seeds follow as 2 groups.
    lines = {line.split(":")[0].strip(): line for line in out.splitlines()}
    assert "16 members in 4 groups" in out and lines["member 7"].endswith("(seed 0)")
    assert lines["member 8"].endswith("(seed 1)")
    assert "group 2: " in out and "group 3: " in out and "(resumes the run there)" in out
    assert (run / "config.json").read_bytes() == before
    code, err = _in_process(*SMOKE[1:], *SMALL, "--workdir", run, "--grow", "--dry-run",
                            "--config.base.train.batch_size=32")
    assert code == 2 and "is not in it" in err and "Nothing was written." in err


def test_small_study_report_regenerates_from_files(small_run, capsys):
    from jaxmnist import report

    run, _ = small_run
    for p in (run / "figures").glob("*.png"):
        p.unlink()
    assert report.main([str(run)]) == 0
    assert {"curves.png", "confusion_test.png", "ffnn.png", "samples.png"} <= {
        p.name for p in (run / "figures").glob("*.png")}


def test_small_study_tensorboard_events_equal_metrics_jsonl(small_run):
    _check_tensorboard(small_run[0])


@pytest.mark.e2e
def test_smoke_study_end_to_end(smoke_run):
    run, out = smoke_run
    assert "run directory:" in out.stderr and "group 2/2" in out.stderr
    results = _check_run_directory(run, 16, {"train": 2000, "val": 500, "test": 1000})
    best = max(m["test"]["acc"] for m in results["members"])
    assert best > 0.75, best  # adam 0.01 on 2k images reaches ~0.83 in 2 epochs


@pytest.mark.e2e
def test_report_regenerates_from_files(smoke_run):
    run, _ = smoke_run
    for p in (run / "figures").glob("*.png"):
        p.unlink()
    out = cli("jaxmnist.report", str(run), timeout=120)
    assert out.returncode == 0, out.stderr
    assert {"curves.png", "confusion_test.png", "ffnn.png", "samples.png"} <= {
        p.name for p in (run / "figures").glob("*.png")}


@pytest.mark.e2e
def test_rerun_resumes_without_retraining_finished_groups(smoke_run):
    _check_resume(smoke_run[0], lambda *argv: cli(*SMOKE[:1], *argv).stderr, (), members=16)


def _check_resume(run: Path, sweep_stderr, extra: tuple[str, ...], members: int) -> None:
    """Rerunning after an interruption between groups trains only the unfinished group."""
    results_path = run / "results.json"
    before = json.loads(results_path.read_text())
    # Simulate an interruption after the first group: the second group's results are gone
    # (its checkpoints remain, so the engine restores them instead of training again).
    partial = dict(before, complete=False,
                   members=[m for m in before["members"] if m["group"] == 0],
                   groups=[g for g in before["groups"] if g["group"] == 0])
    results_path.write_text(json.dumps(partial))
    args = (*SMOKE[1:], *extra, "--workdir", str(run), "--no-report")
    err = sweep_stderr(*args)
    assert "(resuming)" in err, err[-3000:]
    assert "group 1/2: finished earlier, read from results.json" in err
    assert "group 2/2: finished earlier" not in err
    after = json.loads(results_path.read_text())
    assert after["complete"] and len(after["members"]) == members
    group1 = [g for g in after["groups"] if g["group"] == 1][0]
    assert group1["resumed"] is True
    for a, b in zip(before["members"], after["members"], strict=True):
        assert a["test"] == b["test"] and a["history"] == b["history"]
    # A third run has nothing left to do.
    assert sweep_stderr(*args).count("finished earlier") == 2


@pytest.mark.e2e
def test_rerun_with_a_different_study_is_refused(smoke_run):
    run, _ = smoke_run
    out = cli(*SMOKE, "--workdir", str(run), "--seeds", "1")
    assert out.returncode == 2
    assert "already holds a run of study 'smoke'" in out.stderr
    out = cli(*SMOKE, "--workdir", str(run), "--config.data.test_limit=500")
    assert out.returncode == 2 and "its data split differs" in out.stderr


BAD = [
    (["--config.base.optim.name=adamz"], "valid choices: sgd, momentum, nesterov, adam, adamw"),
    (["--config.base.optim.learnig_rate=0.1"], "did you mean 'learning_rate'?"),
    (["--config.base.model.activation=relu6"], "'relu6' is not valid; valid choices are"),
    (["--config.base.model.init=kaiming"], "'kaiming' is not valid; valid choices are"),
    (["--config.base.optim.learning_rate=-0.1"], "must be a positive number, got -0.1"),
    (["--config.base.train.batch_size=0"], "train.batch_size: must be a positive integer"),
    (["--config.data.val_size=60000"], "needs an integer in [1, 59999]"),
    (["--config.grid.model.hidden=[[0]]"], "expected a list of positive ints"),  # models check
    (["--config.grid.optim.name=['sgd','lionn']"], "'lionn' is not a valid optimizer"),
    (["--seeds", "0"], "seeds: must be a positive integer, got 0"),
    (["--preset", "cpu"], "unknown preset 'cpu'; this study's presets: none"),
    (["--quick", "--preset", "cpu"], "--quick is --preset quick"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_config_exits_2_with_a_clear_message_and_writes_nothing(tmp_path, args, message):
    run = tmp_path / "run"
    code, err = _in_process("sweeps/smoke.py", "--workdir", run, *args)
    assert code == 2, err
    assert message in err, err
    assert "Nothing was written." in err and "Traceback" not in err
    assert not run.exists()


def test_missing_study_file_lists_the_studies(tmp_path):
    code, err = _in_process("sweeps/s9.py", "--workdir", tmp_path / "run")
    assert code == 2 and "does not exist" in err and "sweeps/s2.py" in err


def cli_elsewhere(cwd: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """The CLI of this checkout run from another folder (no sweeps/ beside it)."""
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.mark.e2e
def test_list_shows_every_shipped_study_by_name_with_its_title(tmp_path):
    from jaxmnist import config as C

    out = cli_elsewhere(tmp_path, "jaxmnist.sweep", "--list", timeout=60)
    assert out.returncode == 0, out.stderr
    for _, name, title in C.list_studies(ROOT / "sweeps"):
        assert f"  {name:11s} {title}\n" in out.stdout
    assert "cannot load" not in out.stdout
    out = cli("jaxmnist.sweep", "--list", "sweeps/s2.py", timeout=60)  # a folder of files
    assert out.returncode == 0 and "sweeps/s2.py" in out.stdout and "sweeps/smoke.py" in out.stdout


@pytest.mark.e2e
def test_a_study_runs_by_name_from_any_folder_and_by_path(tmp_path):
    out = cli_elsewhere(tmp_path, "jaxmnist.sweep", "s2", "--preset", "cpu", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "study s2: S2: SqueezeNet" in out.stdout and "12 members in 1 groups" in out.stdout
    own = tmp_path / "mine.py"
    own.write_text((ROOT / "sweeps" / "smoke.py").read_text().replace('"smoke"', '"mine"'))
    out = cli_elsewhere(tmp_path, "jaxmnist.sweep", "mine.py", "--dry-run")
    assert out.returncode == 0 and "study mine:" in out.stdout, out.stderr
    out = cli_elsewhere(tmp_path, "jaxmnist.sweep", "sweeps/s2.py", "--dry-run")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "python -m jaxmnist.sweep s2" in out.stderr
    out = cli_elsewhere(tmp_path, "jaxmnist.sweep", "s9", "--dry-run")
    assert out.returncode == 2 and "unknown study 's9'" in out.stderr
    assert "Traceback" not in out.stderr


def test_dry_run_prints_groups_and_writes_nothing(tmp_path, capsys):
    from jaxmnist import sweep

    assert sweep.main(["sweeps/s3.py", "--dry-run", "--workdir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "63 members in " in out and "group 0: depth_width: 2x32" in out
    assert not (tmp_path / "r").exists()


def test_dry_run_checks_the_workdir_as_the_run_does(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for workdir, message in ((a_file, f"--workdir {a_file} is a file, not a folder"),
                             (a_file / "run", f"{a_file} is a file, so no folder can be made")):
        code, err = _in_process("sweeps/smoke.py", "--dry-run", "--workdir", workdir)
        out = capsys.readouterr().out
        assert code == 2, out
        assert message in err and "Nothing was written." in err
        assert "Traceback" not in err and "members in" not in out
    assert a_file.read_text() == "x"
    code, _ = _in_process("sweeps/smoke.py", "--dry-run", "--workdir", tmp_path / "new")
    assert code == 0 and f"run directory: {tmp_path / 'new'} (new)" in capsys.readouterr().out
    assert not (tmp_path / "new").exists()


def test_dry_run_into_a_finished_run_says_it_resumes_or_refuses_another_study(small_run,
                                                                              capsys):
    run, _ = small_run
    code, _ = _in_process(*SMOKE[1:], *SMALL, "--dry-run", "--workdir", run)
    assert code == 0 and f"run directory: {run} (resumes the run there)" in capsys.readouterr().out
    code, err = _in_process("s4", "--dry-run", "--workdir", run)
    assert code == 2 and "already holds a run of study 'smoke'" in err


def test_dry_run_with_a_preset_says_what_it_reduces(capsys):
    from jaxmnist import sweep

    assert sweep.main(["sweeps/s2.py", "--preset", "cpu", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "preset: cpu; study presets: cpu, quick" in out
    assert "data: 50000 train / 10000 val / 10000 test" in out
    assert "reduced: " in out and " of 30 epochs" in out
    assert "12 members in 1 groups" in out


def test_results_with_non_finite_numbers_are_written_as_null(tmp_path):
    import json

    from jaxmnist.runs import rundir

    path = tmp_path / "results.json"
    rundir.write_json(path, {"members": [{"loss": float("nan"), "probs": [float("inf"), 0.5]}]})
    assert json.loads(path.read_text()) == {"members": [{"loss": None, "probs": [None, 0.5]}]}


# ---------------------------------------------------------------- your own model, other datasets

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _study(tmp_path, *, model, data_name="mnist", source="auto", optim=None, grid=None):
    """Writes a tiny study file (1 epoch of 32 steps on 512 training images); returns its path."""
    path = tmp_path / "tiny_study.py"
    optim = optim or {"name": "adam", "learning_rate": 0.01}
    grid = grid or {"optim.learning_rate": [0.01, 0.003]}
    path.write_text(f'''
import ml_collections
from jaxmnist.config import nested


def get_config():
    c = ml_collections.ConfigDict()
    c.study = "tiny"
    c.title = "tiny study for tests"
    c.data = dict(name={data_name!r}, split="none", seed=0, train_limit=512, test_limit=300,
                  val_limit=None, source={source!r}, val_fraction=None, val_size=None,
                  test_fraction=None)
    c.base = dict(model={model!r}, optim={optim!r}, reg=dict(l1=0.0, l2=1e-4), loss="xent",
                  train=dict(epochs=1, batch_size=16))
    c.grid = nested({grid!r})
    c.experiments = []
    c.seeds = 1
    c.presets = {{}}
    c.baseline = ""
    return c
''')
    return path


def _sweep(*argv) -> int:
    from jaxmnist import sweep

    return sweep.main([str(a) for a in argv])


@pytest.mark.e2e
def test_a_flax_model_file_outside_the_repo_trains_through_the_cli(tmp_path):
    (tmp_path / "my_nets.py").write_text(user_models.LINEN_TINY_MLP)
    study = _study(tmp_path, model={"name": f"{tmp_path / 'my_nets.py'}:make", "width": 8},
                   source=datasource.SOURCE)
    run = tmp_path / "run"
    assert _sweep(study, "--workdir", run) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["complete"] and len(results["members"]) == 2
    member = results["members"][0]
    assert member["param_count"] == 784 * 8 + 8 + 8 * 10 + 10
    assert (run / "figures" / "ffnn.png").is_file()  # the drawing follows the weight rule too
    assert member["test"]["acc"] > 0.25  # 32 Adam steps (measured 0.37) beat chance (0.1)
    # the kernels are the weights: histograms exist for them, not for the biases
    assert set(member["weight_hist"]) == {"Dense_0", "Dense_1"}


@pytest.mark.skipif(not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist; "
                           ".ci/run does it where apt-get works)")
@pytest.mark.e2e
def test_fashion_mnist_grid_from_the_debian_idx_files(tmp_path):
    study = _study(tmp_path, model={"name": "mlp", "hidden": [16]}, data_name="fashion_mnist",
                   source="idx")
    run = tmp_path / "run"
    assert _sweep(study, "--workdir", run) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["complete"] and len(results["members"]) == 2
    assert max(m["test"]["acc"] for m in results["members"]) > 0.5
    per_class = (run / "tables" / "per_class.md").read_text()
    assert "Ankle boot" in per_class and "| class |" in per_class


@pytest.mark.parametrize("change, message", [
    ({"data_name": "cifar10"}, "data.name: 'cifar10' is not a known dataset"),
    ({"optim": {"name": "adamw", "learning_rate": 1e-3, "b3": 0.9}},
     "'b3' is not a hyperparameter of 'adamw' (it takes: learning_rate, schedule, clip_norm, "
     "ema, b1"),
    ({"optim": {"name": "adam", "learning_rate": 1e-3, "schedule": "cosin"}},
     "did you mean 'cosine'?"),
    ({"grid": {"optim.name": ["adam", "lamb", "adamq"]}},
     "'adamq' is not a valid optimizer; valid choices: sgd, momentum, nesterov, adam"),
    ({"model": {"name": "no_such_pkg.nets:make"}}, "cannot import 'no_such_pkg.nets'"),
    ({"model": {"name": "mlpp"}}, "valid choices are ['mlp', 'cnn', 'cnn_depth', 'squeezenet'"),
])
def test_bad_dataset_or_model_is_exit_2_and_nothing_written(tmp_path, capsys, change, message):
    kwargs = {"model": {"name": "mlp", "hidden": [16]}, **change}
    study = _study(tmp_path, **kwargs)
    run = tmp_path / "run"
    assert _sweep(study, "--workdir", run) == 2
    err = capsys.readouterr().err
    assert message in err and "Nothing was written" in err
    assert not run.exists()


# ---------------------------------------------------------------- TensorBoard, your own logger


def events(folder: Path):
    """Every Event proto in ``folder``'s event files (TFRecord framing: length u64, its crc u32,
    the Event proto, its crc u32), parsed with tensorboardX's protos."""
    import struct

    from tensorboardX.proto import event_pb2

    for path in sorted(folder.glob("events.out.tfevents.*")):
        blob = path.read_bytes()
        pos = 0
        while pos + 12 <= len(blob):
            (length,) = struct.unpack("<Q", blob[pos:pos + 8])
            yield event_pb2.Event.FromString(blob[pos + 12:pos + 12 + length])
            pos += 12 + length + 4


def read_events(folder: Path) -> dict[str, dict[int, float]]:
    """Scalars of every event file in ``folder``: ``{tag: {step: value}}``."""
    out: dict[str, dict[int, float]] = {}
    for event in events(folder):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out


def hparams_of(folder: Path) -> dict[str, object]:
    """The hyperparameters recorded in ``folder``'s session start info."""
    from tensorboardX.proto import plugin_hparams_pb2

    for event in events(folder):
        for value in event.summary.value:
            if value.tag == "_hparams_/session_start_info":
                data = plugin_hparams_pb2.HParamsPluginData.FromString(
                    value.metadata.plugin_data.content)
                return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                        for k, v in data.session_start_info.hparams.items()}
    return {}


@pytest.mark.e2e
def test_tensorboard_events_equal_metrics_jsonl(smoke_run):
    _check_tensorboard(smoke_run[0])


def _check_tensorboard(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    results = {m["member"]: m for m in json.loads((run / "results.json").read_text())["members"]}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    folders = sorted(p for p in (run / "tensorboard").iterdir() if p.is_dir())
    assert len(folders) == len(config["members"])
    for member, folder in zip(config["members"], folders, strict=True):
        k = member["member"]
        # Readable names: index and label, e.g. m000_hidden_32_learning_rate_0.1_name_sgd_seed_0
        lr = member["config"]["optim"]["learning_rate"]
        assert folder.name.startswith(f"m{k:03d}_") and f"_{lr}_" in folder.name, folder.name
        scalars = read_events(folder)
        mine = [r for r in rows if r["member"] == k]
        assert len(mine) == 2
        for row in mine:
            for field, tag in (("train_loss", "loss/train"), ("train_acc", "accuracy/train"),
                               ("val_loss", "loss/val"), ("val_acc", "accuracy/val")):
                # float32 events vs the float64 JSON number: equal to float32 precision.
                assert scalars[tag][row["epoch"]] == pytest.approx(row[field], rel=1e-6), tag
            assert scalars["learning_rate"][row["epoch"]] == pytest.approx(lr, rel=1e-6)
        assert scalars["accuracy/test"][2] == pytest.approx(results[k]["test"]["acc"], rel=1e-6)
        hp = hparams_of(folder)
        assert hp["optim.name"] == member["config"]["optim"]["name"]
        assert hp["optim.learning_rate"] == pytest.approx(lr)
        assert hp["model.hidden"] == json.dumps(member["config"]["model"]["hidden"])


CALLBACK_FILE = '''
import json
from pathlib import Path


class Recorder:
    """Records every hook call in <run>/calls.jsonl (what a W&B or MLflow logger would see)."""

    def __init__(self, run_dir, config):
        self.path = Path(run_dir) / "calls.jsonl"
        self.groups = {g["group"]: g["members"] for g in config["groups"]}

    def _write(self, row):
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\\n")

    def on_group_start(self, group_index, info):
        self._write({"hook": "start", "group": group_index, "epochs": info.epochs})

    def on_epoch_end(self, group_index, epoch, member_metrics, info):
        for k, m in zip(self.groups[group_index], member_metrics):
            self._write({"hook": "epoch", "member": k, "epoch": epoch,
                         "train_loss": m["train_loss"]})

    def on_group_end(self, group_index, results):
        self._write({"hook": "end", "group": group_index, "n": len(results)})


def make(run_dir, config):
    return Recorder(run_dir, config)
'''


def test_a_user_callback_sees_every_hook(tmp_path):
    (tmp_path / "my_logger.py").write_text(CALLBACK_FILE)
    study = _study(tmp_path, model={"name": "mlp", "hidden": [16]}, source=datasource.SOURCE)
    run = tmp_path / "run"
    assert _sweep(study, "--workdir", run, "--no-report",
                  "--callback", f"{tmp_path / 'my_logger.py'}:make") == 0
    calls = [json.loads(line) for line in (run / "calls.jsonl").read_text().splitlines()]
    assert [c["hook"] for c in calls] == ["start", "epoch", "epoch", "end"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(c["member"], c["train_loss"]) for c in calls if c["hook"] == "epoch"] == [
        (m["member"], m["train_loss"]) for m in metrics]


@pytest.mark.parametrize("spec, message", [
    ("no_such_module:make", "importing 'no_such_module' failed"),
    ("jaxmnist.runs.loggers:no_such_factory", "has no callable 'no_such_factory'"),
    ("just_a_name", "use 'package.module:factory'"),
])
def test_a_bad_callback_is_exit_2_and_nothing_written(tmp_path, capsys, spec, message):
    study = _study(tmp_path, model={"name": "mlp", "hidden": [16]}, source=datasource.SOURCE)
    run = tmp_path / "run"
    assert _sweep(study, "--workdir", run, "--callback", spec) == 2
    err = capsys.readouterr().err
    assert message in err and "Nothing was written" in err
    assert not run.exists()


def test_without_data_one_message_no_traceback_nothing_written(tmp_path):
    """A fresh machine, offline, no MNIST anywhere: what was tried, how to fix, exit 2."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "JAXMNIST_DATA_DIR"}
    env.update(JAXMNIST_OFFLINE="1", JAXMNIST_CACHE_DIR=str(tmp_path / "cache"),
               JAXMNIST_TFDS_DIR=str(tmp_path / "tfds"))
    run = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "jaxmnist.sweep", "sweeps/smoke.py",
                          "--workdir", str(run)], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    for expected in ("MNIST not found. Tried, in order:", "$JAXMNIST_DATA_DIR: not set",
                     "download cache:", "python -m jaxmnist.data download",
                     "--synthetic", "Nothing was written."):
        assert expected in out.stderr, expected
    assert not run.exists()


def test_help_and_list_show_the_first_run():
    """Through ``python -m`` (the entry point itself), with no config to read."""
    for args in (["--help"], ["--list"]):
        out = cli("jaxmnist.sweep", *args, timeout=60)
        assert out.returncode == 0
        assert "python -m jaxmnist.sweep smoke --workdir runs/smoke" in out.stdout
        assert "--synthetic" in out.stdout and "tensorboard --logdir runs/" in out.stdout


@pytest.mark.e2e
def test_the_byo_example_in_the_docs_runs(tmp_path):
    """docs/byo.md shows examples/byo/*.py verbatim, and that study trains through the CLI."""
    doc = (ROOT / "docs" / "byo.md").read_text()
    for name in ("my_nets.py", "my_study.py"):
        assert (ROOT / "examples" / "byo" / name).read_text() in doc, name
    run = tmp_path / "run"
    assert _sweep(ROOT / "examples" / "byo" / "my_study.py", "--preset", "quick",
                  "--workdir", run, "--no-report", *datasource.SWEEP_ARGS) == 0
    results = json.loads((run / "results.json").read_text())
    names = [m["config"]["optim"]["name"] for m in results["members"]]
    assert names == ["adamw", "lion", "nesterov"] and len(results["groups"]) == 1
    # 16 steps with a decaying rate (measured on MNIST: 0.68, 0.35, 0.52 at lion 3e-4) beat chance
    assert all(m["status"] == "ok" and m["test"]["acc"] > 0.2 for m in results["members"])


# ---------------------------------------------------------------- Flax's own example CNN


@pytest.mark.e2e
@pytest.mark.parametrize("source", ["FLAX_EXAMPLE_CNN", "FLAX_NNX_TUTORIAL_CNN"])
def test_flax_examples_mnist_cnn_copied_unchanged_trains_as_a_grid(tmp_path, source):
    """Flax's examples/mnist CNN (NNX, BatchNorm, Dropout, __call__(x, rngs)) in a user file, and
    the same network as the NNX MNIST tutorial writes it (``rngs: nnx.Rngs | None = None``)."""
    import numpy as np

    path = user_models.write(tmp_path, "flax_cnn.py", getattr(user_models, source))
    study = _study(tmp_path, model={"name": f"{path}:CNN"}, source=datasource.SOURCE,
                   optim={"name": "sgd", "learning_rate": 0.1},
                   grid={"optim.name": ["sgd", "adam", "adamw"],
                         "optim.learning_rate": [0.01]})
    run = tmp_path / "run"
    assert _sweep(study, "--workdir", run) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["complete"] and len(results["members"]) == 3
    assert {m["config"]["optim"]["name"] for m in results["members"]} == {"sgd", "adam", "adamw"}
    for m in results["members"]:
        with np.load(run / "params" / f"member_{m['member']}.npz") as npz:
            names = set(npz.files)
        # the running statistics are exported with the parameters
        assert {"__state__/batch_norm1/mean", "__state__/batch_norm2/var"} <= names
        assert "conv1/kernel" in names
    assert max(m["test"]["acc"] for m in results["members"]) > 0.3  # chance is 0.1


@pytest.mark.parametrize("attr, message", [
    ("NeedsKey", "missing 1 required positional argument: 'key'"),
    ("Raises", "bad_models.py:"),
    ("FiveClasses", "of shape (2, 5); expected logits of shape [batch, 10]"),
    ("broken_factory", "this factory is broken"),
])
def test_a_bad_user_model_is_exit_2_one_message_nothing_written(tmp_path, capsys, attr,
                                                                  message):

    path = user_models.write(tmp_path, "bad_models.py", user_models.BAD_MODELS)
    study = _study(tmp_path, model={"name": f"{path}:{attr}"})
    run = tmp_path / "run"
    assert _sweep(study, "--workdir", run) == 2
    err = capsys.readouterr().err
    assert message in err and "Nothing was written" in err
    assert "Traceback" not in err and f"model '{path}:{attr}'" in err
    if attr != "broken_factory":  # a call failed: the message names the calls accepted
        assert "accepted calling conventions" in err
    assert not run.exists()


@pytest.mark.e2e
def test_the_built_wheel_runs_the_shipped_studies_outside_the_checkout(tmp_path):
    """Builds the wheel, installs it (not editable) into a fresh virtualenv, and runs the CLI
    from a folder outside the checkout: the studies come from the installed jaxmnist.sweeps.

    The virtualenv borrows the dependencies from this test's environment (a .pth line to its
    site-packages, which runs none of the .pth files there, so no editable jaxmnist): the
    install is the wheel alone. JAXMNIST_WHEEL_DEPS=1 installs the dependencies from the
    package index instead, as a user's ``pip install`` does (~1.5 min more).
    """
    import os
    import shutil
    import sysconfig
    import time

    t0 = time.perf_counter()
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("jaxmnist", "sweeps"):  # pyproject's packages (tests/test_config.py checks it)
        shutil.copytree(ROOT / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]

    def run(cmd: list, timeout: int = 300, **kw) -> subprocess.CompletedProcess:
        out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                             timeout=timeout, **kw)
        assert out.returncode == 0, f"{cmd}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        return out

    run([*pip, "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", src])
    (wheel,) = (tmp_path / "dist").glob("jaxmnist-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                .stdout.strip())
    deps = os.environ.get("JAXMNIST_WHEEL_DEPS") == "1"
    if not deps:
        paths = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
        (site / "_jaxmnist_test_deps.pth").write_text("\n".join(paths) + "\n")
    run([*pip, "--python", python, "install", "-q", *([] if deps else ["--no-deps"]), wheel],
        timeout=600)
    built = time.perf_counter() - t0

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = run([python, "-c", "import jaxmnist, jaxmnist.sweeps.s2 as s, importlib.resources "
                 "as r; print(jaxmnist.__file__); print(s.__file__); "
                 "print((r.files('jaxmnist') / 'serve' / 'static' / 'index.html').is_file()); "
                 "from jaxmnist.runs import published; print(bool(published.PUBLISHED))"],
                cwd=elsewhere, env=env).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where[:2]), where
    assert where[2] == "True"  # the web demo's files
    assert where[3] == "True"  # the papers' numbers (sweeps/published.json)
    listing = run([python, "-m", "jaxmnist.sweep", "--list"], cwd=elsewhere, env=env).stdout
    for name in ("optimizers", "s0", "s1", "s2", "s3", "s4", "smoke"):
        assert f"  {name} " in listing, listing
    assert "cannot load" not in listing and str(ROOT) not in listing
    out = run([python, "-m", "jaxmnist.sweep", "smoke", "--synthetic", "--workdir", "X"],
              cwd=elsewhere, env=env, timeout=600)
    results = json.loads((elsewhere / "X" / "results.json").read_text())
    assert results["complete"] and len(results["members"]) == 16, out.stderr[-2000:]
    assert (elsewhere / "X" / "tables" / "summary.md").is_file()
    print(f"\nwheel built and installed in {built:.0f} s, whole test "
          f"{time.perf_counter() - t0:.0f} s")


def test_the_train_confusion_matrix_is_made_for_the_member_the_report_draws(small_run):
    """Predicting the training set with every member cost minutes of S2; only the best point's
    representative (what figures/confusion_train.png shows) gets it."""
    from jaxmnist.runs import runview

    run, _ = small_run
    results = json.loads((run / "results.json").read_text())
    with_matrix = [m for m in results["members"] if m.get("confusion_train")]
    assert [m["member"] for m in with_matrix] == [runview.load(run).featured().rep["member"]]
    assert sum(map(sum, with_matrix[0]["confusion_train"])) == results["data"]["train"]
    assert (run / "figures" / "confusion_train.png").is_file()
