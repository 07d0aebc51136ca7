"""The measuring side of ``python -m benchmarks.bench``: one benchmark case per subprocess.

Each case runs in its own Python process (``python -m benchmarks.bench_workers CASE_JSON``), so
that JAX, TensorFlow and PyTorch never share a process: each framework gets its own thread
pools and its own memory high-water mark. The parent (:mod:`benchmarks.bench`) keeps every worker
alive for the whole run and drives them in *interleaved rounds* — it tells worker A to train one
timed epoch, then worker B, then A again — so that a change of machine load (a shared machine)
hits every case alike instead of whichever ran last.

Protocol (JSON lines; worker lines start with :data:`PREFIX`, anything else on stdout is noise
from the frameworks and is ignored):

* worker -> parent: ``{"event": "ready", ...setup facts}`` once warm (compiled and one
  untimed epoch run), then ``{"event": "result", "seconds": s, "images": n}`` per timed epoch,
  then ``{"event": "done", "rss_peak_mb": ..., ...}``; or ``{"event": "skipped", "reason": ..}``
  / ``{"event": "error", "message": ..}``.
* parent -> worker (stdin): ``run`` (train one timed epoch) or ``finish`` (stop and report).

A timed "epoch" is ``steps`` batches of ``batch_size`` images: a slice of MNIST's training set
(or synthetic digits when MNIST is not found), the same images for every framework.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

PREFIX = "@@jaxmnist-bench "

# S2-style grid: 3 optimizers x 4 learning rates (sweeps/s2.py), 12 members.
GRID_OPTIMIZERS = ("adam", "rmsprop", "sgd")
GRID_LEARNING_RATES = (0.1, 0.01, 0.001, 0.0001)
DIVERGING_LR = 1e4  # a case's "diverge" members: non-finite within the warm-up epoch


# --------------------------------------------------------------------------------------------
# Protocol helpers
# --------------------------------------------------------------------------------------------


def send(event: str, **fields: Any) -> None:
    """Writes one protocol line to stdout (flushed: the parent is waiting for it)."""
    sys.stdout.write(PREFIX + json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def wait_command() -> str:
    """Blocks until the parent sends a command; EOF (parent gone) counts as ``finish``."""
    line = sys.stdin.readline()
    return line.strip() or "finish"


def cpu_seconds() -> float:
    """User + system CPU seconds used so far by this process (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_peak_mb() -> float:
    """This process's resident-set high-water mark in MiB (``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


class EpochDriver:
    """Turns a framework's per-epoch hook into the run/finish protocol.

    The framework trains ``1 + repeats`` epochs; after epoch 1 (warm-up, untimed) the worker
    reports ``ready``; after each later epoch it reports the epoch's seconds. After every epoch
    it waits for the parent's next command, so nothing runs while another case is timed.
    """

    def __init__(self, images_per_epoch: int, setup: Callable[[], dict[str, Any]] | None = None):
        self.images = images_per_epoch
        self.setup = setup or dict
        self.epoch = 0
        self.finished = False
        self.cpu_mark = cpu_seconds()
        self.wall_mark = time.perf_counter()

    def after_epoch(self, seconds: float, images: int | None = None) -> None:
        """Called by the framework's loop after each epoch with its training seconds.

        ``images``: the images this epoch trained on, when not ``images_per_epoch`` (a grid
        whose diverged members were skipped).
        """
        if self.finished:  # told to stop: let the framework run out its epochs silently
            return
        self.epoch += 1
        # CPU seconds of all this process's threads since the parent said "run": on a shared
        # machine, wall time grows with other people's load, CPU time much less.
        cpu = cpu_seconds() - self.cpu_mark
        # Wall seconds over the SAME span as ``cpu`` (command to end of epoch): the bench's
        # stall check compares the two (benchmarks.bench.classify_rounds).
        wall = time.perf_counter() - self.wall_mark
        if self.epoch == 1:
            send("ready", warmup_epoch_seconds=seconds, **self.setup())
        else:
            send("result", seconds=seconds, images=self.images if images is None else images,
                 epoch=self.epoch,
                 cpu_seconds=cpu, wall_seconds=wall)
        command = wait_command()
        self.cpu_mark = cpu_seconds()
        self.wall_mark = time.perf_counter()
        if command != "run":
            self.finished = True


# --------------------------------------------------------------------------------------------
# Data (same images for every framework)
# --------------------------------------------------------------------------------------------


def load_data(n_train: int, n_test: int, seed: int = 0) -> tuple[dict[str, np.ndarray], str]:
    """The first ``n_train``/``n_test`` MNIST images (uint8 NHWC, int32 labels) and the source.

    MNIST comes from the IDX files (``$JAXMNIST_DATA_DIR``, no TensorFlow, no network); without
    them the benchmark still runs, on synthetic digits (speed does not depend on pixels).
    """
    from jaxmnist import data
    from jaxmnist.data import synthetic

    try:
        train_x, train_y = data.load_dataset("train", source="idx")
        test_x, test_y = data.load_dataset("test", source="idx")
        source = "mnist (idx files)"
    except (data.DataError, OSError, ValueError):
        n = min(max(n_train, 1), synthetic.SIZES["train"])  # repeated below when more are needed
        train_x, train_y = synthetic.make(n, "train", seed)
        test_x, test_y = synthetic.make(max(n_test, 1), "test", seed)
        source = "synthetic digits (MNIST not found)"
    if n_train > len(train_x):  # more steps than MNIST has images: repeat the set
        reps = -(-n_train // len(train_x))
        train_x, train_y = np.concatenate([train_x] * reps), np.concatenate([train_y] * reps)
    return {
        "train_x": np.ascontiguousarray(train_x[:n_train]),
        "train_y": np.asarray(train_y[:n_train], np.int32),
        "test_x": np.ascontiguousarray(test_x[:n_test]),
        "test_y": np.asarray(test_y[:n_test], np.int32),
    }, source


# --------------------------------------------------------------------------------------------
# jaxmnist cases
# --------------------------------------------------------------------------------------------


def member_config(
    model: dict[str, Any], epochs: int, batch: int, optimizer: str = "adam",
    learning_rate: float = 1e-3, strategy: str = "auto", seed: int = 0,
) -> dict[str, Any]:
    """One member config in the engine's format (docs/architecture.md)."""
    return {
        "model": dict(model),
        "optim": {"name": optimizer, "learning_rate": learning_rate},
        "reg": {"l1": 0.0, "l2": 0.0},
        "loss": "xent",
        "train": {"epochs": epochs, "batch_size": batch, "strategy": strategy},
        "seed": seed,
    }


def grid_configs(
    model: dict[str, Any], members: int, epochs: int, batch: int, strategy: str = "auto"
) -> list[dict[str, Any]]:
    """``members`` configs cycling through the S2 grid (optimizer-major, like sweeps/s2.py)."""
    cells = [(o, lr) for o in GRID_OPTIMIZERS for lr in GRID_LEARNING_RATES]
    if members < len(cells):
        # Small grids (--quick): one learning rate per optimizer first, so all 3 are present.
        cells = [(o, lr) for lr in GRID_LEARNING_RATES for o in GRID_OPTIMIZERS]
    return [
        member_config(model, epochs, batch, *cells[k % len(cells)], strategy=strategy)
        for k in range(members)
    ]


class _CompileClock:
    """Sums JAX's tracing, lowering and XLA compile durations while active (seconds)."""

    EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, event: str, duration: float, **kwargs: Any) -> None:
        if event in self.EVENTS:
            self.seconds += duration

    def __enter__(self) -> _CompileClock:
        import jax

        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        import jax

        jax.monitoring.unregister_event_duration_listener(self)


