"""Study configs: overrides, validation messages, expansion (no jax needed except sync checks)."""

from pathlib import Path

import pytest

from jaxmnist import config as C
from jaxmnist import schema

SWEEPS = Path(__file__).resolve().parent.parent / "sweeps"
# Every study that ships (flax_mnist and optimizers included): a new one is checked at once.
STUDIES = sorted(p.stem for p in SWEEPS.glob("*.py") if not p.name.startswith("_"))


def study(name: str, **kw) -> dict:
    return C.resolve(C.load_study(SWEEPS / f"{name}.py"), **kw)


@pytest.mark.parametrize("name, preset", [
    (name, preset) for name in STUDIES
    for preset in (None, *C.presets(C.load_study(SWEEPS / f"{name}.py")))
])
def test_shipped_studies_are_valid(name, preset):
    cfg = C.load_study(SWEEPS / f"{name}.py")
    s = study(name, preset=preset)
    assert C.validate_study(s) == []
    members = C.expand(s)
    assert members and all("seed" in m["config"] for m in members)
    if name != "smoke":  # a protocol's seeds are its final phase's (its tuning: one each)
        assert max(cfg.seeds, cfg.get("final_seeds", 0)) >= 3
    # Every shipped preset is smaller than its study (fewer seeds alone do not count); the
    # study's own settings are not reduced.
    seeds_only = preset is not None and set(C.presets(cfg)[preset]) == {"seeds"}
    assert s["reduced"] == (preset is not None and not seeds_only) and s["preset"] == preset


def test_s2_grid_is_twelve_models_times_seeds():
    s = study("s2")
    members = C.expand(s)
    assert len({m["key"] for m in members}) == 12
    assert len(members) == 12 * s["seeds"]
    assert C.expected_sizes(s["data"]) == (50_000, 10_000, 10_000)


def test_s3_shares_identical_configs_between_experiments():
    members = C.expand(study("s3"))
    base = [m for m in members if len(m["experiments"]) == 6]
    assert len(base) == 3  # the 1x64 ReLU / He / lr 0.01 point, once per seed
    names = {e["name"] for e in base[0]["experiments"]}
    assert names == {"depth_width", "activation", "learning_rate", "init", "regularization",
                     "rmsnorm"}
    assert C.expected_sizes(study("s3")["data"]) == (56_000, 0, 14_000)


def test_override_is_type_checked_and_suggests_the_closest_key():
    cfg = C.load_study(SWEEPS / "smoke.py")
    s = C.resolve(cfg, overrides=["base.optim.learning_rate=0.05", "seeds=3",
                                  "grid.optim.name=['adam']", "data.test_limit=500"])
    assert s["base"]["optim"]["learning_rate"] == 0.05 and s["seeds"] == 3
    assert s["grid"]["optim"]["name"] == ["adam"] and s["data"]["test_limit"] == 500
    with pytest.raises(C.ConfigError) as err:
        C.resolve(cfg, overrides=["base.train.epoch=3", "seeds=three"])
    text = str(err.value)
    assert "did you mean 'base.train.epochs'" in text
    assert "expected an integer" in text
    # An optimizer's own keys are checked by the optimizer the member names.
    s = C.resolve(cfg, overrides=["base.optim.learnig_rate=0.1"])
    assert any("'learnig_rate' is not a hyperparameter of 'sgd'" in p
               and "did you mean 'learning_rate'?" in p for p in C.validate_study(s))


