"""jaxmnist's grid against Flax's own training loop: same model, batch and optimizer, one run.

Issue 32's measurement. Every case runs in a fresh process with JAX's defaults, on the same
synthetic digits (no files needed), and the rounds alternate the cases so that machine load
hits them alike:

- ``loop:resnet18``: Flax's ``examples/imagenet/models.py`` (the file itself, sha256 checked)
  trained the way Flax's imagenet example does: ``jax.pmap`` over the device with
  ``axis_name='batch'``, mutable ``batch_stats``, ``optax.sgd(0.05, momentum=0.9)``, batch 64.
- ``loop:mnist_cnn``: Flax's ``examples/mnist`` CNN in Flax's NNX loop (``nnx.Optimizer``,
  ``nnx.jit`` train step), the same optimizer, batch 128.
- ``grid:<model>``: ``jm.grid`` (the path a user takes) of G members of the same file, the same
  batch and optimizer: member-images per second = G x images / training seconds (compile apart).
- ``grid:user_cnn`` / ``grid:zoo_cnn``: the example CNN without BatchNorm and the zoo's S0 CNN
  through ``jm.grid``, as GFLOP/s counted on each native model's plain train step (XLA's cost
  analysis), whatever the engine rewrote.

Command (results under ``--out``)::

    python -m benchmarks.flax_loop --rounds 2 --out benchmarks/results/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GRID_MEMBERS = 4  # G: the grid trains G models in the time the loop trains them one by one
IMAGES = {"resnet18": 1024, "mnist_cnn": 2048, "user_cnn": 2048, "zoo_cnn": 2048}
BATCH = {"resnet18": 64, "mnist_cnn": 128, "user_cnn": 128, "zoo_cnn": 128}
LR, MOMENTUM = 0.05, 0.9

# Flax's examples/mnist CNN without its BatchNorm layers: a plain user conv net.
USER_CNN = '''
from functools import partial

from flax import nnx


class CNN(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
    self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
    self.linear1 = nnx.Linear(3136, 256, rngs=rngs)
    self.linear2 = nnx.Linear(256, 10, rngs=rngs)

  def __call__(self, x):
    x = self.avg_pool(nnx.relu(self.conv1(x)))
    x = self.avg_pool(nnx.relu(self.conv2(x)))
    x = x.reshape(x.shape[0], -1)
    return self.linear2(nnx.relu(self.linear1(x)))
'''


def _model_files(folder: Path) -> dict[str, str]:
    """Writes Flax's files (kept as text in tests/user_models.py) and the user CNN."""
    sys.path.insert(0, str(ROOT / "tests"))
    import user_models

    files = {"resnet18": ("models.py", user_models.FLAX_IMAGENET_MODELS, "ResNet18"),
             "mnist_cnn": ("flax_cnn.py", user_models.FLAX_EXAMPLE_CNN, "CNN"),
             "user_cnn": ("user_cnn.py", USER_CNN, "CNN")}
    out = {}
    for name, (file, text, attr) in files.items():
        path = user_models.write(folder, file, text)
        out[name] = f"{path}:{attr}"
    digest = hashlib.sha256(Path(out["resnet18"].rpartition(":")[0]).read_bytes()).hexdigest()
    assert digest == user_models.FLAX_IMAGENET_MODELS_SHA256, "Flax's file changed"
    return out


def _images(n: int) -> tuple[Any, Any]:
    from jaxmnist.data import synthetic

    x, y = synthetic.full_split("train")
    return x[:n], y[:n]


def _import(spec: str) -> Any:
    import importlib.util

    path, _, attr = spec.rpartition(":")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, attr)


