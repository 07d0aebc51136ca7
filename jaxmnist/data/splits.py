"""The splits of a study (train / validation / test) and THE split rules. No jax.

Split kinds: ``none`` (the files' train / test), ``keras`` (the LAST fraction of train, S1),
``holdout`` (a seeded random holdout, S2), ``merged`` (train + test pooled and re-split, S3).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from jaxmnist.checks import is_int, is_number
from jaxmnist.data import synthetic
from jaxmnist.data.sources import IMAGE_SHAPE, dataset, load_dataset

logger = logging.getLogger(__name__)


class Splits(NamedTuple):
    """Train / validation / test arrays of one study; ``val_x``/``val_y`` may be None."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray | None
    val_y: np.ndarray | None
    test_x: np.ndarray
    test_y: np.ndarray


def _positive_int(v: Any, low: int = 1) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= low


def _check_pair(x: np.ndarray, y: np.ndarray) -> int:
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    return len(x)


_Parts = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # two parts: (x, y, x, y)


def keras_validation_split(x: np.ndarray, y: np.ndarray, fraction: float) -> _Parts:
    """``(train_x, train_y, val_x, val_y)``: the LAST ``fraction`` held out, as Keras does.

    ``split_at = floor(n * (1 - fraction))`` (S1: 60,000 at 0.2 -> 48,000 / 12,000), unshuffled.
    """
    n = _check_pair(x, y)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {fraction!r}")
    split_at = int(math.floor(n * (1.0 - fraction)))
    if split_at in (0, n):
        raise ValueError(
            f"val_fraction={fraction} of {n} examples leaves an empty train or validation set")
    return x[:split_at], y[:split_at], x[split_at:], y[split_at:]


def random_holdout(x: np.ndarray, y: np.ndarray, k: int, seed: int) -> _Parts:
    """``(train_x, train_y, val_x, val_y)``: ``k`` held out by ``default_rng(seed)`` (S2: 10,000).

    Both parts keep their relative order.
    """
    n = _check_pair(x, y)
    if not _positive_int(k) or k >= n:
        raise ValueError(f"val_size must be an integer with 0 < val_size < {n}, got {k!r}")
    rng = np.random.default_rng(seed)
    is_val = np.zeros(n, dtype=bool)
    is_val[rng.permutation(n)[:k]] = True
    return x[~is_val], y[~is_val], x[is_val], y[is_val]


