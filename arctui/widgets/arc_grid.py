"""ARC grids in the app: titled panels of coloured cells, side by side, wrapping to the widget's width.

The drawing is :mod:`arctui.views.grid_render`'s, the same as ``arctui data show``'s: half blocks in
the ten ARC colours (a 30x30 grid takes 30 columns and 15 lines) and, next to a wrong candidate, a mask
with its wrong cells in white.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from arctui.views.grid_render import GridPanel, layout_panels


class ArcGrid(Widget):
    """A row of titled ARC grids that wraps onto more bands when narrower than the panels."""

    DEFAULT_CSS = """
    ArcGrid {
        height: auto;
        width: 1fr;
    }
    """

    panels: reactive[tuple[GridPanel, ...]] = reactive((), layout=True)
    """The grids to draw, left to right."""

    def __init__(self, panels: Sequence[GridPanel] = (), *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.set_reactive(ArcGrid.panels, tuple(panels))

    def lines(self, width: int) -> list[Text]:
        return layout_panels(self.panels, width=max(width, 1), coloured=True)

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self.lines(width))

    def render(self) -> Text:
        return Text("\n").join(self.lines(self.content_region.width or self.size.width))
