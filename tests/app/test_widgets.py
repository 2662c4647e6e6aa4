"""Unit tests of the pure pieces: number/duration/age formatting and the plotext line plot."""

from __future__ import annotations

import math

import pytest
from rich.style import Style

from arctui.formatting import (
    clip,
    eta_seconds,
    format_age,
    format_duration,
    format_gb,
    format_number,
    format_percent,
    format_ratio,
    progress_bar,
)
from arctui.widgets.line_plot import Series, render_plot


@pytest.mark.parametrize(("value", "text"), [
    (None, "-"), (0.0, "0"), (0.39, "0.390"), (3.3, "3.30"), (21.0, "21.0"), (123.4, "123"),
    (12_345.0, "12.3k"), (123_456.0, "123k"), (1e-5, "1.0e-05"), (2048, "2,048"), (250_000, "250k"),
    (float("nan"), "nan"),
])
def test_format_number(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (-1, "-"), (0, "0s"), (45.4, "45s"), (108, "1m48s"), (600, "10m00s"), (3 * 3600 + 7 * 60, "3h07m"),
    (50 * 3600, "2d02h"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_format_age_rounds_so_runs_made_together_read_the_same():
    now = 1_000_000.0
    assert format_age(now - 598.2, now) == format_age(now - 601.9, now) == "10m ago"
    assert format_age(now - 3, now) == "just now"
    assert format_age(now - 30, now) == "30s ago"
    assert format_age(now - 7200, now) == "2h ago"
    assert format_age(now - 5 * 86400, now) == "5d ago"
    assert format_age(None, now) == "-"


def test_small_formatters():
    assert format_percent(0.35) == "35%" and format_percent(0.04, 2) == "4.00%" and format_percent(None) == "-"
    assert format_gb(7.04) == "7.0 GB" and format_gb(None) == "-"
    assert format_ratio(21.0, 7.0) == "3.00x" and format_ratio(1.0, 0) == "-" and format_ratio(None, 1) == "-"
    assert eta_seconds(40, 100, 1.8) == pytest.approx(108) and eta_seconds(0, 100, 2.0) == 200
    assert eta_seconds(None, 100, 1.0) is None and eta_seconds(10, None, 1.0) is None
    assert progress_bar(5, 10, 10) == "━━━━━─────" and progress_bar(None, 10, 4) == "    "
    assert len(progress_bar(1, 3, 7)) == 7


def lines_of(text) -> list[str]:
    return text.plain.split("\n")


def braille_dots(lines: list[str]) -> int:
    return sum(1 for line in lines for ch in line if 0x2800 < ord(ch) <= 0x28FF)


def test_plot_fills_the_given_size_with_ticks_step_label_and_legend():
    xs = tuple(float(i) for i in range(1, 101))
    train = Series("train", xs, tuple(2.0 * math.exp(-x / 30) + 0.3 for x in xs))
    evals = Series("eval", (20.0, 40.0, 60.0), (1.2, 0.8, 0.6), "#ffb454")
    lines = lines_of(render_plot([train, evals], 60, 12))
    assert len(lines) == 12
    assert all(len(line) <= 60 for line in lines)
    # y ticks, in the app's number format: the maximum on the first row, the minimum on the last
    assert lines[0].startswith(" 2.23") and lines[-4].startswith("0.371")
    ticks = lines[-3].split()
    assert ticks[0] == "1" and ticks[-1] == "100" and all(t.isdigit() for t in ticks)  # whole steps
    assert lines[-2].strip() == "step"  # the x axis says what it counts
    assert lines[-1] == "━ train 0.371  ━ eval 0.600"  # below the plot: no point hidden behind it
    assert braille_dots(lines[:-3]) > 50  # the curve is drawn as connected dots


def test_plot_spans_are_coloured_per_series():
    a = Series("a", (0.0, 1.0), (0.0, 1.0), "#111111")
    b = Series("b", (0.0, 1.0), (1.0, 0.0), "#222222")
    text = render_plot([a, b], 30, 8)
    dots = {Style.parse(str(span.style)).color.get_truecolor().hex for span in text.spans
            if any(0x2800 < ord(ch) <= 0x28FF for ch in text.plain[span.start:span.end])}
    assert dots == {"#111111", "#222222"}  # the lines, in their series' colours
    assert {"#111111", "#222222"} <= {str(span.style) for span in text.spans}  # the legend


def test_plot_handles_empty_flat_single_and_non_finite():
    assert "no data yet" in render_plot([], 40, 6).plain
    assert "nothing" in render_plot([Series("a", (), ())], 40, 6, "nothing").plain
    flat = lines_of(render_plot([Series("flat", (1.0, 2.0, 3.0), (0.5, 0.5, 0.5))], 40, 6))
    assert len(flat) == 6 and flat[-1] == "━ flat 0.500" and braille_dots(flat) > 10
    single = lines_of(render_plot([Series("one", (5.0,), (1.0,))], 40, 6))
    assert braille_dots(single) == 1 and single[-1] == "━ one 1.00"
    skipped = render_plot([Series("nan", (1.0, 2.0, 3.0), (1.0, float("nan"), 3.0))], 40, 6)
    assert "nan 3.00" in skipped.plain
    # an empty series next to a drawn one keeps its legend entry
    assert render_plot([Series("a", (1.0, 2.0), (1.0, 2.0)), Series("b", (), ())], 40, 8).plain.endswith("━ b -")
    assert render_plot([Series("a", (1.0,), (1.0,))], 8, 2).plain  # too small: a message, not an error


def test_short_plots_keep_their_dots_and_drop_the_x_label():
    xs = tuple(float(i) for i in range(1, 21))
    lines = lines_of(render_plot([Series("s/step", xs, tuple(1.0 + (x % 3) / 10 for x in xs))], 40, 5))
    assert len(lines) == 5 and "step" not in lines[-2] and braille_dots(lines[:-2]) > 5


def test_a_legend_too_long_for_one_line_wraps_whole_entries_and_the_plot_keeps_its_size():
    xs = (1.0, 2.0, 3.0)
    # a study's variants: names that differ only at their ends, four of them
    series = [Series(f"enc-Shape.RowNumber.Minimal+msl-{msl}", xs, (3.0, 2.0, value), colour)
              for msl, value, colour in ((1024, 1.5, "#111111"), (1536, 1.25, "#222222"),
                                         (2048, 1.1, "#333333"), (4096, 1.0, "#444444"))]
    two = lines_of(render_plot(series, 90, 20))
    assert len(two) == 20 and all(len(line) <= 90 for line in two)
    assert two[-2] == "━ enc-Shape.RowNumber.Minimal+msl-1024 1.50  ━ enc-Shape.RowNumber.Minimal+msl-1536 1.25"
    assert two[-1] == "━ enc-Shape.RowNumber.Minimal+msl-2048 1.10  ━ enc-Shape.RowNumber.Minimal+msl-4096 1.00"
    assert two[-3].strip() == "step"
    four = lines_of(render_plot(series, 60, 20))  # one entry a line, none split
    assert len(four) == 20 and four[-4:] == [f"━ enc-Shape.RowNumber.Minimal+msl-{msl}" for msl in (
        "1024 1.50", "1536 1.25", "2048 1.10", "4096 1.00")]
    assert four[-5].strip() == "step" and braille_dots(four[:-6]) > 10
    # a short plot keeps its dots: the legend takes one line there, cut with an ellipsis
    short = lines_of(render_plot(series, 90, 7))
    assert len(short) == 7 and short[-1].endswith("…") and braille_dots(short[:-3]) > 5


def test_clip_cuts_at_the_end_or_keeps_the_end_of_a_name():
    assert clip("demo-cpu", 18) == "demo-cpu"
    assert clip("offline SmolLM2, rsLoRA r8", 10) == "offline S…"
    # a study's runs share their beginning: the end tells them apart
    assert clip("demo-cpu-enc-Shape.Minimal+msl-1536", 18, keep_end=True) == "demo-cpu…+msl-1536"
    assert len(clip("x" * 40, 18, keep_end=True)) == 18
