"""Multi-process grids (engine.distributed): 2 processes x 2 simulated CPU devices on 127.0.0.1.

Every run is a subprocess (tests/distributed_worker.py): XLA_FLAGS must be set before jax starts,
and a process must really die for the failure test. Every wait is bounded. The multi-process runs
are end-to-end tier (``pytest -m e2e``); the settings checks are the default tier.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxmnist.engine import distributed

WORKER = Path(__file__).resolve().parent / "distributed_worker.py"
EPOCHS = 3
MEMBERS = 6  # on 4 devices: padded to 8
HEARTBEAT_S = 10  # a dead peer is noticed within this (and at once by a collective)
RUN_LIMIT_S = 400  # one launch on a busy 2-core machine, compile included


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXMNIST_") or k in (
        "JAXMNIST_DATA_DIR",)}
    env["JAX_PLATFORMS"] = "cpu"  # simulated CPU devices, also on a machine with a GPU
    env.update(extra)
    return env


def _single(out: Path, devices: int, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(out), "--devices", str(devices), "--epochs",
         str(EPOCHS), "--members", str(MEMBERS), *args],
        env=_env(), capture_output=True, text=True, timeout=RUN_LIMIT_S, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _pair(out: Path, *args: str) -> list[tuple[int, str, float]]:
    """Runs 2 processes x 2 devices; returns (exit status, output, seconds) per process."""
    port = _free_port()
    procs, started = [], time.monotonic()
    for pid in range(2):
        env = _env(JAXMNIST_COORDINATOR=f"127.0.0.1:{port}", JAXMNIST_NUM_PROCESSES="2",
                   JAXMNIST_PROCESS_ID=str(pid), JAXMNIST_HEARTBEAT_TIMEOUT=str(HEARTBEAT_S),
                   JAXMNIST_INIT_TIMEOUT="120", JAXMNIST_SHUTDOWN_TIMEOUT="60")
        procs.append(subprocess.Popen(
            [sys.executable, str(WORKER), str(out), "--devices", "2", "--epochs", str(EPOCHS),
             "--members", str(MEMBERS), *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    outcome = []
    for proc in procs:
        try:
            text, _ = proc.communicate(timeout=max(1.0, RUN_LIMIT_S - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"a process of the pair did not finish within {RUN_LIMIT_S} s (hang)")
        outcome.append((proc.returncode, text, time.monotonic() - started))
    return outcome


def _assert_same(a_path: Path, b_path: Path, atol: float) -> float:
    a, b = np.load(a_path), np.load(b_path)
    assert a.files == b.files
    worst = 0.0
    for name in a.files:
        np.testing.assert_allclose(a[name], b[name], atol=atol, rtol=0, err_msg=name)
        worst = max(worst, float(np.max(np.abs(a[name].astype(np.float64) - b[name]))))
    return worst


@pytest.fixture(scope="module")
def single_process(tmp_path_factory) -> Path:
    """The reference: the same grid in one process on one device (the default strategy).

    The sweep test below checks the uninterrupted two-process run against one process.
    """
    out = tmp_path_factory.mktemp("single") / "single.npz"
    _single(out, 1)
    return out


@pytest.mark.e2e
def test_killed_process_stops_the_other_and_relaunch_resumes(single_process, tmp_path):
    out, workdir = tmp_path / "resumed.npz", tmp_path / "ckpt"
    (rc0, log0, _), (rc1, _, _) = _pair(out, "--workdir", str(workdir),
                                        "--kill-after-epoch", "1")
    assert rc1 == -9  # process 1 was killed after its epoch-1 checkpoint
    # The survivor stops on its own with one clear message and a distinct status (no hang).
    assert rc0 == distributed.EXIT_PEER_LOST, log0[-3000:]
    assert "process 0 of 2 stopped" in log0 and "Relaunch all processes" in log0
    assert not out.exists()
    (rc0, log0, _), (rc1, log1, _) = _pair(out, "--workdir", str(workdir))
    assert rc0 == 0 and rc1 == 0, log0[-3000:] + log1[-3000:]
    assert "epoch 1 done" not in log0 and "epoch 2 done" in log0
    # 6 members on 2 x 2 devices: one grid over 4 devices, padded to 8; results for the 6 only.
    assert "devices 4, padded 8, strategy sequential, resumed True" in log0
    _assert_same(single_process, out, atol=1e-6)


@pytest.mark.e2e
def test_two_processes_prune_the_same_members_across_a_kill_at_the_rung(tmp_path):
    """Rungs at epochs 1 and 2 (6 points, then 3, ranked within the group): process 1 killed
    after the first rung's checkpoint; the relaunch ends as one process does, decisions too."""
    prune = ("--prune", json.dumps({"eta": 2, "rungs": [1, 2], "within": "group"}))
    one, out, workdir = tmp_path / "one.npz", tmp_path / "two.npz", tmp_path / "ckpt"
    _single(one, 1, *prune)
    (_, _, _), (rc1, _, _) = _pair(out, "--workdir", str(workdir), "--kill-after-epoch", "1",
                                   *prune)
    assert rc1 == -9 and not out.exists()
    (rc0, log0, _), (rc1, log1, _) = _pair(out, "--workdir", str(workdir), *prune)
    assert rc0 == 0 and rc1 == 0, log0[-3000:] + log1[-3000:]
    trained = sorted(float(np.load(one)[f"m{k}/epochs_trained"]) for k in range(MEMBERS))
    assert trained == [1.0] * 3 + [2.0] + [3.0] * 2
    _assert_same(one, out, atol=1e-6)


