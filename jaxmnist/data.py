"""MNIST-format datasets for jaxmnist: one array layout from two sources, plus the splits.

Datasets (:data:`DATASETS`, ``data.name`` in a study): ``mnist``, ``fashion_mnist``,
``kmnist`` -- all 28x28x1 with 10 classes, published as four IDX files, each checked against
its own checksums, and in TFDS. Every loader returns ``images uint8 [N, 28, 28, 1]`` and
``labels int32 [N]`` in the order of the official IDX files (the order Keras'
``mnist.load_data()`` uses), so that S1's "last 20% of the training set" means the same images
whichever source produced them.

Sources:

* ``"idx"`` reads the four official files (``.gz`` or uncompressed) with numpy only. It checks
  the IDX structure and the official md5 sums, so a truncated or foreign file fails loudly.
* ``"tfds"`` uses the TensorFlow Datasets ``mnist`` builder. TensorFlow is imported lazily, only
  here: the rest of jaxmnist never needs it. When the four ``.gz`` files are on disk TFDS
  prepares the dataset from them offline; otherwise TFDS downloads them itself.
* ``"auto"`` uses the IDX files when it finds them (argument, then ``JAXMNIST_DATA_DIR``) and
  TFDS otherwise.
* ``"synthetic"`` draws MNIST-shaped digits (``jaxmnist.synthetic``): no files, no network;
  for tests, CI and first runs. Same sizes and splits as MNIST, different (easier) images.

This module must not import jax or tensorflow at import time (see docs/architecture.md).

Command line::

    python -m jaxmnist.data check DIR [--dataset NAME]     # verify the files, label histograms
    python -m jaxmnist.data download [DIR] [--dataset NAME]  # fetch the four official .gz files
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import math
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxmnist import synthetic
from jaxmnist.checks import is_int, is_number

logger = logging.getLogger(__name__)

ENV_DATA_DIR = "JAXMNIST_DATA_DIR"
ENV_TFDS_DIR = "JAXMNIST_TFDS_DIR"
# The download cache: `auto` fetches a dataset's four files into <cache>/<dataset> on first use.
ENV_CACHE_DIR = "JAXMNIST_CACHE_DIR"  # default $XDG_CACHE_HOME/jaxmnist or ~/.cache/jaxmnist
ENV_OFFLINE = "JAXMNIST_OFFLINE"  # "1": never download (tests, air-gapped machines)
ENV_MIRROR = "JAXMNIST_MIRROR_URL"  # another base URL for that download (a mirror, a test server)
# The mirror TFDS itself downloads from (Yann LeCun's site no longer serves the files reliably).
MIRROR_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"

SPLITS = ("train", "test")
SOURCES = ("auto", "tfds", "idx", "synthetic")
IMAGE_SHAPE = (28, 28, 1)
_IMAGES_MAGIC = 0x00000803  # IDX: 0x00 0x00, dtype 0x08 (ubyte), 3 dimensions
_LABELS_MAGIC = 0x00000801  # IDX: 0x00 0x00, dtype 0x08 (ubyte), 1 dimension
_GZIP_MAGIC = b"\x1f\x8b"


class MnistDataError(ValueError):
    """A dataset could not be found, read or verified; the message says what to do about it."""


DataError = MnistDataError


class _IdxSpec(NamedTuple):
    """One of a dataset's four official files, with its published size and digests."""

    name: str  # official name without ".gz"
    split: str
    kind: str  # "images" | "labels"
    count: int
    gz_size: int
    gz_md5: str  # digest of the published .gz (md5 for MNIST, sha256 for the others)
    raw_size: int
    raw_md5: str | None  # digest of the uncompressed IDX bytes; None when none is published

    @property
    def gz_name(self) -> str:
        return self.name + ".gz"

    @property
    def candidates(self) -> tuple[str, ...]:
        # Official names first; then the dotted spelling some mirrors and Kaggle use
        # ("train-images.idx3-ubyte").
        dotted = self.name.replace("-idx", ".idx")
        return (self.gz_name, self.name, dotted, dotted + ".gz")


_NAMES = {
    ("train", "images"): ("train-images-idx3-ubyte", 60000, 47040016),
    ("train", "labels"): ("train-labels-idx1-ubyte", 60000, 60008),
    ("test", "images"): ("t10k-images-idx3-ubyte", 10000, 7840016),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", 10000, 10008),
}


def _files(digests: dict[tuple[str, str], tuple[int, str, str | None]]) -> dict:
    out = {}
    for key, (gz_size, gz, raw) in digests.items():
        name, count, raw_size = _NAMES[key]
        out[key] = _IdxSpec(name, key[0], key[1], count, gz_size, gz, raw_size, raw)
    return out


class Dataset(NamedTuple):
    """A 28x28x1, 10-class dataset published as four IDX files (and in TFDS).

    Attributes:
        name: ``data.name`` in a study.
        title: how messages and figures name it.
        tfds_name: the TFDS builder.
        url: where the four ``.gz`` files are published (``download``).
        algo: digest of the checksums in ``files`` (``md5`` or ``sha256``).
        files: the four files' published sizes and digests.
        class_names: label 0..9 -> name, for tables and figures.
        label_counts: per split, the official label histogram (``check``), when known.
        env: the environment variable naming its IDX folder.
        system_dirs: folders where an OS package installs the files.
    """

    name: str
    title: str
    tfds_name: str
    url: str
    algo: str
    files: dict[tuple[str, str], _IdxSpec]
    class_names: tuple[str, ...]
    label_counts: dict[str, tuple[int, ...]] | None
    env: str
    system_dirs: tuple[str, ...] = ()


