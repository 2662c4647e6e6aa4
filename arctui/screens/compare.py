"""The Compare screen: selected runs side by side - differing parameters, figures with ratios to the
baseline, overlaid loss curves - and a markdown copy for an iteration note. The tables, ratios and the
markdown are the view layer's (:mod:`arctui.views.compare`), the same as ``arctui compare``'s."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Static

from arctui.formatting import clip
from arctui.messages import ComparisonLoaded
from arctui.screens.base import ArcScreen, is_visible_screen, quit_binding
from arctui.screens.commands import PaletteCommand
from arctui.views.compare import (
    METRIC_HEADERS,
    Comparison,
    comparison_markdown,
    metric_lines,
    param_rows,
    read_comparison,
    rotated,
    run_headers,
)
from arctui.views.figures import RATIO_NOTE
from arctui.widgets.line_plot import SERIES_COLOURS, LinePlot, Series

CELL_WIDTH = 28  # characters of a run's header or parameter value (the markdown copy has them whole)


class CompareScreen(ArcScreen):
    """Several runs side by side; the first is the baseline (the first marked on the Runs screen) until
    ``b`` moves the next one to the front."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="compare.back"),
        quit_binding("compare"),
        Binding("b", "next_baseline", "Baseline", id="compare.baseline"),
        Binding("m", "copy_markdown", "Copy markdown", id="compare.copy"),
        Binding("d", "task_diff", "Tasks diff", id="compare.tasks"),
    ]

    comparison: reactive[Comparison | None] = reactive(None)
    """The latest read of the runs, baseline first; None until the first read lands."""

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__()
        self.run_ids = [str(r) for r in run_ids]
        """The runs in the order compared, the baseline first."""
        self._poll = None
        self.markdown = ""
        """The comparison as markdown, as last copied or shown."""
        self.saved_path = None
        """Where the last copy was saved as a file."""

    def compose(self) -> ComposeResult:
        yield Static(f"comparing {len(self.run_ids)} runs", id="compare-title")
        with VerticalScroll(id="compare-body"):
            yield DataTable(id="compare-params", cursor_type="none", zebra_stripes=True)
            yield DataTable(id="compare-metrics", cursor_type="none", zebra_stripes=True)
            yield LinePlot(id="compare-plot", empty_message="no loss points yet")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#compare-params").border_title = "parameters that differ"
        self.query_one("#compare-metrics").border_title = f"metrics ({RATIO_NOTE})"
        self.query_one("#compare-plot").border_title = "training loss"
        self.refresh_comparison()
        self.set_interval(self.app.poll_seconds * 4, self.refresh_comparison)

    def refresh_comparison(self) -> None:
        if self._poll is not None and not self._poll.is_finished:
            return
        if not is_visible_screen(self):
            return
        self._poll = self.load_comparison(list(self.run_ids))

    @work(thread=True, exit_on_error=False, group="compare-poll")
    def load_comparison(self, run_ids: list[str]) -> None:
        from arctui.views.evaluations import coverage_note

        comparison = read_comparison(self.app.store(), run_ids, curves=True, now=self.app.clock())
        self.post_message(ComparisonLoaded(comparison))
        # what each accuracy covers (tasks, data set), under the metrics table
        note = coverage_note(self.app.store(), run_ids)
        self.app.call_from_thread(self._show_coverage, note)

    def _show_coverage(self, note: str) -> None:
        self.query_one("#compare-metrics").border_subtitle = note

    @on(ComparisonLoaded)
    def take_comparison(self, message: ComparisonLoaded) -> None:
        if message.comparison.run_ids != self.run_ids:
            return  # read before b moved the baseline; the next poll reads the current order
        if message.comparison != self.comparison:
            self.comparison = message.comparison

    def watch_comparison(self, comparison: Comparison | None) -> None:
        if comparison is None:
            return
        headers = run_headers(comparison)
        base = comparison.baseline
        self.query_one("#compare-title", Static).update(
            Text.assemble(f"comparing {len(headers)} runs  ·  baseline ", (f"#{base.id} {base.name}", "bold"))
        )
        # long names and values (a nested eval: block, notes, model paths) are cut in the middle, so
        # every run's column stays in view; `m` copies them whole, as `arctui compare` prints them
        headers = [clip(header, CELL_WIDTH, keep_end=True) for header in headers]
        params = self.query_one("#compare-params", DataTable)
        params.clear(columns=True)
        params.add_column("parameter")
        for i, header in enumerate(headers):
            params.add_column(Text(header, style="bold" if i == 0 else ""))
        rows = param_rows(comparison)
        for row in rows:
            params.add_row(row[0], *(clip(value, CELL_WIDTH, keep_end=True) for value in row[1:]))
        if not rows:
            params.add_row("(all parameters equal)", *["" for _ in headers])

        metrics = self.query_one("#compare-metrics", DataTable)
        metrics.clear(columns=True)
        for label in METRIC_HEADERS:
            metrics.add_column(label)
        for i, header in enumerate(headers):
            metrics.add_column(Text(header, style="bold" if i == 0 else ""))
        for line in metric_lines(comparison):
            cells = [Text.assemble(value, (f" ({compared})", "dim") if compared else "") for value, compared in line.cells]
            metrics.add_row(line.figure.label, line.figure.better or "", *cells)

        self.query_one("#compare-plot", LinePlot).series = tuple(
            Series(curve.key, curve.steps, curve.values, SERIES_COLOURS[i % len(SERIES_COLOURS)])
            for i, curve in enumerate(comparison.loss_curves)
        )
        self.markdown = comparison_markdown(comparison)

    def action_next_baseline(self) -> None:
        """Make the next run the baseline: every run moves one place to the left, the first goes last."""
        self.run_ids = self.run_ids[1:] + self.run_ids[:1]
        if self.comparison is not None:
            self.comparison = rotated(self.comparison)

    def action_copy_markdown(self) -> None:
        if self.comparison is None:
            self.notify("Nothing to copy yet.", severity="warning")
            return
        self.markdown = comparison_markdown(self.comparison)
        self.app.copy_to_clipboard(self.markdown)  # OSC 52: works in most terminals, not all
        self.save_markdown(self.markdown, self.comparison.run_ids)

    @work(thread=True, exit_on_error=False, group="compare-save")
    def save_markdown(self, markdown: str, run_ids: list[str]) -> None:
        """Keep a copy on disk too, for terminals that ignore clipboard requests."""
        from runner.paths import arctui_home

        path = arctui_home() / "comparisons" / f"compare-{'-'.join(run_ids)}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown, encoding="utf-8")
        self.saved_path = path
        lines = markdown.count("\n")
        self.app.call_from_thread(self.notify, f"Copied {lines} lines of markdown to the clipboard; also in {path}")

    def action_task_diff(self) -> None:
        """Which evaluated tasks each of the two runs solves that the other does not."""
        if len(self.run_ids) != 2:
            self.notify(f"Compare exactly two runs to see the tasks each solves ({len(self.run_ids)} are compared).",
                        severity="warning")
            return
        self.app.open_task_diff(*self.run_ids)

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            PaletteCommand("Tasks solved by one run only", "Set difference of two runs' solved tasks", self.action_task_diff),
            PaletteCommand("Copy comparison as markdown", "Tables for an iteration note", self.action_copy_markdown),
            PaletteCommand("Next baseline", "Ratios relative to the next run (moved to the front)", self.action_next_baseline),
        ]
