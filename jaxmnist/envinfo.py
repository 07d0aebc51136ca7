"""What ran where: versions, git commit, machine, devices. Only :func:`environment` imports jax."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUN_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def versions(dists: Sequence[str] = RUN_PACKAGES) -> dict[str, str | None]:
    """``{dist: version or None}`` from package metadata (nothing is imported)."""
    found: dict[str, str | None] = {}
    for dist in dists:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    return found


def git_commit(*, short: bool = False) -> str | None:
    """HEAD of this checkout, ``+dirty`` when jaxmnist/ has uncommitted changes; None if unknown."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", *(["--short"] if short else []),
                              "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "jaxmnist"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")) or None


def _proc_field(path: str, key: str) -> str | None:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), None)


def machine() -> dict[str, Any]:
    """CPU model and cores, memory, OS, Python, host — read without importing any framework."""
    mem = _proc_field("/proc/meminfo", "MemTotal")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor()
            or platform.machine(),
            "cores": os.cpu_count(), "usable_cores": usable,
            "memory_gb": int(mem.split()[0]) / 2**20 if mem else None,
            "os": platform.platform(), "python": platform.python_version(),
            "hostname": platform.node(), "xla_flags": os.environ.get("XLA_FLAGS")}


def environment() -> dict[str, Any]:
    """Versions, devices, git commit, date, host and CPU count: a run directory's ``env.json``."""
    import jax

    devices = jax.devices()
    return {
        "processes": jax.process_count(),
        "python": platform.python_version(),
        **{d: v or "not installed" for d, v in versions().items()},
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind if devices else "none",
        "git_commit": git_commit() or "unknown",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "argv": sys.argv,
    }
