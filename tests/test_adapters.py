"""User models: Flax linen, Flax NNX and plain (init, apply) pairs behind the model contract."""

from __future__ import annotations

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmnist import models
from jaxmnist.engine import losses
from jaxmnist.models import (
    adapters,
    flax_examples,  # noqa: F401 - registers "flax_cnn" on import
)

LINEN = "jaxmnist.models.flax_examples:linen_cnn"
NNX = "jaxmnist.models.flax_examples:NnxCNN"


@pytest.fixture(scope="module")
def zoo_s0():
    zoo = models.build({"name": "cnn"})
    params, _ = zoo.init(jax.random.PRNGKey(0))
    x = jax.random.randint(jax.random.PRNGKey(1), (6, 28, 28, 1), 0, 256).astype(jnp.uint8)
    return zoo, params, x


def as_flax(params):
    """The zoo's leaf names -> Flax's (``w`` -> ``kernel``, ``b`` -> ``bias``)."""
    return {layer: {"kernel": leaf["w"], "bias": leaf["b"]} for layer, leaf in params.items()}


@pytest.mark.parametrize("cfg", [
    # NNX here; linen (whose member == alone is test_train's BatchNorm test) in the e2e tier.
    pytest.param({"name": LINEN}, marks=pytest.mark.e2e), {"name": NNX},
    # The registered name and Flax's own nn.Conv: the end-to-end tier (compiles dominate).
    pytest.param({"name": "flax_cnn"}, marks=pytest.mark.e2e),
    pytest.param({"name": LINEN, "conv_impl": "flax"}, marks=pytest.mark.e2e),
    pytest.param({"name": NNX, "conv_impl": "flax"}, marks=pytest.mark.e2e),
])
def test_flax_s0_gives_the_zoo_logits_with_the_same_weights(cfg, zoo_s0):
    zoo, params, x = zoo_s0
    model = models.build(cfg)
    own, state = model.init(jax.random.PRNGKey(0))
    assert state == {}
    assert jax.tree_util.tree_map(jnp.shape, own) == jax.tree_util.tree_map(
        jnp.shape, as_flax(params))
    assert models.param_count(own) == 225_034
    want = zoo.predict(params, {}, x)
    got = jax.jit(lambda p, x: model.predict(p, {}, x))(as_flax(params), x)
    assert float(jnp.max(jnp.abs(got - want))) <= 1e-5
    # float input in [0, 1] is the same image
    got_f = jax.jit(lambda p, x: model.predict(p, {}, x))(
        as_flax(params), x.astype(jnp.float32) / 255.0)
    assert float(jnp.max(jnp.abs(got_f - want))) <= 1e-5


@pytest.mark.parametrize("name", [pytest.param(LINEN, marks=pytest.mark.e2e), NNX])
def test_flax_init_is_vmappable_and_dropout_follows_the_key(name, zoo_s0):
    _, params, x = zoo_s0
    x = x[:2]
    model = models.build({"name": name, "dropout": [0.25, 0.5]})
    grid, _ = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(0), 3))
    kernels = np.asarray(grid["conv1"]["kernel"])
    assert kernels.shape == (3, 3, 3, 1, 32) and not np.allclose(kernels[0], kernels[1])
    p = as_flax(params)
    apply = jax.jit(lambda p, x, key: model.apply(p, {}, x, train=True, key=key)[0])
    a = apply(p, x, jax.random.PRNGKey(3))
    b = apply(p, x, jax.random.PRNGKey(3))
    c = apply(p, x, jax.random.PRNGKey(4))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(jnp.max(jnp.abs(a - c))) > 0


def test_l2_on_a_flax_model_counts_its_kernels_only():
    params, _ = models.build({"name": LINEN}).init(jax.random.PRNGKey(0))
    l2 = float(losses.l2_penalty(params))
    kernels = [params[k]["kernel"] for k in ("conv1", "conv2", "dense1", "dense2")]
    assert l2 > 0
    np.testing.assert_allclose(l2, 0.5 * sum(float(jnp.sum(k ** 2)) for k in kernels),
                               rtol=1e-5)
    biased = jax.tree_util.tree_map(lambda a: a + 1.0, params)
    biased = {k: {"kernel": params[k]["kernel"], "bias": biased[k]["bias"]} for k in params}
    assert float(losses.l2_penalty(biased)) == pytest.approx(l2)
    # The rule is a parameter: with no weight names nothing is penalised.
    assert float(losses.l2_penalty(params, names=())) == 0.0
    assert models.build({"name": LINEN, "weight_leaves": ["bias"]}).weight_names == ("bias",)


