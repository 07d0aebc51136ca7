"""Multi-process runs: JAX's distributed runtime, host <-> global arrays (docs/distributed.md)."""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

ENV_COORDINATOR = "JAXMNIST_COORDINATOR"
ENV_NUM_PROCESSES = "JAXMNIST_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXMNIST_PROCESS_ID"
ENV_INIT_TIMEOUT = "JAXMNIST_INIT_TIMEOUT"
ENV_HEARTBEAT_TIMEOUT = "JAXMNIST_HEARTBEAT_TIMEOUT"
ENV_SHUTDOWN_TIMEOUT = "JAXMNIST_SHUTDOWN_TIMEOUT"

# Seconds. JAX's defaults but the heartbeat (JAX: 100 s): survivors of a crash stop within a minute.
DEFAULT_INIT_TIMEOUT = 300
DEFAULT_HEARTBEAT_TIMEOUT = 60
DEFAULT_SHUTDOWN_TIMEOUT = 300

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class DistributedError(ValueError):
    """The distributed settings are incomplete or malformed (a user-facing message)."""


@dataclass(frozen=True)
class Settings:
    """How this process joins a multi-process run (``None`` fields: auto-detect)."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    init_timeout: int = DEFAULT_INIT_TIMEOUT
    heartbeat_timeout: int = DEFAULT_HEARTBEAT_TIMEOUT
    shutdown_timeout: int = DEFAULT_SHUTDOWN_TIMEOUT

    @property
    def bind_address(self) -> str | None:
        """Where process 0 listens: loopback on one machine, else ``None`` (every interface)."""
        if self.coordinator and self.coordinator.rsplit(":", 1)[0] in _LOOPBACK_HOSTS:
            return self.coordinator
        return None


def _positive_int(environ: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0 or (value == 0 and name != ENV_PROCESS_ID):
        kind = "a non-negative" if name == ENV_PROCESS_ID else "a positive"
        raise DistributedError(f"{name}={raw!r} must be {kind} whole number")
    return value


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Reads and checks the ``JAXMNIST_*`` settings (``environ`` default ``os.environ``).

    Coordinator, process count and id: all three, or none (JAX detects them on SLURM, Open MPI
    and Cloud TPU); DistributedError otherwise, or for a malformed value.
    """
    environ = os.environ if environ is None else environ
    coordinator = environ.get(ENV_COORDINATOR, "").strip() or None
    num = _positive_int(environ, ENV_NUM_PROCESSES, None)
    pid = _positive_int(environ, ENV_PROCESS_ID, None)
    given = [n for n, v in ((ENV_COORDINATOR, coordinator), (ENV_NUM_PROCESSES, num),
                            (ENV_PROCESS_ID, pid)) if v is not None]
    if given and len(given) != 3:
        missing = sorted({ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID} - set(given))
        raise DistributedError(
            f"{', '.join(given)} set but {', '.join(missing)} not: set all three (the same "
            f"{ENV_COORDINATOR} and {ENV_NUM_PROCESSES} on every process, {ENV_PROCESS_ID} "
            "0..N-1), or none of them on SLURM, Open MPI or Cloud TPU, where JAX detects them")
    if coordinator is not None:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise DistributedError(f"{ENV_COORDINATOR}={coordinator!r} must be HOST:PORT of "
                                   "process 0, e.g. 10.0.0.1:12345")
        if pid >= num:
            raise DistributedError(f"{ENV_PROCESS_ID}={pid} must be below "
                                   f"{ENV_NUM_PROCESSES}={num} (ids 0..{num - 1})")
    return Settings(
        coordinator=coordinator, num_processes=num, process_id=pid,
        init_timeout=_positive_int(environ, ENV_INIT_TIMEOUT, DEFAULT_INIT_TIMEOUT),
        heartbeat_timeout=_positive_int(environ, ENV_HEARTBEAT_TIMEOUT,
                                        DEFAULT_HEARTBEAT_TIMEOUT),
        shutdown_timeout=_positive_int(environ, ENV_SHUTDOWN_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT))


