"""The grid engine on small slices of MNIST, or of the synthetic digits without MNIST (CPU):
oracle, isolation, compiles, devices, resume."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxmnist import groups, models
from jaxmnist.engine import losses, optim, placement
from jaxmnist.engine.evaluate import MemberResult
from jaxmnist.engine.fit import train_grid
from jaxmnist.engine.program import GridError, build_program, clear_compiled_groups
from jaxmnist.runs import results as results_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
import user_models  # noqa: E402
from train_fixtures import (  # noqa: E402
    GRID_OPTIMIZERS,
    SMALL_MLP,
    STABLE_LEARNING_RATES,
    base_member,
    flat_params,
    grid_members,
    small_splits,
)  # noqa: E402

WORKER = Path(__file__).resolve().parent / "train_worker.py"


def status(result: MemberResult) -> str:
    """The run directory's label of a member (ok / diverged / collapsed / pruned ...)."""
    return results_json.member_status(result.alive, result.test_pred, result.rungs)[0]


def _test(result: MemberResult) -> tuple[float, float]:
    return result.test_loss, result.test_acc


def _max_abs_diff(a, b) -> float:
    fa, fb = flat_params(a), flat_params(b)
    assert fa.keys() == fb.keys()
    return max(float(np.max(np.abs(fa[k].astype(np.float64) - fb[k]))) for k in fa)


@functools.cache
def _reference_step(model_cfg_json: str, optimizer: str):
    """A jitted plain-optax step; the learning rate is an injected hyperparameter (one compile
    per optimizer, not per learning rate)."""
    model = models.build(json.loads(model_cfg_json))
    tx = optax.inject_hyperparams(
        lambda learning_rate: optim.reference({"name": optimizer, "learning_rate": learning_rate})
    )(learning_rate=1.0)

    @jax.jit
    def step(params, state, opt_state, x, y, key):
        def loss_fn(p):
            logits, new_state = model.apply(p, state, x, train=True, key=key)
            return losses.xent(logits, y), new_state

        grads, state = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state

    return model, tx, step


def _train_alone(member: dict, splits) -> tuple[dict, dict]:
    """The oracle: one config trained by a plain loop with a plain optax optimizer.

    Returns the final ``(params, model_state)``.

    It shares nothing with the engine but the documented key derivation (seed -> init, dropout,
    data-order streams; per-epoch permutation; per-step dropout key) and the model itself.
    """
    model, tx, step = _reference_step(json.dumps(member["model"]), member["optim"]["name"])
    seed_key = jax.random.PRNGKey(member["seed"])
    init_key, dropout_key, data_key = (jax.random.fold_in(seed_key, i) for i in range(3))
    params, state = model.init(init_key)
    opt_state = tx.init(params)
    opt_state.hyperparams["learning_rate"] = jnp.asarray(
        member["optim"]["learning_rate"], jnp.float32
    )
    x_all, y_all = splits.train_x, splits.train_y
    n, batch = len(x_all), member["train"]["batch_size"]
    for epoch in range(1, member["train"]["epochs"] + 1):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(data_key, epoch), n))
        epoch_key = jax.random.fold_in(dropout_key, epoch)
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            key = jax.random.fold_in(epoch_key, i // batch)
            params, state, opt_state = step(params, state, opt_state, jnp.asarray(x_all[idx]),
                                            jnp.asarray(y_all[idx]), key)
    return params, state


# The oracle's rates: the stable ones but 1e-4, at which 20 steps move a member too little to
# tell a wrong learning rate from the right one (see the bounds test below); 6 members, not 9.
ORACLE_LEARNING_RATES = tuple(lr for lr in STABLE_LEARNING_RATES if lr >= 1e-3)


def _oracle_members(strategy: str, model: dict | None = None) -> list[dict]:
    """S2's optimizers at the oracle's learning rates (tests/train_fixtures.py says why the
    stable ones), 20 steps of 32 images: 6 members of the small dropout MLP (``model``: another;
    the zoo's S1 dropout CNN is the end-to-end tier's, see below)."""
    return grid_members(epochs=1, learning_rates=ORACLE_LEARNING_RATES,
                        **{"train.strategy": strategy, "model": model or SMALL_MLP})


@functools.cache
def _solo(member_json: str):
    """The oracle's params for a member (the strategy is not part of a solo run)."""
    member = json.loads(member_json)
    member["train"].pop("strategy", None)
    return _train_alone(member, small_splits())[0]


def _alone(member: dict):
    return _solo(json.dumps(member, sort_keys=True))


@pytest.fixture(scope="session")
def oracle_grids():
    """The oracle grid under each strategy, trained once per session (the CPU default,
    "sequential", also serves the results test). Both train the same members, so one solo run
    per member serves both."""
    return {strategy: train_grid(_oracle_members(strategy), small_splits())
            for strategy in ("sequential", "vmap")}


def _oracle_bound(strategy: str, member: dict) -> float:
    """How far member k of the grid may be from its solo run after 20 steps.

    The default CPU strategy ("sequential") runs each member's own unbatched program: SGD and
    RMSprop members do the same float32 operations as plain optax and match it bit for bit
    (measured 0.0 on MNIST and on the synthetic digits); Adam's bias correction rounds in
    another order than optax's, and Adam's step m/(sqrt(v) + eps) turns the last-bit difference
    of a near-zero gradient component into up to lr * |dg| / eps: measured 6e-4 * lr after 20
    steps with the S1 CNN (6.5e-6 at lr 0.01), inside 1e-5 at the stable rates. Under "vmap" a
    batched matmul sums in another order in every step, and Adam and RMSprop amplify it the same
    way, so adaptive members get 1e-2 * lr (never less than 1e-5); SGD members must match to
    1e-5. Measured with the dropout MLP (2026-12-02, synthetic digits): 0.0 for all six members
    under "sequential"; under "vmap" at most 1.1e-6 (Adam 0.01), SGD 7e-9.
    """
    adaptive = member["optim"]["name"] in ("adam", "rmsprop")
    lr = member["optim"]["learning_rate"]
    return max(1e-5, 1e-2 * lr) if (strategy == "vmap" and adaptive) else 1e-5


def _check_grid_equals_alone(strategy: str, members: list[dict], results: list) -> None:
    splits = small_splits()
    assert len(splits.train_x) // 32 >= 20  # at least 20 optimizer steps
    # The premise of the bounds: every member trains; none collapsed or diverged.
    assert [status(r) for r in results] == ["ok"] * len(members)
    for k, member in enumerate(members):
        diff = _max_abs_diff(results[k].params, _alone(member))
        bound = _oracle_bound(strategy, member)
        assert diff <= bound, f"member {k} ({member['optim']}) differs by {diff} > {bound}"


@pytest.mark.parametrize("strategy", ["sequential", "vmap"])
def test_grid_member_equals_config_trained_alone(strategy, oracle_grids):
    _check_grid_equals_alone(strategy, _oracle_members(strategy), oracle_grids[strategy])


# The zoo's S1 dropout CNN (im2col convolutions, its costliest kernels) under the CPU default: the
# end-to-end tier's (its grid and solo compiles are ~13 s); the kernels themselves are checked
# against lax's convolutions in tests/test_models.py, and the engine's promise by the MLP above.
@pytest.mark.e2e
def test_grid_member_equals_config_trained_alone_with_the_cnn():
    members = _oracle_members("sequential", {"name": "cnn", "dropout": [0.25, 0.5]})
    results = train_grid(members, small_splits())
    assert results[0].param_count == 225_034
    _check_grid_equals_alone("sequential", members, results)


def test_a_sampled_member_equals_the_same_config_trained_alone():
    """A search expands into ordinary members (jaxmnist.search): trained as one grid, each
    equals its config trained alone by the plain-optax oracle (learning rates drawn in the
    stable range; adaptive and plain SGD families)."""
    from jaxmnist import config as C

    study = C.resolve({
        "study": "searched", "data": {"split": "none", "source": "synthetic"}, "seeds": 1,
        "base": {"model": SMALL_MLP, "optim": {"name": "sgd", "learning_rate": 0.01},
                 "train": {"epochs": 1, "batch_size": 32, "strategy": "sequential"}},
        "search": {f: {"optim.learning_rate": ("log", 1e-3, 1e-2)} for f in ("adam", "sgd")},
        "samples": 2, "search_seed": 3})
    members = [m["config"] for m in C.check(study)]
    assert len(members) == 4 and len({m["optim"]["learning_rate"] for m in members}) == 2
    _check_grid_equals_alone("sequential", members, train_grid(members, small_splits()))


def _penalised_alone(member: dict, splits) -> dict:
    """SGD on the data loss plus L1 / L2 penalties written out here (Keras-style: ``l1 *
    sum|w| + l2 * sum w**2 / 2`` over the kernels ``w``, not the biases), with the engine's
    documented keys and data order; no dropout, so only the keys of the data order matter."""
    model = models.build(member["model"])
    l1, l2, lr = member["reg"]["l1"], member["reg"]["l2"], member["optim"]["learning_rate"]

    def kernels(p):
        return [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(p)
                if path[-1].key == "w"]

    @jax.jit
    def step(params, x, y):
        def loss_fn(p):
            logits, _ = model.apply(p, {}, x, train=True)
            data = losses.xent(logits, y)
            return (data + l1 * sum(jnp.sum(jnp.abs(w)) for w in kernels(p))
                    + l2 * 0.5 * sum(jnp.sum(w * w) for w in kernels(p)))

        grads = jax.grad(loss_fn)(params)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)

    seed_key = jax.random.PRNGKey(member["seed"])
    params, _ = model.init(jax.random.fold_in(seed_key, 0))
    data_key = jax.random.fold_in(seed_key, 2)
    n, batch = len(splits.train_x), member["train"]["batch_size"]
    for epoch in range(1, member["train"]["epochs"] + 1):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(data_key, epoch), n))
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            params = step(params, jnp.asarray(splits.train_x[idx]),
                          jnp.asarray(splits.train_y[idx]))
    return params


