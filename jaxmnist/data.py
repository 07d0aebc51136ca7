"""MNIST for jaxmnist: one array layout from two sources, plus the studies' splits.

Every loader returns ``images uint8 [N, 28, 28, 1]`` and ``labels int32 [N]`` in the order of the
official IDX files (the order Keras' ``mnist.load_data()`` uses), so that S1's "last 20% of the
training set" means the same images whichever source produced them.

Sources:

* ``"idx"`` reads the four official files (``.gz`` or uncompressed) with numpy only. It checks
  the IDX structure and the official md5 sums, so a truncated or foreign file fails loudly.
* ``"tfds"`` uses the TensorFlow Datasets ``mnist`` builder. TensorFlow is imported lazily, only
  here: the rest of jaxmnist never needs it. When the four ``.gz`` files are on disk TFDS
  prepares the dataset from them offline; otherwise TFDS downloads them itself.
* ``"auto"`` uses the IDX files when it finds them (argument, then ``JAXMNIST_DATA_DIR``) and
  TFDS otherwise.

This module must not import jax or tensorflow at import time (see docs/architecture.md).

Command line::

    python -m jaxmnist.data check DIR      # verify the four files, print label histograms
    python -m jaxmnist.data download DIR   # fetch the four official .gz files (no TensorFlow)
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

logger = logging.getLogger(__name__)

ENV_DATA_DIR = "JAXMNIST_DATA_DIR"
ENV_TFDS_DIR = "JAXMNIST_TFDS_DIR"
# The mirror TFDS itself downloads from (Yann LeCun's site no longer serves the files reliably).
MIRROR_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"

SPLITS = ("train", "test")
SOURCES = ("auto", "tfds", "idx")
IMAGE_SHAPE = (28, 28, 1)
_IMAGES_MAGIC = 0x00000803  # IDX: 0x00 0x00, dtype 0x08 (ubyte), 3 dimensions
_LABELS_MAGIC = 0x00000801  # IDX: 0x00 0x00, dtype 0x08 (ubyte), 1 dimension
_GZIP_MAGIC = b"\x1f\x8b"


class MnistDataError(ValueError):
    """MNIST could not be found, read or verified; the message says what to do about it."""


class _IdxSpec(NamedTuple):
    """One of the four official files, with its published sizes and md5 sums (SOURCE.md)."""

    name: str  # official name without ".gz"
    split: str
    kind: str  # "images" | "labels"
    count: int
    gz_size: int
    gz_md5: str
    raw_size: int
    raw_md5: str

    @property
    def gz_name(self) -> str:
        return self.name + ".gz"

    @property
    def candidates(self) -> tuple[str, ...]:
        # Official names first; then the dotted spelling some mirrors and Kaggle use
        # ("train-images.idx3-ubyte").
        dotted = self.name.replace("-idx", ".idx")
        return (self.gz_name, self.name, dotted, dotted + ".gz")


_SPECS: dict[tuple[str, str], _IdxSpec] = {
    ("train", "images"): _IdxSpec(
        "train-images-idx3-ubyte", "train", "images", 60000,
        9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        47040016, "6bbc9ace898e44ae57da46a324031adb",
    ),
    ("train", "labels"): _IdxSpec(
        "train-labels-idx1-ubyte", "train", "labels", 60000,
        28881, "d53e105ee54ea40749a09fcbcd1e9432",
        60008, "a25bea736e30d166cdddb491f175f624",
    ),
    ("test", "images"): _IdxSpec(
        "t10k-images-idx3-ubyte", "test", "images", 10000,
        1648877, "9fb629c4189551a2d022fa330f9573f3",
        7840016, "2646ac647ad5339dbf082846283269ea",
    ),
    ("test", "labels"): _IdxSpec(
        "t10k-labels-idx1-ubyte", "test", "labels", 10000,
        4542, "ec29112dd5afa0611ce80d1b7f02629c",
        10008, "27ae3e4e09519cfbb04c329615203637",
    ),
}  # fmt: skip

OFFICIAL_FILES = tuple(s.gz_name for s in _SPECS.values())
OFFICIAL_LABEL_COUNTS = {
    "train": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "test": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
}

_HOW_TO_FIX = (
    "How to fix: put the four official files\n"
    f"    {', '.join(OFFICIAL_FILES)}\n"
    f"in one folder and set {ENV_DATA_DIR}=/that/folder (or pass data_dir=...). To fetch them "
    "(no TensorFlow needed):\n"
    "    python -m jaxmnist.data download /that/folder\n"
    'Or let TFDS download them (needs TensorFlow: pip install -e ".[tf]" and network access).'
)


# --------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------

# (resolved path, mtime_ns, size) -> (read-only array, checksum verified?). Re-reading the
# train images costs a decompress of 47 MB; the sweep and the tests load the same files many
# times in one process, so keep the decoded result until the file changes on disk.
_CACHE: dict[tuple[str, int, int], tuple[np.ndarray, bool]] = {}


def clear_cache() -> None:
    """Forget decoded IDX files (they are otherwise kept until the file changes on disk)."""
    _CACHE.clear()


def _find_file(directory: Path, spec: _IdxSpec) -> Path | None:
    for name in spec.candidates:
        path = directory / name
        if path.is_file():
            return path
    return None


def _dir_state(directory: Path, split: str) -> str:
    """Return "complete", "partial", "empty" (no MNIST file) or "absent" (no such folder)."""
    if not directory.is_dir():
        return "absent"
    found = [_find_file(directory, _SPECS[split, kind]) for kind in ("images", "labels")]
    if all(found):
        return "complete"
    if any(_find_file(directory, s) for s in _SPECS.values()):
        return "partial"
    return "empty"


def _locate(directory: Path, split: str) -> tuple[Path, Path]:
    """Return the (images, labels) paths of ``split`` in ``directory`` or raise MnistDataError."""
    if not directory.is_dir():
        raise MnistDataError(f"MNIST folder {directory} does not exist.\n{_HOW_TO_FIX}")
    paths = []
    for kind in ("images", "labels"):
        spec = _SPECS[split, kind]
        path = _find_file(directory, spec)
        if path is None:
            raise MnistDataError(
                f"Missing MNIST file {directory / spec.gz_name} (the {split} {kind}; looked for "
                f"{', '.join(spec.candidates)}).\n{_HOW_TO_FIX}"
            )
        paths.append(path)
    return paths[0], paths[1]


def _decode_idx(path: Path, spec: _IdxSpec, verify_checksum: bool) -> np.ndarray:
    """Read, decompress, structurally check and (optionally) checksum one IDX file."""
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise MnistDataError(f"Cannot read MNIST file {path}: {e}") from e

    # Decide by content, not by name: a gzip stream starts with 1f 8b, an IDX file with 00 00.
    compressed = blob[:2] == _GZIP_MAGIC
    if compressed:
        try:
            raw = gzip.decompress(blob)
        except (EOFError, OSError, zlib.error) as e:
            raise MnistDataError(
                f"MNIST file {path} is a truncated or corrupt gzip file ({e}; {len(blob):,} bytes, "
                f"the official {spec.gz_name} has {spec.gz_size:,}). Delete it and download it "
                f"again.\n{_HOW_TO_FIX}"
            ) from e
    elif path.suffix == ".gz":
        raise MnistDataError(
            f"MNIST file {path} is named .gz but is not gzip-compressed. Rename it to "
            f"{spec.name} if it is the uncompressed IDX file, or download it again."
        )
    else:
        raw = blob

    # Structure first, checksum second: "truncated" or "wrong magic" says more than "md5 differs".
    magic_expected = _IMAGES_MAGIC if spec.kind == "images" else _LABELS_MAGIC
    header_len = 16 if spec.kind == "images" else 8
    if len(raw) < header_len:
        raise MnistDataError(
            f"MNIST file {path} is too short to be an IDX {spec.kind} file ({len(raw)} bytes "
            f"after decompression). Download {spec.gz_name} again."
        )
    dims = np.frombuffer(raw, dtype=">u4", count=header_len // 4)
    magic = int(dims[0])
    if magic != magic_expected:
        other = {_IMAGES_MAGIC: "an images file", _LABELS_MAGIC: "a labels file"}.get(magic)
        hint = f" It looks like {other}: are the file names swapped?" if other else ""
        raise MnistDataError(
            f"MNIST file {path} has IDX magic number 0x{magic:08x}, expected "
            f"0x{magic_expected:08x} ({spec.kind}).{hint} It is not the {spec.split} {spec.kind} "
            f"file {spec.gz_name}; replace it with the official one."
        )
    count = int(dims[1])
    if spec.kind == "images" and tuple(int(d) for d in dims[2:]) != IMAGE_SHAPE[:2]:
        raise MnistDataError(
            f"MNIST file {path} declares images of {int(dims[2])}x{int(dims[3])} pixels, "
            f"expected 28x28. It is not an MNIST images file; replace it with {spec.gz_name}."
        )
    item = 28 * 28 if spec.kind == "images" else 1
    expected_len = header_len + count * item
    if len(raw) != expected_len:
        what = "truncated" if len(raw) < expected_len else "longer than its header says"
        raise MnistDataError(
            f"MNIST file {path} is {what}: its header declares {count:,} {spec.kind} "
            f"({expected_len:,} bytes of IDX data) but it holds {len(raw):,} bytes. Delete it and "
            f"download {spec.gz_name} again."
        )

    if verify_checksum:
        digest = hashlib.md5(blob).hexdigest()
        want, form = (spec.gz_md5, "gzip") if compressed else (spec.raw_md5, "uncompressed")
        if digest != want:
            raise MnistDataError(
                f"MNIST file {path} fails the checksum: md5 {digest}, the official {form} "
                f"{spec.name} has md5 {want}. The file is corrupt or not the official MNIST; "
                "download it again, or pass verify_checksum=False if you use a modified copy "
                "on purpose."
            )

    data = np.frombuffer(raw, dtype=np.uint8, offset=header_len)
    if spec.kind == "images":
        return data.reshape(count, *IMAGE_SHAPE)
    if count and int(data.max()) > 9:
        raise MnistDataError(
            f"MNIST file {path} holds label {int(data.max())}; MNIST labels are 0..9. Replace it "
            f"with the official {spec.gz_name}."
        )
    return data.astype(np.int32)


def _read_idx(path: Path, spec: _IdxSpec, verify_checksum: bool) -> np.ndarray:
    """Cached :func:`_decode_idx`; returns a fresh, writable copy each call."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    hit = _CACHE.get(key)
    if hit is None or (verify_checksum and not hit[1]):
        array = _decode_idx(path, spec, verify_checksum)
        array.flags.writeable = False
        hit = (array, verify_checksum)
        _CACHE[key] = hit
    return hit[0].copy()


