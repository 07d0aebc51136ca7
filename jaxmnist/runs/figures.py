"""The report's figures (matplotlib, Agg): PNGs from a run directory's files. No jax.

Every figure has a title, labelled axes and the run's footer ("REDUCED RUN" and why, if so).
"""

from __future__ import annotations

import io
import re
import sys
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402  (a dependency of jaxmnist and of matplotlib)

from jaxmnist.engine import metrics  # noqa: E402
from jaxmnist.runs import published, rundir, stats
from jaxmnist.runs.runview import Point, RunView, grid, slug  # noqa: E402

DPI = 100
FOOTER_COLOR = "#7a1f1f"


def _save(fig, run: RunView, path: Path, right: float = 0.97, top: float = 0.0,
          margins: dict[str, float] | None = None) -> Path:
    """Lays out (margins fixed in inches, or ``margins``), adds the run's footer, writes a PNG.

    Not tight_layout: it costs ~0.4 s a figure. ``right``, ``top``: room for a legend, a title.
    """
    h = fig.get_figheight()
    fig.subplots_adjust(**(margins or {"left": 0.08, "right": right, "bottom": 0.95 / h,
                                       "top": 1 - top - 0.75 / h, "wspace": 0.32, "hspace": 0.45}))
    footer = run.footer()
    # ~18 characters of 7-pt text per inch: wrap so a long list of reasons stays on the figure.
    width = int(fig.get_figwidth() * 18)
    lines = [w for line in footer.splitlines() for w in textwrap.wrap(line, width)]
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=7, va="bottom", ha="left",
             color=FOOTER_COLOR if "REDUCED" in footer else "#444444")
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png")
    plt.close(fig)
    # A 256-colour palette keeps committed figures small (line plots lose nothing visible).
    Image.open(buf).convert("RGB").quantize(colors=256).save(path, optimize=True)
    return path


def _class_ticks(ax, run: RunView, rotation: int = 45, y: bool = False) -> None:
    """Ticks 0..9 on the x (and ``y``) axis, labelled with the class names where not digits."""
    ax.set_xticks(range(10))
    if y:
        ax.set_yticks(range(10))
    if run.class_word != "digit":
        ax.set_xticklabels(run.class_names, rotation=rotation, ha="right", fontsize=7)
        if y:
            ax.set_yticklabels(run.class_names, fontsize=7)


def _seed_curves(point: Point, key: str) -> np.ndarray:
    """``[seeds, epochs]`` of one history field (NaN where missing)."""
    n = max(len(m.get("history") or []) for m in point.members)
    out = np.full((len(point.members), n), np.nan)
    for i, m in enumerate(point.members):
        for j, row in enumerate(m.get("history") or []):
            out[i, j] = np.nan if row.get(key) is None else row[key]
    return out


LOSS_CEILING = 30.0  # ~13x the chance loss ln(10): above it a loss curve is divergence, not data


