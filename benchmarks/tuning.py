"""The tuning study three ways, side by side in one run: pruned, in full, and a plain PyTorch loop.

Issue 30's measurement. On one machine, one after another:

1. ``python -m jaxmnist.sweep tune --preset cpu`` (search + successive halving), wall time;
2. the same study with pruning off (every sampled member trained to the last epoch);
3. the same members (the sampled settings read from run 2's ``config.json``), on the same data
   slice, trained one after another in the PyTorch loop a user would otherwise write (S0's CNN,
   batch and epochs of the study, validation after every epoch, test at the end); Lion, which
   PyTorch does not ship, is written out by hand below.

Then it compares the pruned run's best learning rate per optimizer (chosen on validation with
:func:`jaxmnist.ranking.rank`) with the full grid's, counts member-epochs, and writes
``tuning-<stamp>.json`` / ``.md`` under ``--out``. Command::

    python -m benchmarks.tuning --workdir RUNS/tuning --out benchmarks/results/

A phase whose run directory already holds a finished run is not re-run (its recorded seconds are
reused), so an interrupted bench resumes; ``--fresh`` re-runs every phase.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxmnist import ranking

STUDY, PRESET = "tune", "cpu"
PHASE_1 = ("--config.final_seeds=0",)  # the tuning study alone (the protocol's phase 1)
# How the full grid is asked for: the same study and preset with successive halving off.
FULL_OVERRIDES = (*PHASE_1, "--config.prune=None")


def _sweep(workdir: Path, overrides: Sequence[str], data_dir: str | None) -> float:
    """Runs the study into ``workdir`` in a fresh process; wall seconds (reused when finished)."""
    stamp = workdir / "bench-seconds.json"
    if stamp.exists():
        return float(json.loads(stamp.read_text())["seconds"])
    env = dict(os.environ, **({"JAXMNIST_DATA_DIR": data_dir} if data_dir else {}))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jaxmnist.sweep", STUDY, "--preset", PRESET,
                    "--workdir", str(workdir), "--no-report", *overrides], check=True, env=env)
    seconds = time.perf_counter() - t0
    stamp.write_text(json.dumps({"seconds": seconds}))
    return seconds


def _members(run_dir: Path) -> list[dict[str, Any]]:
    return json.loads((run_dir / "results.json").read_text())["members"]


def member_epochs(run_dir: Path) -> float:
    """Epochs the run's members trained (results.json's ``epochs_trained``; pruned ones stop)."""
    return float(sum(m["epochs_trained"] for m in _members(run_dir)))


def best_learning_rates(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Per optimizer: the learning rates tried (sorted) and the one chosen on validation.

    The report's own choice (:func:`jaxmnist.runs.stats.chosen`: the shared ranking over the
    last epoch's validation accuracy; a pruned point's last epoch is its rung, so it ranks with
    the points it lost to there).
    """
    from jaxmnist.runs import runview, stats

    view = runview.load(run_dir)
    rates: dict[str, list[float]] = {}
    for p in (p for p in view.points if not stats.is_final(p)):
        rates.setdefault(stats.optimizer(p), []).append(float(p.config["optim"]["learning_rate"]))
    return {f: {"rates": sorted(rates[f]), "best": float(p.config["optim"]["learning_rate"]),
                "val_acc": ranking.seed_mean(p.final("val_acc"))}
            for f, p in stats.chosen(view, tuning=True).items()}


def same_or_neighbour(rates: Sequence[float], a: float, b: float) -> bool:
    """Whether ``a`` and ``b`` are the same rate or adjacent in ``rates`` sorted (log order)."""
    ordered = sorted(rates)
    return abs(ordered.index(a) - ordered.index(b)) <= 1


