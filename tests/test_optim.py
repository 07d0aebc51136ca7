"""Optimizers, schedules and clipping: each grid member equals its plain optax optimizer alone."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmnist.engine import optim

STEPS = 12
TOTAL = 40  # the "run length" given to cosine schedules without decay_steps


def _problem():
    """A tiny softmax regression: params, and a gradient function of (params, step)."""
    key = jax.random.PRNGKey(0)
    kx, ky, kw = jax.random.split(key, 3)
    x = jax.random.normal(kx, (STEPS, 16, 6))
    y = jax.random.randint(ky, (STEPS, 16), 0, 3)
    params = {"dense": {"w": 0.3 * jax.random.normal(kw, (6, 3)), "b": jnp.zeros(3)}}

    def loss(p, i):
        logits = x[i] @ p["dense"]["w"] + p["dense"]["b"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[i][:, None], 1))

    return params, jax.grad(loss)


# One member per optimizer, plus members that vary hyperparameters, schedules and clipping,
# so one group holds every family, varying and shared values, several schedules and clipping.
MEMBERS = [
    {"name": "sgd", "learning_rate": 0.1},
    {"name": "momentum", "learning_rate": 0.05, "momentum": 0.8},
    {"name": "nesterov", "learning_rate": 0.05},
    {"name": "adam", "learning_rate": 1e-2},
    {"name": "adam", "learning_rate": 3e-3, "b2": 0.99, "clip_norm": 0.05},
    {"name": "adamw", "learning_rate": 1e-2, "weight_decay": 0.1,
     "schedule": {"name": "warmup_cosine", "warmup_steps": 3, "init_value": 1e-4}},
    {"name": "nadam", "learning_rate": 1e-2, "schedule": {"name": "cosine", "alpha": 0.1}},
    {"name": "adamax", "learning_rate": 1e-2,
     "schedule": {"name": "exponential", "transition_steps": 4, "decay_rate": 0.5}},
    {"name": "rmsprop", "learning_rate": 1e-3,
     "schedule": {"name": "piecewise", "boundaries": [3, 7], "scales": [0.5, 0.1]}},
    {"name": "adagrad", "learning_rate": 0.1, "initial_accumulator_value": 0.05},
    {"name": "adadelta", "learning_rate": 1.0, "rho": 0.95},
    {"name": "lamb", "learning_rate": 1e-2, "weight_decay": 0.01},
    {"name": "lion", "learning_rate": 1e-3, "clip_norm": 1.0},
    {"name": "lion", "learning_rate": 3e-4, "b1": 0.95, "weight_decay": 0.0,
     "schedule": {"name": "warmup_cosine", "warmup_steps": 5, "decay_steps": 10,
                  "end_value": 1e-5}},
]


def _grid_run(members, strategy="sequential", total_steps=TOTAL):
    params, grad_fn = _problem()
    plan = optim.plan(members)
    hyper = optim.member_hyper(members, plan, total_steps=total_steps)
    g = len(members)
    stacked = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (g, *a.shape)), params)

    def member(p, h):
        state = optim.init(p, h, plan)

        def body(carry, i):
            p, s = carry
            return optim.update(grad_fn(p, i), s, p, h, plan), None

        return jax.lax.scan(body, (p, state), jnp.arange(STEPS))[0][0]

    if strategy == "vmap":
        run = jax.vmap(member)
    else:
        run = lambda p, h: jax.lax.map(lambda a: member(*a), (p, h))  # noqa: E731
    return jax.jit(run)(stacked, hyper)


def _plain_optax(txs) -> list:
    """Each optax transformation alone on the problem: every trajectory a ``lax.scan`` of its
    own, all in ONE jitted program (one compile, not one per optimizer: the compiles are this
    file's cost)."""
    params, grad_fn = _problem()

    def alone(tx):
        def body(carry, i):
            p, s = carry
            updates, s = tx.update(grad_fn(p, i), s, p)
            return (optax.apply_updates(p, updates), s), None

        return jax.lax.scan(body, (params, tx.init(params)), jnp.arange(STEPS))[0][0]

    return jax.jit(lambda: [alone(tx) for tx in txs])()


@functools.cache
def _alone_all(cfgs_json: str) -> list:
    """Each config trained alone by its plain optax optimizer (``optim.reference``)."""
    return _plain_optax([optim.reference(cfg, total_steps=TOTAL)
                         for cfg in json.loads(cfgs_json)])


def _alone(cfg):
    return _alone_all(json.dumps([cfg]))[0]


def _all_alone(cfgs):
    return _alone_all(json.dumps(list(cfgs)))


def test_every_optimizer_is_listed():
    required = {"sgd", "momentum", "nesterov", "adam", "adamw", "nadam", "adamax", "rmsprop",
                "adagrad", "adadelta", "lamb", "lion"}
    assert required <= set(optim.OPTIMIZERS)
    assert required == {m["name"] for m in MEMBERS}


def test_plan_bakes_shared_values_and_keeps_varying_ones_per_member():
    plan = optim.plan(MEMBERS)
    assert plan.families[:4] == ("sgd", "momentum", "nesterov", "adam")
    assert "adam.b2" in plan.varying and "lion.b1" in plan.varying
    assert dict(dict(plan.constants)["adam"])["eps"] == optim.KERAS_EPSILON
    assert set(plan.schedules) == {"constant", "warmup_cosine", "cosine", "exponential",
                                   "piecewise"}
    assert plan.clip and plan.boundaries == 2
    # A group of plain Adam members compiles every hyperparameter in and needs no schedule.
    simple = optim.plan([{"name": "adam", "learning_rate": lr} for lr in (0.1, 0.01)])
    assert simple.varying == () and simple.schedules == ("constant",) and not simple.clip


def test_each_member_equals_its_optax_optimizer_alone():
    grid = _grid_run(MEMBERS)
    for k, (cfg, alone) in enumerate(zip(MEMBERS, _all_alone(MEMBERS), strict=True)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(alone)[0]:
            got = np.asarray(jax.tree_util.tree_map(lambda a, k=k: a[k], grid)
                             ["dense"][path[-1].key])
            diff = float(np.max(np.abs(got - np.asarray(leaf))))
            assert diff <= 1e-5, f"member {k} {cfg} differs by {diff}"
        # ... and it did move (an update that is always zero would pass the comparison).
        assert float(np.max(np.abs(np.asarray(alone["dense"]["w"])
                                   - np.asarray(_problem()[0]["dense"]["w"])))) > 1e-6


def test_vmapped_members_match_too():
    """Under vmap the same members agree within float32 noise of batched reductions."""
    grid = _grid_run(MEMBERS[:6], strategy="vmap")
    for k, alone in enumerate(_all_alone(MEMBERS[:6])):
        np.testing.assert_allclose(np.asarray(grid["dense"]["w"][k]),
                                   np.asarray(alone["dense"]["w"]), atol=1e-5)


SCHEDULE_CASES = [
    {"name": "constant"},
    {"name": "cosine", "decay_steps": 50, "alpha": 0.2},
    {"name": "cosine", "exponent": 2.0},
    {"name": "warmup_cosine", "warmup_steps": 10, "decay_steps": 60, "init_value": 1e-4,
     "end_value": 1e-5},
    {"name": "warmup_cosine", "warmup_steps": 0, "decay_steps": 30},
    {"name": "exponential", "transition_steps": 7, "decay_rate": 0.5},
    {"name": "exponential", "transition_steps": 5, "decay_rate": 0.8, "transition_begin": 10,
     "staircase": True, "end_value": 1e-3},
    {"name": "exponential", "transition_steps": 5, "decay_rate": 1.5, "end_value": 0.05},
    {"name": "piecewise", "boundaries": [10, 25], "scales": [0.5, 0.2]},
    {"name": "piecewise", "boundaries": [5], "scales": [3.0]},
]


def test_schedule_values_equal_optax_at_sampled_steps():
    cfgs = [{"name": "sgd", "learning_rate": 0.01 * (i + 1), "schedule": s}
            for i, s in enumerate(SCHEDULE_CASES)]
    plan = optim.plan(cfgs)
    hyper = optim.member_hyper(cfgs, plan, total_steps=TOTAL)
    steps = jnp.asarray([0, 1, 2, 4, 5, 6, 9, 10, 11, 14, 15, 24, 25, 26, 29, 30, 39, 40, 59,
                         60, 61, 100, 1000], jnp.int32)
    values = jax.jit(jax.vmap(jax.vmap(lambda c, h: optim.schedule_value(c, h, plan),
                                       in_axes=(0, None)), in_axes=(None, 0)))(steps, hyper)
    for k, cfg in enumerate(cfgs):
        reference = optim.schedule(cfg, total_steps=TOTAL)
        want = np.asarray([reference(s) if callable(reference) else reference for s in steps])
        # float32 rounding of the warm-up's (init - peak) * frac + peak is relative to the peak.
        np.testing.assert_allclose(np.asarray(values[k]), want, rtol=1e-5,
                                   atol=1e-6 * cfg["learning_rate"], err_msg=str(cfg["schedule"]))


def test_validation_lists_valid_choices():
    (msg,) = optim.validate_optimizer("adamz", {"learning_rate": 0.1})
    assert "did you mean 'adam'" in msg and "lion" in msg and "register_optimizer" in msg
    (msg,) = optim.validate_optimizer("adam", {"learning_rate": 0.1, "weight_decay": 0.1})
    assert "'weight_decay' is not a hyperparameter of 'adam'" in msg and "b1" in msg
    problems = optim.validate_optimizer("adamw", {"learning_rate": -1, "b1": 1.0,
                                                  "clip_norm": 0, "schedule": "cosyne"})
    text = "\n".join(problems)
    assert "learning_rate" in text and "b1: must be in [0, 1)" in text
    assert "clip_norm" in text and "did you mean 'cosine'" in text
    assert optim.validate_schedule({"name": "exponential"}) == [
        "optim.schedule: schedule 'exponential' needs 'transition_steps'",
        "optim.schedule: schedule 'exponential' needs 'decay_rate'",
    ]
    assert optim.validate_schedule({"name": "piecewise", "boundaries": [5, 2],
                                    "scales": [1.0]})
    assert optim.validate_optimizer("momentum", {"learning_rate": 0.1, "momentum": 0.9}) == []
    with pytest.raises(ValueError, match="valid choices: sgd, momentum"):
        optim.spec("adamz")


def test_other_optax_aliases_by_registration():
    optim.register_optimizer("radam", "radam", {"b1": 0.9, "b2": 0.999, "eps": 1e-8})
    try:
        members = [{"name": "radam", "learning_rate": 1e-2},
                   {"name": "radam", "learning_rate": 1e-2, "b2": 0.99},
                   {"name": "sgd", "learning_rate": 0.1}]
        grid = _grid_run(members)
        for k, cfg in enumerate(members):
            np.testing.assert_allclose(np.asarray(grid["dense"]["w"][k]),
                                       np.asarray(_alone(cfg)["dense"]["w"]), atol=1e-5)
        with pytest.raises(ValueError, match="optax has no optimizer"):
            optim.register_optimizer("nope", "no_such_alias")
    finally:
        optim._REGISTRY.pop("radam", None)
        optim.OPTIMIZERS = tuple(optim._REGISTRY)


# --------------------------------------------------------------------------------------------
# Oracle: every shipped study's optim sections against optax calls written out by hand
# --------------------------------------------------------------------------------------------

ORACLE_TOTAL = 400  # optimizer steps of the "run" (the cosine's length; > every warm-up)


def _warmup_cosine(lr, warmup):
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, ORACLE_TOTAL, 0.0)


# What each shipped study means to train, written as a reader would write the optax call: the
# learning rate comes from the point, every other number is written here, not read from the
# study (an ignored momentum, a leaked b1 or a lost epsilon fails).
HAND_WRITTEN = {
    "flax_mnist": {  # Flax's examples/mnist: optax.sgd(0.1, momentum=0.9); Adam(W) as optax's
        "momentum": lambda lr, _: optax.sgd(lr, momentum=0.9),
        "adam": lambda lr, _: optax.adam(lr, eps=1e-7),
        "adamw": lambda lr, _: optax.adamw(lr, eps=1e-7, weight_decay=1e-4),
    },
    "resnet": {  # Flax's imagenet example: SGD momentum 0.9; Adam(W) as optax's, Keras' eps
        "momentum": lambda lr, _: optax.sgd(lr, momentum=0.9),
        "adam": lambda lr, _: optax.adam(lr, eps=1e-7),
        "adamw": lambda lr, _: optax.adamw(lr, eps=1e-7, weight_decay=1e-4),
    },
    "tune": {  # the registry's defaults: Keras' epsilon for Adam and RMSprop, Lion's b2, wd
        "adam": lambda lr, _: optax.adam(lr, eps=1e-7),
        "momentum": lambda lr, _: optax.sgd(lr, momentum=0.9),
        "rmsprop": lambda lr, _: optax.rmsprop(lr, decay=0.9, eps=1e-7),
        "lion": lambda lr, _: optax.lion(lr, b1=0.9, b2=0.99, weight_decay=1e-3),
    },
    "optimizers": {  # clip 1.0, then warm-up (200 steps; 20 cpu, 2 quick) + cosine to 0
        "adam": lambda lr, w: optax.chain(optax.clip_by_global_norm(1.0),
                                          optax.adam(_warmup_cosine(lr, w), eps=1e-7)),
        "adamw": lambda lr, w: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(
            _warmup_cosine(lr, w), eps=1e-7, weight_decay=1e-4)),
        "nadam": lambda lr, w: optax.chain(optax.clip_by_global_norm(1.0),
                                           optax.nadam(_warmup_cosine(lr, w), eps=1e-7)),
        "lion": lambda lr, w: optax.chain(optax.clip_by_global_norm(1.0), optax.lion(
            _warmup_cosine(lr, w), b2=0.99, weight_decay=1e-3)),
        "nesterov": lambda lr, w: optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(
            _warmup_cosine(lr, w), momentum=0.9, nesterov=True)),
    },
    # The papers' Keras optimizers: Adam / RMSprop with Keras' epsilon, plain SGD.
    **{s: {"adam": lambda lr, _: optax.adam(lr, b1=0.9, b2=0.999, eps=1e-7),
           "rmsprop": lambda lr, _: optax.rmsprop(lr, decay=0.9, eps=1e-7),
           "sgd": lambda lr, _: optax.sgd(lr)}
       for s in ("s0", "s1", "s2", "s3", "s4", "smoke")},
}