def test_figures_share_the_weight_leaf_rule():
    from jaxmnist.runs import figures

    assert figures.WEIGHT_NAMES == models.WEIGHT_NAMES
    rng = np.random.default_rng(0)
    flax_mlp = {"Dense_0/kernel": rng.normal(size=(784, 8)), "Dense_0/bias": np.zeros(8),
                "Dense_1/kernel": rng.normal(size=(8, 10)), "Dense_1/bias": np.zeros(10)}
    chain = figures.dense_chain(flax_mlp, {"name": "x.py:make"})
    assert [w.shape for w in chain] == [(784, 8), (8, 10)]
    conv = {**flax_mlp, "Conv_0/kernel": rng.normal(size=(3, 3, 1, 8))}
    assert figures.dense_chain(conv, {"name": "x.py:make"}) is None  # not a dense net


def _write_pair_model(tmp_path):
    path = tmp_path / "pair_model.py"
    path.write_text(textwrap.dedent("""
        import jax, jax.numpy as jnp

        def make(hidden=16):
            def init(key):
                k1, k2 = jax.random.split(key)
                return {"l1": {"w": 0.05 * jax.random.normal(k1, (784, hidden)),
                               "b": jnp.zeros(hidden)},
                        "l2": {"w": 0.05 * jax.random.normal(k2, (hidden, 10)),
                               "b": jnp.zeros(10)}}

            def apply(params, x, *, train, key=None):
                h = jax.nn.relu(x.reshape(x.shape[0], -1) @ params["l1"]["w"] + params["l1"]["b"])
                return h @ params["l2"]["w"] + params["l2"]["b"]

            return init, apply
    """))
    return path


def test_plain_pair_from_a_file_anywhere(tmp_path, zoo_s0):
    path = _write_pair_model(tmp_path)
    model = models.build({"name": f"{path}:make", "hidden": 8})
    params, state = model.init(jax.random.PRNGKey(0))
    assert params["l1"]["w"].shape == (784, 8) and state == {}
    logits, _ = model.apply(params, state, zoo_s0[2], train=True, key=jax.random.PRNGKey(0))
    assert logits.shape == (6, 10) and bool(jnp.all(jnp.isfinite(logits)))
    assert "Total params: 6,370" in models.summary({"name": f"{path}:make", "hidden": 8})


def test_register_decorator():
    @models.register("tiny_test_pair")
    def tiny():
        return (lambda key: {"w": jnp.zeros((784, 10))},
                lambda params, x, *, train, key=None: x.reshape(x.shape[0], -1) @ params["w"])

    try:
        model = models.build({"name": "tiny_test_pair"})
        params, state = model.init(None)
        assert model.predict(params, state, jnp.ones((2, 28, 28, 1))).shape == (2, 10)
        with pytest.raises(ValueError, match="tiny_test_pair"):
            models.family("nope")  # the message lists registered names too
    finally:
        from jaxmnist.models import adapters

        adapters._REGISTERED.pop("tiny_test_pair")


@pytest.mark.parametrize("cfg, message", [
    ({"name": "no_such_pkg.nets:make"}, "cannot import 'no_such_pkg.nets'"),
    ({"name": "jaxmnist.models.flax_examples:nope"}, "has no callable 'nope'; callables there:"),
    ({"name": "jaxmnist.models.flax_examples:linen_cnn", "width": 3},
     "unexpected keyword argument 'width'"),
    ({"name": "/no/such/file.py:make"}, "does not exist"),
    ({"name": "cnnn"}, "valid choices are ['mlp', 'cnn', 'cnn_depth', 'squeezenet'"),
    ({"name": LINEN, "weight_leaves": "kernel"}, "must be a list of leaf names"),
])
def test_bad_model_names_are_clear_errors(cfg, message):
    with pytest.raises(ValueError) as err:
        models.validate_model_config(cfg)
    assert message in str(err.value)


