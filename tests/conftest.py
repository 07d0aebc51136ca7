"""Shared pytest fixtures. Keep this file small: module-specific fixtures live in their tests.

Tests never reach the network and never read or fill the user's MNIST cache: the environment of
this process (and of every CLI it starts) is set before any test runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _hermetic_environment(tmp_path_factory):
    """No downloads (a test of the fetch logic serves its own files on 127.0.0.1), and an empty
    cache folder of this session's own instead of ~/.cache/jaxmnist; CLIs started by tests
    inherit both."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXMNIST_OFFLINE", "1")
        mp.setenv("JAXMNIST_CACHE_DIR", str(tmp_path_factory.mktemp("jaxmnist-cache")))
        yield


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder with the four official MNIST files, from ``$JAXMNIST_DATA_DIR``.

    Only for tests of MNIST itself (its label counts, TFDS equality, published accuracies);
    everything else runs on the synthetic digits without it (tests/datasource.py). Skips the
    test when the variable is unset; fails when it points to a missing folder (a
    misconfiguration, not a reason to skip silently).
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
