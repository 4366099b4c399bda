"""The figures of one model's predictions: a confusion matrix, one image's probability
vector, and a grid of misclassified images (the search report shows its winner's matrix).

Each figure comes as two public functions: `NAME_figure(...)` builds the matplotlib
Figure, a building block for a caller that reads what was drawn or draws more on it,
and `NAME(...)` renders that Figure as PNG bytes, the form a report embeds. Their
size, colors and rendering are `denselab.reports.style`'s.
"""

import math

import numpy as np
from matplotlib.figure import Figure

from denselab.reports.style import FIGURE_WIDTH, HIGHLIGHT_COLOR, PLAIN_BAR_COLOR, png_bytes


def confusion_matrix_figure(matrix: list[list[int]], class_names: list[str], title: str) -> Figure:
    """A confusion matrix as a heat map with the count written in each cell.

    Args:
        matrix: counts, rows the true class and columns the predicted class.
        class_names: the name of each class, in row (and column) order.
        title: the figure's title.

    Returns:
        The Figure, for `confusion_matrix` to render.
    """
    counts = np.asarray(matrix)
    size = len(class_names)
    if counts.shape != (size, size):
        raise ValueError(f"confusion matrix has shape {counts.shape}; {size} class names need ({size}, {size})")
    if (counts < 0).any():
        raise ValueError("confusion matrix has negative counts")
    figure = Figure(figsize=(FIGURE_WIDTH, FIGURE_WIDTH * 0.85), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(counts, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes, shrink=0.8, label="images")
    # White text on the darker half of the color scale, black on the lighter half.
    dark_above = counts.max() / 2
    for row in range(size):
        for column in range(size):
            count = int(counts[row, column])
            axes.text(
                column, row, str(count), ha="center", va="center", fontsize=8,
                color="white" if count > dark_above else "black",
                # The counts sit inside the axes, so the layout need not measure all of them.
                in_layout=False,
            )
    positions = np.arange(size)
    axes.set_xticks(positions, class_names, rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticks(positions, class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    return figure


def confusion_matrix(matrix: list[list[int]], class_names: list[str], title: str) -> bytes:
    """`confusion_matrix_figure` as PNG bytes, the form a report embeds."""
    return png_bytes(confusion_matrix_figure(matrix, class_names, title))


def probability_vector_figure(
    image: np.ndarray, probabilities: list[float], class_names: list[str], true_label: str | None, title: str,
) -> Figure:
    """One image beside the model's probability for each class.

    Args:
        image: a (28, 28) uint8 image.
        probabilities: one probability per class, in `class_names` order.
        class_names: the name of each class.
        true_label: the image's true class name, or None when it is not known.
        title: the figure's title.

    Returns:
        The Figure, for `probability_vector` to render.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"probability_vector needs one 2-D image, got shape {image.shape}")
    values = np.asarray(probabilities, dtype=np.float64)
    if values.shape != (len(class_names),):
        raise ValueError(f"{values.size} probabilities for {len(class_names)} class names; give one per class")
    if not np.isfinite(values).all() or (values < 0).any() or (values > 1 + 1e-6).any():
        raise ValueError(f"probabilities must lie in [0, 1], got {values.tolist()}")
    if true_label is not None and true_label not in class_names:
        raise ValueError(f"true label {true_label!r} is not one of the class names {class_names}")
    figure = Figure(figsize=(FIGURE_WIDTH, 3.6), layout="constrained")
    image_axes, bar_axes = figure.subplots(1, 2, width_ratios=(1, 1.8))
    image_axes.imshow(image, cmap="gray", vmin=0, vmax=255)
    image_axes.set_xticks([])
    image_axes.set_yticks([])
    if true_label is not None:
        image_axes.set_xlabel(f"true: {true_label}")

    top_class = int(values.argmax())
    positions = np.arange(len(class_names))
    colors = [HIGHLIGHT_COLOR if index == top_class else PLAIN_BAR_COLOR for index in positions]
    bar_axes.barh(positions, values, color=colors, height=0.7)
    for position, value in zip(positions, values):
        # A bar reaching past 0.85 has no room after it, so its value goes inside, in white.
        inside = value > 0.85
        bar_axes.text(
            value - 0.01 if inside else value + 0.01, position, f"{value:.1%}", va="center", fontsize=8,
            ha="right" if inside else "left", color="white" if inside else "black",
        )
    bar_axes.set_xlim(0, 1)
    bar_axes.set_yticks(positions, class_names)
    bar_axes.invert_yaxis()
    if true_label is not None:
        bar_axes.get_yticklabels()[class_names.index(true_label)].set_fontweight("bold")
    bar_axes.set_xlabel("probability")
    bar_axes.grid(alpha=0.3, axis="x")
    figure.suptitle(title)
    return figure


def probability_vector(
    image: np.ndarray, probabilities: list[float], class_names: list[str], true_label: str | None, title: str,
) -> bytes:
    """`probability_vector_figure` as PNG bytes, the form a report embeds."""
    return png_bytes(probability_vector_figure(image, probabilities, class_names, true_label, title))


def misclassified_grid_figure(
    images: np.ndarray, true_names: list[str], predicted_names: list[str], confidences: list[float],
    columns: int = 6,
) -> Figure:
    """A grid of misclassified images, each titled with its prediction and true class.

    Args:
        images: (n, 28, 28) uint8 images; n may be 0.
        true_names: each image's true class name.
        predicted_names: each image's predicted class name.
        confidences: the probability the model gave its prediction, in [0, 1].
        columns: images per row.

    Returns:
        The Figure, for `misclassified_grid` to render.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"misclassified_grid needs images of shape (n, height, width), got {images.shape}")
    count = len(images)
    if not len(true_names) == len(predicted_names) == len(confidences) == count:
        raise ValueError(
            f"misclassified_grid got {count} images, {len(true_names)} true names, "
            f"{len(predicted_names)} predicted names and {len(confidences)} confidences; give one of each per image"
        )
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    if count == 0:
        figure = Figure(figsize=(4, 1.5))
        axes = figure.subplots()
        axes.text(0.5, 0.5, "no misclassified images", ha="center", va="center", fontsize=12)
        axes.set_axis_off()
        return figure

    # Cells keep the size a full row would give them, so a short grid is not blown up.
    cell_width = FIGURE_WIDTH / columns
    used_columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(cell_width * used_columns, cell_width * 1.3 * rows), layout="constrained")
    grid = np.atleast_1d(figure.subplots(rows, used_columns, squeeze=False)).ravel()
    for axes in grid[count:]:
        axes.set_axis_off()
    for axes, image, true_name, predicted_name, confidence in zip(
        grid, images, true_names, predicted_names, confidences,
    ):
        axes.imshow(image, cmap="gray", vmin=0, vmax=255)
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_title(f"pred {predicted_name} ({confidence:.0%})\ntrue {true_name}", fontsize=8)
    return figure


def misclassified_grid(
    images: np.ndarray, true_names: list[str], predicted_names: list[str], confidences: list[float],
    columns: int = 6,
) -> bytes:
    """`misclassified_grid_figure` as PNG bytes, the form a report embeds."""
    return png_bytes(misclassified_grid_figure(images, true_names, predicted_names, confidences, columns))