# ---------------------------------------------------------------- state and Flax's conventions


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    import user_models

    folder = tmp_path_factory.mktemp("user_models")
    for name, source in (("flax_cnn.py", user_models.FLAX_EXAMPLE_CNN),
                         ("flax_tutorial.py", user_models.FLAX_NNX_TUTORIAL_CNN),
                         ("linen_bn.py", user_models.LINEN_BN_MLP),
                         ("nnx_held.py", user_models.NNX_HELD_RNGS_MLP),
                         ("bad_models.py", user_models.BAD_MODELS)):
        user_models.write(folder, name, source)
    return folder


def _images(n=4, seed=1):
    return jax.random.randint(jax.random.PRNGKey(seed), (n, 28, 28, 1), 0, 256).astype(jnp.uint8)


@pytest.mark.parametrize("file, attr, collection", [
    ("flax_cnn.py", "CNN", "batch_norm1"),      # NNX: nnx.BatchStat
    ("flax_tutorial.py", "CNN", "batch_norm1"),  # NNX tutorial: rngs optional, keyword-only
    ("linen_bn.py", "BNMLP", "batch_stats"),    # linen: the batch_stats collection
    ("nnx_held.py", "HeldRngs", "norm"),
])
def test_state_is_updated_in_training_and_used_in_evaluation(user_dir, file, attr, collection):
    model = models.build({"name": f"{user_dir / file}:{attr}"})
    params, state = jax.jit(model.init)(jax.random.PRNGKey(0))
    assert collection in state and not any(
        "rngs" in path for path in models.layer_paths(state))  # streams are not state
    x = _images(8)
    train_step = jax.jit(lambda p, s, x, k: model.apply(p, s, x, train=True, key=k))
    predict = jax.jit(model.predict)
    _, new_state = train_step(params, state, x, jax.random.PRNGKey(1))
    before, after = (models.layer_paths(t) for t in (state, new_state))
    assert before.keys() == after.keys()
    assert any(not np.allclose(before[k], after[k]) for k in before), "statistics unchanged"
    # Evaluation normalises with the running statistics: an image's logits do not depend on
    # the rest of its batch, and they change when the statistics change.
    np.testing.assert_allclose(predict(params, new_state, x)[:2], predict(params, new_state, x[:2]),
                               atol=1e-5)
    assert not np.allclose(predict(params, state, x), predict(params, new_state, x), atol=1e-6)
    # Training mode normalises over the batch: the same image gives other logits in a new batch.
    a, _ = train_step(params, state, x, jax.random.PRNGKey(1))
    b, _ = train_step(params, state, jnp.concatenate([x[:2], x[:2]]), jax.random.PRNGKey(1))
    assert not np.allclose(a[:2], b[:2], atol=1e-4)


@pytest.mark.parametrize("file, attr", [("flax_cnn.py", "CNN"), ("flax_tutorial.py", "CNN"),
                                        ("nnx_held.py", "HeldRngs")])
def test_nnx_dropout_follows_the_step_key_whoever_holds_the_stream(user_dir, file, attr):
    model = models.build({"name": f"{user_dir / file}:{attr}"})
    params, state = model.init(jax.random.PRNGKey(0))
    x = _images(16)
    step = jax.jit(lambda k: model.apply(params, state, x, train=True, key=k)[0])
    a, b, c = step(jax.random.PRNGKey(5)), step(jax.random.PRNGKey(5)), step(jax.random.PRNGKey(6))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(a, c)
    # two members' inits differ (their own streams from their own seeds)
    p0, _ = model.init(jax.random.PRNGKey(0))
    p1, _ = model.init(jax.random.PRNGKey(1))
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(p0),
                                                     jax.tree_util.tree_leaves(p1), strict=True))


@pytest.mark.parametrize("file", ["flax_cnn.py", "flax_tutorial.py"])
def test_flax_example_cnn_passes_the_abstract_check(user_dir, file):
    cfg = {"name": f"{user_dir / file}:CNN"}
    models.check_model(cfg)  # no exception: init, a training call and an evaluation call
    params, state = jax.eval_shape(models.build(cfg).init, jax.random.PRNGKey(0))
    # conv1 320 + BatchNorm scales and biases 64 + conv2 18,496 + 128 + linear1 803,072 + 2,570
    assert models.param_count(params) == 824_650
    assert set(models.layer_paths(state)) == {
        "batch_norm1/mean", "batch_norm1/var", "batch_norm2/mean", "batch_norm2/var"}