@pytest.mark.parametrize("override, message", [
    ("base.optim.name=adamz", "valid choices: sgd, momentum, nesterov, adam, adamw, nadam"),
    ("base.model.activation=relu6", "base.model: mlp activation[0]: 'relu6' is not valid"),
    ("base.model.init=kaiming", "base.model: mlp init[0]: 'kaiming' is not valid"),
    ("base.model.name=resnet", "valid choices are ['mlp', 'cnn', 'cnn_depth', 'squeezenet'"),
    ("base.loss=hinge", "valid choices: xent, xent_onehot, mse, bce"),
    ("base.train.epochs=0", "train.epochs: must be a positive integer"),
    ("base.train.batch_size=-4", "train.batch_size: must be a positive integer"),
    ("data.val_size=60000", "needs an integer in [1, 59999]"),
    ("data.split=kfold", "valid choices: none, keras, holdout, merged"),
    ("base.train.batch_size=4096", "exceeds the 2000 training images"),
])
def test_bad_values_give_one_clear_message(override, message):
    s = study("smoke", overrides=[override])
    problems = C.validate_study(s)
    assert any(message in p for p in problems), problems


def test_grid_with_a_bad_value_names_the_grid_points():
    s = study("smoke", overrides=["grid.optim.learning_rate=[0.1, -1.0]"])
    (problem,) = C.validate_study(s)
    assert "learning_rate: must be a positive number, got -1.0" in problem
    assert "grid points" in problem


def test_quick_preset_marks_the_run_reduced():
    s = study("s0", quick=True)
    assert s == study("s0", preset="quick")
    assert s["base"]["train"]["epochs"] == 3 and s["data"]["train_limit"] == 6000
    assert s["reduced_reasons"] == ["3 of 10 epochs", "train set 6,000 of 60,000 images"]


@pytest.mark.parametrize("name", ["s2", "s4"])
def test_cpu_presets_train_on_the_full_data_with_fewer_epochs(name):
    full, cpu = study(name), study(name, preset="cpu")
    assert C.expected_sizes(cpu["data"]) == C.expected_sizes(full["data"])
    assert cpu["base"]["train"]["epochs"] < full["base"]["train"]["epochs"]
    assert len({m["key"] for m in C.expand(cpu)}) == len({m["key"] for m in C.expand(full)})
    # Fewer seeds are not a reduction (the papers ran each model once): only the epochs are.
    assert cpu["reduced_reasons"] == [
        f"{cpu['base']['train']['epochs']} of {full['base']['train']['epochs']} epochs"]


def test_full_settings_are_not_reduced_whatever_the_seeds_or_device():
    s = study("s3", seeds=1)
    assert s["preset"] is None and not s["reduced"] and s["reduced_reasons"] == []
    s = study("s2", overrides=["grid.optim.learning_rate=[0.1, 0.01]", "data.test_limit=500"])
    assert s["reduced"]
    assert "6 of 12 grid points" in s["reduced_reasons"]  # 3 optimizers x 2 rates
    assert "test set 500 of 10,000 images" in s["reduced_reasons"]
    assert not any("CPU" in r for r in s["reduced_reasons"])


def test_unknown_preset_names_the_study_presets():
    with pytest.raises(C.ConfigError, match=r"unknown preset 'cpus'.*did you mean 'cpu'"
                                            r".*this study's presets: cpu, quick"):
        study("s2", preset="cpus")
    with pytest.raises(C.ConfigError, match="this study's presets: none"):
        study("smoke", preset="cpu")
    with pytest.raises(C.ConfigError, match="cannot be combined"):
        study("s2", quick=True, preset="cpu")


def test_nested_and_flatten_round_trip():
    dotted = {"optim.name": ["a"], "optim.learning_rate": [1.0], "model.hidden": [[3]]}
    assert C.flatten(C.nested(dotted)) == dotted


def test_optimizer_hyperparameters_are_checked_by_the_optimizer_module():
    s = study("flax_mnist", overrides=["base.optim.momentum=1.5"])
    assert any("momentum: must be in [0, 1), got 1.5" in p for p in C.validate_study(s))
    base = study("smoke")["base"]
    bad = {**base, "optim": {**base["optim"], "nesterov": True}}
    (problem,) = schema.member_problems(bad)
    assert ("'nesterov' is not a hyperparameter of 'sgd' (it takes: learning_rate, schedule, "
            "clip_norm, ema)") in problem
    bad = {**base, "optim": {**base["optim"], "name": "adamw", "weight_decay": -1.0,
                             "schedule": {"name": "warmup_cosine", "warmup_steps": 10}}}
    (problem,) = schema.member_problems(bad)
    assert "weight_decay: must be in [0, inf)" in problem