def step_cost(configs: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """FLOPs and bytes of ONE training step of one member, from XLA's cost analysis.

    Counted on the engine's own program (:func:`jaxmnist.engine.program.build_program`, what users
    run): one member per optimizer family in ``configs`` (so the step carries the group's union
    optimizer), ``vmap``-ed on one device, trained on exactly one batch of ``arrays``. The compiled
    epoch is then one step per member (XLA counts a loop's body once, so a longer epoch would still
    count one step; one batch makes that exact either way), plus the epoch's shuffle of one batch of
    indices. Divided by the members: forward, loss, backward, the union optimizer's update and the
    divergence guard of one member. XLA counts a matmul as 2*M*N*K FLOPs; elementwise work counts
    too (small here).
    """
    import jax

    from jaxmnist import models
    from jaxmnist.data import Splits
    from jaxmnist.engine.program import build_program

    batch = int(configs[0]["train"]["batch_size"])
    one_per_family: dict[str, dict[str, Any]] = {}
    for cfg in configs:
        one_per_family.setdefault(cfg["optim"]["name"], cfg)
    members = []
    for cfg in one_per_family.values():
        member = json.loads(json.dumps(cfg))
        member["train"].update(strategy="vmap", epochs=1)
        members.append(member)
    x, y = arrays["train_x"][:batch], arrays["train_y"][:batch]
    splits = Splits(x, y, None, None, x[:1], y[:1])
    prog = build_program(members, splits, devices=jax.devices()[:1])
    cost = prog.epoch_exec.cost_analysis()
    if isinstance(cost, list | tuple):  # older JAX: one dict per partition
        cost = cost[0] if cost else {}
    cost = cost or {}
    per_member = 1.0 / len(members)
    flops = float(cost.get("flops", 0.0)) * per_member
    params = jax.tree_util.tree_map(lambda leaf: leaf[0], prog.init_state.params)
    return {
        "flops_per_step": flops,
        "flops_per_image": flops / batch,
        "bytes_accessed_per_step": float(cost.get("bytes accessed", 0.0)) * per_member,
        "param_count": models.param_count(params),
    }


def run_jax_engine(case: dict[str, Any]) -> None:
    """A solo run or a grid through ``engine.fit.train_grid``, one timed epoch per ``run``."""
    from types import SimpleNamespace

    import jax

    from jaxmnist import models
    from jaxmnist.data import Splits
    from jaxmnist.engine.fit import train_grid
    from jaxmnist.runs.results import member_status

    batch, steps, members = case["batch_size"], case["steps"], case.get("members", 1)
    epochs = 1 + case["repeats"]
    arrays, source = load_data(steps * batch, case["test_images"])
    splits = Splits(arrays["train_x"], arrays["train_y"], None, None,
                    arrays["test_x"], arrays["test_y"])
    if members == 1:
        configs = [member_config(case["model"], epochs, batch, strategy=case.get("strategy",
                                                                              "auto"))]
    else:
        configs = grid_configs(case["model"], members, epochs, batch, case.get("strategy", "auto"))
    for k in case.get("diverge", ()):  # members made to diverge in the warm-up epoch
        configs[k]["optim"]["learning_rate"] = DIVERGING_LR
    if case.get("layout") == "contiguous":  # the layout before member_layout, for comparison
        from jaxmnist.engine import placement

        placement.member_layout = lambda rates, n_padded, n_devices: np.arange(n_padded)
    # "devices": train on the first N devices (default: the engine's choice)
    devices = jax.devices()[: case["devices"]] if case.get("devices") else None
    cost = step_cost(configs, arrays)
    n_train = len(arrays["train_x"])
    clock = _CompileClock()

    def setup() -> dict[str, Any]:
        return {
            "compile_seconds": clock.seconds,
            "data": source,
            "backend": jax.default_backend(),
            "device": str(jax.devices()[0].device_kind),
            "device_count": jax.device_count(),
            "devices_used": case.get("devices"),
            "conv_impl": models.resolve_conv_impl(case["model"].get("conv_impl", "auto")),
            **cost,
        }

    driver = EpochDriver(members * n_train, setup)
    # An epoch counts the images of the members alive at its start: the rate is useful work.
    # Members frozen by divergence skip their epochs in the sequential strategy; vmap still
    # computes them (and discards the result).
    alive = [True] * members

    def on_epoch_end(group: int, epoch: int, metrics: list[dict[str, Any]], info: Any) -> None:
        if epoch == 1:
            clock.__exit__()  # compile happens before epoch 1; stop counting there
        trained = sum(alive) * n_train
        alive[:] = [bool(m["alive"]) for m in metrics]
        driver.after_epoch(info.train_seconds, images=trained)

    clock.__enter__()
    results = train_grid(configs, splits, None, devices=devices,
                         callbacks=[SimpleNamespace(on_epoch_end=on_epoch_end)])
    stats = results[0].group
    send(
        "done",
        rss_peak_mb=rss_peak_mb(),
        strategy=stats.strategy,
        devices=stats.devices,
        engine_compile_seconds=stats.compile_seconds,
        statuses=[member_status(r.alive, r.test_pred)[0] for r in results],
        device_memory=_device_memory(),
    )


def reference_step(model_cfg: Mapping[str, Any], *, learning_rate: float = 1e-3,
                   loss: str = "xent") -> tuple[Callable, Callable]:
    """The bare training step: the model, ``value_and_grad`` of the loss and ``optax.adam``.

    The one hand-written JAX training step of the benchmarks, kept on purpose as the
    reference the engine is measured against: no union optimizer, no shuffling, no
    zero-weight padding, no divergence guard, no metrics. ``jax_cnn_bare_step`` (bench case)
    and :func:`measure_train_throughput` use it; every other JAX measurement runs the engine's
    own program (:func:`jaxmnist.engine.program.build_program` / ``train_grid``). Adam's epsilon is
    Keras' (1e-7), as in the engine and the peers.

    Returns:
        ``(init, step)``: ``init(key) -> carry``; ``step(carry, x, y) -> (carry, loss)`` with
        ``carry = (params, opt_state, key)``.
    """
    import jax
    import optax

    from jaxmnist import models
    from jaxmnist.engine import losses

    model = models.build(dict(model_cfg))
    loss_fn = losses.get_loss(loss)
    opt = optax.adam(learning_rate, eps=1e-7)

    def step(carry, x, y):
        params, opt_state, key = carry
        key, sub = jax.random.split(key)

        def objective(p):
            return loss_fn(model.apply(p, {}, x, train=True, key=sub)[0], y)

        value, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, key), value

    def init(key):
        params, _ = model.init(key)  # the zoo: state is {}
        return params, opt.init(params), jax.random.fold_in(key, 1)

    return init, step