def merged_split(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                 test_fraction: float, seed: int) -> _Parts:
    """``(train_x, train_y, test_x, test_y)``: pooled, shuffled, ``ceil(n * test_fraction)`` test.

    As scikit-learn's ``train_test_split`` (S3: 70,000 at 0.2 -> 56,000 / 14,000).
    """
    x = np.concatenate([train[0], test[0]])
    y = np.concatenate([train[1], test[1]])
    n = _check_pair(x, y)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")
    n_test = math.ceil(n * test_fraction)
    if n_test >= n:
        raise ValueError(f"test_fraction={test_fraction} of {n} examples leaves no training data")
    perm = np.random.default_rng(seed).permutation(n)
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def take(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` examples (all when ``n`` is None or larger); ValueError unless n >= 1."""
    _check_pair(x, y)
    if n is None:
        return x, y
    if not _positive_int(n):
        raise ValueError(f"limit must be a positive integer or None, got {n!r}")
    return x[:n], y[:n]


MNIST_TRAIN, MNIST_TEST = 60_000, 10_000  # images in the official train / test files
SPLIT_KINDS = ("none", "keras", "holdout", "merged")
SPLIT_NEEDS = {"none": (), "keras": ("val_fraction",), "holdout": ("val_size",),
               "merged": ("test_fraction",)}  # fmt: skip
"""Which parameter each split kind needs (the study schema reads it from here)."""
DATA_DEFAULTS: dict[str, Any] = {
    "name": "mnist", "source": "auto", "val_fraction": None, "val_size": None,
    "test_fraction": None, "seed": None, "train_limit": None, "val_limit": None,
    "test_limit": None,
}  # fmt: skip
"""Every ``data`` key but ``split``, with its default (the study schema reads them here)."""
_SPEC_KEYS = set(DATA_DEFAULTS) - {"source"} | {"split"}  # make_splits's (source: an argument)


def split_problems(spec: Mapping[str, Any],
                   train_size: int | None = MNIST_TRAIN) -> list[tuple[str, str]]:
    """``(key, message)`` for every problem of a data spec's split (THE split rules).

    ``train_size`` bounds ``val_size``; None checks only which parameters are given.
    """
    kind = spec.get("split")
    needs = SPLIT_NEEDS[kind]
    found = []
    for key in ("val_fraction", "val_size", "test_fraction"):
        value = spec.get(key)
        if key not in needs:
            if value is not None:
                found.append((key, f"split {kind!r} does not use it (set it to None); {kind!r} "
                                   f"needs {list(needs) or 'no parameter'}"))
        elif train_size is None:
            if value is None:
                found.append((key, f"split {kind!r} needs spec[{key!r}]"))
        elif key == "val_size":
            if not (is_int(value) and 0 < value < train_size):
                found.append((key, f"split {kind!r} needs an integer in [1, {train_size - 1}], "
                                   f"got {value!r}"))
        elif not (is_number(value) and 0 < value < 1):
            found.append((key, f"split {kind!r} needs a number in (0, 1), got {value!r}"))
    if kind == "none" and spec.get("val_limit") is not None:
        found.append(("val_limit", "split 'none' has no validation set (set it to None)"))
    return found


def expected_sizes(data: Mapping[str, Any]) -> tuple[int, int, int]:
    """The (train, val, test) sizes :func:`make_splits` gives for a spec, without data."""
    split = data.get("split", "none")
    train, val, test = MNIST_TRAIN, 0, MNIST_TEST
    if split == "keras":
        train = int(math.floor(MNIST_TRAIN * (1.0 - float(data["val_fraction"]))))
        val = MNIST_TRAIN - train
    elif split == "holdout":
        val = int(data["val_size"])
        train = MNIST_TRAIN - val
    elif split == "merged":
        total = MNIST_TRAIN + MNIST_TEST
        test = int(math.ceil(total * float(data["test_fraction"])))
        train = total - test
    return tuple(min(n, int(data[f"{part}_limit"])) if data.get(f"{part}_limit") else n
                 for part, n in (("train", train), ("val", val), ("test", test)))


def make_splits(spec: Mapping[str, Any], *, source: str = "auto",
                data_dir: str | os.PathLike[str] | None = None) -> Splits:
    """A study's :class:`Splits` from its data spec, deterministically (keys: docs/data.md).

    ValueError for a bad spec, DataError when the data cannot be loaded.
    """
    if unknown := set(spec) - _SPEC_KEYS:
        raise ValueError(
            f"unknown split spec key(s) {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}")
    kind = spec.get("split", None)
    if kind not in SPLIT_KINDS:
        raise ValueError(f"spec['split'] must be one of {SPLIT_KINDS}, got {kind!r}")
    if problems := split_problems(spec, train_size=None):
        raise ValueError("; ".join(f"spec[{key!r}]: {msg}" for key, msg in problems))
    seed = 0 if spec.get("seed") is None else spec["seed"]
    if not _positive_int(seed, 0):
        raise ValueError(f"spec['seed'] must be a non-negative integer, got {seed!r}")
    for key in ("train_limit", "val_limit", "test_limit"):
        limit = spec.get(key)
        if limit is not None and not _positive_int(limit):
            raise ValueError(f"spec[{key!r}] must be a positive integer or None, got {limit!r}")

    name = spec.get("name") or "mnist"
    if source == "synthetic":
        # Split image ids (train 0.., test -1, -2, ...); draw only the images kept.
        dataset(name)
        train_ids = np.arange(synthetic.SIZES["train"])
        test_ids = -1 - np.arange(synthetic.SIZES["test"])
        train = (train_ids, synthetic.labels("train", train_ids))
        test = (test_ids, synthetic.labels("test", -1 - test_ids))
    else:
        train = load_dataset("train", source=source, data_dir=data_dir, dataset=name)
        test = load_dataset("test", source=source, data_dir=data_dir, dataset=name)
    val: tuple[np.ndarray, np.ndarray] | tuple[None, None] = (None, None)
    if kind == "keras":
        parts = keras_validation_split(*train, float(spec["val_fraction"]))
        train, val = parts[:2], parts[2:]
    elif kind == "holdout":
        parts = random_holdout(*train, spec["val_size"], seed)
        train, val = parts[:2], parts[2:]
    elif kind == "merged":
        parts = merged_split(train, test, float(spec["test_fraction"]), seed)
        train, test = parts[:2], parts[2:]

    arrays = []
    for part, (x, y) in (("train", train), ("val", val), ("test", test)):
        if x is not None:
            x, y = take(x, y, spec.get(f"{part}_limit"))
            x = _draw(x) if source == "synthetic" else x
        arrays += [x, y]
    return Splits(*arrays)


def _draw(ids: np.ndarray) -> np.ndarray:
    """Synthetic images for split ids (train ids >= 0, test ids -1, -2, ...), in id order."""
    out = np.empty((len(ids), *IMAGE_SHAPE), np.uint8)
    for split, mask, index in (("train", ids >= 0, ids), ("test", ids < 0, -1 - ids)):
        wanted = index[mask]
        if len(wanted) > synthetic.SIZES[split] // 4:  # most of it: draw it all, once
            out[mask] = synthetic.full_split(split)[0][wanted]
        else:
            out[mask] = synthetic.images(split, wanted)
    return out