def curves(run: RunView, points: Sequence[tuple[str, Point]], path: Path, title: str) -> Path:
    """Accuracy and loss per epoch, train and validation, mean line with a ±std seed band.

    Several optimizers' points (more than 4): small multiples; docs/studies.md, "Figures".
    """
    has_val = any(
        (m.get("history") or [{}])[0].get("val_acc") is not None
        for _, p in points for m in p.members)
    keys = [("train_acc", "train accuracy"), ("val_acc", "validation accuracy"),
            ("train_loss", "train loss"), ("val_loss", "validation loss")]
    keys = [k for k in keys if has_val or not k[0].startswith("val")]
    families = list(dict.fromkeys(stats.optimizer(p) for _, p in points))
    columns = ([[(lab, p) for lab, p in points if stats.optimizer(p) == f] for f in families]
               if len(families) > 1 and len(points) > 4 else None)
    if columns:
        rates = {id(p): np.log10(float(p.config["optim"]["learning_rate"])) for _, p in points}
        lo, hi = min(rates.values()), max(rates.values())
        scale = plt.get_cmap("viridis_r")
        colors = {k: scale(0.1 + 0.8 * ((x - lo) / (hi - lo) if hi > lo else 0.5))
                  for k, x in rates.items()}
        fig, grid = plt.subplots(len(keys), len(columns), squeeze=False, sharey="row",
                                 figsize=(3.6 * len(columns) + 1.0, 2.6 * len(keys) + 1.4))
        panels = [(grid[r, c], key, name, col) for r, (key, name) in enumerate(keys)
                  for c, col in enumerate(columns)]
    else:
        nrows, wide = len(keys) // 2, len(points) > 4  # room on the right for a long legend
        fig, grid = plt.subplots(nrows, 2, figsize=(13.5 if wide else 11, 3.4 * nrows + 1.2),
                                 squeeze=False)
        palette = plt.get_cmap("tab20" if len(points) > 10 else "tab10")
        colors = {id(p): palette(i % palette.N) for i, (_, p) in enumerate(points)}
        panels = [(ax, key, name, list(points)) for ax, (key, name) in zip(grid.flat, keys,
                                                                             strict=True)]
    pub_hist = published.history(run.study)
    for ax, key, name, pts in panels:
        off_scale = []
        for label, point in pts:
            ys = _seed_curves(point, key)
            if not np.isfinite(ys).any():
                continue
            if "loss" in key and np.nanmax(ys) > LOSS_CEILING:
                off_scale.append(label)
            x = np.arange(1, ys.shape[1] + 1)
            # A diverged member's later epochs are NaN: a gap in the line, without a warning.
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(ys, 0)
                std = np.nanstd(ys, 0, ddof=1) if ys.shape[0] > 1 else np.zeros_like(mean)
            c = colors[id(point)]
            shown = label.removeprefix(stats.optimizer(point) + " ") if columns else label
            ax.plot(x, mean, color=c, lw=1.5, marker="o", ms=3,
                    label=f"{shown} (n={ys.shape[0]})")
            ax.fill_between(x, mean - std, mean + std, color=c, alpha=0.2, lw=0)
        if pub_hist and len(points) == 1:
            ep = sorted(pub_hist)
            ax.plot(ep, [pub_hist[e].get(key) for e in ep], "kx", ms=7, label="paper")
        ax.set(xlabel="epoch", ylabel=name)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_title(f"{stats.optimizer(pts[0][1])}: {name}" if columns else name, fontsize=10)
        ax.grid(alpha=0.3)
        if "loss" in key:
            finite = [v for _, p in points for v in _seed_curves(p, key).ravel()
                      if np.isfinite(v) and v <= LOSS_CEILING]
            log = bool(finite) and max(finite) > 20 * max(np.median(finite), 1e-3)
            if log:
                ax.set_yscale("log")
            if finite:  # fixed both ends: an off-scale curve would stretch the autoscaled one
                ax.set_ylim(min(finite) / 1.5 if log else 0.0,
                            min(max(finite) * (1.5 if log else 1.05), LOSS_CEILING))
            if off_scale:
                ax.text(0.02, 0.97, "off-scale (diverged): " + ", ".join(off_scale),
                        transform=ax.transAxes, fontsize=6, va="top", wrap=True)
        if columns and key == keys[0][0] and len(pts) <= 6:  # else the colour scale says it
            ax.legend(fontsize=6, loc="lower right")
    text = f"{title}: mean ± std over seeds" + (
        " (a column per optimizer; darker = larger learning rate)" if columns else "")
    text = textwrap.fill(text, int(fig.get_figwidth() * 11))
    fig.suptitle(text, fontsize=12)
    if columns:  # room for the title's lines
        return _save(fig, run, path, top=0.25 * text.count("\n") / fig.get_figheight())
    if len(points) > 4:
        handles, labels = grid.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper left", fontsize=7, ncol=1,
                   bbox_to_anchor=(0.69, 0.93), frameon=False)
        return _save(fig, run, path, right=0.68)
    grid.flat[0].legend(fontsize=8)
    return _save(fig, run, path)


def confusion(run: RunView, cm: Sequence[Sequence[int]], path: Path, title: str) -> Path:
    """A confusion matrix as counts and as row-normalized fractions, side by side."""
    cm = np.asarray(cm, np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.nan_to_num(cm / cm.sum(1, keepdims=True))
    fig, axes = plt.subplots(1, 2, figsize=(11, 6.0))
    for ax, data, name, fmt in ((axes[0], cm, "counts", "d"),
                                (axes[1], norm, "row-normalized (recall)", ".2f")):
        im = ax.imshow(data, cmap="Blues")
        _class_ticks(ax, run, rotation=60, y=True)
        ax.set(xlabel=f"predicted {run.class_word}", ylabel=f"true {run.class_word}", title=name)
        top = data.max() if data.size else 1
        for (i, j), v in np.ndenumerate(data):
            if v:
                ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=6.5,
                        color="white" if v > 0.55 * top else "black")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title, fontsize=12)
    return _save(fig, run, path)