def test_a_grid_of_l1_l2_penalties_equals_a_loop_that_adds_them_itself():
    """Several lambdas in ONE group (reg.* vary inside a program): each member equals a plain
    loop with the penalty written by hand. lr 0.05 x l1 1e-2 moves a kernel 5e-4 a step, so an
    ignored or another member's penalty is far outside the bound."""
    splits = small_splits(n_train=320)
    mlp = {"name": "mlp", "hidden": [32]}
    members = [base_member(**{"model": mlp, "optim.name": "sgd", "optim.learning_rate": 0.05,
                              "reg.l1": l1, "reg.l2": l2, "seed": 1})
               for l1, l2 in ((0.0, 0.0), (1e-2, 0.0), (0.0, 1e-1), (1e-3, 1e-2))]
    assert len(groups.group_members(members)) == 1
    results = train_grid(members, splits)
    alone = [_penalised_alone(m, splits) for m in members]
    for k, result in enumerate(results):
        assert _max_abs_diff(result.params, alone[k]) <= 1e-5, members[k]["reg"]
        for j in range(len(members)):
            if j != k:  # the bound tells the penalties apart
                assert _max_abs_diff(result.params, alone[j]) > 1e-4, (k, j)


def test_the_oracle_bounds_catch_a_member_trained_with_another_learning_rate(oracle_grids):
    """The bounds are tight enough to fail: an engine that gave a member a learning rate off by
    10% (let alone another member's) would be caught, under both strategies, for every
    optimizer at 0.01 and 0.001 (at 1e-4 SGD moves too little in 20 steps to tell)."""
    for strategy, results in oracle_grids.items():
        for k, member in enumerate(_oracle_members(strategy)):
            if member["optim"]["learning_rate"] < 1e-3:
                continue
            wrong = json.loads(json.dumps(member))
            wrong["optim"]["learning_rate"] *= 1.1
            diff = _max_abs_diff(results[k].params, _alone(wrong))
            assert diff > _oracle_bound(strategy, member), (strategy, member["optim"], diff)