def initialize(settings: Settings) -> None:
    """Joins this process to the run (before anything touches a device); CPU collectives: gloo."""
    if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:
        # A JAX without the option keeps its default.
        with contextlib.suppress(AttributeError, KeyError, ValueError):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs: dict[str, Any] = dict(initialization_timeout=settings.init_timeout,
                                  heartbeat_timeout_seconds=settings.heartbeat_timeout,
                                  shutdown_timeout_seconds=settings.shutdown_timeout)
    if settings.coordinator is not None:
        kwargs.update(coordinator_address=settings.coordinator,
                      num_processes=settings.num_processes, process_id=settings.process_id)
        if settings.bind_address is not None:
            kwargs["coordinator_bind_address"] = settings.bind_address
    # Pass only what this JAX's initialize accepts (checked on 0.10; names may move later).
    accepted = inspect.signature(jax.distributed.initialize).parameters
    jax.distributed.initialize(**{k: v for k, v in kwargs.items() if k in accepted})


def is_primary() -> bool:
    """True on the one process that writes the run directory (process 0)."""
    return jax.process_index() == 0


def put(tree: Any, sharding: Any) -> Any:
    """Host values (the same on every process) as global arrays; each sends its own shards."""
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def leaf(value):
        host = np.asarray(value)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(leaf, tree)


def to_host(tree: Any) -> Any:
    """The whole value of every array in ``tree`` as NumPy (a collective across processes)."""
    def leaf(value):
        if isinstance(value, jax.Array) and not value.is_fully_addressable:
            if value.is_fully_replicated:
                return np.asarray(value.addressable_data(0))
            return np.asarray(multihost_utils.process_allgather(value, tiled=True))
        return np.asarray(value)

    return jax.tree_util.tree_map(leaf, tree)


EXIT_PEER_LOST = 3
"""Exit status of a process that stopped because its run failed (typically: a peer died)."""


@contextlib.contextmanager
def stop_together(resume_hint: str = "",
                  passthrough: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """A failure inside a multi-process run as one message and exit :data:`EXIT_PEER_LOST`.

    A no-op on one process (docs/distributed.md). ``resume_hint`` ends the message;
    ``passthrough`` errors (every process raises them alike) are raised as usual.
    """
    try:
        yield
    except Exception as err:  # noqa: BLE001 - any failure ends a multi-process run alike
        if jax.process_count() <= 1 or isinstance(err, passthrough):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"jaxmnist: process {jax.process_index()} of {jax.process_count()} stopped: "
              f"{type(err).__name__}: {first[:300]}\n"
              "This usually means another process of the run died (killed, preempted or "
              "crashed); see its log. Relaunch all processes with the same command to continue"
              + (f" {resume_hint}" if resume_hint else "") + ".", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(EXIT_PEER_LOST)


def all_true(flag: bool) -> list[bool]:
    """Every process's ``flag``, in process order (``[flag]`` on one process). A collective."""
    if jax.process_count() == 1:
        return [bool(flag)]
    flags = multihost_utils.process_allgather(np.asarray(bool(flag), np.int32))
    return [bool(f) for f in np.asarray(flags).reshape(-1)]


def check_shared_dir(directory: str | os.PathLike) -> None:
    """DistributedError on every process unless all see what process 0 wrote in ``directory``."""
    if jax.process_count() == 1:
        return
    path = Path(directory) / ".jaxmnist-shared-check"
    token = np.asarray(np.random.default_rng().integers(1, 2**31 - 1), np.int32)
    if is_primary():
        path.write_text(str(int(token)))
    token = int(multihost_utils.broadcast_one_to_all(token))
    try:
        seen = int(path.read_text().strip()) == token
    except (OSError, ValueError):
        seen = False
    flags = all_true(seen)
    multihost_utils.sync_global_devices("jaxmnist-shared-check")  # all read before the unlink
    if is_primary():
        path.unlink(missing_ok=True)
    blind = [i for i, ok in enumerate(flags) if not ok]
    if blind:
        raise DistributedError(
            f"process(es) {', '.join(map(str, blind))} do not see {Path(directory)} as process 0 "
            "wrote it: the run directory (--workdir) must be on a filesystem that every host "
            "mounts at the same path (NFS, Lustre, Filestore, gcsfuse)"
        )