def _shipped_optim_sections():
    from jaxmnist import config as C

    out = []
    for name in C.shipped_studies():
        cfg = C.load_study(name)
        for preset in (None, *C.presets(cfg)):
            for m in C.check(C.resolve(cfg, preset=preset)):
                out.append((name, preset, m["config"]["optim"]))
    return out


def test_every_shipped_study_trains_the_optax_optimizer_a_reader_would_write():
    sections = _shipped_optim_sections()
    assert {s for s, _, _ in sections} == set(HAND_WRITTEN), "a shipped study has no oracle"
    unique = {(s, json.dumps(o, sort_keys=True)): (s, p, o) for s, p, o in sections}
    cases = list(unique.values())
    hand = [HAND_WRITTEN[s][o["name"]](o["learning_rate"],
                                        (o.get("schedule") or {}).get("warmup_steps"))
            for s, _, o in cases]
    expected = _plain_optax(hand)
    # The grid path itself (plan, per-member arrays, union update), one group per study.
    for study in {s for s, _, _ in cases}:
        idx = [i for i, (s, _, _) in enumerate(cases) if s == study]
        got = _grid_run([cases[i][2] for i in idx], total_steps=ORACLE_TOTAL)
        for j, i in enumerate(idx):
            member = [leaf[j] for leaf in jax.tree_util.tree_leaves(got)]
            for a, b in zip(member, jax.tree_util.tree_leaves(expected[i]), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6,
                                           err_msg=f"{cases[i][0]} {cases[i][1]}: {cases[i][2]}")


def test_a_hyperparameter_the_optimizer_does_not_take_is_refused_naming_the_takers():
    problems = optim.validate_optimizer("sgd", {"learning_rate": 0.1, "momentum": 0.9})
    assert len(problems) == 1
    assert "'momentum' is not a hyperparameter of 'sgd'" in problems[0]
    assert "the optimizers that take 'momentum': momentum, nesterov" in problems[0]
    problems = optim.validate_optimizer("adam", {"learning_rate": 0.1, "momentum": 0.9})
    assert "'momentum' is not a hyperparameter of 'adam'" in problems[0]
