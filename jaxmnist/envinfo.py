"""What ran where: versions, git commit, devices. Only :func:`environment` imports jax."""

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
