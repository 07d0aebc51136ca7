"""Multi-process grids (jaxmnist.distributed): 2 processes x 2 simulated CPU devices on 127.0.0.1.

Every run is a subprocess (tests/distributed_worker.py): XLA_FLAGS must be set before jax starts,
and a process must really die for the failure test. Every wait is bounded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxmnist import distributed

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
    """The reference: the same grid in one process on one device (the default strategy)."""
    out = tmp_path_factory.mktemp("single") / "single.npz"
    _single(out, 1)
    return out


def test_two_processes_match_one_process_and_pad(single_process, tmp_path):
    out = tmp_path / "pair.npz"
    (rc0, log0, _), (rc1, log1, _) = _pair(out)
    assert rc0 == 0 and rc1 == 0, log0[-3000:] + log1[-3000:]
    # 6 members on 2 x 2 devices: padded to 8, results for the 6 only; one grid over 4 devices.
    assert "devices 4, padded 8, strategy sequential" in log0
    # Each device runs its members' own unbatched program, as one device does: equal to 1e-5
    # (measured: bit-identical on jax 0.10.2, XLA:CPU).
    _assert_same(single_process, out, atol=1e-5)


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
    assert "epoch 1 done" not in log0 and "epoch 2 done" in log0 and "resumed True" in log0
    _assert_same(single_process, out, atol=1e-6)


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