def test_a_point_that_changes_optimizer_inherits_only_what_every_optimizer_takes():
    s = study("smoke")
    s["base"]["optim"] = {"name": "adam", "learning_rate": 1e-3, "b1": 0.5, "clip_norm": 1.0,
                          "schedule": "cosine"}
    s["experiments"] = [{"name": "main", "title": "", "points": [
        {"label": "adam b1", "set": {}},
        {"label": "adam b2", "set": {"optim.b2": 0.99}},
        {"label": "sgd", "set": {"optim.name": "sgd", "optim.learning_rate": 0.1}},
        {"label": "momentum", "set": {"optim.name": "momentum", "optim.momentum": 0.8}},
    ]}]
    s["seeds"] = 2
    # config.json's sections: exactly what each member got, every default written out.
    optims = {C.describe(m): m["config"]["optim"] for m in C.check(s)}
    common = {"clip_norm": 1.0, "schedule": {"name": "cosine", "decay_steps": None,
                                             "alpha": 0.0, "exponent": 1.0}}
    assert optims["adam b1 (seed 0)"] == {"name": "adam", "learning_rate": 1e-3, "b1": 0.5,
                                          "b2": 0.999, "eps": 1e-7, **common}
    assert optims["adam b2 (seed 1)"]["b1"] == 0.5  # the same optimizer keeps the base's values
    assert optims["sgd (seed 0)"] == {"name": "sgd", "learning_rate": 0.1, **common}
    assert optims["momentum (seed 1)"] == {"name": "momentum", "learning_rate": 1e-3,
                                           "momentum": 0.8, **common}
    # What a point sets itself is used or refused, once per point (not once per seed).
    s["experiments"][0]["points"].append(
        {"label": "sgd b1", "set": {"optim.name": "sgd", "optim.b1": 0.9}})
    (problem,) = C.validate_study(s)
    assert "'b1' is not a hyperparameter of 'sgd'" in problem
    assert "the optimizers that take 'b1': adam, adamw" in problem
    assert problem.endswith("(grid points sgd b1)")


def test_an_override_may_set_an_optimizers_own_key():
    s = study("s0", overrides=["base.optim.b1=0.8"])
    assert {m["config"]["optim"]["b1"] for m in C.check(s)} == {0.8}
    s = study("s0", overrides=["base.optim.momentum=0.8"])
    assert "'momentum' is not a hyperparameter of 'adam'" in C.validate_study(s)[0]


def test_every_problem_is_listed_at_once_with_did_you_mean():
    base = study("smoke")["base"]
    bad = {**base, "optim": {**base["optim"], "name": "adma"}, "loss": "xnet",
           "train": {**base["train"], "epochs": 0, "batchsize": 3}}
    problems = schema.member_problems(bad)
    assert any("'adma' is not a valid optimizer; valid choices: sgd, momentum, nesterov, adam"
               in p and "did you mean 'adam" in p for p in problems)
    assert any("'xnet' is not a valid loss" in p and "did you mean 'xent'?" in p
               for p in problems)
    assert any("train.epochs: must be a positive integer, got 0" in p for p in problems)
    assert any("unknown key 'train.batchsize'; did you mean 'train.batch_size'?" in p
               for p in problems)


def test_expected_sizes_match_the_data_module():
    import datasource

    from jaxmnist import data

    for name in ("smoke", "s1"):
        preset = "quick" if "quick" in C.presets(C.load_study(SWEEPS / f"{name}.py")) else None
        spec = dict(study(name, preset=preset)["data"])
        spec.pop("source")
        splits = data.make_splits(spec, source=datasource.SOURCE, data_dir=datasource.MNIST_DIR)
        val = 0 if splits.val_y is None else len(splits.val_y)
        assert (len(splits.train_y), val, len(splits.test_y)) == C.expected_sizes(spec)


