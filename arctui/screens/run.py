"""The Run screen: one run live - loss curves, speed, progress with the current phase and an ETA,
VRAM per GPU (on CPU: the training processes' memory and CPU use), and a log that follows its newest
line unless scrolled up.

The progress panel shows the run's summary figures as ``arctui show`` does (the view layer's
:func:`arctui.views.summary.summary_lines`), each with its label (``s/step (median)``), and next to the
median s/step the latest logged step's, labelled ``latest``; the speed plots show every logged step and
their legends the latest value, labelled the same way.

A timer starts a thread worker ~2x per second that reads the run from the store and posts a
:class:`RunDetailLoaded`; a newer snapshot replaces an older one still queued, and an unchanged
snapshot redraws nothing. Another timer redraws the progress text every second, so elapsed time and
the phase's duration tick while a long phase writes no event.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Footer, ProgressBar, Static

from arctui.formatting import (
    format_duration,
    format_gb,
    format_number,
    format_percent,
    progress_bar,
)
from arctui.messages import RunDetailLoaded
from arctui.screens.base import ArcScreen, explaining_binding, is_visible_screen, quit_binding
from arctui.screens.commands import PaletteCommand
from arctui.screens.runs import status_text
from arctui.views.figures import DURATION, LATEST, MIN_LOSS, STEPS, short_model
from arctui.views.gpus import GpuReading
from arctui.views.summary import ProcessSampler, ProcessUsage, RunDetail, read_run_detail, summary_lines
from arctui.widgets.following_log import FollowingLog
from arctui.widgets.line_plot import SERIES_COLOURS, LinePlot, Series


def series_of(detail: RunDetail, key: str, name: str, colour: str, *, skip_first: bool = False) -> Series | None:
    """A plotted series of the run; ``skip_first`` leaves out the first logged step (its s/step
    includes compiling and warming up, many times a later step's, and would crush the scale)."""
    series = detail.series.get(key)
    if series is None:
        return None
    steps, values = series.steps, series.values
    if skip_first and len(steps) > 1:
        steps, values = steps[1:], values[1:]
    return Series(name, steps, values, colour)


def short_gpu_name(name: str) -> str:
    return name.removeprefix("NVIDIA ").removeprefix("GeForce ")


def cpu_lines(usage: ProcessUsage | None) -> Text:
    """A CPU run's processes (training, or its evaluation after training): resident memory and CPU
    use (100% = one core)."""
    if usage is None:
        return Text("CPU run: no process of it running here", style="dim")
    text = Text.assemble(("run processes", "bold"), f" ({usage.processes})\n")
    text.append(f"  RSS {usage.rss_text}\n  CPU {usage.cpu_text} (100% = one core)")
    return text


def gpu_lines(gpus: tuple[GpuReading, ...] | list[GpuReading], on_cpu: bool,
              usage: ProcessUsage | None = None) -> Text:
    """Two lines per GPU: name and utilization, then a VRAM used/total bar (fits 30 columns); a CPU
    run shows its processes' memory and CPU use instead."""
    if not gpus:
        return cpu_lines(usage) if on_cpu else Text("no GPU samples yet", style="dim")
    text = Text()
    for gpu in gpus:
        if text:
            text.append("\n")
        util = format_percent(None if gpu.utilization is None else gpu.utilization / 100)
        text.append(f"{gpu.index} ", style="bold")
        text.append(f"{short_gpu_name(gpu.name)}  util {util}\n")
        used, total = gpu.memory_used_gb, gpu.memory_total_gb
        if used is not None and total:
            share = used / total
            filled = round(share * 10)
            text.append("  ")
            text.append("█" * filled, style="red" if share > 0.9 else "green")
            text.append("░" * (10 - filled), style="dim")
            text.append(f" {used:.1f}/{total:.0f} GB")
        else:
            text.append(f"  VRAM {format_gb(used)}")
    return text


# The first logged step (loading, warming up) is left out of the plot: it would crush the scale.
SPEED_TITLE = "s/step (first step left out)"
SPEED_TITLE_SHORT = "s/step (l: show tok/s)"  # a short terminal hides the tok/s plot behind the log


class RunScreen(ArcScreen):
    """One run, live."""

    # What matters most comes first: an 80-column footer shows about six keys. Stop shows only while the
    # run can be stopped, Resume only once it can be resumed (check_action); ? and ctrl+p list them all.
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="run.back"),
        quit_binding("run"),
        Binding("x", "stop_run", "Stop", id="run.stop"),
        Binding("r", "resume_run", "Resume", id="run.resume"),
        Binding("p", "predictions", "Predictions", id="run.predictions"),
        Binding("L", "full_log", "Full log", id="run.full_log"),
        Binding("l", "toggle_log", "Log panel", id="run.log"),
        Binding("C", "clone_run", "Clone", id="run.clone"),  # k moves up in lists
        Binding("f", "follow_log", "Follow log", id="run.follow"),
        explaining_binding("x", "stop_run", "run", "Stop"),
        explaining_binding("r", "resume_run", "run", "Resume"),
    ]

    detail: reactive[RunDetail | None] = reactive(None, always_update=False)
    """The latest snapshot of the run; None until the first read lands."""

    show_log: reactive[bool] = reactive(True)
    """Whether the log tail panel is shown (l toggles; hiding gives the plots more room)."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = str(run_id)
        self._poll = None
        self._log_lines: tuple[str, ...] = ()
        self._shown: dict[str, tuple] = {}
        self._sampler = ProcessSampler()  # CPU use is measured between two of this screen's reads

    def compose(self) -> ComposeResult:
        yield Static(f"run {self.run_id}", id="run-title")
        with Horizontal(id="run-plots"):
            yield LinePlot(id="loss-plot", empty_message="no loss yet")
            with Vertical(id="run-speed"):
                yield LinePlot(id="speed-plot", empty_message="no s/step yet")
                yield LinePlot(id="tokens-plot", empty_message="no tok/s yet")
        with Horizontal(id="run-panels"):
            with Vertical(id="run-progress-panel"):
                # a known total from the start: an indeterminate bar animates at full frame rate
                yield ProgressBar(total=1, id="run-progress", show_eta=False)
                yield Static("", id="run-progress-text")
            yield Static("", id="run-gpus")
        yield FollowingLog(id="run-log", max_lines=500)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#loss-plot").border_title = "loss"
        self.query_one("#speed-plot").border_title = SPEED_TITLE
        self.query_one("#tokens-plot").border_title = "tok/s, each logged step"
        self.query_one("#run-progress-panel").border_title = "progress"
        self.query_one("#run-gpus").border_title = "GPUs"
        self.query_one("#run-log").border_title = "log"
        self.refresh_detail()
        self.set_interval(self.app.poll_seconds, self.refresh_detail)
        self.set_interval(1.0, self.tick)

    def tick(self) -> None:
        """Elapsed time and the phase's duration move every second, events or not."""
        if self.detail is not None and self.detail.row.is_active and is_visible_screen(self):
            self._show_progress(self.detail)

    # -- reading ---------------------------------------------------------------------------------
    def refresh_detail(self) -> None:
        if self._poll is not None and not self._poll.is_finished:
            return
        if not is_visible_screen(self):
            return
        self._poll = self.load_detail()

    @work(thread=True, exit_on_error=False, group="run-poll")
    def load_detail(self) -> None:
        detail = read_run_detail(self.app.store(), self.run_id, sampler=self._sampler)
        self.post_message(RunDetailLoaded(detail))

    @on(RunDetailLoaded)
    def take_detail(self, message: RunDetailLoaded) -> None:
        if message.detail.row.id == self.run_id or self.detail is None:
            self.detail = message.detail
            self.app.note_statuses([message.detail.row])

    def watch_detail(self, old: RunDetail | None, detail: RunDetail | None) -> None:
        if detail is None:
            return
        if old is None or old.row.status != detail.row.status:
            self.refresh_bindings()  # Stop and Resume follow the status
        self._show_title(detail)
        if old is None or old.series != detail.series:
            self._show_plots(detail)
        self._show_progress(detail)
        on_cpu = detail.row.gpus == "cpu"
        self.query_one("#run-gpus").border_title = "CPU" if on_cpu else "GPUs"
        self._update_static("#run-gpus", gpu_lines(detail.gpus, on_cpu, detail.usage))
        if old is None or old.log_tail != detail.log_tail:
            self._show_log(detail.log_tail)

    def _show_title(self, detail: RunDetail) -> None:
        row = detail.row
        title = Text.assemble(
            (row.name, "bold"), f"  #{row.id}  ", status_text(row.status),
            "  ", (short_model(row.model), "cyan"),
            f"  msl {format_number(row.max_seq_len)}",
            f"  batch {row.batch_size or '-'}/{row.per_device_batch or '-'}",
            f"  gpus {row.gpus or '-'}",
        )
        if detail.last_error and row.status in ("failed", "crashed"):
            title.append(f"\n{detail.last_error}", style="red")
        elif row.eval_note:  # completed, but its evaluation after training was stopped or failed
            title.append(f"\n{row.eval_note}", style="yellow")
        self._update_static("#run-title", title)

    def _update_static(self, selector: str, text: Text) -> None:
        """Update a panel only when its text changed: a redraw costs more than the comparison."""
        key = (text.plain, tuple(text.spans))
        if self._shown.get(selector) != key:
            self._shown[selector] = key
            self.query_one(selector, Static).update(text)

    def _show_plots(self, detail: RunDetail) -> None:
        self.query_one("#loss-plot", LinePlot).series = tuple(
            s
            for s in (
                series_of(detail, "loss", "train", SERIES_COLOURS[0]),
                series_of(detail, "eval_loss", "eval", SERIES_COLOURS[1]),
            )
            if s is not None
        )
        # the legend writes each series' last value after its name: the latest step, so say so
        speed = series_of(detail, "seconds_per_step", f"{LATEST} s/step", SERIES_COLOURS[2], skip_first=True)
        self.query_one("#speed-plot", LinePlot).series = (speed,) if speed else ()
        tokens = series_of(detail, "tokens_per_second", f"{LATEST} tok/s", SERIES_COLOURS[4])
        self.query_one("#tokens-plot", LinePlot).series = (tokens,) if tokens else ()

    def _show_progress(self, detail: RunDetail) -> None:
        row = detail.row
        bar = self.query_one("#run-progress", ProgressBar)
        if row.max_steps and (bar.total, bar.progress) != (row.max_steps, row.step or 0):
            bar.update(total=row.max_steps, progress=row.step or 0)
        now = self.app.clock()
        if row.started_at is None:
            elapsed = None
        else:
            elapsed = (row.ended_at or now) - row.started_at
        live = detail.live
        # at the median pace, not the latest step's, plus the evaluations still to come
        eta = live.eta(row.step, row.max_steps, row.seconds_per_step) if row.is_active else None
        lines = Text()
        if row.status == "queued" and not row.job:
            waiting = "free GPUs (gpus: auto)" if row.gpus == "auto" else "its supervisor to start training"
            lines.append(f"queued: waiting for {waiting}\n", style="yellow")
        if row.job:
            lines.append(row.job + "\n", style="yellow" if row.status == "queued" else "")
        lines.append(f"step {row.step if row.step is not None else '-'}/{row.max_steps or '-'}", style="bold")
        eta_text = format_duration(eta) if row.is_active else "-"
        if row.is_active and eta is not None:
            eta_text += live.unmeasured()
        lines.append(f"   elapsed {format_duration(elapsed)}   ETA {eta_text}\n")
        if live.phase is not None:
            phase = live.phase
            lines.append("phase ", style="bold")
            lines.append(phase.label, style="cyan")
            if phase.share is not None:
                lines.append(" " + progress_bar(phase.done or 0, phase.total, 12))
            lines.append(f" for {format_duration(max(0.0, now - phase.since))}\n")
        # steps and time are on the line above (with the ETA); the loss plot shows the minimum
        for line in summary_lines(row, now, latest=detail.latest(), skip=(STEPS, DURATION, MIN_LOSS),
                                  omit_unknown=True):
            lines.append(line + "\n")
        skipped = detail.share_over_msl
        style = "bold yellow" if skipped and skipped > 0.05 else ""
        lines.append(
            f"skipped {format_percent(skipped, 1)} of prompts (>= msl {format_number(row.max_seq_len)})",
            style=style,
        )
        self._update_static("#run-progress-text", lines)

    def _show_log(self, tail: tuple[str, ...]) -> None:
        log = self.query_one("#run-log", FollowingLog)
        old = self._log_lines
        new_lines: tuple[str, ...]
        if old and tail and old[-1] in tail:
            # append only what came after the last line we showed (tails overlap between reads)
            index = len(tail) - 1 - tail[::-1].index(old[-1])
            new_lines = tail[index + 1 :]
        else:
            log.clear()
            new_lines = tail
        if new_lines:
            log.write_lines(new_lines)
        self._log_lines = tail

    def watch_show_log(self, show: bool) -> None:
        log = self.query_one("#run-log", FollowingLog)
        log.display = show
        if show and log.following:
            log.call_after_refresh(log.follow)
        self._fit_plots()

    def on_resize(self) -> None:
        self._fit_plots()

    def _fit_plots(self) -> None:
        # Short terminals: one speed plot is readable, two are not; tokens/s stays in the progress panel.
        shown = self.size.height >= 32 or not self.show_log
        self.query_one("#tokens-plot").display = shown
        self.query_one("#speed-plot").border_title = SPEED_TITLE if shown else SPEED_TITLE_SHORT

    # -- actions -------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Stop is offered while the run is queued or running, Resume once it stopped, failed or
        crashed (pressed otherwise, or from the palette, they say why they do not apply)."""
        if parameters:  # explaining_binding's: always
            return True
        row = self.detail.row if self.detail is not None else None
        if action == "stop_run":
            return row is not None and row.is_active
        if action == "resume_run":
            return row is not None and row.is_resumable
        return True

    def action_toggle_log(self) -> None:
        self.show_log = not self.show_log

    def action_follow_log(self) -> None:
        self.show_log = True
        self.query_one("#run-log", FollowingLog).follow()

    def action_full_log(self) -> None:
        """The whole log, full-screen, with search (as in ``less``)."""
        from arctui.screens.log_view import LogViewScreen

        self.app.push_screen(LogViewScreen(self.run_id))

    def action_stop_run(self, _anyway: str = "") -> None:
        from arctui.screens.run_control import confirm_and_stop

        if self.detail is not None:
            confirm_and_stop(self, self.detail.row)

    def action_resume_run(self, _anyway: str = "") -> None:
        from arctui.screens.run_control import resume

        if self.detail is not None:
            resume(self, self.detail.row)

    def action_predictions(self) -> None:
        """This run's evaluated tasks as grids (its newest evaluation)."""
        self.app.open_predictions(self.run_id)

    def action_clone_run(self) -> None:
        self.app.action_new_run(clone_from=self.run_id)

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            PaletteCommand("Stop run", "Stop this run (asks first)", self.action_stop_run),
            PaletteCommand("Resume run", "Resume this run from its last checkpoint", self.action_resume_run),
            PaletteCommand("Clone run", "New run form filled from this run", self.action_clone_run),
            PaletteCommand("Toggle log", "Show or hide the log tail", self.action_toggle_log),
            PaletteCommand("Follow log", "Scroll the log to its newest line and keep following", self.action_follow_log),
            PaletteCommand("Full log", "The whole log full-screen, with search", self.action_full_log),
        ]
