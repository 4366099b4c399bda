import gzip
import io

import numpy as np
import pytest
from PIL import Image

from conftest import assert_one_line_error, denselab, idx_bytes, random_dataset_arrays, write_idx_dataset
from denselab.data.dataset import CLASS_NAMES, normalize
from denselab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, SPLIT_FILES, load_split, parse_idx
from denselab.data.sources import find_dataset, load_dataset
from denselab.data.images import image_bytes_to_pixels, load_image_file
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
    given, from_env, system = (
        write_idx_dataset(tmp_path / name, *random_dataset_arrays()) for name in ("given", "env/fashion-mnist", "system")
    )
    monkeypatch.setenv("DENSELAB_DATA", str(tmp_path / "env"))
    assert find_dataset("fashion-mnist", given, system_dirs=(system,)) == (given, f"--data-dir {given}")
    assert find_dataset("fashion-mnist", None, system_dirs=(system,)) == (from_env, f"$DENSELAB_DATA {from_env}")
    monkeypatch.delenv("DENSELAB_DATA")
    assert find_dataset("fashion-mnist", None, system_dirs=(system,)) == (system, f"system package ({system})")


def test_env_data_is_a_root_with_a_folder_per_dataset(tmp_path, no_env_data, monkeypatch):
    fashion_arrays, mnist_arrays = random_dataset_arrays(seed=1), random_dataset_arrays(seed=2)
    write_idx_dataset(tmp_path / "fashion-mnist", *fashion_arrays)
    write_idx_dataset(tmp_path / "mnist", *mnist_arrays)
    monkeypatch.setenv("DENSELAB_DATA", str(tmp_path))
    for name, arrays in (("fashion-mnist", fashion_arrays), ("mnist", mnist_arrays)):
        dataset = load_dataset(name, allow_download=False)
        np.testing.assert_array_equal(dataset.train_images, arrays[0])
        assert dataset.source == f"$DENSELAB_DATA {tmp_path / name}"


def test_env_data_with_fashion_only_is_no_source_of_mnist(tmp_path, no_env_data, monkeypatch):
    write_idx_dataset(tmp_path / "fashion-mnist", *random_dataset_arrays())
    monkeypatch.setenv("DENSELAB_DATA", str(tmp_path))
    with pytest.raises(BadInput) as error:
        load_dataset("mnist", allow_download=False)
    assert str(error.value) == (
        f"$DENSELAB_DATA {tmp_path} has no mnist folder; put mnist's four IDX files in {tmp_path / 'mnist'}/"
    )


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_env_data_in_the_old_layout_says_where_to_move_the_files(tmp_path, no_env_data, monkeypatch, name):
    # The old layout: the four files in the root itself, read as whichever dataset a command named.
    write_idx_dataset(tmp_path, *random_dataset_arrays())
    monkeypatch.setenv("DENSELAB_DATA", str(tmp_path))
    with pytest.raises(BadInput) as error:
        load_dataset(name, allow_download=False)
    message = str(error.value)
    assert f"$DENSELAB_DATA {tmp_path} holds IDX files itself, the old layout" in message
    assert f"move them into {tmp_path / 'fashion-mnist'}/" in message and "\n" not in message


def test_env_data_folder_lacking_a_file_is_named(tmp_path, no_env_data, monkeypatch):
    folder = write_idx_dataset(tmp_path / "mnist", *random_dataset_arrays())
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("DENSELAB_DATA", str(tmp_path))
    with pytest.raises(BadInput, match=f"folder {folder} lacks the mnist IDX files train-labels-idx1-ubyte .*the train split"):
        find_dataset("mnist")
    monkeypatch.setenv("DENSELAB_DATA", str(tmp_path / "absent"))
    with pytest.raises(BadInput, match="DENSELAB_DATA .*absent is not a directory"):
        find_dataset("mnist")


