"""The figures of a search report: the trials against the board's flash, and what mattered.

Each figure comes as two public functions: `NAME_figure(...)` builds the matplotlib
Figure, a building block for a caller that reads what was drawn (limits, lines, texts)
or draws more on it, and `NAME(...)` renders that Figure as PNG bytes, the form a report
embeds. Their size, colors and rendering are `denselab.reports.style`'s.
"""

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, PercentFormatter

from denselab.reports.style import DENSE_TICK_DECADES, FIGURE_WIDTH, HIGHLIGHT_COLOR, PLAIN_BAR_COLOR, png_bytes

# Flash sizes are stated in powers of two (a 1 MB board holds 1,048,576 bytes), so the
# size axis counts kilobytes of 1024 bytes too, the unit a board's flash is quoted in.
BYTES_PER_KB = 1024
POINT_KEYS = ("name", "int8_bytes", "val_accuracy_int8", "pareto", "winner")
# Trials off the Pareto front recede into light grey, so the front reads first.
OTHER_TRIAL_COLOR = "silver"
PARETO_COLOR = PLAIN_BAR_COLOR
WINNER_COLOR = HIGHLIGHT_COLOR
LIMIT_COLOR = "tab:red"
# Light enough that grey points drawn over the region beyond the limit stay visible.
BEYOND_LIMIT_ALPHA = 0.08
# A winner this close to the left edge (as a fraction of the axis) is labelled on its
# right instead of its left, so that its name stays inside the axes.
LABEL_RIGHT_BELOW = 0.15


def _check_points(points: list[dict], limit_bytes: int | None) -> None:
    if not points:
        raise ValueError("pareto_front needs at least one trial; points is empty")
    for index, point in enumerate(points):
        missing = [key for key in POINT_KEYS if key not in point]
        if missing:
            name = point.get("name", "unnamed")
            raise ValueError(f"trial {index} ({name!r}) lacks {missing}; each trial needs {list(POINT_KEYS)}")
        if not point["int8_bytes"] > 0:
            raise ValueError(f"trial {point['name']!r} has int8 size {point['int8_bytes']}; a log axis needs > 0 bytes")
        if not math.isfinite(point["val_accuracy_int8"]):
            raise ValueError(
                f"trial {point['name']!r} has accuracy {point['val_accuracy_int8']}; leave out trials without one"
            )
    winners = [point["name"] for point in points if point["winner"]]
    if len(winners) > 1:
        raise ValueError(f"pareto_front takes at most one winner, got {len(winners)}: {winners}")
    if limit_bytes is not None and not limit_bytes > 0:
        raise ValueError(f"limit_bytes is {limit_bytes}; give the board's room for the model in bytes (> 0), or None")


def _use_kilobyte_axis(axes, lowest_kb: float, highest_kb: float) -> None:
    """Make the x axis a log axis from a little below `lowest_kb` to a little above `highest_kb`.

    The margin is set here rather than by autoscaling because the shaded region beyond
    the flash limit must end at the axis edge, not push the edge out to where it ends.
    Ticks read as plain kilobytes ("50", "200"): every integer multiple of a power of ten
    under a decade, 1, 2 and 5 times over a few, and powers of ten beyond.
    """
    decades = math.log10(highest_kb / lowest_kb)
    margin = 10 ** max(0.1, 0.06 * decades)
    axes.set_xscale("log")
    axes.set_xlim(lowest_kb / margin, highest_kb * margin)
    if decades <= 1:
        subs = tuple(float(multiple) for multiple in range(1, 10))
    elif decades <= DENSE_TICK_DECADES:
        subs = (1.0, 2.0, 5.0)
    else:
        subs = (1.0,)
    axes.xaxis.set_major_locator(LogLocator(subs=subs))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda kilobytes, _: f"{kilobytes:g}"))
    axes.xaxis.set_minor_formatter(NullFormatter())


def _draw_limit(axes, limit_kb: float, target_name: str) -> None:
    """The flash limit as a dashed line, and everything beyond it shaded."""
    axes.axvline(
        limit_kb, color=LIMIT_COLOR, linestyle="--", linewidth=1.5, zorder=1,
        label=f"{target_name}: flash limit for the model",
    )
    # The shaded span ends at the axis edge, which _use_kilobyte_axis has already fixed.
    axes.axvspan(limit_kb, axes.get_xlim()[1], color=LIMIT_COLOR, alpha=BEYOND_LIMIT_ALPHA, linewidth=0, zorder=0)


def _draw_winner(axes, winner: dict) -> None:
    """The winner as a large star, with its name above it on the left.

    Up and to the left of a point on the Pareto front lies no trial at all (it would
    dominate the point), and the front's step line leaves it below and to the right, so
    the name there covers nothing.
    """
    kilobytes = winner["int8_bytes"] / BYTES_PER_KB
    accuracy = winner["val_accuracy_int8"]
    axes.scatter(
        [kilobytes], [accuracy], marker="*", s=260, color=WINNER_COLOR, edgecolors="black",
        linewidths=0.8, zorder=4, label=f"winner: {winner['name']}",
    )
    # Where the winner sits on the axis (0 at the left edge, 1 at the right), in log space.
    left, right = (math.log10(edge) for edge in axes.get_xlim())
    on_right = (math.log10(kilobytes) - left) / (right - left) < LABEL_RIGHT_BELOW
    axes.annotate(
        winner["name"], (kilobytes, accuracy), xytext=(10 if on_right else -10, 8), textcoords="offset points",
        ha="left" if on_right else "right", va="bottom", fontsize=10, fontweight="bold",
    )


