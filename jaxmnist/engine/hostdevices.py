"""The CPU layout by default: one single-threaded XLA host device per core on a CPU-only machine.

Faster for a grid, bit for bit (docs/performance.md, issue 21). XLA reads its flags when a
backend starts, so :func:`configure` runs first in the sweep and the API. Never imports jax.
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENV_DEVICES = "JAXMNIST_CPU_DEVICES"
COUNT_FLAG = "--xla_force_host_platform_device_count"
THREAD_FLAG = "--xla_cpu_multi_thread_eigen"
# Installed JAX plugins or libraries that mean "there may be an accelerator": leave XLA alone.
ACCELERATOR_MODULES = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
                       "jax_rocm7_plugin", "libtpu", "jax_tpu")
_said: set[str] = set()


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` chose: ``devices`` (0 = leave XLA_FLAGS alone) and why."""

    devices: int
    reason: str
    xla_flags: str | None = None  # the new XLA_FLAGS value when devices > 0


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def accelerator_installed() -> bool:
    """True when a JAX accelerator plugin or library is importable (checked without importing)."""
    def spec(name: str) -> Any:
        try:
            return importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None

    if any(spec(name) is not None for name in ACCELERATOR_MODULES):
        return True
    plugins = spec("jax_plugins")  # a namespace package holding any JAX PJRT plugin
    return bool(plugins is not None and plugins.submodule_search_locations
                and any(True for _ in pkgutil.iter_modules(plugins.submodule_search_locations)))


def backend_started() -> bool:
    """True when JAX is imported and has already initialised a backend in this process."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(getattr(bridge, "_backends", None)) if bridge is not None else False


def decide(environ: Mapping[str, str], *, cores: int, accelerator: bool,
           started: bool) -> Decision:
    """The pure decision behind :func:`configure` (ValueError: a bad ``JAXMNIST_CPU_DEVICES``)."""
    wanted = environ.get(ENV_DEVICES, "auto").strip().lower() or "auto"
    if wanted != "auto":
        if not wanted.isdigit() or int(wanted) < 1:
            raise ValueError(f"{ENV_DEVICES}={environ[ENV_DEVICES]!r}: expected 'auto', 1 (one "
                             "multi-threaded device, JAX's default) or a number of devices")
        if int(wanted) == 1:
            return Decision(0, f"{ENV_DEVICES}=1: one multi-threaded CPU device")
    count = cores if wanted == "auto" else int(wanted)
    flags = environ.get("XLA_FLAGS", "")
    if COUNT_FLAG in flags or THREAD_FLAG in flags:
        return Decision(0, "XLA_FLAGS already sets the host devices")
    platforms = [p.strip().lower() for p in environ.get("JAX_PLATFORMS", "").split(",")
                 if p.strip()]
    if platforms and platforms != ["cpu"]:
        return Decision(0, f"JAX_PLATFORMS={environ['JAX_PLATFORMS']!r} is not CPU-only")
    if not platforms and accelerator:
        return Decision(0, "an accelerator plugin is installed")
    if count < 2:
        return Decision(0, f"{count} usable core: one device")
    if started:
        return Decision(0, "JAX already started its backend in this process: its devices stay "
                        f"as they are (for {count} single-threaded host devices on this "
                        "CPU-only machine, run jaxmnist before other JAX code, or set "
                        f"XLA_FLAGS='{COUNT_FLAG}={count} {THREAD_FLAG}=false' before JAX "
                        "starts)")
    new = f"{COUNT_FLAG}={count} {THREAD_FLAG}=false"
    return Decision(count, f"{count} single-threaded CPU host devices",
                    " ".join(f for f in (flags.strip(), new) if f))


def configure(environ: os._Environ | dict[str, str] | None = None, *,
              say: bool = True) -> Decision:
    """Sets ``XLA_FLAGS`` where it helps (idempotent); ``say``: why not, once, if JAX started."""
    environ = os.environ if environ is None else environ
    decision = decide(environ, cores=usable_cores(), accelerator=accelerator_installed(),
                      started=backend_started())
    if decision.xla_flags is not None:
        environ["XLA_FLAGS"] = decision.xla_flags
    elif say and decision.reason.startswith("JAX already") and decision.reason not in _said:
        _said.add(decision.reason)
        print(f"jaxmnist: {decision.reason}", file=sys.stderr, flush=True)
    return decision
