"""The report's figures: valid PNGs, reproducible to the byte, and arguments checked."""

import functools
import io
import statistics
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from denselab.reports import plots

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def seed_history(epochs: int, rng: np.random.Generator) -> list[dict]:
    """Per-epoch records of one seed, with a falling loss and a rising accuracy."""
    return [
        {"epoch": epoch, "loss": 0.8 / epoch + rng.uniform(0, 0.05),
         "accuracy": 1 - 0.3 / epoch - rng.uniform(0, 0.02), "seconds": rng.uniform(0.5, 1.5)}
        for epoch in range(1, epochs + 1)
    ]


def histories(seed: int) -> dict[str, list[list[dict]]]:
    """Two variants whose seeds stopped at different epochs, and one with a single seed."""
    rng = np.random.default_rng(seed)
    return {
        "dense-20": [seed_history(5, rng), seed_history(3, rng), seed_history(6, rng)],
        "dense-128": [seed_history(4, rng), seed_history(4, rng)],
        "dense-128x64": [seed_history(2, rng)],
    }


def images(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 28, 28), dtype=np.uint8)


def probabilities(seed: int) -> list[float]:
    return np.random.default_rng(seed).dirichlet(np.ones(10)).tolist()


def confusion(seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 30, (10, 10)) + np.diag(rng.integers(500, 900, 10))).tolist()


# One figure per function, drawn from a seed: the same seed must give the same bytes and
# another seed other bytes. Inputs are small because every drawing costs a few tenths of a second.
FIGURES = {
    "learning_curves": lambda seed: plots.learning_curves(histories(seed)),
    "accuracy_vs_parameters": lambda seed: plots.accuracy_vs_parameters(
        [("dense-20", 15910, 0.84 + seed / 1000, 0.004), ("dense-128", 101770, 0.87, 0.003),
         ("dense-128x64", 109386, 0.88, 0.006)]
    ),
    "seconds_per_epoch": lambda seed: plots.seconds_per_epoch(
        [("dense-20", 0.8 + seed / 10, 0.05), ("dense-128", 1.4, 0.1), ("dense-128x64", 1.6, 0.0)]
    ),
    "confusion_matrix": lambda seed: plots.confusion_matrix(confusion(seed), CLASS_NAMES, "dense-20, seed 0"),
    "accuracy_forest": lambda seed: plots.accuracy_forest(
        [("Doubling the neurons", 0.9 + seed / 10, -0.4, 2.3), ("Removing normalization", -4.9, -8.1, -1.7),
         ("One seed each", 0.5, None, None)]
    ),
    "probability_vector": lambda seed: plots.probability_vector(
        images(seed, 1)[0], probabilities(seed), CLASS_NAMES, "Shirt", "test image 3"
    ),
    "misclassified_grid": lambda seed: plots.misclassified_grid(
        images(seed, 5), CLASS_NAMES[:5], CLASS_NAMES[5:], [0.5, 0.7, 0.9, 0.99, 1.0], columns=3
    ),
}
# Other forms of the same figures, checked only for being valid PNGs.
VARIANT_FIGURES = {
    "probability_vector without true label": lambda: plots.probability_vector(
        images(0, 1)[0], probabilities(0), CLASS_NAMES, None, "uploaded image"
    ),
    "misclassified_grid shorter than a row": lambda: plots.misclassified_grid(
        images(0, 2), ["Bag", "Coat"], ["Shirt", "Pullover"], [0.55, 0.75], columns=4
    ),
}


@functools.cache
def first_drawing(name: str, seed: int) -> bytes:
    """The figure's bytes, drawn once per test session and shared by the tests that only read them."""
    return FIGURES[name](seed)


