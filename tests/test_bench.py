"""The benchmark's plumbing: a --quick run end to end, its JSON schema and ratio arithmetic.

Nothing here asserts a speed: timings on a shared 2-core machine are not test material. The
--quick run (every case, in subprocesses, with its peers) is end-to-end tier (``pytest -m e2e``);
the arithmetic on records and one tiny throughput measurement are the default tier.
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import bench

QUICK_CASES = ("jaxmnist_cnn_solo,jaxmnist_cnn_grid_sequential,jaxmnist_cnn_grid_two_devices,"
               "matmul_peak,keras_cnn,torch_cnn")


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


@pytest.mark.e2e
def test_quick_run_writes_json_and_markdown(quick_run):
    rc, files = quick_run
    assert rc == 0
    assert sorted(f.suffix for f in files) == [".json", ".md"]
    assert files[0].stem == files[1].stem and files[0].stem.endswith("-quick")
    markdown = next(f for f in files if f.suffix == ".md").read_text()
    assert "| case | model | members | images/s" in markdown
    assert "jaxmnist_cnn_solo" in markdown and "End to end" in markdown
    # a --quick run quotes no headline number: every line says "not measured"; no verdicts
    assert "Headline numbers from this run" in markdown and "**not measured**" in markdown
    assert "PASS" not in markdown and "FAIL" not in markdown and "issue 15" not in markdown


@pytest.mark.e2e
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
        # every round carries its wall/CPU ratio and stall flag (this box is loaded: a round
        # may well be flagged, so the flags' values are not asserted here)
        for rnd in case["rounds"]:
            assert rnd["wall_cpu_ratio"] > 0 and isinstance(rnd["stalled"], bool)
        assert case["stall_check"]["factor"] == bench.STALL_FACTOR
        if name == "matmul_peak":
            assert all(rnd["gflops"] > 0 and rnd["stream_gbps"] > 0 for rnd in case["rounds"])
            continue
        ips = case["images_per_second_all_rounds"]
        assert ips["min"] <= ips["median"] <= ips["max"] and ips["min"] > 0
        kept = [rnd["images"] / rnd["seconds"] for rnd in case["rounds"] if not rnd["stalled"]]
        assert (case["images_per_second"] or {"all": []})["all"] == kept
    solo = r["cases"]["jaxmnist_cnn_solo"]
    assert solo["setup"]["param_count"] == 225_034
    assert solo["setup"]["flops_per_image"] > 1e6  # a training step of S0 is ~16 MFLOP/image
    assert solo["setup"]["compile_seconds"] > 0
    # roofline inputs: XLA's bytes per image, the intensity they give
    assert solo["roofline"]["bytes_per_image"] > 0 and solo["roofline"]["flops_per_byte"] > 0
    # the two-device case really ran its grid on 2 XLA:CPU devices (its own XLA_FLAGS)
    assert r["cases"]["jaxmnist_cnn_grid_two_devices"]["setup"]["device_count"] == 2
    assert solo["setup"]["device_count"] == 1
    if solo["images_per_second"] and r["summary"]["peak_gflops"]:
        assert 0 < solo["percent_of_peak"]
    assert "targets" not in r["summary"]
    assert {t["value"] for t in r["summary"]["headline"]} == {None}
    grid = r["cases"]["jaxmnist_cnn_grid_sequential"]
    assert grid["members"] == 2 and grid["finish"]["strategy"] == "sequential"
    assert grid["rounds"][0]["images"] == 2 * grid["steps"] * grid["batch_size"]


@pytest.mark.e2e
def test_ratios_match_the_medians(quick_run):
    r = _result(quick_run)
    cases, ratios = r["cases"], r["summary"]["ratios"]

    def median(name):
        case = cases.get(name, {})
        ips = case.get("images_per_second") if case.get("status") == "ok" else None
        return ips["median"] if ips else None  # None: skipped, or every round stalled

    def check(got, a, b):
        if a is None or b is None:
            assert got is None
        else:
            assert math.isclose(got, a / b)

    solo, grid, keras = (median(n) for n in
                         ("jaxmnist_cnn_solo", "jaxmnist_cnn_grid_sequential", "keras_cnn"))
    check(ratios["grid_sequential_over_solo"]["of_medians"], grid, solo)
    check(ratios["jaxmnist_solo_over_keras"]["of_medians"], solo, keras)
    if keras is not None and solo is not None:
        both = [i for i in range(2) if not cases["keras_cnn"]["rounds"][i]["stalled"]
                and not cases["jaxmnist_cnn_solo"]["rounds"][i]["stalled"]]
        per_round = ratios["jaxmnist_solo_over_keras"]["per_round"]
        assert (len(per_round["all"]) if per_round else 0) == len(both)
    # not run in this quick selection -> no ratio
    assert ratios["grid_vmap_over_solo"]["of_medians"] is None
    e2e = r["e2e"]
    assert e2e["status"] == "ok" and len(e2e["grid_runs"]) == 2 and len(e2e["solo_runs"]) == 2
    s = e2e["summary"]
    assert math.isclose(s["sequential_wall_seconds"],
                        sum(x["wall_seconds"] for x in e2e["solo_runs"]))
    assert math.isclose(ratios["grid_wall_over_sequential_wall"]["of_medians"],
                        s["grid_wall_seconds"] / s["sequential_wall_seconds"])


def _rounds(rates, cpu_seconds=1.0, wall=1.0):
    """Round records: ``rates`` images in ``wall`` s each, ``cpu_seconds`` (number or list)."""
    cpus = cpu_seconds if isinstance(cpu_seconds, list) else [cpu_seconds] * len(rates)
    return [{"round": i, "seconds": wall, "wall_seconds": wall, "images": v, "cpu_seconds": c}
            for i, (v, c) in enumerate(zip(rates, cpus, strict=True))]


def _rec(rates, cpu_seconds=1.0, **extra):
    return {"status": "ok", "rounds": _rounds(rates, cpu_seconds), **extra}


def test_summarize_on_synthetic_records():
    records = {
        "jaxmnist_cnn_solo": _rec([100, 300, 200], setup={"flops_per_image": 1e7}),
        "keras_cnn": _rec([100, 100, 100]),
        "torch_cnn": {"status": "skipped", "reason": "not installed", "rounds": []},
        "matmul_peak": {"status": "ok", "rounds": [{"round": i, "seconds": 1, "images": 0,
                                                    "gflops": g}
                                                   for i, g in enumerate((10.0, 20.0, 30.0))]},
    }
    # 1 CPU s per 1 wall s on 1 core: no round here is stalled.
    out = bench.summarize(records, None, cores=1)
    solo = records["jaxmnist_cnn_solo"]
    assert out["peak_gflops"] == 20.0
    assert solo["images_per_second"]["median"] == 200 and solo["images_per_second"]["best"] == 300
    assert math.isclose(solo["gflops"], 2.0) and math.isclose(solo["percent_of_peak"], 10.0)
    assert math.isclose(solo["percent_of_peak_best"], 15.0)
    assert math.isclose(solo["cpu_us_per_image"]["median"], 1e6 / 200)
    r = out["ratios"]
    assert r["jaxmnist_solo_over_keras"]["of_medians"] == 2.0
    assert r["jaxmnist_solo_over_keras"]["of_best"] == 3.0
    assert r["jaxmnist_solo_over_keras"]["per_round"]["all"] == [1.0, 3.0, 2.0]
    assert r["jaxmnist_solo_over_torch"]["of_medians"] is None
    assert math.isclose(r["cpu_per_image_keras_over_jaxmnist"]["of_medians"], 2.0)
    assert out["strongest_peer"] == "keras_cnn"
    assert r["jaxmnist_solo_over_strongest_peer"] == r["jaxmnist_solo_over_keras"]
    assert "grid_wall_over_sequential_wall" not in r


def test_wall_cpu_ratio():
    assert bench.wall_cpu_ratio(1.0, 2.0, cores=2) == 1.0  # both cores busy all round
    assert bench.wall_cpu_ratio(1.0, 1.0, cores=2) == 2.0  # one thread busy
    assert bench.wall_cpu_ratio(1.0, None, cores=2) is None
    assert bench.wall_cpu_ratio(1.0, 0.0, cores=2) is None


def test_classifier_flags_issue_15_keras_stalls():
    # Issue 15's Keras run on 2 cores: normal rounds ~0.55 s wall for ~0.95 s CPU, stalled
    # ones 3.5-5.6 s wall for the same CPU time.
    walls = [0.55, 3.5, 0.6, 5.6, 4.1, 0.58, 4.8]
    rounds = [{"round": i, "seconds": w, "wall_seconds": w, "images": 6400, "cpu_seconds": 0.95}
              for i, w in enumerate(walls)]
    bench.classify_rounds(rounds, cores=2)
    assert [r["stalled"] for r in rounds] == [w > 1 for w in walls]
    assert math.isclose(rounds[0]["wall_cpu_ratio"], 0.55 / 0.475)


def test_classifier_keeps_ordinary_jitter_and_single_threaded_cases():
    # ~30% jitter around a ratio of ~2 (a case that keeps one of 2 cores busy): no stall.
    rounds = _rounds([100] * 4, cpu_seconds=[1.0, 0.9, 0.8, 1.04])
    bench.classify_rounds(rounds, cores=2)
    assert not any(r["stalled"] for r in rounds)
    # Margin is a factor 2 over the case's own best ratio: 2.1x is flagged, 1.9x is not.
    rounds = _rounds([100] * 3, cpu_seconds=[1.0, 1 / 1.9, 1 / 2.1])
    bench.classify_rounds(rounds, cores=1)
    assert [r["stalled"] for r in rounds] == [False, False, True]


def test_classifier_flags_a_case_whose_every_round_stalled():
    # Under half a core on average in every round: flagged by the absolute test.
    rounds = _rounds([100] * 3, cpu_seconds=[0.2, 0.22, 0.21])
    bench.classify_rounds(rounds, cores=2)
    assert all(r["stalled"] for r in rounds)
    # ...but not on an accelerator (check=False), and never without CPU time.
    bench.classify_rounds(rounds, cores=2, check=False)
    assert not any(r["stalled"] for r in rounds)
    rounds = [{"round": 0, "seconds": 9.0, "images": 1}]
    bench.classify_rounds(rounds, cores=2)
    assert rounds[0]["stalled"] is False and rounds[0]["wall_cpu_ratio"] is None


def test_stalled_rounds_leave_rates_and_ratios_but_stay_in_raw_data():
    keras = _rec([1000, 150, 1100], cpu_seconds=[2.0, 0.3, 2.0])  # round 1 stalled (ratio 6.7)
    records = {"jaxmnist_cnn_solo": _rec([1200, 1300, 1250], cpu_seconds=2.0),
               "keras_cnn": keras,
               "torch_cnn": _rec([900, 1050, 1000], cpu_seconds=2.0)}
    out = bench.summarize(records, None, cores=2)
    assert [r["stalled"] for r in keras["rounds"]] == [False, True, False]
    assert keras["stall_check"]["stalled_rounds"] == [1]
    assert keras["images_per_second"]["all"] == [1000, 1100]
    assert keras["images_per_second_all_rounds"]["all"] == [1000, 150, 1100]
    # Strongest peer by best non-stalled round: Keras 1100 > PyTorch 1050.
    assert out["strongest_peer"] == "keras_cnn"
    head = out["ratios"]["jaxmnist_solo_over_strongest_peer"]
    assert math.isclose(head["of_best"], 1300 / 1100)
    assert head["per_round"]["all"] == [1.2, 1250 / 1100]  # round 1 left out


def _line(headline, prefix):
    (t,) = [t for t in headline if t["name"].startswith(prefix)]
    return t


def _full_records(solo, peer_best, squeeze_pct, grid_best):
    records = {
        "jaxmnist_cnn_solo": {"status": "ok", "images_per_second": {"best": solo, "median": solo},
                              "percent_of_peak": 61.0},
        "keras_cnn": {"status": "ok", "images_per_second": {"best": peer_best / 2}},
        "torch_cnn": {"status": "ok", "images_per_second": {"best": peer_best}},
        "jaxmnist_squeezenet_solo": {"status": "ok",
                                     "images_per_second": {"best": 1.0, "median": 1.0},
                                     "percent_of_peak": squeeze_pct},
        "jaxmnist_cnn_grid_sequential": {"status": "ok", "images_per_second": {"best": grid_best}},
        "jaxmnist_cnn_grid_vmap": {"status": "ok", "images_per_second": {"best": 1.0}},
    }
    return records


def test_headline_numbers_come_from_the_records_without_verdicts():
    records = _full_records(solo=1600.0, peer_best=1000.0, squeeze_pct=41.0, grid_best=1500.0)
    assert bench.strongest_peer(records) == "torch_cnn"
    h = bench.headline_measurements(records, quick=False, members=12)
    assert all(set(t) == {"name", "value", "unit", "why"} for t in h)  # no threshold, no status
    peer = _line(h, "S0 CNN solo / strongest peer")
    assert math.isclose(peer["value"], 1.6) and "torch_cnn" in peer["name"]
    assert _line(h, "S0 CNN solo, % of matmul peak")["value"] == 61.0
    assert _line(h, "SqueezeNet")["value"] == 41.0
    grid = _line(h, "12-member grid")
    assert math.isclose(grid["value"], 1500 / 1600) and "jaxmnist_cnn_grid_sequential" in grid[
        "name"]
    assert "not in this run" in _line(h, "S4 L4")["why"]
    # 1 image/s of SqueezeNet: the full S2 study would take most of a year
    assert _line(h, "full S2")["value"] > 1e5  # minutes
    records["jaxmnist_squeezenet_solo"]["images_per_second"]["median"] = 5000.0
    s2 = _line(bench.headline_measurements(records, quick=False, members=12), "full S2")
    assert math.isclose(s2["value"], bench.s2_full_minutes(5000.0))
    # the grid's size is named, whatever it is
    assert _line(bench.headline_measurements(records, quick=False, members=3),
                 "3-member grid")["value"] is not None


def test_roofline_bound_is_the_lower_of_compute_and_memory():
    # 100 FLOPs per byte x 10 GB/s = 1000 GFLOP/s > 400 peak: compute bound
    high = bench.roofline(1e8, 1e6, peak_gflops=400.0, bandwidth_gbps=10.0)
    assert high["flops_per_byte"] == 100 and high["bound_gflops"] == 400 and not high[
        "memory_bound"]
    # 2 FLOPs per byte x 10 GB/s = 20 GFLOP/s: memory bound
    low = bench.roofline(2e6, 1e6, peak_gflops=400.0, bandwidth_gbps=10.0)
    assert low["bound_gflops"] == 20 and low["memory_bound"]
    assert bench.roofline(2e6, 1e6, None, 10.0)["bound_gflops"] is None


def test_full_s2_extrapolation_counts_training_and_evaluation():
    # 12 x 50,000 x 30 training images + (12 x 10,000 x 31) evaluated images at 1/3 cost.
    images = 18_000_000 + 3_720_000 / 3
    assert math.isclose(bench.s2_full_minutes(2000.0), images / 2000 / 60)
    # halving the rate doubles the time: it is an extrapolation from a rate, nothing else
    assert math.isclose(bench.s2_full_minutes(1000.0), 2 * bench.s2_full_minutes(2000.0))


def test_headline_says_not_measured_without_the_measurement():
    records = _full_records(solo=1e6, peer_best=1.0, squeeze_pct=99.0, grid_best=1e7)
    # --quick: nothing is quoted
    assert {x["value"] for x in bench.headline_measurements(records, quick=True, members=12)} == {
        None}
    # no peer at all (torch skipped, keras missing)
    del records["keras_cnn"]
    records["torch_cnn"] = {"status": "skipped", "reason": "not installed"}
    h = bench.headline_measurements(records, quick=False, members=12)
    assert bench.strongest_peer(records) is None
    assert _line(h, "S0 CNN solo / strongest peer")["value"] is None
    # SqueezeNet missing from the run; solo with every round stalled
    del records["jaxmnist_squeezenet_solo"]
    records["jaxmnist_cnn_solo"]["images_per_second"] = None
    h = bench.headline_measurements(records, quick=False, members=12)
    assert "not in this run" in _line(h, "SqueezeNet")["why"]
    assert "every round stalled" in _line(h, "S0 CNN solo, % of matmul peak")["why"]
    assert _line(h, "12-member grid")["value"] is None


def test_peer_options_reach_the_peer_cases():
    args = bench.parse_args(["--peer-threads", "1", "--keras-jit-compile", "true",
                             "--torch-channels-last"])
    cases = {c["name"]: c for c in bench.build_cases(args)}
    assert cases["keras_cnn"]["peer_options"] == {"threads": 1, "jit_compile": True}
    assert cases["torch_cnn"]["peer_options"] == {"threads": 1, "channels_last": True}
    assert "peer_options" not in cases["jaxmnist_cnn_solo"]
    assert bench._record(cases["torch_cnn"])["peer_options"]["channels_last"] is True
    default = {c["name"]: c for c in bench.build_cases(bench.parse_args([]))}
    assert default["keras_cnn"]["peer_options"] == {"threads": None, "jit_compile": "auto"}
    with pytest.raises(SystemExit):
        bench.parse_args(["--peer-threads", "0"])


def test_cli_rejects_unknown_framework(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "jax,mxnet"])
    assert "mxnet" in capsys.readouterr().err


@pytest.mark.e2e
def test_measure_train_throughput_runs():
    from benchmarks.bench_workers import measure_train_throughput

    r = measure_train_throughput(
        {"name": "mlp", "hidden": [8]}, batch_size=8, members=2, steps=2, repeats=1
    )
    assert r["images_per_s"] > 0 and r["members"] == 2 and len(r["times_s"]) == 1
