"""A run's tables (Markdown + CSV) and ``results_summary.json``, from its files alone. No jax.

A grid point's numbers are the mean ± sample std (ddof=1) over its seeds, beside the papers';
``seeds`` and ``compare`` add intervals and paired tests (:mod:`jaxmnist.runs.stats`).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaxmnist.engine import metrics
from jaxmnist.runs import published, rundir, stats
from jaxmnist.runs.runview import Point, RunView, grid, load
from jaxmnist.trees import get_dotted


@dataclass
class Table:
    """Rows of cells under named columns, with a title and notes printed under it."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        rows, self.rows = self.rows, []
        for row in rows:
            self.add(*row)

    def add(self, *cells: Any) -> None:
        """Appends one row (cells in column order; a NaN is left empty, as None is)."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: row has {len(cells)} cells, want {len(self.columns)}")
        self.rows.append([None if isinstance(c, float) and math.isnan(c) else c for c in cells])

    def markdown(self, level: int = 3) -> str:
        """Markdown: a heading, a pipe table, then the notes."""
        rows = [self.columns, ["---"] * len(self.columns),
                *([_cell(c).replace("|", "\\|") for c in row] for row in self.rows)]
        lines = [f"{'#' * level} {self.title}", ""] if self.title else []
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines += [""] + [f"{n}  " for n in self.notes] if self.notes else []
        return "\n".join(lines).rstrip() + "\n"

    def csv(self) -> str:
        """CSV with a header row; numbers unformatted."""
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(
            [self.columns, *(["" if c is None else c for c in row] for row in self.rows)])
        return buf.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


_ms = metrics.fmt_mean_std  # "mean ± std" of the finite values


def _diff(values, paper_value) -> str:
    mean, _, n = metrics.mean_std(values)
    if n == 0 or not isinstance(paper_value, int | float):
        return ""
    return f"{mean - paper_value:+.4f}"


def _model_text(cfg: dict[str, Any]) -> str:
    model = cfg["model"]
    extras = ", ".join(f"{k}={v}" for k, v in model.items() if k != "name")
    return f"{model['name']}({extras})" if extras else model["name"]


def _last(member: dict[str, Any], key: str) -> float | None:
    hist = member.get("history") or []
    return hist[-1].get(key) if hist else None


def best_line(run: RunView) -> str:
    """The report's "best" line: the point chosen on validation, with its test metrics.

    A run that cannot choose (no validation split) says why in its place (``no_choice``).
    """
    best, member = run.best(), run.best_member()
    if best is None or member is None:
        return "Best point: " + str(run.no_choice())
    return (f"Best point, chosen on validation accuracy (mean over seeds; ties: validation "
            f"loss): {best.label}: val acc {_ms(best.final('val_acc'))}, test acc "
            f"{_ms(best.test_acc())}; its best member: {member['member']} (seed "
            f"{member['config'].get('seed')}).")


def table_summary(run: RunView) -> Table:
    """Per grid point: validation and test accuracy, test loss (mean ± std) beside the paper's."""
    multi = bool(run.config.get("experiments"))
    t = Table("Accuracy and loss per grid point (mean ± std over seeds)",
              ["point"] + (["experiments"] if multi else []) +
              ["model", "params", "n", "val acc", "test acc", "test loss", "paper acc", "diff",
               "status"])
    for p in run.points:
        pacc = run.paper(p).get("test_acc")
        exps = ["; ".join(f"{e['name']}:{e['label']}" for e in p.experiments)] if multi else []
        t.add(p.label, *exps, _model_text(p.config), p.rep.get("param_count"), len(p.members),
              _ms(p.final("val_acc")), _ms(p.test_acc()),
              _ms(p.values(lambda m: m["test"]["loss"])), _cell(pacc),
              _diff(p.test_acc(), pacc), p.status())
    t.notes += ["diff = our mean - paper. std is the sample std (ddof=1) over seeds; val acc: "
                "the last epoch's.", best_line(run)]
    return t


_DESCRIBED = ["n", "mean", "iqm", "ci_low", "ci_high", "values", "note"]


def _described(values: list[float | None]) -> list[Any]:
    """:data:`_DESCRIBED`'s cells: :func:`stats.describe` of one point's seeds."""
    d = stats.describe(values)
    return [len(stats.finite(d["values"])), d["mean"], d["iqm"], d["ci_low"], d["ci_high"],
            " ".join("n/a" if v is None else f"{v:.4f}" for v in d["values"]), d["note"]]


