"""The report: per-class metrics vs scikit-learn, every study's tables and figures from
synthetic run directories (no training), published numbers wired to real grid points, no jax."""

import json
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from jaxmnist import config as C
from jaxmnist.engine import metrics
from jaxmnist.runner import resolved_config
from jaxmnist.runs import published, rundir, runview, stats, tables

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = ROOT / "sweeps"


def _hist(rng, layers):
    return {name: {"counts": rng.integers(0, 50, 30).tolist(),
                   "edges": np.linspace(-1, 1, 31).tolist()} for name in layers}


def _mlp_params(rng, hidden):
    sizes = [784, *hidden, 10]
    names = [f"dense{i + 1}" for i in range(len(hidden))] + ["output"]
    return {f"{n}/{k}": (rng.normal(0, 0.1, (a, b)) if k == "w" else np.zeros(b)).astype("f4")
            for n, a, b in zip(names, sizes[:-1], sizes[1:], strict=True) for k in ("w", "b")}


def fake_run(root: Path, name: str, epochs: int = 3, change=None) -> Path:
    """Writes a run directory shaped like the sweep's, with made-up but consistent numbers
    (``change(study)``: edits the resolved study first)."""
    rng = np.random.default_rng(0)
    s = C.resolve(C.load_study(SWEEPS / f"{name}.py"), quick=True)
    s["base"]["train"]["epochs"] = epochs
    if change:
        change(s)
    members = C.expand(s)
    run = root / name
    writer, _ = rundir.RunWriter.open(run, resolved_config(s))
    writer.write_env({"backend": "cpu", "device_kind": "cpu", "git_commit": "abc"})
    n_test, n_train = 300, 600
    test_y, train_y = rng.integers(0, 10, n_test), rng.integers(0, 10, n_train)
    results = []
    for i, m in enumerate(members):
        cfg = m["config"]
        quality = 0.5 + 0.45 * rng.random()
        collapsed = name == "s2" and i % 5 == 0
        pred = np.where(rng.random(n_test) < quality, test_y, rng.integers(0, 10, n_test))
        if collapsed:
            pred = np.ones(n_test, int)
        tpred = np.where(rng.random(n_train) < quality, train_y, rng.integers(0, 10, n_train))
        hist = [{"epoch": e + 1, "train_loss": 2.0 / (e + 1), "train_acc": quality * e / epochs,
                 "val_loss": 2.1 / (e + 1), "val_acc": quality * (e + 0.5) / epochs,
                 "seconds": 1.0} for e in range(epochs)]
        layers = ["dense1", "output"] if cfg["model"]["name"] == "mlp" else ["conv1", "dense"]
        results.append({
            "member": m["member"], "group": 0, "label": C.describe(m), "config": cfg,
            "status": "collapsed" if collapsed else "ok", "diverged_epoch": None,
            "top_class_share": 1.0 if collapsed else 0.12, "history": hist,
            "test": {"loss": float(1 - quality), "acc": float(np.mean(pred == test_y))},
            "test_pred": pred.tolist(),
            "confusion_test": metrics.confusion_matrix(test_y, pred).tolist(),
            "confusion_train": metrics.confusion_matrix(train_y, tpred).tolist(),
            "test_probs_first25": rng.dirichlet(np.ones(10), 25).tolist(),
            "weight_hist": _hist(rng, layers), "grad_hist": _hist(rng, layers),
            "param_count": 1234,
        })
        if cfg["model"]["name"] == "mlp":
            writer.export_member(m["member"], cfg["model"],
                                 rundir.unflatten_params(_mlp_params(rng, cfg["model"]["hidden"])))
    baseline = []
    if s["baseline"] == "sklearn":
        for m in members:
            for e in m["experiments"]:
                if e["name"] == "depth_width":
                    baseline.append({"experiment": "depth_width", "label": e["label"],
                                     "hidden": m["config"]["model"]["hidden"],
                                     "seed": m["config"]["seed"], "test_acc": 0.95})
    writer.write_results({
        "study": s["study"], "reduced": True, "reduced_reasons": s["reduced_reasons"],
        "complete": True, "data": {"train": n_train, "val": 100, "test": n_test},
        "members": results, "groups": [], "baseline": baseline})
    writer.save_samples(SimpleNamespace(
        train_x=rng.integers(0, 255, (25, 28, 28, 1), np.uint8), train_y=train_y[:25],
        test_x=rng.integers(0, 255, (25, 28, 28, 1), np.uint8), test_y=test_y[:25]))
    return run