def load_idx(
    directory: str | os.PathLike[str], split: str, *, verify_checksum: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split from the official IDX files in ``directory``, without TensorFlow.

    Args:
        directory: Folder holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` files,
            each either ``.gz`` (as published) or uncompressed.
        split: ``"train"`` or ``"test"``.
        verify_checksum: Compare each file's md5 with the official one (md5 of the ``.gz`` for
            compressed files, of the raw bytes otherwise). The IDX structure (magic number,
            dimensions, size) is always checked.

    Returns:
        ``(images uint8 [N, 28, 28, 1], labels int32 [N])`` in file order.

    Raises:
        MnistDataError: A file is missing, truncated, malformed or fails its checksum.
    """
    _check_choice("split", split, SPLITS)
    images_path, labels_path = _locate(Path(directory).expanduser(), split)
    images = _read_idx(images_path, _SPECS[split, "images"], verify_checksum)
    labels = _read_idx(labels_path, _SPECS[split, "labels"], verify_checksum)
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
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split through the TFDS ``mnist`` builder, preparing it first if needed.

    Args:
        split: ``"train"`` or ``"test"``.
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
    tfds = _import_tfds()
    data_dir = str(Path(tfds_dir).expanduser()) if tfds_dir else tfds_dir_default()
    where = data_dir or "TFDS's default data dir"
    try:
        builder = tfds.builder("mnist", data_dir=data_dir)
        if not builder.is_prepared():
            if manual_dir is not None:
                # The extracted copies (55 MB) are only needed while preparing: keep them in a
                # temporary download dir instead of <data_dir>/downloads.
                with tempfile.TemporaryDirectory(prefix="jaxmnist-tfds-") as dl:
                    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
                    builder.download_and_prepare(download_dir=dl, download_config=config)
            else:
                # TFDS retries an unreachable host for minutes; fail fast with the fix instead.
                problem = _unreachable(MIRROR_URL + _SPECS["test", "labels"].gz_name)
                if problem:
                    raise MnistDataError(f"cannot reach {MIRROR_URL} to download ({problem})")
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
            f"TFDS could not prepare or read mnist in {where} from {source}: "
            f"{type(e).__name__}: {e}\n{_HOW_TO_FIX}"
        ) from e

    images = np.asarray(images, dtype=np.uint8).reshape(-1, *IMAGE_SHAPE)
    labels = np.asarray(labels).astype(np.int32)
    expected = _SPECS[split, "images"].count
    if len(images) != expected:
        raise MnistDataError(
            f"TFDS mnist '{split}' in {where} has {len(images):,} examples, expected "
            f"{expected:,}; delete {where}/mnist and let it be prepared again."
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


def _candidate_dirs(data_dir: str | os.PathLike[str] | None) -> list[tuple[str, Path | None]]:
    env = os.environ.get(ENV_DATA_DIR)
    return [
        ("data_dir argument", Path(data_dir).expanduser() if data_dir is not None else None),
        (f"${ENV_DATA_DIR}", Path(env).expanduser() if env else None),
    ]


def load_mnist(
    split: str,
    *,
    source: str = "auto",
    data_dir: str | os.PathLike[str] | None = None,
    verify_checksum: bool = True,
    tfds_dir: str | os.PathLike[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split as ``(images uint8 [N, 28, 28, 1], labels int32 [N])``.

    Where the data comes from, in order: the ``data_dir`` argument, then ``$JAXMNIST_DATA_DIR``
    (each a folder with the four official IDX files), then TFDS (prepared data in ``tfds_dir``
    / ``$JAXMNIST_TFDS_DIR`` / TFDS's default, or a TFDS download). Both sources give the same
    arrays, byte for byte, in the order of the official files.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        source: ``"idx"`` (four files, no TensorFlow), ``"tfds"`` (TFDS mnist builder; prepared
            offline from the four ``.gz`` files when a folder above has them) or ``"auto"``
            (IDX when the files are found, else TFDS).
        data_dir: Folder with the four files; overrides ``$JAXMNIST_DATA_DIR``.
        verify_checksum: Check the official md5 sums of IDX files (structure is always
            checked). Turn off only for deliberately modified files.
        tfds_dir: TFDS data dir; overrides ``$JAXMNIST_TFDS_DIR``.

    Returns:
        Images and labels of the split, in the official file order.

    Raises:
        MnistDataError: The data was not found anywhere (the message lists what was tried and
            how to fix it), or a file is corrupt.
        ValueError: ``split`` or ``source`` is not a known value.
    """
    _check_choice("split", split, SPLITS)
    _check_choice("source", source, SOURCES)
    candidates = _candidate_dirs(data_dir)

    if source == "idx":
        for _, directory in candidates:
            if directory is not None:  # the first folder given is the one to use
                return load_idx(directory, split, verify_checksum=verify_checksum)
        raise MnistDataError(
            f"source='idx' needs a folder with the MNIST files: pass data_dir=... or set "
            f"{ENV_DATA_DIR}.\n{_HOW_TO_FIX}"
        )

    if source == "tfds":
        manual = next(
            (
                d
                for _, d in candidates
                if d is not None and all((d / name).is_file() for name in OFFICIAL_FILES)
            ),
            None,
        )
        return load_tfds(split, manual_dir=manual, tfds_dir=tfds_dir)

    # source == "auto": walk the chain, remembering why each step did not apply.
    tried = []
    for label, directory in candidates:
        if directory is None:
            tried.append(f"{label}: not set")
            continue
        state = _dir_state(directory, split)
        # "partial": some MNIST files but not this split's two -- clearly meant as the MNIST
        # folder, so load_idx's error naming the missing file is more useful than moving on.
        if state in ("complete", "partial"):
            return load_idx(directory, split, verify_checksum=verify_checksum)
        reason = "does not exist" if state == "absent" else "holds none of the MNIST files"
        tried.append(f"{label}: {directory} {reason}")
        if label.startswith("data_dir"):
            logger.warning("data_dir %s %s; trying the next source", directory, reason)
    try:
        return load_tfds(split, tfds_dir=tfds_dir)
    except MnistDataError as e:
        first_line = str(e).split("\n", 1)[0]
        tried.append(f"TFDS: {first_line}")
    raise MnistDataError(
        "MNIST not found. Tried, in order:\n" + "".join(f"  - {t}\n" for t in tried) + _HOW_TO_FIX
    )


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


SPLIT_KINDS = ("none", "keras", "holdout", "merged")
_SPEC_KEYS = {
    "split", "val_fraction", "val_size", "test_fraction", "seed",
    "train_limit", "val_limit", "test_limit",
}  # fmt: skip
_NEEDS = {"none": (), "keras": ("val_fraction",), "holdout": ("val_size",),
          "merged": ("test_fraction",)}  # fmt: skip


def make_splits(
    spec: Mapping[str, Any],
    *,
    source: str = "auto",
    data_dir: str | os.PathLike[str] | None = None,
) -> Splits:
    """Build a study's :class:`Splits` from a small spec dict (what the sweep calls).

    Spec keys (all but ``split`` optional):

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
        source: Passed to :func:`load_mnist`.
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
    for key in ("val_fraction", "val_size", "test_fraction"):
        given = spec.get(key) is not None
        if key in _NEEDS[kind] and not given:
            raise ValueError(f"split {kind!r} needs spec[{key!r}]")
        if key not in _NEEDS[kind] and given:
            raise ValueError(f"split {kind!r} does not use spec[{key!r}]={spec[key]!r}")
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
    if kind == "none" and spec.get("val_limit") is not None:
        raise ValueError("split 'none' has no validation set; drop spec['val_limit']")

    train = load_mnist("train", source=source, data_dir=data_dir)
    test = load_mnist("test", source=source, data_dir=data_dir)
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
    return Splits(train[0], train[1], val[0], val[1], test[0], test[1])


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def download(
    directory: str | os.PathLike[str], *, base_url: str = MIRROR_URL, timeout: float = 60.0
) -> list[Path]:
    """Download the four official ``.gz`` files into ``directory`` and verify their md5 sums.

    Files already there with the right checksum are kept. No TensorFlow involved.

    Args:
        directory: Target folder (created if needed).
        base_url: Where the four files live (``base_url + file name``).
        timeout: Seconds per request.

    Returns:
        The four paths.

    Raises:
        MnistDataError: A download failed or a file has the wrong checksum.
    """
    target = Path(directory).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in _SPECS.values():
        path = target / spec.gz_name
        if path.is_file() and hashlib.md5(path.read_bytes()).hexdigest() == spec.gz_md5:
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
                f"Could not download {url}: {e}. Copy the four files ({', '.join(OFFICIAL_FILES)}) "
                f"into {target} by other means."
            ) from e
        digest = hashlib.md5(partial.read_bytes()).hexdigest()
        if digest != spec.gz_md5:
            partial.unlink()
            raise MnistDataError(
                f"{url} has md5 {digest}, the official {spec.gz_name} has {spec.gz_md5}; "
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
    check.add_argument("dir", nargs="?", help=f"folder with the files (default ${ENV_DATA_DIR})")
    check.add_argument("--no-checksum", action="store_true", help="check the structure only")
    fetch = sub.add_parser("download", help="download the four official .gz files")
    fetch.add_argument("dir", help="target folder")
    fetch.add_argument("--base-url", default=MIRROR_URL, help=f"default {MIRROR_URL}")
    args = parser.parse_args(argv)

    try:
        if args.command == "download":
            for path in download(args.dir, base_url=args.base_url):
                print(f"ok  {path}")
            print(f"export {ENV_DATA_DIR}={Path(args.dir).expanduser().resolve()}")
            return 0
        directory = args.dir or os.environ.get(ENV_DATA_DIR)
        if not directory:
            parser.error(f"give a folder or set {ENV_DATA_DIR}")
        for split in SPLITS:
            x, y = load_idx(directory, split, verify_checksum=not args.no_checksum)
            counts = np.bincount(y, minlength=10).tolist()
            official = list(OFFICIAL_LABEL_COUNTS[split])
            mark = "official" if counts == official else "DIFFERS from official " + str(official)
            print(f"{split:5s} images {x.shape} {x.dtype}, labels {y.shape} {y.dtype}")
            print(f"      label counts 0..9: {counts} ({mark})")
    except MnistDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
