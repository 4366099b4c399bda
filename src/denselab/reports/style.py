"""What every report figure shares: its size, its colors, and how it becomes PNG bytes.

Every figure is a `matplotlib.figure.Figure` of its own instead of going through pyplot:
pyplot keeps a global registry of open figures, which is neither thread-safe nor needed
for a headless report. Saving as PNG renders with Agg, so no display is used.
"""

import io

from matplotlib.figure import Figure

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
# Up to this many decades on a log axis, 1-2-5 ticks fit an 800 px axis.
DENSE_TICK_DECADES = 2.5


def png_bytes(figure: Figure) -> bytes:
    """Render `figure` as PNG bytes.

    The "Software" metadata is dropped so that the bytes depend only on the drawing,
    not on the matplotlib version, which keeps the output reproducible.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def variant_color(index: int) -> str:
    return VARIANT_COLORS[index % len(VARIANT_COLORS)]
