"""The datasets (MNIST, Fashion-MNIST, KMNIST) as ``uint8 [N, 28, 28, 1]`` / ``int32 [N]``.

Arrays come in the order of the official IDX files, whichever source (:data:`SOURCES`) read
them. No jax or tensorflow at import time. Sources, search order and checks: docs/data.md.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jaxmnist.data import synthetic

logger = logging.getLogger(__name__)

ENV_DATA_DIR = "JAXMNIST_DATA_DIR"
ENV_TFDS_DIR = "JAXMNIST_TFDS_DIR"
# The download cache: `auto` fetches a dataset's four files into <cache>/<dataset> on first use.
ENV_CACHE_DIR = "JAXMNIST_CACHE_DIR"  # default $XDG_CACHE_HOME/jaxmnist or ~/.cache/jaxmnist
ENV_OFFLINE = "JAXMNIST_OFFLINE"  # "1": never download (tests, air-gapped machines)
ENV_MIRROR = "JAXMNIST_MIRROR_URL"  # another base URL for that download (a mirror, a test server)

SPLITS = ("train", "test")
SOURCES = ("auto", "tfds", "idx", "synthetic")
IMAGE_SHAPE = (28, 28, 1)
_IMAGES_MAGIC = 0x00000803  # IDX: 0x00 0x00, dtype 0x08 (ubyte), 3 dimensions
_LABELS_MAGIC = 0x00000801  # IDX: 0x00 0x00, dtype 0x08 (ubyte), 1 dimension
_GZIP_MAGIC = b"\x1f\x8b"


class DataError(ValueError):
    """A dataset could not be found, read or verified; the message says what to do about it."""


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
    def candidates(self) -> tuple[str, ...]:  # then the dotted spelling of mirrors and Kaggle
        dotted = self.name.replace("-idx", ".idx")
        return (self.gz_name, self.name, dotted, dotted + ".gz")


class Dataset(NamedTuple):
    """A 28x28x1, 10-class dataset published as four IDX files (and in TFDS)."""

    name: str  # data.name in a study
    title: str
    tfds_name: str
    url: str
    algo: str  # the digest of the files' checksums
    files: dict[tuple[str, str], _IdxSpec]
    class_names: tuple[str, ...]
    label_counts: dict[str, tuple[int, ...]] | None  # official histogram per split, if known
    env: str  # the variable naming its IDX folder
    system_dirs: tuple[str, ...] = ()  # where an OS package installs the files


def _load_datasets() -> dict[str, Dataset]:
    """The datasets of ``datasets.json`` (checksums and their sources: docs/data.md).

    Its ``files`` and each dataset's ``digests`` (gz size, gz digest, raw digest) share one order.
    """
    table = json.loads(Path(__file__).with_name("datasets.json").read_text())
    out = {}
    for name, d in table["datasets"].items():
        files = {(split, kind): _IdxSpec(fname, split, kind, count, gz_size, gz, raw_size, raw)
                 for (fname, split, kind, count, raw_size), (gz_size, gz, raw)
                 in zip(table["files"], d.pop("digests"), strict=True)}
        counts = d.pop("label_counts")
        out[name] = Dataset(
            name, files=files, class_names=tuple(d.pop("class_names")),
            label_counts=counts and {split: tuple(c) for split, c in counts.items()},
            system_dirs=tuple(d.pop("system_dirs")), **d)
    return out


DATASETS: dict[str, Dataset] = _load_datasets()
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
"""Valid ``data.name`` values."""

OFFICIAL_FILES = tuple(s.gz_name for s in DATASETS["mnist"].files.values())


def dataset(name: str) -> Dataset:
    """The :class:`Dataset` called ``name``; DataError (a ValueError) naming the valid ones."""
    if name not in DATASETS:
        raise DataError(f"data.name: {name!r} is not a known dataset; valid choices: "
                        f"{', '.join(DATASETS)}")
    return DATASETS[name]


_find_dataset = dataset  # for the loaders, whose ``dataset`` argument shadows the function


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
        "\n    python -m jaxmnist.sweep smoke --synthetic")


# (path, mtime_ns, size, dataset) -> (read-only array, verified?): kept until the file changes.
_CACHE: dict[tuple[str, int, int, str], tuple[np.ndarray, bool]] = {}


def _find_file(directory: Path, spec: _IdxSpec) -> Path | None:
    return next((directory / n for n in spec.candidates if (directory / n).is_file()), None)


def _dir_state(directory: Path, split: str, ds: Dataset) -> str:
    """"complete", "partial", "empty" (none of the files) or "absent" (no such folder)."""
    if not directory.is_dir():
        return "absent"
    if all(_find_file(directory, ds.files[split, kind]) for kind in ("images", "labels")):
        return "complete"
    if any(_find_file(directory, s) for s in ds.files.values()):
        return "partial"
    return "empty"


def _decode_idx(path: Path, spec: _IdxSpec, verify_checksum: bool, ds: Dataset) -> np.ndarray:
    """Read, decompress, structurally check and (optionally) checksum one IDX file."""
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise DataError(f"Cannot read {ds.title} file {path}: {e}") from e

    raw, compressed = blob, blob[:2] == _GZIP_MAGIC
    if compressed:
        try:
            raw = gzip.decompress(blob)
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(
                f"{ds.title} file {path} is a truncated or corrupt gzip file ({e}; {len(blob):,} "
                f"bytes, the official {spec.gz_name} has {spec.gz_size:,}). Delete it and "
                f"download it again.\n{_how_to_fix(ds)}") from e
    elif path.suffix == ".gz":
        raise DataError(
            f"{ds.title} file {path} is named .gz but is not gzip-compressed. Rename it to "
            f"{spec.name} if it is the uncompressed IDX file, or download it again.")

    # Structure first: "truncated" or "wrong magic" says more than "md5 differs".
    magic_expected, header_len, item = (
        (_IMAGES_MAGIC, 16, 28 * 28) if spec.kind == "images" else (_LABELS_MAGIC, 8, 1))
    if len(raw) < header_len:
        raise DataError(
            f"{ds.title} file {path} is too short to be an IDX {spec.kind} file ({len(raw)} bytes "
            f"after decompression). Download {spec.gz_name} again.")
    dims = np.frombuffer(raw, dtype=">u4", count=header_len // 4)
    magic = int(dims[0])
    if magic != magic_expected:
        other = {_IMAGES_MAGIC: "an images file", _LABELS_MAGIC: "a labels file"}.get(magic)
        hint = f" It looks like {other}: are the file names swapped?" if other else ""
        raise DataError(
            f"{ds.title} file {path} has IDX magic number 0x{magic:08x}, expected "
            f"0x{magic_expected:08x} ({spec.kind}).{hint} It is not the {spec.split} {spec.kind} "
            f"file {spec.gz_name}; replace it with the official one.")
    count = int(dims[1])
    if spec.kind == "images" and tuple(int(d) for d in dims[2:]) != IMAGE_SHAPE[:2]:
        raise DataError(
            f"{ds.title} file {path} declares images of {int(dims[2])}x{int(dims[3])} pixels, "
            f"expected 28x28. It is not an MNIST-format images file; replace it with "
            f"{spec.gz_name}.")
    expected_len = header_len + count * item
    if len(raw) != expected_len:
        what = "truncated" if len(raw) < expected_len else "longer than its header says"
        raise DataError(
            f"{ds.title} file {path} is {what}: its header declares {count:,} {spec.kind} "
            f"({expected_len:,} bytes of IDX data) but it holds {len(raw):,} bytes. Delete it and "
            f"download {spec.gz_name} again.")

    if verify_checksum:
        _verify(path, spec, ds, blob, raw, compressed)

    data = np.frombuffer(raw, dtype=np.uint8, offset=header_len)
    if spec.kind == "images":
        return data.reshape(count, *IMAGE_SHAPE)
    if count and int(data.max()) > 9:
        raise DataError(
            f"{ds.title} file {path} holds label {int(data.max())}; labels are 0..9. Replace it "
            f"with the official {spec.gz_name}.")
    return data.astype(np.int32)


def _digest(algo: str, blob: bytes) -> str:
    return hashlib.new(algo, blob).hexdigest()


def _matches(ds: Dataset, spec: _IdxSpec, blob: bytes, raw: bytes | None) -> bool:
    """True when ``blob`` is the official ``.gz`` or ``raw`` (its content) the official IDX."""
    return _digest(ds.algo, blob) == spec.gz_md5 or (
        raw is not None and spec.raw_md5 is not None and _digest(ds.algo, raw) == spec.raw_md5)


def _is_official(ds: Dataset, spec: _IdxSpec, blob: bytes) -> bool:
    """True when ``.gz`` bytes are the official file or decompress to its content."""
    if _matches(ds, spec, blob, None):
        return True  # the published .gz itself: nothing to decompress (47 MB for train images)
    if spec.raw_md5 is None or blob[:2] != _GZIP_MAGIC:
        return False
    try:
        return _matches(ds, spec, blob, gzip.decompress(blob))
    except (EOFError, OSError, zlib.error):
        return False


def _verify(path: Path, spec: _IdxSpec, ds: Dataset, blob: bytes, raw: bytes,
            compressed: bool) -> None:
    """Checks a file against the published ``.gz`` digest or its content's (recompressed copies)."""
    algo = ds.algo
    if _matches(ds, spec, blob, raw):
        return
    if spec.raw_md5 is None and not compressed:
        raise DataError(
            f"{ds.title} file {path} is uncompressed and {ds.title} publishes no checksum for "
            f"uncompressed files; use the published {spec.gz_name}, or pass "
            "verify_checksum=False if you trust this copy.")
    digest = _digest(algo, blob)
    want, form = (spec.gz_md5, "gzip") if compressed else (spec.raw_md5, "uncompressed")
    # Another dataset's official file? Then say which (data.name is probably wrong).
    if other := next((f"{o.title}'s {sp.name} (data.name = {o.name!r})" for o in DATASETS.values()
                      for sp in o.files.values() if _matches(o, sp, blob, raw)), None):
        raise DataError(
            f"{ds.title} file {path} fails the checksum: it is not {ds.title}'s {spec.name} but "
            f"{other}. Set data.name (or --dataset) to that dataset, or put {ds.title}'s files "
            "in this folder.")
    raise DataError(
        f"{ds.title} file {path} fails the checksum: {algo} {digest}, the official {form} "
        f"{spec.name} has {algo} {want}. The file is corrupt or not the official "
        f"{ds.title}; download it again, or pass verify_checksum=False if you use a modified "
        "copy on purpose.")