def heatmap(run: RunView, path: Path) -> Path | None:
    """S2-style optimizer x learning-rate heatmap of our mean test accuracy, paper in brackets."""
    if (axes := grid(run)) is None:
        return None
    k1, rows, k2, columns, cells = axes
    ours = np.full((len(rows), len(columns)), np.nan)
    text = [["" for _ in columns] for _ in rows]
    for i, row in enumerate(cells):
        for j, p in enumerate(row):
            if p is None:
                continue
            mean, std, n = metrics.mean_std(p.test_acc())
            ours[i, j] = mean
            paper = run.paper(p).get("test_acc")
            text[i][j] = f"{mean:.2%}" + (f"\n±{std:.2%}" if n > 1 else "")
            if isinstance(paper, float):
                text[i][j] += f"\n(paper {paper:.2%})"
            if bad := sorted({m["status"] for m in p.members} - {"ok"}):
                text[i][j] += "\n" + ",".join(bad)
    fig, ax = plt.subplots(figsize=(9, 5.8))
    im = ax.imshow(ours, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel=k2, ylabel=k1)
    for (i, j), v in np.ndenumerate(ours):
        ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7.5,
                color="black" if v > 0.6 else "white")
    fig.colorbar(im, ax=ax, label="test accuracy (mean over seeds)")
    ax.set_title("Test accuracy per grid cell: ours (mean ± std over seeds) and the paper's")
    return _save(fig, run, path)


def class_distribution(run: RunView, point: Point, path: Path) -> Path | None:
    """Training and test images per digit (row sums of the confusion matrices)."""
    rep = point.rep
    if not rep.get("confusion_test"):
        return None
    test = np.asarray(rep["confusion_test"]).sum(1)
    train = np.asarray(rep["confusion_train"]).sum(1) if rep.get("confusion_train") else None
    fig, ax = plt.subplots(figsize=(9, 4.6))
    bars = [("test", test, 0.0)] if train is None else [("train", train, -0.2), ("test", test, 0.2)]
    for name, counts, dx in bars:
        ax.bar_label(ax.bar(np.arange(10) + dx, counts, 0.4, label=f"{name} ({counts.sum():,})"),
                     fontsize=6.5)
    _class_ticks(ax, run)
    ax.set(xlabel=run.class_word, ylabel="images",
           title="Class distribution of the run's training and test sets")
    ax.legend()
    return _save(fig, run, path)


def sample_grid(run: RunView, path: Path) -> Path | None:
    """The first 25 training images with their labels, 5 x 5."""
    if run.samples is None:
        return None
    xs, ys = run.samples["train_x"], run.samples["train_y"]
    # 5 x 5 cells (28 px under a 10 px label strip) in ONE axes: 25 axes cost 1.2 s.
    cell, strip = 28, 10
    montage = np.zeros((5 * (cell + strip), 5 * cell + 4 * 2), np.float32)
    fig, ax = plt.subplots(figsize=(6.4, 7.4))
    for i in range(min(25, len(xs))):
        r, c = divmod(i, 5)
        top, left = r * (cell + strip) + strip, c * (cell + 2)
        montage[top:top + cell, left:left + cell] = np.asarray(xs[i], np.float32).reshape(28, 28)
        ax.text(left + cell / 2, top - 1.5, f"label {run.class_label(int(ys[i]))}", fontsize=8,
                ha="center", va="bottom")
    ax.imshow(montage, cmap="gray_r", interpolation="nearest")
    ax.axis("off")
    fig.suptitle("First 25 training images (after the split)", fontsize=11)
    return _save(fig, run, path, margins=dict(left=0.02, right=0.98, bottom=0.1, top=0.9))


