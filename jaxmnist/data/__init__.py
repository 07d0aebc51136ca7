"""MNIST-format datasets; the names below are the public surface (``data.load_dataset(...)``).

``sources``: datasets, files, cache, download (and the lower-level loaders, ``sources.load_idx``
...); ``splits``: a study's splits; ``synthetic``; ``cli``: ``python -m jaxmnist.data``. No jax
or tensorflow.
"""

from jaxmnist.data.sources import (
    DATASET_NAMES,
    DATASETS,
    OFFICIAL_FILES,
    SOURCES,
    DataError,
    cache_dir,
    class_names,
    dataset,
    download,
    load_dataset,
)
from jaxmnist.data.splits import (
    DATA_DEFAULTS,
    MNIST_TEST,
    MNIST_TRAIN,
    SPLIT_KINDS,
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
    "DATASET_NAMES", "DATASETS", "DATA_DEFAULTS", "MNIST_TEST", "MNIST_TRAIN", "OFFICIAL_FILES",
    "SOURCES", "SPLIT_KINDS", "DataError", "Splits", "cache_dir", "class_names", "dataset",
    "download", "expected_sizes", "keras_validation_split", "load_dataset", "make_splits",
    "merged_split", "random_holdout", "split_problems", "take",
]