def pareto_front_figure(points: list[dict], limit_bytes: int | None, target_name: str) -> Figure:
    """Int8 validation accuracy against int8 model size for every trial of a search.

    Args:
        points: one dict per trial with "name" (str), "int8_bytes" (size of the int8
            .tflite model, > 0), "val_accuracy_int8" (float), "pareto" (bool, on the
            front of higher accuracy and smaller size) and "winner" (bool, at most one).
        limit_bytes: the largest int8 model the board's flash holds (flash minus the
            runtime's flash), drawn as a dashed line with the region beyond shaded; or
            None to draw no limit.
        target_name: the board's name, for the title and the limit's legend entry.

    Returns:
        The Figure, for `pareto_front` to render.
    """
    _check_points(points, limit_bytes)
    figure = Figure(figsize=(FIGURE_WIDTH, 5.0), layout="constrained")
    axes = figure.subplots()
    sizes_kb = [point["int8_bytes"] / BYTES_PER_KB for point in points]
    limit_kb = None if limit_bytes is None else limit_bytes / BYTES_PER_KB
    _use_kilobyte_axis(axes, min(sizes_kb), max(sizes_kb + ([] if limit_kb is None else [limit_kb])))
    if limit_kb is not None:
        _draw_limit(axes, limit_kb, target_name)

    others = [point for point in points if not point["pareto"]]
    if others:
        axes.scatter(
            [point["int8_bytes"] / BYTES_PER_KB for point in others], [point["val_accuracy_int8"] for point in others],
            s=18, color=OTHER_TRIAL_COLOR, zorder=2, label="other trials",
        )
    # A step after each front point: up to the next point's size, the best accuracy on
    # offer is that of the largest front point below it.
    front = sorted((point for point in points if point["pareto"]), key=lambda point: point["int8_bytes"])
    if front:
        axes.plot(
            [point["int8_bytes"] / BYTES_PER_KB for point in front], [point["val_accuracy_int8"] for point in front],
            drawstyle="steps-post", marker="o", markersize=5, color=PARETO_COLOR, linewidth=1.5, zorder=3,
            label="Pareto front",
        )
    winners = [point for point in points if point["winner"]]
    if winners:
        _draw_winner(axes, winners[0])

    axes.margins(y=0.12)
    axes.set_title(f"Trials for {target_name}: int8 validation accuracy against size")
    axes.set_xlabel("int8 model size (KB, log scale)")
    axes.set_ylabel("int8 validation accuracy")
    axes.grid(alpha=0.3, which="major")
    # Below the axes, where the legend cannot cover any trial.
    handles, labels = axes.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 2), frameon=False)
    return figure


def pareto_front(points: list[dict], limit_bytes: int | None, target_name: str) -> bytes:
    """`pareto_front_figure` as PNG bytes, the form a report embeds."""
    return png_bytes(pareto_front_figure(points, limit_bytes, target_name))


def importances_figure(values: dict[str, float], title: str) -> Figure:
    """Hyperparameter importances as horizontal bars, largest on top, each with its percentage.

    Args:
        values: parameter name -> importance, non-negative and summing to about 1, as
            `optuna.importance.get_param_importances` returns them.
        title: the figure's title.

    Returns:
        The Figure, for `importances` to render.
    """
    if not values:
        raise ValueError("importances needs at least one parameter; values is empty")
    for name, value in values.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"parameter {name!r} has importance {value}; importances must be finite and >= 0")
    # Largest first, and equal importances by name, so the same values draw the same figure.
    ordered = sorted(values.items(), key=lambda item: (-item[1], item[0]))
    names = [name for name, _ in ordered]
    shares = np.array([float(value) for _, value in ordered])
    figure = Figure(figsize=(FIGURE_WIDTH, 1.2 + 0.45 * len(ordered)), layout="constrained")
    axes = figure.subplots()
    positions = np.arange(len(ordered))
    axes.barh(positions, shares, color=PLAIN_BAR_COLOR, height=0.6)
    longest = float(shares.max()) or 1.0
    for position, share in zip(positions, shares):
        axes.text(share + 0.01 * longest, position, f"{share:.1%}", va="center", fontsize=9)
    # Room after the longest bar for its percentage.
    axes.set_xlim(0, longest * 1.15)
    axes.xaxis.set_major_formatter(PercentFormatter(xmax=1))
    axes.set_yticks(positions, names)
    axes.invert_yaxis()
    axes.set_title(title)
    axes.set_xlabel("importance (share of the objective's variation)")
    axes.grid(alpha=0.3, axis="x")
    return figure


def importances(values: dict[str, float], title: str) -> bytes:
    """`importances_figure` as PNG bytes, the form a report embeds."""
    return png_bytes(importances_figure(values, title))