@pytest.mark.e2e
def test_two_processes_bind_each_members_named_axis_as_one_process_does(tmp_path):
    """A model whose BatchNorm averages over the named axis 'batch' (as written for shard_map):
    2 processes x 2 devices train it as one process on one device does; each member's axis is
    its own (a size-1 named vmap), never the grid's mesh axis."""
    import user_models

    path = user_models.write(tmp_path, "nnx_axis.py", user_models.NNX_NAMED_AXIS)
    model = ("--model", json.dumps({"name": f"{path}:AxisBN"}))
    one, out = tmp_path / "one.npz", tmp_path / "two.npz"
    _single(one, 1, *model)
    (rc0, log0, _), (rc1, log1, _) = _pair(out, *model)
    assert rc0 == 0 and rc1 == 0, log0[-3000:] + log1[-3000:]
    _assert_same(one, out, atol=1e-5)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JAXMNIST_COORDINATOR": "10.0.0.1:1234"}, "JAXMNIST_NUM_PROCESSES, JAXMNIST_PROCESS_ID"),
        ({"JAXMNIST_COORDINATOR": "10.0.0.1", "JAXMNIST_NUM_PROCESSES": "2",
          "JAXMNIST_PROCESS_ID": "0"}, "HOST:PORT"),
        ({"JAXMNIST_COORDINATOR": "10.0.0.1:1234", "JAXMNIST_NUM_PROCESSES": "2",
          "JAXMNIST_PROCESS_ID": "2"}, "must be below"),
        ({"JAXMNIST_NUM_PROCESSES": "two"}, "JAXMNIST_NUM_PROCESSES='two'"),
        ({"JAXMNIST_HEARTBEAT_TIMEOUT": "0"}, "positive"),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(distributed.DistributedError, match=message):
        distributed.settings_from_env(env)


def test_settings():
    auto = distributed.settings_from_env({})
    assert (auto.coordinator, auto.num_processes, auto.process_id) == (None, None, None)
    assert auto.heartbeat_timeout == distributed.DEFAULT_HEARTBEAT_TIMEOUT
    local = distributed.settings_from_env({"JAXMNIST_COORDINATOR": "127.0.0.1:5000",
                                           "JAXMNIST_NUM_PROCESSES": "2",
                                           "JAXMNIST_PROCESS_ID": "1",
                                           "JAXMNIST_INIT_TIMEOUT": "30"})
    assert (local.num_processes, local.process_id, local.init_timeout) == (2, 1, 30)
    assert local.bind_address == "127.0.0.1:5000"  # one machine: listen on loopback only
    remote = distributed.settings_from_env({"JAXMNIST_COORDINATOR": "10.0.0.1:5000",
                                            "JAXMNIST_NUM_PROCESSES": "4",
                                            "JAXMNIST_PROCESS_ID": "0"})
    assert remote.bind_address is None  # a cluster: JAX's default, every interface


SWEEP_ARGS = (
    "sweeps/smoke.py", "--no-report", "--seeds", "1",
    # 2 groups (hidden 32 / 16) of 6 members (sgd, adam x 3 rates): each padded to 8 on 4 devices
    "--config.grid.optim.learning_rate=[0.1,0.03,0.01]",
    "--config.data.train_limit=256", "--config.data.val_size=64", "--config.data.test_limit=128",
    "--config.base.train.epochs=1",
)