def test_results_are_complete_and_json_ready(oracle_grids):
    import json

    members = _oracle_members("sequential")
    (k,) = [k for k, m in enumerate(members)
            if m["optim"] == {"name": "adam", "learning_rate": 1e-3}]
    first = results_json.member_record(oracle_grids["sequential"][k], small_splits().test_y)
    assert {"config", "status", "history", "test", "test_pred", "confusion_test",
            "test_probs_first25", "weight_hist", "grad_hist",
            "param_count"} <= first.keys()
    assert first["param_count"] == 784 * 64 + 64 + 64 * 10 + 10  # SMALL_MLP
    assert len(first["test_pred"]) == 500
    assert np.asarray(first["confusion_test"]).sum() == 500
    np.testing.assert_allclose(np.asarray(first["test_probs_first25"]).sum(-1), 1.0, rtol=1e-5)
    assert first["history"][0]["val_acc"] is not None
    json.dumps(first, allow_nan=False)
    # Adam at 1e-3 learns something in 20 steps; test accuracy is far above chance.
    assert first["test"]["acc"] > 0.5


def test_nan_member_is_frozen_and_others_bit_identical():
    splits = small_splits()
    sane = grid_members(epochs=1, model=SMALL_MLP)
    poisoned = grid_members(epochs=1, model=SMALL_MLP)
    poisoned[8]["optim"]["learning_rate"] = 1e30  # SGD at 1e30 overflows on its first step
    a = train_grid(sane, splits)
    b = train_grid(poisoned, splits)
    assert status(b[8]) == "diverged" and b[8].diverged_epoch == 1
    import json

    # Strict JSON (no NaN) must accept every member's results, the diverged one included.
    json.dumps([results_json.member_record(r, splits.test_y) for r in b], allow_nan=False)
    assert all(np.isfinite(v).all() for v in flat_params(b[8].params).values())
    for k in range(12):
        if k == 8:
            continue
        fa, fb = flat_params(a[k].params), flat_params(b[k].params)
        for name in fa:
            np.testing.assert_array_equal(fa[name], fb[name], err_msg=f"member {k} {name}")
        assert _test(a[k]) == _test(b[k]) and status(a[k]) == status(b[k])


def test_frozen_member_skips_its_epochs_with_the_result_running_them_gives():
    members = grid_members(epochs=2, model=SMALL_MLP)[8:10]  # SGD lr 0.1, 0.01
    members[0]["optim"]["learning_rate"] = 1e30  # overflows on its first step
    for m in members:
        m["train"]["strategy"] = "sequential"
    prog = build_program(members, small_splits())
    assert prog.program.skip_frozen
    state, *_ = prog.epoch_exec(prog.init_state, prog.arrays, prog.train_x, prog.train_y,
                                jnp.asarray(1, jnp.int32))
    assert [bool(a) for a in state.alive] == [False, True]
    args = (prog.train_x, prog.train_y, jnp.asarray(2, jnp.int32))
    skip_epoch, run_epoch = jax.jit(prog.program.member_epoch), jax.jit(prog.program._train_epoch)
    for k in range(2):  # each compiled once, for both members
        member_state = jax.tree_util.tree_map(lambda a, k=k: a[k], state)
        member_arrays = jax.tree_util.tree_map(lambda a, k=k: a[k], prog.arrays)
        skipping = skip_epoch(member_state, member_arrays, *args)
        running = run_epoch(member_state, member_arrays, *args)
        for x, y in zip(jax.tree_util.tree_leaves(skipping), jax.tree_util.tree_leaves(running),
                        strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=f"member {k}")
    # The skip is a branch in the compiled epoch, not a select over a computed epoch.
    jaxpr = jax.make_jaxpr(prog.program.member_epoch)(member_state, member_arrays, *args)
    assert "cond[" in str(jaxpr)


def test_second_epoch_compiles_nothing():
    compiles = {}
    train_grid(
        [base_member(**{"train.epochs": 3, "optim.name": n, "model": SMALL_MLP})
         for n in ("adam", "sgd")],
        small_splits(),
        callbacks=[SimpleNamespace(on_epoch_end=lambda g, epoch, metrics, info:
                                   compiles.__setitem__(epoch, info.compiles))])
    assert compiles[2] == 0 and compiles[3] == 0, compiles


def test_same_seed_twice_gives_identical_results():
    """... the second time from the kept compiled program, the first freshly compiled."""
    members = [base_member(**{"seed": s, "model": SMALL_MLP}) for s in (0, 1)]
    clear_compiled_groups()
    a = train_grid(members, small_splits())
    b = train_grid(members, small_splits())
    for ra, rb in zip(a, b, strict=True):
        assert _max_abs_diff(ra.params, rb.params) == 0.0
        assert ra.history[0, 0] == rb.history[0, 0]
    # ... and different seeds give different models.
    assert _max_abs_diff(a[0].params, a[1].params) > 0


def test_a_group_of_the_same_shape_reuses_the_compiled_program():
    """Other learning rates and seeds: the same jitted functions and compiled epoch. Another
    batch size (a static key): another program."""
    splits = small_splits()
    first = [base_member(**{"model": SMALL_MLP, "optim.name": n}) for n in ("adam", "sgd")]
    again = [base_member(**{"model": SMALL_MLP, "optim.name": n, "optim.learning_rate": 0.02,
                            "seed": 4}) for n in ("adam", "sgd")]
    a, b = build_program(first, splits), build_program(again, splits)
    assert b.epoch_exec is a.epoch_exec and b.program.eval_fn is a.program.eval_fn
    assert b.program is a.program
    bigger = [base_member(**{"model": SMALL_MLP, "optim.name": n, "train.batch_size": 64})
              for n in ("adam", "sgd")]
    c = build_program(bigger, splits)
    assert c.epoch_exec is not a.epoch_exec and c.program is not a.program


def test_mixed_static_keys_are_rejected():
    with pytest.raises(GridError, match="static"):
        train_grid(
            [base_member(), base_member(**{"train.batch_size": 64})], small_splits()
        )
    assert groups.group_members([base_member(), base_member(**{"seed": 3}),
                                 base_member(**{"train.batch_size": 64})]) == [[0, 1], [2]]


def _run_worker(out: Path, *extra: str, env_extra: dict | None = None, check: bool = True):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, str(WORKER), str(out), *extra],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    ) if not check else _checked(subprocess.run(
        [sys.executable, str(WORKER), str(out), *extra],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    ))