def _lion(params: Sequence[Any], lr: float, b1: float, b2: float, weight_decay: float) -> Any:
    """Lion (Chen et al. 2023) as optax.lion computes it; PyTorch ships none."""
    import torch

    class Lion(torch.optim.Optimizer):
        def __init__(self) -> None:
            super().__init__(params, {"lr": lr})

        @torch.no_grad()
        def step(self) -> None:
            for group in self.param_groups:
                for p in group["params"]:
                    m = self.state[p].setdefault("m", torch.zeros_like(p))
                    update = (b1 * m + (1 - b1) * p.grad).sign_() + weight_decay * p
                    p.add_(update, alpha=-lr)
                    m.mul_(b2).add_(p.grad, alpha=1 - b2)

    return Lion()


def _torch_optimizer(params: Any, optim: Mapping[str, Any]) -> Any:
    import torch

    name, lr = optim["name"], float(optim["learning_rate"])
    hyper = {**optim.get("hyper", {}), **{k: v for k, v in optim.items()
                                          if k not in ("name", "learning_rate", "hyper")}}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(hyper.get("b1", 0.9), hyper.get("b2", 0.999)),
                                eps=hyper.get("eps", 1e-7))
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=hyper.get("momentum", 0.9))
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=hyper.get("decay", 0.9),
                                   eps=hyper.get("eps", 1e-7))
    if name == "lion":
        return _lion(params, lr, hyper.get("b1", 0.9), hyper.get("b2", 0.99),
                     hyper.get("weight_decay", 1e-3))
    raise ValueError(f"no PyTorch loop for optimizer {name!r}")


