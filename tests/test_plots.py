"""The study report's figures: valid PNGs, reproducible to the byte, what is drawn, and arguments checked."""

import functools
import statistics
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from conftest import open_png
from denselab.reports import plots, prediction_figures, style

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
    "confusion_matrix": lambda seed: prediction_figures.confusion_matrix(
        confusion(seed), CLASS_NAMES, "dense-20, seed 0"
    ),
    "accuracy_forest": lambda seed: plots.accuracy_forest(
        [("Doubling the neurons", 0.9 + seed / 10, -0.4, 2.3), ("Removing normalization", -4.9, -8.1, -1.7),
         ("One seed each", 0.5, None, None)]
    ),
    "probability_vector": lambda seed: prediction_figures.probability_vector(
        images(seed, 1)[0], probabilities(seed), CLASS_NAMES, "Shirt", "test image 3"
    ),
    "misclassified_grid": lambda seed: prediction_figures.misclassified_grid(
        images(seed, 5), CLASS_NAMES[:5], CLASS_NAMES[5:], [0.5, 0.7, 0.9, 0.99, 1.0], columns=3
    ),
}


@functools.cache
def first_drawing(name: str, seed: int) -> bytes:
    """The figure's bytes, drawn once per test session and shared by the tests that only read them."""
    return FIGURES[name](seed)


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_a_png_of_report_size(name):
    image = open_png(first_drawing(name, 0))
    width, height = image.size
    # Figures are drawn 8 inches wide at 100 dpi (the forest plot 6, to stand beside the
    # answers), and cropped to what they hold.
    inches = plots.FOREST_WIDTH if name == "accuracy_forest" else style.FIGURE_WIDTH
    assert 0.85 * inches * style.DPI <= width <= 1.15 * inches * style.DPI
    assert 150 <= height <= 900


def test_probability_vector_names_the_true_class_only_when_it_is_known():
    shirt_first = [0.04] * 6 + [0.7] + [0.0125] * 2 + [0.035]  # class 6 is "Shirt"
    known, unknown = (prediction_figures.probability_vector_figure(
        images(0, 1)[0], shirt_first, CLASS_NAMES, true_label, "test image 3") for true_label in ("Shirt", None))
    for figure, label in ((known, "true: Shirt"), (unknown, "")):
        image_axes, bar_axes = figure.axes
        assert image_axes.get_xlabel() == label and figure.get_suptitle() == "test image 3"
        assert image_axes.get_images()[0].get_array().tolist() == images(0, 1)[0].tolist()
        bars = sorted(bar_axes.patches, key=lambda bar: bar.get_y())
        assert [bar.get_width() for bar in bars] == pytest.approx(shirt_first)
        # The model's top class stands out whether or not the true class is known.
        top, plain = to_rgb(style.HIGHLIGHT_COLOR), to_rgb(style.PLAIN_BAR_COLOR)
        assert [tuple(bar.get_facecolor()[:3]) for bar in bars] == [top if i == 6 else plain for i in range(10)]
    bold = [[label.get_text() for label in figure.axes[1].get_yticklabels() if label.get_fontweight() == "bold"]
            for figure in (known, unknown)]
    assert bold == [["Shirt"], []]
    open_png(style.png_bytes(unknown))


def test_a_misclassified_grid_shorter_than_a_row_keeps_a_full_rows_cells():
    figure = prediction_figures.misclassified_grid_figure(
        images(0, 2), ["Bag", "Coat"], ["Shirt", "Pullover"], [0.55, 0.75], columns=4)
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == ["pred Shirt (55%)\ntrue Bag", "pred Pullover (75%)\ntrue Coat"]
    assert [axes.get_images()[0].get_array().tolist() for axes in figure.axes] == images(0, 2).tolist()
    # Two cells of a four-column row: half the report's width, not blown up to all of it.
    assert figure.get_figwidth() == pytest.approx(style.FIGURE_WIDTH / 2)
    open_png(style.png_bytes(figure))


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
    epochs, means, deviations, seed_counts = plots.per_epoch_statistics("dense-20", seed_histories, "loss")
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
    figure = prediction_figures.misclassified_grid_figure(np.zeros((0, 28, 28), dtype=np.uint8), [], [], [])
    (axes,) = figure.axes
    assert [text.get_text() for text in axes.texts] == ["no misclassified images"] and not axes.axison
    image = open_png(style.png_bytes(figure))
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
    "matrix not square": lambda: prediction_figures.confusion_matrix([[1, 2, 3], [4, 5, 6]], ["a", "b"], "t"),
    "matrix and names differ": lambda: prediction_figures.confusion_matrix(confusion(0), CLASS_NAMES[:9], "t"),
    "negative count": lambda: prediction_figures.confusion_matrix([[1, -1], [0, 2]], ["a", "b"], "t"),
    "nine probabilities": lambda: prediction_figures.probability_vector(
        images(0, 1)[0], probabilities(0)[:9], CLASS_NAMES, None, "t"
    ),
    "probability above one": lambda: prediction_figures.probability_vector(
        images(0, 1)[0], [1.5] + [0.0] * 9, CLASS_NAMES, None, "t"
    ),
    "unknown true label": lambda: prediction_figures.probability_vector(
        images(0, 1)[0], probabilities(0), CLASS_NAMES, "Hat", "t"
    ),
    "batch instead of one image": lambda: prediction_figures.probability_vector(
        images(0, 2), probabilities(0), CLASS_NAMES, None, "t"
    ),
    "fewer names than images": lambda: prediction_figures.misclassified_grid(
        images(0, 3), ["Bag"] * 2, ["Coat"] * 3, [0.5] * 3
    ),
    "fewer confidences than images": lambda: prediction_figures.misclassified_grid(
        images(0, 3), ["Bag"] * 3, ["Coat"] * 3, [0.5] * 2
    ),
    "one image instead of a batch": lambda: prediction_figures.misclassified_grid(
        images(0, 1)[0], ["Bag"], ["Coat"], [0.5]
    ),
    "zero columns": lambda: prediction_figures.misclassified_grid(images(0, 1), ["Bag"], ["Coat"], [0.5], columns=0),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_arguments_raise_value_error(case):
    with pytest.raises(ValueError):
        BAD_ARGUMENTS[case]()


def colored_pixels(png: bytes, color: str) -> int:
    target = np.array(to_rgb(color)) * 255
    pixels = np.asarray(open_png(png).convert("RGB"), dtype=float)
    return int((np.abs(pixels - target).max(axis=-1) < 8).sum())


def test_the_forest_plot_marks_real_differences_only_where_the_interval_excludes_zero():
    noise = [("a", 0.9, -0.4, 2.3), ("b", -1.1, -2.5, 0.2)]
    real = noise + [("c", -4.9, -8.1, -1.7)]
    assert colored_pixels(plots.accuracy_forest(noise), plots.REAL_COLOR) == 0
    assert colored_pixels(plots.accuracy_forest(noise), plots.NOISE_COLOR) > 100
    assert colored_pixels(plots.accuracy_forest(real), plots.REAL_COLOR) > 100
