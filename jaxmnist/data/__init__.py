"""MNIST-format datasets: where the images come from, and how a study splits them.

* :mod:`jaxmnist.data.sources` -- the datasets (``mnist``, ``fashion_mnist``, ``kmnist``) as
  ``uint8 [N, 28, 28, 1]`` images and ``int32 [N]`` labels from their IDX files (each checked
  against its own checksums), TFDS or synthetic digits; the cache and the download.
* :mod:`jaxmnist.data.splits` -- the splits of a study (train / validation / test), THE split
  rules (:func:`split_problems`) and every data key's default (:data:`DATA_DEFAULTS`).
* :mod:`jaxmnist.data.synthetic` -- MNIST-shaped synthetic digits (tests, demos, no network).
* ``python -m jaxmnist.data check|download`` -- :mod:`jaxmnist.data.cli`.

The names below are the package's public surface (``from jaxmnist import data;
data.load_dataset(...)``). Nothing here imports jax or tensorflow at import time.
"""

from jaxmnist.data.sources import (
    DATASET_NAMES,
    DATASETS,
    ENV_CACHE_DIR,
    ENV_DATA_DIR,
    ENV_MIRROR,
    ENV_OFFLINE,
    ENV_TFDS_DIR,
    IMAGE_SHAPE,
    MIRROR_URL,
    OFFICIAL_FILES,
    OFFICIAL_LABEL_COUNTS,
    SOURCES,
    SPLITS,
    DataError,
    Dataset,
    cache_dir,
    class_names,
    clear_cache,
    dataset,
    dataset_or_error,
    download,
    load_dataset,
    load_idx,
    load_tfds,
    tfds_dir_default,
)
from jaxmnist.data.splits import (
    DATA_DEFAULTS,
    MNIST_TEST,
    MNIST_TRAIN,
    SPLIT_KINDS,
    SPLIT_NEEDS,
    Splits,
    expected_sizes,
    keras_validation_split,
    make_splits,
    merged_split,
    random_holdout,
    split_problems,
    take,
)

__all__ = [
    "DATASET_NAMES", "DATASETS", "DATA_DEFAULTS", "ENV_CACHE_DIR", "ENV_DATA_DIR", "ENV_MIRROR",
    "ENV_OFFLINE", "ENV_TFDS_DIR", "IMAGE_SHAPE", "MIRROR_URL", "MNIST_TEST", "MNIST_TRAIN",
    "OFFICIAL_FILES", "OFFICIAL_LABEL_COUNTS", "SOURCES", "SPLITS", "SPLIT_KINDS", "SPLIT_NEEDS",
    "DataError", "Dataset", "Splits", "cache_dir", "class_names",
    "clear_cache", "dataset", "dataset_or_error", "download", "expected_sizes",
    "keras_validation_split", "load_dataset", "load_idx", "load_tfds",
    "make_splits", "merged_split", "random_holdout", "split_problems", "take",
    "tfds_dir_default",
]
