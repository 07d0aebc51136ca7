"""engine.hostdevices: the CPU layout chosen before JAX starts (decision table + subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxmnist.engine import hostdevices as H

ROOT = Path(__file__).resolve().parent.parent
TWO = f"{H.COUNT_FLAG}=2 {H.THREAD_FLAG}=false"


def _decide(env: dict[str, str], cores: int = 2, accelerator: bool = False,
            started: bool = False) -> H.Decision:
    return H.decide(env, cores=cores, accelerator=accelerator, started=started)


def test_cpu_only_gets_one_single_threaded_device_per_core():
    assert _decide({}).xla_flags == TWO
    assert _decide({"JAX_PLATFORMS": "cpu"}, cores=4).xla_flags == TWO.replace("=2", "=4")
    # The user's other XLA flags are kept, ours appended.
    assert _decide({"XLA_FLAGS": "--xla_cpu_prefer_vector_width=512"}).xla_flags == \
        f"--xla_cpu_prefer_vector_width=512 {TWO}"
    assert _decide({H.ENV_DEVICES: "3"}).xla_flags == TWO.replace("=2", "=3")
    assert _decide({H.ENV_DEVICES: "auto"}).devices == 2


@pytest.mark.parametrize(("env", "kwargs", "why"), [
    ({H.ENV_DEVICES: "1"}, {}, "JAXMNIST_CPU_DEVICES=1"),
    ({"XLA_FLAGS": f"{H.COUNT_FLAG}=4"}, {}, "already sets"),
    ({"XLA_FLAGS": f"{H.THREAD_FLAG}=true"}, {}, "already sets"),
    ({"JAX_PLATFORMS": "cuda,cpu"}, {}, "not CPU-only"),
    ({}, {"accelerator": True}, "accelerator plugin"),
    ({}, {"cores": 1}, "1 usable core"),
    ({}, {"started": True}, "already started its backend"),
])
def test_left_alone(env, kwargs, why):
    decision = _decide(env, **kwargs)
    assert decision.devices == 0 and decision.xla_flags is None
    assert why in decision.reason


def test_cpu_platform_wins_over_an_installed_plugin():
    assert _decide({"JAX_PLATFORMS": "cpu"}, accelerator=True).devices == 2


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_setting_names_the_variable(value):
    with pytest.raises(ValueError, match=f"JAXMNIST_CPU_DEVICES='{value}'"):
        _decide({H.ENV_DEVICES: value})


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if k not in ("XLA_FLAGS", H.ENV_DEVICES, "JAX_PLATFORMS")}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=300, check=True)


@pytest.mark.e2e  # four fresh Python processes that start JAX
@pytest.mark.skipif(H.usable_cores() < 2 or H.accelerator_installed(),
                    reason="needs a CPU-only machine with 2+ cores")
def test_configure_before_jax_starts_sets_the_devices():
    n = H.usable_cores()
    probe = "import jax; print(jax.device_count(), jax.devices()[0].platform)"
    out = _python("from jaxmnist.engine import hostdevices; hostdevices.configure(); " + probe)
    assert out.stdout.split() == [str(n), "cpu"]
    # The CLI configures first thing (--list starts no JAX of its own).
    out = _python("from jaxmnist import sweep; sweep.main(['--list']); " + probe)
    assert out.stdout.split()[-2:] == [str(n), "cpu"]
    assert _python("from jaxmnist.engine import hostdevices; hostdevices.configure(); " + probe,
                   JAXMNIST_CPU_DEVICES="1").stdout.split() == ["1", "cpu"]
    # JAX already started: nothing changes, and it is said once.
    out = _python("import jax; jax.devices(); from jaxmnist.engine import hostdevices; "
                  "hostdevices.configure(); hostdevices.configure(); " + probe)
    assert out.stdout.split() == ["1", "cpu"]
    assert out.stderr.count("already started its backend") == 1