def run_jax_step(case: dict[str, Any]) -> None:
    """The bare training step (:func:`reference_step`) in a ``lax.scan``, no engine around it.

    Shows what the engine's per-member extras cost (union optimizer, shuffling, the divergence
    guard): compare with the solo engine case (ratio ``engine_solo_over_bare_step``).
    """
    import jax
    import jax.numpy as jnp

    batch, steps = case["batch_size"], case["steps"]
    arrays, source = load_data(steps * batch, 1)
    init, step = reference_step(case["model"])
    xs = jnp.asarray(arrays["train_x"].reshape(steps, batch, 28, 28, 1))
    ys = jnp.asarray(arrays["train_y"].reshape(steps, batch))
    epoch = jax.jit(lambda c, xs, ys: jax.lax.scan(lambda c, xy: step(c, *xy), c, (xs, ys)),
                    donate_argnums=0)
    carry = init(jax.random.PRNGKey(0))
    with _CompileClock() as clock:
        t0 = time.perf_counter()
        carry, loss = epoch(carry, xs, ys)
        jax.block_until_ready(loss)
    first = time.perf_counter() - t0
    driver = EpochDriver(steps * batch, lambda: {"compile_seconds": clock.seconds,
                                                 "data": source})
    driver.after_epoch(first)
    while not driver.finished:
        t0 = time.perf_counter()
        carry, loss = epoch(carry, xs, ys)
        jax.block_until_ready(loss)
        driver.after_epoch(time.perf_counter() - t0)
    send("done", rss_peak_mb=rss_peak_mb(), device_memory=_device_memory())


