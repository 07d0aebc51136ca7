"""The typed member config (jaxmnist.schema): defaults once, every problem at once, the engine
reading Member objects; choice lists and defaults from their owners."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from jaxmnist import config as C
from jaxmnist import schema

PACKAGE = Path(__file__).resolve().parent.parent / "jaxmnist"
# The schema defines the member config's defaults. The data spec shares the key name ``seed``
# with the member config; its owner, jaxmnist.data.splits, defines the data spec's defaults.
ALLOWED = {"schema.py": None, "data/splits.py": {"seed"}}


def member_keys() -> tuple[set[str], set[str]]:
    """``(dotted paths, key names)`` of the Member model's fields, read from the model itself.

    The key names are the leaves (``learning_rate``, ``l2``, ``strategy``, ``seed``, ...): the
    section names (``train`` is also a split, ``model`` a run file's field) and ``name`` (every
    section and most dicts have one) are checked as dotted paths only.
    """
    paths: set[str] = set()

    def walk(model, prefix: str) -> None:
        for name, field in model.model_fields.items():
            path = f"{prefix}{name}"
            paths.add(path)
            sub = field.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                walk(sub, path + ".")

    member = schema.Member
    walk(member, "")
    sections = {name for name, f in member.model_fields.items()
                if hasattr(f.annotation, "model_fields")} | {"model"}  # model: a union
    return paths, {p.rsplit(".", 1)[-1] for p in paths} - sections - {"name"}


def _is_default(node: ast.AST) -> bool:
    """A value that supplies a default. None, ``_MISSING``-style markers, empty containers and
    the display placeholder ``"?"`` choose no value: they only say "absent"."""
    if isinstance(node, ast.Constant) and node.value in (None, "?"):
        return False
    if isinstance(node, ast.Dict | ast.List | ast.Tuple) and not (
            node.keys if isinstance(node, ast.Dict) else node.elts):
        return False
    return not (isinstance(node, ast.Name) and node.id.lstrip("_").isupper())


def _literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def defaults_outside_schema(package: Path) -> list[str]:
    """Every place under ``package`` (but the schema) that supplies a default for a member key.

    Flags ``get_dotted(x, "train.strategy", "auto")``, ``x.get("l2", 0.0)``,
    ``getattr(x, "seed", 0)``, ``x.setdefault / pop("loss", ...)``, ``x.get("seed") or 0``
    and dict literals that put constants under a spread (``{"learning_rate": 1e-3, **cfg}``).
    """
    paths, names = member_keys()
    dotted = paths | {f"base.{p}" for p in paths}
    found = []
    for file in sorted(package.rglob("*.py")):
        rel = file.relative_to(package).as_posix()
        if rel in ALLOWED and ALLOWED[rel] is None:
            continue
        keys = names - (ALLOWED.get(rel) or set())
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            hit = None
            if isinstance(node, ast.Call):
                fn, args = node.func, node.args
                fname = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
                if fname == "get_dotted" and len(args) == 3 and _literal(args[1]) in dotted \
                        and _is_default(args[2]):
                    hit = _literal(args[1])
                elif fname == "getattr" and len(args) == 3 and _literal(args[1]) in keys \
                        and _is_default(args[2]):
                    hit = _literal(args[1])
                elif (isinstance(fn, ast.Attribute) and fname in ("get", "setdefault", "pop")
                      and len(args) == 2 and _literal(args[0]) in keys and _is_default(args[1])):
                    hit = _literal(args[0])
            elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
                first = node.values[0]
                if (isinstance(first, ast.Call) and isinstance(first.func, ast.Attribute)
                        and first.func.attr == "get" and len(first.args) == 1
                        and _literal(first.args[0]) in keys):
                    hit = _literal(first.args[0])
            elif isinstance(node, ast.Dict) and None in node.keys:  # {"key": default, **cfg}
                before = node.keys[: max(i for i, k in enumerate(node.keys) if k is None)]
                hit = next((_literal(k) for k, v in zip(before, node.values, strict=False)
                            if _literal(k) in keys | {"name"} and isinstance(v, ast.Constant)),
                           None)
            if hit:
                found.append(f"jaxmnist/{rel}:{node.lineno}: a default for {hit!r}")
    return found


def test_no_module_but_the_schema_defines_a_member_default():
    assert defaults_outside_schema(PACKAGE) == []


def test_the_static_check_sees_the_patterns(tmp_path):
    (tmp_path / "engine.py").write_text(
        "def f(m, get_dotted):\n"
        "    a = get_dotted(m, 'train.strategy', 'auto')\n"
        "    b = m.get('l2', 0.0)\n"
        "    c = getattr(m, 'seed', 0)\n"
        "    d = m.get('seed') or 0\n"
        "    e = {'name': 'adam', 'learning_rate': 1e-3, **d}\n"
        "    ok = (m.get('loss'), m.get('seed', None), m.get('hidden', [64]), {**d, 'seed': 1},\n"
        "          m.get('train', {}), m.get('epochs', '?'))\n")
    found = defaults_outside_schema(tmp_path)
    assert [f.split(": ", 1)[1] for f in found] == [
        "a default for 'train.strategy'", "a default for 'l2'", "a default for 'seed'",
        "a default for 'seed'",
        "a default for 'name'"]


def test_member_fills_every_default_and_its_config_rebuilds_it():
    cfg = {"model": {"name": "mlp", "hidden": [8]}, "optim": {"name": "adam",
           "learning_rate": 1e-3, "b1": 0.8}, "train": {"epochs": 1, "batch_size": 32}}
    m = schema.member(cfg)
    assert (m.reg.l1, m.reg.l2, m.loss, m.train.strategy, m.seed) == (0.0, 0.0, "xent", "auto", 0)
    # The optimizer's own hyperparameters: what the study set, the optimizer's defaults beside.
    assert m.optim.hyper == {"b1": 0.8, "b2": 0.999, "eps": 1e-7}
    assert m.model.config() == {"name": "mlp", "hidden": [8], "activation": "relu",
                                "init": "he_normal", "rmsnorm": False, "dropout": 0.0}
    assert m.config()["optim"] == {"name": "adam", "learning_rate": 1e-3, "b1": 0.8,
                                   "b2": 0.999, "eps": 1e-7, "schedule": {"name": "constant"},
                                   "clip_norm": None}
    assert schema.member(m.config()) == m  # config.json's form rebuilds the same Member
    assert schema.member(m) is m


def test_mypy_sees_members_fields(tmp_path):
    import subprocess
    import sys

    (tmp_path / "use.py").write_text(
        "from jaxmnist import schema\n"
        "m = schema.member({})\n"
        "epochs: int = m.train.epochs\n"
        "lr: float = m.optim.learning_rate\n"
        "m.optim.learnig_rate\n"
        "bad: str = m.seed\n")
    out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"),
                          "--config-file", str(PACKAGE.parent / "pyproject.toml"),
                          str(tmp_path / "use.py")], capture_output=True, text=True,
                         cwd=PACKAGE.parent, timeout=300)
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, out.stdout
    assert 'use.py:5: error: "Optim" has no attribute "learnig_rate"' in errors[0]
    assert "use.py:6: error: Incompatible types in assignment" in errors[1]


def test_the_type_checker_sees_the_fields():
    # Static classes: the fields are declared, not built at run time (CI runs mypy on them).
    assert list(schema.Member.model_fields) == ["model", "optim", "reg", "loss", "train", "seed"]
    assert list(schema.Optim.model_fields) == ["name", "learning_rate", "hyper", "schedule",
                                               "clip_norm", "ema"]
    assert schema.Member.__module__ == "jaxmnist.schema"


def test_member_lists_every_problem_in_one_message():
    cfg = {"model": {"name": "mlp", "activation": "relu6"},
           "optim": {"name": "adma", "learning_rate": 0}, "reg": {"l2": -1.0}, "loss": "xnet",
           "train": {"epochs": 0, "batch_size": 32, "strategy": "vamp"}, "sed": 1}
    with pytest.raises(C.ConfigError) as err:
        schema.member(cfg, "members[2]")
    text = str(err.value)
    assert text.startswith("invalid member config:")
    for part in ("members[2].model: mlp activation[0]: 'relu6' is not valid; valid choices are",
                 "members[2].optim.name: 'adma' is not a valid optimizer",
                 "did you mean 'adam",
                 "members[2].optim.learning_rate: must be a positive number, got 0",
                 "members[2].reg.l2: must be a number >= 0",
                 "members[2].loss: 'xnet' is not a valid loss",
                 "members[2].train.epochs: must be a positive integer, got 0",
                 "members[2].train.strategy: 'vamp' is not a valid strategy",
                 "members[2]: unknown key 'sed'; did you mean 'seed'?"):
        assert part in text, part


def test_the_learning_rate_rule_is_the_optimizer_modules():
    pytest.importorskip("jax")
    from jaxmnist.engine import optim

    assert optim.learning_rate_problem(0.0) == "must be a positive number, got 0.0"
    assert any("learning_rate: must be a positive number" in p
               for p in optim.validate_optimizer("sgd", {"learning_rate": 0.0}))


def test_split_rules_live_in_the_data_module():
    from jaxmnist import data

    spec = {**data.DATA_DEFAULTS, "split": "holdout", "val_size": 60_000}
    assert schema.data_problems(spec) == [
        f"data.{k}: {m}" for k, m in data.split_problems(spec, data.MNIST_TRAIN)]
    assert "needs an integer in [1, 59999]" in schema.data_problems(spec)[0]


def test_the_engine_trains_a_member_as_it_trains_the_same_dict():
    pytest.importorskip("jax")
    from train_fixtures import SMALL_MLP, base_member, small_splits

    from jaxmnist.engine.fit import train_grid

    cfg = base_member(**{"model": {**SMALL_MLP, "hidden": [16]}, "optim.name": "sgd",
                         "optim.learning_rate": 0.1, "reg.l2": 1e-4, "seed": 2})
    splits = small_splits(n_train=128, n_val=64, n_test=64)
    (a,) = train_grid([cfg], splits)
    (b,) = train_grid([schema.member(cfg)], splits)
    assert a.member.config() == b.member.config() == schema.member(cfg).config()
    assert (a.test_loss, a.test_acc) == (b.test_loss, b.test_acc)
    np.testing.assert_array_equal(a.history, b.history)
    for leaf_a, leaf_b in zip(_leaves(a.params), _leaves(b.params), strict=True):
        np.testing.assert_array_equal(leaf_a, leaf_b)


def _leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)


def test_a_sweep_run_expands_its_study_once(monkeypatch):
    calls = []
    expand = C.expand
    monkeypatch.setattr(C, "expand", lambda s: calls.append(1) or expand(s))
    s = C.resolve(C.load_study("smoke"), overrides=["data.source=synthetic"])
    members = C.check(s)
    assert len(calls) == 1 and all(isinstance(m["typed"], schema.Member) for m in members)
    assert [m["typed"].config() for m in members] == [m["config"] for m in members]


# --------------------------------------------------------------------------------------------
# Choice lists and defaults from their owners (moved here from test_config.py)
# --------------------------------------------------------------------------------------------


def test_choice_lists_come_from_the_owning_modules():
    pytest.importorskip("jax")
    from jaxmnist import data, groups
    from jaxmnist.engine import losses, optim

    base = {"model": {"name": "mlp"}, "optim": {"name": "adam", "learning_rate": 1e-3},
            "train": {"epochs": 1, "batch_size": 32}}
    for key, owner in (("loss", losses.LOSSES), ("train.strategy", groups.STRATEGIES)):
        cfg = C.nested({**C.flatten(base), key: "nope"})
        (problem,) = schema.member_problems(cfg)
        assert f"valid choices: {', '.join(owner)}" in problem, problem
    (problem,) = schema.member_problems(C.nested({**C.flatten(base), "optim.name": "nope"}))
    assert f"valid choices: {', '.join(optim.OPTIMIZERS)}" in problem
    spec = {"split": "none"}
    for key, owner in (("name", data.DATASET_NAMES), ("split", data.SPLIT_KINDS),
                       ("source", data.SOURCES)):
        (problem,) = schema.data_problems({**spec, key: "nope"})
        assert f"valid choices: {', '.join(owner)}" in problem, problem
    assert not hasattr(C, "OPTIMIZERS") and not hasattr(C, "ACTIVATIONS")  # no copies


def test_a_registered_optimizer_is_valid_at_once():
    pytest.importorskip("jax")
    from jaxmnist.engine import optim

    cfg = {"model": {"name": "mlp"}, "optim": {"name": "radam_test", "learning_rate": 1e-3},
           "train": {"epochs": 1, "batch_size": 32}}
    assert "is not a valid optimizer" in schema.member_problems(cfg)[0]
    optim.register_optimizer("radam_test", "radam", {"b1": 0.9, "b2": 0.999, "eps": 1e-8})
    try:
        assert schema.member(cfg).optim.hyper == {"b1": 0.9, "b2": 0.999, "eps": 1e-8}
    finally:
        optim._REGISTRY.pop("radam_test")
        optim.OPTIMIZERS = tuple(optim._REGISTRY)


def test_dynamic_keys_exist_in_the_member_schema():
    for key in C.DYNAMIC_KEYS:
        section, _, leaf = key.partition(".")
        assert section in schema.Member.model_fields, key
        if section == "reg":
            assert leaf in schema.Reg.model_fields, key
        if section == "model":  # a zoo family's own key
            from jaxmnist.models import specs

            assert leaf in specs.Mlp.model_fields, key


def test_the_data_defaults_are_the_data_modules():
    from jaxmnist import data

    fields = schema.Data.model_fields
    assert {k: f.default for k, f in fields.items() if k != "split"} == data.DATA_DEFAULTS


PRUNE_STUDY = {"study": "x", "data": {"split": "holdout", "val_size": 100},
               "base": {"train": {"epochs": 3}}, "seeds": 1}


@pytest.mark.parametrize("prune, data, message", [
    ({"eta": 1, "rungs": [1]}, {}, "study.prune.eta: must be a number > 1"),
    ({"rungs": [2, 2]}, {}, "rungs: need increasing epochs such as [1, 3], got [2, 2]"),
    ({"rungs": []}, {}, "rungs: need increasing epochs"),
    ({"rungs": [1, 4]}, {}, "prune.rungs: 4 is past the last epoch (3)"),
    ({"rungs": [1], "metric": "test_acc"}, {},
     "study.prune.metric: 'test_acc' is not a ranking metric; valid choices: val_acc, val_loss"),
    ({"rungs": [1], "within": "optimizer"}, {}, "valid choices: family, group"),
    ({"rungs": [1]}, {"split": "none", "val_size": None},
     "prune: ranks points on the validation split, and data.split is 'none'"),
])
def test_bad_prune_settings_get_one_message_each(prune, data, message):
    study = {**PRUNE_STUDY, "data": {**PRUNE_STUDY["data"], **data}, "prune": prune}
    problems = schema.study_problems(study)
    assert len(problems) == 1 and message in problems[0], problems
    good = {**PRUNE_STUDY, "prune": {"rungs": [1, 3], "within": "group", "metric": "val_loss"}}
    assert schema.study_problems(good) == []
    assert schema.Prune.model_validate({"rungs": [1]}).eta == 3  # the default eta


def test_data_seed_zero_is_valid_and_a_negative_one_says_non_negative():
    assert schema.data_problems({"split": "none", "seed": 0}) == []
    (problem,) = schema.data_problems({"split": "none", "seed": -1})
    assert "data.seed" in problem and "non-negative integer or None" in problem, problem
