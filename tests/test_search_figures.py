"""The search report's figures: what is drawn where, read back from the axes and from the PNG's pixels."""

import functools
import math
from collections import Counter

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb

from conftest import open_png
from denselab.reports import search_figures as figures
from denselab.reports import style

# Listed out of size order, so that drawing the front in size order is the figure's doing.
# By hand: t0004, t0001, t0005 and t0007 are each more accurate than every smaller trial.
POINTS = [
    {"name": "t0001", "int8_bytes": 40_000, "val_accuracy_int8": 0.81, "pareto": True, "winner": False},
    {"name": "t0002", "int8_bytes": 60_000, "val_accuracy_int8": 0.79, "pareto": False, "winner": False},
    {"name": "t0003", "int8_bytes": 250_000, "val_accuracy_int8": 0.80, "pareto": False, "winner": False},
    {"name": "t0004", "int8_bytes": 12_000, "val_accuracy_int8": 0.76, "pareto": True, "winner": False},
    {"name": "t0005", "int8_bytes": 300_000, "val_accuracy_int8": 0.85, "pareto": True, "winner": True},
    {"name": "t0006", "int8_bytes": 1_400_000, "val_accuracy_int8": 0.84, "pareto": False, "winner": False},
    {"name": "t0007", "int8_bytes": 2_000_000, "val_accuracy_int8": 0.87, "pareto": True, "winner": False},
]
LIMIT_BYTES = 1_048_576 - 100_000
TARGET = "Arduino Nano 33 BLE Sense"
IMPORTANCES = {"dropout": 0.12, "learning_rate": 0.52, "batch_size": 0.05, "hidden_units": 0.31}


def kilobytes(point: dict) -> float:
    return point["int8_bytes"] / 1024


@functools.cache
def pareto_drawing():
    """The Figure and its PNG, drawn once and shared by the tests that only read them."""
    figure = figures.pareto_front_figure(POINTS, LIMIT_BYTES, TARGET)
    return figure, style.png_bytes(figure)


@functools.cache
def importances_drawing():
    figure = figures.importances_figure(IMPORTANCES, "Hyperparameter importances")
    return figure, style.png_bytes(figure)


def png_pixels(data: bytes) -> np.ndarray:
    """The RGB pixels of a complete PNG file (conftest's open_png checks it)."""
    return np.asarray(open_png(data).convert("RGB"))


def to_pixel(figure, pixels: np.ndarray, axes, x: float, y: float) -> tuple[int, int]:
    """(column, row) in the saved PNG of the data point (x, y) of `axes`.

    The PNG is cropped to the figure's tight bounding box plus savefig's padding, which
    only moves the origin: display coordinates are pixels from the figure's lower left.
    """
    # Display coordinates are in pixels of figure.dpi; the PNG's are of style.DPI.
    figure.set_dpi(style.DPI)
    renderer = FigureCanvasAgg(figure).get_renderer()
    box = figure.get_tightbbox(renderer).padded(matplotlib.rcParams["savefig.pad_inches"])
    left, top = box.x0 * style.DPI, box.y1 * style.DPI
    # The crop is the one savefig made only if the sizes agree.
    assert abs(pixels.shape[1] - box.width * style.DPI) <= 1 and abs(pixels.shape[0] - box.height * style.DPI) <= 1
    display_x, display_y = axes.transData.transform((x, y))
    return round(display_x - left), round(top - display_y)


def near(color, expected_rgb, tolerance=3) -> bool:
    return all(abs(int(channel) - round(255 * value)) <= tolerance for channel, value in zip(color, expected_rgb))


def most_common_color(pixels: np.ndarray) -> tuple[int, ...]:
    return Counter(map(tuple, pixels.reshape(-1, 3).tolist())).most_common(1)[0][0]


@pytest.mark.parametrize("drawing", [pareto_drawing, importances_drawing])
def test_figure_is_a_nonblank_png_of_report_size(drawing):
    pixels = png_pixels(drawing()[1])
    height, width, _ = pixels.shape
    assert 700 <= width <= 900 and 150 <= height <= 900
    ink = (pixels < 200).any(axis=2)
    assert ink.mean() > 0.02, "hardly anything is drawn"