def run_jax_peak(case: dict[str, Any]) -> None:
    """The machine's fp32 matmul rate: a big ``jnp.dot``, best of a few per ``run``."""
    import jax
    import jax.numpy as jnp

    # Big enough to reach the matmul peak: 2048^2 (17 GFLOP) on a CPU, 8192^2 on an accelerator.
    n = case.get("matmul_size") or (2048 if jax.default_backend() == "cpu" else 8192)
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    flops = 2.0 * n**3
    calls = case.get("calls", 5)

    def best_of(call: Callable[[], None]) -> float:
        """The fastest of ``calls`` timed calls, in seconds."""
        best = float("inf")
        for _ in range(calls):
            t0 = time.perf_counter()
            call()
            best = min(best, time.perf_counter() - t0)
        return best

    def timed() -> float:
        return best_of(lambda: dot(a, b).block_until_ready())

    # Memory bandwidth for the roofline: y = x/2 + 1/2 over a 128 MB (CPU) array reads and writes
    # each byte once (256 MB moved per call), far beyond any cache.
    m = case.get("stream_floats") or (32 * 2**20 if jax.default_backend() == "cpu" else 2**28)
    # The input is donated and the result fed back: the same buffer every call, so the time is
    # memory traffic, not the page faults of a fresh 128 MB output.
    axpy = jax.jit(lambda v: 0.5 * v + 0.5, donate_argnums=0)
    x = axpy(jnp.ones((m,), jnp.float32)).block_until_ready()
    stream_bytes = 2.0 * 4 * m

    def stream_once() -> None:
        nonlocal x
        x = axpy(x).block_until_ready()

    def timed_stream() -> float:
        return best_of(stream_once)

    send("ready", warmup_epoch_seconds=timed(), matmul_size=n, flops_per_call=flops,
         stream_bytes_per_call=stream_bytes)
    while wait_command() == "run":
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        seconds = timed()
        stream_seconds = timed_stream()
        send("result", seconds=seconds, images=0, gflops=flops / seconds / 1e9,
             stream_gbps=stream_bytes / stream_seconds / 1e9,
             cpu_seconds=cpu_seconds() - cpu0, wall_seconds=time.perf_counter() - wall0)
    send("done", rss_peak_mb=rss_peak_mb(), device_memory=_device_memory())