# --------------------------------------------------------------------------------------------
# Studies by name, shipped in the package; defaults filled by the schema
# --------------------------------------------------------------------------------------------

ALL_STUDIES = sorted(p.stem for p in SWEEPS.glob("*.py") if not p.name.startswith("_"))


def test_a_shipped_study_loads_by_name_as_from_its_file():
    assert C.shipped_studies() == ALL_STUDIES
    assert C.studies_dir().resolve() == SWEEPS  # this checkout's own, whatever is installed
    for name in ALL_STUDIES:
        assert C.to_plain(C.load_study(name)) == C.to_plain(C.load_study(SWEEPS / f"{name}.py"))
    assert [row[1] for row in C.list_studies()] == ALL_STUDIES


@pytest.mark.parametrize("given, path", [("s2", False), ("sweeps/s2.py", True), ("s2.py", True),
                                         ("my_study", False), ("./s2", True)])
def test_a_name_has_no_folder_and_no_py_suffix(given, path):
    assert C.is_study_name(given) is not path
    assert not C.is_study_name(Path("s2"))  # a Path is always a file path


def test_an_unknown_study_name_lists_the_shipped_studies():
    with pytest.raises(C.ConfigError) as err:
        C.load_study("s22")
    text = str(err.value)
    assert "unknown study 's22'; did you mean 's2'?" in text
    assert "s0, s1, s2, s3, s4, smoke" in text and "--list" in text


def test_a_missing_study_file_points_to_the_study_of_that_name(tmp_path):
    with pytest.raises(C.ConfigError, match="the shipped study 's2' runs by name: python -m "
                       "jaxmnist.sweep s2"):
        C.load_study(tmp_path / "sweeps" / "s2.py")


def test_the_studies_ship_in_the_package():
    """pyproject maps sweeps/ to jaxmnist.sweeps and lists every package (the wheel test in
    tests/test_sweep.py builds and installs it)."""
    tomllib = pytest.importorskip("tomllib")
    root = SWEEPS.parent
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setup["package-dir"] == {"jaxmnist.sweeps": "sweeps"}
    assert (SWEEPS / "__init__.py").is_file()
    folders = {".".join(p.relative_to(root).parts) for p in (root / "jaxmnist").rglob("*")
               if p.is_dir() and p.name != "__pycache__" and "__pycache__" not in p.parts}
    assert set(setup["packages"]) == {"jaxmnist", "jaxmnist.sweeps", *folders}, (
        "a folder under jaxmnist/ is missing from [tool.setuptools] packages in pyproject.toml")
    import importlib.resources
    import importlib.util

    spec = importlib.util.find_spec("jaxmnist.sweeps")
    if spec is None or Path(next(iter(spec.submodule_search_locations))).resolve() != SWEEPS:
        pytest.skip("jaxmnist.sweeps of this checkout is not installed (editable) here")
    found = sorted(r.name.removesuffix(".py") for r in
                   importlib.resources.files("jaxmnist.sweeps").iterdir()
                   if r.name.endswith(".py") and not r.name.startswith("_"))
    assert found == ALL_STUDIES


def test_a_study_states_only_what_differs_from_the_defaults():
    from jaxmnist import data, schema

    minimal = {"study": "m", "title": "minimal", "data": {"split": "none"}, "seeds": 1,
               "base": {"model": {"name": "mlp", "hidden": [8]},
                        "optim": {"name": "sgd", "learning_rate": 0.1},
                        "train": {"epochs": 1, "batch_size": 32}}}
    s = C.resolve(minimal, overrides=["data.train_limit=64"])
    assert C.validate_study(s) == []
    assert s["data"] == {**data.DATA_DEFAULTS, "split": "none", "train_limit": 64}
    defaults = {k: v for k, v in schema.study_defaults().items() if k != "title"}
    assert {k: s[k] for k in defaults} == defaults
    assert len(C.expand(s)) == 1


