"""The GPUs screen: every NVIDIA GPU with memory, utilization and the arctui run that holds it."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Static

from arctui.formatting import format_percent
from arctui.messages import GpusSampled
from arctui.screens.base import ArcScreen, is_visible_screen, quit_binding
from arctui.views.gpus import GpuReading, read_gpus

NO_GPU_HINT = "Runs launched from here go on the CPU (gpus: cpu)."


def memory_bar(gpu: GpuReading, width: int = 20) -> Text:
    used, total = gpu.memory_used_gb, gpu.memory_total_gb
    if used is None or not total:
        return Text("-")
    share = max(0.0, min(1.0, used / total))
    filled = round(share * width)
    colour = "red" if share > 0.9 else "yellow" if share > 0.6 else "green"
    return Text.assemble(("█" * filled, colour), ("░" * (width - filled), "dim"), f" {used:.1f}/{total:.1f} GB")


class GpusScreen(ArcScreen):
    """GPUs, re-read every second or so."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="gpus.back"),
        quit_binding("gpus"),
        Binding("enter", "open_holder", "Open run", id="gpus.open"),
    ]

    gpus: reactive[tuple[GpuReading, ...]] = reactive(())
    """The GPUs as last sampled."""

    unavailable_reason: reactive[str | None] = reactive(None)
    """Why there are no GPUs to show (no driver, no NVIDIA device); None while there are."""

    def __init__(self) -> None:
        super().__init__()
        self._poll = None
        self._loaded = False

    def compose(self) -> ComposeResult:
        yield Static("GPUs", id="gpus-title")
        yield DataTable(id="gpus-table", cursor_type="row", zebra_stripes=True)
        yield Static("looking for GPUs...", id="gpus-empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#gpus-table", DataTable)
        for key, label in (("index", "gpu"), ("name", "name"), ("memory", "memory"), ("util", "util"), ("run", "run")):
            table.add_column(label, key=key)
        table.display = False
        self.refresh_gpus()
        self.set_interval(self.app.poll_seconds * 4, self.refresh_gpus)

    def refresh_gpus(self) -> None:
        if self._poll is not None and not self._poll.is_finished:
            return
        if not is_visible_screen(self):
            return
        self._poll = self.load_gpus()

    @work(thread=True, exit_on_error=False, group="gpus-poll")
    def load_gpus(self) -> None:
        gpus, reason = read_gpus(self.app.store(), self.app.gpu_reader)
        self.post_message(GpusSampled(gpus, reason))

    @on(GpusSampled)
    def take_sample(self, message: GpusSampled) -> None:
        self.unavailable_reason = message.unavailable_reason
        self.gpus = tuple(message.gpus)
        self._loaded = True
        self._show()

    def _show(self) -> None:
        table = self.query_one("#gpus-table", DataTable)
        empty = self.query_one("#gpus-empty", Static)
        if not self.gpus:
            table.display = False
            empty.display = True
            reason = self.unavailable_reason or "no NVIDIA GPU found"
            empty.update(Text.assemble(("No NVIDIA GPU", "bold"), f"\n\n{reason}\n{NO_GPU_HINT}"))
            self.query_one("#gpus-title", Static).update("GPUs: none")
            return
        empty.display = False
        table.display = True
        cursor = table.cursor_row
        table.clear()
        for gpu in self.gpus:
            run = f"{gpu.run_name} (#{gpu.run_id})" if gpu.run_id else Text("free", style="dim")
            util = None if gpu.utilization is None else gpu.utilization / 100
            table.add_row(str(gpu.index), gpu.name, memory_bar(gpu), format_percent(util), run, key=str(gpu.index))
        if 0 <= cursor < table.row_count:
            table.move_cursor(row=cursor, animate=False)
        held = sum(1 for g in self.gpus if g.run_id)
        self.query_one("#gpus-title", Static).update(f"GPUs: {len(self.gpus)}  ·  {held} held by arctui runs")

    @on(DataTable.RowSelected, "#gpus-table")
    def row_chosen(self) -> None:
        self.action_open_holder()

    def action_open_holder(self) -> None:
        table = self.query_one("#gpus-table", DataTable)
        if not self.gpus or table.cursor_row < 0:
            return
        gpu = self.gpus[table.cursor_row]
        if gpu.run_id:
            self.app.open_run(gpu.run_id)