def test_probs(run: RunView, point: Point, path: Path, index: int = 0) -> Path | None:
    """One test image and the model's probability for each of the 10 classes."""
    probs = point.rep.get("test_probs_first25")
    if run.samples is None or not probs:
        return None
    p = np.asarray(probs[index])
    image, label = run.samples["test_x"][index], int(run.samples["test_y"][index])
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 4.2), gridspec_kw={"width_ratios": [1, 2]})
    a0.imshow(np.asarray(image).reshape(28, 28), cmap="gray_r")
    a0.axis("off")
    a0.set_title(f"test image {index} (label {run.class_label(label)})")
    bars = a1.bar(range(10), p, color=["C2" if c == label else "C0" for c in range(10)])
    a1.bar_label(bars, labels=[f"{v:.3f}" for v in p], fontsize=7)
    _class_ticks(a1, run)
    a1.set(ylim=(0, 1.1), xlabel="class", ylabel="probability")
    a1.set_title(f"{point.label} (seed {point.rep['config'].get('seed')}): "
                 f"predicts {run.class_label(int(p.argmax()))}")
    fig.suptitle("Predicted class probabilities for one test image", fontsize=11)
    return _save(fig, run, path)


def histograms(run: RunView, points: Sequence[tuple[str, Point]], kind: str, path: Path,
               title: str, max_layers: int = 8) -> Path | None:
    """Per-layer distribution (``kind`` = ``weight_hist`` or ``grad_hist``), one line per point."""
    hists = [(label, p.rep.get(kind) or {}) for label, p in points]
    layers = [k for k in hists[0][1] if all(k in h for _, h in hists)] if hists else []
    if not layers:
        return None
    if len(layers) > max_layers:  # e.g. SqueezeNet: evenly spaced layers, first and last kept
        idx = np.linspace(0, len(layers) - 1, max_layers).round().astype(int)
        layers = [layers[i] for i in dict.fromkeys(idx)]
    ncols = min(4, len(layers))
    nrows = -(-len(layers) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 1.5, 2.7 * nrows + 1.3),
                             squeeze=False)
    for ax, layer in zip(axes.flat, layers, strict=False):
        for i, (label, h) in enumerate(hists):
            counts = np.asarray(h[layer]["counts"], float)
            edges = np.asarray(h[layer]["edges"], float)
            if counts.sum() > 0:
                counts = counts / counts.sum()
            ax.stairs(counts, edges, color=f"C{i % 10}", label=label, lw=1.3)
        ax.set_title(layer, fontsize=9)
        ax.set(xlabel="gradient" if kind == "grad_hist" else "weight value", ylabel="fraction")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    return _save(fig, run, path)


# = jaxmnist.models.WEIGHT_NAMES without importing jax (tests/test_adapters.py checks it).
WEIGHT_NAMES = ("w", "kernel")


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def dense_chain(params: dict[str, np.ndarray], model_cfg: dict[str, Any]) -> list | None:
    """The weight matrices of a fully connected net chaining 784 -> ... -> 10, else None.

    Weights are the leaves the model's ``weight_leaves`` (else :data:`WEIGHT_NAMES`) name.
    """
    names = tuple(model_cfg.get("weight_leaves") or WEIGHT_NAMES)
    # Natural order: the zoo's MLP as dense1, dense2, ..., dense10, output (d < o).
    ws = [v for k, v in sorted(params.items(), key=lambda kv: _natural(kv[0]))
          if k.rpartition("/")[2] in names]
    if (not ws or any(w.ndim != 2 for w in ws)
            or ws[0].shape[0] != 784 or ws[-1].shape[1] != 10
            or any(a.shape[1] != b.shape[0] for a, b in zip(ws, ws[1:], strict=False))):
        return None
    return ws


