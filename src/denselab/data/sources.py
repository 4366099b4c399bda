"""Where a dataset's IDX files are found: --data-dir, $DENSELAB_DATA, Debian's package, Keras."""

import os
import socket
from pathlib import Path

import numpy as np

from denselab.data.dataset import DEFAULT_DATASET, Dataset, check_dataset_name
from denselab.data.idx import (
    SPLIT_FILES,
    has_any_idx_file,
    has_dataset_files,
    load_split,
    missing_idx_files,
)
from denselab.errors import BadInput

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


def _shown(path: Path) -> str:
    """A path as a message shows it: under the home directory as ~/…, as the user knows it."""
    try:
        return "~/" + str(Path(path).relative_to(Path.home()))
    except ValueError:
        return str(path)


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
    name: str = DEFAULT_DATASET,
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


def load_dataset(name: str = DEFAULT_DATASET, data_dir: Path | None = None, allow_download: bool = True) -> Dataset:
    """Find and load a dataset's training and test splits as uint8 arrays."""
    directory, source = find_dataset(name, data_dir, allow_download)
    train_images, train_labels = load_split(directory, "train")
    test_images, test_labels = load_split(directory, "test")
    return Dataset(name, source, train_images, train_labels, test_images, test_labels)


def load_test_split(name: str = DEFAULT_DATASET, data_dir: Path | None = None,
                    allow_download: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """Only a dataset's test images and labels, and where they came from: all that predicting
    and evaluating read, and six times less to decompress than the training split."""
    directory, source = find_dataset(name, data_dir, allow_download)
    return (*load_split(directory, "test"), source)


