"""Tests of jaxmnist.data on the IDX files and broken copies of them.

The loader's checks run on the real MNIST files when ``$JAXMNIST_DATA_DIR`` is set, else on
small IDX files written from the synthetic digits (``idx_dir``); only tests of MNIST's own
content (label counts, official checksums, TFDS equality) need the real files.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import datasource
import numpy as np
import pytest

from jaxmnist import data
from jaxmnist.data import DataError, sources, synthetic
from jaxmnist.data import cli as data_cli

# Official label counts, 0..9 (STUDIES.md / SOURCE.md), typed here rather than imported from the
# module under test.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    """Each test sets JAXMNIST_* itself: the developer's environment must not leak in."""
    monkeypatch.delenv("JAXMNIST_DATA_DIR", raising=False)
    monkeypatch.delenv("JAXMNIST_TFDS_DIR", raising=False)
    monkeypatch.delenv("JAXMNIST_FASHION_MNIST_DIR", raising=False)
    monkeypatch.delenv("JAXMNIST_KMNIST_DIR", raising=False)


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return {s: data.load_dataset(s, source="idx", data_dir=mnist_dir) for s in ("train", "test")}


@pytest.fixture
def cheap_synthetic(monkeypatch):
    """Without MNIST, split arithmetic runs on stand-in images that encode their id (fast)."""
    if datasource.MNIST_DIR:
        return

    def stand_in(split, index, seed=0, **_):
        index = np.asarray(index, np.int64) + (0 if split == "train" else 1 << 20)
        x = np.zeros((len(index), 28, 28, 1), np.uint8)
        for byte in range(3):
            x[:, 0, byte, 0] = (index >> (8 * byte)) & 0xFF
        return x

    def full(split, seed=0):
        n = synthetic.SIZES[split]
        return stand_in(split, np.arange(n)), synthetic.labels(split, np.arange(n))

    monkeypatch.setattr(synthetic, "images", stand_in)
    monkeypatch.setattr(synthetic, "full_split", full)


def _raw(mnist_dir: Path, split: str, kind: str) -> bytes:
    return gzip.decompress((mnist_dir / f"{NAMES[split, kind]}.gz").read_bytes())


def _test_dir(
    tmp_path: Path, mnist_dir: Path, *, images: bytes | None = None, labels: bytes | None = None
) -> Path:
    """A folder with the test split: the official .gz files unless raw bytes are given."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for kind, content in (("images", images), ("labels", labels)):
        name = NAMES["test", kind]
        if content is None:
            shutil.copy(mnist_dir / f"{name}.gz", folder / f"{name}.gz")
        else:
            (folder / name).write_bytes(content)
    return folder


# ---------------------------------------------------------------- the real data


def test_module_imports_neither_jax_nor_tensorflow():
    code = (
        "import sys, jaxmnist.data; "
        "bad = [m for m in ('jax', 'tensorflow', 'tensorflow_datasets') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.e2e  # needs the real MNIST files
def test_idx_shapes_dtypes_and_label_counts(mnist):
    for split, n, counts in (("train", 60000, TRAIN_COUNTS), ("test", 10000, TEST_COUNTS)):
        x, y = mnist[split]
        assert x.shape == (n, 28, 28, 1) and x.dtype == np.uint8, split
        assert y.shape == (n,) and y.dtype == np.int32, split
        assert np.bincount(y, minlength=10).tolist() == counts, split
        assert x.max() == 255 and x.min() == 0, split


def test_auto_uses_idx_from_env_and_repeated_loads_are_cached(idx_dir, monkeypatch):
    first, _ = data.load_dataset("train", source="idx", data_dir=idx_dir)
    monkeypatch.setenv("JAXMNIST_DATA_DIR", str(idx_dir))
    t0 = time.perf_counter()
    x, y = data.load_dataset("train")  # auto -> IDX via the env var
    assert time.perf_counter() - t0 < 1.0  # decoded already by the first load
    np.testing.assert_array_equal(x, first)
    x[0] = 7  # callers get their own copy: the cache must not change
    again, _ = data.load_dataset("train")
    np.testing.assert_array_equal(again[0], first[0])


@pytest.fixture(scope="module")
def tfds_arrays(mnist_dir, tmp_path_factory):
    """Prepare TFDS mnist from the four .gz files into a fresh dir, with the network cut off."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("tensorflow_datasets")
    tfds_dir = tmp_path_factory.mktemp("tfds")

    def no_network(*args, **kwargs):
        raise OSError("network access attempted during offline TFDS preparation")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", no_network)
        mp.setattr(socket, "getaddrinfo", no_network)
        t0 = time.perf_counter()
        arrays = {
            s: data.load_dataset(s, source="tfds", data_dir=mnist_dir, tfds_dir=tfds_dir)
            for s in ("train", "test")
        }
        print(f"\nTFDS import + offline prepare + read: {time.perf_counter() - t0:.1f} s")
    assert (tfds_dir / "mnist").is_dir()
    return arrays