def torch_loop(run_dir: Path, data_dir: str | None) -> dict[str, Any]:
    """Trains every member of ``run_dir``'s config one after another in plain PyTorch."""
    import torch
    from torch import nn

    from jaxmnist.data import make_splits

    config = json.loads((run_dir / "config.json").read_text())
    data = {k: v for k, v in config["data"].items() if k != "source"}
    t_data = time.perf_counter()
    splits = make_splits(data, source=config["data"].get("source", "auto"), data_dir=data_dir)
    data_seconds = time.perf_counter() - t_data
    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count() or 1)

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        return (torch.from_numpy(x).permute(0, 3, 1, 2).float().div_(255.0),
                torch.from_numpy(y.astype(np.int64)))

    train, val, test = (tensors(splits.train_x, splits.train_y),
                        tensors(splits.val_x, splits.val_y), tensors(splits.test_x, splits.test_y))
    loss_fn = nn.CrossEntropyLoss()

    @torch.no_grad()
    def accuracy(net: Any, x: Any, y: Any) -> float:
        return float(sum((net(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum()
                         for i in range(0, len(x), 1000)) / len(x))

    t0 = time.perf_counter()
    members = []
    for m in config["members"]:
        cfg = m["config"]
        torch.manual_seed(int(cfg.get("seed", 0)))
        net = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))
        opt = _torch_optimizer(net.parameters(), cfg["optim"])
        batch, epochs = cfg["train"]["batch_size"], cfg["train"]["epochs"]
        history = []
        for _ in range(epochs):
            net.train()
            order = torch.randperm(len(train[0]))
            for s in range(len(order) // batch):
                idx = order[s * batch:(s + 1) * batch]
                opt.zero_grad(set_to_none=True)
                loss_fn(net(train[0][idx]), train[1][idx]).backward()
                opt.step()
            net.eval()
            history.append(accuracy(net, *val))
        members.append({"member": m["member"], "optim": cfg["optim"]["name"],
                        "learning_rate": cfg["optim"]["learning_rate"], "val_acc": history,
                        "test_acc": accuracy(net, *test)})
    return {"seconds": time.perf_counter() - t0 + data_seconds, "data_seconds": data_seconds,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "members": members}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the three phases (each resumed if finished) and writes the comparison."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="folder for the three runs (kept; resumed)")
    p.add_argument("--out", default="benchmarks/results/", help="where the result files go")
    p.add_argument("--data-dir", default=os.environ.get("JAXMNIST_DATA_DIR"))
    p.add_argument("--fresh", action="store_true", help="delete --workdir's runs first")
    p.add_argument("--skip-torch", action="store_true", help="leave the PyTorch loop out")
    args = p.parse_args(argv)
    work = Path(args.workdir)
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    pruned_s = _sweep(work / "pruned", PHASE_1, args.data_dir)
    full_s = _sweep(work / "full", FULL_OVERRIDES, args.data_dir)
    torch_file = work / "torch.json"
    if not args.skip_torch and not torch_file.exists():
        torch_file.write_text(json.dumps(torch_loop(work / "full", args.data_dir)))
    torch_res = json.loads(torch_file.read_text()) if torch_file.exists() else None

    pruned_best = best_learning_rates(work / "pruned")
    full_best = best_learning_rates(work / "full")
    families = {f: {"full_best": full_best[f]["best"], "pruned_best": pruned_best[f]["best"],
                    "full_val_acc": full_best[f]["val_acc"],
                    "pruned_val_acc": pruned_best[f]["val_acc"],
                    "same_or_neighbour": same_or_neighbour(full_best[f]["rates"],
                                                           full_best[f]["best"],
                                                           pruned_best[f]["best"])}
                for f in full_best}
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": platform.processor() or
        platform.machine(), "cores": os.cpu_count(), "load_before": load_before,
        "load_after": os.getloadavg()[0], "study": STUDY, "preset": PRESET,
        "seconds": {"pruned": pruned_s, "full": full_s,
                    "torch_loop": torch_res["seconds"] if torch_res else None},
        "member_epochs": {"pruned": member_epochs(work / "pruned"),
                          "full": member_epochs(work / "full")},
        "families": families, "torch": torch_res and {k: torch_res[k] for k in
                                                      ("torch", "threads", "data_seconds")},
    }
    me = result["member_epochs"]
    result["ratios"] = {
        "member_epochs_pruned_over_full": me["pruned"] / me["full"],
        "full_over_pruned_seconds": full_s / pruned_s,
        "torch_loop_over_pruned_seconds": (torch_res["seconds"] / pruned_s) if torch_res else None,
        "torch_loop_over_full_seconds": (torch_res["seconds"] / full_s) if torch_res else None,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"tuning-{stamp}.json").write_text(json.dumps(result, indent=2))
    (out / f"tuning-{stamp}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: Mapping[str, Any]) -> str:
    """The result as the Markdown page committed beside the JSON."""
    s, ratios = r["seconds"], r["ratios"]

    def fmt(v: Any, spec: str = ".1f") -> str:
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    lines = [f"# Tuning study `{r['study']} --preset {r['preset']}`: pruned vs full vs a "
             "PyTorch loop",
             "", f"{r['date']}, CPU ({r['machine']}, {r['cores']} cores), load "
             f"{r['load_before']:.1f} before / {r['load_after']:.1f} after. "
             "Command: `python -m benchmarks.tuning --workdir RUNS/tuning`.", "",
             "| run | wall s | member-epochs |", "|---|---:|---:|",
             f"| pruned (successive halving) | {fmt(s['pruned'])} | "
             f"{r['member_epochs']['pruned']:g} |",
             f"| full grid | {fmt(s['full'])} | {r['member_epochs']['full']:g} |",
             f"| PyTorch loop, one member after another | {fmt(s['torch_loop'])} | "
             f"{r['member_epochs']['full']:g} |", "",
             f"Member-epochs pruned / full: {ratios['member_epochs_pruned_over_full']:.3f}; "
             f"full / pruned wall: {ratios['full_over_pruned_seconds']:.2f}x; "
             "PyTorch loop / pruned wall: "
             f"{fmt(ratios['torch_loop_over_pruned_seconds'], '.2f')}x; PyTorch loop / full "
             f"wall: {fmt(ratios['torch_loop_over_full_seconds'], '.2f')}x.",
             "", "| optimizer | full grid's best lr (val acc) | pruned run's best lr (val acc) | "
             "same or neighbour |", "|---|---|---|---|"]
    for f, v in r["families"].items():
        lines.append(f"| {f} | {v['full_best']:.3g} ({fmt(v['full_val_acc'], '.4f')}) | "
                     f"{v['pruned_best']:.3g} ({fmt(v['pruned_val_acc'], '.4f')}) | "
                     f"{'yes' if v['same_or_neighbour'] else 'no'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
