"""The figures of a study report that compare its variants: learning curves, accuracy
against size, time per epoch, and the answers' forest plot.

Each figure comes as two public functions: `NAME_figure(...)` builds the matplotlib
Figure, a building block for a caller that reads what was drawn or draws more on it,
and `NAME(...)` renders that Figure as PNG bytes, the form a report embeds. Their
size, colors and rendering are `denselab.reports.style`'s.
"""

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, LogLocator, MaxNLocator, NullFormatter

from denselab.reports.style import DENSE_TICK_DECADES, FIGURE_WIDTH, PLAIN_BAR_COLOR, png_bytes, variant_color

# Four variant names of about 20 characters fit side by side in an 800 px legend row.
LEGEND_MAX_COLUMNS = 4
# Points closer than this (in decades of parameter count) would write their names over
# each other's error bars, so the left one of such a pair is labelled on its left side.
CROWDED_DECADES = 0.15


def _check_history_record(variant: str, record: dict) -> None:
    missing = {"epoch", "loss", "accuracy"} - set(record)
    if missing:
        raise ValueError(f"history record of variant {variant!r} lacks {sorted(missing)}: {record!r}")
    if int(record["epoch"]) < 1:
        raise ValueError(f"history record of variant {variant!r} has epoch {record['epoch']}; epochs start at 1")


def per_epoch_statistics(variant: str, seed_histories: list[list[dict]], metric: str):
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


def learning_curves_figure(histories: dict[str, list[list[dict]]]) -> Figure:
    """Training loss and accuracy against epoch, mean ± one standard deviation over seeds.

    Args:
        histories: variant name -> one list per seed of per-epoch records, each a dict
            with "epoch" (1-based), "loss", "accuracy" and "seconds". Seeds may have
            stopped at different epochs; each epoch averages the seeds that reached it.

    Returns:
        The Figure, for `learning_curves` to render.
    """
    if not histories:
        raise ValueError("learning_curves needs at least one variant; histories is empty")
    for variant, seed_histories in histories.items():
        if not seed_histories:
            raise ValueError(f"variant {variant!r} has no seeds in histories")
    # Every statistic is computed before drawing starts, so bad records fail fast.
    curves = {
        (variant, metric): per_epoch_statistics(variant, seed_histories, metric)
        for variant, seed_histories in histories.items() for metric in ("loss", "accuracy")
    }
    figure = Figure(figsize=(FIGURE_WIDTH, 3.8), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for index, variant in enumerate(histories):
        color = variant_color(index)
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
    return figure


def learning_curves(histories: dict[str, list[list[dict]]]) -> bytes:
    """`learning_curves_figure` as PNG bytes, the form a report embeds."""
    return png_bytes(learning_curves_figure(histories))


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


def accuracy_vs_parameters_figure(points: list[tuple[str, int, float, float]]) -> Figure:
    """Mean test accuracy against parameter count, one labelled point per variant.

    Args:
        points: (variant name, parameter count, mean test accuracy, std of test accuracy).

    Returns:
        The Figure, for `accuracy_vs_parameters` to render.
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
            parameter_count, mean, yerr=deviation, fmt="o", color=variant_color(index),
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
    return figure


def accuracy_vs_parameters(points: list[tuple[str, int, float, float]]) -> bytes:
    """`accuracy_vs_parameters_figure` as PNG bytes, the form a report embeds."""
    return png_bytes(accuracy_vs_parameters_figure(points))


def seconds_per_epoch_figure(bars: list[tuple[str, float, float]]) -> Figure:
    """Mean training seconds per epoch of each variant, as horizontal bars with error bars.

    Args:
        bars: (variant name, mean seconds per epoch, std), drawn top to bottom in this order.

    Returns:
        The Figure, for `seconds_per_epoch` to render.
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
    return figure


def seconds_per_epoch(bars: list[tuple[str, float, float]]) -> bytes:
    """`seconds_per_epoch_figure` as PNG bytes, the form a report embeds."""
    return png_bytes(seconds_per_epoch_figure(bars))


# The forest plot's marks: an interval that excludes zero is a real difference; one that
# straddles it is noise; one seed a side gives no interval at all.
REAL_COLOR, NOISE_COLOR = "tab:blue", "tab:gray"
FOREST_WIDTH = 6.0  # inches: the plot stands beside the answers' sentences


def accuracy_forest_figure(rows: list[tuple[str, float, float | None, float | None]]) -> Figure:
    """Each question's difference in test accuracy with its 95% interval, one row per question.

    Args:
        rows: (question, difference in percentage points, interval low, interval high), top to
            bottom in this order; low and high are None when no interval could be computed.

    Returns:
        The Figure, for `accuracy_forest` to render: a zero line, each interval as a bar with its estimate as a
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
    return figure


def accuracy_forest(rows: list[tuple[str, float, float | None, float | None]]) -> bytes:
    """`accuracy_forest_figure` as PNG bytes, the form a report embeds."""
    return png_bytes(accuracy_forest_figure(rows))