def loop_resnet18(spec: str, n: int, batch: int) -> dict[str, Any]:
    """Flax's imagenet loop on the ResNet18 of Flax's file: pmap, batch_stats, momentum SGD."""
    import jax
    import jax.numpy as jnp
    import optax

    model = _import(spec)(num_classes=10)
    x_all, y_all = _images(n)
    variables = jax.jit(lambda k: model.init(k, jnp.ones((1, 28, 28, 1)), train=False))(
        jax.random.PRNGKey(0))
    tx = optax.sgd(LR, momentum=MOMENTUM)
    state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))

    def step(state, images, labels):
        params, stats, opt = state

        def loss_fn(p):
            logits, new = model.apply({"params": p, "batch_stats": stats}, images, train=True,
                                      mutable=["batch_stats"])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, new["batch_stats"]

        grads, new_stats = jax.grad(loss_fn, has_aux=True)(params)
        grads = jax.lax.pmean(grads, "batch")
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), new_stats, opt

    p_step = jax.pmap(step, axis_name="batch")
    state = jax.tree_util.tree_map(lambda a: a[None], state)  # replicated over the one device
    return _time_loop(lambda s, xb, yb: p_step(s, xb[None], yb[None]), state, x_all, y_all,
                      batch)


def loop_mnist_cnn(spec: str, n: int, batch: int) -> dict[str, Any]:
    """Flax's examples/mnist loop (NNX): nnx.Optimizer, nnx.jit train step, momentum SGD."""
    import jax.numpy as jnp
    import optax
    from flax import nnx

    model = _import(spec)(rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(LR, momentum=MOMENTUM), wrt=nnx.Param)
    rngs = nnx.Rngs(1)
    x_all, y_all = _images(n)

    def loss_fn(model, images, labels, rngs):  # as Flax's train.py: rngs an argument
        logits = model(images, rngs)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @nnx.jit
    def train_step(model, optimizer, rngs, images, labels):
        grads = nnx.grad(loss_fn)(model, images, labels, rngs)
        optimizer.update(model, grads)

    def step(state, xb, yb):  # returns a parameter, so the clock waits for the step
        train_step(model, optimizer, rngs, jnp.asarray(xb), jnp.asarray(yb))
        return model.linear2.kernel[...]

    return _time_loop(step, None, x_all, y_all, batch)


def _time_loop(step: Any, state: Any, x_all: Any, y_all: Any, batch: int) -> dict[str, Any]:
    """Two warm-up steps (compile), then one epoch over the images; images per second."""
    import jax
    import numpy as np

    images = (x_all.astype(np.float32) / 255.0)
    labels = y_all.astype(np.int32)
    t0 = time.perf_counter()
    for i in range(2):
        state = step(state, images[i * batch:(i + 1) * batch], labels[i * batch:(i + 1) * batch])
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    steps = len(images) // batch
    t0 = time.perf_counter()
    for i in range(steps):
        state = step(state, images[i * batch:(i + 1) * batch], labels[i * batch:(i + 1) * batch])
    jax.block_until_ready(state)
    seconds = time.perf_counter() - t0
    return {"images_per_second": steps * batch / seconds, "seconds": seconds,
            "compile_seconds": compile_s}


def grid(model: dict[str, Any], n: int, batch: int) -> dict[str, Any]:
    """``jm.grid`` of :data:`GRID_MEMBERS` seeds of one model: member-images per second."""
    import jaxmnist as jm

    with tempfile.TemporaryDirectory() as tmp:
        run = jm.grid(model=model, optimizers={"momentum": [LR]}, seeds=GRID_MEMBERS, epochs=1,
                      batch_size=batch, synthetic=True, progress=False,
                      data={"split": "none", "train_limit": n, "test_limit": 256},
                      workdir=Path(tmp) / "run")
        groups = json.loads((Path(run.path) / "results.json").read_text())["groups"]
    (g,) = groups
    return {"images_per_second": g["images_per_second"], "seconds": g["train_seconds"],
            "compile_seconds": g["compile_seconds"], "members": g["members"],
            "devices": g["devices"], "strategy": g["strategy"]}


