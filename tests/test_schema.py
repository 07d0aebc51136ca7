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

    member = schema.schemas()["member"]
    walk(member, "")
    sections = {name for name, f in member.model_fields.items()
                if hasattr(f.annotation, "model_fields")}
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


def test_member_fills_the_defaults_and_keeps_the_config_as_written():
    cfg = {"model": {"name": "mlp", "hidden": [8]}, "optim": {"name": "adam",
           "learning_rate": 1e-3, "b1": 0.8}, "reg": {}, "loss": "xent",
           "train": {"epochs": 1, "batch_size": 32}}
    m = schema.member(cfg)
    assert (m.reg.l1, m.reg.l2, m.train.strategy, m.seed) == (0.0, 0.0, "auto", 0)
    assert m.optim.learning_rate == 1e-3 and m.optim.model_extra == {"b1": 0.8}
    assert m.model.model_dump() == {"name": "mlp", "hidden": [8]}  # the family fills its own
    assert m.config() == cfg and m.config() is not cfg
    assert schema.member(m) is m


def test_member_lists_every_problem_in_one_message():
    cfg = {"model": {"name": "mlp", "activation": "relu6"},
           "optim": {"name": "adma", "learning_rate": 0}, "reg": {"l2": -1.0}, "loss": "xnet",
           "train": {"epochs": 0, "batch_size": 32, "strategy": "vamp"}, "sed": 1}
    with pytest.raises(C.ConfigError) as err:
        schema.member(cfg, "members[2]")
    text = str(err.value)
    assert text.startswith("invalid member config:")
    for part in ("members[2].model.activation: 'relu6' is not a valid activation",
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
    assert a.member.config() == b.member.config() == cfg
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

    member, spec = schema.schemas()["member"], schema.schemas()["data"]
    assert schema.model_choices(member, ("optim", "name")) == tuple(optim.OPTIMIZERS)
    assert schema.model_choices(member, ("loss",)) == tuple(losses.LOSSES)
    assert schema.model_choices(member, ("train", "strategy")) == tuple(groups.STRATEGIES)
    assert schema.model_choices(spec, ("name",)) == tuple(data.DATASET_NAMES)
    assert schema.model_choices(spec, ("split",)) == tuple(data.SPLIT_KINDS)
    assert schema.model_choices(spec, ("source",)) == tuple(data.SOURCES)
    assert not hasattr(C, "OPTIMIZERS") and not hasattr(C, "ACTIVATIONS")  # no copies


def test_dynamic_keys_exist_in_the_member_schema():
    pytest.importorskip("jax")
    member = schema.schemas()["member"]
    for key in C.DYNAMIC_KEYS:
        if key == "seed":
            continue
        if key == "optim":  # the whole section: name, numbers, schedule (engine.optim.plan)
            assert "optim" in member.model_fields
            continue
        section, leaf = key.split(".")
        fields = member.model_fields[section].annotation
        # model and optim sections allow extra keys, checked by their owning modules
        assert leaf in fields.model_fields or fields.model_config.get("extra") == "allow", key


def test_the_data_defaults_are_the_schemas():
    pytest.importorskip("jax")
    from jaxmnist import data

    fields = schema.schemas()["data"].model_fields
    assert {k: f.default for k, f in fields.items() if k != "split"} == data.DATA_DEFAULTS