def test_per_class_metrics_equal_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 2000)
    pred = np.where(rng.random(2000) < 0.7, y, rng.integers(0, 10, 2000))
    pred[pred == 3] = 4  # a class that is never predicted: precision must be 0, not NaN
    cm = metrics.confusion_matrix(y, pred)
    np.testing.assert_array_equal(cm, sk.confusion_matrix(y, pred, labels=range(10)))
    p, r, f, support = sk.precision_recall_fscore_support(y, pred, labels=range(10),
                                                          zero_division=0)
    rows = metrics.per_class(cm)
    np.testing.assert_allclose([x["precision"] for x in rows], p, atol=1e-12)
    np.testing.assert_allclose([x["recall"] for x in rows], r, atol=1e-12)
    np.testing.assert_allclose([x["f1"] for x in rows], f, atol=1e-12)
    assert [x["actual"] for x in rows] == support.tolist()
    summ = metrics.summary(cm)
    assert summ["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    for avg in ("macro", "weighted"):
        ps, rs, fs, _ = sk.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert summ[f"{avg}_precision"] == pytest.approx(ps)
        assert summ[f"{avg}_recall"] == pytest.approx(rs)
        assert summ[f"{avg}_f1"] == pytest.approx(fs)


def test_mean_std_uses_sample_std_and_skips_missing():
    mean, std, n = metrics.mean_std([0.9, 0.92, None, float("nan"), 0.94])
    assert (mean, n) == (pytest.approx(0.92), 3) and std == pytest.approx(0.02)
    assert metrics.fmt_mean_std([0.5]) == "0.5000"


def test_every_published_number_belongs_to_a_grid_point():
    """A typo in a label or a value would silently drop the paper's number from a table."""
    for name in ("s0", "s1", "s2", "s3", "s4"):
        s = C.resolve(C.load_study(SWEEPS / f"{name}.py"))
        members = C.expand(s)
        for entry in published.for_study(name):
            exp = "depth_width" if entry.experiment == "sklearn" else entry.experiment
            hits = [m for m in members if any(
                e["name"] == exp and published.lookup(
                    name, entry.experiment, e["label"], m["config"]) is entry
                for e in m["experiments"])]
            assert hits, (name, entry)
    assert published.lookup("s2", "main", "", {"optim": {"name": "adam",
                                                         "learning_rate": 1e-4}}
                            ).values["test_acc"] == 0.9911


@pytest.mark.parametrize("name", ["s0", "s1", "s2", "s3", "s4"])
def test_report_writes_every_table(tmp_path, name):
    run = fake_run(tmp_path, name)
    names = {p.name for p in tables.generate(run, figures=False)}
    for expected in ("summary.md", "summary.csv", "per_class.md", "per_class.csv",
                     "status.md", "last_epoch.md", "models.md", "report.md", "seeds.md",
                     "seeds.csv", "results_summary.json"):
        assert expected in names, expected
    # Optimizers are compared where a study has several (S2's adam, rmsprop, sgd: 3 pairs).
    assert ("compare.csv" in names) == (name == "s2")
    summary = json.loads((run / "tables" / "results_summary.json").read_text())
    assert summary["study"] == name and summary["settings"] == "preset quick"
    assert summary["complete"] and summary["progress"] is None
    members = json.loads((run / "results.json").read_text())["members"]
    assert sum(p["n"] for p in summary["points"]) == len(members)
    md = (run / "tables" / "report.md").read_text()
    assert "REDUCED RUN" in md
    if name == "s2":
        assert "(99.11)" in (run / "tables" / "grid_matrix.md").read_text()
        pairs = (run / "tables" / "compare.csv").read_text().splitlines()
        assert pairs[0] == ",".join(stats.COMPARE_COLUMNS) and len(pairs) == 4
        assert "not distinguishable with 2 seeds" in pairs[1]  # the quick preset's 2 seeds
        seeds = (run / "tables" / "seeds.md").read_text()
        assert seeds.count("2 seeds < 5: no interval") == len(summary["points"])
        assert "collapsed" in (run / "tables" / "status.md").read_text()
    if name == "s3":
        text = (run / "tables" / "experiments.md").read_text()
        assert "| leaky_relu |" in text and "0.9470" in text and "> 0.90" in text
        assert "0.9666" in (run / "tables" / "baseline.md").read_text()  # paper's sklearn 3x64
    if name == "s1":
        assert "0.9907" in (run / "tables" / "history.md").read_text()
    if name == "s4":
        assert "0.9133" in (run / "tables" / "last_epoch.md").read_text()
    if name == "s0":
        assert "225034" in (run / "tables" / "models.md").read_text()


def _check_pngs(run: Path, expected: set[str]) -> None:
    pngs = {p.name: p for p in (run / "figures").glob("*.png")}
    assert expected <= set(pngs), expected - set(pngs)
    for p in pngs.values():
        assert 0 < p.stat().st_size < 200_000, p


@pytest.mark.parametrize("name, expected", [
    ("s2", {"grid_heatmap.png", "curves.png", "weights.png", "grads.png", "lr_sensitivity.png",
            "probability_of_improvement.png", "performance_profiles.png"}),
    pytest.param("s4", {"confusion_test_depth_1.png", "confusion_test_depth_4.png",
                        "curves.png"}, marks=pytest.mark.e2e),
])
def test_report_writes_figures(tmp_path, name, expected):
    run = fake_run(tmp_path, name)
    tables.generate(run)
    _check_pngs(run, expected | {"confusion_test.png", "confusion_train.png", "samples.png",
                                 "class_distribution.png", "test_probs.png"})


def test_curves_of_a_point_that_diverged_print_no_numpy_warning(tmp_path):
    run = fake_run(tmp_path, "s2")
    results = json.loads((run / "results.json").read_text())
    for m in results["members"]:
        if m["label"].startswith("learning_rate=0.1, name=adam"):  # every seed of one point
            m["status"], m["diverged_epoch"] = "diverged", 1
            for row in m["history"][1:]:
                row.update(train_loss=None, train_acc=None, val_loss=None, val_acc=None)
    (run / "results.json").write_text(json.dumps(results))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        written = tables.generate(run)
    assert run / "figures" / "curves.png" in written


def test_curves_of_several_optimizers_are_small_multiples_with_diverged_losses_off_scale(
        tmp_path, monkeypatch):
    """S2 (3 optimizers x 4 rates): a column per optimizer, rates on one colour scale, and a
    diverged member's loss (1e6) neither stretches the loss axes nor goes unnamed."""
    from jaxmnist.runs import figures

    run = fake_run(tmp_path, "s2")
    results = json.loads((run / "results.json").read_text())
    for m in results["members"]:
        if m["label"].startswith("learning_rate=0.1, name=adam"):
            m["history"][0]["train_loss"] = 1e6
    (run / "results.json").write_text(json.dumps(results))
    drawn = {}
    monkeypatch.setattr(figures, "_save",
                        lambda fig, view, path, **_: drawn.setdefault(path.name, fig) and path)
    view = runview.load(run)
    figures.curves(view, [(p.label, p) for p in view.points], run / "curves.png", "S2")
    axes = drawn["curves.png"].axes
    assert [ax.get_title() for ax in axes[:3]] == [
        "adam: train accuracy", "rmsprop: train accuracy", "sgd: train accuracy"]
    assert len(axes) == 4 * 3  # train/val accuracy and loss, per optimizer
    train_loss = next(ax for ax in axes if ax.get_title() == "adam: train loss")
    assert train_loss.get_ylim()[1] <= figures.LOSS_CEILING
    assert any("off-scale (diverged)" in t.get_text() and "0.1" in t.get_text()
               for t in train_loss.texts)
    colors = [line.get_color() for line in train_loss.lines]
    assert len(set(map(str, colors))) == len(colors) == 4  # one shade per learning rate


def test_decision_figures_need_a_choice_and_read_the_statistics(tmp_path, monkeypatch):
    """The learning-rate sensitivity stars each optimizer's setting chosen on validation, and
    the probability-of-improvement matrix shows stats.compare's numbers; without a validation
    split neither is drawn (nothing is chosen)."""
    from jaxmnist.runs import figures, stats

    run = fake_run(tmp_path, "s2")
    drawn = {}
    monkeypatch.setattr(figures, "_save",
                        lambda fig, view, path, **_: drawn.setdefault(path.name, fig) and path)
    view = runview.load(run)
    assert figures.sensitivity(view, run / "s.png") and figures.improvement(view, run / "i.png")
    chosen = stats.chosen(view)
    stars = [line for line in drawn["s.png"].axes[0].lines if line.get_marker() == "*"]
    assert sorted(float(line.get_xdata()[0]) for line in stars) == sorted(
        p.config["optim"]["learning_rate"] for p in chosen.values())
    table = stats.compare(view)
    texts = {t.get_text().split("\n")[0] for t in drawn["i.png"].axes[0].texts}
    assert {f"{p:.2f}" for p in table["p_improve"]} <= texts
    config = json.loads((run / "results.json").read_text())
    config["data"]["val"] = 0  # as a run without a validation split records it
    (run / "results.json").write_text(json.dumps(config))
    view = runview.load(run)
    assert view.no_choice()
    assert figures.sensitivity(view, run / "s2.png") is None
    assert figures.improvement(view, run / "i2.png") is None


def test_a_protocols_fresh_seeds_are_a_point_apart_from_the_tuning_seeds(tmp_path):
    """S2 plus a protocol's final phase: Adam 1e-3 re-run over seeds 1000..1004. That is a point
    of its own, holding those 5 seeds; the tuning point of the same config keeps its seeds, so
    no table or statistic mixes the seed that chose a setting with the seeds that test it."""
    def final_phase(s):
        s["final_seeds"] = 5
        s["final"] = {"name": "final", "seeds": 5, "first_seed": 1000, "points": [
            {"label": "adam (chosen)", "set": {"optim.name": "adam",
                                               "optim.learning_rate": 0.001}}]}

    view = runview.load(fake_run(tmp_path, "s2", change=final_phase))
    ((label, final),) = view.points_of("final")
    assert label == "adam (chosen)"
    assert [m["config"]["seed"] for m in final.members] == [1000, 1001, 1002, 1003, 1004]
    (tuned,) = [p for p in view.points if p.key == final.key and p is not final]
    seeds = [m["config"]["seed"] for m in tuned.members]
    assert seeds and max(seeds) < 1000
    assert list(stats_chosen(view)) == ["adam"]  # the final phase's points are the chosen ones


def stats_chosen(view):
    from jaxmnist.runs import stats

    return stats.chosen(view)


@pytest.mark.e2e
def test_report_cli_does_not_import_jax(tmp_path):
    run = fake_run(tmp_path, "s3", epochs=2)
    code = ("import sys; from jaxmnist import report; rc = report.main([sys.argv[1]]); "
            "bad = sorted(m for m in sys.modules if m == 'jax' or m.startswith('jax.')); "
            "print('JAX_MODULES', bad); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "JAX_MODULES []" in out.stdout
    _check_pngs(run, {"ffnn.png", "curves_init.png", "weights_regularization.png",
                      "grads_rmsnorm.png", "confusion_test.png", "test_probs.png"})


def test_report_on_a_directory_without_results_fails_clearly(tmp_path):
    out = subprocess.run([sys.executable, "-m", "jaxmnist.report", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 1
    assert "config.json is missing" in out.stderr


def _footer(preset=None, quick=False, seeds=None, overrides=(), env=None, results_extra=None):
    s = C.resolve(C.load_study(SWEEPS / "s2.py"), preset=preset, quick=quick, seeds=seeds,
                  overrides=overrides)
    sizes = dict(zip(("train", "val", "test"), C.expected_sizes(s["data"]), strict=True))
    results = {"data": sizes, "reduced_reasons": s["reduced_reasons"], **(results_extra or {})}
    env = env or {"backend": "cpu", "device_kind": "cpu", "cpu_count": 2, "git_commit": "abc"}
    return runview.RunView(path=Path("."), config=s, results=results, env=env, points=[],
                      samples=None).footer()


def test_footer_labels_by_settings_and_states_the_device_apart():
    full = _footer(seeds=1)
    assert "full settings" in full and "30 epochs" in full and "1 seeds" in full
    assert "device: CPU, 2 cores" in full and "REDUCED" not in full  # a full run on a CPU
    cpu = _footer(preset="cpu")
    assert "preset cpu" in cpu and "REDUCED RUN" in cpu and " of 30 epochs" in cpu
    assert "CPU run" not in cpu
    quick = _footer(quick=True)
    assert "preset quick" in quick and "test set 2,000 of 10,000 images" in quick
    custom = _footer(overrides=["base.train.epochs=2"])
    assert "custom settings" in custom and "2 of 30 epochs" in custom
    gpu = _footer(env={"backend": "gpu", "device_kind": "NVIDIA H200", "git_commit": "abc"})
    assert "device: NVIDIA H200 (gpu)" in gpu and "REDUCED" not in gpu


def test_footer_of_a_run_written_before_named_presets():
    s = C.resolve(C.load_study(SWEEPS / "s0.py"), quick=True)
    old_config = {k: v for k, v in s.items() if k not in ("preset", "overrides")}
    old_results = {"data": {"train": 6000, "val": 0, "test": 10000},
                   "reduced_reasons": ["quick preset", "3 of 10 epochs"]}
    text = runview.RunView(path=Path("."), config=old_config, results=old_results,
                      env={"backend": "cpu"}, points=[], samples=None).footer()
    assert "preset quick" in text and "REDUCED RUN, not the paper's full setup: 3 of 10 epochs" \
        in text


def test_results_summary_sums_the_groups_train_time_over_sessions(tmp_path):
    """A run resumed over sessions: wall_seconds is the last process's; train_seconds all."""
    run = fake_run(tmp_path, "s4")
    results = json.loads((run / "results.json").read_text())
    assert tables.results_summary(runview.load(run))["train_seconds"] is None  # no groups yet
    stats = {"padded_members": 1, "devices": 1, "processes": 1, "strategy": "sequential",
             "compile_seconds": 2.0}
    results["groups"] = [
        {"group": 0, "members": 1, **stats, "train_seconds": 1011.5,
         "images_per_second": 1898.0, "resumed": False},
        {"group": 1, "members": 1, **stats, "train_seconds": 1955.25,
         "images_per_second": 981.6, "resumed": True},
    ]
    results["wall_seconds"] = 700.0
    (run / "results.json").write_text(json.dumps(results))
    summary = tables.results_summary(runview.load(run))
    assert summary["wall_seconds"] == 700.0
    assert summary["train_seconds"] == 1011.5 + 1955.25
    assert [(g["group"], g["train_seconds"], g["resumed"]) for g in summary["groups"]] == [
        (0, 1011.5, False), (1, 1955.25, True)]
    assert "compile_seconds" not in summary["groups"][0]


def test_report_of_an_unfinished_run_reads_metrics_jsonl(tmp_path):
    """A long run's first group still training: no results.json, per-epoch metrics so far."""
    run = fake_run(tmp_path, "s4", epochs=5)
    results = json.loads((run / "results.json").read_text())
    (run / "results.json").unlink()
    with (run / "metrics.jsonl").open("w") as fh:
        for m in results["members"][:-1]:  # the last member has not started
            for h in m["history"][:2]:  # two of five epochs done
                fh.write(json.dumps({"member": m["member"], "group": 0, **h}) + "\n")
    tables.generate(run, figures=False)
    md = (run / "tables" / "report.md").read_text()
    n = len(results["members"])
    assert (f"UNFINISHED RUN: 0 of {n} members finished, {n - 1} reached epoch 2 of 5, "
            "1 with no finished epoch yet;") in md
    assert "unfinished" in (run / "tables" / "status.md").read_text()
    summary = json.loads((run / "tables" / "results_summary.json").read_text())
    assert not summary["complete"] and "epoch 2 of 5" in summary["progress"]
    assert {p["last_epoch"][0]["epoch"] for p in summary["points"]} == {2}
    (run / "metrics.jsonl").unlink()
    with pytest.raises(runview.ReportError, match="no finished member and no finished epoch"):
        tables.generate(run, figures=False)
