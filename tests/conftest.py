"""Shared pytest fixtures. Keep this file small: module-specific fixtures live in their tests.

Tests never reach the network and never read or fill the user's MNIST cache: the environment of
this process (and of every CLI it starts) is set before any test runs.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import datasource
import numpy as np
import pytest

from jaxmnist import data
from jaxmnist.data import synthetic

NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


# XLA's CPU backend at LLVM -O1 for the default tier: every HLO pass (fusion, simplification,
# layout) still runs, only machine-code optimisation is lighter. The tier's programs are small
# and compiled once each, so compiling is most of its CPU time. Measured on the 2-core CPU box
# (2026-12-02, whole default tier, two workers, nothing else running): 194 s as users compile
# (-O2, JAXMNIST_TEST_FULL_OPT=1 pytest -q), 164 s at -O0 (compiles faster, runs slower;
# XLA_FLAGS=--xla_backend_optimization_level=0 pytest -q), 151 s at -O1.
# The end-to-end tier (and any run that selects e2e tests, or sets JAXMNIST_TEST_FULL_OPT=1)
# compiles exactly as users do. Set before any test starts JAX; CLIs started by tests inherit it.
# Not --xla_cpu_use_fusion_emitters=false: it cuts the tier's compile time by 40 % (126 s ->
# 93 s, 2026-12-02), but under it a BatchNorm grid member differs from its solo run by 1.4e-3
# (test_batchnorm_member_equals_the_config_trained_alone), so the tier would test another
# program than the one users run.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=1",
                      "--xla_llvm_disable_expensive_passes=true")


def pytest_configure(config):
    default_tier = (config.getoption("markexpr") or "").replace(" ", "") == "note2e"
    if default_tier and not os.environ.get("JAXMNIST_TEST_FULL_OPT"):
        # A flag the user set wins (XLA_FLAGS=--xla_backend_optimization_level=0 pytest -q).
        flags = os.environ.get("XLA_FLAGS", "").split()
        given = {f.split("=")[0] for f in flags}
        os.environ["XLA_FLAGS"] = " ".join(
            [*flags, *(f for f in FAST_COMPILE_FLAGS if f.split("=")[0] not in given)])


# The costliest files first (measured, default tier, 2026-12-02): with one file per xdist worker
# (pyproject's --dist loadfile), a long file handed out last leaves the other worker idle.
COSTLIEST_FIRST = ("test_train.py", "test_sweep.py", "test_cpu_kernels.py", "test_adapters.py",
                   "test_models.py", "test_api.py", "test_errors.py", "test_serve.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(COSTLIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept within


@pytest.fixture(scope="session", autouse=True)
def _hermetic_environment(tmp_path_factory):
    """No downloads (a test of the fetch logic serves its own files on 127.0.0.1), and an empty
    cache folder of this session's own instead of ~/.cache/jaxmnist; CLIs started by tests
    inherit both.

    Compiled programs are shared by every test of the session, and by the CLIs and workers
    they start, through JAX's persistent compilation cache in a fresh folder of this session
    (never one of an earlier session): most tests train the same few small groups, and XLA's
    compile is most of their time on a CPU. A program loaded from the cache is the one XLA
    compiled, so results are the same bits (a compile cache changes no number the tests see).
    """
    import jax

    # Under pytest-xdist every worker has its own base folder below one shared by the session:
    # the workers share one cache there (JAX writes each entry atomically).
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    cache_dir = shared / "jax-compilation-cache"
    cache_dir.mkdir(exist_ok=True)
    cache = str(cache_dir)
    settings = {"jax_compilation_cache_dir": cache,
                # Every program, however quick to compile: the tests' are small.
                "jax_persistent_cache_min_compile_time_secs": 0,
                "jax_persistent_cache_min_entry_size_bytes": 0}
    before = {name: getattr(jax.config, name) for name in settings}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXMNIST_OFFLINE", "1")
        mp.setenv("JAXMNIST_CACHE_DIR", str(tmp_path_factory.mktemp("jaxmnist-cache")))
        # One XLA:CPU device unless asked: an in-process sweep.main / jm.run would otherwise set
        # this process's XLA flags (jaxmnist.engine.hostdevices) when it happens to start JAX first.
        # tests/test_hostdevices.py and the multi-device tests set their own.
        mp.setenv("JAXMNIST_CPU_DEVICES", os.environ.get("JAXMNIST_CPU_DEVICES", "1"))
        for name, value in settings.items():
            mp.setenv(name.upper(), str(value))  # subprocesses read JAX_* at import
            jax.config.update(name, value)
        _reset_compilation_cache()
        yield
    for name, value in before.items():
        jax.config.update(name, value)
    _reset_compilation_cache()


def _reset_compilation_cache() -> None:
    """JAX decides once per process, at its first compile, whether the cache is in use; a
    compile during collection would have decided "no". Make it look at the settings again."""
    try:
        from jax._src import compilation_cache
    except ImportError:  # a JAX without it: the cache may stay off, the tests are only slower
        return
    if hasattr(compilation_cache, "reset_cache"):
        compilation_cache.reset_cache()


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


def write_idx(folder: Path, split: str, x: np.ndarray, y: np.ndarray) -> None:
    """Write images and labels as the two gzipped IDX files of ``split`` (magic, dims, bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = np.array([0x803, len(x), 28, 28], ">u4").tobytes()
    (folder / f"{NAMES[split, 'images']}.gz").write_bytes(
        gzip.compress(header + x.astype(np.uint8).tobytes(), mtime=0))
    header = np.array([0x801, len(y)], ">u4").tobytes()
    (folder / f"{NAMES[split, 'labels']}.gz").write_bytes(
        gzip.compress(header + y.astype(np.uint8).tobytes(), mtime=0))


@pytest.fixture(scope="session")
def _idx_files(tmp_path_factory) -> Path | None:
    if datasource.MNIST_DIR:
        return None
    folder = tmp_path_factory.mktemp("synthetic-idx")
    for split, n in (("train", 1000), ("test", 500)):
        write_idx(folder, split, *synthetic.make(n, split))
    return folder


@pytest.fixture
def idx_dir(_idx_files, monkeypatch) -> Path:
    """A folder with four IDX files that pass the loader's checksums: MNIST's, else synthetic.

    Without MNIST, 1,000/500 synthetic digits are written as IDX files and, for this test only,
    their sizes and md5 sums stand in for the official ones, so every check runs as on MNIST.
    """
    if _idx_files is None:
        return Path(datasource.MNIST_DIR)
    specs = data.DATASETS["mnist"].files  # the four files' specs, keyed (split, kind)
    for key, spec in list(specs.items()):
        blob = (_idx_files / spec.gz_name).read_bytes()
        raw = gzip.decompress(blob)
        count = int.from_bytes(raw[4:8], "big")
        monkeypatch.setitem(specs, key, spec._replace(
            count=count, gz_size=len(blob), gz_md5=hashlib.md5(blob).hexdigest(),
            raw_size=len(raw), raw_md5=hashlib.md5(raw).hexdigest()))
    return _idx_files
