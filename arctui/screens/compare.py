"""The Compare screen: selected runs side by side - differing parameters, metrics with ratios to a
baseline, overlaid loss curves - and a markdown copy for an iteration note."""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Static

from arctui.formatting import format_gb, format_number, format_percent, format_ratio
from arctui.messages import ComparisonLoaded
from arctui.screens.base import ArcScreen, is_visible_screen
from arctui.screens.commands import PaletteCommand
from arctui.screens.data import Comparison, read_comparison
from arctui.widgets.line_plot import SERIES_COLOURS, LinePlot, Series


def _cell(value, label: str = "") -> str:
    if value is None:
        return "-"
    if label == "accuracy":
        return format_percent(value, 2)
    if label == "peak VRAM":
        return format_gb(value)
    if isinstance(value, float):
        return format_number(value)
    return str(value)


def comparison_markdown(comparison: Comparison) -> str:
    """Two markdown tables (differing parameters; metrics with ratios to the baseline), ready to paste
    into an iteration note."""
    names = [run.name for run in comparison.runs]
    base = comparison.baseline
    lines = []
    if comparison.differing:
        lines.append("| parameter | " + " | ".join(names) + " |")
        lines.append("|---|" + "---|" * len(names))
        for key, values in comparison.differing:
            lines.append(f"| {key} | " + " | ".join(v.replace("|", "\\|") for v in values) + " |")
        lines.append("")
    lines.append("| metric | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for label, values in comparison.metrics:
        cells = []
        for i, value in enumerate(values):
            text = _cell(value, label)
            if i != base and value is not None and values[base]:
                text += f" ({format_ratio(value, values[base])})"
            cells.append(text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Ratios are to the baseline run `{names[base]}`.")
    return "\n".join(lines) + "\n"


class CompareScreen(ArcScreen):
    """Several runs side by side, the first selected being the baseline until ``b`` moves it."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="compare.back"),
        Binding("b", "next_baseline", "Baseline", id="compare.baseline"),
        Binding("m", "copy_markdown", "Copy markdown", id="compare.copy"),
    ]

    comparison: reactive[Comparison | None] = reactive(None)
    """The latest read of the runs, with the chosen baseline."""

    baseline: reactive[int] = reactive(0)
    """Index (in the selection) of the run the ratios are relative to."""

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__()
        self.run_ids = [str(r) for r in run_ids]
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
        self.query_one("#compare-metrics").border_title = "metrics (ratio to baseline)"
        self.query_one("#compare-plot").border_title = "training loss"
        self.refresh_comparison()
        self.set_interval(self.app.poll_seconds * 4, self.refresh_comparison)

    def refresh_comparison(self) -> None:
        if self._poll is not None and not self._poll.is_finished:
            return
        if not is_visible_screen(self):
            return
        self._poll = self.load_comparison()

    @work(thread=True, exit_on_error=False, group="compare-poll")
    def load_comparison(self) -> None:
        self.post_message(ComparisonLoaded(read_comparison(self.app.store(), self.run_ids)))

    @on(ComparisonLoaded)
    def take_comparison(self, message: ComparisonLoaded) -> None:
        comparison = replace(message.comparison, baseline=min(self.baseline, len(message.comparison.runs) - 1))
        if comparison != self.comparison:
            self.comparison = comparison

    def watch_baseline(self, baseline: int) -> None:
        if self.comparison is not None:
            self.comparison = replace(self.comparison, baseline=baseline)

    def watch_comparison(self, comparison: Comparison | None) -> None:
        if comparison is None:
            return
        names = [run.name for run in comparison.runs]
        base = comparison.baseline
        self.query_one("#compare-title", Static).update(
            Text.assemble(
                f"comparing {len(names)} runs  ·  baseline ",
                (names[base], "bold"),
            )
        )
        params = self.query_one("#compare-params", DataTable)
        params.clear(columns=True)
        params.add_column("parameter")
        for i, name in enumerate(names):
            params.add_column(Text(name, style="bold" if i == base else ""))
        if comparison.differing:
            for key, values in comparison.differing:
                params.add_row(key, *values)
        else:
            params.add_row("(all parameters equal)", *["" for _ in names])

        metrics = self.query_one("#compare-metrics", DataTable)
        metrics.clear(columns=True)
        metrics.add_column("metric")
        for i, name in enumerate(names):
            metrics.add_column(Text(name, style="bold" if i == base else ""))
        for label, values in comparison.metrics:
            cells = []
            for i, value in enumerate(values):
                cell = Text(_cell(value, label))
                if i != base and value is not None and values[base]:
                    cell.append(f" {format_ratio(value, values[base])}", style="dim")
                cells.append(cell)
            metrics.add_row(label, *cells)

        self.query_one("#compare-plot", LinePlot).series = tuple(
            Series(curve.key, curve.steps, curve.values, SERIES_COLOURS[i % len(SERIES_COLOURS)])
            for i, curve in enumerate(comparison.loss_curves)
        )
        self.markdown = comparison_markdown(comparison)

    def action_next_baseline(self) -> None:
        count = len(self.comparison.runs) if self.comparison else len(self.run_ids)
        self.baseline = (self.baseline + 1) % max(1, count)

    def action_copy_markdown(self) -> None:
        if self.comparison is None:
            self.notify("Nothing to copy yet.", severity="warning")
            return
        self.markdown = comparison_markdown(self.comparison)
        self.app.copy_to_clipboard(self.markdown)  # OSC 52: works in most terminals, not all
        self.save_markdown(self.markdown, [run.id for run in self.comparison.runs])

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

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            PaletteCommand("Copy comparison as markdown", "Tables for an iteration note", self.action_copy_markdown),
            PaletteCommand("Next baseline", "Ratios relative to the next run", self.action_next_baseline),
        ]