# Checksums: MNIST's md5 sums are the ones published with the files (SOURCE.md). For
# Fashion-MNIST and KMNIST the .gz sha256 sums and sizes are TFDS's registered checksums
# (tensorflow_datasets/url_checksums/{fashion_mnist,kmnist}.txt). Fashion-MNIST's raw (decompressed)
# sha256 sums are those of the files in Debian's dataset-fashion-mnist package
# (0.0~git20200523.55506a9-1), which ships the upstream IDX content recompressed: so a
# recompressed copy is recognised by its content. KMNIST publishes no raw checksums.
DATASETS: dict[str, Dataset] = {
    "mnist": Dataset(
        "mnist", "MNIST", "mnist", MIRROR_URL, "md5",
        _files({
            ("train", "images"): (9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                                  "6bbc9ace898e44ae57da46a324031adb"),
            ("train", "labels"): (28881, "d53e105ee54ea40749a09fcbcd1e9432",
                                  "a25bea736e30d166cdddb491f175f624"),
            ("test", "images"): (1648877, "9fb629c4189551a2d022fa330f9573f3",
                                 "2646ac647ad5339dbf082846283269ea"),
            ("test", "labels"): (4542, "ec29112dd5afa0611ce80d1b7f02629c",
                                 "27ae3e4e09519cfbb04c329615203637"),
        }),
        tuple(str(d) for d in range(10)),
        {"train": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
         "test": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)},
        ENV_DATA_DIR,
    ),
    "fashion_mnist": Dataset(
        "fashion_mnist", "Fashion-MNIST", "fashion_mnist",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", "sha256",
        _files({
            ("train", "images"): (
                26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
            ("train", "labels"): (
                29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
            ("test", "images"): (
                4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
            ("test", "labels"): (
                5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        }),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"),
        {"train": (6000,) * 10, "test": (1000,) * 10},
        "JAXMNIST_FASHION_MNIST_DIR",
        ("/usr/share/datasets/fashion-mnist",),  # apt-get install dataset-fashion-mnist
    ),
    "kmnist": Dataset(
        "kmnist", "KMNIST", "kmnist", "http://codh.rois.ac.jp/kmnist/dataset/kmnist/", "sha256",
        _files({
            ("train", "images"): (
                18165135, "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4", None),
            ("train", "labels"): (
                29497, "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17", None),
            ("test", "images"): (
                3041136, "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5", None),
            ("test", "labels"): (
                5120, "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c", None),
        }),
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        None,
        "JAXMNIST_KMNIST_DIR",
    ),
}  # fmt: skip
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
"""Valid ``data.name`` values."""

_SPECS = DATASETS["mnist"].files
OFFICIAL_FILES = tuple(s.gz_name for s in _SPECS.values())
OFFICIAL_LABEL_COUNTS = DATASETS["mnist"].label_counts


def dataset(name: str) -> Dataset:
    """The :class:`Dataset` called ``name``.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    if name not in DATASETS:
        raise ValueError(f"data.name: {name!r} is not a known dataset; valid choices: "
                         f"{', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_or_error(name: str) -> Dataset:
    """Like :func:`dataset`, raising :class:`MnistDataError` (a data problem) for unknown names."""
    try:
        return dataset(name)
    except ValueError as err:
        raise MnistDataError(str(err)) from None


def class_names(name: str = "mnist") -> tuple[str, ...]:
    """Label 0..9 -> class name of dataset ``name`` (digits for MNIST)."""
    return dataset(name).class_names


def _how_to_fix(ds: Dataset) -> str:
    files = ", ".join(s.gz_name for s in ds.files.values())
    apt = ("\nOn Debian/Ubuntu: apt-get install dataset-fashion-mnist (files in "
           f"{ds.system_dirs[0]})." if ds.system_dirs else "")
    flag = "" if ds.name == "mnist" else f" --dataset {ds.name}"
    return (
        "How to fix: put the four official files\n"
        f"    {files}\n"
        f"in one folder and set {ds.env}=/that/folder (or pass data_dir=...). To fetch them "
        "(no TensorFlow needed):\n"
        f"    python -m jaxmnist.data download{flag} /that/folder\n"
        'Or let TFDS download them (needs TensorFlow: pip install -e ".[tf]" and network access).'
        + apt
        + "\nNo data at hand? Try the whole pipeline on synthetic digits (no files, no network):"
        "\n    python -m jaxmnist.sweep smoke --synthetic"
    )


_HOW_TO_FIX = _how_to_fix(DATASETS["mnist"])


# --------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------

# (resolved path, mtime_ns, size) -> (read-only array, checksum verified?). Re-reading the
# train images costs a decompress of 47 MB; the sweep and the tests load the same files many
# times in one process, so keep the decoded result until the file changes on disk.
_CACHE: dict[tuple[str, int, int, str], tuple[np.ndarray, bool]] = {}


def clear_cache() -> None:
    """Forget decoded IDX files (they are otherwise kept until the file changes on disk)."""
    _CACHE.clear()


def _find_file(directory: Path, spec: _IdxSpec) -> Path | None:
    for name in spec.candidates:
        path = directory / name
        if path.is_file():
            return path
    return None


def _dir_state(directory: Path, split: str, ds: Dataset = DATASETS["mnist"]) -> str:
    """Return "complete", "partial", "empty" (none of the files) or "absent" (no such folder)."""
    if not directory.is_dir():
        return "absent"
    found = [_find_file(directory, ds.files[split, kind]) for kind in ("images", "labels")]
    if all(found):
        return "complete"
    if any(_find_file(directory, s) for s in ds.files.values()):
        return "partial"
    return "empty"


def _locate(directory: Path, split: str, ds: Dataset = DATASETS["mnist"]) -> tuple[Path, Path]:
    """Return the (images, labels) paths of ``split`` in ``directory`` or raise MnistDataError."""
    if not directory.is_dir():
        raise MnistDataError(f"{ds.title} folder {directory} does not exist.\n{_how_to_fix(ds)}")
    paths = []
    for kind in ("images", "labels"):
        spec = ds.files[split, kind]
        path = _find_file(directory, spec)
        if path is None:
            raise MnistDataError(
                f"Missing {ds.title} file {directory / spec.gz_name} (the {split} {kind}; "
                f"looked for {', '.join(spec.candidates)}).\n{_how_to_fix(ds)}"
            )
        paths.append(path)
    return paths[0], paths[1]


def _decode_idx(
    path: Path, spec: _IdxSpec, verify_checksum: bool, ds: Dataset = DATASETS["mnist"]
) -> np.ndarray:
    """Read, decompress, structurally check and (optionally) checksum one IDX file."""
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise MnistDataError(f"Cannot read {ds.title} file {path}: {e}") from e

    # Decide by content, not by name: a gzip stream starts with 1f 8b, an IDX file with 00 00.
    compressed = blob[:2] == _GZIP_MAGIC
    if compressed:
        try:
            raw = gzip.decompress(blob)
        except (EOFError, OSError, zlib.error) as e:
            raise MnistDataError(
                f"{ds.title} file {path} is a truncated or corrupt gzip file ({e}; {len(blob):,} "
                f"bytes, "
                f"the official {spec.gz_name} has {spec.gz_size:,}). Delete it and download it "
                f"again.\n{_how_to_fix(ds)}"
            ) from e
    elif path.suffix == ".gz":
        raise MnistDataError(
            f"{ds.title} file {path} is named .gz but is not gzip-compressed. Rename it to "
            f"{spec.name} if it is the uncompressed IDX file, or download it again."
        )
    else:
        raw = blob

    # Structure first, checksum second: "truncated" or "wrong magic" says more than "md5 differs".
    magic_expected = _IMAGES_MAGIC if spec.kind == "images" else _LABELS_MAGIC
    header_len = 16 if spec.kind == "images" else 8
    if len(raw) < header_len:
        raise MnistDataError(
            f"{ds.title} file {path} is too short to be an IDX {spec.kind} file ({len(raw)} bytes "
            f"after decompression). Download {spec.gz_name} again."
        )
    dims = np.frombuffer(raw, dtype=">u4", count=header_len // 4)
    magic = int(dims[0])
    if magic != magic_expected:
        other = {_IMAGES_MAGIC: "an images file", _LABELS_MAGIC: "a labels file"}.get(magic)
        hint = f" It looks like {other}: are the file names swapped?" if other else ""
        raise MnistDataError(
            f"{ds.title} file {path} has IDX magic number 0x{magic:08x}, expected "
            f"0x{magic_expected:08x} ({spec.kind}).{hint} It is not the {spec.split} {spec.kind} "
            f"file {spec.gz_name}; replace it with the official one."
        )
    count = int(dims[1])
    if spec.kind == "images" and tuple(int(d) for d in dims[2:]) != IMAGE_SHAPE[:2]:
        raise MnistDataError(
            f"{ds.title} file {path} declares images of {int(dims[2])}x{int(dims[3])} pixels, "
            f"expected 28x28. It is not an MNIST-format images file; replace it with "
            f"{spec.gz_name}."
        )
    item = 28 * 28 if spec.kind == "images" else 1
    expected_len = header_len + count * item
    if len(raw) != expected_len:
        what = "truncated" if len(raw) < expected_len else "longer than its header says"
        raise MnistDataError(
            f"{ds.title} file {path} is {what}: its header declares {count:,} {spec.kind} "
            f"({expected_len:,} bytes of IDX data) but it holds {len(raw):,} bytes. Delete it and "
            f"download {spec.gz_name} again."
        )

    if verify_checksum:
        _verify(path, spec, ds, blob, raw, compressed)

    data = np.frombuffer(raw, dtype=np.uint8, offset=header_len)
    if spec.kind == "images":
        return data.reshape(count, *IMAGE_SHAPE)
    if count and int(data.max()) > 9:
        raise MnistDataError(
            f"{ds.title} file {path} holds label {int(data.max())}; labels are 0..9. Replace it "
            f"with the official {spec.gz_name}."
        )
    return data.astype(np.int32)


def _digest(algo: str, blob: bytes) -> str:
    return hashlib.new(algo, blob).hexdigest()


def _identify(blob: bytes, raw: bytes) -> str | None:
    """Which dataset's official file these bytes are, if any (for a wrong-dataset message)."""
    for other in DATASETS.values():
        for sp in other.files.values():
            if _digest(other.algo, blob) == sp.gz_md5 or (
                sp.raw_md5 and _digest(other.algo, raw) == sp.raw_md5
            ):
                return f"{other.title}'s {sp.name} (data.name = {other.name!r})"
    return None


def _same_content(ds: Dataset, spec: _IdxSpec, blob: bytes) -> bool:
    """True when gzip bytes ``blob`` decompress to the official IDX content (recompressed)."""
    if spec.raw_md5 is None or blob[:2] != _GZIP_MAGIC:
        return False
    try:
        return _digest(ds.algo, gzip.decompress(blob)) == spec.raw_md5
    except (EOFError, OSError, zlib.error):
        return False


def _verify(path: Path, spec: _IdxSpec, ds: Dataset, blob: bytes, raw: bytes,
            compressed: bool) -> None:
    """Checks a file against the dataset's checksums.

    Either the published ``.gz`` bytes or the decompressed IDX bytes must match: a recompressed
    copy (Debian's, for one) has other gzip bytes but the same content.
    """
    algo = ds.algo
    if compressed and _digest(algo, blob) == spec.gz_md5:
        return
    if spec.raw_md5 is not None and _digest(algo, raw) == spec.raw_md5:
        return
    if spec.raw_md5 is None and not compressed:
        raise MnistDataError(
            f"{ds.title} file {path} is uncompressed and {ds.title} publishes no checksum for "
            f"uncompressed files; use the published {spec.gz_name}, or pass "
            "verify_checksum=False if you trust this copy."
        )
    digest = _digest(algo, blob)
    want, form = (spec.gz_md5, "gzip") if compressed else (spec.raw_md5, "uncompressed")
    other = _identify(blob, raw)
    if other:
        raise MnistDataError(
            f"{ds.title} file {path} fails the checksum: it is not {ds.title}'s {spec.name} but "
            f"{other}. Set data.name (or --dataset) to that dataset, or put {ds.title}'s files "
            "in this folder."
        )
    raise MnistDataError(
        f"{ds.title} file {path} fails the checksum: {algo} {digest}, the official {form} "
        f"{spec.name} has {algo} {want}. The file is corrupt or not the official "
        f"{ds.title}; download it again, or pass verify_checksum=False if you use a modified "
        "copy on purpose."
    )


def _read_idx(
    path: Path, spec: _IdxSpec, verify_checksum: bool, ds: Dataset = DATASETS["mnist"]
) -> np.ndarray:
    """Cached :func:`_decode_idx`; returns a fresh, writable copy each call."""
    st = path.stat()
    # The dataset is part of the key: "verified" means verified against THAT dataset's sums.
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, ds.name)
    hit = _CACHE.get(key)
    if hit is None or (verify_checksum and not hit[1]):
        array = _decode_idx(path, spec, verify_checksum, ds)
        array.flags.writeable = False
        hit = (array, verify_checksum)
        _CACHE[key] = hit
    return hit[0].copy()


def load_idx(
    directory: str | os.PathLike[str],
    split: str,
    *,
    verify_checksum: bool = True,
    dataset: str = "mnist",
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a dataset from its official IDX files in ``directory``, no TensorFlow.

    Args:
        directory: Folder holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` files,
            each either ``.gz`` (as published) or uncompressed.
        split: ``"train"`` or ``"test"``.
        verify_checksum: Compare each file with the dataset's official checksums (the ``.gz``
            as published, or the decompressed IDX bytes, so a recompressed copy passes). The IDX
            structure (magic number, dimensions, size) is always checked.
        dataset: one of :data:`DATASET_NAMES`.

    Returns:
        ``(images uint8 [N, 28, 28, 1], labels int32 [N])`` in file order.

    Raises:
        MnistDataError: A file is missing, truncated, malformed or fails its checksum.
    """
    _check_choice("split", split, SPLITS)
    ds = dataset_or_error(dataset)
    images_path, labels_path = _locate(Path(directory).expanduser(), split, ds)
    images = _read_idx(images_path, ds.files[split, "images"], verify_checksum, ds)
    labels = _read_idx(labels_path, ds.files[split, "labels"], verify_checksum, ds)
    if len(images) != len(labels):
        raise MnistDataError(
            f"{images_path} holds {len(images):,} images but {labels_path} holds "
            f"{len(labels):,} labels; the two files do not belong together."
        )
    return images, labels


# --------------------------------------------------------------------------------------------
# TensorFlow Datasets
# --------------------------------------------------------------------------------------------


def _import_tfds() -> Any:
    """Import tensorflow_datasets (and TensorFlow) on first use, with a clear error if absent."""
    # etils >= 1.15 no longer installs the `importlib_resources` back-port that TFDS 4.9.x still
    # imports; on Python >= 3.11 the standard library module has the one attribute TFDS uses
    # (`abc.Traversable`), and etils itself aliases it the same way.
    try:
        import importlib_resources  # noqa: F401
    except ImportError:
        import importlib.resources
        import importlib.resources.abc  # noqa: F401

        sys.modules["importlib_resources"] = importlib.resources
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter quiet
    try:
        import tensorflow as tf
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise MnistDataError(
            f"source='tfds' needs TensorFlow and tensorflow-datasets ({e}). Install them with "
            "pip install -e \".[tf]\", or use the TensorFlow-free IDX loader (source='idx')."
        ) from e
    # TF must not reserve GPU memory that JAX needs: the input pipeline only runs on the CPU.
    try:
        tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError):  # devices already initialised elsewhere in the process
        pass
    return tfds


def _tfds_file_order(split: str, n: int) -> np.ndarray:
    """Return ``order`` such that TFDS record ``j`` is example ``order[j]`` of the IDX file.

    TFDS writes the examples of a split sorted by md5(salt=split name, key) (its
    ``core/hashing.py``, stable by design: changing it would reorder every dataset). The mnist
    builder's keys are the positions 0..N-1 in the IDX files, so sorting the keys by that hash
    reproduces the order TFDS stored, and its inverse restores the file order.
    """
    salted = hashlib.md5(split.encode())

    def hkey(i: int) -> int:
        h = salted.copy()
        h.update(str(i).encode())
        return int(h.hexdigest(), 16)

    return np.array(sorted(range(n), key=hkey), dtype=np.int64)


def _unreachable(url: str, timeout: float = 10.0) -> str | None:
    """Return why ``url`` cannot be reached, or None when a server answered at all."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # a server answered; let TFDS deal with the details
    except (urllib.error.URLError, OSError) as e:
        return str(getattr(e, "reason", e))
    return None


def tfds_dir_default() -> str | None:
    """Return the TFDS data dir jaxmnist uses: ``$JAXMNIST_TFDS_DIR`` or None (TFDS's default)."""
    return os.environ.get(ENV_TFDS_DIR) or None


def load_tfds(
    split: str,
    *,
    manual_dir: str | os.PathLike[str] | None = None,
    tfds_dir: str | os.PathLike[str] | None = None,
    dataset: str = "mnist",
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split through the dataset's TFDS builder, preparing it first if needed.

    Args:
        split: ``"train"`` or ``"test"``.
        dataset: one of :data:`DATASET_NAMES` (TFDS builders ``mnist``, ``fashion_mnist``,
            ``kmnist``).
        manual_dir: Folder with the four official ``.gz`` files. TFDS then prepares the
            dataset from them without any network access (its download manager takes a file
            from ``manual_dir`` when the name matches its registered checksum list). When None,
            TFDS downloads the files itself.
        tfds_dir: Where TFDS keeps prepared datasets; default ``$JAXMNIST_TFDS_DIR``, else
            TFDS's own default (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).

    Returns:
        ``(images uint8 [N, 28, 28, 1], labels int32 [N])`` in IDX file order (TFDS stores
        the examples shuffled; they are put back, see :func:`_tfds_file_order`).

    Raises:
        MnistDataError: TensorFlow is missing, or TFDS could not prepare or read the data.
    """
    _check_choice("split", split, SPLITS)
    ds = dataset_or_error(dataset)
    data_dir = str(Path(tfds_dir).expanduser()) if tfds_dir else tfds_dir_default()
    where = data_dir or "TFDS's default data dir"
    if manual_dir is None and _offline():
        # Nothing prepared and no download allowed: say so without importing TensorFlow (slow).
        prepared = Path(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")
        if not (prepared.expanduser() / ds.tfds_name).is_dir():
            raise MnistDataError(f"TFDS {ds.tfds_name} is not prepared in {where}, and "
                                 f"${ENV_OFFLINE} forbids downloading")
    tfds = _import_tfds()
    try:
        builder = tfds.builder(ds.tfds_name, data_dir=data_dir)
        if not builder.is_prepared():
            if manual_dir is not None:
                # The extracted copies (55 MB) are only needed while preparing: keep them in a
                # temporary download dir instead of <data_dir>/downloads.
                with tempfile.TemporaryDirectory(prefix="jaxmnist-tfds-") as dl:
                    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
                    builder.download_and_prepare(download_dir=dl, download_config=config)
            else:
                if _offline():
                    raise MnistDataError(f"not prepared in {where}, and ${ENV_OFFLINE} forbids "
                                         "downloading")
                # TFDS retries an unreachable host for minutes; fail fast with the fix instead.
                problem = _unreachable(ds.url + ds.files["test", "labels"].gz_name)
                if problem:
                    raise MnistDataError(f"cannot reach {ds.url} to download ({problem})")
                builder.download_and_prepare()
        dataset = builder.as_dataset(
            split=split,
            batch_size=-1,
            as_supervised=True,
            shuffle_files=False,
            read_config=tfds.ReadConfig(interleave_cycle_length=1, try_autocache=False),
        )
        images, labels = tfds.as_numpy(dataset)
        disable_shuffling = bool(builder.info.disable_shuffling)
    except Exception as e:  # TFDS raises many types; turn them into one actionable message.
        source = f"the files in {manual_dir}" if manual_dir else "a download"
        raise MnistDataError(
            f"TFDS could not prepare or read {ds.tfds_name} in {where} from {source}: "
            f"{type(e).__name__}: {e}\n{_how_to_fix(ds)}"
        ) from e

    images = np.asarray(images, dtype=np.uint8).reshape(-1, *IMAGE_SHAPE)
    labels = np.asarray(labels).astype(np.int32)
    expected = ds.files[split, "images"].count
    if len(images) != expected:
        raise MnistDataError(
            f"TFDS {ds.tfds_name} '{split}' in {where} has {len(images):,} examples, expected "
            f"{expected:,}; delete {where}/{ds.tfds_name} and let it be prepared again."
        )
    if not disable_shuffling:
        order = _tfds_file_order(split, len(images))
        restored_x, restored_y = np.empty_like(images), np.empty_like(labels)
        restored_x[order], restored_y[order] = images, labels
        images, labels = restored_x, restored_y
    return images, labels


# --------------------------------------------------------------------------------------------
# The public loader
# --------------------------------------------------------------------------------------------


def _check_choice(what: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def cache_dir(dataset: str = "mnist") -> Path:
    """The folder the ``auto`` source downloads ``dataset``'s four files into.

    ``$JAXMNIST_CACHE_DIR/<dataset>``, else ``$XDG_CACHE_HOME/jaxmnist/<dataset>``, else
    ``~/.cache/jaxmnist/<dataset>`` (e.g. ``~/.cache/jaxmnist/mnist``).
    """
    root = os.environ.get(ENV_CACHE_DIR)
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "jaxmnist")
    return Path(root).expanduser() / dataset


def _offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def _fetch_into_cache(ds: Dataset, split: str, verify_checksum: bool, tried: list[str]):
    """Loads ``split`` from the download cache, downloading the four files first if needed.

    Returns None (and says why in ``tried``) when the cache is empty and downloading is off
    or fails; a corrupt cached file raises (its message names it).
    """
    folder = cache_dir(ds.name)
    if _dir_state(folder, split, ds) == "complete":
        return load_idx(folder, split, verify_checksum=verify_checksum, dataset=ds.name)
    if _offline():
        tried.append(f"download cache: {folder} is empty, and ${ENV_OFFLINE} forbids downloading")
        return None
    base_url = os.environ.get(ENV_MIRROR) or ds.url
    size_mb = sum(s.gz_size for s in ds.files.values()) / 1e6
    print(f"jaxmnist: {ds.title} not found locally; downloading its four files ({size_mb:.0f} MB,"
          f" checksummed) from {base_url} into {folder} (once; set ${ENV_OFFLINE}=1 to never "
          "download)", file=sys.stderr, flush=True)
    try:
        download(folder, base_url=base_url, timeout=20.0, dataset=ds.name)
    except MnistDataError as e:
        tried.append(f"download into {folder}: {str(e).splitlines()[0]}")
        return None
    return load_idx(folder, split, verify_checksum=verify_checksum, dataset=ds.name)


def _candidate_dirs(
    data_dir: str | os.PathLike[str] | None, ds: Dataset = DATASETS["mnist"]
) -> list[tuple[str, Path | None]]:
    env = os.environ.get(ds.env)
    return [
        ("data_dir argument", Path(data_dir).expanduser() if data_dir is not None else None),
        (f"${ds.env}", Path(env).expanduser() if env else None),
        *(("system folder", Path(d)) for d in ds.system_dirs),
    ]


def load_mnist(
    split: str,
    *,
    source: str = "auto",
    data_dir: str | os.PathLike[str] | None = None,
    verify_checksum: bool = True,
    tfds_dir: str | os.PathLike[str] | None = None,
    dataset: str = "mnist",
) -> tuple[np.ndarray, np.ndarray]:
    """Load a split of MNIST (or ``dataset``) as ``(uint8 [N, 28, 28, 1], int32 [N])`` arrays.

    Where the data comes from, in order: the ``data_dir`` argument, then the dataset's
    environment variable (``$JAXMNIST_DATA_DIR`` for MNIST, ``$JAXMNIST_FASHION_MNIST_DIR``,
    ``$JAXMNIST_KMNIST_DIR``), then an OS package's folder (Debian's
    ``/usr/share/datasets/fashion-mnist``) -- each a folder with the four official IDX files --
    then the download cache (:func:`cache_dir`, e.g. ``~/.cache/jaxmnist/mnist``; the four
    files are downloaded and checksummed there on first use unless ``$JAXMNIST_OFFLINE`` is
    set; ``$JAXMNIST_MIRROR_URL`` names another server), then TFDS (prepared data in
    ``tfds_dir`` / ``$JAXMNIST_TFDS_DIR`` / TFDS's default, or a TFDS download). Every source
    gives the same arrays, byte for byte, in the official file order.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        source: ``"idx"`` (four files, no TensorFlow), ``"tfds"`` (TFDS mnist builder; prepared
            offline from the four ``.gz`` files when a folder above has them) or ``"auto"``
            (IDX when the files are found, else TFDS).
        data_dir: Folder with the four files; overrides ``$JAXMNIST_DATA_DIR``.
        verify_checksum: Check the official md5 sums of IDX files (structure is always
            checked). Turn off only for deliberately modified files.
        tfds_dir: TFDS data dir; overrides ``$JAXMNIST_TFDS_DIR``.
        dataset: one of :data:`DATASET_NAMES` (default ``"mnist"``).

    Returns:
        Images and labels of the split, in the official file order.

    Raises:
        MnistDataError: The data was not found anywhere (the message lists what was tried and
            how to fix it), or a file is corrupt.
        ValueError: ``split`` or ``source`` is not a known value.
    """
    _check_choice("split", split, SPLITS)
    _check_choice("source", source, SOURCES)
    ds = dataset_or_error(dataset)
    if source == "synthetic":
        x, y = synthetic.full_split(split)
        return x.copy(), y.copy()
    candidates = _candidate_dirs(data_dir, ds)
    files = [s.gz_name for s in ds.files.values()]

    if source == "idx":
        for label, directory in candidates:
            if directory is None or (label == "system folder" and not directory.is_dir()):
                continue
            # the first folder given is the one to use
            return load_idx(directory, split, verify_checksum=verify_checksum, dataset=ds.name)
        raise MnistDataError(
            f"source='idx' needs a folder with the {ds.title} files: pass data_dir=... or set "
            f"{ds.env}.\n{_how_to_fix(ds)}"
        )

    if source == "tfds":
        manual = next(
            (d for _, d in candidates if d is not None and all((d / n).is_file() for n in files)),
            None,
        )
        return load_tfds(split, manual_dir=manual, tfds_dir=tfds_dir, dataset=ds.name)

    # source == "auto": walk the chain, remembering why each step did not apply.
    tried = []
    for label, directory in candidates:
        if directory is None:
            tried.append(f"{label}: not set")
            continue
        state = _dir_state(directory, split, ds)
        # "partial": some of the files but not this split's two -- clearly meant as the data
        # folder, so load_idx's error naming the missing file is more useful than moving on.
        if state in ("complete", "partial"):
            return load_idx(directory, split, verify_checksum=verify_checksum, dataset=ds.name)
        reason = "does not exist" if state == "absent" else f"holds none of the {ds.title} files"
        tried.append(f"{label}: {directory} {reason}")
        if label.startswith("data_dir"):
            logger.warning("data_dir %s %s; trying the next source", directory, reason)
    arrays = _fetch_into_cache(ds, split, verify_checksum, tried)
    if arrays is not None:
        return arrays
    try:
        return load_tfds(split, tfds_dir=tfds_dir, dataset=ds.name)
    except MnistDataError as e:
        first_line = str(e).split("\n", 1)[0]
        tried.append(f"TFDS: {first_line}")
    raise MnistDataError(
        f"{ds.title} not found. Tried, in order:\n" + "".join(f"  - {t}\n" for t in tried)
        + _how_to_fix(ds)
    )


load_dataset = load_mnist  # the same loader; reads better with dataset="fashion_mnist"


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


class Splits(NamedTuple):
    """Train / validation / test arrays of one study; ``val_x``/``val_y`` may be None."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray | None
    val_y: np.ndarray | None
    test_x: np.ndarray
    test_y: np.ndarray


def _check_pair(x: np.ndarray, y: np.ndarray) -> int:
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    return len(x)


def keras_validation_split(
    x: np.ndarray, y: np.ndarray, fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split off the LAST ``fraction`` of the data, unshuffled, as Keras' ``validation_split``.

    Keras computes ``split_at = floor(n * (1 - fraction))`` before any shuffling (S1: 60,000 at
    0.2 -> 48,000 train / 12,000 validation).

    Args:
        x: Images, first axis = examples.
        y: Labels, same length.
        fraction: Validation fraction, strictly between 0 and 1.

    Returns:
        ``(train_x, train_y, val_x, val_y)``.

    Raises:
        ValueError: ``fraction`` leaves one side empty.
    """
    n = _check_pair(x, y)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {fraction!r}")
    split_at = int(math.floor(n * (1.0 - fraction)))
    if split_at in (0, n):
        raise ValueError(
            f"val_fraction={fraction} of {n} examples leaves an empty train or validation set"
        )
    return x[:split_at], y[:split_at], x[split_at:], y[split_at:]


def random_holdout(
    x: np.ndarray, y: np.ndarray, k: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out ``k`` examples chosen at random with ``numpy.random.default_rng(seed)``.

    Both parts keep the original relative order (training shuffles per epoch anyway), so the
    result depends on the seed only through *which* examples are held out.

    Args:
        x: Images, first axis = examples.
        y: Labels, same length.
        k: Number of validation examples, ``0 < k < n`` (S2: 10,000 of 60,000).
        seed: Seed of the choice.

    Returns:
        ``(train_x, train_y, val_x, val_y)``.

    Raises:
        ValueError: ``k`` is out of range.
    """
    n = _check_pair(x, y)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 0 < k < n:
        raise ValueError(f"val_size must be an integer with 0 < val_size < {n}, got {k!r}")
    rng = np.random.default_rng(seed)
    is_val = np.zeros(n, dtype=bool)
    is_val[rng.permutation(n)[:k]] = True
    return x[~is_val], y[~is_val], x[is_val], y[is_val]


def merged_split(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    test_fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge train and test, shuffle with ``seed`` and split off ``test_fraction`` (S3).

    The test size is ``ceil(n * test_fraction)`` as in scikit-learn's ``train_test_split``
    (70,000 at 0.2 -> 56,000 / 14,000); the shuffle uses ``numpy.random.default_rng(seed)``,
    so the exact images differ from the paper's, the sizes do not.

    Args:
        train: ``(x, y)`` of the official training set.
        test: ``(x, y)`` of the official test set.
        test_fraction: Fraction of the merged set used for testing, strictly between 0 and 1.
        seed: Seed of the shuffle.

    Returns:
        ``(train_x, train_y, test_x, test_y)``, both in shuffled order.

    Raises:
        ValueError: ``test_fraction`` leaves one side empty.
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
    """Return the first ``n`` examples (all of them when ``n`` is None or larger) for quick runs.

    Args:
        x: Images, first axis = examples.
        y: Labels, same length.
        n: How many to keep; a positive int or None.

    Returns:
        ``(x[:n], y[:n])``.

    Raises:
        ValueError: ``n`` is not a positive integer.
    """
    _check_pair(x, y)
    if n is None:
        return x, y
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"limit must be a positive integer or None, got {n!r}")
    return x[:n], y[:n]


MNIST_TRAIN, MNIST_TEST = 60_000, 10_000  # images in the official train / test files
SPLIT_KINDS = ("none", "keras", "holdout", "merged")
_SPEC_KEYS = {
    "name", "split", "val_fraction", "val_size", "test_fraction", "seed",
    "train_limit", "val_limit", "test_limit",
}  # fmt: skip
_NEEDS = {"none": (), "keras": ("val_fraction",), "holdout": ("val_size",),
          "merged": ("test_fraction",)}  # fmt: skip
SPLIT_NEEDS = _NEEDS
"""Which parameter each split kind needs (the study schema reads it from here)."""
DATA_DEFAULTS: dict[str, Any] = {
    "name": "mnist", "source": "auto", "val_fraction": None, "val_size": None,
    "test_fraction": None, "seed": None, "train_limit": None, "val_limit": None,
    "test_limit": None,
}  # fmt: skip
"""Every key of a study's ``data`` section but ``split`` (the spec keys and ``source``), with
its default; the study schema reads them from here and fills them into every study."""


def split_problems(spec: Mapping[str, Any],
                   train_size: int | None = MNIST_TRAIN) -> list[tuple[str, str]]:
    """The split rules, in one place: what each split kind needs and accepts.

    ``make_splits`` applies them before loading anything; the study schema
    (``jaxmnist.schema.data_problems``) applies them with the ranges, to report every problem of
    a study at once.

    Args:
        spec: A data spec whose ``split`` is one of :data:`SPLIT_KINDS`.
        train_size: Images in the dataset's training file, which bounds ``val_size``; None
            checks only which parameters are given (the splitting functions check the values on
            the loaded arrays).

    Returns:
        ``(key, message)`` for every problem; empty when the split is valid.
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
    """The (train, val, test) sizes :func:`make_splits` gives for a spec, computed without data.

    The split is taken first (keras: the last ``floor``-rounded fraction; holdout: ``val_size``
    random images; merged: ``ceil(70k * test_fraction)`` test images), then the ``*_limit``
    keys keep the first N of each part.
    """
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
    for key, size in (("train_limit", "train"), ("val_limit", "val"), ("test_limit", "test")):
        if data.get(key):
            if size == "train":
                train = min(train, int(data[key]))
            elif size == "val":
                val = min(val, int(data[key]))
            else:
                test = min(test, int(data[key]))
    return train, val, test


def make_splits(
    spec: Mapping[str, Any],
    *,
    source: str = "auto",
    data_dir: str | os.PathLike[str] | None = None,
) -> Splits:
    """Build a study's :class:`Splits` from a small spec dict (what the sweep calls).

    Spec keys (all but ``split`` optional):

    * ``name``: the dataset, one of :data:`DATASET_NAMES` (default ``"mnist"``).
    * ``split``: ``"none"`` (60k train, no validation, 10k test), ``"keras"`` (last
      ``val_fraction`` of train, S1), ``"holdout"`` (random ``val_size`` images with ``seed``,
      S2) or ``"merged"`` (train+test shuffled with ``seed``, ``test_fraction`` for test, S3).
    * ``val_fraction``, ``val_size``, ``test_fraction``: the parameter of that split; giving
      one that the split does not use is an error (it is almost always a typo).
    * ``seed``: int, default 0 (ignored by ``none`` and ``keras``).
    * ``train_limit``, ``val_limit``, ``test_limit``: keep only the first N of each part,
      applied after splitting (quick runs); None keeps everything.

    Args:
        spec: The spec dict.
        source: Passed to :func:`load_mnist`; ``"synthetic"`` draws only the images the spec
            keeps (see :mod:`jaxmnist.synthetic`).
        data_dir: Passed to :func:`load_mnist`.

    Returns:
        The splits, deterministic for a given spec.

    Raises:
        ValueError: Unknown key, missing or impossible value (e.g. ``val_size >= 60000``).
        MnistDataError: MNIST could not be loaded.
    """
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise ValueError(
            f"unknown split spec key(s) {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}"
        )
    kind = spec.get("split", None)
    if kind not in SPLIT_KINDS:
        raise ValueError(f"spec['split'] must be one of {SPLIT_KINDS}, got {kind!r}")
    problems = split_problems(spec, train_size=None)
    if problems:
        raise ValueError("; ".join(f"spec[{key!r}]: {msg}" for key, msg in problems))
    seed = spec.get("seed", 0)
    seed = 0 if seed is None else seed
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"spec['seed'] must be a non-negative integer, got {seed!r}")
    for key in ("train_limit", "val_limit", "test_limit"):
        limit = spec.get(key)
        if limit is not None and (
            not isinstance(limit, (int, np.integer)) or isinstance(limit, bool) or limit < 1
        ):
            raise ValueError(f"spec[{key!r}] must be a positive integer or None, got {limit!r}")

    name = spec.get("name") or "mnist"
    if source == "synthetic":
        # Split image *ids* and draw only the images that survive the limits (a smoke study
        # needs 3,500 of the 70,000). Train ids are 0.., test ids -1, -2, ...
        dataset_or_error(name)
        train_ids = np.arange(synthetic.SIZES["train"])
        test_ids = -1 - np.arange(synthetic.SIZES["test"])
        train = (train_ids, synthetic.labels("train", train_ids))
        test = (test_ids, synthetic.labels("test", -1 - test_ids))
    else:
        train = load_mnist("train", source=source, data_dir=data_dir, dataset=name)
        test = load_mnist("test", source=source, data_dir=data_dir, dataset=name)
    val: tuple[np.ndarray, np.ndarray] | tuple[None, None] = (None, None)
    if kind == "keras":
        tx, ty, vx, vy = keras_validation_split(*train, float(spec["val_fraction"]))
        train, val = (tx, ty), (vx, vy)
    elif kind == "holdout":
        tx, ty, vx, vy = random_holdout(*train, spec["val_size"], seed)
        train, val = (tx, ty), (vx, vy)
    elif kind == "merged":
        tx, ty, sx, sy = merged_split(train, test, float(spec["test_fraction"]), seed)
        train, test = (tx, ty), (sx, sy)

    train = take(*train, spec.get("train_limit"))
    test = take(*test, spec.get("test_limit"))
    if val[0] is not None:
        val = take(val[0], val[1], spec.get("val_limit"))
    if source == "synthetic":
        train, test = (_draw(train[0]), train[1]), (_draw(test[0]), test[1])
        if val[0] is not None:
            val = (_draw(val[0]), val[1])
    return Splits(train[0], train[1], val[0], val[1], test[0], test[1])


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


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def download(
    directory: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    timeout: float = 60.0,
    dataset: str = "mnist",
) -> list[Path]:
    """Download a dataset's four official ``.gz`` files into ``directory`` and verify them.

    Files already there with the right checksum are kept. A file passes when its gzip bytes
    match the published ``.gz`` or its content matches the official IDX bytes (a mirror that
    recompressed the files). No TensorFlow involved.

    Args:
        directory: Target folder (created if needed).
        base_url: Where the four files live (``base_url + file name``); default the dataset's
            official location (:attr:`Dataset.url`).
        timeout: Seconds per request.
        dataset: one of :data:`DATASET_NAMES`.

    Returns:
        The four paths.

    Raises:
        MnistDataError: unknown dataset, a download failed or a file has the wrong checksum.
    """
    ds = dataset_or_error(dataset)
    base_url = base_url or ds.url
    target = Path(directory).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    names = ", ".join(s.gz_name for s in ds.files.values())
    paths = []
    for spec in ds.files.values():
        path = target / spec.gz_name
        if path.is_file() and (_digest(ds.algo, path.read_bytes()) == spec.gz_md5
                               or _same_content(ds, spec, path.read_bytes())):
            paths.append(path)
            continue
        url = base_url.rstrip("/") + "/" + spec.gz_name
        partial = path.with_name(path.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                partial.write_bytes(response.read())
        except (urllib.error.URLError, OSError) as e:
            partial.unlink(missing_ok=True)
            raise MnistDataError(
                f"Could not download {url}: {e}. Copy the four files ({names}) "
                f"into {target} by other means."
            ) from e
        blob = partial.read_bytes()
        digest = _digest(ds.algo, blob)
        if digest != spec.gz_md5 and not _same_content(ds, spec, blob):
            partial.unlink()
            raise MnistDataError(
                f"{url} has {ds.algo} {digest}, the official {spec.gz_name} has {spec.gz_md5}; "
                "try another mirror with --base-url."
            )
        partial.replace(path)
        paths.append(path)
    return paths


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxmnist.data", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="verify the four IDX files and print label histograms")
    check.add_argument("dir", nargs="?",
                       help="folder with the files (default: the dataset's environment variable, "
                            f"${ENV_DATA_DIR} for MNIST)")
    check.add_argument("--no-checksum", action="store_true", help="check the structure only")
    fetch = sub.add_parser("download", help="download the four official .gz files")
    fetch.add_argument("dir", nargs="?",
                       help="target folder (default: the dataset's environment variable if set, "
                            "else ~/.cache/jaxmnist/NAME)")
    fetch.add_argument("--base-url", default=None,
                       help="mirror URL (default: the dataset's official location)")
    for p in (check, fetch):
        p.add_argument("--dataset", default="mnist",
                       help=f"one of {', '.join(DATASETS)} (default mnist)")
    args = parser.parse_args(argv)

    try:
        ds = dataset_or_error(args.dataset)
        if args.command == "download":
            target = (args.dir or os.environ.get(ds.env)
                      or str(Path("~/.cache/jaxmnist").expanduser() / ds.name))
            for path in download(target, base_url=args.base_url, dataset=ds.name):
                print(f"ok  {path}")
            print(f"export {ds.env}={Path(target).expanduser().resolve()}")
            return 0
        directory = args.dir or os.environ.get(ds.env) or next(
            (d for d in ds.system_dirs if Path(d).is_dir()), None)
        if not directory:
            parser.error(f"give a folder or set {ds.env}")
        for split in SPLITS:
            x, y = load_idx(directory, split, verify_checksum=not args.no_checksum,
                            dataset=ds.name)
            counts = np.bincount(y, minlength=10).tolist()
            print(f"{split:5s} images {x.shape} {x.dtype}, labels {y.shape} {y.dtype}")
            if ds.label_counts is None:
                print(f"      label counts 0..9: {counts}")
                continue
            official = list(ds.label_counts[split])
            mark = "official" if counts == official else "DIFFERS from official " + str(official)
            print(f"      label counts 0..9: {counts} ({mark})")
    except MnistDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