def run_jax_e2e(case: dict[str, Any]) -> None:
    """Grid vs the same members run one after another, end to end (what a user waits for).

    Order grid, 12 solos, grid (the two grid runs bracket the solos, so a drift of machine
    load between the first and the last run shows and averages out). Every run is a full
    ``train_grid`` call: tracing and compiling, training, evaluation on the test images.
    """
    from jaxmnist.data import Splits
    from jaxmnist.engine.fit import train_grid

    batch, steps, members, epochs = (case["batch_size"], case["steps"], case["members"],
                                     case["epochs"])
    arrays, source = load_data(steps * batch, case["test_images"])
    splits = Splits(arrays["train_x"], arrays["train_y"], None, None,
                    arrays["test_x"], arrays["test_y"])
    configs = grid_configs(case["model"], members, epochs, batch, case.get("strategy", "auto"))
    send("ready", data=source, warmup_epoch_seconds=0.0)
    if wait_command() != "run":
        send("done", rss_peak_mb=rss_peak_mb())
        return

    def timed(cfgs: list[dict[str, Any]]) -> dict[str, Any]:
        t0 = time.perf_counter()
        out = train_grid(cfgs, splits, None)
        wall = time.perf_counter() - t0
        stats = out[0].group
        return {"wall_seconds": wall, "compile_seconds": stats.compile_seconds,
                "train_seconds": stats.train_seconds, "strategy": stats.strategy,
                "test_acc": [r.test_acc for r in out]}

    grid_runs = [timed(configs)]
    solo_runs = [timed([cfg]) for cfg in configs]
    grid_runs.append(timed(configs))
    send("result", seconds=sum(r["wall_seconds"] for r in solo_runs), images=0,
         grid_runs=grid_runs, solo_runs=solo_runs, data=source)
    wait_command()
    send("done", rss_peak_mb=rss_peak_mb(), device_memory=_device_memory())


def _device_memory() -> dict[str, Any] | None:
    """Peak accelerator memory in MiB where the backend reports it (GPU/TPU), else None."""
    import jax

    stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], "memory_stats") else None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return {"peak_mb": stats["peak_bytes_in_use"] / 2**20}


# --------------------------------------------------------------------------------------------
# Keras 3 on TensorFlow
# --------------------------------------------------------------------------------------------