def ffnn_drawing(run: RunView, point: Point, path: Path, show_units: int = 16,
                 edges_per_layer: int = 60) -> Path | None:
    """An FFNN as layers of nodes (edge colour = sign, width = |weight|), subsampled, and says so.

    Beside it, a 28x28 map of each input pixel's summed |weight|.
    """
    member = point.rep["member"]
    if member not in rundir.exported_members(run.path):
        return None
    try:
        params = rundir.flatten_params(rundir.load_member(run.path, member)[1])
    except rundir.RunDirError as err:
        print(f"jaxmnist.runs.figures: no FFNN drawing: {err}", file=sys.stderr)
        return None
    ws = dense_chain(params, point.config["model"])
    if ws is None:
        return None
    # Per layer, the units (rows of the first matrix: inputs) with the largest summed |weight|.
    keep = [np.sort(np.argsort(-np.abs(ws[0]).sum(1))[:show_units])]
    keep += [np.sort(np.argsort(-np.abs(w).sum(0))[:show_units]) for w in ws[:-1]]
    keep.append(np.arange(ws[-1].shape[1]))
    fig, (ax, ax_map) = plt.subplots(1, 2, figsize=(12, 6.4),
                                     gridspec_kw={"width_ratios": [2.6, 1]})
    xs = np.linspace(0, 1, len(keep))
    pos = [np.linspace(0.95, 0.05, len(k)) if len(k) > 1 else np.array([0.5]) for k in keep]
    wmax = max(np.abs(w).max() for w in ws) or 1.0
    cmap = plt.get_cmap("coolwarm")
    for li, w in enumerate(ws):
        sub = w[np.ix_(keep[li], keep[li + 1])]
        flat = np.argsort(-np.abs(sub).ravel())[:edges_per_layer]
        for f in flat[::-1]:  # strongest drawn last, on top
            i, j = np.unravel_index(f, sub.shape)
            v = sub[i, j]
            ax.plot([xs[li], xs[li + 1]], [pos[li][i], pos[li + 1][j]],
                    color=cmap(0.5 + 0.5 * v / wmax), lw=0.3 + 3.0 * abs(v) / wmax, alpha=0.8)
    layer_names = ["input"] + [f"hidden {i + 1}" for i in range(len(ws) - 1)] + ["output"]
    sizes = [ws[0].shape[0]] + [w.shape[1] for w in ws]
    for li, k in enumerate(keep):
        ax.scatter(np.full(len(k), xs[li]), pos[li], s=60, c="white", edgecolors="black",
                   zorder=3)
        ax.text(xs[li], 1.02, f"{layer_names[li]}\n{len(k)} of {sizes[li]}", ha="center",
                va="bottom", fontsize=8)
    for y, idx in zip(pos[0], keep[0], strict=True):  # input pixels, output classes
        ax.text(xs[0] - 0.02, y, f"px({idx // 28},{idx % 28})", ha="right", va="center", fontsize=6)
    for y, idx in zip(pos[-1], keep[-1], strict=True):
        ax.text(xs[-1] + 0.02, y, str(idx), ha="left", va="center", fontsize=8)
    ax.set_xlim(-0.12, 1.06)
    ax.set_ylim(-0.02, 1.12)
    ax.axis("off")
    ax.set_title(f"{point.label} (seed {point.rep['config'].get('seed')}): strongest weights",
                 fontsize=10, pad=24)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(-wmax, wmax))
    fig.colorbar(sm, ax=ax, fraction=0.03, label="weight (red +, blue -)")
    heat = np.abs(ws[0]).sum(1).reshape(28, 28)
    im = ax_map.imshow(heat, cmap="magma")
    ax_map.set_title("input pixels: sum of |weight| to layer 1", fontsize=9)
    ax_map.set(xlabel="pixel column", ylabel="pixel row")
    fig.colorbar(im, ax=ax_map, fraction=0.046)
    fig.suptitle("FFNN drawing (subsampled: top inputs and units by summed |weight|, "
                 f"{edges_per_layer} strongest edges per layer)", fontsize=10)
    return _save(fig, run, path,
                 margins=dict(left=0.02, right=0.97, bottom=0.12, top=0.86, wspace=0.1))


def band(described: dict[str, Any]) -> tuple[float, float]:
    """A :func:`stats.describe`'d point's band: its interval, else (below 5 seeds) its range."""
    low, high = described["ci_low"], described["ci_high"]
    if np.isfinite(low) and np.isfinite(high):
        return float(low), float(high)
    seeds = stats.finite(described["values"])
    return float(seeds.min()), float(seeds.max())