@pytest.mark.e2e  # needs the real MNIST files
def test_tfds_arrays_equal_idx_arrays(tfds_arrays, mnist):
    for split in ("train", "test"):
        tx, ty = tfds_arrays[split]
        x, y = mnist[split]
        assert tx.dtype == x.dtype and ty.dtype == y.dtype, split
        assert tx.shape == x.shape and ty.shape == y.shape, split
        assert tx.tobytes() == x.tobytes(), split  # byte-identical, in the IDX files' order
        assert ty.tobytes() == y.tobytes(), split


@pytest.mark.e2e  # needs the real MNIST files
def test_cli_check_prints_official_histograms(mnist_dir, capsys):
    assert data_cli.main(["check", str(mnist_dir)]) == 0
    out = capsys.readouterr().out
    assert str(TRAIN_COUNTS) in out and str(TEST_COUNTS) in out
    assert "DIFFERS" not in out


def test_cli_download_from_a_mirror_url(idx_dir, tmp_path):
    target = tmp_path / "fetched"
    assert data_cli.main(["download", str(target), "--base-url", idx_dir.as_uri()]) == 0
    for name in data.OFFICIAL_FILES:
        assert (target / name).read_bytes() == (idx_dir / name).read_bytes()


def test_download_rejects_a_file_with_the_wrong_checksum(idx_dir, tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(idx_dir, mirror)
    (mirror / "t10k-labels-idx1-ubyte.gz").chmod(0o644)
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(DataError, match="has md5 .* the official t10k-labels"):
        data.download(tmp_path / "out", base_url=mirror.as_uri())
    assert not list((tmp_path / "out").glob("t10k-labels*"))


# ---------------------------------------------------------------- splits


@pytest.fixture
def toy():
    x = np.arange(1000, dtype=np.int64).reshape(1000, 1)  # value == original index
    return x, x[:, 0] % 10


def test_keras_split_is_the_last_fraction_unshuffled():
    x = np.arange(60000).reshape(60000, 1)  # value == original index
    y = x[:, 0] % 10
    tx, ty, vx, vy = data.keras_validation_split(x, y, 0.2)
    assert (len(tx), len(vx)) == (48000, 12000)
    assert vx.tobytes() == x[48000:].tobytes() and vy.tobytes() == y[48000:].tobytes()
    assert tx.tobytes() == x[:48000].tobytes()


def test_keras_split_index_arithmetic(toy):
    x, y = toy
    # Keras: split_at = floor(n * (1 - fraction)); 1000 * 0.7 = 700.0000000000001 -> 700.
    assert len(data.keras_validation_split(x, y, 0.3)[0]) == 700
    assert len(data.keras_validation_split(x[:7], y[:7], 0.5)[0]) == 3
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        data.keras_validation_split(x, y, 1.0)
    with pytest.raises(ValueError, match="empty"):
        data.keras_validation_split(x[:1], y[:1], 0.5)  # floor(0.5) = 0 -> no training data


def test_random_holdout_is_a_seeded_partition(toy):
    x, y = toy
    tx, ty, vx, vy = data.random_holdout(x, y, 100, seed=3)
    assert (len(tx), len(vx)) == (900, 100)
    assert sorted(np.concatenate([tx[:, 0], vx[:, 0]]).tolist()) == list(range(1000))
    np.testing.assert_array_equal(ty, tx[:, 0] % 10)  # labels travel with their images
    again = data.random_holdout(x, y, 100, seed=3)
    np.testing.assert_array_equal(again[2], vx)
    assert not np.array_equal(data.random_holdout(x, y, 100, seed=4)[2], vx)
    for k in (0, 1000, 2.5):
        with pytest.raises(ValueError, match="val_size"):
            data.random_holdout(x, y, k, seed=0)


def test_merged_split_sizes_and_determinism(toy):
    x, y = toy
    train, test = (x[:600], y[:600]), (x[600:], y[600:])
    a = data.merged_split(train, test, 0.2, seed=1)
    assert (len(a[0]), len(a[2])) == (800, 200)
    assert sorted(np.concatenate([a[0][:, 0], a[2][:, 0]]).tolist()) == list(range(1000))
    np.testing.assert_array_equal(data.merged_split(train, test, 0.2, seed=1)[2], a[2])
    assert not np.array_equal(data.merged_split(train, test, 0.2, seed=2)[2], a[2])


def test_take(toy):
    x, y = toy
    assert len(data.take(x, y, 10)[0]) == 10
    assert len(data.take(x, y, None)[0]) == 1000
    assert len(data.take(x, y, 5000)[0]) == 1000
    with pytest.raises(ValueError, match="positive integer"):
        data.take(x, y, 0)


@pytest.mark.parametrize(
    "spec,sizes",
    [
        ({"split": "none"}, (60000, None, 10000)),
        ({"split": "keras", "val_fraction": 0.2}, (48000, 12000, 10000)),
        ({"split": "holdout", "val_size": 10000, "seed": 0}, (50000, 10000, 10000)),
        ({"split": "merged", "test_fraction": 0.2, "seed": 0}, (56000, None, 14000)),
        (
            {
                "split": "keras",
                "val_fraction": 0.2,
                "train_limit": 512,
                "val_limit": 64,
                "test_limit": 128,
            },
            (512, 64, 128),
        ),
    ],
)
def test_make_splits_sizes(cheap_synthetic, spec, sizes):
    s = data.make_splits(spec, source=datasource.SOURCE, data_dir=datasource.MNIST_DIR)
    got = (len(s.train_x), None if s.val_x is None else len(s.val_x), len(s.test_x))
    assert got == sizes
    assert len(s.train_y) == sizes[0] and len(s.test_y) == sizes[2]
    assert s.train_x.dtype == np.uint8 and s.train_y.dtype == np.int32


def test_make_splits_is_deterministic_per_seed(cheap_synthetic):
    spec = {"split": "holdout", "val_size": 10000, "seed": 5}
    where = {"source": datasource.SOURCE, "data_dir": datasource.MNIST_DIR}
    a = data.make_splits(spec, **where)
    b = data.make_splits(spec, **where)
    c = data.make_splits({**spec, "seed": 6}, **where)
    assert a.val_y.tobytes() == b.val_y.tobytes() and a.val_x.tobytes() == b.val_x.tobytes()
    assert a.val_x.tobytes() != c.val_x.tobytes()


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"split": "holdout", "val_size": 60000}, "0 < val_size < 60000"),
        ({"split": "keras"}, "needs spec\\['val_fraction'\\]"),
        ({"split": "keras", "val_fraction": 0.2, "val_size": 10}, "does not use"),
        ({"split": "random"}, "must be one of"),
        ({"split": "none", "valsize": 3}, "unknown split spec key"),
        ({"split": "none", "train_limit": -1}, "positive integer"),
        ({"split": "merged", "test_fraction": 1.5}, "strictly between 0 and 1"),
    ],
)
def test_make_splits_rejects_bad_specs(cheap_synthetic, spec, message):
    with pytest.raises(ValueError, match=message):
        data.make_splits(spec, source=datasource.SOURCE, data_dir=datasource.MNIST_DIR)


