"""ARC grids as text: the one renderer behind ``arctui data show``, ``arctui eval --show`` and the
app's grid widget (:class:`arctui.widgets.arc_grid.ArcGrid`).

Coloured, a grid is drawn in the ten ARC colours with upper half blocks: each character is one cell
wide and two cells tall (foreground = the upper cell, background = the lower one), so a 30x30 grid
takes 30 columns and 15 lines. Plain (output that is not a terminal, or a file), a grid is its digits,
one line per row, so it can be pasted back into a task file.

A candidate's wrong cells are drawn as a mask next to it: coloured, wrong cells are white and right
cells dark grey; plain, wrong cells are ``x`` and right cells ``.``.

    panels = [GridPanel("input", task["test"][0]["input"]), GridPanel("expected", solution)]
    for line in layout_panels(panels, width=100, coloured=True):
        console.print(line)

Rich only (no textual, no torch): the CLI and the app share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text

Grid = list[list[int]]
Mask = list[list[bool]]

# The ARC palette, by cell value (the colours of the ARC-AGI task viewer).
ARC_COLOURS = (
    "#000000",  # 0 black (background)
    "#0074D9",  # 1 blue
    "#FF4136",  # 2 red
    "#2ECC40",  # 3 green
    "#FFDC00",  # 4 yellow
    "#AAAAAA",  # 5 grey
    "#F012BE",  # 6 magenta
    "#FF851B",  # 7 orange
    "#7FDBFF",  # 8 sky blue
    "#870C25",  # 9 maroon
)
WRONG_COLOUR = "#FFFFFF"
RIGHT_COLOUR = "#303030"
# A lone lower half of an odd-height grid sits on the terminal's own background.
UPPER_HALF = "▀"
GAP = 3  # columns between two panels side by side


@dataclass(frozen=True)
class GridPanel:
    """One titled grid (or a mask of wrong cells) with optional lines under it."""

    title: str
    grid: Grid | None = None
    mask: Mask | None = None
    notes: tuple[str, ...] = ()
    title_style: str = "bold"


def shape_label(grid: Sequence[Sequence[object]]) -> str:
    """``rows x columns``, as ARC people say it."""
    return f"{len(grid)}x{len(grid[0]) if grid else 0}"


def wrong_cells(candidate: Grid, expected: Grid) -> Mask | None:
    """True where ``candidate`` differs from ``expected``; None when their shapes differ."""
    if len(candidate) != len(expected) or any(len(a) != len(b) for a, b in zip(candidate, expected, strict=True)):
        return None
    return [[a != b for a, b in zip(row_c, row_e, strict=True)] for row_c, row_e in zip(candidate, expected, strict=True)]


def _cell_colours(grid: Grid | None, mask: Mask | None) -> list[list[str]]:
    if mask is not None:
        return [[WRONG_COLOUR if wrong else RIGHT_COLOUR for wrong in row] for row in mask]
    return [[ARC_COLOURS[cell] if 0 <= cell <= 9 else WRONG_COLOUR for cell in row] for row in grid or []]


def grid_lines(grid: Grid | None = None, *, mask: Mask | None = None, coloured: bool) -> list[Text]:
    """The lines that draw ``grid`` (or ``mask``): half blocks in colour, or digits (``x``/``.`` for a
    mask) one row per line."""
    if not coloured:
        if mask is not None:
            return [Text("".join("x" if wrong else "." for wrong in row)) for row in mask]
        return [Text("".join(str(cell) for cell in row)) for row in grid or []]
    colours = _cell_colours(grid, mask)
    lines = []
    for top in range(0, len(colours), 2):
        upper = colours[top]
        lower = colours[top + 1] if top + 1 < len(colours) else None
        line = Text()
        for column, colour in enumerate(upper):
            line.append(UPPER_HALF, Style(color=colour, bgcolor=lower[column] if lower else None))
        lines.append(line)
    return lines


def panel_lines(panel: GridPanel, *, coloured: bool) -> list[Text]:
    """A panel as lines: its title, its grid (or mask), its notes."""
    lines = [Text(panel.title, style=panel.title_style if coloured else "")]
    if panel.grid is not None or panel.mask is not None:
        lines += grid_lines(panel.grid, mask=panel.mask, coloured=coloured)
    lines += [Text(note, style="dim" if coloured else "") for note in panel.notes]
    return lines


def _pad(line: Text, width: int) -> Text:
    padded = line.copy()
    padded.append(" " * max(0, width - padded.cell_len))
    return padded


def layout_panels(panels: Sequence[GridPanel], *, width: int, coloured: bool, gap: int = GAP) -> list[Text]:
    """Panels side by side, left to right, starting a new band (after a blank line) when the next one
    would pass ``width`` columns; a panel wider than ``width`` gets a band of its own."""
    blocks = [panel_lines(panel, coloured=coloured) for panel in panels]
    bands: list[list[list[Text]]] = []
    used = 0
    for block in blocks:
        block_width = max(line.cell_len for line in block)
        if bands and used + gap + block_width <= width:
            bands[-1].append(block)
            used += gap + block_width
        else:
            bands.append([block])
            used = block_width
    out: list[Text] = []
    for band in bands:
        if out:
            out.append(Text())
        widths = [max(line.cell_len for line in block) for block in band]
        for row in range(max(len(block) for block in band)):
            line = Text()
            for index, block in enumerate(band):
                cell = block[row] if row < len(block) else Text()
                last = index == len(band) - 1
                line.append_text(cell if last else _pad(cell, widths[index] + gap))
            line.rstrip()
            out.append(line)
    return out


def task_panels(task: dict, *, test_indices: Sequence[int] | None = None) -> tuple[list[GridPanel], list[GridPanel]]:
    """(train panels, test panels) of a task: each train pair's input and output, each test input and
    its expected output when the task has one."""
    train = []
    for index, pair in enumerate(task.get("train", [])):
        train.append(GridPanel(f"train {index} in {shape_label(pair['input'])}", pair["input"]))
        train.append(GridPanel(f"train {index} out {shape_label(pair['output'])}", pair["output"]))
    test = []
    samples = task.get("test", [])
    for index in test_indices if test_indices is not None else range(len(samples)):
        sample = samples[index]
        test.append(GridPanel(f"test {index} input {shape_label(sample['input'])}", sample["input"]))
        if "output" in sample:
            test.append(GridPanel(f"test {index} expected {shape_label(sample['output'])}", sample["output"]))
    return train, test


PLAIN_WIDTH = 120  # columns of plain (not a terminal) output before panels wrap to a new band


def print_sections(sections: Sequence[tuple[str, Sequence[GridPanel]]], console=None) -> None:
    """Print titled bands of panels: coloured on a terminal (to its width), digits otherwise."""
    from rich.console import Console

    console = console or Console(highlight=False)
    coloured = console.is_terminal
    width = console.width if coloured else PLAIN_WIDTH
    for index, (heading, panels) in enumerate(sections):
        if index:
            console.print()
        if heading:
            console.print(Text(heading, style="bold underline" if coloured else ""), soft_wrap=True)
        for line in layout_panels(panels, width=width, coloured=coloured):
            console.print(line, soft_wrap=True)
