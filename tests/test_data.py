import gzip
import io

import numpy as np
import pytest
from PIL import Image

from conftest import idx_bytes, random_dataset_arrays, write_idx_dataset
from denselab.data import (
    CLASS_NAMES,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    find_dataset,
    image_bytes_to_pixels,
    load_dataset,
    load_image_file,
    normalize,
    parse_idx,
)
from denselab.errors import BadInput


@pytest.fixture
def no_env_data(monkeypatch, tmp_path):
    """No $DENSELAB_DATA and an empty Keras home, so only what a test names is found."""
    monkeypatch.delenv("DENSELAB_DATA", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))


# --- IDX parsing -----------------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_loads_what_was_written_gzip_or_plain(tmp_path, no_env_data, gz):
    arrays = random_dataset_arrays()
    write_idx_dataset(tmp_path, *arrays, gz=gz)
    dataset = load_dataset("fashion-mnist", tmp_path)
    for loaded, written in zip(
        (dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels), arrays
    ):
        np.testing.assert_array_equal(loaded, written)
    assert dataset.source == f"--data-dir {tmp_path}"
    assert dataset.class_names == CLASS_NAMES["fashion-mnist"]


def test_wrong_magic_number_names_file(tmp_path, no_env_data):
    write_idx_dataset(tmp_path, *random_dataset_arrays())
    labels = np.zeros(64, dtype=np.uint8)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels, 0x00000901)))
    with pytest.raises(BadInput, match="train-labels-idx1-ubyte.gz has magic number 0x00000901, expected 0x00000801"):
        load_dataset("fashion-mnist", tmp_path)


def test_images_file_with_labels_magic_is_rejected():
    with pytest.raises(BadInput, match="magic number 0x00000801, expected 0x00000803"):
        parse_idx(idx_bytes(np.zeros(3, np.uint8), LABELS_MAGIC), IMAGES_MAGIC, "images.idx")


@pytest.mark.parametrize("cut", [1, 100, 5000])
def test_truncated_file(tmp_path, no_env_data, cut):
    write_idx_dataset(tmp_path, *random_dataset_arrays(), gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(BadInput, match="train-images-idx3-ubyte is truncated"):
        load_dataset("fashion-mnist", tmp_path)


def test_truncated_inside_header():
    data = idx_bytes(np.zeros((2, 28, 28), np.uint8), IMAGES_MAGIC)[:9]
    with pytest.raises(BadInput, match="truncated inside its header"):
        parse_idx(data, IMAGES_MAGIC, "x")


def test_longer_than_header_says():
    data = idx_bytes(np.zeros((2, 28, 28), np.uint8), IMAGES_MAGIC) + b"\0"
    with pytest.raises(BadInput, match="longer than its header says"):
        parse_idx(data, IMAGES_MAGIC, "x")


def test_not_gzip_although_named_gz(tmp_path, no_env_data):
    write_idx_dataset(tmp_path, *random_dataset_arrays())
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.decompress(path.read_bytes()))
    with pytest.raises(BadInput, match="t10k-images-idx3-ubyte.gz is named .gz but is not gzip-compressed"):
        load_dataset("fashion-mnist", tmp_path)


def test_truncated_gzip(tmp_path, no_env_data):
    write_idx_dataset(tmp_path, *random_dataset_arrays())
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(BadInput, match="train-images-idx3-ubyte.gz is a damaged or truncated gzip file"):
        load_dataset("fashion-mnist", tmp_path)


def test_image_and_label_counts_differ(tmp_path, no_env_data):
    train_images, train_labels, test_images, test_labels = random_dataset_arrays()
    write_idx_dataset(tmp_path, train_images, train_labels[:-1], test_images, test_labels)
    with pytest.raises(BadInput, match="has 64 images but .*train-labels-idx1-ubyte.gz has 63 labels"):
        load_dataset("fashion-mnist", tmp_path)


def test_images_not_28x28(tmp_path, no_env_data):
    write_idx_dataset(tmp_path, *random_dataset_arrays())
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros((16, 32, 32), np.uint8), IMAGES_MAGIC))
    )
    with pytest.raises(BadInput, match="holds 32x32 images; denselab needs 28x28"):
        load_dataset("fashion-mnist", tmp_path)


def test_label_out_of_range(tmp_path, no_env_data):
    train_images, train_labels, test_images, test_labels = random_dataset_arrays()
    train_labels[3] = 10
    write_idx_dataset(tmp_path, train_images, train_labels, test_images, test_labels)
    with pytest.raises(BadInput, match="holds label 10"):
        load_dataset("fashion-mnist", tmp_path)


def test_missing_file_is_named(tmp_path, no_env_data):
    write_idx_dataset(tmp_path, *random_dataset_arrays())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(BadInput, match="lacks the fashion-mnist IDX files"):
        load_dataset("fashion-mnist", tmp_path)


# --- where datasets are looked for ---------------------------------------------------------

