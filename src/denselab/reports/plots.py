"""The figures of a study report, each returned as PNG bytes.

Every function builds its own `matplotlib.figure.Figure` instead of going through
pyplot: pyplot keeps a global registry of open figures, which is neither thread-safe
nor needed for a headless report. Saving as PNG renders with Agg, so no display is used.
"""

import io
import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, LogLocator, MaxNLocator, NullFormatter

# 8 inches at 100 dpi gives figures about 800 px wide, readable in a report page.
FIGURE_WIDTH = 8.0
DPI = 100
# One color per variant, shared by every panel of a figure so a variant is easy to follow.
VARIANT_COLORS = (
    "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
    "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan",
)
HIGHLIGHT_COLOR = "tab:orange"
PLAIN_BAR_COLOR = "tab:blue"
# Four variant names of about 20 characters fit side by side in an 800 px legend row.
LEGEND_MAX_COLUMNS = 4
# Points closer than this (in decades of parameter count) would write their names over
# each other's error bars, so the left one of such a pair is labelled on its left side.
CROWDED_DECADES = 0.15
# Up to this many decades of parameter counts, 1-2-5 ticks fit an 800 px axis.
DENSE_TICK_DECADES = 2.5


def _png_bytes(figure: Figure) -> bytes:
    """Render `figure` as PNG bytes.

    The "Software" metadata is dropped so that the bytes depend only on the drawing,
    not on the matplotlib version, which keeps the output reproducible.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _variant_color(index: int) -> str:
    return VARIANT_COLORS[index % len(VARIANT_COLORS)]


def _check_history_record(variant: str, record: dict) -> None:
    missing = {"epoch", "loss", "accuracy"} - set(record)
    if missing:
        raise ValueError(f"history record of variant {variant!r} lacks {sorted(missing)}: {record!r}")
    if int(record["epoch"]) < 1:
        raise ValueError(f"history record of variant {variant!r} has epoch {record['epoch']}; epochs start at 1")


def _per_epoch_statistics(variant: str, seed_histories: list[list[dict]], metric: str):
    """Mean and standard deviation of `metric` at each epoch, over the seeds that reached it.

    Args:
        variant: the variant's name, for error messages.
        seed_histories: one list of per-epoch records per seed.
        metric: the record key to summarize, "loss" or "accuracy".

    Returns:
        (epochs, means, deviations, seed_counts) as numpy arrays sorted by epoch;
        a deviation is NaN where only one seed reached that epoch.
    """
    values_by_epoch: dict[int, list[float]] = {}
    for history in seed_histories:
        for record in history:
            _check_history_record(variant, record)
            values_by_epoch.setdefault(int(record["epoch"]), []).append(float(record[metric]))
    if not values_by_epoch:
        raise ValueError(f"variant {variant!r} has no epoch records in any seed")
    epochs = np.array(sorted(values_by_epoch))
    values = [np.array(values_by_epoch[epoch]) for epoch in epochs]
    means = np.array([epoch_values.mean() for epoch_values in values])
    # The seeds are a sample of all possible seeds, hence the sample deviation (ddof=1).
    deviations = np.array([epoch_values.std(ddof=1) if len(epoch_values) > 1 else np.nan for epoch_values in values])
    seed_counts = np.array([len(epoch_values) for epoch_values in values])
    return epochs, means, deviations, seed_counts


def learning_curves(histories: dict[str, list[list[dict]]]) -> bytes:
    """Training loss and accuracy against epoch, mean ± one standard deviation over seeds.

    Args:
        histories: variant name -> one list per seed of per-epoch records, each a dict
            with "epoch" (1-based), "loss", "accuracy" and "seconds". Seeds may have
            stopped at different epochs; each epoch averages the seeds that reached it.

    Returns:
        The figure as PNG bytes.
    """
    if not histories:
        raise ValueError("learning_curves needs at least one variant; histories is empty")
    for variant, seed_histories in histories.items():
        if not seed_histories:
            raise ValueError(f"variant {variant!r} has no seeds in histories")
    # Every statistic is computed before drawing starts, so bad records fail fast.
    curves = {
        (variant, metric): _per_epoch_statistics(variant, seed_histories, metric)
        for variant, seed_histories in histories.items() for metric in ("loss", "accuracy")
    }
    figure = Figure(figsize=(FIGURE_WIDTH, 3.8), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for index, variant in enumerate(histories):
        color = _variant_color(index)
        for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
            epochs, means, deviations, seed_counts = curves[variant, metric]
            axes.plot(epochs, means, color=color, marker="o", markersize=3, linewidth=1.5, label=variant)
            # where= leaves out the band at epochs only one seed reached: one value has no spread.
            spread = np.nan_to_num(deviations)
            axes.fill_between(
                epochs, means - spread, means + spread, where=seed_counts > 1,
                color=color, alpha=0.2, linewidth=0,
            )
    for axes, name in ((loss_axes, "Training loss"), (accuracy_axes, "Training accuracy")):
        axes.set_title(name)
        axes.set_xlabel("epoch")
        axes.set_ylabel(name.split()[-1])
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    # One legend below both panels, where it cannot cover any curve, its entries spread
    # evenly over the fewest rows that hold them.
    rows = math.ceil(len(histories) / LEGEND_MAX_COLUMNS)
    figure.legend(
        *loss_axes.get_legend_handles_labels(), loc="outside lower center",
        ncols=math.ceil(len(histories) / rows), frameon=False,
    )
    return _png_bytes(figure)


def _crowded_on_the_right(parameter_counts: list[int]) -> list[bool]:
    """For each point, whether another point lies just to its right on a log axis."""
    decades = np.log10(np.asarray(parameter_counts, dtype=np.float64))
    return [
        bool(((decades > decade) & (decades - decade < CROWDED_DECADES)).any()) for decade in decades
    ]


def _use_parameter_count_axis(axes, parameter_counts: list[int]) -> None:
    """Make the x axis a log axis whose ticks read "20k" rather than as powers of ten.

    Over a few decades 1, 2 and 5 times each power of ten get a tick, so that even a
    span of under one decade is labelled; over more, those labels would run together.
    """
    axes.set_xscale("log")
    decades = math.log10(max(parameter_counts) / min(parameter_counts))
    subs = (1.0, 2.0, 5.0) if decades <= DENSE_TICK_DECADES else (1.0,)
    axes.xaxis.set_major_locator(LogLocator(subs=subs))
    axes.xaxis.set_major_formatter(EngFormatter(sep=""))
    axes.xaxis.set_minor_formatter(NullFormatter())


def accuracy_vs_parameters(points: list[tuple[str, int, float, float]]) -> bytes:
    """Mean test accuracy against parameter count, one labelled point per variant.

    Args:
        points: (variant name, parameter count, mean test accuracy, std of test accuracy).

    Returns:
        The figure as PNG bytes.
    """
    if not points:
        raise ValueError("accuracy_vs_parameters needs at least one point; points is empty")
    for name, parameter_count, _, deviation in points:
        if parameter_count <= 0:
            raise ValueError(f"variant {name!r} has parameter count {parameter_count}; a log axis needs > 0")
        if deviation < 0:
            raise ValueError(f"variant {name!r} has a negative standard deviation {deviation}")
    figure = Figure(figsize=(FIGURE_WIDTH, 4.5), layout="constrained")
    axes = figure.subplots()
    counts = [parameter_count for _, parameter_count, _, _ in points]
    label_on_left = _crowded_on_the_right(counts)
    for index, (name, parameter_count, mean, deviation) in enumerate(points):
        axes.errorbar(
            parameter_count, mean, yerr=deviation, fmt="o", color=_variant_color(index),
            capsize=4, markersize=6,
        )
        axes.annotate(
            name, (parameter_count, mean), xytext=(-8 if label_on_left[index] else 8, 0),
            textcoords="offset points", ha="right" if label_on_left[index] else "left", va="center", fontsize=9,
        )
    _use_parameter_count_axis(axes, counts)
    # Room around the points so that the names written beside them stay inside the axes.
    axes.margins(x=0.15, y=0.2)
    axes.set_title("Test accuracy against model size")
    axes.set_xlabel("parameters (log scale)")
    axes.set_ylabel("test accuracy (mean ± std over seeds)")
    axes.grid(alpha=0.3, which="both")
    return _png_bytes(figure)


def seconds_per_epoch(bars: list[tuple[str, float, float]]) -> bytes:
    """Mean training seconds per epoch of each variant, as horizontal bars with error bars.

    Args:
        bars: (variant name, mean seconds per epoch, std), drawn top to bottom in this order.

    Returns:
        The figure as PNG bytes.
    """
    if not bars:
        raise ValueError("seconds_per_epoch needs at least one bar; bars is empty")
    names = [name for name, _, _ in bars]
    means = np.array([float(mean) for _, mean, _ in bars])
    deviations = np.array([float(deviation) for _, _, deviation in bars])
    if (means < 0).any() or (deviations < 0).any():
        raise ValueError(f"seconds_per_epoch needs non-negative means and deviations, got {bars!r}")
    figure = Figure(figsize=(FIGURE_WIDTH, 1.2 + 0.45 * len(bars)), layout="constrained")
    axes = figure.subplots()
    positions = np.arange(len(bars))
    axes.barh(positions, means, xerr=deviations, color=PLAIN_BAR_COLOR, capsize=4, height=0.6)
    # The value goes past the error bar's end so the two never overlap.
    longest = float((means + deviations).max()) or 1.0
    for position, mean, deviation in zip(positions, means, deviations):
        axes.text(mean + deviation + 0.01 * longest, position, f"{mean:.3g} s", va="center", fontsize=9)
    axes.set_xlim(0, longest * 1.18)
    axes.set_yticks(positions, names)
    axes.invert_yaxis()
    axes.set_title("Training time per epoch")
    axes.set_xlabel("seconds per epoch (mean ± std over seeds)")
    axes.grid(alpha=0.3, axis="x")
    return _png_bytes(figure)


# The forest plot's marks: an interval that excludes zero is a real difference; one that
# straddles it is noise; one seed a side gives no interval at all.
REAL_COLOR, NOISE_COLOR = "tab:blue", "tab:gray"
FOREST_WIDTH = 6.0  # inches: the plot stands beside the answers' sentences


def accuracy_forest(rows: list[tuple[str, float, float | None, float | None]]) -> bytes:
    """Each question's difference in test accuracy with its 95% interval, one row per question.

    Args:
        rows: (question, difference in percentage points, interval low, interval high), top to
            bottom in this order; low and high are None when no interval could be computed.

    Returns:
        The figure as PNG bytes: a zero line, each interval as a bar with its estimate as a
        dot, "real" in blue where the interval excludes zero and "noise" in gray where it does not.
    """
    if not rows:
        raise ValueError("accuracy_forest needs at least one question; rows is empty")
    for question, estimate, low, high in rows:
        values = [estimate] + ([] if low is None else [low, high])
        if (low is None) != (high is None) or not all(math.isfinite(v) for v in values) or \
                (low is not None and not low <= estimate <= high):
            raise ValueError(f"accuracy_forest needs low <= estimate <= high (or no interval), "
                             f"got {(question, estimate, low, high)!r}")
    figure = Figure(figsize=(FOREST_WIDTH, 1.0 + 0.5 * len(rows)), layout="constrained")
    axes = figure.subplots()
    reach = max(abs(v) for _, estimate, low, high in rows for v in (estimate, low or 0, high or 0)) or 1.0
    axes.axvline(0, color="black", linewidth=1)
    for position, (question, estimate, low, high) in enumerate(rows):
        if low is None:
            verdict, color = "one seed", NOISE_COLOR
        else:
            real = low > 0 or high < 0
            verdict, color = ("real", REAL_COLOR) if real else ("noise", NOISE_COLOR)
            axes.plot([low, high], [position, position], color=color, linewidth=3, solid_capstyle="butt")
        axes.plot([estimate], [position], "o", color=color, markersize=7)
        axes.text(reach * 1.12, position, verdict, va="center", ha="left", color=color, fontsize=10,
                  fontweight="bold" if verdict == "real" else "normal")
    axes.set_xlim(-reach * 1.1, reach * 1.1)
    axes.set_ylim(len(rows) - 0.5, -0.5)
    axes.set_yticks(range(len(rows)), [question for question, *_ in rows])
    axes.set_xlabel("test accuracy, variant − baseline (percentage points, 95% CI)")
    axes.grid(alpha=0.3, axis="x")
    return _png_bytes(figure)


def confusion_matrix(matrix: list[list[int]], class_names: list[str], title: str) -> bytes:
    """A confusion matrix as a heat map with the count written in each cell.

    Args:
        matrix: counts, rows the true class and columns the predicted class.
        class_names: the name of each class, in row (and column) order.
        title: the figure's title.

    Returns:
        The figure as PNG bytes.
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
    return _png_bytes(figure)


def probability_vector(
    image: np.ndarray, probabilities: list[float], class_names: list[str], true_label: str | None, title: str,
) -> bytes:
    """One image beside the model's probability for each class.

    Args:
        image: a (28, 28) uint8 image.
        probabilities: one probability per class, in `class_names` order.
        class_names: the name of each class.
        true_label: the image's true class name, or None when it is not known.
        title: the figure's title.

    Returns:
        The figure as PNG bytes.
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
    return _png_bytes(figure)


def misclassified_grid(
    images: np.ndarray, true_names: list[str], predicted_names: list[str], confidences: list[float],
    columns: int = 6,
) -> bytes:
    """A grid of misclassified images, each titled with its prediction and true class.

    Args:
        images: (n, 28, 28) uint8 images; n may be 0.
        true_names: each image's true class name.
        predicted_names: each image's predicted class name.
        confidences: the probability the model gave its prediction, in [0, 1].
        columns: images per row.

    Returns:
        The figure as PNG bytes.
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
        return _png_bytes(figure)

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
    return _png_bytes(figure)
