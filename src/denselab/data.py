"""Find and load Fashion-MNIST (or MNIST) from IDX files, normalize it, prepare images.

The IDX format (http://yann.lecun.com/exdb/mnist/) is a big-endian header — a magic
number whose third byte is the element type (0x08, unsigned byte) and fourth the number
of dimensions, then one 4-byte size per dimension — followed by the raw bytes. Every
field is checked, so a wrong or damaged file is reported by name instead of turning
into a strange shape deep inside training.
"""

import gzip
import io
import os
import socket
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denselab.errors import BadInput

IMAGE_SIDE = 28
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions: count, rows, columns
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension: count
NUM_CLASSES = 10

# The four files of a dataset, by split; each may be gzip-compressed (".gz") or plain.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

CLASS_NAMES = {
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    "mnist": tuple(str(digit) for digit in range(10)),
}
DATASETS = tuple(CLASS_NAMES)

# Where each dataset is looked for after --data-dir and $DENSELAB_DATA, in order.
SYSTEM_DIRS = {
    # Debian's package dataset-fashion-mnist.
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
    "mnist": (),
}
INSTALL_HINTS = {
    "fashion-mnist": "install it with 'apt-get install dataset-fashion-mnist' or pass --data-dir DIR",
    "mnist": "pass --data-dir DIR with MNIST's four IDX files, or put them in $DENSELAB_DATA/mnist/",
}

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

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES[self.name]

    def subset(self, train: int | None = None, test: int | None = None) -> "Dataset":
        """The first `train` training and `test` test examples (all where None), for quick runs."""
        return Dataset(
            self.name, self.source,
            self.train_images[:train], self.train_labels[:train],
            self.test_images[:test], self.test_labels[:test], self.scored_on,
        )


def normalize(images: np.ndarray, normalization: str = "scale") -> np.ndarray:
    """Turn uint8 pixels into the model's float32 input: /255.0 ("scale") or raw 0-255 ("none")."""
    check_normalization(normalization)
    images = np.asarray(images, dtype=np.float32)
    return images / np.float32(255.0) if normalization == "scale" else images


def _shown(path: Path) -> str:
    """A path as a message shows it: under the home directory as ~/…, as the user knows it."""
    try:
        return "~/" + str(Path(path).relative_to(Path.home()))
    except ValueError:
        return str(path)


def check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise BadInput(f"unknown normalization {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}")