# ---------------------------------------------------------------- broken data, clear errors


def test_uncompressed_files_load_and_match(idx_dir, tmp_path):
    folder = _test_dir(
        tmp_path,
        idx_dir,
        images=_raw(idx_dir, "test", "images"),
        labels=_raw(idx_dir, "test", "labels"),
    )
    x, y = data.load_dataset("test", source="idx", data_dir=folder)  # raw md5s verified
    gx, gy = data.load_dataset("test", source="idx", data_dir=idx_dir)
    assert x.tobytes() == gx.tobytes() and y.tobytes() == gy.tobytes()


def test_truncated_gz(idx_dir, tmp_path):
    folder = _test_dir(tmp_path, idx_dir)
    path = folder / "t10k-images-idx3-ubyte.gz"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(DataError, match="truncated or corrupt gzip") as err:
        data.load_dataset("test", source="idx", data_dir=folder)
    assert str(path) in str(err.value) and "download it again" in str(err.value)


def test_wrong_magic_number(idx_dir, tmp_path):
    raw = bytearray(_raw(idx_dir, "test", "labels"))
    raw[3] = 0x05
    folder = _test_dir(tmp_path, idx_dir, labels=bytes(raw))
    with pytest.raises(DataError, match="magic number 0x00000805, expected 0x00000801") as e:
        data.load_dataset("test", source="idx", data_dir=folder, verify_checksum=False)
    assert str(folder / "t10k-labels-idx1-ubyte") in str(e.value)


