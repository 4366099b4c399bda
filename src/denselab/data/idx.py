"""Read IDX files, the format Fashion-MNIST and MNIST ship in.

The IDX format (http://yann.lecun.com/exdb/mnist/) is a big-endian header — a magic
number whose third byte is the element type (0x08, unsigned byte) and fourth the number
of dimensions, then one 4-byte size per dimension — followed by the raw bytes. Every
field is checked, so a wrong or damaged file is reported by name instead of turning
into a strange shape deep inside training.
"""

import gzip
import zlib
from pathlib import Path

import numpy as np

from denselab.data.dataset import IMAGE_SIDE, NUM_CLASSES
from denselab.errors import BadInput

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions: count, rows, columns
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension: count
# The four files of a dataset, by split; each may be gzip-compressed (".gz") or plain.
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


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