def _checked(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _grid_bounds() -> dict[int, float]:
    """Per-member tolerance: see _oracle_bound for why Adam and RMSprop amplify float32
    rounding differences of a differently batched matmul (in proportion to lr)."""
    bounds = {}
    for k, (name, lr) in enumerate(
        (n, lr) for n in GRID_OPTIMIZERS for lr in STABLE_LEARNING_RATES
    ):
        bounds[k] = max(1e-5, 1e-2 * lr) if name in ("adam", "rmsprop") else 1e-5
    return bounds


@pytest.mark.e2e
def test_four_simulated_devices_match_one(tmp_path):
    one, four = tmp_path / "one.npz", tmp_path / "four.npz"
    _run_worker(one, "--epochs", "1", "--stable")
    _run_worker(four, "--epochs", "1", "--stable",
                env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    a, b = np.load(one), np.load(four)
    assert a.files == b.files
    bounds = _grid_bounds()
    for name in a.files:
        member = int(name.split("/")[0][1:])
        if name.endswith(("test_pred", "test_acc", "history")) and bounds[member] > 1e-5:
            continue  # a 1e-3 parameter difference may flip a prediction: compared via params
        np.testing.assert_allclose(a[name], b[name], atol=bounds[member], rtol=0, err_msg=name)


TWO_SINGLE_THREADED = ("--xla_force_host_platform_device_count=2 "
                       "--xla_cpu_multi_thread_eigen=false")


def test_useful_devices_and_member_layout():
    assert [placement.useful_devices(g, 2) for g in (1, 2, 3, 12)] == [1, 2, 2, 2]
    assert placement.useful_devices(12, 8) == 6 and placement.useful_devices(6, 4) == 3
    assert placement.useful_devices(5, 1) == 1
    rates = [0.1, 0.01, 0.001, 0.0001] * 3  # S2's order: Adam, RMSprop, SGD x 4 rates
    layout = placement.member_layout(rates, 12, 2)
    assert sorted(layout) == list(range(12))
    # Device 0 holds positions 0-5, device 1 positions 6-11: the three lr-0.1 members (0, 4, 8)
    # are split 2/1, every rate has members on both devices.
    assert list(layout) == [0, 8, 5, 2, 10, 7, 4, 1, 9, 6, 3, 11]
    assert 0 in layout[:6] and 4 in layout[6:]
    assert list(placement.member_layout([1.0, 2.0, 3.0], 4, 2)) == [2, 0, 1, 3]  # pad 3 last
    assert list(placement.member_layout(rates, 12, 1)) == list(range(12))
    # After a rung: the members still training (0, 8, 5: all on device 0 above) come first.
    active = [k in (0, 5, 8) for k in range(12)]
    redealt = placement.member_layout(rates, 12, 2, active)
    assert sorted(redealt) == list(range(12))
    assert set(redealt[:6]) & {0, 5, 8} and set(redealt[6:]) & {0, 5, 8}


@pytest.mark.e2e
def test_two_devices_dealt_out_then_resumed_on_one_match_one_device(tmp_path):
    """Members dealt out over 2 single-threaded devices; its checkpoint (member order) resumes
    on 1 device: every member ends as on one device throughout."""
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    _run_worker(one, "--epochs", "2")
    killed = _run_worker(two, "--epochs", "2", "--workdir", str(tmp_path / "ck"),
                         "--kill-after-epoch", "1", check=False,
                         env_extra={"XLA_FLAGS": TWO_SINGLE_THREADED})
    assert killed.returncode == -9 and not two.exists()
    _run_worker(two, "--epochs", "2", "--workdir", str(tmp_path / "ck"))
    a, b = np.load(one), np.load(two)
    assert a.files == b.files
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


class _Interrupted(Exception):
    """Raised from a hook after an epoch: the in-process stand-in for a killed job."""


def test_run_interrupted_in_process_resumes_to_the_same_end(tmp_path):
    """Resume == uninterrupted, in one process: a run stopped after its epoch-1 checkpoint and
    started again ends with the parameters, histories and predictions of a run never stopped.
    (The SIGKILL of a real process is the e2e test below.)"""
    members, splits = grid_members(epochs=3, model=SMALL_MLP), small_splits()
    full = train_grid(members, splits, str(tmp_path / "a"))

    def stop_after_first(group_index, epoch, metrics, info):
        if epoch == 1:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        train_grid(members, splits, str(tmp_path / "b"),
                   callbacks=[SimpleNamespace(on_epoch_end=stop_after_first)])
    seen = []
    resumed = train_grid(members, splits, str(tmp_path / "b"), callbacks=[SimpleNamespace(
        on_epoch_end=lambda g, epoch, metrics, info: seen.append((epoch, info.resumed)))])
    assert seen == [(2, True), (3, True)]  # epoch 1 came from the checkpoint, not retrained
    for k, (a, b) in enumerate(zip(full, resumed, strict=True)):
        for name, leaf in flat_params(a.params).items():
            np.testing.assert_array_equal(leaf, flat_params(b.params)[name],
                                          err_msg=f"member {k} {name}")
        np.testing.assert_array_equal(a.history, b.history, err_msg=f"member {k}")
        assert _test(a) == _test(b), k
        np.testing.assert_array_equal(a.test_pred, b.test_pred)
    # ... and the comparison can fail: a run of one epoch less is not the same end.
    assert (full[0].history[:-1, 0] != full[0].history[-1, 0]).any()


@pytest.mark.e2e
def test_interrupted_run_resumes_to_the_same_end(tmp_path):
    full, resumed = tmp_path / "full.npz", tmp_path / "resumed.npz"
    _run_worker(full, "--epochs", "3", "--workdir", str(tmp_path / "a"))
    killed = _run_worker(resumed, "--epochs", "3", "--workdir", str(tmp_path / "b"),
                         "--kill-after-epoch", "1", check=False)
    assert killed.returncode == -9 and not resumed.exists()
    assert (tmp_path / "b").exists()
    _run_worker(resumed, "--epochs", "3", "--workdir", str(tmp_path / "b"))
    a, b = np.load(full), np.load(resumed)
    for name in a.files:
        np.testing.assert_allclose(a[name], b[name], atol=1e-6, rtol=0, err_msg=name)


def test_optimizer_names_are_checked():
    with pytest.raises(ValueError, match="valid choices: sgd, momentum, nesterov, adam, adamw"):
        train_grid([base_member(**{"optim.name": "adamz"})], small_splits())


def test_members_with_different_initializers_share_one_program():
    inits = ["zeros", "he_normal", {"name": "uniform", "low": -0.05, "high": 0.05}]
    members = [
        base_member(**{"model": {**SMALL_MLP, "init": init}, "optim.name": "sgd",
                       "optim.learning_rate": 1e-30, "seed": 3})
        for init in inits
    ]
    assert len(groups.group_members(members)) == 1
    results = train_grid(members, small_splits())
    key = jax.random.fold_in(jax.random.PRNGKey(3), 0)
    for member, result in zip(members, results, strict=True):
        expected = models.build(member["model"]).init(key)[0]
        # lr 1e-30 (a learning rate must be > 0): still the initial draw to float32 precision
        # (vmapped init may round differently in the last bit)
        assert _max_abs_diff(result.params, expected) <= 1e-6
    assert np.all(flat_params(results[0].params)["dense1/w"] == 0)


@pytest.mark.e2e  # needs the real MNIST files
def test_s0_cnn_one_epoch_on_full_mnist_reaches_98_percent(mnist_dir):
    from jaxmnist import data

    data_dir = mnist_dir
    train_x, train_y = data.load_dataset("train", source="idx", data_dir=data_dir)
    test_x, test_y = data.load_dataset("test", source="idx", data_dir=data_dir)
    splits = data.Splits(train_x, train_y, None, None, test_x, test_y)
    member = base_member(**{"model": {"name": "cnn"}, "train.batch_size": 32})
    seen = {}
    (result,) = train_grid(
        [member], splits,
        callbacks=[SimpleNamespace(on_epoch_end=lambda g, epoch, metrics, info:
                                   seen.update(info=info))])
    print(f"S0 1 epoch: test acc {result.test_acc:.4f}, {seen['info'].images_per_second:.0f} "
          f"img/s, compile {result.group.compile_seconds:.1f} s")
    assert status(result) == "ok"
    assert result.test_acc >= 0.98


@pytest.mark.e2e  # a Flax linen member == alone is test_batchnorm_member_equals_..._alone[linen]
def test_flax_member_in_a_grid_equals_the_model_trained_alone(tmp_path):
    """A user's Flax linen model (a file outside the package, with dropout) through the
    adapter: member k == its solo run. (The adapter's CNN mapping, S0 in linen with the zoo's
    weights giving the zoo's logits, is tests/test_adapters.py.)"""
    (tmp_path / "my_flax.py").write_text(user_models.LINEN_DROPOUT_MLP)
    splits = small_splits()
    flax_mlp = {"name": f"{tmp_path / 'my_flax.py'}:make", "width": 64}
    members = [base_member(**{"model": flax_mlp, "optim.name": name, "optim.learning_rate": lr})
               for name, lr in (("adam", 1e-3), ("sgd", 0.05))]
    results = train_grid(members, splits)
    for k, member in enumerate(members):
        diff = _max_abs_diff(results[k].params, _train_alone(member, splits)[0])
        assert diff <= 1e-5, f"member {k} ({member['optim']}) differs by {diff}"
    assert results[0].test_acc > 0.5


# ---------------------------------------------------------------- models with state (BatchNorm)


@pytest.fixture(scope="module")
def bn_models(tmp_path_factory):
    """A linen BatchNorm + dropout MLP, an NNX one whose dropout holds its own stream, and
    Flax's own imagenet ResNet file (BatchNorm over the named axis 'batch'; one block, 8
    filters)."""

    folder = tmp_path_factory.mktemp("bn_models")
    linen = user_models.write(folder, "linen_bn.py", user_models.LINEN_BN_MLP)
    nnx_file = user_models.write(folder, "nnx_held.py", user_models.NNX_HELD_RNGS_MLP)
    resnet = user_models.write(folder, "models.py", user_models.FLAX_IMAGENET_MODELS)
    return {"linen": {"name": f"{linen}:BNMLP", "hidden": 32},
            "nnx": {"name": f"{nnx_file}:HeldRngs", "hidden": 32},
            "resnet": {"name": f"{resnet}:_ResNet1", "num_classes": 10, "num_filters": 8}}


def _bn_members(model_cfg, epochs=1):
    # SGD at 0.05 and Adam at 1e-3 on the small MLP: no member diverges, so every step is
    # applied and the comparison covers every update (a frozen member would compare trivially).
    return [base_member(**{"model": model_cfg, "optim.name": name, "optim.learning_rate": lr,
                           "train.epochs": epochs, "seed": seed})
            for name, lr, seed in (("adam", 1e-3, 0), ("sgd", 0.05, 1))]


def _leaves(tree) -> dict:
    return {k: np.asarray(v) for k, v in models.layer_paths(tree).items()}


# The NNX variant (module-held rngs) is the end-to-end tier's: the linen one keeps the promise here.
@pytest.mark.parametrize("kind", ["linen", pytest.param("nnx", marks=pytest.mark.e2e)])
def test_batchnorm_member_equals_the_config_trained_alone(bn_models, kind):
    """Member k == its solo run, running statistics included (default CPU strategy, 1e-5)."""
    splits = small_splits()
    members = _bn_members(bn_models[kind])
    results = train_grid(members, splits)
    for k, member in enumerate(members):
        params, state = _train_alone(member, splits)
        assert _max_abs_diff(results[k].params, params) <= 1e-5
        got, want = _leaves(results[k].model_state), _leaves(state)
        assert got.keys() == want.keys() and got
        for name in got:
            np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=0, err_msg=name)
        assert status(results[k]) == "ok"


def test_batchnorm_statistics_train_and_are_what_evaluation_uses(bn_models):
    splits = small_splits()
    members = _bn_members(bn_models["linen"])
    results = train_grid(members, splits)
    model = models.build(members[0]["model"])
    _, init_state = model.init(jax.random.PRNGKey(0))
    final = results[0].model_state
    mean0, mean1 = (np.asarray(s["batch_stats"]["BatchNorm_0"]["mean"])
                    for s in (init_state, final))
    assert np.abs(mean1 - mean0).max() > 1e-3  # the running mean moved
    predict = jax.jit(model.predict)
    x = jnp.asarray(splits.test_x)
    with_final = np.asarray(jnp.argmax(predict(results[0].params, final, x), -1))
    with_init = np.asarray(jnp.argmax(predict(results[0].params, init_state, x), -1))
    np.testing.assert_array_equal(results[0].test_pred, with_final)
    assert (with_init != with_final).any()  # so the statistics really decide the predictions


class _StopAfter:
    """A hook that interrupts training after an epoch (its checkpoint is saved first)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, group_index, epoch, member_metrics, info):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("kind", ["linen", pytest.param("nnx", marks=pytest.mark.e2e),
                                  pytest.param("resnet", marks=pytest.mark.e2e)])
def test_batchnorm_run_interrupted_resumes_bit_exactly(bn_models, tmp_path, kind):
    splits = small_splits()
    members = _bn_members(bn_models[kind], epochs=2)
    full = train_grid(members, splits, str(tmp_path / "a"))
    with pytest.raises(KeyboardInterrupt):
        train_grid(members, splits, str(tmp_path / "b"), callbacks=[_StopAfter(1)])
    resumed = train_grid(members, splits, str(tmp_path / "b"))
    assert resumed[0].group.resumed
    for a, b in zip(full, resumed, strict=True):
        for part in ("params", "model_state"):
            fa, fb = _leaves(getattr(a, part)), _leaves(getattr(b, part))
            assert fa.keys() == fb.keys()
            for name in fa:
                np.testing.assert_array_equal(fa[name], fb[name], err_msg=f"{part}/{name}")
        np.testing.assert_array_equal(a.history, b.history)
        assert _test(a) == _test(b)


def test_a_diverging_batchnorm_member_freezes_with_its_statistics(bn_models):
    splits = small_splits()
    members = [base_member(**{"model": bn_models["linen"], "optim.name": "sgd",
                              "optim.learning_rate": lr}) for lr in (0.05, 1e6)]
    results = train_grid(members, splits)
    assert status(results[0]) == "ok" and status(results[1]) == "diverged"
    for part in ("params", "model_state"):
        assert all(np.isfinite(v).all() for v in _leaves(getattr(results[1], part)).values()), part


def test_hooks_see_the_learning_rate_each_epoch_ended_with():
    """A cosine schedule's rate decays epoch by epoch in what the hooks (TensorBoard) get."""
    splits = small_splits()
    members = [base_member(**{"model": SMALL_MLP, "train.epochs": 3, "optim.name": "adam",
                              "optim.learning_rate": 1e-3,
                              "optim.schedule": {"name": "cosine"}}),
               base_member(**{"model": SMALL_MLP, "train.epochs": 3, "optim.name": "sgd",
                              "optim.learning_rate": 0.05})]
    seen = {}
    train_grid(members, splits, callbacks=[SimpleNamespace(
        on_epoch_end=lambda g, epoch, rows, info: seen.update(
            {epoch: [r["learning_rate"] for r in rows]}))])
    steps = -(-len(splits.train_x) // 32)
    cosine = optax.cosine_decay_schedule(1e-3, 3 * steps)
    for epoch in (1, 2, 3):
        assert seen[epoch][0] == pytest.approx(float(cosine(epoch * steps - 1)), rel=1e-6)
        assert seen[epoch][1] == pytest.approx(0.05)
    assert seen[1][0] > seen[2][0] > seen[3][0]  # not a flat line at the base rate


# Successive halving inside the group program (jaxmnist.engine.fit, ranking.rung).
def _prune_members(strategy: str = "sequential") -> list[dict]:
    members = grid_members(epochs=3, model=SMALL_MLP, learning_rates=STABLE_LEARNING_RATES)
    for m in members:
        m["train"]["strategy"] = strategy
    return members


def _assert_same_member(a: MemberResult, b: MemberResult, what: str) -> None:
    for name, leaf in flat_params(a.params).items():
        np.testing.assert_array_equal(leaf, flat_params(b.params)[name], err_msg=f"{what} {name}")
    np.testing.assert_array_equal(a.history, b.history, err_msg=what)
    assert _test(a) == _test(b) and a.rungs == b.rungs and a.epochs_trained == b.epochs_trained


def test_pruning_keeps_survivors_bit_identical_and_pruned_members_take_no_more_steps():
    members, splits = _prune_members(), small_splits()
    full = train_grid(members, splits)
    pruned = train_grid(members, splits, prune={"eta": 3, "rungs": [1, 2]})
    # The rung's choice, recomputed from the unpruned run's epoch-1 validation accuracy: the
    # best learning rate of each optimizer (3 points per family, ceil(3 / 3) = 1 survives).
    val_acc = np.asarray([r.history[0, 3] for r in full]).reshape(3, 3)
    best = {3 * f + int(np.argmax(val_acc[f])) for f in range(3)}
    assert {k for k, r in enumerate(pruned) if r.epochs_trained == 3} == best
    for k, (a, b) in enumerate(zip(full, pruned, strict=True)):
        assert a.epochs_trained == 3.0  # the step counter: 3 epochs of 20 steps
        if k in best:
            assert status(b) == "ok" and [r["survived"] for r in b.rungs] == [True, True]
            for name, leaf in flat_params(a.params).items():
                np.testing.assert_array_equal(leaf, flat_params(b.params)[name], err_msg=name)
            np.testing.assert_array_equal(a.history, b.history)
            assert _test(a) == _test(b)
            continue
        rank = b.rungs[0]["rank"]
        assert b.epochs_trained == 1.0 and not b.alive and b.diverged_epoch is None
        assert status(b) == f"pruned at epoch 1 (rank {rank} of 3 by val_acc)" and rank > 1
        np.testing.assert_array_equal(a.history[0], b.history[0])  # its history up to the rung
        assert np.isnan(b.history[1:]).all() and not np.isnan(a.history[1:]).any()


def test_vmap_gathers_the_survivors_into_smaller_programs():
    """Under vmap a rung's survivors train as a smaller program (one compile per size); they
    end as without pruning (within the bounds of a differently batched grid)."""
    members, splits = _prune_members("vmap"), small_splits()
    full = train_grid(members, splits)
    pruned = train_grid(members, splits, prune={"eta": 2, "rungs": [1, 2]})
    # 3 points per family: 2 survive rung 1 (6 members), 1 survives rung 2 (3 members).
    assert sorted(r.epochs_trained for r in pruned) == [1.0] * 3 + [2.0] * 3 + [3.0] * 3
    assert pruned[0].group.epoch_programs == 3 and full[0].group.epoch_programs == 1
    bounds = _grid_bounds()
    for k, (a, b) in enumerate(zip(full, pruned, strict=True)):
        trained = int(b.epochs_trained)
        np.testing.assert_array_equal(a.history[0], b.history[0])  # one program until rung 1
        assert np.isnan(b.history[trained:]).all()
        if trained == 3:
            assert status(b) == "ok"
            assert _max_abs_diff(a.params, b.params) <= bounds[k], k
        else:
            assert status(b).startswith(f"pruned at epoch {trained} (rank ")


@pytest.mark.parametrize("strategy, stop", [
    ("sequential", "before the rung"), ("sequential", "during the rung"),
    ("sequential", "after the rung"), ("vmap", "during the rung"), ("vmap", "after the rung")])
def test_a_run_interrupted_around_a_rung_resumes_to_the_same_end(tmp_path, monkeypatch,
                                                                 strategy, stop):
    """Rung at epoch 2 of 3: stopped after epoch 1, inside epoch 2's decision (its checkpoint
    never written), or after epoch 2's checkpoint; the resumed run decides each rung once."""
    from jaxmnist import ranking

    members, splits, prune = _prune_members(strategy), small_splits(), {"eta": 2, "rungs": [2]}
    full = train_grid(members, splits, str(tmp_path / "a"), prune=prune)
    decisions, rung, crash = [], ranking.rung, [stop == "during the rung"]

    def counting(*args, **kwargs):
        decisions.append(1)
        if crash.pop() if crash else False:
            raise _Interrupted
        return rung(*args, **kwargs)

    def stopping(group_index, epoch, metrics, info):
        if epoch == {"before the rung": 1, "after the rung": 2}.get(stop):
            raise _Interrupted

    monkeypatch.setattr(ranking, "rung", counting)
    with pytest.raises(_Interrupted):
        train_grid(members, splits, str(tmp_path / "b"), prune=prune,
                   callbacks=[SimpleNamespace(on_epoch_end=stopping)])
    decisions.clear()
    resumed = train_grid(members, splits, str(tmp_path / "b"), prune=prune)
    assert len(decisions) == (0 if stop == "after the rung" else 1)
    assert sum(r.epochs_trained == 3 for r in resumed) == 6  # ceil(3 / 2) = 2 per family
    for k, (a, b) in enumerate(zip(full, resumed, strict=True)):
        _assert_same_member(a, b, f"member {k}")


@pytest.mark.e2e
def test_vmap_pruning_on_two_devices_gathers_the_survivors_as_one_device_does(tmp_path):
    """9 members padded to 10 on 2 devices, then 3 survivors padded to 4."""
    args = ("--epochs", "2", "--stable", "--strategy", "vmap",
            "--prune", json.dumps({"eta": 3, "rungs": [1]}))
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    _run_worker(one, *args)
    _run_worker(two, *args, env_extra={"XLA_FLAGS": TWO_SINGLE_THREADED})
    a, b = np.load(one), np.load(two)
    trained = sorted(float(b[f"m{k}/epochs_trained"]) for k in range(9))
    assert trained == [1.0] * 6 + [2.0] * 3
    bounds = _grid_bounds()
    for name in (n for n in a.files if n.startswith("m")):
        member = int(name.split("/")[0][1:])
        if name.endswith(("test_pred", "test_acc", "history")) and bounds[member] > 1e-5:
            continue  # as in test_four_simulated_devices_match_one
        np.testing.assert_allclose(a[name], b[name], atol=bounds[member], rtol=0, err_msg=name)


@pytest.mark.e2e
def test_two_devices_prune_the_same_members_and_re_deal_the_survivors(tmp_path):
    """12 members on 2 single-threaded devices, rungs at epochs 1 and 2 (6 then 3 survivors),
    killed after the first rung and resumed: every member ends as on one device, and the
    survivors are dealt over both devices."""
    prune = ("--prune", json.dumps({"eta": 3, "rungs": [1, 2]}))
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    _run_worker(one, "--epochs", "3", *prune)
    env = {"XLA_FLAGS": TWO_SINGLE_THREADED}
    killed = _run_worker(two, "--epochs", "3", "--workdir", str(tmp_path / "ck"), *prune,
                         "--kill-after-epoch", "1", check=False, env_extra=env)
    assert killed.returncode == -9 and not two.exists()
    _run_worker(two, "--epochs", "3", "--workdir", str(tmp_path / "ck"), *prune, env_extra=env)
    a, b = np.load(one), np.load(two)
    members = [n for n in a.files if n.startswith("m")]
    assert sorted(members) == sorted(n for n in b.files if n.startswith("m"))
    for name in members:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    trained = [float(a[f"m{k}/epochs_trained"]) for k in range(12)]
    assert sorted(trained) == [1.0] * 6 + [2.0] * 3 + [3.0] * 3
    assert list(a["layout1"]) == list(range(12))  # one device: nothing to re-deal
    # Resumed after rung 1 (its layout restored), then re-dealt at rung 2: the 3 survivors
    # sit on both devices (positions 0-5 and 6-11).
    layout = b["layout1"]
    survivors = [layout[p] for p in range(12) if trained[layout[p]] == 3.0]
    on_first = sum(trained[m] == 3.0 for m in layout[:6])
    assert len(survivors) == 3 and on_first in (1, 2)


# ---------------------------------------------------------------- evaluated as prescribed


def _optax_loop(member: dict, splits, tx, ema: float | None = None):
    """optax's own schedule-free example as a loop (init, grad, update, apply_updates), with the
    engine's documented keys and data order (the MLP has no dropout); ``ema``: also an average of
    the parameters after each step, from the initial ones. Returns (params, opt_state, average)."""
    model = models.build(member["model"])

    @jax.jit
    def step(params, opt_state, x, y):
        grads = jax.grad(lambda p: losses.xent(model.apply(p, {}, x, train=True)[0], y))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    seed_key = jax.random.PRNGKey(member["seed"])
    params, _ = model.init(jax.random.fold_in(seed_key, 0))
    opt_state, average = tx.init(params), params
    data_key = jax.random.fold_in(seed_key, 2)
    n, batch = len(splits.train_x), member["train"]["batch_size"]
    for epoch in range(1, member["train"]["epochs"] + 1):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(data_key, epoch), n))
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            params, opt_state = step(params, opt_state, jnp.asarray(splits.train_x[idx]),
                                     jnp.asarray(splits.train_y[idx]))
            if ema is not None:
                average = jax.tree_util.tree_map(lambda a, p: ema * a + (1 - ema) * p,
                                                 average, params)
    return params, opt_state, average


