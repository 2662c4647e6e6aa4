"""Line charts drawn by plotext (through textual-plotext's ``Plot``): y and x axes with ticks, the x axis
labelled ("step"), several series in braille dots, each with its colour, and below them a legend
that gives each series' latest value (on more lines when one is too short for all).

Several series share the axes (training and eval loss, or the same metric of several runs). A render
builds the figure from scratch at the widget's size: about 5 ms for two series of 400 points in the
Run screen's loss panel (``bench/plot_render.py``), well within a frame, and a plot redraws only when
its series change (at most twice a second).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.color import Color
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from arctui.formatting import format_number

SERIES_COLOURS = ("#4fc1ff", "#ffb454", "#7fd962", "#f07178", "#c792ea", "#ffe66d", "#95e6cb", "#ff8f40")
MIN_WIDTH, MIN_HEIGHT = 12, 3


@dataclass(frozen=True)
class Series:
    """One line: a name for the legend, x values (steps), y values and a colour."""

    name: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    colour: str = SERIES_COLOURS[0]


def _finite_points(series: Series) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(series.xs, series.ys, strict=False) if math.isfinite(x) and math.isfinite(y)]
    return [x for x, _ in pairs], [y for _, y in pairs]


def _x_ticks(low: float, high: float, width: int) -> list[float]:
    """Whole-step ticks, about one per 12 columns, always the first and the last step."""
    count = max(2, min(6, width // 12))
    if high - low < count:
        return sorted({low, high})
    return sorted({round(low + (high - low) * i / (count - 1)) for i in range(count)})


def _y_range(ys: list[float]) -> tuple[float, float]:
    low, high = min(ys), max(ys)
    if high == low:  # a flat line in the middle, not on the bottom edge
        pad = abs(high) * 0.05 or 1.0
        return low - pad, high + pad
    return low, high


def _y_ticks(low: float, high: float, rows: int) -> list[float]:
    """Ticks about every third row, labelled in the app's number format (``13.3k``, ``0.650``)."""
    count = max(2, min(5, rows // 3 + 1))
    return [low + (high - low) * i / (count - 1) for i in range(count)]


def _rgb(colour: str) -> tuple[int, int, int]:
    return Color.parse(colour).get_truecolor()


def legend_lines(series: Sequence[Series], width: int, max_lines: int = 1) -> list[Text]:
    """``━ train 0.41  ━ eval 0.52``: each series in its colour with its latest value. Entries wrap
    onto up to ``max_lines`` lines, never split; what still does not fit is cut with an ellipsis."""
    lines = [Text()]
    for s in series:
        _, ys = _finite_points(s)
        entry = Text.assemble(("━ ", s.colour), f"{s.name} {format_number(ys[-1]) if ys else '-'}")
        if lines[-1] and lines[-1].cell_len + 2 + entry.cell_len > width and len(lines) < max_lines:
            lines.append(Text())
        if lines[-1]:
            lines[-1].append("  ")
        lines[-1].append_text(entry)
    for line in lines:
        line.truncate(width, overflow="ellipsis")
    return lines


def legend_room(height: int, count: int) -> int:
    """Lines the legend may take: one per series at most, and never the rows the lines need (about
    six: ticks, label and a few rows of dots)."""
    return max(1, min(count, (height - 6) // 2))


def render_plot(series: Sequence[Series], width: int, height: int, empty_message: str = "no data yet",
                x_label: str = "step") -> Text:
    """Render ``series`` into ``height`` lines of ``width`` cells: y ticks and the lines, x ticks, the
    x label and a legend line (drawn below the plot, where it hides no point)."""
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return Text(empty_message, style="dim")
    drawn = [(s, *_finite_points(s)) for s in series]
    drawn = [(s, xs, ys) for s, xs, ys in drawn if xs]
    if not drawn:
        blank = "\n" * max(0, height // 2 - 1)
        return Text(blank + empty_message.center(width), style="dim")
    from textual_plotext.plot import Plot

    legend = legend_lines(series, width, legend_room(height, len(series)))
    height -= len(legend) - 1  # the legend's first line is counted below; more take rows of the plot
    plot = Plot()
    plot.plotsize(width, height - 1)  # the last line is the legend
    # as textual-plotext's own widget does: plotsize alone clamps to the size of the terminal plotext
    # saw at import (80 columns when it is no terminal)
    plot._set_size(width, height - 1)
    plot.theme("clear")  # the app's background and text colours show through
    plot.frame(False)
    for s, xs, ys in drawn:
        plot.plot(xs, ys, marker="braille", color=_rgb(s.colour))
    low_y, high_y = _y_range([y for _, _, ys in drawn for y in ys])
    plot.ylim(low_y, high_y)
    rows = height - (4 if height >= 7 else 3)  # less the legend, x ticks and x label
    y_ticks = _y_ticks(low_y, high_y, rows)
    plot.yticks(y_ticks, [format_number(t) for t in y_ticks])
    all_x = [x for _, xs, _ in drawn for x in xs]
    low, high = min(all_x), max(all_x)
    ticks = _x_ticks(low, high, width)
    plot.xticks(ticks, [format_number(int(t)) if float(t).is_integer() else format_number(t) for t in ticks])
    if high == low:
        plot.xlim(low - 1, high + 1)
    if height >= 7:  # below that the label would take the last row of dots
        plot.xlabel(x_label)
    text = Text.from_ansi(plot.build())
    text.rstrip()
    for line in legend:
        text.append("\n")
        text.append_text(line)
    return text


class LinePlot(Widget):
    """A plot of one or more :class:`Series` with axes, an x label and a legend (plotext)."""

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

    x_label: reactive[str] = reactive("step")
    """The x axis' label."""

    def __init__(self, *, empty_message: str = "no data yet", x_label: str = "step", name=None, id=None,
                 classes=None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.set_reactive(LinePlot.empty_message, empty_message)
        self.set_reactive(LinePlot.x_label, x_label)

    def render(self) -> Text:
        return render_plot(self.series, self.content_size.width, self.content_size.height, self.empty_message,
                           self.x_label)