def run_keras(case: dict[str, Any]) -> None:
    """S0's CNN in Keras 3 (TensorFlow backend), ``model.fit`` as the papers trained it.

    Same architecture (conv32-pool-conv64-pool-dense128-dense10, 225,034 params), Adam
    (lr 1e-3, Keras defaults), sparse categorical cross-entropy on logits, batch 64, shuffled,
    on the same images scaled uint8 -> float32 / 255 on the host (the papers' preprocessing).
    Keras' defaults on a CPU-only machine: TF graph mode, no XLA (``jit_compile="auto"``
    resolves to False without an accelerator), oneDNN kernels.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras
        import tensorflow as tf
    except ImportError as e:
        send("skipped", reason=f"TensorFlow/Keras not installed ({e})")
        return
    if keras.backend.backend() != "tensorflow":
        send("skipped", reason=f"Keras backend is {keras.backend.backend()!r}, not tensorflow")
        return
    opts = case.get("peer_options") or {}
    if opts.get("threads"):  # before any TF op runs (TF fixes its pools at first use)
        tf.config.threading.set_intra_op_parallelism_threads(opts["threads"])
    batch, steps = case["batch_size"], case["steps"]
    arrays, source = load_data(steps * batch, 1)
    x = arrays["train_x"].astype(np.float32) / np.float32(255.0)
    y = arrays["train_y"]
    keras.utils.set_random_seed(0)
    net = keras_s0_cnn(keras)
    net.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=opts.get("jit_compile", "auto"),
    )
    driver = EpochDriver(len(x), lambda: {
        "data": source, "param_count": int(net.count_params()),
        "jit_compile": bool(getattr(net, "jit_compile", False)),
        # 0 = TF's own default pool size
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "devices": [d.device_type for d in tf.config.list_physical_devices()],
    })

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            driver.after_epoch(time.perf_counter() - self.t0)
            if driver.finished:
                self.model.stop_training = True

    net.fit(x, y, batch_size=batch, epochs=1 + case["repeats"], shuffle=True, verbose=0,
            callbacks=[Timer()])
    send("done", rss_peak_mb=rss_peak_mb())


# --------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------


def run_torch(case: dict[str, Any]) -> None:
    """S0's CNN in PyTorch: a plain training loop, Adam (eps 1e-7 as Keras), batch 64, shuffled.

    ``torch.set_num_threads`` = the cores this process may use. On a GPU machine it trains on
    CUDA (and synchronises before reading the clock).
    """
    try:
        import torch
        from torch import nn
    except ImportError as e:
        send("skipped", reason=f"PyTorch not installed ({e})")
        return
    opts = case.get("peer_options") or {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(opts.get("threads") or cores or 1)
    # channels-last (NHWC in memory) lets oneDNN's convolutions skip layout reorders.
    fmt = torch.channels_last if opts.get("channels_last") else torch.contiguous_format
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch, steps = case["batch_size"], case["steps"]
    arrays, source = load_data(steps * batch, 1)
    # NCHW float32 in [0, 1], on the device once (like jaxmnist's dataset on the device).
    x = torch.from_numpy(arrays["train_x"]).permute(0, 3, 1, 2).float().div_(255.0).to(device)
    y = torch.from_numpy(arrays["train_y"]).long().to(device)
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10),
    ).to(device)
    if fmt is torch.channels_last:
        net = net.to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    n = len(x)

    def epoch() -> float:
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        order = torch.randperm(n, device=device)
        for s in range(steps):
            idx = order[s * batch:(s + 1) * batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x[idx].contiguous(memory_format=fmt)), y[idx])
            loss.backward()
            opt.step()
        sync()
        return time.perf_counter() - t0

    driver = EpochDriver(n, lambda: {
        "data": source, "threads": torch.get_num_threads(), "device": str(device),
        "channels_last": fmt is torch.channels_last,
        "param_count": sum(p.numel() for p in net.parameters()),
    })
    while not driver.finished:
        driver.after_epoch(epoch())
    send("done", rss_peak_mb=rss_peak_mb())


RUNNERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "jax_engine": run_jax_engine,
    "jax_step": run_jax_step,
    "jax_peak": run_jax_peak,
    "jax_e2e": run_jax_e2e,
    "keras": run_keras,
    "torch": run_torch,
}


def main(argv: list[str] | None = None) -> int:
    """Runs the case given as a JSON argument; reports errors through the protocol."""
    argv = sys.argv[1:] if argv is None else argv
    case = json.loads(argv[0])
    try:
        RUNNERS[case["runner"]](case)
    except Exception as e:  # noqa: BLE001 - any failure is reported, the bench goes on
        send("error", message=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        return 1
    return 0




def keras_s0_cnn(keras: Any) -> Any:
    """S0's CNN in Keras (logits out; the softmax is in the loss), for the bench and the oracle."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10),
        ]
    )


