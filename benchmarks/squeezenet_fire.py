"""SqueezeNet fire-module variants timed side by side in one process (issue 21, lever 3).

Each variant is SqueezeNet's apply with another fire-module expand; all share the parameters.
A training loop (Adam 1e-3, batch 64, dropout on, ``lax.scan`` over ``--steps`` batches) is
compiled per variant, then the variants run interleaved for ``--rounds`` rounds; the script
prints ms/step per round, the ratio to the current code per round and of medians, the % of
the matmul peak (XLA's FLOPs of the current code's step over the measured 2048^2 matmul rate,
as the bench computes it) and each variant's largest output difference from the current code.

    PYTHONPATH=. python benchmarks/squeezenet_fire.py --steps 10 --rounds 7  # from the root
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxmnist import models
from jaxmnist.models import layers, squeezenet
from jaxmnist.models.common import dropout, to_unit_float


def _fire_current(f, sq):
    def conv_relu(p, h):
        return jax.nn.relu(layers.conv2d(h, p["w"], padding="same") + p["b"])

    return jnp.concatenate([conv_relu(f["expand1x1"], sq), conv_relu(f["expand3x3"], sq)], -1)


def _fire_combined_kernel(f, sq):
    # expand1x1 as the centre tap of a [3, 3, s, 2e] kernel: one matmul, 1.8x the FLOPs.
    w1, w3 = f["expand1x1"]["w"], f["expand3x3"]["w"]
    wc = jnp.concatenate([jnp.pad(w1, ((1, 1), (1, 1), (0, 0), (0, 0))), w3], -1)
    b = jnp.concatenate([f["expand1x1"]["b"], f["expand3x3"]["b"]])
    return jax.nn.relu(layers.conv2d(sq, wc, padding="same") + b)


# --------------------------------------------------------------------------------------------
# SqueezeNet's fire expand: two convolutions side by side, one output (a variant measured
# here, not used by the library: docs/performance.md, issue 21)
# --------------------------------------------------------------------------------------------


@jax.custom_vjp
def fire_expand(sq: jax.Array, w1: jax.Array, w3: jax.Array, b: jax.Array) -> jax.Array:
    """``relu(concat(conv1x1(sq, w1), conv3x3_same(sq, w3)) + b)`` with a hand-written VJP.

    Equal to SqueezeNet's two expands, each with its own bias and ReLU, concatenated on
    channels (``b`` is the two biases concatenated). Forward: the two im2col matmuls, then ONE
    bias + ReLU pass over the concatenated map. Backward: ONE ReLU mask on the concatenated
    gradient, read off the saved output (``out > 0``, the same as ``pre-activation > 0``) — the
    output is the next layer's input, so nothing else is kept — and the expand1x1 input
    gradient added to the 3x3's col2im result. Autodiff instead kept both pre-activations,
    masked each branch separately and concatenated their gradients.

    Args:
        sq: The squeeze output ``[B, H, W, s]`` (after its ReLU).
        w1: The expand1x1 kernel ``[1, 1, s, e1]``.
        w3: The expand3x3 kernel ``[3, 3, s, e3]``.
        b: The two biases concatenated, ``[e1 + e3]``.

    Returns:
        ``[B, H, W, e1 + e3]``.
    """
    return _fire_expand_fwd(sq, w1, w3, b)[0]


def _fire_expand_fwd(sq: jax.Array, w1: jax.Array, w3: jax.Array, b: jax.Array):
    s, e1 = w1.shape[2], w1.shape[3]
    y1 = jnp.dot(sq, w1.reshape(s, e1))
    y3 = layers.conv2d(sq, w3, padding="same")
    out = jax.nn.relu(jnp.concatenate([y1, y3], -1) + b)
    return out, (sq, w1, w3, out)


def _fire_expand_bwd(res, g: jax.Array):
    sq, w1, w3, out = res
    s, e1 = w1.shape[2], w1.shape[3]
    g = jnp.where(out > 0, g, jnp.zeros((), g.dtype))
    db = g.sum(axis=(0, 1, 2))
    g1, g3 = g[..., :e1], g[..., e1:]
    rows1 = g1.reshape(-1, e1)
    dw1 = lax.dot_general(sq.reshape(-1, s), rows1, (((0,), (0,)), ((), ())))
    # The 3x3's own backward (its custom VJP; the unused forward is dropped by XLA).
    d3, dw3 = jax.vjp(lambda x, w: layers.conv2d(x, w, padding="same"), sq, w3)[1](g3)
    d_sq = d3 + lax.dot_general(
        g1, w1.reshape(s, e1), (((3,), (1,)), ((), ())))
    return d_sq, dw1.reshape(w1.shape), dw3, db


fire_expand.defvjp(_fire_expand_fwd, _fire_expand_bwd)


def _fire_fused(f, sq):
    return fire_expand(sq, f["expand1x1"]["w"], f["expand3x3"]["w"],
                              jnp.concatenate([f["expand1x1"]["b"], f["expand3x3"]["b"]]))


VARIANTS = {"current": _fire_current, "fused_vjp": _fire_fused,
            "combined_kernel": _fire_combined_kernel}


def make_apply(fire):
    """SqueezeNet's apply (as jaxmnist.models.squeezenet) with ``fire`` for the expands."""
    def apply(params, x, *, train, key=None):
        p = params["conv1"]
        h = layers.max_pool2(layers.conv2d(to_unit_float(x), p["w"], padding="valid"))
        h = jax.nn.relu(h + p["b"])
        for name, _, _ in squeezenet.FIRES:
            f = params[name]
            sq = jax.nn.relu(layers.conv2d(h, f["squeeze"]["w"]) + f["squeeze"]["b"])
            h = fire(f, sq)
            if name in squeezenet.POOL_AFTER:
                h = layers.max_pool2(h)
        h = dropout(h, 0.5, train=train, key=key)
        h = jax.nn.relu(layers.conv2d(h, params["conv10"]["w"]) + params["conv10"]["b"])
        return layers.global_avg_pool(h)
    return apply