@pytest.mark.parametrize("attr, message", [
    ("NeedsKey", "model.train(); model(x)  [training step] raised TypeError"),
    ("Raises", "(at bad_models.py:16: x = x.reshape((x.shape[0], 100))"),
    ("FiveClasses", "returned ShapeDtypeStruct of shape (2, 5)"),
    ("broken_factory", "building it raised RuntimeError: this factory is broken"),
])
def test_bad_user_models_are_found_by_the_abstract_check(user_dir, attr, message):
    from jaxmnist.models import adapters

    with pytest.raises(adapters.ModelError) as err:
        models.check_model({"name": f"{user_dir / 'bad_models.py'}:{attr}"})
    assert message in str(err.value)
    assert "\n" not in str(err.value)  # one message


def test_a_stateful_pair_follows_the_engine_contract():
    def init(key):
        return {"w": jnp.zeros((784, 10))}, {"calls": jnp.zeros(())}

    def apply(params, state, x, *, train, key=None):
        logits = x.reshape(x.shape[0], -1) @ params["w"]
        return logits, ({"calls": state["calls"] + 1} if train else state)

    @models.register("tiny_stateful_pair")
    def make():
        return init, apply

    try:
        model = models.build({"name": "tiny_stateful_pair"})
        params, state = model.init(jax.random.PRNGKey(0))
        _, state = model.apply(params, state, _images(), train=True, key=jax.random.PRNGKey(0))
        assert float(state["calls"]) == 1.0
        models.check_model({"name": "tiny_stateful_pair"})
    finally:
        from jaxmnist.models import adapters

        adapters._REGISTERED.pop("tiny_stateful_pair")


def test_a_name_registered_again_builds_the_new_model():
    """A notebook that redefines its class and registers it again trains the new one."""
    def pair(width):
        return (lambda key: {"w": jnp.zeros((784, width))},
                lambda params, x, *, train, key=None: x.reshape(x.shape[0], -1) @ params["w"])

    from jaxmnist.models import adapters

    try:
        models.register("tiny_again")(lambda: pair(10))
        assert models.build({"name": "tiny_again"}).init(None)[0]["w"].shape == (784, 10)
        models.register("tiny_again")(lambda: pair(7))
        assert models.build({"name": "tiny_again"}).init(None)[0]["w"].shape == (784, 7)
    finally:
        adapters._REGISTERED.pop("tiny_again")


# ---------------------------------------------------------------- collectives over named axes


@pytest.fixture(scope="module")
def axis_models(tmp_path_factory):
    """Flax's own imagenet ResNet file (linen BatchNorm over axis 'batch'; its one-block
    ``_ResNet1`` at 8 filters) and an NNX model whose BatchNorm names the axis too, written to
    files as a user saves them."""
    import user_models

    folder = tmp_path_factory.mktemp("axis_models")
    resnet = user_models.write(folder, "models.py", user_models.FLAX_IMAGENET_MODELS)
    nnx_file = user_models.write(folder, "nnx_axis.py", user_models.NNX_NAMED_AXIS)
    return {"resnet": {"name": f"{resnet}:_ResNet1", "num_classes": 10, "num_filters": 8},
            "nnx": {"name": f"{nnx_file}:AxisBN"}}


def test_the_zoos_resnet18_is_flaxs_imagenet_resnet18(axis_models):
    """``flax_resnet18`` (written in jaxmnist, so the ``resnet`` study runs from a wheel) has the
    variables of Flax's own file from the same key, and gives its logits in training (with the
    batch's statistics over the named axis) and in evaluation."""
    import importlib.util

    from jaxmnist.models.flax_examples import FlaxResNet18

    path = axis_models["resnet"]["name"].rpartition(":")[0]
    spec = importlib.util.spec_from_file_location("flax_imagenet_models", path)
    theirs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(theirs)
    x = _images(4).astype(jnp.float32) / 255.0
    key = jax.random.PRNGKey(3)
    nets = (theirs.ResNet18(num_classes=10), FlaxResNet18())
    variables = [jax.jit(lambda n=n: n.init(key, x, train=False))() for n in nets]
    a, b = (jax.tree_util.tree_flatten_with_path(v)[0] for v in variables)
    assert [p for p, _ in a] == [p for p, _ in b] and len(a) == 102
    assert all(np.array_equal(u, v) for (_, u), (_, v) in zip(a, b, strict=True))

    def train_step(net, v):
        return jax.vmap(lambda xb: net.apply(v, xb, train=True, mutable=["batch_stats"]),
                        axis_name="batch")(x[None])

    for (net_a, v_a), (net_b, v_b) in [tuple(zip(nets, variables, strict=True))]:
        (la, sa), (lb, sb) = train_step(net_a, v_a), train_step(net_b, v_b)
        np.testing.assert_array_equal(la, lb)
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, sa, sb))
        np.testing.assert_array_equal(net_a.apply(v_a, x, train=False),
                                      net_b.apply(v_b, x, train=False))