def test_swapped_files_are_named_as_such(idx_dir, tmp_path):
    folder = _test_dir(tmp_path, idx_dir, labels=_raw(idx_dir, "test", "images"))
    with pytest.raises(DataError, match="names swapped"):
        data.load_dataset("test", source="idx", data_dir=folder)


@pytest.mark.parametrize("delta,word", [(1, "truncated"), (-1, "longer than its header")])
def test_count_disagreeing_with_file_size(idx_dir, tmp_path, delta, word):
    raw = bytearray(_raw(idx_dir, "test", "labels"))
    count = int.from_bytes(raw[4:8], "big") + delta  # e.g. 10,001 or 9,999 for MNIST
    raw[4:8] = count.to_bytes(4, "big")
    folder = _test_dir(tmp_path, idx_dir, labels=bytes(raw))
    with pytest.raises(DataError, match=f"{word}.*declares {count:,} labels"):
        data.load_dataset("test", source="idx", data_dir=folder, verify_checksum=False)


def test_missing_file(idx_dir, tmp_path):
    folder = _test_dir(tmp_path, idx_dir)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    for source in ("idx", "auto"):  # auto must not wander off to TFDS with a half-filled folder
        with pytest.raises(DataError, match="Missing MNIST file .*t10k-labels-idx1") as e:
            data.load_dataset("test", source=source, data_dir=folder)
        assert "JAXMNIST_DATA_DIR" in str(e.value)


def test_checksum_mismatch_and_opt_out(idx_dir, tmp_path):
    raw = bytearray(_raw(idx_dir, "test", "labels"))
    raw[8] = (raw[8] + 1) % 10  # a different but well-formed label
    folder = _test_dir(tmp_path, idx_dir, labels=bytes(raw))
    with pytest.raises(DataError, match="fails the checksum.*verify_checksum=False") as e:
        data.load_dataset("test", source="idx", data_dir=folder)
    assert hashlib.md5(raw).hexdigest() in str(e.value)
    _, y = data.load_dataset("test", source="idx", data_dir=folder, verify_checksum=False)
    assert y[0] == raw[8]


def test_a_file_replaced_on_disk_is_read_again(idx_dir, tmp_path):
    folder = _test_dir(tmp_path, idx_dir, labels=_raw(idx_dir, "test", "labels"))
    data.load_dataset("test", source="idx", data_dir=folder)
    path = folder / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-10])  # new size -> the cache entry no longer applies
    with pytest.raises(DataError, match="truncated"):
        data.load_dataset("test", source="idx", data_dir=folder)


# ---------------------------------------------------------------- where the data comes from


def test_argument_beats_env(idx_dir, tmp_path, monkeypatch):
    raw = bytearray(_raw(idx_dir, "test", "labels"))
    raw[8] = (raw[8] + 1) % 10
    edited = _test_dir(tmp_path, idx_dir, labels=bytes(raw))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "t10k-labels-idx1-ubyte.gz").write_bytes(b"junk")
    (broken / "t10k-images-idx3-ubyte.gz").write_bytes(b"junk")

    monkeypatch.setenv("JAXMNIST_DATA_DIR", str(broken))
    for source in ("idx", "auto"):
        _, y = data.load_dataset("test", source=source, data_dir=edited, verify_checksum=False)
        assert y[0] == raw[8]  # read from the argument's folder; the env's junk never touched
    with pytest.raises(DataError, match=re.escape(str(broken))):  # no argument: the env
        data.load_dataset("test", source="idx")