def sensitivity(run: RunView, path: Path) -> Path | None:
    """Validation accuracy against learning rate, a line per optimizer (docs/statistics.md)."""
    lines: dict[str, list[tuple[float, dict[str, Any], Point]]] = {}
    for p in (p for p in run.points if not stats.is_final(p)):  # the tuning points
        d = stats.describe(p.final("val_acc"))
        if np.isfinite(d["mean"]):
            lines.setdefault(stats.optimizer(p), []).append(
                (float(p.config["optim"]["learning_rate"]), d, p))
    lines = {f: sorted(v, key=lambda t: t[0]) for f, v in lines.items()
             if len({lr for lr, _, _ in v}) > 1}
    if not lines or run.no_choice():
        return None
    chosen = {id(p) for p in stats.chosen(run, tuning=True).values()}
    fig, ax = plt.subplots(figsize=(9, 5.4))
    for i, (family, rows) in enumerate(lines.items()):
        lr = [r[0] for r in rows]
        mean = [r[1]["mean"] for r in rows]
        lo, hi = zip(*(band(r[1]) for r in rows), strict=True)
        color = plt.get_cmap("tab10")(i % 10)
        ax.plot(lr, mean, marker="o", ms=4, color=color, label=f"{family} ({len(rows)} rates)")
        ax.fill_between(lr, lo, hi, color=color, alpha=0.2, lw=0)
        for r in rows:
            if id(r[2]) in chosen:
                ax.plot(r[0], r[1]["mean"], "*", ms=14, color=color, mec="black")
    ax.set(xscale="log", xlabel="learning rate", ylabel="validation accuracy, last epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Learning-rate sensitivity (mean over seeds; band: 95% interval with >= 5 "
                 "seeds, else the seeds' range; star: chosen)", fontsize=9)
    return _save(fig, run, path)


def improvement(run: RunView, path: Path) -> Path | None:
    """P(row beats column) on test accuracy at the chosen settings (:func:`stats.compare`)."""
    table = stats.compare(run) if not run.no_choice() else None
    if table is None or table.empty:
        return None
    names = list(dict.fromkeys([*table["x"], *table["y"]]))
    grid = np.full((len(names), len(names)), np.nan)
    text = [["" for _ in names] for _ in names]
    for row in table.itertuples():
        i, j = names.index(row.x), names.index(row.y)
        grid[i, j], grid[j, i] = row.p_improve, 1 - row.p_improve
        has_ci = row.p_ci_low is not None and np.isfinite(row.p_ci_low)
        for a, b, p, lo, hi in ((i, j, row.p_improve, row.p_ci_low, row.p_ci_high),
                                (j, i, 1 - row.p_improve, 1 - row.p_ci_high, 1 - row.p_ci_low)):
            text[a][b] = f"{p:.2f}" + (f"\n[{lo:.2f}, {hi:.2f}]" if has_ci else f"\nn={row.n}")
    fig, ax = plt.subplots(figsize=(1.9 * len(names) + 4.0, 0.9 * len(names) + 3.0))
    im = ax.imshow(grid, cmap="RdBu", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=8,
                    color="white" if abs(v - 0.5) > 0.3 else "black")
    fig.colorbar(im, ax=ax, label="P(row > column), paired over seeds")
    ax.set_title("Probability of improvement, test accuracy (interval: 95%, >= 5 seeds)",
                 fontsize=9)
    return _save(fig, run, path, margins=dict(left=0.25, right=0.95, bottom=0.3, top=0.88))


def profiles(run: RunView, path: Path) -> Path | None:
    """Performance profiles of test accuracy (:func:`stats.performance_profile`)."""
    if len({stats.optimizer(p) for p in run.points}) < 2:
        return None
    scores = stats.finite(v for p in run.points for v in p.test_acc())
    if not scores.size:
        return None
    taus = np.linspace(max(0.0, float(scores.min()) - 0.01), 1.0, 200)
    frame = stats.performance_profile(run, taus)
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in frame.columns:
        ax.plot(frame.index, frame[name], lw=1.8, label=name)
    ax.set(xlabel="tau (test accuracy)", ylabel="fraction of runs with test accuracy > tau")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Performance profiles over every setting and seed of each optimizer",
                 fontsize=10)
    return _save(fig, run, path)