def flops_per_image(model: dict[str, Any], batch: int) -> float:
    """FLOPs of one plain (not rewritten) training step of the native model, per image."""
    import jax
    import jax.numpy as jnp
    import optax

    from jaxmnist import models

    m = models.build({**model, "cpu_convs": False} if ":" in model["name"] else
                     {**model, "conv_impl": "lax"})
    params, state = m.init(jax.random.PRNGKey(0))
    tx = optax.sgd(LR, momentum=MOMENTUM)
    x, y = jnp.zeros((batch, 28, 28, 1), jnp.uint8), jnp.zeros((batch,), jnp.int32)

    def step(params, opt):
        def loss_fn(p):
            logits, _ = m.apply(p, state, x, train=True, key=jax.random.PRNGKey(0))
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        updates, opt = tx.update(jax.grad(loss_fn)(params), opt, params)
        return optax.apply_updates(params, updates), opt

    cost = jax.jit(step).lower(params, tx.init(params)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]) / batch


def run_case(case: str, files: dict[str, str]) -> dict[str, Any]:
    """One case in this process (the parent starts a fresh one per case)."""
    kind, name = case.split(":")
    n, batch = IMAGES[name], BATCH[name]
    if kind == "loop":
        return (loop_resnet18 if name == "resnet18" else loop_mnist_cnn)(files[name], n, batch)
    model = ({"name": "cnn"} if name == "zoo_cnn" else
             {"name": files[name], **({"num_classes": 10} if name == "resnet18" else {})})
    out = grid(model, n, batch)
    if name in ("user_cnn", "zoo_cnn"):
        out["flops_per_image"] = flops_per_image(model, batch)
        out["gflops"] = out["flops_per_image"] * out["images_per_second"] / 1e9
    return out


CASES = ("loop:resnet18", "grid:resnet18", "loop:mnist_cnn", "grid:mnist_cnn", "grid:user_cnn",
         "grid:zoo_cnn")


def main(argv: list[str] | None = None) -> int:
    """Runs the measurement and writes its JSON (and Markdown) under ``--out``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--out", default="benchmarks/results/")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    p.add_argument("--files", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, json.loads(args.files))))
        return 0
    import jax

    with tempfile.TemporaryDirectory() as tmp:
        files = _model_files(Path(tmp))
        rows = []
        load = [os.getloadavg()[0]]
        for r in range(args.rounds):
            for case in args.cases.split(","):
                proc = subprocess.run(
                    [sys.executable, "-m", "benchmarks.flax_loop", "--case", case, "--files",
                     json.dumps(files)], capture_output=True, text=True, cwd=ROOT)
                if proc.returncode:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"case {case} failed")
                rows.append({"round": r + 1, "case": case,
                             **json.loads(proc.stdout.strip().splitlines()[-1])})
                print(json.dumps(rows[-1]), file=sys.stderr)
        load.append(os.getloadavg()[0])
    med = {c: statistics.median(x["images_per_second"] for x in rows if x["case"] == c)
           for c in dict.fromkeys(x["case"] for x in rows)}
    gflops = {c: statistics.median(x["gflops"] for x in rows if x["case"] == c)
              for c in med if c in ("grid:user_cnn", "grid:zoo_cnn")}
    ratio = lambda a, b: med[a] / med[b] if a in med and b in med else None  # noqa: E731
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": platform.processor(),
        "cores": os.cpu_count(), "load_start_end": load, "jax": jax.__version__,
        "grid_members": GRID_MEMBERS, "images": IMAGES, "batch": BATCH, "rows": rows,
        "median_images_per_second": med, "median_gflops": gflops,
        "ratios": {
            "resnet18_grid_over_flax_loop": ratio("grid:resnet18", "loop:resnet18"),
            "mnist_cnn_grid_over_flax_loop": ratio("grid:mnist_cnn", "loop:mnist_cnn"),
            "user_cnn_over_zoo_gflops": (gflops["grid:user_cnn"] / gflops["grid:zoo_cnn"]
                                         if len(gflops) == 2 else None)}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"flax-loop-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["ratios"], indent=1))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