def train_loop(apply, tx):
    """``(params, opt, xs, ys, key) -> (params, opt, loss)``: a scan of Adam steps."""
    def step(carry, xy):
        params, opt, key = carry
        key, sub = jax.random.split(key)
        x, y = xy

        def loss_fn(p):
            logits = apply(p, x, train=True, key=sub)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, g = jax.value_and_grad(loss_fn)(params)
        updates, opt = tx.update(g, opt, params)
        return (optax.apply_updates(params, updates), opt, key), loss

    def run(params, opt, xs, ys, key):
        (params, opt, _), losses = jax.lax.scan(step, (params, opt, key), (xs, ys))
        return params, opt, losses.sum()
    return jax.jit(run)


def matmul_peak() -> float:
    """GFLOP/s of a 2048^2 float32 jnp.dot, best of 5 (the bench's peak case)."""
    a = jnp.ones((2048, 2048), jnp.float32)
    f = jax.jit(lambda u: u @ u)
    f(a).block_until_ready()
    best = min(_timed(lambda: f(a).block_until_ready()) for _ in range(5))
    return 2 * 2048 ** 3 / best / 1e9


def _timed(call) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    """Compiles every variant, checks outputs, times them interleaved; prints the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    batch = 64
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.integers(0, 256, (args.steps, batch, 28, 28, 1), dtype=np.uint8))
    ys = jnp.asarray(rng.integers(0, 10, (args.steps, batch)), jnp.int32)
    params = models.build({"name": "squeezenet"}).init(jax.random.PRNGKey(0))[0]
    tx = optax.adam(1e-3)
    opt = tx.init(params)
    key = jax.random.PRNGKey(1)
    ref_apply = make_apply(_fire_current)
    x0 = xs[0]
    ref = jax.jit(lambda p: ref_apply(p, x0, train=True, key=key))(params)
    ref_grad = jax.jit(jax.grad(lambda p: ref_apply(p, x0, train=True, key=key).sum()))(params)
    loops, flops = {}, None
    for name in names:
        apply = make_apply(VARIANTS[name])
        out = jax.jit(lambda p, apply=apply: apply(p, x0, train=True, key=key))(params)
        grad = jax.jit(jax.grad(lambda p, apply=apply: apply(p, x0, train=True,
                                                             key=key).sum()))(params)
        gdiff = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                    zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(ref_grad),
                        strict=True))
        print(f"{name}: max |out - current| {float(jnp.max(jnp.abs(out - ref))):.2e}, "
              f"max |grad - current| {gdiff:.2e}", flush=True)
        loop = train_loop(apply, tx)
        compiled = loop.lower(params, opt, xs, ys, key).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        # XLA counts a scan's body once: the FLOPs of one step.
        if name == "current":
            flops = cost["flops"] / batch
        print(f"{name}: XLA FLOPs/image {cost['flops'] / batch / 1e6:.1f} M", flush=True)
        jax.block_until_ready(compiled(params, opt, xs, ys, key))
        loops[name] = compiled
    times = {n: [] for n in names}
    peaks, loads = [], []
    for r in range(args.rounds):
        loads.append(os.getloadavg()[0])
        peaks.append(matmul_peak())
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            times[name].append(_timed(lambda n=name: jax.block_until_ready(
                loops[n](params, opt, xs, ys, key))) / args.steps * 1e3)
    peak = statistics.median(peaks)
    print(f"matmul peak median {peak:.0f} GFLOP/s (rounds {[round(p) for p in peaks]}); "
          f"load per round {[round(x, 2) for x in loads]}")
    base = times.get("current")
    for name in names:
        med = statistics.median(times[name])
        pct = 100 * flops * batch / (med / 1e3) / 1e9 / peak if flops else float("nan")
        line = f"{name:16s} median {med:7.2f} ms/step  rounds {[round(t, 1) for t in times[name]]}"
        line += f"  {batch / med * 1e3:6.0f} img/s  {pct:4.1f}% of peak (current code's FLOPs)"
        if base:
            per = [b / t for b, t in zip(base, times[name], strict=True)]
            line += (f"  speed-up {statistics.median(base) / med:.3f} of medians, per round "
                     f"{min(per):.3f}-{max(per):.3f}")
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
