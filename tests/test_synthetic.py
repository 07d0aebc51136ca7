"""The synthetic digit set: shape, determinism, MNIST geometry, learnability, splits."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from jaxmnist import data
from jaxmnist.data import synthetic


def test_shapes_dtypes_and_determinism():
    x, y = synthetic.make(300)
    assert x.shape == (300, 28, 28, 1) and x.dtype == np.uint8
    assert y.shape == (300,) and y.dtype == np.int32 and set(y.tolist()) == set(range(10))
    again, y_again = synthetic.make(300)
    assert again.tobytes() == x.tobytes() and y_again.tobytes() == y.tobytes()
    # A smaller set is the start of a larger one; any image can be drawn on its own.
    small, _ = synthetic.make(50)
    assert small.tobytes() == x[:50].tobytes()
    np.testing.assert_array_equal(synthetic.images("train", [299, 7]), x[[299, 7]])
    # Other seeds and the test split draw other images.
    assert synthetic.make(50, seed=1)[0].tobytes() != small.tobytes()
    assert synthetic.make(50, "test")[0].tobytes() != small.tobytes()


def test_labels_are_balanced():
    counts = np.bincount(synthetic.labels("train", np.arange(20_000)), minlength=10)
    assert counts.min() > 1_800 and counts.max() < 2_200, counts


def test_mnist_geometry():
    """Black background, ink up to 255, a <= 20x20 box, centre of mass near (14, 14)."""
    x, _ = synthetic.make(500)
    img = x[..., 0].astype(np.float64)
    border = np.concatenate([img[:, 0], img[:, -1], img[:, :, 0], img[:, :, -1]], axis=1)
    assert (border.max(1) == 0).mean() > 0.95  # a few top-heavy digits touch the edge
    assert np.percentile(img.reshape(500, -1), 50, axis=1).max() == 0  # most pixels are 0
    assert (img.reshape(500, -1).max(1) >= 190).all()
    rows, cols = np.indices((28, 28))
    mass = img.sum((1, 2))
    com_r, com_c = (rows * img).sum((1, 2)) / mass, (cols * img).sum((1, 2)) / mass
    assert abs(com_r.mean() - 14) < 0.5 and abs(com_c.mean() - 14) < 0.5
    for d in img[:50]:
        r, c = np.nonzero(d.any(1))[0], np.nonzero(d.any(0))[0]
        assert max(r[-1] - r[0], c[-1] - c[0]) + 1 <= 21


def test_learnable_but_not_by_a_lookup():
    """A linear model learns it from 2,000 images; the mean image of each class does not."""
    x, y = synthetic.make(2_000)
    tx, ty = synthetic.make(1_000, "test")
    flat = np.c_[x.reshape(len(x), -1) / 255.0, np.ones(len(x))]
    tflat = np.c_[tx.reshape(len(tx), -1) / 255.0, np.ones(len(tx))]
    # Ridge regression onto one-hot labels (closed form): a linear classifier in milliseconds.
    w = np.linalg.solve(flat.T @ flat + np.eye(flat.shape[1]), flat.T @ np.eye(10)[y])
    assert ((tflat @ w).argmax(1) == ty).mean() > 0.85
    # Nearest class mean: the classes overlap enough that templates alone are not enough.
    means = np.stack([flat[y == d].mean(0) for d in range(10)])
    nearest = np.argmin(((tflat[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == ty).mean() < 0.95


def test_make_splits_draws_the_same_images_as_the_splits_of_the_full_set():
    spec = {"split": "holdout", "val_size": 500, "seed": 3, "train_limit": 200, "test_limit": 100}
    s = data.make_splits(spec, source="synthetic")
    assert (len(s.train_x), len(s.val_x), len(s.test_x)) == (200, 500, 100)
    ids = np.arange(synthetic.SIZES["train"])
    tid, _, vid, _ = data.random_holdout(ids, ids, 500, seed=3)
    np.testing.assert_array_equal(s.train_x, synthetic.images("train", tid[:200]))
    np.testing.assert_array_equal(s.val_y, synthetic.labels("train", vid))
    np.testing.assert_array_equal(s.test_x, synthetic.make(100, "test")[0])
    merged = data.make_splits({"split": "merged", "test_fraction": 0.2, "seed": 0,
                               "train_limit": 300, "test_limit": 300}, source="synthetic")
    # Merged: train and test images mixed; labels still travel with their images.
    both = np.concatenate([merged.train_x, merged.test_x])
    labels = np.concatenate([merged.train_y, merged.test_y])
    assert len({b.tobytes() for b in both}) == 600
    for d in range(10):
        assert (labels == d).any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="positive integer"):
        synthetic.make(0)
    with pytest.raises(ValueError, match="split must be one of"):
        synthetic.make(3, "validation")
    with pytest.raises(ValueError, match="seed"):
        synthetic.make(3, seed=-1)


def test_module_imports_neither_jax_nor_tensorflow():
    code = ("import sys, jaxmnist.data.synthetic; "
            "sys.exit([m for m in ('jax', 'tensorflow') if m in sys.modules] or 0)")
    subprocess.run([sys.executable, "-c", code], check=True)