@pytest.mark.parametrize("name", ALL_STUDIES)
def test_study_files_repeat_no_default(name):
    from jaxmnist import data, schema

    raw = C.to_plain(C.load_study(name))
    repeated = [f"data.{k}" for k, v in raw["data"].items()
                if k in data.DATA_DEFAULTS and v == data.DATA_DEFAULTS[k]]
    repeated += [k for k, v in schema.study_defaults().items() if raw.get(k, object()) == v]
    assert not repeated, f"sweeps/{name}.py states defaults: {repeated}"


def test_a_study_checked_again_is_not_expanded_again(monkeypatch):
    """jm.load_study then jm.run check the same study twice: one expansion serves both."""
    import copy

    s = study("s2")
    calls = []
    real = C._validate
    monkeypatch.setattr(C, "_validate", lambda st: calls.append(1) or real(st))
    monkeypatch.setattr(C, "_CHECKED", type(C._CHECKED)())
    first = C.check(s)
    again = C.check(copy.deepcopy(s))
    assert len(calls) == 1 and [m["config"] for m in again] == [m["config"] for m in first]
    assert again is not first and again[0] is not first[0]  # a caller's edits stay its own
    again[0]["config"]["optim"]["learning_rate"] = 123.0
    assert C.check(s)[0]["config"] == first[0]["config"] != again[0]["config"]
    other = C.resolve(C.load_study("s2"), overrides=["data.test_limit=500"])
    C.check(other)
    assert len(calls) == 2  # another study: its own expansion
    bad = copy.deepcopy(s)
    bad["base"]["optim"]["learning_rate"] = -1.0
    for _ in range(2):  # an invalid study is never kept: each check reports its problems
        with pytest.raises(C.ConfigError):
            C.check(bad)
    assert len(calls) == 4


def test_an_experiment_with_its_own_seeds_gets_fresh_members_of_the_same_points():
    """A final phase re-runs a chosen setting over fresh seeds: the same config, seeds 100..102,
    members of that experiment alone (the tuning seed 0 stays the tuning experiment's)."""
    s = C.resolve(C.load_study("smoke"))
    s["seeds"] = 1
    s["experiments"] = [
        {"name": "main", "grid": {"optim": {"learning_rate": [0.1, 0.01]}}},
        {"name": "fresh", "seeds": 3, "first_seed": 100,
         "points": [{"label": "chosen", "set": {"optim.learning_rate": 0.1}}]}]
    assert C.validate_study(s) == []
    got = [(m["config"]["seed"], m["config"]["optim"]["learning_rate"],
            [e["name"] for e in m["experiments"]]) for m in C.expand(s)]
    assert got == [(0, 0.1, ["main"]), (100, 0.1, ["fresh"]), (101, 0.1, ["fresh"]),
                   (102, 0.1, ["fresh"]), (0, 0.01, ["main"])]
    s["experiments"][1]["seeds"] = 0
    assert any("experiments" in p and "seeds" in p for p in C.validate_study(s))


def test_pruning_is_switched_off_with_none():
    """--config.prune=None: the tuning study's full grid (what pruning is measured against)."""
    s = study("tune", preset="cpu", overrides=["prune=None", "final_seeds=0"])
    assert s["prune"] is None and C.validate_study(s) == []
    assert len(C.expand(s)) == 64
    with pytest.raises(C.ConfigError, match="--config.prune is a section"):
        study("tune", overrides=["prune=off"])


def test_an_override_of_none_clears_a_field_and_the_schema_judges_it():
    s = study("smoke", overrides=["data.test_limit=None"])
    assert s["data"]["test_limit"] is None and C.validate_study(s) == []
    problems = C.validate_study(study("smoke", overrides=["base.train.epochs=None"]))
    assert any("train.epochs" in p for p in problems), problems