def table_seeds(run: RunView) -> Table:
    """Per point: test accuracy's mean, IQM and 95% bootstrap interval beside each seed's."""
    return Table("Test accuracy over seeds: mean, IQM, 95% bootstrap interval of the mean",
                 ["point", *_DESCRIBED], [[p.label, *_described(p.test_acc())] for p in run.points],
                 [f"IQM: mean of the middle 50% of the seeds (rliable's). No interval below "
                  f"{stats.MIN_SEEDS} seeds (docs/statistics.md)."])


def table_compare(run: RunView) -> Table | None:
    """Optimizer pairs, each at its setting chosen on validation: paired test-accuracy tests."""
    frame = stats.compare(run)
    if frame.empty:
        return None
    return Table("Optimizers compared at their settings chosen on validation (test accuracy, "
                 "paired over seeds)", list(frame.columns),
                 list(frame.itertuples(index=False)),
                 ["p_improve: share of seeds on which x beats y (ties count half); diff: mean "
                  "of x - y; intervals: 95% percentile bootstrap over seeds, none below "
                  f"{stats.MIN_SEEDS} seeds; a difference is stated only when its interval "
                  "excludes zero (docs/statistics.md)."])


def table_cost(run: RunView) -> Table:
    """Per optimizer family: member-epochs and seconds spent tuning against the full grid."""
    return Table("Member-epochs spent against the full grid, per optimizer family",
                 ["family", "members", "member-epochs", "full grid", "share", "seconds"],
                 [[f, int(row["members"]), f"{row['member_epochs']:g}", f"{row['full_grid']:g}",
                   f"{row['share']:.0%}", f"{row['seconds']:.1f}"]
                  for f, row in stats.tuning_cost(run).iterrows()],
                 ["Seconds: each group's training time shared by its members' epochs trained "
                  "(compile time apart)."])


def table_kept(run: RunView) -> Table | None:
    """restore_best: per member, the epoch it kept and its test accuracy beside the last's."""
    rows = [(p, m) for p in run.points for m in p.members if m.get("test_last")]
    if not rows:
        return None
    return Table("Which epoch counts: the best on validation (restore_best) beside the last",
                 ["point", "seed", "kept epoch", "test acc (kept)", "test acc (last epoch)",
                  "difference"],
                 [[p.label, m["config"].get("seed"), m.get("kept_epoch"), m["test"]["acc"],
                   m["test_last"]["acc"], m["test"]["acc"] - m["test_last"]["acc"]]
                  for p, m in rows],
                 [f"Every other table reports the kept epoch; "
                  f"{run.config['base']['train']['epochs']} epochs trained. Kept: the best "
                  "validation accuracy (ties: validation loss, then the earlier epoch), its "
                  "parameters exported."])


def tables_protocol(run: RunView) -> list[Table]:
    """A tuning protocol's answer: each optimizer's chosen setting on fresh seeds, tuning cost."""
    finals = run.points_of(stats.FINAL)
    if not finals:
        return []
    t = Table("Each optimizer's setting chosen on validation, re-run on fresh seeds: test "
              "accuracy", ["optimizer", "chosen setting", *_DESCRIBED],
              [[stats.optimizer(p), label, *_described(p.test_acc())] for label, p in finals],
              ["Chosen on the validation split among the tuning members (last epoch, seed "
               "mean); these seeds were not used to choose. Pairwise tests: 'Optimizers "
               "compared' (docs/statistics.md)."])
    return [t, table_cost(run)]


def tables_pruning(run: RunView) -> list[Table]:
    """Successive halving: member-epochs spent per optimizer family, each rung's survivors."""
    if not any(m.get("rungs") for p in run.points for m in p.members):
        return []
    prune = run.config.get("prune") or {}
    family = prune.get("within", "family") == "family"

    def among(p: Point) -> str:  # the points a rung ranked together
        return f"group {p.rep.get('group')}" + (f", {p.config['optim']['name']}" if family else "")

    cost = None if run.points_of(stats.FINAL) else table_cost(run)  # else in "Protocol"
    fates = Table("Survivors of each rung (rank of the ranked points)",
                  ["epoch", "ranked within", "points ranked", "survivors", "stopped"])
    ranked: dict[tuple[int, str], list[tuple[dict[str, Any], str]]] = {}
    for p in run.points:
        for r in p.rep.get("rungs") or []:
            ranked.setdefault((r["epoch"], among(p)), []).append((r, p.label))
    for (epoch, f), rows in sorted(ranked.items()):
        rows.sort(key=lambda rl: rl[0]["rank"])
        fates.add(epoch, f, len(rows), "; ".join(f"{label} ({r['rank']})" for r, label in rows
                                                 if r["survived"]),
                  sum(not r["survived"] for r, _ in rows))
    fates.notes.append(f"Ranked by {prune.get('metric', 'val_acc')} (seed mean, ties by "
                       "validation loss); a point survives or stops whole.")
    return [t for t in (cost, fates) if t is not None]