# --------------------------------------------------------------------------------------------
# Speed probe of one model's train step (docs/models.md; tests/test_bench.py checks it runs)
# --------------------------------------------------------------------------------------------


def measure_train_throughput(
    model_cfg: Mapping[str, Any],
    *,
    batch_size: int = 64,
    members: int = 1,
    shared_batch: bool = False,
    steps: int = 20,
    repeats: int = 3,
    learning_rate: float = 1e-3,
    loss: str = "xent",
    seed: int = 0,
    scan: bool = True,
) -> dict[str, Any]:
    """Times the bare reference step (:func:`reference_step`) on random uint8 images.

    Not the engine: this is the conv-implementation probe of docs/models.md (solo or
    ``vmap``-ed, scanned or a Python loop of jitted steps, which the engine never runs), on
    the deliberately minimal step; the engine's rate is the bench's ``jaxmnist_*`` cases.

    By default the steps run inside one ``lax.scan`` (as the grid engine runs an epoch), so
    per-step Python dispatch is not measured; ``scan=False`` instead calls a jitted single step
    from a Python loop (what a Keras-style host loop does). The two can rank the conv
    implementations differently on XLA:CPU (docs/models.md). With ``members > 1`` the step is
    ``jax.vmap``-ed over a stack of params/optimizer states/dropout keys — a grid of
    ``members`` models as one program.

    Args:
        model_cfg: a model config for :func:`jaxmnist.models.build`.
        batch_size: images per step per member.
        members: grid size; 1 = a solo (non-vmapped) step.
        shared_batch: vmapped members see the same images (images not batched over members).
        steps: steps per timed call.
        repeats: timed calls after one warm-up (compile) call.
        learning_rate: Adam learning rate.
        loss: loss name for :func:`jaxmnist.engine.losses.get_loss`.
        seed: PRNG seed.
        scan: run the steps in one ``lax.scan`` (True) or a Python loop of jitted steps.

    Returns:
        dict with ``images_per_s`` (best repeat, all members together), ``images_per_s_median``,
        ``compile_s``, ``step_ms`` (best), ``times_s`` (all repeats) and the settings.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    init, step = reference_step(model_cfg, learning_rate=learning_rate, loss=loss)
    rng = np.random.default_rng(seed)
    lead = (steps,) if (members == 1 or shared_batch) else (steps, members)
    xs = jnp.asarray(rng.integers(0, 256, lead + (batch_size, 28, 28, 1), np.uint8))
    ys = jnp.asarray(rng.integers(0, 10, lead + (batch_size,), np.int32))
    if members > 1 and shared_batch:
        ys = jnp.broadcast_to(ys[:, None], (steps, members, batch_size))

    keys = jax.random.split(jax.random.PRNGKey(seed), members)
    if members == 1:
        carry = init(keys[0])
        body = step
    else:
        carry = jax.vmap(init)(keys)
        body = jax.vmap(step, in_axes=(0, None if shared_batch else 0, 0))

    def scan_run(carry, xs, ys):
        def scan_body(c, xy):
            return body(c, *xy)

        return lax.scan(scan_body, carry, (xs, ys))

    if scan:
        run = jax.jit(scan_run, donate_argnums=0)
    else:
        one = jax.jit(body, donate_argnums=0)
        batches = [(xs[i], ys[i]) for i in range(steps)]  # sliced once, outside the timing

        def run(carry, xs, ys):
            out = []
            for x, y in batches:
                carry, value = one(carry, x, y)
                out.append(value)
            return carry, out

    t0 = time.perf_counter()
    carry, losses = run(carry, xs, ys)
    jax.block_until_ready(losses)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        carry, losses = run(carry, xs, ys)
        jax.block_until_ready(losses)
        times.append(time.perf_counter() - t0)
    images = steps * batch_size * members
    return {
        "model": dict(model_cfg),
        "batch_size": batch_size,
        "members": members,
        "shared_batch": shared_batch,
        "scan": scan,
        "steps": steps,
        "images_per_s": images / min(times),
        "images_per_s_median": images / float(np.median(times)),
        "step_ms": 1e3 * min(times) / steps,
        "compile_s": compile_s,
        "times_s": times,
        "backend": jax.default_backend(),
    }


if __name__ == "__main__":
    sys.exit(main())