def open_png(data: bytes) -> Image.Image:
    """The decoded image, after checking that `data` is a complete PNG file."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()  # Decodes every pixel, so a truncated file fails here.
    return image


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_a_png_of_report_size(name):
    image = open_png(first_drawing(name, 0))
    width, height = image.size
    # Figures are drawn 8 inches wide at 100 dpi (the forest plot 6, to stand beside the
    # answers), and cropped to what they hold.
    inches = plots.FOREST_WIDTH if name == "accuracy_forest" else plots.FIGURE_WIDTH
    assert 0.85 * inches * plots.DPI <= width <= 1.15 * inches * plots.DPI
    assert 150 <= height <= 900
    # The matplotlib version is left out so that the bytes do not change with it.
    assert "Software" not in image.info


@pytest.mark.parametrize("name", VARIANT_FIGURES)
def test_variant_figure_is_a_png(name):
    width, height = open_png(VARIANT_FIGURES[name]()).size
    assert width >= 200 and height >= 100


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_reproducible_and_depends_on_its_input(name):
    assert FIGURES[name](0) == first_drawing(name, 0)
    assert first_drawing(name, 1) != first_drawing(name, 0)


def test_figures_drawn_in_threads_match_figures_drawn_in_turn():
    # No pyplot means no shared figure registry: concurrent drawing gives the same bytes.
    with ThreadPoolExecutor(max_workers=2) as pool:
        drawn = list(pool.map(FIGURES["seconds_per_epoch"], (0, 1)))
    assert drawn == [first_drawing("seconds_per_epoch", 0), first_drawing("seconds_per_epoch", 1)]


def test_per_epoch_statistics_match_the_statistics_module():
    seed_histories = histories(3)["dense-20"]  # Seeds of 5, 3 and 6 epochs.
    epochs, means, deviations, seed_counts = plots._per_epoch_statistics("dense-20", seed_histories, "loss")
    assert epochs.tolist() == [1, 2, 3, 4, 5, 6]
    assert seed_counts.tolist() == [3, 3, 3, 2, 2, 1]
    for epoch, mean, deviation in zip(epochs, means, deviations):
        values = [history[epoch - 1]["loss"] for history in seed_histories if len(history) >= epoch]
        assert mean == pytest.approx(statistics.mean(values))
        if len(values) > 1:
            assert deviation == pytest.approx(statistics.stdev(values))
        else:
            assert np.isnan(deviation)


def test_empty_misclassified_grid_draws_a_message_panel():
    data = plots.misclassified_grid(np.zeros((0, 28, 28), dtype=np.uint8), [], [], [])
    image = open_png(data)
    assert image.size[0] > 100
    # Not a blank canvas: the message is drawn in dark pixels.
    assert np.asarray(image.convert("L")).min() < 100


BAD_ARGUMENTS = {
    "no variants": lambda: plots.learning_curves({}),
    "variant without seeds": lambda: plots.learning_curves({"dense-20": []}),
    "seeds without records": lambda: plots.learning_curves({"dense-20": [[], []]}),
    "record without loss": lambda: plots.learning_curves({"dense-20": [[{"epoch": 1, "accuracy": 0.8}]]}),
    "epoch 0": lambda: plots.learning_curves({"dense-20": [[{"epoch": 0, "loss": 0.5, "accuracy": 0.8}]]}),
    "no points": lambda: plots.accuracy_vs_parameters([]),
    "zero parameters": lambda: plots.accuracy_vs_parameters([("empty", 0, 0.1, 0.0)]),
    "negative accuracy deviation": lambda: plots.accuracy_vs_parameters([("dense-20", 15910, 0.84, -0.1)]),
    "no bars": lambda: plots.seconds_per_epoch([]),
    "negative seconds": lambda: plots.seconds_per_epoch([("dense-20", -1.0, 0.1)]),
    "no questions": lambda: plots.accuracy_forest([]),
    "estimate outside its interval": lambda: plots.accuracy_forest([("q", 3.0, -1.0, 1.0)]),
    "half an interval": lambda: plots.accuracy_forest([("q", 0.0, -1.0, None)]),
    "infinite difference": lambda: plots.accuracy_forest([("q", float("inf"), None, None)]),
    "matrix not square": lambda: plots.confusion_matrix([[1, 2, 3], [4, 5, 6]], ["a", "b"], "t"),
    "matrix and names differ": lambda: plots.confusion_matrix(confusion(0), CLASS_NAMES[:9], "t"),
    "negative count": lambda: plots.confusion_matrix([[1, -1], [0, 2]], ["a", "b"], "t"),
    "nine probabilities": lambda: plots.probability_vector(
        images(0, 1)[0], probabilities(0)[:9], CLASS_NAMES, None, "t"
    ),
    "probability above one": lambda: plots.probability_vector(
        images(0, 1)[0], [1.5] + [0.0] * 9, CLASS_NAMES, None, "t"
    ),
    "unknown true label": lambda: plots.probability_vector(
        images(0, 1)[0], probabilities(0), CLASS_NAMES, "Hat", "t"
    ),
    "batch instead of one image": lambda: plots.probability_vector(
        images(0, 2), probabilities(0), CLASS_NAMES, None, "t"
    ),
    "fewer names than images": lambda: plots.misclassified_grid(images(0, 3), ["Bag"] * 2, ["Coat"] * 3, [0.5] * 3),
    "fewer confidences than images": lambda: plots.misclassified_grid(
        images(0, 3), ["Bag"] * 3, ["Coat"] * 3, [0.5] * 2
    ),
    "one image instead of a batch": lambda: plots.misclassified_grid(images(0, 1)[0], ["Bag"], ["Coat"], [0.5]),
    "zero columns": lambda: plots.misclassified_grid(images(0, 1), ["Bag"], ["Coat"], [0.5], columns=0),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_arguments_raise_value_error(case):
    with pytest.raises(ValueError):
        BAD_ARGUMENTS[case]()


def colored_pixels(png: bytes, color: str) -> int:
    from matplotlib.colors import to_rgb

    target = np.array(to_rgb(color)) * 255
    pixels = np.asarray(open_png(png).convert("RGB"), dtype=float)
    return int((np.abs(pixels - target).max(axis=-1) < 8).sum())


def test_the_forest_plot_marks_real_differences_only_where_the_interval_excludes_zero():
    noise = [("a", 0.9, -0.4, 2.3), ("b", -1.1, -2.5, 0.2)]
    real = noise + [("c", -4.9, -8.1, -1.7)]
    assert colored_pixels(plots.accuracy_forest(noise), plots.REAL_COLOR) == 0
    assert colored_pixels(plots.accuracy_forest(noise), plots.NOISE_COLOR) > 100
    assert colored_pixels(plots.accuracy_forest(real), plots.REAL_COLOR) > 100
