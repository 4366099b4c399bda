"""The validation split: a fixed, stratified part of the training images, held out of training.

Trials are trained on the rest and compared on it; the test set plays no part until the
finalists have been chosen. The split depends only on the labels, its size and its seed,
and its fingerprint is recorded with the search so a rerun can check it is the same.
"""

import hashlib

import numpy as np

from denselab.data.dataset import Dataset
from denselab.errors import BadInput

VALIDATION_IMAGES = 10_000  # a sixth of Fashion-MNIST's 60 000 training images, as large as its test set
SPLIT_SEED = 0


def check_validation_size(count: int, training_images: int | None = None) -> None:
    """BadInput unless `count` is at least one image and, when `training_images` is known, leaves some to train on."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise BadInput(f"--validation must be at least 1 image, got {count}")
    if training_images is not None and count >= training_images:
        raise BadInput(f"--validation {count} leaves no images to train on: there are {training_images:,} "
                       f"training images; choose fewer")


def validation_indices(labels: np.ndarray, count: int, seed: int = SPLIT_SEED) -> np.ndarray:
    """`count` indices into `labels`, in proportion to each class's share, in sorted order."""
    check_validation_size(count, len(labels))
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(labels, return_counts=True)
    # Largest remainders make the per-class counts sum to exactly `count`.
    exact = sizes * count / len(labels)
    taken = np.floor(exact).astype(int)
    taken[np.argsort(-(exact - taken), kind="stable")[: count - taken.sum()]] += 1
    picks = [rng.permutation(np.flatnonzero(labels == label))[:take] for label, take in zip(classes, taken)]
    return np.sort(np.concatenate(picks))


def split_for_search(training: Dataset, count: int = VALIDATION_IMAGES, seed: int = SPLIT_SEED) -> tuple[Dataset, dict]:
    """A dataset to train trials on (the training images minus the split) and score them on (the split).

    `training` holds the training images only; its test arrays are not read. Returns the
    dataset and a record of the split: count, seed and a fingerprint of its indices.
    """
    held_out = validation_indices(training.train_labels, count, seed)
    kept = np.setdiff1d(np.arange(len(training.train_labels)), held_out)
    dataset = Dataset(
        training.name, f"{training.source}, training images without a {count}-image validation split",
        training.train_images[kept], training.train_labels[kept],
        training.train_images[held_out], training.train_labels[held_out], scored_on="validation",
    )
    record = {"count": count, "seed": seed, "stratified": True,
              "indices_sha256": hashlib.sha256(held_out.astype(np.int64).tobytes()).hexdigest()}
    return dataset, record
