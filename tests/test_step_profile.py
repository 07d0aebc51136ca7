"""The per-op step profiler (``python -m benchmarks.step_profile``)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest

from benchmarks import step_profile


def test_hlo_ops_name_fusions_by_what_they_compute():
    f = jax.jit(lambda a, b: jnp.tanh(a @ b).sum(axis=0))
    a = jnp.ones((64, 64), jnp.float32)
    ops = step_profile.hlo_ops(f.lower(a, a).compile().as_text())
    kinds = {info["kind"].split(":")[-1] for info in ops.values()}
    assert "dot" in kinds, ops  # the matmul, as a dot or as the root of a dot fusion
    # every op that came from JAX carries its source operation
    assert any("dot_general" in info["source"] for info in ops.values()), ops


def test_categories_cover_the_usual_root_opcodes():
    assert step_profile.category("dot") == "matmul (dot)"
    assert step_profile.category("dynamic-update-slice") == "patch writes (dynamic-update-slice)"
    assert step_profile.category("reduce-window") == "reduce (pool, sums)"
    assert step_profile.category("multiply") == "elementwise"
    assert step_profile.category("custom-call") == "other"


def test_op_durations_sum_only_the_programs_ops():
    events = [{"ph": "X", "name": "fusion.1", "dur": 5.0}, {"ph": "X", "name": "fusion.1",
              "dur": 7.0}, {"ph": "X", "name": "PjitFunction(f)", "dur": 100.0},
              {"ph": "i", "name": "fusion.1"}]
    assert step_profile.op_durations(events, {"fusion.1"}) == {"fusion.1": 12.0}


@pytest.mark.e2e
def test_profile_cli_writes_json_and_markdown(tmp_path, capsys):
    assert step_profile.main(["--model", "mlp", "--steps", "4", "--repeats", "1",
                              "--out", str(tmp_path)]) == 0
    (js,) = tmp_path.glob("profile-mlp-*.json")
    result = json.loads(js.read_text())
    assert result["steps_traced"] == 4 and result["op_ms_per_step"] > 0
    assert result["categories"]["matmul (dot)"]["us_per_step"] > 0
    assert abs(sum(o["percent"] for o in result["ops"]) - 100) < 1e-6
    assert "| category |" in js.with_suffix(".md").read_text()
    assert "wrote" in capsys.readouterr().out


def test_profile_cli_names_an_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert step_profile.main(["--model", "mlp", "--steps", "2", "--repeats", "1",
                              "--out", str(blocker / "sub")]) == 2
    assert "--out" in capsys.readouterr().err
