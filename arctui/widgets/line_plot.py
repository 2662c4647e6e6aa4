"""A terminal line plot drawn with braille dots (2 x 4 dots per cell).

Several series share the axes (training and eval loss, or the same metric of several runs); each has
its own colour and an entry in the legend. Drawing is pure Python over at most a few thousand points
(the store downsamples series), so a redraw costs well under a millisecond per hundred points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from arctui.formatting import format_number

# Bit of each dot inside a braille cell, indexed [x][y] with y growing downwards.
_DOT_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
_BRAILLE_BASE = 0x2800

SERIES_COLOURS = ("#4fc1ff", "#ffb454", "#7fd962", "#f07178", "#c792ea", "#ffe66d", "#95e6cb", "#ff8f40")


@dataclass(frozen=True)
class Series:
    """One line: a name for the legend, x values (steps), y values and a colour."""

    name: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    colour: str = SERIES_COLOURS[0]


def _finite_points(series: Series) -> list[tuple[float, float]]:
    return [(x, y) for x, y in zip(series.xs, series.ys, strict=False) if math.isfinite(x) and math.isfinite(y)]


def _line_dots(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    """Dots of a straight segment (Bresenham), so sparse points still read as a curve."""
    dots = []
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err = dx + dy
    while True:
        dots.append((x0, y0))
        if x0 == x1 and y0 == y1:
            return dots
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


def _axis_label(value: float) -> str:
    return format_number(int(value)) if float(value).is_integer() else format_number(value)


def render_plot(series: Sequence[Series], width: int, height: int, empty_message: str = "no data yet") -> Text:
    """Render ``series`` into ``height`` lines of ``width`` cells: y labels, plot area, x axis, legend."""
    lines = Text()
    if width < 12 or height < 3:
        return Text(empty_message, style="dim")
    points = [(s, _finite_points(s)) for s in series]
    all_points = [p for _, pts in points for p in pts]
    legend = Text()
    for s, pts in points:
        if legend:
            legend.append("  ")
        legend.append("━ ", style=s.colour)
        last = f" {format_number(pts[-1][1])}" if pts else " -"
        legend.append(f"{s.name}{last}")
    if not all_points:
        blank = "\n" * max(0, height // 2 - 1)
        return Text(blank + empty_message.center(width), style="dim")

    xmin = min(p[0] for p in all_points)
    xmax = max(p[0] for p in all_points)
    ymin = min(p[1] for p in all_points)
    ymax = max(p[1] for p in all_points)
    if ymax == ymin:
        pad = abs(ymax) * 0.05 or 1.0
        ymin, ymax = ymin - pad, ymax + pad
    if xmax == xmin:
        xmax = xmin + 1

    label_width = max(len(format_number(ymax)), len(format_number(ymin))) + 1
    plot_w = max(1, width - label_width - 1)
    plot_h = max(1, height - 2)  # one row for the x axis labels, one for the legend
    dots_w, dots_h = plot_w * 2, plot_h * 4

    # cell -> (bits, colour of the last series that touched it)
    cells: dict[tuple[int, int], list] = {}
    for s, pts in points:
        previous = None
        for x, y in pts:
            dx = round((x - xmin) / (xmax - xmin) * (dots_w - 1))
            dy = round((ymax - y) / (ymax - ymin) * (dots_h - 1))
            segment = _line_dots(*previous, dx, dy) if previous else [(dx, dy)]
            for px, py in segment:
                key = (px // 2, py // 4)
                cell = cells.setdefault(key, [0, s.colour])
                cell[0] |= _DOT_BITS[px % 2][py % 4]
                cell[1] = s.colour
            previous = (dx, dy)

    for row in range(plot_h):
        if row == 0:
            label = format_number(ymax)
        elif row == plot_h - 1:
            label = format_number(ymin)
        elif plot_h >= 5 and row == plot_h // 2:
            label = format_number((ymax + ymin) / 2)
        else:
            label = ""
        lines.append(label.rjust(label_width - 1) + " ", style="dim")
        lines.append("┤" if label else "│", style="dim")
        for col in range(plot_w):
            cell = cells.get((col, row))
            if cell is None:
                lines.append(" ")
            else:
                lines.append(chr(_BRAILLE_BASE + cell[0]), style=cell[1])
        lines.append("\n")
    left, right = _axis_label(xmin), _axis_label(xmax)
    axis = " " * label_width + "└" + left + right.rjust(max(0, plot_w - len(left)))
    lines.append(axis[:width] + "\n", style="dim")
    legend.truncate(width)
    lines.append_text(legend)
    return lines


class LinePlot(Widget):
    """A braille line plot of one or more :class:`Series` with y labels, x range and a legend."""

    DEFAULT_CSS = """
    LinePlot {
        height: 10;
        min-height: 4;
    }
    """

    series: reactive[tuple[Series, ...]] = reactive((), layout=False)
    """The lines to draw; assigning a new tuple redraws the plot."""

    empty_message: reactive[str] = reactive("no data yet")
    """What the plot says while no series has a point."""

    def __init__(self, *, empty_message: str = "no data yet", name=None, id=None, classes=None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.set_reactive(LinePlot.empty_message, empty_message)

    def render(self) -> Text:
        return render_plot(self.series, self.content_size.width, self.content_size.height, self.empty_message)