def _read_idx(path: Path, spec: _IdxSpec, verify_checksum: bool, ds: Dataset) -> np.ndarray:
    """Cached :func:`_decode_idx`; returns a fresh, writable copy each call."""
    st = path.stat()
    # The dataset is part of the key: "verified" means verified against THAT dataset's sums.
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, ds.name)
    hit = _CACHE.get(key)
    if hit is None or (verify_checksum and not hit[1]):
        array = _decode_idx(path, spec, verify_checksum, ds)
        array.flags.writeable = False
        hit = _CACHE[key] = (array, verify_checksum)
    return hit[0].copy()


def load_idx(directory: str | os.PathLike[str], split: str, *, verify_checksum: bool = True,
             dataset: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """One split of a dataset from its IDX files (``.gz`` or not) in ``directory``.

    The structure is always checked; ``verify_checksum`` also compares the published ``.gz`` or
    content digests. Returns ``(images uint8 [N, 28, 28, 1], labels int32 [N])`` in file order.
    """
    _check_choice("split", split, SPLITS)
    ds = _find_dataset(dataset)
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DataError(f"{ds.title} folder {directory} does not exist.\n{_how_to_fix(ds)}")
    specs = [ds.files[split, kind] for kind in ("images", "labels")]
    paths = [_find_file(directory, spec) for spec in specs]
    for spec, path in zip(specs, paths, strict=True):
        if path is None:
            raise DataError(
                f"Missing {ds.title} file {directory / spec.gz_name} (the {split} {spec.kind}; "
                f"looked for {', '.join(spec.candidates)}).\n{_how_to_fix(ds)}")
    images, labels = (_read_idx(path, spec, verify_checksum, ds)
                      for spec, path in zip(specs, paths, strict=True))
    if len(images) != len(labels):
        raise DataError(
            f"{paths[0]} holds {len(images):,} images but {paths[1]} holds "
            f"{len(labels):,} labels; the two files do not belong together.")
    return images, labels


def _import_tfds() -> Any:
    """tensorflow_datasets, imported on first use (DataError when absent)."""
    # TFDS 4.9 imports the `importlib_resources` back-port that etils >= 1.15 no longer installs.
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
        raise DataError(
            f"source='tfds' needs TensorFlow and tensorflow-datasets ({e}). Install them with "
            "pip install -e \".[tf]\", or use the TensorFlow-free IDX loader (source='idx')."
        ) from e
    # TF must not reserve GPU memory that JAX needs: the input pipeline only runs on the CPU.
    # (RuntimeError, ValueError: devices already initialised elsewhere in the process.)
    with contextlib.suppress(RuntimeError, ValueError):
        tf.config.set_visible_devices([], "GPU")
    return tfds


def _unreachable(url: str, timeout: float = 10.0) -> str | None:
    """Why ``url`` cannot be reached, or None when a server answered at all."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # a server answered; let TFDS deal with the details
    except (urllib.error.URLError, OSError) as e:
        return str(getattr(e, "reason", e))
    return None


def load_tfds(split: str, *, manual_dir: str | os.PathLike[str] | None = None,
              tfds_dir: str | os.PathLike[str] | None = None,
              dataset: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """One split through the dataset's TFDS builder, prepared first if needed, in IDX file order.

    ``manual_dir`` holds the four ``.gz`` files to prepare from offline (None: TFDS downloads);
    ``tfds_dir`` defaults to ``$JAXMNIST_TFDS_DIR``, else TFDS's own.
    """
    _check_choice("split", split, SPLITS)
    ds = _find_dataset(dataset)
    data_dir = (str(Path(tfds_dir).expanduser()) if tfds_dir
                else os.environ.get(ENV_TFDS_DIR) or None)
    where = data_dir or "TFDS's default data dir"
    if manual_dir is None and _offline():
        # Nothing prepared and no download allowed: say so without importing TensorFlow (slow).
        prepared = Path(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")
        if not (prepared.expanduser() / ds.tfds_name).is_dir():
            raise DataError(f"TFDS {ds.tfds_name} is not prepared in {where}, and "
                            f"${ENV_OFFLINE} forbids downloading")
    tfds = _import_tfds()
    try:
        builder = tfds.builder(ds.tfds_name, data_dir=data_dir)
        if not builder.is_prepared():
            if manual_dir is not None:
                # The extracted copies (55 MB) are only needed while preparing.
                with tempfile.TemporaryDirectory(prefix="jaxmnist-tfds-") as dl:
                    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
                    builder.download_and_prepare(download_dir=dl, download_config=config)
            else:
                if _offline():
                    raise DataError(f"not prepared in {where}, and ${ENV_OFFLINE} forbids "
                                    "downloading")
                # TFDS retries an unreachable host for minutes; fail fast with the fix instead.
                if problem := _unreachable(ds.url + ds.files["test", "labels"].gz_name):
                    raise DataError(f"cannot reach {ds.url} to download ({problem})")
                builder.download_and_prepare()
        dataset = builder.as_dataset(
            split=split, batch_size=-1, as_supervised=True, shuffle_files=False,
            read_config=tfds.ReadConfig(interleave_cycle_length=1, try_autocache=False))
        images, labels = tfds.as_numpy(dataset)
        disable_shuffling = bool(builder.info.disable_shuffling)
    except Exception as e:  # TFDS raises many types; turn them into one actionable message.
        source = f"the files in {manual_dir}" if manual_dir else "a download"
        raise DataError(
            f"TFDS could not prepare or read {ds.tfds_name} in {where} from {source}: "
            f"{type(e).__name__}: {e}\n{_how_to_fix(ds)}") from e

    images = np.asarray(images, dtype=np.uint8).reshape(-1, *IMAGE_SHAPE)
    labels = np.asarray(labels).astype(np.int32)
    expected = ds.files[split, "images"].count
    if len(images) != expected:
        raise DataError(
            f"TFDS {ds.tfds_name} '{split}' in {where} has {len(images):,} examples, expected "
            f"{expected:,}; delete {where}/{ds.tfds_name} and let it be prepared again.")
    if not disable_shuffling:  # TFDS record j is IDX example order[j] (docs/data.md)
        # TFDS sorts by the md5 of split + index as an integer: the digest's bytes sort the same.
        digests = [hashlib.md5(f"{split}{i}".encode()).digest() for i in range(len(images))]
        inverse = np.argsort(np.array(sorted(range(len(images)), key=digests.__getitem__)))
        images, labels = images[inverse], labels[inverse]
    return images, labels


def _check_choice(what: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def cache_dir(dataset: str = "mnist") -> Path:
    """Where ``auto`` downloads ``dataset``'s four files: ``$JAXMNIST_CACHE_DIR/<dataset>``.

    Else ``$XDG_CACHE_HOME/jaxmnist/<dataset>``, else ``~/.cache/jaxmnist/<dataset>``.
    """
    root = (os.environ.get(ENV_CACHE_DIR)
            or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "jaxmnist")
    return Path(root).expanduser() / dataset


def _offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def load_dataset(split: str, *, source: str = "auto",
                 data_dir: str | os.PathLike[str] | None = None, verify_checksum: bool = True,
                 tfds_dir: str | os.PathLike[str] | None = None,
                 dataset: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """A split of ``dataset`` as ``(uint8 [N, 28, 28, 1], int32 [N])`` arrays, in file order.

    ``source="auto"`` tries ``data_dir``, the dataset's variable, an OS package's folder, the
    download cache, then TFDS (docs/data.md); the others use one source. DataError: nothing
    found (the message lists what was tried and the fix), or a corrupt file.
    """
    _check_choice("split", split, SPLITS)
    _check_choice("source", source, SOURCES)
    ds = _find_dataset(dataset)
    if source == "synthetic":
        x, y = synthetic.full_split(split)
        return x.copy(), y.copy()
    env = os.environ.get(ds.env)
    candidates = [
        ("data_dir argument", Path(data_dir).expanduser() if data_dir is not None else None),
        (f"${ds.env}", Path(env).expanduser() if env else None),
        *(("system folder", Path(d)) for d in ds.system_dirs),
    ]

    if source == "idx":
        given = [d for label, d in candidates
                 if d is not None and (label != "system folder" or d.is_dir())]
        if given:  # the first folder given is the one to use
            return load_idx(given[0], split, verify_checksum=verify_checksum, dataset=ds.name)
        raise DataError(
            f"source='idx' needs a folder with the {ds.title} files: pass data_dir=... or set "
            f"{ds.env}.\n{_how_to_fix(ds)}")

    if source == "tfds":
        manual = next((d for _, d in candidates if d is not None
                       and all((d / s.gz_name).is_file() for s in ds.files.values())), None)
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
    # The download cache, its four files fetched first if missing (unless offline).
    folder = cache_dir(ds.name)
    cached = _dir_state(folder, split, ds) == "complete"
    if not cached and _offline():
        tried.append(f"download cache: {folder} is empty, and ${ENV_OFFLINE} forbids downloading")
    elif not cached:
        base_url = os.environ.get(ENV_MIRROR) or ds.url
        size_mb = sum(s.gz_size for s in ds.files.values()) / 1e6
        print(f"jaxmnist: {ds.title} not found locally; downloading its four files ({size_mb:.0f} "
              f"MB, checksummed) from {base_url} into {folder} (once; set ${ENV_OFFLINE}=1 to "
              "never download)", file=sys.stderr, flush=True)
        try:
            download(folder, base_url=base_url, timeout=20.0, dataset=ds.name)
            cached = True
        except DataError as e:
            tried.append(f"download into {folder}: {str(e).splitlines()[0]}")
    if cached:
        return load_idx(folder, split, verify_checksum=verify_checksum, dataset=ds.name)
    try:
        return load_tfds(split, tfds_dir=tfds_dir, dataset=ds.name)
    except DataError as e:
        first_line = str(e).split("\n", 1)[0]
        tried.append(f"TFDS: {first_line}")
    raise DataError(
        f"{ds.title} not found. Tried, in order:\n" + "".join(f"  - {t}\n" for t in tried)
        + _how_to_fix(ds))


def download(directory: str | os.PathLike[str], *, base_url: str | None = None,
             timeout: float = 60.0, dataset: str = "mnist") -> list[Path]:
    """Downloads a dataset's four official ``.gz`` files into ``directory``; their paths.

    Files already there and valid are kept; a recompressed copy passes on its content.
    """
    ds = _find_dataset(dataset)
    base_url = base_url or ds.url
    target = Path(directory).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    names = ", ".join(s.gz_name for s in ds.files.values())
    paths = []
    for spec in ds.files.values():
        path = target / spec.gz_name
        if path.is_file() and _is_official(ds, spec, path.read_bytes()):
            paths.append(path)
            continue
        url = base_url.rstrip("/") + "/" + spec.gz_name
        partial = path.with_name(path.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                partial.write_bytes(response.read())
        except (urllib.error.URLError, OSError) as e:
            partial.unlink(missing_ok=True)
            raise DataError(
                f"Could not download {url}: {e}. Copy the four files ({names}) "
                f"into {target} by other means.") from e
        blob = partial.read_bytes()
        if not _is_official(ds, spec, blob):
            partial.unlink()
            raise DataError(
                f"{url} has {ds.algo} {_digest(ds.algo, blob)}, the official {spec.gz_name} has "
                f"{spec.gz_md5}; try another mirror with --base-url.")
        partial.replace(path)
        paths.append(path)
    return paths