def _axis_members(model_cfg, strategy="auto"):
    from train_fixtures import base_member

    return [base_member(**{"model": model_cfg, "optim.name": name, "optim.learning_rate": lr,
                           "seed": seed, "train.strategy": strategy})
            for name, lr, seed in (("adam", 1e-3, 0), ("momentum", 0.05, 1))]


def _flat(tree) -> dict:
    return {k: np.asarray(v) for k, v in models.layer_paths(tree).items()}


def test_the_axis_names_are_found_in_the_model_not_in_an_error(axis_models):
    from jaxmnist.models import specs

    for kind in ("resnet", "nnx"):
        assert adapters._adapt(specs.resolved(axis_models[kind]))[3] == ("batch",), kind
    # Unbound, the model cannot even be initialised in a training call: the binding is needed.
    cfg = specs.resolved(axis_models["resnet"])
    init, apply, _, _ = adapters._adapt(cfg)
    params, state = init(jax.random.PRNGKey(0))
    with pytest.raises(NameError):
        apply(params, state, jnp.zeros((2, 28, 28, 1), jnp.uint8), train=True)
    # A name the model's own code uses (lax.pmean) is given in its config.
    assert specs.resolved({**axis_models["resnet"], "axis_names": ["devices"]})[
        "axis_names"] == ["devices"]


@pytest.mark.parametrize("kind", ["resnet", pytest.param("nnx", marks=pytest.mark.e2e)])
def test_a_named_axis_model_trains_as_a_grid_and_each_member_equals_it_alone(axis_models, kind):
    """Each member's statistics come from its own batch: member k == the member trained alone
    (default CPU strategy, 1e-5), BatchNorm statistics included."""
    from train_fixtures import small_splits

    from jaxmnist.engine.fit import train_grid

    splits = small_splits(n_train=192, n_val=64, n_test=64)
    members = _axis_members(axis_models[kind])
    grid = train_grid(members, splits)
    for k, member in enumerate(members):
        (alone,) = train_grid([member], splits)
        for part in ("params", "model_state"):
            got, want = _flat(getattr(grid[k], part)), _flat(getattr(alone, part))
            assert got.keys() == want.keys() and got
            for name in got:
                np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=0,
                                           err_msg=f"{kind} member {k} {part}/{name}")
        assert grid[k].alive


def test_a_named_axis_model_trains_under_vmap_as_under_the_cpu_default(axis_models):
    """The accelerator default, vmap: each member's named axis is still its own (a size-1
    named vmap inside the grid's vmap); members match the CPU default's within the bound of a
    differently batched grid (docs/architecture.md: vmap reorders reductions)."""
    from train_fixtures import small_splits

    from jaxmnist.engine.fit import train_grid

    splits = small_splits(n_train=192, n_val=64, n_test=64)
    vmapped = train_grid(_axis_members(axis_models["resnet"], "vmap"), splits)
    default = train_grid(_axis_members(axis_models["resnet"]), splits)
    assert vmapped[0].group.strategy == "vmap" and default[0].group.strategy == "sequential"
    for a, b in zip(vmapped, default, strict=True):
        got, want = _flat(a.params), _flat(b.params)
        for name in got:
            np.testing.assert_allclose(got[name], want[name], atol=1e-3, rtol=0, err_msg=name)
        assert abs(a.test_acc - b.test_acc) <= 2 / 64