def test_schedule_free_and_ema_members_are_evaluated_where_their_authors_say():
    """Schedule-free AdamW is evaluated (validation, test, export) at
    ``optax.contrib.schedule_free_eval_params``, an ``optim.ema`` member at its average, both
    against optax's own example written out here; an Adam member beside them is untouched."""
    splits = small_splits(n_train=320)
    mlp = {"name": "mlp", "hidden": [32]}
    sf = base_member(**{"model": mlp, "optim.name": "schedule_free_adamw",
                        "optim.learning_rate": 3e-3, "seed": 1})
    averaged = base_member(**{"model": mlp, "optim.name": "adam", "optim.learning_rate": 3e-3,
                              "optim.ema": 0.9, "seed": 1})
    plain = base_member(**{"model": mlp, "optim.name": "adam", "optim.learning_rate": 3e-3,
                           "seed": 2})
    results = train_grid([sf, averaged, plain], splits)

    trained, state, _ = _optax_loop(sf, splits, optax.contrib.schedule_free_adamw(3e-3))
    expected = optax.contrib.schedule_free_eval_params(state, trained)
    assert _max_abs_diff(results[0].params, expected) <= 1e-5
    assert _max_abs_diff(results[0].params, trained) > 1e-3  # not the trained parameters
    trained, _, average = _optax_loop(averaged, splits, optim.reference(averaged["optim"]), 0.9)
    assert _max_abs_diff(results[1].params, average) <= 1e-5
    assert _max_abs_diff(results[1].params, trained) > 1e-3
    # The plain member is evaluated at its trained parameters, which equal plain optax's.
    trained, _, _ = _optax_loop(plain, splits, optim.reference(plain["optim"]))
    assert _max_abs_diff(results[2].params, trained) <= 1e-5
    # Test metrics are those of the evaluated parameters.
    model = models.build(mlp)
    for r in results:
        logits = model.predict(r.params, {}, jnp.asarray(splits.test_x))
        acc = float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(splits.test_y)))
        assert abs(acc - r.test_acc) < 1e-6