def test_figures_are_reproducible_and_depend_on_their_input():
    assert figures.pareto_front(POINTS, LIMIT_BYTES, TARGET) == pareto_drawing()[1]
    assert figures.pareto_front(POINTS, LIMIT_BYTES // 2, TARGET) != pareto_drawing()[1]
    assert figures.importances(IMPORTANCES, "Hyperparameter importances") == importances_drawing()[1]


def test_limit_line_sits_at_the_limit_and_everything_beyond_is_shaded():
    figure, _ = pareto_drawing()
    axes = figure.axes[0]
    (limit_line,) = [line for line in axes.get_lines() if "flash limit" in line.get_label()]
    assert limit_line.get_label() == f"{TARGET}: flash limit for the model"
    assert list(limit_line.get_xdata()) == [LIMIT_BYTES / 1024] * 2
    assert limit_line.get_linestyle() == "--"
    (shade,) = axes.patches
    assert shade.get_x() == pytest.approx(LIMIT_BYTES / 1024)
    assert shade.get_x() + shade.get_width() == pytest.approx(axes.get_xlim()[1])
    left, right = axes.get_xlim()
    assert left < min(map(kilobytes, POINTS)) and right > max(map(kilobytes, POINTS))
    assert axes.get_xscale() == "log"


def test_step_line_joins_exactly_the_pareto_points_in_size_order():
    axes = pareto_drawing()[0].axes[0]
    (front_line,) = [line for line in axes.get_lines() if line.get_label() == "Pareto front"]
    front = sorted((point for point in POINTS if point["pareto"]), key=kilobytes)
    assert [point["name"] for point in front] == ["t0004", "t0001", "t0005", "t0007"]
    assert list(front_line.get_xdata()) == [kilobytes(point) for point in front]
    assert list(front_line.get_ydata()) == [point["val_accuracy_int8"] for point in front]
    # steps-post: flat until the next front point's size, as a front of best accuracy is.
    assert front_line.get_drawstyle() == "steps-post"


def test_other_trials_are_light_grey_points():
    axes = pareto_drawing()[0].axes[0]
    (others,) = [collection for collection in axes.collections if collection.get_label() == "other trials"]
    expected = [(kilobytes(point), point["val_accuracy_int8"]) for point in POINTS if not point["pareto"]]
    np.testing.assert_allclose(others.get_offsets(), expected)
    assert tuple(others.get_facecolor()[0][:3]) == to_rgb(figures.OTHER_TRIAL_COLOR)


def test_winner_is_annotated_with_its_name_and_in_the_legend():
    figure, _ = pareto_drawing()
    axes = figure.axes[0]
    (annotation,) = axes.texts
    assert annotation.get_text() == "t0005"
    assert annotation.xy == (kilobytes(POINTS[4]), 0.85)
    legend_texts = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "winner: t0005" in legend_texts and "Pareto front" in legend_texts
    assert axes.get_title() == f"Trials for {TARGET}: int8 validation accuracy against size"
    assert "KB" in axes.get_xlabel()


def test_pixels_show_the_winner_the_limit_and_the_shade_where_the_axes_put_them():
    figure, data = pareto_drawing()
    pixels = png_pixels(data)
    axes = figure.axes[0]

    # The middle of each trial's marker, a few pixels across, has the color of its kind.
    for point in POINTS:
        column, row = to_pixel(figure, pixels, axes, kilobytes(point), point["val_accuracy_int8"])
        kind = "WINNER_COLOR" if point["winner"] else "PARETO_COLOR" if point["pareto"] else "OTHER_TRIAL_COLOR"
        middle = most_common_color(pixels[row - 1:row + 2, column - 1:column + 2])
        assert near(middle, to_rgb(getattr(figures, kind))), (point["name"], kind, middle)

    (bottom, top) = axes.get_ylim()
    limit_column, top_row = to_pixel(figure, pixels, axes, LIMIT_BYTES / 1024, top)
    right_column, bottom_row = to_pixel(figure, pixels, axes, axes.get_xlim()[1], bottom)
    # The dashed line: about half of its column is drawn in the limit's color.
    line_column = pixels[top_row + 2:bottom_row - 2, limit_column]
    red = [near(color, to_rgb(figures.LIMIT_COLOR), tolerance=40) for color in line_column]
    assert 0.3 < np.mean(red) < 0.9

    # Beyond the limit the background is the limit's color laid over white at BEYOND_LIMIT_ALPHA ...
    alpha = figures.BEYOND_LIMIT_ALPHA
    shaded = [1 - alpha + alpha * channel for channel in to_rgb(figures.LIMIT_COLOR)]
    beyond = pixels[top_row + 3:bottom_row - 3, limit_column + 4:right_column - 3]
    assert near(most_common_color(beyond), shaded, tolerance=2)
    # ... and before it, white.
    left_column, _ = to_pixel(figure, pixels, axes, axes.get_xlim()[0], top)
    before = pixels[top_row + 3:bottom_row - 3, left_column + 3:limit_column - 4]
    assert most_common_color(before) == (255, 255, 255)


def test_without_limit_or_winner_nothing_of_them_is_drawn():
    points = [dict(point, winner=False) for point in POINTS]
    figure = figures.pareto_front_figure(points, None, TARGET)
    axes = figure.axes[0]
    assert not axes.patches and not axes.texts
    assert not [line for line in axes.get_lines() if "flash limit" in line.get_label()]
    assert png_pixels(style.png_bytes(figure)).shape[1] > 700


def test_one_trial_draws_a_labelled_axis():
    point = {"name": "t0000", "int8_bytes": 50_000, "val_accuracy_int8": 0.8, "pareto": True, "winner": True}
    figure = figures.pareto_front_figure([point], None, TARGET)
    left, right = figure.axes[0].get_xlim()
    assert left < 50_000 / 1024 < right
    open_png(style.png_bytes(figure))


def test_importance_bars_are_largest_first_and_labelled_with_their_percentages():
    figure, _ = importances_drawing()
    axes = figure.axes[0]
    expected = sorted(IMPORTANCES.items(), key=lambda item: -item[1])
    bars = sorted(axes.patches, key=lambda bar: bar.get_y())
    # The y axis is inverted, so the smallest y is the top bar.
    assert axes.yaxis_inverted()
    assert [bar.get_width() for bar in bars] == [value for _, value in expected]
    assert [label.get_text() for label in axes.get_yticklabels()] == [name for name, _ in expected]
    assert [text.get_text() for text in sorted(axes.texts, key=lambda text: text.get_position()[1])] == [
        "52.0%", "31.0%", "12.0%", "5.0%",
    ]


def test_importance_bars_in_pixels_are_as_long_as_their_values():
    figure, data = importances_drawing()
    pixels = png_pixels(data)
    axes = figure.axes[0]
    blue = to_rgb(figures.PLAIN_BAR_COLOR)
    lengths = []
    for position in range(len(IMPORTANCES)):
        column, row = to_pixel(figure, pixels, axes, 0, position)
        lengths.append(sum(near(color, blue) for color in pixels[row, column:]))
    longest = max(IMPORTANCES.values())
    for length, value in zip(lengths, sorted(IMPORTANCES.values(), reverse=True)):
        assert length == pytest.approx(lengths[0] * value / longest, abs=2)


def test_equal_importances_are_ordered_by_name():
    figure = figures.importances_figure({"b": 0.25, "a": 0.25, "c": 0.5}, "t")
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == ["c", "a", "b"]


def point_without(key: str) -> dict:
    return {name: value for name, value in POINTS[0].items() if name != key}


BAD_ARGUMENTS = {
    "no trials": lambda: figures.pareto_front([], LIMIT_BYTES, TARGET),
    "trial without a size": lambda: figures.pareto_front([point_without("int8_bytes")], LIMIT_BYTES, TARGET),
    "trial without winner flag": lambda: figures.pareto_front([point_without("winner")], LIMIT_BYTES, TARGET),
    "two winners": lambda: figures.pareto_front([dict(point, winner=True) for point in POINTS[:2]], None, TARGET),
    "zero bytes": lambda: figures.pareto_front([dict(POINTS[0], int8_bytes=0)], None, TARGET),
    "accuracy NaN": lambda: figures.pareto_front([dict(POINTS[0], val_accuracy_int8=math.nan)], None, TARGET),
    "negative limit": lambda: figures.pareto_front(POINTS, -1, TARGET),
    "no importances": lambda: figures.importances({}, "t"),
    "negative importance": lambda: figures.importances({"dropout": -0.1}, "t"),
    "importance NaN": lambda: figures.importances({"dropout": math.nan}, "t"),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_arguments_raise_value_error(case):
    with pytest.raises(ValueError):
        BAD_ARGUMENTS[case]()