def test_a_resnet_member_equals_flaxs_own_pmap_loop(axis_models):
    """Three steps with XLA's own convolutions: the member equals the loop Flax's imagenet
    example writes for its ResNet (``jax.pmap`` over one device, ``axis_name='batch'``,
    mutable batch_stats, optax) fed jaxmnist's keys, data order and optimizer."""
    import optax
    from train_fixtures import base_member, small_splits

    from jaxmnist.engine.fit import train_grid
    from jaxmnist.models import specs

    splits = small_splits(n_train=96, n_val=32, n_test=32)
    cfg = {**axis_models["resnet"], "cpu_convs": False}
    member = base_member(**{"model": cfg, "optim.name": "momentum",
                            "optim.learning_rate": 0.05, "seed": 3})
    (got,) = train_grid([member], splits)

    module = adapters.resolve_factory(cfg["name"])(num_classes=10, num_filters=8)
    seed_key = jax.random.PRNGKey(3)
    init_key, data_key = jax.random.fold_in(seed_key, 0), jax.random.fold_in(seed_key, 2)
    variables = module.init({"params": init_key, "dropout": init_key},
                            jnp.zeros((1, 28, 28, 1)), train=False)
    tx = optax.sgd(0.05, momentum=0.9)
    state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))

    def train_step(state, x, y):
        params, stats, opt = state

        def loss_fn(p):
            logits, new = module.apply({"params": p, "batch_stats": stats}, x, train=True,
                                       mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new

        grads, new = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), new["batch_stats"], opt

    step = jax.pmap(train_step, axis_name="batch")
    state = jax.tree_util.tree_map(lambda a: a[None], state)
    order = np.asarray(jax.random.permutation(jax.random.fold_in(data_key, 1), 96))
    for i in range(0, 96, 32):
        x = splits.train_x[order[i:i + 32]].astype(np.float32) * np.float32(1 / 255)
        state = step(state, x[None], splits.train_y[order[i:i + 32]][None])
    params, stats, _ = jax.tree_util.tree_map(lambda a: a[0], state)
    assert specs.resolved(cfg)["axis_names"] == []  # found in the model, not configured
    for part, want in (("params", params), ("model_state", {"batch_stats": stats})):
        mine, ref = _flat(getattr(got, part)), _flat(want)
        assert mine.keys() == ref.keys()
        for name in mine:
            np.testing.assert_allclose(mine[name], ref[name], atol=2e-5, rtol=1e-5,
                                       err_msg=f"{part}/{name}")
    assert got.alive


@pytest.mark.e2e
def test_flaxs_imagenet_resnet18_file_unchanged_trains_from_the_api_and_the_cli(tmp_path):
    """Flax's examples/imagenet/models.py, byte for byte (its BatchNorm averages over the
    named axis 'batch'), as a grid from jm.grid and from the command line."""
    import hashlib
    import subprocess
    import sys

    import user_models

    import jaxmnist as jm

    path = user_models.write(tmp_path, "models.py", user_models.FLAX_IMAGENET_MODELS)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == \
        user_models.FLAX_IMAGENET_MODELS_SHA256
    model = {"name": f"{path}:ResNet18", "num_classes": 10}
    data = {"train_limit": 96, "val_limit": 32, "test_limit": 32}
    run = jm.grid(model=model, optimizers={"adam": [1e-3], "momentum": [0.05]}, data=data,
                  batch_size=32, synthetic=True, workdir=tmp_path / "api", progress=False)
    table = run.table()
    assert run.complete and len(table) == 2 and (table["status"] != "diverged").all()
    assert run.view.config["members"][0]["config"]["model"]["axis_names"] == []  # found alone
    (tmp_path / "study.py").write_text(
        "import ml_collections\n\n\ndef get_config():\n"
        "    c = ml_collections.ConfigDict()\n    c.study = 'resnet18'\n"
        "    c.data = dict(split='none', train_limit=96, test_limit=32)\n"
        f"    c.base = dict(model=dict(name={str(path) + ':ResNet18'!r}, num_classes=10),\n"
        "                  optim=dict(name='momentum', learning_rate=0.05),\n"
        "                  train=dict(epochs=1, batch_size=32))\n"
        "    c.grid = dict(optim=dict(name=['momentum', 'adamw']))\n    c.seeds = 1\n"
        "    return c\n")
    out = subprocess.run([sys.executable, "-m", "jaxmnist.sweep", str(tmp_path / "study.py"),
                          "--synthetic", "--no-report", "--workdir", str(tmp_path / "cli")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert jm.open_run(tmp_path / "cli").complete