@pytest.mark.parametrize("value", [0.0, 1.0, -0.5, "fast"])
def test_an_ema_decay_outside_0_1_is_refused(value):
    from jaxmnist import schema

    with pytest.raises(schema.ConfigError, match=r"optim\.ema: must be a decay in \(0, 1\)"):
        schema.member(base_member(**{"optim.ema": value}))


# Which epoch counts: train.restore_best (the best epoch on validation, its parameters kept).
def _restore_members(epochs: int = 4) -> list[dict]:
    # SGD at a rate that overshoots on 20 steps an epoch, beside two that do not.
    return [base_member(**{"model": SMALL_MLP, "optim.name": "sgd", "optim.learning_rate": lr,
                           "train.epochs": epochs, "train.restore_best": True, "seed": 1})
            for lr in (2.0, 0.5, 0.05)]


def test_restore_best_ends_with_the_best_validation_epoch_as_if_it_stopped_there():
    """Each member ends with its best validation epoch's parameters (the ranking's rule over
    epochs), equal to the same member trained for that many epochs alone; its last epoch's
    test metrics are kept beside."""
    from jaxmnist.engine.fit import kept_epochs

    members, splits = _restore_members(), small_splits()
    results = train_grid(members, splits)
    kept = [r.kept_epoch for r in results]
    assert any(e < 4 for e in kept), kept  # a restore happens (not only the last epoch)
    last = train_grid([{**m, "train": {**m["train"], "restore_best": False}} for m in members],
                      splits)
    for m, r, end in zip(members, results, last, strict=True):
        assert r.kept_epoch == int(kept_epochs(r.history[:, None, :], 4)[0])
        alone = train_grid([{**m, "train": {**m["train"], "epochs": r.kept_epoch,
                                            "restore_best": False}}], splits)[0]
        assert _max_abs_diff(r.params, alone.params) <= 1e-5
        assert abs(r.test_acc - alone.test_acc) <= 2 / len(splits.test_y)
        # the last epoch's test metrics beside, as the same grid without restore_best ends
        assert r.last_test == pytest.approx((end.test_loss, end.test_acc), abs=1e-6)
        if r.kept_epoch < 4:
            assert _max_abs_diff(r.params, end.params) > 1e-4


def test_restore_best_resumes_with_the_kept_parameters(tmp_path):
    """The kept epoch's parameters are part of the checkpoint: stopped after epoch 2 and
    started again, the run ends bit for bit as one never stopped."""
    members, splits = _restore_members(3), small_splits()
    full = train_grid(members, splits, str(tmp_path / "a"))
    with pytest.raises(KeyboardInterrupt):
        train_grid(members, splits, str(tmp_path / "b"), callbacks=[_StopAfter(2)])
    resumed = train_grid(members, splits, str(tmp_path / "b"))
    for a, b in zip(full, resumed, strict=True):
        assert a.kept_epoch == b.kept_epoch and _max_abs_diff(a.params, b.params) == 0.0
        assert _test(a) == _test(b) and a.last_test == b.last_test


def test_restore_best_needs_a_validation_split():
    from jaxmnist import config as C

    s = C.resolve(C.load_study("smoke"), overrides=["data.split=none"])
    s["base"]["train"]["restore_best"] = True
    assert any("restore_best: the best epoch is chosen on the validation split" in p
               for p in C.validate_study(s))