def table_status(run: RunView) -> Table:
    """Per member: status (ok / collapsed / diverged), test accuracy and top-class share."""
    return Table("Member status", ["member", "point", "seed", "status", "test acc", "test loss",
                                   "top class share", "diverged at epoch"],
                 [[m["member"], p.label, m["config"].get("seed"), m["status"], m["test"]["acc"],
                   m["test"].get("loss"), m.get("top_class_share"), m.get("diverged_epoch")]
                  for p in run.points for m in p.members],
                 ["collapsed: one class gets >= 90% of the test predictions; diverged: a "
                  "non-finite loss or parameter (the member is frozen at its last finite "
                  "state)."])


def table_matrix(run: RunView) -> Table | None:
    """The two-key grid as a matrix: our test accuracy (%) mean ± std, paper's in brackets."""
    if (axes := grid(run)) is None:
        return None
    k1, rows, k2, columns, cells = axes

    def cell(p: Point | None) -> str:
        if p is None:
            return ""
        paper = run.paper(p).get("test_acc")
        return (_ms(p.test_acc(), 2, 100.0)
                + (f" ({paper * 100:.2f})" if isinstance(paper, float) else "")
                + (f" [{p.status()}]" if any(m["status"] != "ok" for m in p.members) else ""))

    return Table(f"Test accuracy (%), {k1} x {k2}: ours mean ± std (paper)",
                 [k1.split(".")[-1], *columns],
                 [[a, *map(cell, row)] for a, row in zip(rows, cells, strict=True)],
                 ["Brackets: the paper's published test accuracy; square brackets: member "
                  "status counts when not all ok."])


def tables_per_class(run: RunView) -> tuple[list[Table], Table]:
    """Per point (lowest seed): per-class counts, precision, recall, F1; plus one long CSV."""
    word = run.class_word
    long = Table("Per-class test metrics", ["point", "seed", word, "actual", "predicted",
                                            "correct", "accuracy", "precision", "recall", "f1"])
    per_point = []
    for p in run.points:
        cm = p.rep.get("confusion_test")
        if not cm:
            continue
        t = Table(f"{p.label} (seed {p.rep['config'].get('seed')}): per-class test metrics",
                  [word, "actual", "correct", "accuracy (correct/actual)", "precision",
                   "recall", "F1"])
        for r in metrics.per_class(cm):
            name = run.class_label(int(r["digit"]))
            t.add(name, r["actual"], r["correct"], r["recall"], r["precision"],
                  r["recall"], r["f1"])
            long.add(p.label, p.rep["config"].get("seed"), name, r["actual"],
                     r["predicted"], r["correct"], r["recall"], r["precision"], r["recall"],
                     r["f1"])
        s = metrics.summary(cm)
        t.add("macro", "", "", s["accuracy"], s["macro_precision"], s["macro_recall"],
              s["macro_f1"])
        per_point.append(t)
    if per_point:
        per_point[-1].notes.append(
            f"precision = correct / predicted as that {word} (S2's paper divided by 10,000 "
            "instead); recall = correct / actual = the paper's per-class accuracy; macro row: "
            "overall accuracy, then unweighted means.")
    return per_point, long


def tables_experiments(run: RunView) -> list[Table]:
    """One table per experiment (S3): ours beside the paper's number for each point."""
    out = []
    for exp in run.experiments():
        if exp["name"] == "main":
            continue
        t = Table(exp.get("title") or exp["name"],
                  ["point", "n", "test acc", "paper", "diff", "final train loss", "status"])
        for label, p in run.points_of(exp["name"]):
            pacc = run.paper(p, exp["name"], label).get("test_acc")
            t.add(label, len(p.members), _ms(p.test_acc()), _cell(pacc),
                  _diff(p.test_acc(), pacc), _ms(p.values(lambda m: _last(m, "train_loss"))),
                  p.status())
        out.append(t)
    return out