def check_dataset_name(name: str) -> None:
    if name not in CLASS_NAMES:
        raise BadInput(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


# --- IDX files -------------------------------------------------------------------------

def read_idx_bytes(path: Path) -> bytes:
    """The bytes of an IDX file, decompressed when its name ends in .gz."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise BadInput(f"cannot read {path}: {error.strerror}") from None
    if path.suffix != ".gz":
        return raw
    if raw[:2] != b"\x1f\x8b":
        raise BadInput(f"{path} is named .gz but is not gzip-compressed")
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:
        raise BadInput(f"{path} is a damaged or truncated gzip file ({error})") from None


def parse_idx(data: bytes, expected_magic: int, source: Path) -> np.ndarray:
    """Parse IDX `data` into a uint8 array, checking magic number, dimensions and length."""
    if len(data) < 4:
        raise BadInput(f"{source} is too short to be an IDX file ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise BadInput(f"{source} has magic number 0x{magic:08x}, expected 0x{expected_magic:08x}")
    num_dims = magic & 0xFF
    header_length = 4 + 4 * num_dims
    if len(data) < header_length:
        raise BadInput(f"{source} is truncated inside its header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(num_dims))
    if num_dims == 3 and shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise BadInput(f"{source} holds {shape[1]}x{shape[2]} images; denselab needs 28x28")
    expected_length = header_length + int(np.prod(shape))
    if len(data) != expected_length:
        problem = "truncated" if len(data) < expected_length else "longer than its header says"
        raise BadInput(f"{source} is {problem}: {len(data)} bytes, expected {expected_length} for shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_length).reshape(shape)


def find_idx_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def load_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load and cross-check the images and labels of one split ("train" or "test")."""
    images_stem, labels_stem = SPLIT_FILES[split]
    images_path = find_idx_file(directory, images_stem)
    labels_path = find_idx_file(directory, labels_stem)
    for stem, path in ((images_stem, images_path), (labels_stem, labels_path)):
        if path is None:
            raise BadInput(f"{directory} has no {stem}.gz or {stem}: its {split} split is missing")
    images = parse_idx(read_idx_bytes(images_path), IMAGES_MAGIC, images_path)
    labels = parse_idx(read_idx_bytes(labels_path), LABELS_MAGIC, labels_path)
    if len(images) != len(labels):
        raise BadInput(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise BadInput(f"{labels_path} holds label {labels.max()}; labels must be 0-{NUM_CLASSES - 1}")
    check_not_degenerate(split, images_path, labels_path, labels)
    return images, labels


def check_not_degenerate(split: str, images_path: Path, labels_path: Path, labels: np.ndarray) -> None:
    """Refuse a split that parses but cannot be trained or evaluated on.

    An empty split would otherwise fail deep inside Keras (a StopIteration with no file
    name), and training on a single class learns nothing worth measuring.
    """
    if len(labels) == 0:
        raise BadInput(f"{images_path} holds no images; the {split} split needs at least one")
    classes = np.unique(labels)
    if split == "train" and len(classes) < 2:
        raise BadInput(f"{labels_path} holds only label {classes[0]}; training needs at least two classes")


def missing_idx_files(directory: Path) -> list[str]:
    """The stems of the four IDX files that `directory` lacks (neither plain nor .gz)."""
    return [stem for stems in SPLIT_FILES.values() for stem in stems if find_idx_file(directory, stem) is None]


def has_dataset_files(directory: Path) -> bool:
    return not missing_idx_files(directory)


def has_any_idx_file(directory: Path) -> bool:
    return any(find_idx_file(directory, stem) for stems in SPLIT_FILES.values() for stem in stems)


# --- finding a dataset -----------------------------------------------------------------

def keras_cache_dir(name: str) -> Path:
    """Where Keras's own `load_data()` keeps the dataset's files after downloading them."""
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return keras_home / "datasets" / name


def download_with_keras(name: str) -> Path | None:
    """Let Keras download Fashion-MNIST into its cache; None when the network does not allow it."""
    if name != "fashion-mnist":
        return None  # Keras ships MNIST as one .npz file, not as IDX files.
    import keras

    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)  # a closed network must fail fast, not hang
    try:
        keras.datasets.fashion_mnist.load_data()
    except Exception:
        return None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    directory = keras_cache_dir(name)
    return directory if has_dataset_files(directory) else None


def find_dataset(
    name: str = "fashion-mnist",
    data_dir: Path | None = None,
    allow_download: bool = True,
    system_dirs: tuple[Path, ...] | None = None,
) -> tuple[Path, str]:
    """Find the directory holding the dataset's four IDX files.

    Looks at `data_dir` (its `name`/ subfolder when it has one), then $DENSELAB_DATA/`name`/,
    then the system directories (Debian's package), then Keras's cache, then lets Keras
    download it. A directory the user named explicitly must hold the files: denselab never
    silently uses another one.

    Returns:
        The directory and a few words saying which source it is.
    """
    check_dataset_name(name)
    if data_dir:
        return given_data_dir(Path(data_dir), name)
    if os.environ.get("DENSELAB_DATA"):
        return dataset_under_root(Path(os.environ["DENSELAB_DATA"]), name)
    looked = []
    candidates = [(d, f"system package ({d})") for d in (SYSTEM_DIRS[name] if system_dirs is None else system_dirs)]
    candidates.append((keras_cache_dir(name), f"Keras cache ({keras_cache_dir(name)})"))
    for directory, label in candidates:
        looked.append(_shown(directory))
        if has_dataset_files(directory):
            return directory, label
    if allow_download:
        looked.append("Keras download")
        directory = download_with_keras(name)
        if directory is not None:
            return directory, f"downloaded by Keras ({directory})"
    raise BadInput(f"{name} not found (looked in --data-dir, $DENSELAB_DATA, {', '.join(looked)}); {INSTALL_HINTS[name]}")


def given_data_dir(directory: Path, name: str) -> tuple[Path, str]:
    """--data-dir DIR: DIR/`name`/ when that folder exists, else DIR itself, which must hold the files.

    The subfolder lets one --data-dir serve a study that uses both datasets. When it
    exists it is the only choice, so an incomplete DIR/mnist/ is reported instead of
    quietly reading other files that sit in DIR.
    """
    if not directory.is_dir():
        raise BadInput(f"--data-dir {directory} is not a directory")
    if (directory / name).is_dir():
        directory = directory / name
    check_holds_dataset(directory, f"--data-dir {directory}", name)
    return directory, f"--data-dir {directory}"


def dataset_under_root(root: Path, name: str) -> tuple[Path, str]:
    """$DENSELAB_DATA is a root folder with one subfolder per dataset: ROOT/fashion-mnist/, ROOT/mnist/.

    It is set once for every command, so it must not decide which dataset's files a
    command reads: a `--dataset mnist` run once trained on the Fashion-MNIST files it held.
    """
    if not root.is_dir():
        raise BadInput(f"$DENSELAB_DATA {root} is not a directory")
    directory = root / name
    if not directory.is_dir():
        if has_any_idx_file(root):
            elsewhere = "" if name == "fashion-mnist" else f" ({name} is read from {directory}/)"
            raise BadInput(f"$DENSELAB_DATA {root} holds IDX files itself, the old layout; move them into "
                           f"{root / 'fashion-mnist'}/, as each dataset now has its own folder{elsewhere}")
        raise BadInput(f"$DENSELAB_DATA {root} has no {name} folder; put {name}'s four IDX files in {directory}/")
    check_holds_dataset(directory, f"$DENSELAB_DATA folder {directory}", name)
    return directory, f"$DENSELAB_DATA {directory}"


def check_holds_dataset(directory: Path, where: str, name: str) -> None:
    """Name the IDX files (and so the splits) that a folder the user chose lacks."""
    missing = missing_idx_files(directory)
    if missing:
        splits = [split for split, stems in SPLIT_FILES.items() if set(stems) & set(missing)]
        raise BadInput(f"{where} lacks the {name} IDX files {', '.join(missing)} "
                       f"(plain or .gz; the {' and '.join(splits)} split)")


def load_dataset(name: str = "fashion-mnist", data_dir: Path | None = None, allow_download: bool = True) -> Dataset:
    """Find and load a dataset's training and test splits as uint8 arrays."""
    directory, source = find_dataset(name, data_dir, allow_download)
    train_images, train_labels = load_split(directory, "train")
    test_images, test_labels = load_split(directory, "test")
    return Dataset(name, source, train_images, train_labels, test_images, test_labels)


def load_test_split(name: str = "fashion-mnist", data_dir: Path | None = None,
                    allow_download: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """Only a dataset's test images and labels, and where they came from: all that predicting
    and evaluating read, and six times less to decompress than the training split."""
    directory, source = find_dataset(name, data_dir, allow_download)
    return (*load_split(directory, "test"), source)


# --- image files -----------------------------------------------------------------------

# Larger images are refused before decoding: a few MB of PNG can hold gigabytes of pixels.
MAX_IMAGE_SIDE = 4096


def image_bytes_to_pixels(data: bytes, source: str) -> np.ndarray:
    """Decode a PNG/JPEG (or any image Pillow reads) into the dataset's 28x28 uint8 form.

    The image becomes grayscale, is inverted when its background is light (the dataset
    is light-on-dark), and is fitted into 28x28 keeping its aspect ratio, centred on a
    black background. A 28x28 light-on-dark image passes through unchanged.
    """
    from PIL import Image, UnidentifiedImageError

    too_large = f"{source} is larger than {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels"
    try:
        image = Image.open(io.BytesIO(data))
        if image.width > MAX_IMAGE_SIDE or image.height > MAX_IMAGE_SIDE:
            raise BadInput(f"{source} is {image.width}x{image.height} pixels; the limit is {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}")
        image.load()
    except BadInput:
        raise
    except Image.DecompressionBombError:
        raise BadInput(too_large) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = "not an image" if isinstance(error, UnidentifiedImageError) else f"a damaged image ({error})"
        raise BadInput(f"{source} is {reason}") from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas count as paper: put the drawing on white before going gray.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    gray = np.asarray(image.convert("L"), dtype=np.uint8)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:
        gray = 255 - gray
    return fit_to_square(gray)


def fit_to_square(gray: np.ndarray, side: int = IMAGE_SIDE) -> np.ndarray:
    """Resize a light-on-dark gray image so its longer side is `side`, centred on black."""
    from PIL import Image

    height, width = gray.shape
    if (height, width) == (side, side):
        return gray.copy()
    scale = side / max(height, width)
    new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
    # Shrinking averages each output pixel's area (no ringing around the strong edges
    # of drawings); enlarging a tiny image interpolates smoothly.
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
    resized = Image.fromarray(gray).resize((new_width, new_height), resample)
    square = np.zeros((side, side), dtype=np.uint8)
    top, left = (side - new_height) // 2, (side - new_width) // 2
    square[top: top + new_height, left: left + new_width] = np.asarray(resized)
    return square


def load_image_file(path: Path) -> np.ndarray:
    """Read an image file into the dataset's 28x28 uint8 form (see `image_bytes_to_pixels`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BadInput(f"cannot read image {path}: {error.strerror}") from None
    return image_bytes_to_pixels(data, str(path))
