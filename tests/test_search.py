"""Search spaces: quasi-random draws (reproducible, in range), expansion into ordinary members,
config.json rebuilding them, and one clear message per bad setting (API and CLI, exit 2)."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

from jaxmnist import config as C
from jaxmnist import search

LR = ("log", 1e-5, 1.0)
SPACE = {"adam": {"optim.learning_rate": LR, "optim.b1": (0.8, 0.99)},
         "momentum": {"optim": {"learning_rate": LR, "momentum": ("uniform", 0.5, 0.99)}}}
BASE = {"model": {"name": "mlp", "hidden": [8]}, "optim": {"name": "adam", "learning_rate": 1e-3},
        "train": {"epochs": 1, "batch_size": 32}}
DATA = {"split": "none", "source": "synthetic", "train_limit": 256, "test_limit": 128}


def _study(**fields) -> dict:
    return C.resolve({"study": "searched", "data": DATA, "base": BASE, "seeds": 1,
                      "search": SPACE, "samples": 8, **fields})


def _values(points, key: str) -> list[float]:
    return [s[key] for _, s in points]


def test_same_seed_same_values_another_seed_other_values():
    first, again = search.points(SPACE, 8, 0), search.points(SPACE, 8, 0)
    other = search.points(SPACE, 8, 1)
    assert first == again
    assert _values(first, "optim.learning_rate") != _values(other, "optim.learning_rate")
    # Fewer samples are the first of more (a Halton sequence is extended, not redrawn).
    assert search.points(SPACE, 4, 0) == [p for p in first if p[1]["optim.name"] == "adam"][:4] \
        + [p for p in first if p[1]["optim.name"] == "momentum"][:4]


def test_draws_stay_in_range_and_are_spread_as_their_distribution():
    space = {"adam": {"optim.learning_rate": ("log", 1e-4, 1e-1), "optim.b1": (0.8, 0.99),
                      "reg.l2": ("loggrid", 1e-6, 1e-2), "optim.b2": 0.95}}
    drawn = search.points(space, 64, 3)
    lrs, b1s = np.array(_values(drawn, "optim.learning_rate")), np.array(_values(drawn, "optim.b1"))
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-1 and b1s.min() >= 0.8 and b1s.max() <= 0.99
    # Log-uniform: half the draws below the geometric mean (a uniform draw would put ~3% there).
    assert abs(np.mean(lrs < math.sqrt(1e-4 * 1e-1)) - 0.5) < 0.05
    assert abs(np.mean(b1s < 0.895) - 0.5) < 0.05
    np.testing.assert_allclose(_values(drawn, "reg.l2"), np.geomspace(1e-6, 1e-2, 64))
    assert set(_values(drawn, "optim.b2")) == {0.95}
    assert drawn[0][0] == f"adam lr={lrs[0]:.3g}, b1={b1s[0]:.3g}, b2=0.95, l2=1e-06"


def test_families_share_sample_positions():
    drawn = search.points(SPACE, 8, 0)
    # The same fraction of the log range at every position, whatever else a family samples.
    assert _values(drawn[:8], "optim.learning_rate") == _values(drawn[8:], "optim.learning_rate")


def test_a_search_expands_into_ordinary_members_with_their_sampled_values():
    members = C.check(_study(seeds=2))
    assert len(members) == 2 * 8 * 2 and len(C.group_members([m["config"] for m in members])) == 1
    drawn = dict(search.points(SPACE, 8, 0))
    for m in members:
        label = m["experiments"][0]["label"]
        assert m["typed"].config() == m["config"]
        assert {k: C.get_dotted(m["config"], k) for k in drawn[label]} == drawn[label]
    # The study's grid crosses the sampled points (a static key: one group per value).
    crossed = C.check(_study(grid={"train": {"batch_size": [16, 32]}}))
    assert len(crossed) == 32 and len(C.group_members([m["config"] for m in crossed])) == 2
    assert C.describe(crossed[1]).endswith(", batch_size=32 (seed 0)")
    # Beside a study's own experiments the points are an experiment named "search".
    exps = C.check(_study(experiments=[{"name": "l2", "points": [{"set": {"reg.l2": 1e-4}}]}]))
    assert [e["name"] for m in exps for e in m["experiments"]].count("search") == 16


def test_overrides_change_the_search_and_say_the_run_is_reduced():
    study = C.resolve(C.to_plain(_study()), overrides=["samples=2", "search_seed=5"])
    assert len(C.check(study)) == 4 and "4 of 16 grid points" in study["reduced_reasons"]


def test_config_json_alone_rebuilds_the_sampled_members(tmp_path):
    import jaxmnist as jm
    from jaxmnist import schema
    from jaxmnist.runs import rundir

    run = jm.grid(model={"name": "mlp", "hidden": [8]}, search=SPACE, samples=2, search_seed=7,
                  data={"train_limit": 256, "val_limit": 128, "test_limit": 128}, synthetic=True,
                  workdir=tmp_path / "run", progress=False)
    recorded = rundir.read_config(tmp_path / "run")
    study = {k: recorded[k] for k in schema.Study.model_fields if k in recorded}
    assert study["search_seed"] == 7 and study["samples"] == 2
    rebuilt = C.check(study)
    assert [m["config"] for m in rebuilt] == [m["config"] for m in recorded["members"]]
    drawn = search.points(C.to_plain(SPACE), 2, 7)
    assert [m["label"] for m in recorded["members"]] == [f"{lb} (seed 0)" for lb, _ in drawn]
    assert [m["config"]["optim"]["learning_rate"] for m in recorded["members"]] == \
        _values(drawn, "optim.learning_rate")
    assert list(run.points().index) != [] and set(run.points().index) <= {lb for lb, _ in drawn}


BAD = [
    ({"adm": {"optim.learning_rate": LR}}, "search: 'adm' is not a valid optimizer", None),
    ({"adam": {"model.name": ("a", "b")}}, "search.adam: 'model.name' cannot be sampled", None),
    ({"adam": {"train.batch_size": (16, 64)}}, "'train.batch_size' cannot be sampled", None),
    ({"adam": {"optim.name": (1, 2)}}, "'optim.name' cannot be sampled", None),
    ({"adam": {"optim.b1": (0.99, 0.8)}}, "search.adam.optim.b1: lo 0.99 must be below hi 0.8",
     None),
    ({"adam": {"optim.learning_rate": ("log", 0, 1)}}, "'log' needs 0 < lo < hi, got lo=0", None),
    ({"adam": {"optim.learning_rate": ("lg", 1e-3, 1)}}, "did you mean 'log'?", None),
    ({"sgd": {"optim.learning_rate": LR, "optim.b1": (0.8, 0.9)}},
     "'b1' is not a hyperparameter of 'sgd'", None),
    (SPACE, "samples: must be a positive integer, got 0", 0),
]


@pytest.mark.parametrize("space, message, samples", BAD)
def test_a_bad_search_gets_one_message(space, message, samples):
    with pytest.raises(C.ConfigError) as err:
        C.check(_study(search=space, samples=8 if samples is None else samples))
    assert len(err.value.problems) == 1 and message in err.value.problems[0]


@pytest.mark.parametrize("space, message, samples", BAD)
def test_a_bad_search_is_exit_2_and_nothing_written_by_the_api_and_the_cli(
        tmp_path, space, message, samples):
    import jaxmnist as jm
    from jaxmnist import sweep

    with pytest.raises(C.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        jm.grid(model="mlp", search=space, samples=samples, synthetic=True,
                workdir=tmp_path / "api", progress=False)
    study = tmp_path / "searched.py"
    study.write_text("import ml_collections\nfrom jaxmnist.config import nested\n\n\n"
                     "def get_config():\n"
                     f"    return ml_collections.ConfigDict(dict(study='s', data={DATA!r}, "
                     f"base={BASE!r}, seeds=1, samples={8 if samples is None else samples}, "
                     f"search={{k: nested(v) for k, v in {space!r}.items()}}))\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = sweep.main([str(study), "--workdir", str(tmp_path / "cli")])
    assert code == 2 and err.getvalue().count(message) == 1 and "Traceback" not in err.getvalue()
    assert not (tmp_path / "api").exists() and not (tmp_path / "cli").exists()


def test_the_api_wants_each_family_to_draw_its_own_learning_rate(tmp_path):
    import jaxmnist as jm

    space = {"adam": {"optim.learning_rate": LR}, "sgd": {"reg.l2": (0.0, 1e-3)}}
    with pytest.raises(C.ConfigError, match="search: sgd sets no optim.learning_rate"):
        jm.grid(model="mlp", search=space, synthetic=True, workdir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