def table_baseline(run: RunView) -> Table | None:
    """S3: scikit-learn MLPClassifier vs jaxmnist vs the paper's sklearn and module numbers."""
    rows = run.results.get("baseline") or []
    if not rows:
        return None
    t = Table("scikit-learn MLPClassifier baseline (same split, widths, batch, epochs)",
              ["model", "n", "sklearn (ours)", "jaxmnist", "paper sklearn", "paper module"])
    for label in dict.fromkeys(r["label"] for r in rows):
        sk = [r["test_acc"] for r in rows if r["label"] == label]
        point = next((p for lb, p in run.points_of(rows[0]["experiment"]) if lb == label), None)
        ours = _ms(point.test_acc()) if point else ""
        pub = published.lookup(run.study, "sklearn", label, {})
        t.add(label, len(sk), _ms(sk), ours,
              _cell(pub.values.get("sklearn_acc") if pub else None),
              _cell(pub.values.get("module_acc") if pub else None))
    t.notes.append("sklearn: solver sgd, constant lr, momentum 0, alpha 0, Glorot-uniform init "
                   "(sklearn's, not He); see jaxmnist/engine/baselines.py.")
    return t


def table_history(run: RunView) -> Table | None:
    """Per-epoch train/val metrics beside a published training log (S1)."""
    hist = published.history(run.study)
    if not hist or len(run.points) != 1:
        return None
    p = run.points[0]
    fields = ("train_acc", "train_loss", "val_acc", "val_loss")
    t = Table("Training log per epoch: ours (mean ± std) / paper",
              ["epoch"] + [f"{f} ours" for f in fields] + [f"{f} paper" for f in fields])
    # Every published epoch gets a row, also when this run trained fewer epochs.
    epochs = max([len(m.get("history") or []) for m in p.members] + list(hist))
    for e in range(1, epochs + 1):
        ours = [_ms(p.values(lambda m, e=e, f=f: (m["history"][e - 1].get(f)
                                                  if len(m["history"]) >= e else None)))
                for f in fields]
        paper = [_cell(hist.get(e, {}).get(f)) for f in fields]
        t.add(e, *ours, *paper)
    t.notes.append("The paper printed epochs 1-6 only.")
    return t


def table_last_epoch(run: RunView) -> Table:
    """Per point: train/val accuracy at the last epoch, test accuracy, macro P/R/F1 (S4)."""
    t = Table("Last epoch and macro precision / recall / F1 on the test set (mean ± std)",
              ["point", "params", "train acc", "val acc", "test acc", "precision", "recall",
               "F1", "paper train", "paper val", "paper P/R/F1"])
    for p in run.points:
        vals = run.paper(p)
        prf = "/".join(_cell(vals.get(k)) for k in ("precision", "recall", "f1")
                       if k in vals)
        summ = p.values(lambda m: metrics.summary(m["confusion_test"])
                        if m.get("confusion_test") else None)
        t.add(p.label, p.rep.get("param_count"),
              _ms(p.values(lambda m: _last(m, "train_acc"))),
              _ms(p.values(lambda m: _last(m, "val_acc"))), _ms(p.test_acc()),
              *[_ms([s[f"macro_{k}"] if s else None for s in summ])
                for k in ("precision", "recall", "f1")],
              _cell(vals.get("train_acc_last")), _cell(vals.get("val_acc_last")),
              prf)
    return t


def table_models(run: RunView) -> Table:
    """Parameter count per distinct model (the paper's where it printed one)."""
    firsts: dict[str, Point] = {}  # each model's first point
    for p in run.points:
        firsts.setdefault(_model_text(p.config), p)
    return Table("Models and parameter counts", ["model", "params", "paper params"],
                 [[text, p.rep.get("param_count"), run.paper(p).get("params")]
                  for text, p in firsts.items()])


# A finished group's entry in results_summary.json (results.json ``groups`` has them all).
_GROUP_FIELDS = ("group", "members", "devices", "strategy", "train_seconds",
                 "images_per_second", "resumed")