def test_search_order_data_dir_then_env_then_system(tmp_path, no_env_data, monkeypatch):
    given, from_env, system = (write_idx_dataset(tmp_path / name, *random_dataset_arrays()) for name in ("given", "env", "system"))
    monkeypatch.setenv("DENSELAB_DATA", str(from_env))
    assert find_dataset("fashion-mnist", given, system_dirs=(system,)) == (given, f"--data-dir {given}")
    assert find_dataset("fashion-mnist", None, system_dirs=(system,)) == (from_env, f"$DENSELAB_DATA {from_env}")
    monkeypatch.delenv("DENSELAB_DATA")
    assert find_dataset("fashion-mnist", None, system_dirs=(system,)) == (system, f"system package ({system})")


def test_keras_cache_comes_after_system_dirs(tmp_path, no_env_data):
    cache = write_idx_dataset(tmp_path / "keras-home" / "datasets" / "fashion-mnist", *random_dataset_arrays())
    directory, source = find_dataset("fashion-mnist", None, allow_download=False, system_dirs=(tmp_path / "none",))
    assert directory == cache and source.startswith("Keras cache")


def test_not_found_says_where_it_looked_and_how_to_install(tmp_path, no_env_data):
    with pytest.raises(BadInput) as error:
        find_dataset("fashion-mnist", None, allow_download=False, system_dirs=(tmp_path / "nowhere",))
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message and "keras-home" in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_explicit_directory_never_falls_back(tmp_path, no_env_data):
    with pytest.raises(BadInput, match="--data-dir .* is not a directory"):
        find_dataset("fashion-mnist", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="--data-dir .*empty lacks the fashion-mnist IDX files"):
        find_dataset("fashion-mnist", tmp_path / "empty")


def test_unknown_dataset():
    with pytest.raises(BadInput, match="unknown dataset 'cifar'"):
        find_dataset("cifar")


def test_mnist_through_the_same_loader_with_digit_names(tmp_path, no_env_data):
    write_idx_dataset(tmp_path, *random_dataset_arrays(seed=3))
    dataset = load_dataset("mnist", tmp_path)
    assert dataset.class_names == tuple("0123456789")
    assert dataset.train_images.shape == (64, 28, 28)


def test_real_fashion_mnist_shapes(fashion):
    assert fashion.train_images.shape == (60000, 28, 28) and fashion.test_images.shape == (10000, 28, 28)
    assert fashion.train_images.dtype == np.uint8
    assert np.bincount(fashion.test_labels).tolist() == [1000] * 10


# --- normalization -----------------------------------------------------------------------

def test_normalizations():
    pixels = np.array([[0, 51, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(normalize(pixels, "scale"), np.array([[0, 0.2, 1]], np.float32))
    assert normalize(pixels, "none").dtype == np.float32
    np.testing.assert_array_equal(normalize(pixels, "none"), [[0, 51, 255]])
    with pytest.raises(BadInput, match="unknown normalization 'minmax'"):
        normalize(pixels, "minmax")


# --- image files -------------------------------------------------------------------------

def png_bytes(pixels: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_dataset_image_saved_as_png_comes_back_unchanged(fashion, tmp_path):
    image = fashion.test_images[0]
    path = tmp_path / "test0.png"
    path.write_bytes(png_bytes(image))
    np.testing.assert_array_equal(load_image_file(path), image)


def test_light_background_photo_is_inverted_and_fitted(fashion):
    # A 4x larger, dark-on-light, RGB version of a dataset image should come back close to it.
    image = fashion.test_images[1]
    photo = np.asarray(Image.fromarray(255 - image).resize((112, 112), Image.Resampling.NEAREST))
    pixels = image_bytes_to_pixels(png_bytes(photo, "RGB"), "photo.png")
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
    assert np.abs(pixels.astype(int) - image.astype(int)).max() <= 1


def test_aspect_ratio_kept_and_centred():
    wide = np.full((10, 40), 200, dtype=np.uint8)  # light, 4:1, on no border: inverted to dark
    wide[2:8, 2:38] = 0
    pixels = image_bytes_to_pixels(png_bytes(wide), "wide.png")
    rows_with_ink = np.flatnonzero(pixels.max(axis=1) > 0)
    assert 6 <= len(rows_with_ink) <= 8  # 10 rows scaled by 28/40
    assert abs(rows_with_ink.mean() - 13.5) <= 1  # vertically centred


def test_transparent_drawing_counts_as_paper():
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)  # fully transparent black...
    rgba[10:18, 10:18] = (0, 0, 0, 255)  # ...with an opaque black square drawn on it
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    pixels = image_bytes_to_pixels(buffer.getvalue(), "drawing.png")
    assert pixels[14, 14] == 255 and pixels[0, 0] == 0


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(BadInput, match="notes.png is not an image"):
        load_image_file(path)


def test_truncated_image(fashion):
    data = png_bytes(np.tile(fashion.test_images[0], (4, 4)))
    with pytest.raises(BadInput, match="cut.png is a damaged image"):
        image_bytes_to_pixels(data[: len(data) // 2], "cut.png")


def test_missing_image_file(tmp_path):
    with pytest.raises(BadInput, match="cannot read image .*absent.png"):
        load_image_file(tmp_path / "absent.png")
