"""Shared pytest fixtures. Keep this file small: module-specific fixtures live in their tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder with the four official MNIST files, from ``$JAXMNIST_DATA_DIR``.

    Skips the test when the variable is unset; fails when it points to a missing folder
    (a misconfiguration, not a reason to skip silently).
    """
    value = os.environ.get("JAXMNIST_DATA_DIR")
    if not value:
        pytest.skip(
            "real MNIST not available: set JAXMNIST_DATA_DIR to the folder with "
            "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        pytest.fail(f"JAXMNIST_DATA_DIR={value} is not a folder")
    return path