def results_summary(run: RunView) -> dict[str, Any]:
    """A compact summary committed beside the tables (``results_summary.json``).

    ``wall_seconds``: the finishing session's, to the end of training; ``train_seconds``: every
    finished group's epochs over all sessions (``groups``: each group's time and speed).
    """
    points = []
    for p in run.points:
        accs = p.test_acc()
        mean, std, n = metrics.mean_std(accs)
        last = [m["history"][-1] if m.get("history") else {} for m in p.members]
        points.append({
            "label": p.label,
            "experiments": [e["name"] for e in p.experiments],
            "n": n,
            "test_acc": accs,
            "test_acc_mean": mean if n else None,
            "test_acc_std": std if n > 1 else None,
            "test_loss": [m["test"].get("loss") for m in p.members],
            "val_acc": p.final("val_acc"),
            "status": [m["status"] for m in p.members],
            "paper_test_acc": run.paper(p).get("test_acc"),
            "last_epoch": [{k: h.get(k) for k in ("epoch", "train_acc", "val_acc")}
                           for h in last],
        })
    groups = [{k: g.get(k) for k in _GROUP_FIELDS} for g in run.results.get("groups", [])]
    env, best, member = run.env, run.best(), run.best_member()
    return rundir.finite_json({
        "study": run.study, "title": run.config.get("title", ""),
        "settings": run.settings_label(), "preset": run.preset,
        "reduced_reasons": run.reduced_reasons(),
        "complete": bool(run.results.get("complete", False)),
        "progress": None if run.results.get("complete", True) else run.progress(),
        "epochs": get_dotted(run.config, "base.train.epochs", None),
        "seeds": run.config.get("seeds"), "data": run.results.get("data", {}),
        "wall_seconds": run.results.get("wall_seconds"),
        "train_seconds": sum(g["train_seconds"] or 0.0 for g in groups) if groups else None,
        "groups": groups,
        "device": run.device(), "commit": env.get("git_commit"), "date": env.get("date"),
        "sessions": 1 + len(env.get("sessions", [])),
        "versions": {k: env.get(k) for k in ("python", "jax", "flax", "optax")},
        "points": points,
        # The point chosen on validation (runview.RunView.best) and its best member, or why none.
        "best": {"label": best.label, "member": member["member"]} if best and member else None,
        "no_choice": run.no_choice(),
    })


def write_tables(run: RunView) -> list[Path]:
    """Writes every table that applies to the run; returns the written paths."""
    out_dir = run.path / "tables"
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sections: list[str] = []  # report.md's

    def emit(name: str, tables: list[Table | None], heading: str,
             csv_table: Table | None = None, in_report: bool = True) -> None:
        """``name.md``, ``name.csv`` (of ``csv_table`` if given; ``name_<i>.csv`` if many)."""
        tables = [t for t in tables if t is not None]  # a table that does not apply
        if not tables:
            return
        text = f"## {heading}\n\n" + "\n".join(t.markdown() for t in tables)
        (out_dir / f"{name}.md").write_text(text)
        csvs = tables if csv_table is None else [csv_table]
        written.append(out_dir / f"{name}.md")
        for i, table in enumerate(csvs):
            written.append(out_dir / (f"{name}.csv" if len(csvs) == 1 else f"{name}_{i + 1}.csv"))
            written[-1].write_text(table.csv())
        if in_report:
            sections.append(text)

    emit("summary", [table_summary(run)], "Summary")
    summary_path = out_dir / "results_summary.json"
    rundir.write_json(summary_path, results_summary(run))
    written.append(summary_path)
    emit("kept", [table_kept(run)], "Which epoch counts")
    emit("protocol", tables_protocol(run), "Tuning protocol")
    emit("seeds", [table_seeds(run)], "Seeds")
    emit("compare", [table_compare(run)], "Optimizers compared")
    emit("grid_matrix", [table_matrix(run)], "Grid")
    emit("experiments", tables_experiments(run), "Experiments")
    emit("baseline", [table_baseline(run)], "Baseline")
    emit("history", [table_history(run)], "Training log vs paper")
    emit("last_epoch", [table_last_epoch(run)], "Last epoch and macro metrics")
    emit("models", [table_models(run)], "Models")
    per_point, long = tables_per_class(run)
    emit("per_class", per_point, "Per-class test metrics", long, in_report=False)
    emit("pruning", tables_pruning(run), "Pruning")
    emit("status", [table_status(run)], "Member status")
    head = (f"# {run.config.get('title', run.study)}\n\n"
            f"Paper: {published.PAPERS.get(run.study, 'none')}.\n\n"
            + "  \n".join(run.footer().splitlines()) + "\n\n")
    (out_dir / "report.md").write_text(head + "\n".join(sections))
    written.append(out_dir / "report.md")
    return written


def generate(run_dir: str | Path, *, figures: bool = True) -> list[Path]:
    """Regenerates every table (and figure) of a run directory; returns the written paths."""
    run = load(run_dir)
    written = write_tables(run)
    if figures:
        from jaxmnist.runs import figures as figures_mod

        written += figures_mod.write_figures(run)
    return written
