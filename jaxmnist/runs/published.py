"""Every number the papers published (from /shared/STUDIES.md), keyed for the report. No jax."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jaxmnist.trees import get_dotted


@dataclass(frozen=True)
class Published:
    """One published result and the grid point it belongs to (by ``label`` or ``match``)."""

    study: str
    values: dict[str, float | str]  # metric -> number (a string where the paper gives none)
    experiment: str = "main"
    label: str | None = None  # S3's points
    match: dict[str, Any] = field(default_factory=dict)  # dotted config key -> value
    history: dict[int, dict[str, float]] = field(default_factory=dict)  # epoch -> train/val
    note: str = ""


PAPERS = {
    "s0": "seed 000, IPB University: CNN with backpropagation",
    "s1": "seed 001, Universitas Darussalam Gontor: CNN with dropout",
    "s2": "seed 002, Universitas Medan Area: SqueezeNet optimizer x learning rate",
    "s3": "seed 003, Institut Teknologi Bandung: feedforward network module",
    "s4": "seed 004, Politeknik Negeri Sriwijaya: CNN depth study (Kaggle set, 150x150x3)",
    "flax_mnist": "Flax examples/mnist README: the NNX CNN, SGD momentum 0.9 at lr 0.1, batch 128",
}


def _s2() -> list[Published]:
    # Collapsed cells: 1135/10000 = all '1', 1028 = all '7', 1009 = all '9' (STUDIES.md).
    cells = {
        "adam": (0.1135, 0.1028, 0.1135, 0.9911),
        "rmsprop": (0.1009, 0.1028, 0.1135, 0.9890),
        "sgd": (0.1135, 0.9832, 0.3523, 0.1135),
    }
    collapsed = {0.1135: "collapsed: all '1'", 0.1028: "collapsed: all '7'",
                 0.1009: "collapsed: all '9'"}
    return [Published("s2", {"test_acc": acc}, note=collapsed.get(acc, ""),
                      match={"optim.name": name, "optim.learning_rate": lr})
            for name, accs in cells.items()
            for lr, acc in zip((0.1, 0.01, 0.001, 0.0001), accs, strict=True)]


def _s3() -> list[Published]:
    rows = {
        "depth_width": {"2x32": 0.952, "2x64": 0.959, "2x128": 0.962, "1x64": 0.949,
                        "3x64": 0.962},
        "activation": {"linear": 0.917, "relu": 0.945, "sigmoid": 0.908, "tanh": 0.938,
                       "leaky_relu": 0.947},
        "learning_rate": {"0.001": 0.892, "0.01": 0.919, "0.1": 0.910},
        "init": {"zero": 0.114, "uniform": 0.914, "normal": 0.908, "xavier": "> 0.90",
                 "he": 0.919},
        "regularization": {"none": 0.9461, "L1": 0.8468, "L2": 0.9256},
        "rmsnorm": {"without": 0.9467857142857142, "with": 0.9535714285714286},
    }
    out = [Published("s3", {"test_acc": acc}, experiment=exp, label=label)
           for exp, labels in rows.items() for label, acc in labels.items()]
    sklearn = {"2x32": (0.9545714285714286, 0.9522857142857143),
               "2x64": (0.9647142857142857, 0.9601428571428572),
               "1x64": (0.9530714285714286, 0.9468571428571428),
               "3x64": (0.9666428571428571, 0.9637857142857142)}
    out += [Published("s3", {"sklearn_acc": sk, "module_acc": mod}, experiment="sklearn",
                      label=label) for label, (sk, mod) in sklearn.items()]
    return out


def _s4() -> list[Published]:
    rows = {1: (0.4941, 0.4312), 2: (0.6777, 0.6585), 3: (0.8903, 0.8843), 4: (0.9241, 0.9133)}
    macro = {4: {"precision": 0.935, "recall": 0.935, "f1": 0.935}}  # printed for depth 4 only
    return [Published("s4", {"train_acc_last": train, "val_acc_last": val, **macro.get(depth, {})},
                      match={"model.depth": depth},
                      note="Kaggle digits 150x150x3, 11,879 train / 2,964 test")
            for depth, (train, val) in rows.items()]


_S1_LOG = {  # epoch: (train acc, train loss, val acc, val loss); epochs 7-10 not printed
    1: (0.8118, 0.5837, 0.9781, 0.0712), 2: (0.9645, 0.1110, 0.9840, 0.0533),
    3: (0.9758, 0.0803, 0.9862, 0.0450), 4: (0.9812, 0.0633, 0.9891, 0.0389),
    5: (0.9832, 0.0562, 0.9898, 0.0362), 6: (0.9862, 0.0454, 0.9907, 0.0355),
}

PUBLISHED: list[Published] = [
    Published("s0", {"test_acc": 0.9909, "test_loss": 0.0371, "params": 225034}),
    Published("s1", {"params": 225034},
              history={e: dict(zip(("train_acc", "train_loss", "val_acc", "val_loss"), v,
                                   strict=True)) for e, v in _S1_LOG.items()}),
    *_s2(),
    *_s3(),
    *_s4(),
    # Flax's examples/mnist README, "default" row: 10 epochs, top-1 test accuracy 99.17%
    # (its own config: SGD lr 0.1, momentum 0.9, batch 128; full 60k train, 10k test).
    Published("flax_mnist", {"test_acc": 0.9917},
              match={"optim.name": "momentum", "optim.momentum": 0.9,
                     "optim.learning_rate": 0.1},
              note="Flax's default config"),
]


def values_equal(a: Any, b: Any) -> bool:
    """Equality for config values: numbers compare with a tolerance (0.1 vs 1e-1 spelled apart)."""
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def lookup(study: str, experiment: str, label: str | None,
           config: Mapping[str, Any]) -> Published | None:
    """Returns the published entry for one grid point of a study, or ``None``."""
    for entry in for_study(study):
        same_point = (entry.label == label if entry.label is not None else
                      all(values_equal(get_dotted(config, k, None), v)
                          for k, v in entry.match.items()))
        if entry.experiment == experiment and same_point:
            return entry
    return None


def for_study(study: str) -> list[Published]:
    """Every entry of one study."""
    return [e for e in PUBLISHED if e.study == study]


def history(study: str) -> dict[int, dict[str, float]]:
    """A study's published per-epoch training log (``{}``: none)."""
    return next((e.history for e in for_study(study) if e.history), {})