def rungs(run: RunView, path: Path) -> Path | None:
    """Successive halving: each point's validation metric per epoch until it stopped."""
    points = [p for p in run.points if p.rep.get("rungs") and not stats.is_final(p)]
    if not points:
        return None
    prune = run.config.get("prune") or {}
    metric = prune.get("metric", "val_acc")
    families = list(dict.fromkeys(stats.optimizer(p) for p in points))
    fig, axes = plt.subplots(1, len(families), squeeze=False, sharey=True,
                             figsize=(3.8 * len(families) + 1.0, 4.6))
    for ax, family in zip(axes[0], families, strict=True):
        for p in (p for p in points if stats.optimizer(p) == family):
            with warnings.catch_warnings():  # a pruned point's epochs after its rung: NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                ys = np.nanmean(_seed_curves(p, metric), 0)
            x = np.arange(1, len(ys) + 1)
            if all(r["survived"] for r in p.rep["rungs"]):
                ax.plot(x, ys, lw=2.2, marker="o", ms=3, color="C1", alpha=1, zorder=3,
                        label=f"lr={p.config['optim']['learning_rate']:.3g}")
            else:
                ax.plot(x, ys, lw=0.8, marker="x", ms=5, color="0.5", alpha=0.8, zorder=2)
        for epoch in prune.get("rungs", []):
            ax.axvline(epoch, color="C0", ls="--", lw=0.8)
        ax.set_title(family, fontsize=10)
        ax.set_xlabel("epoch (dashed: rungs)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right", title="survivors", title_fontsize=7)
    axes[0][0].set_ylabel(metric.replace("_", " "))
    fig.suptitle(f"Successive halving (eta {prune.get('eta')}): {metric} per point until it "
                 "stopped (grey x: stopped at a rung); bold: survived every rung", fontsize=11)
    return _save(fig, run, path)


def write_figures(run: RunView) -> list[Path]:
    """Writes every figure that applies to the run; returns the written paths."""
    out = run.path / "figures"
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path | None] = []
    best = run.featured()  # the best point on validation, else (nothing chosen) the first
    what = "best point" if run.best() else "first point (no choice)"
    # Per experiment (S3; a protocol's tuning and final phases), else every point at once.
    exps = [e for e in run.experiments() if e["name"] != "main"
            or any(x["name"] == stats.FINAL for x in run.experiments())]
    if exps:  # curves and histograms per experiment (S3), else of every point at once
        sets = [(run.points_of(e["name"]), f"_{slug(e['name'])}", e.get("title") or e["name"])
                for e in exps]
    else:
        sets = [([(p.label, p) for p in run.points], "", run.config.get("title", run.study))]
    for pts, s, name in sets:
        written.append(curves(run, pts, out / f"curves{s}.png", name))
        overlay = pts if exps or len(pts) <= 4 else [(best.label, best)]
        written += [histograms(run, overlay, kind, out / f"{file}{s}.png",
                               f"{what} distributions per layer"
                               + (f": {name}" if exps else " (lowest seed)"))
                    for kind, file, what in (("weight_hist", "weights", "Weight"),
                                             ("grad_hist", "grads", "Gradient"))]
    written += [heatmap(run, out / "grid_heatmap.png"),
                sensitivity(run, out / "lr_sensitivity.png"),
                improvement(run, out / "probability_of_improvement.png"),
                profiles(run, out / "performance_profiles.png"),
                rungs(run, out / "rungs.png")]
    # (file, matrix, title); a matrix is absent while its point is still training
    matrices = [(f"confusion_{split}", best.rep.get(f"confusion_{split}"),
                 f"{split.title()} confusion matrix, {what}: {best.label} (seed "
                 f"{best.rep['config'].get('seed')})") for split in ("test", "train")]
    if not exps and 1 < len(run.points) <= 4:  # S4: one matrix per depth, as the paper shows
        matrices += [(f"confusion_test_{slug(p.label)}", p.rep.get("confusion_test"),
                      f"Test confusion matrix: {p.label} (seed {p.rep['config'].get('seed')})")
                     for p in run.points]
    written += [confusion(run, cm, out / f"{file}.png", title)
                for file, cm, title in matrices if cm]
    written += [class_distribution(run, best, out / "class_distribution.png"),
                sample_grid(run, out / "samples.png"),
                test_probs(run, best, out / "test_probs.png"),
                ffnn_drawing(run, best, out / "ffnn.png")]
    return [p for p in written if p is not None]
