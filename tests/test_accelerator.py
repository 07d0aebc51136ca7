"""The accelerator command's plumbing: ``--tiny`` end to end on a CPU, its JSON and Markdown.

Nothing here asserts a speed (a shared 2-core CPU is no accelerator); it asserts that every
part ran, on the sizes asked for, and that the result says on which device. The tiny run is
end-to-end tier (``pytest -m e2e``).
"""

from __future__ import annotations

import json
import os

import pytest

from benchmarks import accelerator

DATA_DIR = os.environ.get("JAXMNIST_DATA_DIR")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("accel")
    # Without MNIST the same tiny path runs on synthetic digits (no skip on a fresh machine).
    extra = [] if DATA_DIR else ["--synthetic"]
    rc = accelerator.main(["--tiny", "--out", str(tmp / "out"), "--workdir", str(tmp / "s2"),
                           *extra])
    assert rc == 0
    files = sorted((tmp / "out").iterdir())
    return tmp, files


@pytest.mark.e2e
def test_tiny_run_writes_json_and_markdown_for_every_part(tiny_run):
    tmp, files = tiny_run
    assert [f.suffix for f in files] == [".json", ".md"] and files[0].stem.endswith("-tiny")
    r = json.loads(files[0].read_text())
    assert r["schema"] == accelerator.SCHEMA_VERSION and r["tiny"] is True
    assert r["env"]["backend"] and r["env"]["device_kind"] and r["env"]["jax"]
    # S2: the real study file through the sweep, shrunk only by the tiny overrides.
    s2 = r["s2"]
    assert s2["members"] == 3 and s2["data"] == {"train": 128, "val": 64, "test": 128}
    assert {c["optimizer"] for c in s2["cells"]} == {"adam", "rmsprop", "sgd"}
    assert all(0.0 <= c["test_acc"] <= 1.0 for c in s2["cells"])
    assert s2["wall_seconds"] > 0 and (tmp / "s2" / "results.json").is_file()
    assert (tmp / "s2" / "tables" / "grid_matrix.md").is_file()
    # S0 to 99 %: one epoch on 256 images cannot reach it, and the result says so.
    s0 = r["s0_time_to_target"]
    assert s0["target"] == 0.99 and s0["epochs_run"] == 1 and s0["train_images"] == 256
    assert s0["reached"] is (s0["seconds_to_target"] is not None)
    # The four strategy x conv combinations, each with its own compile and rate.
    combos = {(g["strategy"], g["conv_impl"]) for g in r["grid"]}
    assert combos == set(accelerator.COMBINATIONS)
    assert all(g["resolved_strategy"] == g["strategy"] for g in r["grid"])
    assert all(g["images_per_second"] > 0 and g["members"] == 2 for g in r["grid"])
    md = files[1].read_text()
    for text in ("## Full S2 (1 seed)", "## S0 to 99% test accuracy",
                 "| vmap | lax |", "| sequential | im2col |", "Tiny run"):
        assert text in md, text


def test_unknown_part_is_refused(capsys):
    with pytest.raises(SystemExit) as err:
        accelerator.main(["--only", "s2,s5"])
    assert err.value.code == 2 and "unknown part(s) ['s5']" in capsys.readouterr().err