def test_data_dir_prefers_the_dataset_folder_inside_it(tmp_path, no_env_data):
    # One --data-dir can serve a study on both datasets; files directly in it still work.
    direct, fashion_arrays, mnist_arrays = (random_dataset_arrays(seed=seed) for seed in (1, 2, 3))
    write_idx_dataset(tmp_path, *direct)
    write_idx_dataset(tmp_path / "fashion-mnist", *fashion_arrays)
    write_idx_dataset(tmp_path / "mnist", *mnist_arrays)
    for name, arrays in (("fashion-mnist", fashion_arrays), ("mnist", mnist_arrays)):
        dataset = load_dataset(name, tmp_path)
        np.testing.assert_array_equal(dataset.test_labels, arrays[3])
        assert dataset.source == f"--data-dir {tmp_path / name}"
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(BadInput, match=f"--data-dir {tmp_path / 'mnist'} lacks the mnist IDX files t10k-labels"):
        load_dataset("mnist", tmp_path)  # never the files that sit in tmp_path itself


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


# --- degenerate datasets: they parse, but nothing can be trained or tested on them -----------

def write_degenerate_dataset(directory, case):
    """A small valid dataset in `directory`, broken in the way `case` names."""
    train_images, train_labels, test_images, test_labels = random_dataset_arrays()
    if case == "no training items":
        train_images, train_labels = train_images[:0], train_labels[:0]
    elif case == "no test items":
        test_images, test_labels = test_images[:0], test_labels[:0]
    elif case == "one training class":
        train_labels = np.full_like(train_labels, 7)
    write_idx_dataset(directory, train_images, train_labels, test_images, test_labels)
    if case == "test split missing":
        for stem in SPLIT_FILES["test"]:
            (directory / f"{stem}.gz").unlink()
    return directory


DEGENERATE = [
    ("no training items", "train-images-idx3-ubyte.gz holds no images; the train split needs at least one"),
    ("no test items", "t10k-images-idx3-ubyte.gz holds no images; the test split needs at least one"),
    ("one training class", "train-labels-idx1-ubyte.gz holds only label 7; training needs at least two classes"),
    ("test split missing", "lacks the fashion-mnist IDX files t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"),
]


@pytest.mark.parametrize("case, fragment", DEGENERATE, ids=[case for case, _ in DEGENERATE])
def test_degenerate_dataset_is_one_line_naming_the_file(tmp_path, no_env_data, case, fragment):
    directory = write_degenerate_dataset(tmp_path / "data", case)
    with pytest.raises(BadInput) as error:
        load_dataset("fashion-mnist", directory)
    message = str(error.value)
    assert fragment in message and str(directory) in message and "\n" not in message


def test_missing_split_named_by_load_split(tmp_path):
    directory = write_degenerate_dataset(tmp_path, "test split missing")
    with pytest.raises(BadInput, match="has no t10k-images-idx3-ubyte.gz or t10k-images-idx3-ubyte: its test split is missing"):
        load_split(directory, "test")


def test_a_test_split_of_one_class_is_fine(tmp_path, no_env_data):
    train_images, train_labels, test_images, test_labels = random_dataset_arrays()
    write_idx_dataset(tmp_path, train_images, train_labels, test_images, np.full_like(test_labels, 3))
    assert set(load_dataset("fashion-mnist", tmp_path).test_labels) == {3}


@pytest.mark.parametrize("case, fragment", DEGENERATE, ids=[case for case, _ in DEGENERATE])
def test_cli_train_on_a_degenerate_dataset_exits_2(tmp_path, case, fragment):
    directory = write_degenerate_dataset(tmp_path / "data", case)
    env = {"DENSELAB_DATA": ""}  # none from the caller's environment
    result = denselab("train", "--data-dir", directory, "--epochs", "1", "--out", tmp_path / "run", env=env, cwd=tmp_path)
    assert_one_line_error(result, fragment, str(directory))


def test_cli_mnist_is_not_read_from_a_fashion_folder(tmp_path):
    write_idx_dataset(tmp_path / "data" / "fashion-mnist", *random_dataset_arrays())
    env = {"DENSELAB_DATA": str(tmp_path / "data")}
    result = denselab("train", "--dataset", "mnist", "--epochs", "1", "--out", tmp_path / "run", env=env, cwd=tmp_path)
    assert_one_line_error(result, "has no mnist folder", str(tmp_path / "data" / "mnist"))


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
