"""A dataset in memory, its class names and normalization: what every later step reads."""

from dataclasses import dataclass

import numpy as np

from denselab.errors import BadInput

IMAGE_SIDE = 28
NUM_CLASSES = 10

# The four files of a dataset, by split; each may be gzip-compressed (".gz") or plain.
CLASS_NAMES = {
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    "mnist": tuple(str(digit) for digit in range(10)),
}
DATASETS = tuple(CLASS_NAMES)
DEFAULT_DATASET = "fashion-mnist"  # the exercise's; a model without metrics.json is taken to predict it

# Raw pixels are kept as uint8; these say how they become the model's float input.
NORMALIZATIONS = ("scale", "none")


@dataclass(frozen=True)
class Dataset:
    """The four arrays of a dataset as stored (uint8 images, uint8 labels) and where they came from."""

    name: str
    source: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    # What the "test" arrays really are: the test set, or a validation split held out of
    # the training images (a search scores its trials there and never on the test set).
    scored_on: str = "test"
    # A teacher's logits for each training image (N x 10 float32), for students that distill
    # from it (denselab.training.teacher); the run engine attaches them to the data it sends.
    teacher_logits: np.ndarray | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES[self.name]

    def subset(self, train: int | None = None, test: int | None = None) -> "Dataset":
        """The first `train` training and `test` test examples (all where None), for quick runs."""
        return Dataset(
            self.name, self.source,
            self.train_images[:train], self.train_labels[:train],
            self.test_images[:test], self.test_labels[:test], self.scored_on,
            None if self.teacher_logits is None else self.teacher_logits[:train],
        )


def normalize(images: np.ndarray, normalization: str = "scale") -> np.ndarray:
    """Turn uint8 pixels into the model's float32 input: /255.0 ("scale") or raw 0-255 ("none")."""
    check_normalization(normalization)
    images = np.asarray(images, dtype=np.float32)
    return images / np.float32(255.0) if normalization == "scale" else images


def check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise BadInput(f"unknown normalization {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}")


def check_dataset_name(name: str) -> None:
    if name not in CLASS_NAMES:
        raise BadInput(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


