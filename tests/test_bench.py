"""The benchmark's plumbing: a --quick run end to end, its JSON schema and ratio arithmetic.

Nothing here asserts a speed: timings on a shared 2-core machine are not test material.
"""

from __future__ import annotations

import json
import math

import pytest

from jaxmnist import bench

QUICK_CASES = "jaxmnist_cnn_solo,jaxmnist_cnn_grid_sequential,matmul_peak,keras_cnn,torch_cnn"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    # 2 members keep the end-to-end part (grid, 2 solo runs, grid) to 4 small compiles.
    argv = ["--quick", "--cases", QUICK_CASES, "--members", "2", "--out", str(out)]
    rc = bench.main(argv)
    files = sorted(out.iterdir())
    return rc, files


def _result(quick_run):
    _, files = quick_run
    (path,) = [f for f in files if f.suffix == ".json"]
    return json.loads(path.read_text())


def test_quick_run_writes_json_and_markdown(quick_run):
    rc, files = quick_run
    assert rc == 0
    assert sorted(f.suffix for f in files) == [".json", ".md"]
    assert files[0].stem == files[1].stem and files[0].stem.endswith("-quick")
    markdown = next(f for f in files if f.suffix == ".md").read_text()
    assert "| case | model | members | images/s" in markdown
    assert "jaxmnist_cnn_solo" in markdown and "End to end" in markdown


def test_json_schema(quick_run):
    r = _result(quick_run)
    assert r["schema"] == bench.SCHEMA_VERSION and r["quick"] is True
    assert r["machine"]["cores"] >= 1 and r["machine"]["cpu"]
    assert r["versions"]["jax"]
    assert len(r["load_average"]["start"]) == 3 and len(r["load_average"]["rounds"]) == 2
    assert set(r["cases"]) == set(QUICK_CASES.split(","))
    for name, case in r["cases"].items():
        assert case["status"] in ("ok", "skipped"), (name, case.get("error"))
        if case["status"] == "skipped":  # e.g. no TensorFlow in a GPU image
            assert case["reason"]
            continue
        assert case["finish"]["rss_peak_mb"] > 0
        assert len(case["rounds"]) == 2
        if name == "matmul_peak":
            assert case["gflops"]["median"] > 0
            continue
        ips = case["images_per_second"]
        assert ips["min"] <= ips["median"] <= ips["max"] and ips["min"] > 0
    solo = r["cases"]["jaxmnist_cnn_solo"]
    assert solo["setup"]["param_count"] == 225_034
    assert solo["setup"]["flops_per_image"] > 1e6  # a training step of S0 is ~16 MFLOP/image
    assert solo["setup"]["compile_seconds"] > 0
    assert 0 < solo["percent_of_peak"]
    grid = r["cases"]["jaxmnist_cnn_grid_sequential"]
    assert grid["members"] == 2 and grid["finish"]["strategy"] == "sequential"
    assert grid["rounds"][0]["images"] == 2 * grid["steps"] * grid["batch_size"]


def test_ratios_match_the_medians(quick_run):
    r = _result(quick_run)
    cases, ratios = r["cases"], r["summary"]["ratios"]

    def median(name):
        case = cases.get(name, {})
        return case["images_per_second"]["median"] if case.get("status") == "ok" else None

    solo, grid, keras = (median(n) for n in
                         ("jaxmnist_cnn_solo", "jaxmnist_cnn_grid_sequential", "keras_cnn"))
    assert math.isclose(ratios["grid_sequential_over_solo"]["of_medians"], grid / solo)
    if keras is None:
        assert ratios["jaxmnist_solo_over_keras"]["of_medians"] is None
    else:
        assert math.isclose(ratios["jaxmnist_solo_over_keras"]["of_medians"], solo / keras)
        assert len(ratios["jaxmnist_solo_over_keras"]["per_round"]["all"]) == 2
    # not run in this quick selection -> no ratio
    assert ratios["grid_vmap_over_solo"]["of_medians"] is None
    e2e = r["e2e"]
    assert e2e["status"] == "ok" and len(e2e["grid_runs"]) == 2 and len(e2e["solo_runs"]) == 2
    s = e2e["summary"]
    assert math.isclose(s["sequential_wall_seconds"],
                        sum(x["wall_seconds"] for x in e2e["solo_runs"]))
    assert math.isclose(ratios["grid_wall_over_sequential_wall"]["of_medians"],
                        s["grid_wall_seconds"] / s["sequential_wall_seconds"])


def test_summarize_on_synthetic_records():
    def rec(rates, cpu=None, **extra):
        rounds = [{"round": i, "seconds": 1.0, "images": v,
                   **({"cpu_seconds": cpu * v / 1e6} if cpu else {})}
                  for i, v in enumerate(rates)]
        return {"status": "ok", "rounds": rounds, **extra}

    records = {
        "jaxmnist_cnn_solo": rec([100, 300, 200], cpu=50, setup={"flops_per_image": 1e7}),
        "keras_cnn": rec([100, 100, 100], cpu=100),
        "torch_cnn": {"status": "skipped", "reason": "not installed", "rounds": []},
        "matmul_peak": {"status": "ok", "rounds": [{"seconds": 1, "images": 0, "gflops": g}
                                                   for g in (10.0, 20.0, 30.0)]},
    }
    out = bench.summarize(records, None)
    assert out["peak_gflops"] == 20.0
    solo = records["jaxmnist_cnn_solo"]
    assert solo["images_per_second"]["median"] == 200
    assert math.isclose(solo["gflops"], 2.0) and math.isclose(solo["percent_of_peak"], 10.0)
    assert math.isclose(solo["cpu_us_per_image"]["median"], 50.0)
    r = out["ratios"]
    assert r["jaxmnist_solo_over_keras"]["of_medians"] == 2.0
    assert r["jaxmnist_solo_over_keras"]["per_round"]["all"] == [1.0, 3.0, 2.0]
    assert r["jaxmnist_solo_over_torch"]["of_medians"] is None
    assert math.isclose(r["cpu_per_image_keras_over_jaxmnist"]["of_medians"], 2.0)
    assert "grid_wall_over_sequential_wall" not in r


def test_cli_rejects_unknown_framework(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "jax,mxnet"])
    assert "mxnet" in capsys.readouterr().err


def test_measure_train_throughput_runs():
    from jaxmnist.bench_workers import measure_train_throughput

    r = measure_train_throughput(
        {"name": "mlp", "hidden": [8]}, batch_size=8, members=2, steps=2, repeats=1
    )
    assert r["images_per_s"] > 0 and r["members"] == 2 and len(r["times_s"]) == 1
