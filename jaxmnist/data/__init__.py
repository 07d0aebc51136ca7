"""MNIST-format datasets; the names below are the public surface (``data.load_dataset(...)``).

``sources``: datasets, files, cache, download; ``splits``: a study's splits; ``synthetic``;
``cli``: ``python -m jaxmnist.data``. No jax or tensorflow.
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
