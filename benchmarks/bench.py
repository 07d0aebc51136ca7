"""``python -m benchmarks.bench`` — training throughput side by side, on this machine, in one run.

What it measures (images/s of training after a warm-up epoch; compile time reported apart):

* jaxmnist, S0's CNN (225,034 params), batch 64, Adam: a solo run through the grid engine
  (``jaxmnist.engine.fit.train_grid``); a 12-member S2-style grid (Adam/RMSprop/SGD x 4 learning
  rates) with each strategy, ``sequential`` and ``vmap`` (aggregate images/s); the bare training
  step without the engine around it; the MLP (784-64-10) and SqueezeNet, solo.
* The same CNN in Keras 3 on TensorFlow (``model.fit``) and in PyTorch (a plain loop).
* The machine's fp32 matmul rate (a big ``jnp.dot``), to put the FLOPs XLA counts per training
  image into perspective (``% of peak``).
* End to end: the 12-member grid vs the same 12 members run one after another, each run a full
  ``train_grid`` call (compile, train, evaluate) — wall time a user waits for.

How: every case runs in its own subprocess (:mod:`benchmarks.bench_workers`; separate thread
pools, per-framework peak RSS). All workers stay alive and are driven in interleaved rounds
(one timed epoch of each case per round, the order rotated every round), so a shared machine's
changing load hits every case alike; medians over rounds are reported, with the load average.

Noise: each worker reports per round its wall and CPU seconds over the same span; a round whose
wall/CPU-per-core ratio is over ``STALL_FACTOR`` x the case's lowest (or x cores) is flagged
``stalled`` and left out of medians, best rounds and ratios (kept in the JSON). Headline: S0
solo against the strongest peer (faster of Keras and PyTorch by best round), then the headline
measurements from the same run (ratios, % of peak, the full-S2 extrapolation) as numbers or "not
measured"; what they are compared against is docs/performance.md's business, not this code's.

Usage::

    python -m benchmarks.bench                      # full: ~10 minutes on 2 CPU cores
    python -m benchmarks.bench --quick              # seconds-scale smoke run (tests)
    python -m benchmarks.bench --only jax,keras --steps 200 --repeats 7 --out benchmarks/results/

Results: ``<out>/bench-<date>.json`` (everything, per-round numbers included) and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.bench_workers import PREFIX
from jaxmnist import envinfo

FRAMEWORKS = ("jax", "keras", "torch")
S0_CNN = {"name": "cnn"}
MLP = {"name": "mlp", "hidden": [64]}
SQUEEZENET = {"name": "squeezenet"}
S4_L4_CNN = {"name": "cnn_depth", "depth": 4, "dropout": 0.25, "padding": "same"}
S4_BATCH = 32  # S4 trains with batch 32 (sweeps/s4.py); its case uses the study's batch
# The "two members at once" lever: XLA:CPU as 2 host devices, each running its half of the
# grid's members single-threaded, instead of one device splitting every op over both cores.
TWO_DEVICE_FLAGS = "--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false"
SCHEMA_VERSION = 1
REPO_ROOT = str(Path(__file__).resolve().parent.parent)


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


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


def build_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The interleaved cases for the selected frameworks (the end-to-end case comes apart).

    Slow cases train fewer steps per timed epoch (a rate does not need more), the MLP more;
    every timed epoch is still at least 2 steps.
    """
    steps, batch, repeats = args.steps, args.batch_size, args.repeats
    test_images = 100 if args.quick else 1000

    def case(name: str, framework: str, runner: str, model: dict[str, Any] | None,
             n_steps: int, **extra: Any) -> dict[str, Any]:
        return {"name": name, "framework": framework, "runner": runner,
                "model": model, "batch_size": batch, "steps": max(n_steps, 2),
                "repeats": repeats, "test_images": test_images, "members": 1, **extra}

    only = set(args.only)
    cases = []
    if "jax" in only:
        cases += [
            case("jaxmnist_cnn_solo", "jax", "jax_engine", S0_CNN, steps),
            case("jaxmnist_cnn_grid_sequential", "jax", "jax_engine", S0_CNN, steps // 4,
                 members=args.members, strategy="sequential"),
            case("jaxmnist_cnn_grid_vmap", "jax", "jax_engine", S0_CNN, steps // 4,
                 members=args.members, strategy="vmap"),
            case("jax_cnn_bare_step", "jax", "jax_step", S0_CNN, steps),
            # The MLP trains ~40x faster than the CNN: 8x the steps keep its epoch measurable.
            case("jaxmnist_mlp_solo", "jax", "jax_engine", MLP, steps * 8),
            case("jaxmnist_cnn_grid_two_devices", "jax", "jax_engine", S0_CNN, steps // 4,
                 members=args.members, strategy="sequential",
                 env={"XLA_FLAGS": _with_flags(TWO_DEVICE_FLAGS)}),
            case("jaxmnist_squeezenet_solo", "jax", "jax_engine", SQUEEZENET, steps // 4),
            case("jaxmnist_s4_l4_solo", "jax", "jax_engine", S4_L4_CNN, steps // 4,
                 batch_size=S4_BATCH),
            case("matmul_peak", "jax", "jax_peak", None, 1,
                 matmul_size=256 if args.quick else None),
        ]
    if "keras" in only:
        cases.append(case("keras_cnn", "keras", "keras", S0_CNN, steps,
                          peer_options=peer_options(args, "keras")))
    if "torch" in only:
        cases.append(case("torch_cnn", "torch", "torch", S0_CNN, steps // 2,
                          peer_options=peer_options(args, "torch")))
    if args.cases:
        unknown = set(args.cases) - {c["name"] for c in cases}
        if unknown:
            raise SystemExit(f"--cases: unknown or deselected case(s) {sorted(unknown)}; "
                             f"choose from {[c['name'] for c in cases]}")
        cases = [c for c in cases if c["name"] in args.cases]
    return cases


def _with_flags(flags: str) -> str:
    """``flags`` appended to the caller's own ``XLA_FLAGS`` (a later flag wins in XLA)."""
    return " ".join(f for f in (os.environ.get("XLA_FLAGS", ""), flags) if f)


def peer_options(args: argparse.Namespace, framework: str) -> dict[str, Any]:
    """The peer-configuration knobs a Keras or PyTorch worker applies (recorded per case).

    ``threads`` None = the framework's own default thread pools (TF) or the usable cores
    (PyTorch, as before these options existed).
    """
    if framework == "keras":
        return {"threads": args.peer_threads, "jit_compile": args.keras_jit_compile}
    return {"threads": args.peer_threads, "channels_last": args.torch_channels_last}


def e2e_case(args: argparse.Namespace) -> dict[str, Any]:
    """Grid vs sequential solo runs, end to end (jax only)."""
    return {"name": "grid_vs_sequential_e2e", "framework": "jax", "runner": "jax_e2e",
            "model": S0_CNN, "batch_size": args.batch_size, "steps": max(args.steps, 2),
            "epochs": args.e2e_epochs, "members": args.members,
            "test_images": 100 if args.quick else 1000, "strategy": "auto"}


# --------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A worker died, reported an error or did not answer in time."""


class Worker:
    """One case's subprocess and its protocol messages (read on a thread into a queue)."""

    def __init__(self, case: dict[str, Any], timeout: float):
        self.case = case
        self.timeout = timeout
        self.log = tempfile.TemporaryFile(mode="w+")
        env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
        # The repository root first: the worker module (benchmarks/) and this checkout's
        # jaxmnist, from whatever folder the bench was started.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
        if case["framework"] == "keras":
            env.setdefault("KERAS_BACKEND", "tensorflow")
        env.update(case.get("env", {}))  # per-case overrides, e.g. XLA_FLAGS experiments
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_workers", json.dumps(case)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
        )
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(PREFIX):
                self.messages.put(json.loads(line[len(PREFIX):]))
        self.messages.put(None)  # EOF: the worker exited

    def stderr_tail(self, chars: int = 2000) -> str:
        """The end of the worker's stderr (for error messages)."""
        self.log.seek(0)
        return self.log.read()[-chars:]

    def expect(self, *events: str) -> dict[str, Any]:
        """Waits for the next protocol message; raises on error, exit or timeout."""
        try:
            msg = self.messages.get(timeout=self.timeout)
        except queue.Empty:
            raise WorkerError(f"{self.case['name']}: no answer in {self.timeout:.0f} s") from None
        if msg is None:
            raise WorkerError(f"{self.case['name']}: worker exited\n{self.stderr_tail()}")
        if msg["event"] == "error":
            raise WorkerError(f"{self.case['name']}: {msg['message']}\n{msg.get('traceback', '')}")
        if msg["event"] not in events and msg["event"] != "skipped":
            raise WorkerError(f"{self.case['name']}: expected {events}, got {msg}")
        return msg

    def command(self, cmd: str) -> None:
        """Sends ``run`` or ``finish``."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise WorkerError(f"{self.case['name']}: worker gone ({e})") from None

    def close(self) -> None:
        """Waits briefly for the process, then kills it (never leaves a worker behind)."""
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _record(case: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "framework", "model", "batch_size", "steps", "members", "strategy", "epochs",
            "test_images", "peer_options", "env")
    return {"status": "pending", **{k: case[k] for k in keys if k in case}, "rounds": []}


def run_interleaved(cases: list[dict[str, Any]], repeats: int, timeout: float,
                    log: Any = print) -> tuple[dict[str, dict[str, Any]], list[list[float]]]:
    """Starts every case's worker, then drives ``repeats`` interleaved rounds of timed epochs.

    Returns:
        ``(records, loads)``: one record per case (setup facts, per-round seconds and images,
        peak RSS, status) and the 1-minute load average before each round.
    """
    records = {c["name"]: _record(c) for c in cases}
    workers: dict[str, Worker] = {}
    try:
        for case in cases:  # start one at a time: compiles do not overlap each other
            name = case["name"]
            log(f"[bench] starting {name}")
            worker = Worker(case, timeout)
            try:
                msg = worker.expect("ready")
            except WorkerError as e:
                records[name].update(status="error", error=str(e))
                worker.close()
                continue
            if msg["event"] == "skipped":
                records[name].update(status="skipped", reason=msg["reason"])
                worker.close()
                continue
            records[name].update(status="ok", setup={k: v for k, v in msg.items()
                                                     if k != "event"})
            workers[name] = worker
        loads = []
        for r in range(repeats):
            loads.append(list(os.getloadavg()))
            names = list(workers)
            names = names[r % len(names):] + names[: r % len(names)] if names else []
            for name in names:
                if records[name]["status"] != "ok":
                    continue
                try:
                    workers[name].command("run")
                    msg = workers[name].expect("result")
                except WorkerError as e:
                    records[name].update(status="error", error=str(e))
                    continue
                records[name]["rounds"].append(
                    {"round": r, "seconds": msg["seconds"], "images": msg["images"],
                     **{k: msg[k] for k in ("gflops", "stream_gbps", "cpu_seconds", "wall_seconds")
                        if k in msg}})
            log(f"[bench] round {r + 1}/{repeats} done, load {loads[-1][0]:.2f}")
        for name, worker in workers.items():
            try:
                if records[name]["status"] == "ok":
                    worker.command("finish")
                    done = worker.expect("done")
                    records[name]["finish"] = {k: v for k, v in done.items() if k != "event"}
            except WorkerError as e:
                records[name].update(status="error", error=str(e))
    finally:
        for worker in workers.values():
            worker.close()
    return records, loads


def run_e2e(case: dict[str, Any], timeout: float, log: Any = print) -> dict[str, Any]:
    """The grid vs sequential end-to-end comparison in its own worker."""
    record = _record(case)
    log(f"[bench] starting {case['name']} (grid, {case['members']} solo runs, grid)")
    worker = Worker(case, timeout)
    try:
        worker.expect("ready")
        worker.command("run")
        msg = worker.expect("result")
        record.update(status="ok", grid_runs=msg["grid_runs"], solo_runs=msg["solo_runs"],
                      data=msg["data"])
        worker.command("finish")
        record["finish"] = {k: v for k, v in worker.expect("done").items() if k != "event"}
    except WorkerError as e:
        record.update(status="error", error=str(e))
    finally:
        worker.close()
    return record


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


# A round is "stalled" when its process was waiting rather than working: the wall/CPU ratio
# r = wall_seconds / (cpu_seconds / cores) is 1.0 when every core the case may use was busy for
# the whole round, `cores` when exactly one thread ran all the time. Two tests, either flags:
# * r > STALL_FACTOR x the case's lowest r of the run: the round took more than twice the wall
#   time per CPU second of the case's own best-behaved round (the case's parallelism is its
#   own; only a change against itself says "waited");
# * r > STALL_FACTOR x cores: on average the process ran on less than half of ONE core, which
#   no CPU training loop does while working (this catches a case whose every round stalled).
# Keras' stalled rounds on 2 cores (3.5-5.6 s wall for ~0.95 s CPU: r = 7-12, against ~1-2 for
# its normal rounds; docs/performance.md) fail both tests; ordinary jitter (10-30%) fails neither.
STALL_FACTOR = 2.0
PEERS = ("keras_cnn", "torch_cnn")
GRID_CASES = ("jaxmnist_cnn_grid_sequential", "jaxmnist_cnn_grid_vmap",
              "jaxmnist_cnn_grid_two_devices")


def wall_cpu_ratio(wall_seconds: float | None, cpu_seconds: float | None,
                   cores: int) -> float | None:
    """Wall seconds over CPU seconds per core (1.0 = all ``cores`` busy); None if unknown."""
    if wall_seconds is None or not cpu_seconds or cpu_seconds <= 0 or cores < 1:
        return None
    return wall_seconds / (cpu_seconds / cores)


def classify_rounds(rounds: list[dict[str, Any]], cores: int, check: bool = True,
                    factor: float = STALL_FACTOR) -> list[dict[str, Any]]:
    """Sets ``wall_cpu_ratio`` and ``stalled`` on every round record (in place; returned).

    Args:
        rounds: one case's rounds: ``seconds`` and, from the worker, ``cpu_seconds`` and
            ``wall_seconds`` (the same span; ``seconds`` stands in for a missing wall time).
        cores: cores the case's process may use (CPU time is normalised per core).
        check: False where CPU time does not measure the work (an accelerator does it):
            ratios are still recorded, nothing is flagged.
        factor: the margin (see ``STALL_FACTOR``).

    Returns:
        ``rounds``. A round without CPU time has ratio None and is never flagged.
    """
    ratios = [wall_cpu_ratio(r.get("wall_seconds", r.get("seconds")), r.get("cpu_seconds"),
                             cores) for r in rounds]
    known = [x for x in ratios if x is not None]
    floor = min(known) if known else None
    for r, x in zip(rounds, ratios, strict=True):
        r["wall_cpu_ratio"] = x
        r["stalled"] = bool(check and x is not None and floor is not None
                            and (x > factor * floor or x > factor * cores))
    return rounds


def strongest_peer(records: dict[str, dict[str, Any]]) -> str | None:
    """The peer case (Keras or PyTorch) with the highest best non-stalled round, or None."""
    best = {name: records[name]["images_per_second"]["best"] for name in PEERS
            if name in records and records[name].get("images_per_second")}
    return max(best, key=best.__getitem__) if best else None


def _measured(name: str, value: float | None, unit: str, why_missing: str | None
              ) -> dict[str, Any]:
    if why_missing is not None or value is None:
        return {"name": name, "value": None, "unit": unit,
                "why": why_missing or "no value from this run"}
    return {"name": name, "value": value, "unit": unit, "why": None}


def headline_measurements(records: dict[str, dict[str, Any]], quick: bool,
                          members: int) -> list[dict[str, Any]]:
    """The headline numbers of this run, each a value or "not measured" with the reason.

    No thresholds here: docs/performance.md says what each number is compared against.
    A missing, failed, skipped or all-stalled case, or a ``--quick`` run (sizes too small to
    mean anything), gives ``value`` None and ``why``. Throughputs compare best non-stalled
    rounds with best non-stalled rounds (same statistic on both sides); % of peak is the case's
    median over non-stalled rounds against the median matmul peak.
    """
    def ips(name: str) -> dict[str, Any] | None:
        rec = records.get(name)
        return rec.get("images_per_second") if rec and rec.get("status") == "ok" else None

    def missing(*names: str) -> str | None:
        if quick:
            return "--quick run: sizes too small to judge"
        for n in names:
            rec = records.get(n)
            if rec is None:
                return f"{n} not in this run"
            if rec.get("status") != "ok":
                return f"{n} {rec.get('status')}"
            if not rec.get("images_per_second"):
                return f"{n}: every round stalled"
        return None

    out = []
    solo = ips("jaxmnist_cnn_solo")
    peer = strongest_peer(records)
    why = missing("jaxmnist_cnn_solo") or (None if peer else "no peer (Keras/PyTorch) measured")
    value = solo["best"] / ips(peer)["best"] if not why else None
    out.append(_measured("S0 CNN solo / strongest peer, best rounds"
                         + (f" ({peer})" if peer else ""), value, "x", why))
    for case, label in (("jaxmnist_cnn_solo", "S0 CNN solo"),
                        ("jaxmnist_squeezenet_solo", "SqueezeNet solo"),
                        ("jaxmnist_s4_l4_solo", "S4 L4 CNN solo (batch 32)")):
        why = missing(case)
        pct = records[case].get("percent_of_peak") if not why else None
        if not why and pct is None:
            why = "no matmul peak (or FLOP count) in this run"
        out.append(_measured(f"{label}, % of matmul peak", pct, "%", why))
    grids = [g for g in GRID_CASES if ips(g)]
    why = missing() or ("no grid case measured" if not grids else None) or missing(
        "jaxmnist_cnn_solo")
    best_grid = max(grids, key=lambda g: ips(g)["best"]) if grids else None
    value = ips(best_grid)["best"] / solo["best"] if not why else None
    out.append(_measured(f"{members}-member grid / solo, best rounds (best strategy"
                         + (f": {best_grid}" if best_grid and not why else "") + ")",
                         value, "x", why))
    why = missing("jaxmnist_squeezenet_solo")
    minutes = s2_full_minutes(ips("jaxmnist_squeezenet_solo")["median"]) if not why else None
    out.append(_measured("full S2 (1 seed) here, extrapolated from SqueezeNet's median epoch "
                         "rate", minutes, " min", why))
    return out


# Full S2, 1 seed (sweeps/s2.py): 12 members x 50,000 training images x 30 epochs, and each
# epoch every member evaluates the 10,000 validation images (+ the 10,000 test images once).
S2_TRAIN_IMAGES = 12 * 50_000 * 30
S2_EVAL_IMAGES = 12 * 10_000 * 30 + 12 * 10_000
# An evaluated image costs a forward pass, ~1/3 of a training image (forward + backward ~ 3x
# forward in FLOPs); the update and the data gather are not in it.
EVAL_COST_OF_TRAIN_IMAGE = 1 / 3


def s2_full_minutes(squeezenet_images_per_second: float) -> float:
    """Minutes of the full S2 study (1 seed) at a measured SqueezeNet training rate.

    The 12 members run one after another inside one program on a CPU (``sequential``), so
    the group's aggregate rate is the solo rate (measured for S0: grid/solo 0.95-1.0).
    Compile time (~1-2 min) is not included.
    """
    images = S2_TRAIN_IMAGES + EVAL_COST_OF_TRAIN_IMAGE * S2_EVAL_IMAGES
    return images / squeezenet_images_per_second / 60


def roofline(flops_per_image: float, bytes_per_image: float, peak_gflops: float | None,
             bandwidth_gbps: float | None) -> dict[str, Any]:
    """The roofline of one model: arithmetic intensity and the rate it bounds.

    ``bytes_per_image`` is XLA's "bytes accessed" of one compiled step over the batch: the
    operand and result bytes of every op, so it counts traffic that stays in cache too (an
    upper bound on DRAM traffic). The bound is min(peak, intensity x bandwidth), in GFLOP/s.
    """
    intensity = flops_per_image / bytes_per_image if bytes_per_image else None
    bound = None
    if intensity and peak_gflops and bandwidth_gbps:
        bound = min(peak_gflops, intensity * bandwidth_gbps)
    return {"flops_per_image": flops_per_image, "bytes_per_image": bytes_per_image,
            "flops_per_byte": intensity, "bound_gflops": bound,
            "memory_bound": bool(bound and peak_gflops and bound < peak_gflops)}


def _stats(values: Sequence[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "best": max(values), "all": list(values)}


def _runs_on_cpu(rec: dict[str, Any]) -> bool:
    """Whether the case trained on the CPU (else CPU time does not measure its work)."""
    setup = rec.get("setup", {})
    if setup.get("backend") not in (None, "cpu"):
        return False
    if str(setup.get("device", "cpu")).startswith("cuda"):
        return False
    return "GPU" not in setup.get("devices", [])


def summarize(records: dict[str, dict[str, Any]], e2e: dict[str, Any] | None,
              cores: int | None = None, quick: bool = False,
              members: int = 12) -> dict[str, Any]:
    """Flags stalled rounds, adds images/s, GFLOP/s, % of peak; computes ratios and headline.

    Rates (median, best) and ratios use only the rounds not flagged ``stalled``
    (:func:`classify_rounds`); every round stays in ``rounds`` and in
    ``images_per_second_all_rounds``. A ratio is ``None`` when either side is missing
    (skipped framework, failed case, every round stalled).

    Args:
        records: per-case records from :func:`run_interleaved` (updated in place).
        e2e: the end-to-end record, or None.
        cores: cores each worker may use (default: this process's usable cores).
        quick: a ``--quick`` run (the headline numbers are then "not measured").
        members: the grid size of this run (named in the headline).
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    for rec in records.values():
        if rec.get("rounds"):
            check = _runs_on_cpu(rec)
            classify_rounds(rec["rounds"], cores, check=check)
            rec["stall_check"] = {"applied": check, "cores": cores, "factor": STALL_FACTOR,
                                  "stalled_rounds": [r.get("round") for r in rec["rounds"]
                                                     if r["stalled"]]}
    peak = records.get("matmul_peak")
    peak_gflops = None
    if peak and peak["status"] == "ok" and peak["rounds"]:
        peak["gflops"] = _stats([r["gflops"] for r in peak["rounds"] if not r["stalled"]])
        peak_gflops = peak["gflops"]["median"] if peak["gflops"] else None
        peak["stream_gbps"] = _stats([r["stream_gbps"] for r in peak["rounds"]
                                      if not r["stalled"] and r.get("stream_gbps")])
    bandwidth = (peak or {}).get("stream_gbps") or None
    for name, rec in records.items():
        if name == "matmul_peak" or rec["status"] != "ok" or not rec["rounds"]:
            continue
        rec["images_per_second_all_rounds"] = _stats(
            [r["images"] / r["seconds"] for r in rec["rounds"]])
        kept = [r for r in rec["rounds"] if not r["stalled"]]
        rec["images_per_second"] = _stats([r["images"] / r["seconds"] for r in kept])
        cpu = [r["cpu_seconds"] / r["images"] * 1e6 for r in kept
               if r.get("cpu_seconds") is not None and r["images"]]
        # CPU time per image (all threads, microseconds): the work a framework spends per
        # image, much less sensitive than images/s to other processes on a shared machine.
        rec["cpu_us_per_image"] = _stats(cpu)
        flops = rec.get("setup", {}).get("flops_per_image")
        if flops and rec.get("setup", {}).get("bytes_accessed_per_step"):
            rec["roofline"] = roofline(flops, rec["setup"]["bytes_accessed_per_step"]
                                       / rec.get("batch_size", 1), peak_gflops,
                                       bandwidth["median"] if bandwidth else None)
        if flops and rec["images_per_second"]:
            rec["gflops"] = flops * rec["images_per_second"]["median"] / 1e9
            rec["gflops_best"] = flops * rec["images_per_second"]["best"] / 1e9
            rec["percent_of_peak"] = 100 * rec["gflops"] / peak_gflops if peak_gflops else None
            rec["percent_of_peak_best"] = (100 * rec["gflops_best"] / peak_gflops
                                           if peak_gflops else None)
            bound = (rec.get("roofline") or {}).get("bound_gflops")
            if bound:
                rec["roofline"]["percent_of_bound"] = 100 * rec["gflops"] / bound

    def ips(name: str) -> dict[str, Any] | None:
        rec = records.get(name)
        return rec.get("images_per_second") if rec else None

    def rate(name: str) -> float | None:
        s = ips(name)
        return s["median"] if s else None

    def per_round_ratio(a: str, b: str) -> dict[str, Any] | None:
        # Same round = same load: the per-round ratio is the steadier estimate on a busy box.
        # A pair counts only when neither side stalled in that round.
        ra, rb = records.get(a), records.get(b)
        if not (ra and rb and ips(a) and ips(b)):
            return None
        by_round = {r["round"]: r for r in rb["rounds"] if not r["stalled"]}
        pairs = [(x["images"] / x["seconds"], by_round[x["round"]]["images"]
                  / by_round[x["round"]]["seconds"])
                 for x in ra["rounds"] if not x["stalled"] and x["round"] in by_round]
        return _stats([x / y for x, y in pairs])

    def ratio(a: str, b: str) -> dict[str, Any]:
        x, y = rate(a), rate(b)
        sa, sb = ips(a), ips(b)
        return {"of_medians": x / y if x and y else None,
                "of_best": sa["best"] / sb["best"] if sa and sb else None,
                "per_round": per_round_ratio(a, b)}

    peer = strongest_peer(records)
    ratios = {
        "jaxmnist_solo_over_strongest_peer": ratio("jaxmnist_cnn_solo", peer) if peer else
        {"of_medians": None, "of_best": None, "per_round": None},
        "jaxmnist_solo_over_keras": ratio("jaxmnist_cnn_solo", "keras_cnn"),
        "jaxmnist_solo_over_torch": ratio("jaxmnist_cnn_solo", "torch_cnn"),
        "grid_sequential_over_solo": ratio("jaxmnist_cnn_grid_sequential", "jaxmnist_cnn_solo"),
        "grid_vmap_over_solo": ratio("jaxmnist_cnn_grid_vmap", "jaxmnist_cnn_solo"),
        "grid_vmap_over_sequential": ratio("jaxmnist_cnn_grid_vmap",
                                           "jaxmnist_cnn_grid_sequential"),
        "engine_solo_over_bare_step": ratio("jaxmnist_cnn_solo", "jax_cnn_bare_step"),
        "keras_over_torch": ratio("keras_cnn", "torch_cnn"),
    }

    def cpu(name: str) -> float | None:
        rec = records.get(name) or {}
        return (rec.get("cpu_us_per_image") or {}).get("median")

    # CPU time per image, Keras (or PyTorch) over jaxmnist: > 1 = jaxmnist does less work.
    for other in ("keras_cnn", "torch_cnn"):
        x, y = cpu(other), cpu("jaxmnist_cnn_solo")
        ratios[f"cpu_per_image_{other.split('_')[0]}_over_jaxmnist"] = {
            "of_medians": x / y if x and y else None, "of_best": None, "per_round": None}
    out: dict[str, Any] = {"ratios": ratios, "peak_gflops": peak_gflops,
                           "strongest_peer": peer,
                           "headline": headline_measurements(records, quick, members)}
    if e2e is not None and e2e["status"] == "ok":
        grid = e2e["grid_runs"]
        solo = e2e["solo_runs"]
        grid_wall = statistics.mean(r["wall_seconds"] for r in grid)
        solo_wall = sum(r["wall_seconds"] for r in solo)
        grid_train = statistics.mean(r["train_seconds"] for r in grid)
        solo_train = sum(r["train_seconds"] for r in solo)
        e2e["summary"] = {
            "grid_wall_seconds": grid_wall,
            "grid_wall_seconds_each": [r["wall_seconds"] for r in grid],
            "sequential_wall_seconds": solo_wall,
            "grid_train_seconds": grid_train,
            "sequential_train_seconds": solo_train,
            "grid_compile_seconds": statistics.mean(r["compile_seconds"] for r in grid),
            "solo_compile_seconds_each": statistics.mean(r["compile_seconds"] for r in solo),
            "solo_wall_seconds_each": statistics.mean(r["wall_seconds"] for r in solo),
            "strategy": grid[0]["strategy"],
        }
        ratios["grid_wall_over_sequential_wall"] = {"of_medians": grid_wall / solo_wall,
                                                    "of_best": None, "per_round": None}
        ratios["grid_train_over_sequential_train"] = {"of_medians": grid_train / solo_train,
                                                      "of_best": None, "per_round": None}
    return out


# --------------------------------------------------------------------------------------------
# Machine, versions, output
# --------------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "–" if value is None else format(value, spec)


def _peer_text(result: dict[str, Any]) -> str:
    """The peers' configuration as run: the options asked for and what the workers reported."""
    parts = []
    for name in PEERS:
        rec = result["cases"].get(name)
        if not rec:
            continue
        setup = rec.get("setup", {})
        asked = ", ".join(f"{k}={v}" for k, v in (rec.get("peer_options") or {}).items())
        got = ", ".join(f"{k}={setup[k]}" for k in ("threads", "intra_op_threads", "jit_compile",
                                                     "channels_last") if k in setup)
        parts.append(f"{name} asked {asked or '–'}" + (f" (ran {got})" if got else ""))
    return "; ".join(parts) or "no peer in this run"


def headline_lines(summary: dict[str, Any], cases: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines: jaxmnist vs the strongest peer, then the headline numbers (same run)."""
    peer = summary.get("strongest_peer")
    solo = (cases.get("jaxmnist_cnn_solo") or {}).get("images_per_second")
    lines = ["", "## Headline (stalled rounds left out)", ""]
    if peer and solo:
        p = cases[peer]["images_per_second"]
        r = summary["ratios"]["jaxmnist_solo_over_strongest_peer"]
        lines.append(
            f"Strongest peer: **{peer}** (best round {p['best']:.0f} images/s, median "
            f"{p['median']:.0f}). jaxmnist S0 CNN solo: best {solo['best']:.0f}, median "
            f"{solo['median']:.0f} → **{r['of_best']:.2f}x** best over best, "
            f"{r['of_medians']:.2f}x median over median.")
    else:
        lines.append("jaxmnist vs strongest peer: not measured (jaxmnist solo or both peers "
                     "missing from this run).")
    lines += ["", "Headline numbers from this run (what they are compared against: "
              "docs/performance.md):", ""]
    for t in summary.get("headline", []):
        if t["value"] is None:
            lines.append(f"- {t['name']}: **not measured** ({t['why']})")
        else:
            lines.append(f"- {t['name']}: **{t['value']:.2f}{t['unit']}**")
    return lines


def roofline_lines(cases: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown roofline table: per model, intensity, the bound it implies and what was reached."""
    rows = [(n, r) for n, r in cases.items() if r.get("roofline") and r.get("gflops")]
    if not rows:
        return []
    lines = ["", "Roofline (XLA cost analysis of one compiled training step; bytes = operand + "
             "result bytes of every op, cached traffic included, so intensity is a lower "
             "bound): bound = min(matmul peak, FLOPs/byte x bandwidth).", "",
             "| case | FLOPs/image | bytes/image | FLOPs/byte | bound GFLOP/s | achieved GFLOP/s "
             "| % of peak | % of bound |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, rec in rows:
        roof = rec["roofline"]
        lines.append(
            f"| {name} | {roof['flops_per_image'] / 1e6:.1f} M | "
            f"{roof['bytes_per_image'] / 1e6:.2f} MB | {_fmt(roof['flops_per_byte'], '.1f')} | "
            f"{_fmt(roof['bound_gflops'], '.0f')}"
            f"{' (memory)' if roof.get('memory_bound') else ''} | {rec['gflops']:.0f} | "
            f"{_fmt(rec.get('percent_of_peak'), '.0f')} | "
            f"{_fmt(roof.get('percent_of_bound'), '.0f')} |")
    return lines


def to_markdown(result: dict[str, Any]) -> str:
    """The results as Markdown: machine line, per-case table, ratios, end-to-end table."""
    m, v = result["machine"], result["versions"]
    tf = v.get("tensorflow") or v.get("tensorflow-cpu")
    loads = result["load_average"]
    lines = [
        f"# jaxmnist benchmark — {result['date']}",
        "",
        f"Machine: {m['cpu']}, {m['usable_cores']} cores, {_fmt(m['memory_gb'], '.0f')} GB; "
        f"backend {result.get('backend') or '–'}. Versions: jax {v['jax']}, "
        f"TensorFlow {tf or '–'}, Keras {v['keras'] or '–'}, PyTorch {v['torch'] or '–'}. "
        f"Load average (1 min) at start {loads['start'][0]:.2f}, end {loads['end'][0]:.2f}, "
        f"per round {', '.join(f'{x[0]:.2f}' for x in loads['rounds'])}. "
        f"Command: `{result['command']}`{' (quick)' if result['quick'] else ''}. "
        f"Peer options: {_peer_text(result)}.",
        "",
    ]
    lines += headline_lines(result["summary"], result["cases"])
    lines += [
        "",
        "Training throughput, batch 64 per member, over interleaved rounds: median and best "
        "of the rounds NOT stalled (min–max of those); stalled = wall/CPU ratio over "
        f"{STALL_FACTOR:g}x the case's lowest or over {STALL_FACTOR:g}x cores (kept in the "
        "JSON, left out of every rate and ratio); wall/CPU = wall s / (CPU s / cores) per "
        "round, 1.0 = all cores busy. Compile = tracing + XLA compile (jax) before the "
        "warm-up epoch.",
        "",
        "| case | model | members | images/s (median) | best | min–max | stalled | wall/CPU "
        "per round | CPU µs/image | compile s | warm-up epoch s | FLOPs/image (XLA) | GFLOP/s "
        "| % of peak | peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
        "| --- |",
    ]
    for name, rec in result["cases"].items():
        if name == "matmul_peak":
            continue
        model = (rec.get("model") or {}).get("name", "–")
        if rec["status"] != "ok" or "images_per_second" not in rec:
            why = rec.get("reason") or (rec.get("error") or "").split("\n")[0]
            lines.append(f"| {name} | {model} | {rec.get('members', 1)} | {rec['status']}: "
                         f"{why[:80]} | | | | | | | | | | | |")
            continue
        ips, setup = rec["images_per_second"], rec.get("setup", {})
        flops = setup.get("flops_per_image")
        stalled = sum(bool(r.get("stalled")) for r in rec["rounds"])
        wc = ", ".join(_fmt(r.get("wall_cpu_ratio"), ".1f") + ("*" if r.get("stalled") else "")
                       for r in rec["rounds"])
        if ips is None:  # every round stalled
            lines.append(f"| {name} | {model} | {rec.get('members', 1)} | all {stalled} rounds "
                         f"stalled | | | {stalled}/{len(rec['rounds'])} | {wc} | | | | | | | |")
            continue
        lines.append(
            f"| {name} | {model} | {rec.get('members', 1)} | **{ips['median']:.0f}** | "
            f"{ips['best']:.0f} | {ips['min']:.0f}–{ips['max']:.0f} | "
            f"{stalled}/{len(rec['rounds'])} | {wc} | "
            f"{_fmt((rec.get('cpu_us_per_image') or {}).get('median'), '.0f')} | "
            f"{_fmt(setup.get('compile_seconds'), '.1f')} | "
            f"{_fmt(setup.get('warmup_epoch_seconds'), '.2f')} | "
            f"{_fmt(flops / 1e6 if flops else None, '.1f')} M | {_fmt(rec.get('gflops'), '.1f')} "
            f"| {_fmt(rec.get('percent_of_peak'), '.0f')} | "
            f"{_fmt(rec.get('finish', {}).get('rss_peak_mb'), '.0f')} |"
        )
    peak = result["cases"].get("matmul_peak")
    if peak and peak.get("gflops"):
        g = peak["gflops"]
        lines += ["", f"fp32 matmul peak ({peak['setup']['matmul_size']}² `jnp.dot`, best of 5 "
                  f"per round): median **{g['median']:.0f} GFLOP/s** ({g['min']:.0f}–"
                  f"{g['max']:.0f})."]
    elif peak and peak.get("rounds"):
        lines += ["", "fp32 matmul peak: not measured (every round stalled; see the JSON), so "
                  "no % of peak in this run."]
    if peak and peak.get("stream_gbps"):
        b = peak["stream_gbps"]
        array_mb = peak["setup"].get("stream_bytes_per_call", 0) / 2e6  # read once, written once
        lines += ["", f"Memory bandwidth (`x/2 + 1/2` in place over {array_mb:.0f} MB, read + "
                  f"write, best of 5 per round): median **{b['median']:.1f} GB/s** "
                  f"({b['min']:.1f}–{b['max']:.1f})."]
    lines += roofline_lines(result["cases"])
    lines += ["", "| ratio (stalled rounds left out) | of medians | of best rounds "
              "| per round (median, min–max) |", "| --- | --- | --- | --- |"]
    for name, r in result["summary"]["ratios"].items():
        pr = r.get("per_round")
        lines.append(f"| {name} | {_fmt(r['of_medians'], '.2f')} | "
                     f"{_fmt(r.get('of_best'), '.2f')} | "
                     + (f"{pr['median']:.2f} ({pr['min']:.2f}–{pr['max']:.2f})" if pr else "–")
                     + " |")
    e2e = result.get("e2e")
    if e2e and e2e.get("summary"):
        s = e2e["summary"]
        lines += [
            "",
            f"End to end, {e2e['members']} members, {e2e.get('epochs', '?')} epochs of "
            f"{e2e['steps'] * e2e['batch_size']} images each (full `train_grid` calls incl. "
            f"compile and test evaluation; grid strategy `{s['strategy']}`):",
            "",
            "| | wall s | train s | compile s |",
            "| --- | --- | --- | --- |",
            f"| grid (mean of 2 runs: {', '.join(f'{x:.1f}' for x in s['grid_wall_seconds_each'])})"
            f" | {s['grid_wall_seconds']:.1f} | {s['grid_train_seconds']:.1f} | "
            f"{s['grid_compile_seconds']:.1f} |",
            f"| {e2e['members']} solo runs, one after another | {s['sequential_wall_seconds']:.1f} "
            f"| {s['sequential_train_seconds']:.1f} | "
            f"{s['solo_compile_seconds_each'] * e2e['members']:.1f} |",
            f"| per solo run | {s['solo_wall_seconds_each']:.1f} | | "
            f"{s['solo_compile_seconds_each']:.1f} |",
        ]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split(
        "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (3 steps, 2 rounds, 3-member grid): checks the plumbing")
    p.add_argument("--only", default=",".join(FRAMEWORKS),
                   help="comma-separated frameworks to run: jax,keras,torch (default all)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps per timed epoch of the solo CNN (default 100; slow "
                        "cases use fewer)")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved timed rounds after the warm-up (default 7)")
    p.add_argument("--members", type=int, default=None, help="grid size (default 12)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cases", default=None,
                   help="comma-separated subset of the case names (default: all of --only's)")
    p.add_argument("--e2e-epochs", type=int, default=None,
                   help="epochs of each end-to-end run (default 2; 0 skips the end-to-end part)")
    p.add_argument("--peer-threads", type=int, default=None,
                   help="threads for the Keras/TF (intra-op) and PyTorch peers (default: TF's "
                        "own default, PyTorch = usable cores)")
    p.add_argument("--keras-jit-compile", choices=("auto", "true", "false"), default="auto",
                   help="Keras model.compile(jit_compile=...): XLA for the Keras peer (default "
                        "auto = Keras' default, no XLA on a CPU)")
    p.add_argument("--torch-channels-last", action="store_true",
                   help="PyTorch peer in channels-last memory format (model and batches)")
    p.add_argument("--out", default="benchmarks/results", help="folder for the JSON + Markdown")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds to wait for any one worker message (default 1800)")
    args = p.parse_args(argv)
    args.only = [f.strip() for f in args.only.split(",") if f.strip()]
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()] if args.cases else None
    unknown = set(args.only) - set(FRAMEWORKS)
    if unknown:
        p.error(f"--only: unknown framework(s) {sorted(unknown)}; valid: {', '.join(FRAMEWORKS)}")
    quick = args.quick
    args.steps = args.steps or (3 if quick else 100)
    args.repeats = args.repeats or (2 if quick else 7)
    args.members = args.members or (3 if quick else 12)
    args.e2e_epochs = (1 if quick else 2) if args.e2e_epochs is None else args.e2e_epochs
    args.timeout = args.timeout or (600.0 if quick else 1800.0)
    if args.steps < 1 or args.repeats < 1 or args.members < 1 or args.batch_size < 1:
        p.error("--steps, --repeats, --members and --batch-size must be positive")
    if args.peer_threads is not None and args.peer_threads < 1:
        p.error("--peer-threads must be positive")
    args.keras_jit_compile = {"auto": "auto", "true": True, "false": False}[
        args.keras_jit_compile]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark, writes ``bench-<date>.json`` + ``.md`` under ``--out``, prints it."""
    args = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    load_start = list(os.getloadavg())
    t0 = time.perf_counter()
    cases = build_cases(args)
    records, round_loads = run_interleaved(cases, args.repeats, args.timeout)
    e2e = None
    if "jax" in args.only and args.e2e_epochs > 0:
        e2e = run_e2e(e2e_case(args), args.timeout)
    summary = summarize(records, e2e, quick=args.quick, members=args.members)
    backend = next((r["setup"].get("backend") for r in records.values()
                    if r.get("setup", {}).get("backend")), None)
    result = {
        "schema": SCHEMA_VERSION,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python -m benchmarks.bench",
                             *(sys.argv[1:] if argv is None else list(argv))]),
        "quick": args.quick,
        "settings": {"steps": args.steps, "repeats": args.repeats, "members": args.members,
                     "batch_size": args.batch_size, "e2e_epochs": args.e2e_epochs,
                     "only": args.only, "cases": args.cases,
                     "peer_options": {"keras": peer_options(args, "keras"),
                                      "torch": peer_options(args, "torch")}},
        "machine": machine(),
        "versions": envinfo.versions(("jax", "jaxlib", "flax", "optax", "numpy", "tensorflow",
                                      "tensorflow-cpu", "keras", "torch")),
        "git_commit": envinfo.git_commit(short=True),
        "backend": backend,
        "load_average": {"start": load_start, "rounds": round_loads,
                         "end": list(os.getloadavg())},
        "wall_seconds": time.perf_counter() - t0,
        "cases": records,
        "e2e": e2e,
        "summary": summary,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench-" + started.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    markdown = to_markdown(result)
    (out / f"{stem}.md").write_text(markdown)
    print(markdown)
    print(f"[bench] wrote {out / stem}.json and .md")
    failed = [n for n, r in records.items() if r["status"] == "error"]
    if e2e is not None and e2e["status"] == "error":
        failed.append(e2e["name"])
    for name in failed:
        err = records[name]["error"] if name in records else e2e["error"]
        print(f"[bench] {name} failed: {err}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