def test_nothing_found_gives_one_error_listing_what_was_tried(tmp_path, monkeypatch):
    def no_tfds():
        raise DataError("source='tfds' needs TensorFlow (simulated)")

    monkeypatch.setattr(sources, "_import_tfds", no_tfds)
    monkeypatch.setenv("JAXMNIST_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as err:
        data.load_dataset("train", data_dir=tmp_path)
    message = str(err.value)
    for expected in (
        f"data_dir argument: {tmp_path} holds none of the MNIST files",
        f"$JAXMNIST_DATA_DIR: {tmp_path / 'nowhere'} does not exist",
        "\n  - TFDS: ",  # offline (tests): "not prepared ..., forbids downloading"
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz",
        "python -m jaxmnist.data download",
    ):
        assert expected in message
    monkeypatch.delenv("JAXMNIST_DATA_DIR")
    with pytest.raises(DataError, match="pass data_dir=... or set JAXMNIST_DATA_DIR"):
        data.load_dataset("test", source="idx")


def test_bad_arguments():
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_dataset("validation")
    with pytest.raises(ValueError, match="source must be one of"):
        data.load_dataset("train", source="keras")


# ---------------------------------------------------------------- other MNIST-format datasets

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_debian_fashion = pytest.mark.skipif(
    not (DEBIAN_FASHION / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="Fashion-MNIST IDX files not installed (apt-get install dataset-fashion-mnist; "
    ".ci/run does it where apt-get works)",
)


def _write_idx(folder: Path, split: str, n: int, seed: int = 0) -> None:
    """A tiny, well-formed IDX pair: n random 28x28 images and labels 0..9, gzip-compressed."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    prefix = "train" if split == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    header = (0x803).to_bytes(4, "big") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(header + images.tobytes()))
    header = (0x801).to_bytes(4, "big") + n.to_bytes(4, "big")
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(header + labels.tobytes()))


def test_datasets_are_28x28_with_ten_named_classes():
    assert set(data.DATASET_NAMES) >= {"mnist", "fashion_mnist", "kmnist"}
    for name in data.DATASET_NAMES:
        ds = data.dataset(name)
        assert len(ds.class_names) == 10 and len(ds.files) == 4
    assert data.class_names("fashion_mnist")[9] == "Ankle boot"
    assert data.class_names("mnist")[3] == "3"
    with pytest.raises(ValueError, match="valid choices: mnist, fashion_mnist, kmnist"):
        data.dataset("cifar10")


def test_small_idx_files_of_another_dataset(tmp_path):
    folder = tmp_path / "kmnist"
    _write_idx(folder, "test", 30)
    x, y = data.load_dataset("test", source="idx", data_dir=folder, dataset="kmnist",
                           verify_checksum=False)
    assert x.shape == (30, 28, 28, 1) and y.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    # With checksums on, the tiny files are refused with KMNIST's own (sha256) checksum.
    with pytest.raises(DataError, match="KMNIST file .* fails the checksum: sha256"):
        data.load_dataset("test", source="idx", data_dir=folder, dataset="kmnist")
    with pytest.raises(DataError, match="valid choices: mnist, fashion_mnist, kmnist"):
        data.load_dataset("test", source="idx", data_dir=folder, dataset="emnist")


def test_mnist_files_given_as_another_dataset_are_named(idx_dir):
    with pytest.raises(DataError) as err:
        data.load_dataset("test", source="idx", data_dir=idx_dir, dataset="fashion_mnist")
    assert "is not Fashion-MNIST's t10k-images-idx3-ubyte but MNIST's" in str(err.value)
    assert "data.name = 'mnist'" in str(err.value)


@needs_debian_fashion
def test_fashion_mnist_from_debian_files(monkeypatch, capsys):
    # Debian recompressed the .gz files: they pass by their decompressed content.
    x, y = data.load_dataset("test", source="idx", data_dir=DEBIAN_FASHION, dataset="fashion_mnist")
    assert x.shape == (10000, 28, 28, 1) and np.bincount(y).tolist() == [1000] * 10
    # auto finds the Debian folder by itself
    x2, _ = data.load_dataset("test", dataset="fashion_mnist")
    assert x2.tobytes() == x.tobytes()
    with pytest.raises(DataError, match="is not MNIST's t10k-images-idx3-ubyte but "
                                             "Fashion-MNIST's"):
        data.load_dataset("test", source="idx", data_dir=DEBIAN_FASHION)


@needs_debian_fashion
def test_cli_download_and_check_another_dataset(tmp_path, capsys, monkeypatch):
    target = tmp_path / "fashion"
    argv = ["download", str(target), "--dataset", "fashion_mnist",
            "--base-url", DEBIAN_FASHION.as_uri()]
    assert data_cli.main(argv) == 0
    assert "export JAXMNIST_FASHION_MNIST_DIR=" in capsys.readouterr().out
    assert data_cli.main(["check", str(target), "--dataset", "fashion_mnist"]) == 0
    assert "[6000, 6000, 6000" in capsys.readouterr().out
    assert data_cli.main(["check", str(target), "--dataset", "nope"]) == 2
    assert "valid choices: mnist, fashion_mnist, kmnist" in capsys.readouterr().err
    # without a folder: the download cache that source "auto" reads, ~/.cache/jaxmnist/NAME
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("XDG_CACHE_HOME", "JAXMNIST_CACHE_DIR", "JAXMNIST_FASHION_MNIST_DIR"):
        monkeypatch.delenv(var, raising=False)
    argv = ["download", "--dataset", "fashion_mnist", "--base-url", DEBIAN_FASHION.as_uri()]
    assert data_cli.main(argv) == 0
    cache = tmp_path / ".cache" / "jaxmnist" / "fashion_mnist"
    assert (cache / "t10k-labels-idx1-ubyte.gz").is_file()
    # ... or $JAXMNIST_CACHE_DIR/NAME when set, as "auto" looks there
    monkeypatch.setenv("JAXMNIST_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert data_cli.main(argv) == 0
    cache = tmp_path / "elsewhere" / "fashion_mnist"
    assert (cache / "t10k-labels-idx1-ubyte.gz").is_file()
    assert f"export JAXMNIST_FASHION_MNIST_DIR={cache}" in capsys.readouterr().out


# ---------------------------------------------------------------- first contact: the download cache


@pytest.fixture
def mirror(idx_dir):
    """The four files served over HTTP on 127.0.0.1 (no external network): yields the base URL
    and the list of paths requested."""
    import functools
    import http.server
    import threading

    requested = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requested.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(idx_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requested
    finally:
        server.shutdown()
        server.server_close()


def test_auto_downloads_into_the_cache_once_and_then_reads_it(idx_dir, mirror, tmp_path,
                                                              monkeypatch, capsys):
    url, requested = mirror
    monkeypatch.setenv("JAXMNIST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("JAXMNIST_MIRROR_URL", url)
    monkeypatch.delenv("JAXMNIST_OFFLINE")
    x, y = data.load_dataset("test")  # no data_dir, no $JAXMNIST_DATA_DIR: fetch, verify, load
    want_x, want_y = data.load_dataset("test", source="idx", data_dir=idx_dir)
    assert x.tobytes() == want_x.tobytes() and y.tobytes() == want_y.tobytes()
    cached = tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(data.OFFICIAL_FILES)
    assert len(requested) == 4 and "downloading its four files" in capsys.readouterr().err
    # Second time: read from the cache, nothing requested (the server could be gone).
    data.load_dataset("train")
    assert len(requested) == 4


def test_a_corrupt_download_is_refused_and_not_kept(idx_dir, tmp_path, monkeypatch):
    bad = tmp_path / "bad-mirror"
    shutil.copytree(idx_dir, bad)
    (bad / "t10k-images-idx3-ubyte.gz").chmod(0o644)
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"not the images"))
    monkeypatch.setenv("JAXMNIST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("JAXMNIST_MIRROR_URL", bad.as_uri() + "/")
    monkeypatch.delenv("JAXMNIST_OFFLINE")
    monkeypatch.setattr(sources, "_import_tfds", _no_tfds)
    with pytest.raises(DataError) as err:
        data.load_dataset("test")
    assert "download into" in str(err.value) and "t10k-images" in str(err.value)
    assert not list((tmp_path / "cache" / "mnist").glob("t10k-images*"))


def _no_tfds():
    raise DataError("source='tfds' needs TensorFlow (simulated)")


def test_offline_without_data_says_what_was_tried_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXMNIST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "_import_tfds", _no_tfds)
    with pytest.raises(DataError) as err:
        data.load_dataset("train")
    message = str(err.value)
    for expected in ("$JAXMNIST_DATA_DIR: not set",
                     f"download cache: {tmp_path / 'cache' / 'mnist'} is empty, and "
                     "$JAXMNIST_OFFLINE forbids downloading",
                     "python -m jaxmnist.data download",
                     "python -m jaxmnist.sweep smoke --synthetic"):
        assert expected in message
    assert data.cache_dir("kmnist") == tmp_path / "cache" / "kmnist"
