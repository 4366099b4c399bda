"""Shared fixtures: IDX files written by the tests, the real dataset, one trained model."""

import gzip
from pathlib import Path

import numpy as np
import pytest

import denselab  # noqa: F401  (sets the Keras backend before anything imports Keras)
from denselab.data import IMAGES_MAGIC, LABELS_MAGIC, SPLIT_FILES, load_dataset


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """Encode a uint8 array as an IDX file: magic, one big-endian size per dimension, data."""
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_dataset(directory: Path, train_images, train_labels, test_images, test_labels, gz: bool = True) -> Path:
    """Write the four IDX files of a dataset into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"train": (train_images, train_labels), "test": (test_images, test_labels)}
    for split, (images_stem, labels_stem) in SPLIT_FILES.items():
        images, labels = arrays[split]
        for stem, array, magic in ((images_stem, images, IMAGES_MAGIC), (labels_stem, labels, LABELS_MAGIC)):
            data = idx_bytes(array, magic)
            path = directory / (stem + (".gz" if gz else ""))
            path.write_bytes(gzip.compress(data) if gz else data)
    return directory


def random_dataset_arrays(seed: int = 0, train: int = 64, test: int = 16):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (train, 28, 28), dtype=np.uint8), rng.integers(0, 10, train, dtype=np.uint8),
        rng.integers(0, 256, (test, 28, 28), dtype=np.uint8), rng.integers(0, 10, test, dtype=np.uint8),
    )


@pytest.fixture(scope="session")
def fashion():
    """The real Fashion-MNIST, as `make test` installs it (Debian's dataset-fashion-mnist)."""
    return load_dataset("fashion-mnist", allow_download=False)


@pytest.fixture(scope="session")
def fashion_slice_dir(fashion, tmp_path_factory):
    """A directory with the first 6000 training and 1000 test images of the real dataset, for quick CLI runs."""
    small = fashion.subset(train=6000, test=1000)
    return write_idx_dataset(
        tmp_path_factory.mktemp("fashion-slice"),
        small.train_images, small.train_labels, small.test_images, small.test_labels,
    )


@pytest.fixture(scope="session")
def trained_dir(fashion, tmp_path_factory):
    """The exercise's Dense(20) model trained for one epoch on the real data, saved as a run directory."""
    from denselab.model import ModelSpec
    from denselab.train import TrainConfig, save_run, train

    run = train(ModelSpec((20,)), fashion, TrainConfig(epochs=1, seed=7))
    return save_run(run, tmp_path_factory.mktemp("trained"))