@pytest.mark.e2e
def test_sweep_distributed_writes_once_and_matches_one_process(tmp_path):
    root = Path(__file__).resolve().parent.parent
    args = [*SWEEP_ARGS, "--config.data.source=synthetic"]  # needs no MNIST files
    single = subprocess.run(
        [sys.executable, "-m", "jaxmnist.sweep", *args, "--workdir", str(tmp_path / "one")],
        cwd=root, env=_env(), capture_output=True, text=True, timeout=RUN_LIMIT_S, check=False)
    assert single.returncode == 0, single.stderr[-3000:]

    port, procs = _free_port(), []
    for pid in range(2):
        env = _env(JAXMNIST_COORDINATOR=f"127.0.0.1:{port}", JAXMNIST_NUM_PROCESSES="2",
                   JAXMNIST_PROCESS_ID=str(pid), JAXMNIST_HEARTBEAT_TIMEOUT=str(HEARTBEAT_S),
                   JAXMNIST_INIT_TIMEOUT="120", JAXMNIST_SHUTDOWN_TIMEOUT="60",
                   XLA_FLAGS="--xla_force_host_platform_device_count=2")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "jaxmnist.sweep", *args, "--distributed",
             "--workdir", str(tmp_path / "two")],
            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    try:
        for proc in procs:
            outs.append(proc.communicate(timeout=RUN_LIMIT_S))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        pytest.fail(f"the distributed sweep did not finish within {RUN_LIMIT_S} s")
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    # Process 0 prints the run directory; process 1 does not (gloo's C++ log lines aside).
    assert outs[0][0].strip().splitlines()[-1] == str(tmp_path / "two")
    assert str(tmp_path / "two") not in outs[1][0]
    assert "process 1 of 2" in outs[1][1] and "process 0 writes the results" in outs[1][1]

    import json

    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["complete"] and len(two["members"]) == len(one["members"]) == 12
    for g in two["groups"]:
        assert (g["devices"], g["processes"], g["padded_members"]) == (4, 2, 8)
    for a, b in zip(one["members"], two["members"], strict=True):
        assert a["config"] == b["config"]
        assert a["test_pred"] == b["test_pred"] and a["status"] == b["status"]
        np.testing.assert_allclose(a["test"]["acc"], b["test"]["acc"], atol=1e-6)
        for ha, hb in zip(a["history"], b["history"], strict=True):
            for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
                np.testing.assert_allclose(ha[key], hb[key], atol=1e-5, err_msg=key)
    # One metrics line per member and epoch: written by process 0 alone.
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 12
    # Same files as the one-process run, apart from each process's own checkpoint shards and
    # TensorBoard's event files (named after host, time and pid): compared as folders.
    def files(root):
        return {(p.parent if p.name.startswith("events.out") else p).relative_to(root).as_posix()
                for p in root.rglob("*") if "ckpt" not in p.parts}

    assert files(tmp_path / "two") == files(tmp_path / "one")
    events = list((tmp_path / "two").rglob("events.out*"))
    assert events and len(events) == len(list((tmp_path / "one").rglob("events.out*")))
    env = json.loads((tmp_path / "two" / "env.json").read_text())
    assert env["processes"] == 2 and len(env["devices"]) == 4
    for k in range(12):
        ma = np.load(tmp_path / "one" / "params" / f"member_{k}.npz")
        mb = np.load(tmp_path / "two" / "params" / f"member_{k}.npz")
        for name in ma.files:
            np.testing.assert_allclose(ma[name], mb[name], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--distributed"], {}, "--distributed needs --workdir"),
        (["--distributed", "--workdir", "RUN"], {"JAXMNIST_COORDINATOR": "127.0.0.1:1"},
         "JAXMNIST_NUM_PROCESSES, JAXMNIST_PROCESS_ID not"),
    ],
)
def test_sweep_bad_distributed_settings_exit_2(argv, env, message, tmp_path, monkeypatch, capsys):
    from jaxmnist import sweep

    for name in ("JAXMNIST_COORDINATOR", "JAXMNIST_NUM_PROCESSES", "JAXMNIST_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    argv = [str(tmp_path / "run") if a == "RUN" else a for a in argv]
    assert sweep.main(["sweeps/smoke.py", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Nothing was written" in err
    assert not (tmp_path / "run").exists()


def test_sweep_distributed_without_a_cluster_exit_2(tmp_path):
    """No JAXMNIST_* settings and no SLURM / Open MPI / TPU to detect: one message, exit 2."""
    env = {k: v for k, v in _env().items() if not k.startswith(("SLURM_", "OMPI_", "PMI_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "jaxmnist.sweep", "sweeps/smoke.py", "--distributed",
         "--workdir", str(tmp_path / "run")],
        cwd=Path(__file__).resolve().parent.parent, env=env, capture_output=True, text=True,
        timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Set JAXMNIST_COORDINATOR" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
