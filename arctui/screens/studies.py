"""The Studies screens: every study with its progress and ETA, and one study live - its table (one row
per variant, filling in as its runs progress), the overlaid loss curves of its runs, and its actions.

The figures are those of ``arctui study list|show`` (:mod:`arctui.views.studies`, which builds on the
study table of :mod:`arctui.studies.table`); stop, resume and the report go through the same functions
as ``arctui study stop|resume|report``. Reads run in thread workers on a timer, like the Runs screen's.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Static

from arctui.formatting import format_age, progress_bar
from arctui.messages import StudiesLoaded, StudyDetailLoaded
from arctui.screens.base import ArcScreen, explaining_binding, is_visible_screen, quit_binding
from arctui.screens.commands import PaletteCommand
from arctui.screens.confirm import AskScreen, ConfirmScreen
from arctui.screens.runs import STATUS_STYLES
from arctui.views.studies import (
    ETA_LABEL,
    StudyDetail,
    StudyProgress,
    default_report_dir,
    live_cells,
    live_headers,
    read_study_detail,
    read_study_list,
    request_study_resume,
    request_study_stop,
    write_study_report,
)
from arctui.widgets.line_plot import SERIES_COLOURS, LinePlot, Series

ETA_SHORT = "when its last run should end, at its runs' measured pace"
STUDY_STYLES = {"active": "bold green", "stopped": "dim", "done": "blue"}


def study_status_text(status: str) -> Text:
    return Text(status, style=STUDY_STYLES.get(status, ""))


def progress_cell(progress: StudyProgress) -> Text:
    """A bar of the finished runs (completed, failed, stopped) and ``k of n`` completed."""
    ended = progress.counts["completed"] + progress.counts["failed"] + progress.counts["stopped"]
    return Text.assemble((progress_bar(ended, progress.runs, 6), "green"), " ", progress.done_text)


def count_cell(value: int, style: str) -> Text:
    return Text(str(value), style=style if value else "dim")


def progress_summary(progress: StudyProgress) -> Text:
    """``2 of 5 completed · 1 running · 1 queued · 1 failed · ETA 3m20s``: a study's progress in a line."""
    text = Text(f"{progress.done_text} completed")
    for key in ("running", "queued", "failed", "stopped"):
        if progress.counts[key]:
            text.append(" · ")
            text.append(f"{progress.counts[key]} {key}", style=STATUS_STYLES.get(key, ""))
    if progress.eta_s is not None:
        text.append(f" · {ETA_LABEL} {progress.eta_text}")
    return text


# -- stop, resume and the report: the same functions as `arctui study stop|resume|report` -------------

def can_stop(progress: StudyProgress) -> bool:
    """Whether stopping the study would change anything: it is active, or has runs queued or running."""
    return progress.status == "active" or bool(progress.counts["running"] + progress.counts["queued"])


def can_resume(progress: StudyProgress) -> bool:
    """Whether resuming would: stopped or crashed runs to queue again (failed ones stay failed), or
    queued ones waiting in a study that is not active."""
    waiting = progress.counts["running"] + progress.counts["queued"]
    return bool(progress.counts["stopped"] + progress.crashed) or (progress.status != "active" and bool(waiting))


def confirm_and_stop_study(screen: StudyViewScreen, progress: StudyProgress) -> None:
    """Ask whether to stop the study; stop it on yes (running runs checkpoint, queued ones unqueue)."""
    running, queued = progress.counts["running"], progress.counts["queued"]
    if not can_stop(progress):
        screen.notify(f"Study {progress.name} is {progress.status}; nothing to stop.", severity="warning")
        return
    consequences = [
        "" if not running else "the running run saves a checkpoint and stops" if running == 1
        else f"the {running} running runs save a checkpoint and stop",
        "" if not queued else "the queued run is unqueued" if queued == 1 else f"the {queued} queued runs are unqueued",
    ]
    detail = "; ".join(c for c in consequences if c) or "no run is queued or running"

    def answered(yes: bool | None) -> None:
        if yes:
            screen.run_worker(lambda: _stop_thread(screen, progress.name), thread=True, exit_on_error=False,
                              group="study-control")

    screen.app.push_screen(ConfirmScreen(
        f"Stop study {progress.name}?", f"{detail[:1].upper()}{detail[1:]}. Nothing is deleted; r resumes it.",
        yes_label="Stop",
    ), answered)


def _stop_thread(screen: StudyViewScreen, name: str) -> None:
    lines = request_study_stop(screen.app.store(), name, screen.app.db_url)
    screen.app.call_from_thread(screen.notify, "\n".join(lines) or "no run was queued or running",
                                title=f"Stopping study {name}")
    screen.app.call_from_thread(screen.refresh_now)


def resume_study(screen: StudyViewScreen, progress: StudyProgress) -> None:
    """Queue the study's stopped and crashed runs again (from their checkpoints) and restart it."""
    def resume() -> None:
        lines = request_study_resume(screen.app.store(), progress.name, screen.app.db_url)
        screen.app.call_from_thread(screen.notify, "\n".join(lines) or "its queued runs go on",
                                    title=f"Resuming study {progress.name}")
        screen.app.call_from_thread(screen.refresh_now)

    screen.run_worker(resume, thread=True, exit_on_error=False, group="study-control")


def ask_and_write_report(screen: StudyViewScreen, name: str) -> None:
    """Ask for a folder (default ``$ARCTUI_HOME/reports/NAME``), write the report there, say where."""
    def chosen(answer: str | None) -> None:
        if answer is None:
            return
        if not answer.strip():
            screen.app.report_error("the report needs a folder: press w again and type one")
            return
        folder = Path(answer.strip()).expanduser()
        screen.run_worker(lambda: _write_thread(screen, name, folder), thread=True, exit_on_error=False,
                          group="study-report")

    screen.app.push_screen(AskScreen(
        f"Write the report of study {name} into the folder:", str(default_report_dir(name)),
        "loss.png, speed.png (accuracy.png when evaluated) and report.md, as `arctui study report --plots` "
        "writes them.  enter: write  ·  escape: cancel",
    ), chosen)


def _write_thread(screen: StudyViewScreen, name: str, folder: Path) -> None:
    paths = write_study_report(screen.app.store(), name, folder)
    screen.report_paths = paths
    screen.app.call_from_thread(
        screen.notify, f"Wrote {', '.join(p.name for p in paths)} into {folder}", title=f"Report of study {name}",
        timeout=20,
    )


class StudyViewScreen(ArcScreen):
    """What both Studies screens share: a read in a thread worker on a timer (skipped while one is
    still running or the screen is hidden) and the study actions on :meth:`chosen_study`."""

    def __init__(self) -> None:
        super().__init__()
        self._poll = None
        self._offered: object = "unread"  # (stop, resume) as the footer last showed them; None: no study
        self.report_paths: list[Path] = []
        """The files of the last report written from this screen."""

    def start_polling(self) -> None:
        self.refresh_now()
        self.set_interval(self.app.poll_seconds * 2, self.refresh_now)

    def on_screen_resume(self) -> None:
        self.refresh_now()  # back from a run or a comparison: show what changed meanwhile at once

    def refresh_now(self) -> None:
        """Start a read unless one is still running or the screen is hidden."""
        if self._poll is not None and not self._poll.is_finished:
            return
        if not is_visible_screen(self):
            return
        self._poll = self.load()

    def load(self):
        """Start the thread worker that reads what the screen shows."""
        raise NotImplementedError

    def chosen_study(self) -> StudyProgress | None:
        """The study the actions apply to."""
        raise NotImplementedError

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Stop and Resume are offered when they would change something (pressed otherwise, or from the
        palette, they say why not)."""
        if action in ("stop_study", "resume_study") and not parameters and self.is_mounted:
            study = self.chosen_study()
            return study is not None and (can_stop if action == "stop_study" else can_resume)(study)
        if action == "write_report" and self.is_mounted:
            return self.chosen_study() is not None  # no study yet: nothing to report
        return True

    def note_offered_actions(self) -> None:
        """Redraw the footer when Stop, Resume or Report starts or stops applying to the chosen study."""
        study = self.chosen_study()
        offered = None if study is None else (can_stop(study), can_resume(study))
        if offered != self._offered:
            self._offered = offered
            self.refresh_bindings()

    def action_stop_study(self, _anyway: str = "") -> None:
        study = self.chosen_study()
        if study is not None:
            confirm_and_stop_study(self, study)

    def action_resume_study(self, _anyway: str = "") -> None:
        study = self.chosen_study()
        if study is not None:
            resume_study(self, study)

    def action_write_report(self) -> None:
        study = self.chosen_study()
        if study is not None:
            ask_and_write_report(self, study.name)


# -- the list ------------------------------------------------------------------------------------------

# What moves first, so that 80 columns show it; the id (the CLI's first column) last.
LIST_COLUMNS = (("name", 18), ("status", 7), ("done", 14), (ETA_LABEL, 7), ("running", 7), ("queued", 6),
                ("failed", 6), ("stopped", 7), ("created", 8), ("id", 4))
EMPTY_HINT = (
    "No studies yet.\n\n"
    "A study is a base run config plus variants, run as one and reported as one table. "
    "Here: n (new run), fill in the base, then ctrl+t adds the variants. In a terminal:\n"
    "  arctui study launch configs/studies/demo-cpu.yaml\n"
    "Studies launched from any terminal appear here live."
)


class StudiesScreen(StudyViewScreen):
    """Every study, newest first, with its progress and ETA; open one to watch it."""

    AUTO_FOCUS = "#studies-table"

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="studies.back"),
        quit_binding("studies"),
        Binding("enter", "open_study", "Open", id="studies.open"),
        Binding("x", "stop_study", "Stop", id="studies.stop"),
        Binding("r", "resume_study", "Resume", id="studies.resume"),
        Binding("w", "write_report", "Report", id="studies.report"),
        explaining_binding("x", "stop_study", "studies", "Stop"),
        explaining_binding("r", "resume_study", "studies", "Resume"),
    ]

    studies: reactive[tuple[StudyProgress, ...]] = reactive((), always_update=False)
    """The latest read of every study, newest first."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded = False
        """Whether the first read has landed."""

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("studies", "bold"), f"   {ETA_LABEL}: {ETA_SHORT}", style=""), id="studies-title")
        yield DataTable(id="studies-table", cursor_type="row", zebra_stripes=True)
        yield Static(EMPTY_HINT, id="studies-empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#studies-table", DataTable)
        for label, width in LIST_COLUMNS:
            table.add_column(label, key=label, width=width)
        self.start_polling()

    @work(thread=True, exit_on_error=False, group="studies-poll")
    def load(self) -> None:
        self.post_message(StudiesLoaded(read_study_list(self.app.store(), self.app.clock())))

    @on(StudiesLoaded)
    def take_studies(self, message: StudiesLoaded) -> None:
        self.loaded = True
        self.studies = tuple(message.studies)
        self.query_one("#studies-empty", Static).set_class(not message.studies, "-shown")
        self.note_offered_actions()

    @on(DataTable.RowHighlighted, "#studies-table")
    def highlighted(self) -> None:
        self.note_offered_actions()

    def watch_studies(self, studies: tuple[StudyProgress, ...]) -> None:
        table = self.query_one("#studies-table", DataTable)
        now = self.app.clock()
        rows = {str(p.id): self._cells(p, now) for p in studies}
        if list(rows) == list(table.rows):
            # the same studies: touch only the cells whose text changed (counts, ETA, age)
            for key, cells in rows.items():
                for (label, _), cell in zip(LIST_COLUMNS, cells, strict=True):
                    if str(table.get_cell(key, label)) != str(cell):
                        table.update_cell(key, label, cell)
            return
        cursor = self.chosen_study()
        table.clear()
        for key, cells in rows.items():
            table.add_row(*cells, key=key)
        if cursor is not None and str(cursor.id) in table.rows:
            table.move_cursor(row=table.get_row_index(str(cursor.id)), animate=False)

    @staticmethod
    def _cells(p: StudyProgress, now: float) -> list[str | Text]:
        return [
            p.name, study_status_text(p.status), progress_cell(p), p.eta_text,
            count_cell(p.counts["running"], STATUS_STYLES["running"]),
            count_cell(p.counts["queued"], STATUS_STYLES["queued"]),
            count_cell(p.counts["failed"], STATUS_STYLES["failed"]),
            count_cell(p.counts["stopped"], ""), format_age(p.created_at, now), str(p.id),
        ]

    def chosen_study(self) -> StudyProgress | None:
        """The study under the cursor."""
        table = self.query_one("#studies-table", DataTable)
        if table.row_count == 0 or table.cursor_row < 0:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return next((p for p in self.studies if str(p.id) == key), None)

    @on(DataTable.RowSelected, "#studies-table")
    def open_selected_row(self, event: DataTable.RowSelected) -> None:
        self.app.open_study(event.row_key.value)

    def action_open_study(self) -> None:
        study = self.chosen_study()
        if study is not None:
            self.app.open_study(str(study.id))

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            PaletteCommand("Open study", "Its live table and loss curves", self.action_open_study),
            PaletteCommand("Stop study", "Stop the study under the cursor (asks first)", self.action_stop_study),
            PaletteCommand("Resume study", "Continue its stopped runs from their checkpoints", self.action_resume_study),
            PaletteCommand("Write study report", "PNG figures and report.md into a folder", self.action_write_report),
        ]


# -- one study -----------------------------------------------------------------------------------------

class StudyScreen(StudyViewScreen):
    """One study live: a row per variant, the loss curves of its runs overlaid, and its actions."""

    AUTO_FOCUS = "#study-table"

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="study.back"),
        quit_binding("study"),
        Binding("enter", "open_run", "Open run", id="study.open"),
        Binding("c", "compare_all", "Compare all", id="study.compare"),
        Binding("x", "stop_study", "Stop", id="study.stop"),
        Binding("r", "resume_study", "Resume", id="study.resume"),
        Binding("w", "write_report", "Report", id="study.report"),
        explaining_binding("x", "stop_study", "study", "Stop"),
        explaining_binding("r", "resume_study", "study", "Resume"),
    ]

    detail: reactive[StudyDetail | None] = reactive(None, always_update=False)
    """The latest snapshot of the study; None until the first read lands."""

    def __init__(self, study_ref: str) -> None:
        super().__init__()
        self.study_ref = str(study_ref)
        """The study's id or name."""
        self._shape: tuple = ()
        self._cells: list[list[str]] = []

    def compose(self) -> ComposeResult:
        yield Static(f"study {self.study_ref}", id="study-title")
        # the variant stays in view when the table scrolls sideways to the figures
        yield DataTable(id="study-table", cursor_type="row", zebra_stripes=True, fixed_columns=1)
        yield LinePlot(id="study-plot", empty_message="no loss logged yet")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#study-table").border_title = "variants (ratio = value / baseline)"
        self.query_one("#study-plot").border_title = "training loss"
        self.start_polling()

    @work(thread=True, exit_on_error=False, group="study-poll")
    def load(self) -> None:
        detail = read_study_detail(self.app.store(), self.study_ref, self.app.clock(), previous=self.detail)
        self.post_message(StudyDetailLoaded(detail))

    @on(StudyDetailLoaded)
    def take_detail(self, message: StudyDetailLoaded) -> None:
        self.detail = message.detail
        self.app.note_statuses(message.detail.rows)

    def watch_detail(self, old: StudyDetail | None, detail: StudyDetail | None) -> None:
        if detail is None:
            return
        self.note_offered_actions()
        progress = detail.progress
        table = detail.table
        self.query_one("#study-title", Static).update(Text.assemble(
            ("study ", "bold"), (progress.name, "bold"), f"  #{progress.id}  ", study_status_text(progress.status),
            "  ", progress_summary(progress), f"  ·  baseline {table.rows[table.baseline].variant}",
        ))
        self._show_table(detail)
        if old is None or old.curves != detail.curves:
            self.query_one("#study-plot", LinePlot).series = tuple(
                Series(curve.key, curve.steps, curve.values, SERIES_COLOURS[i % len(SERIES_COLOURS)])
                for i, curve in enumerate(detail.curves)
            )

    def _show_table(self, detail: StudyDetail) -> None:
        table = self.query_one("#study-table", DataTable)
        heads = live_headers(detail)
        rows = live_cells(detail)
        keys = [r.run.id for r in detail.table.rows]
        status_col = heads.index("status")
        shape = (tuple(heads), tuple(keys))
        if shape == self._shape:
            # same columns and runs: touch only the cells whose text changed
            for key, old, new, row in zip(keys, self._cells, rows, detail.table.rows, strict=True):
                for i, (was, now) in enumerate(zip(old, new, strict=True)):
                    if was != now:
                        table.update_cell(key, f"c{i}", self._cell(i, now, status_col, row.run.status))
        else:
            cursor = table.cursor_row
            table.clear(columns=True)
            for i, head in enumerate(heads):
                table.add_column(head, key=f"c{i}")
            for key, cells, row in zip(keys, rows, detail.table.rows, strict=True):
                table.add_row(*(self._cell(i, c, status_col, row.run.status) for i, c in enumerate(cells)), key=key)
            if 0 <= cursor < table.row_count:
                table.move_cursor(row=cursor, animate=False)
        self._shape = shape
        self._cells = rows

    @staticmethod
    def _cell(index: int, text: str, status_col: int, status: str) -> str | Text:
        return Text(text, style=STATUS_STYLES.get(status, "")) if index == status_col else text

    @property
    def progress(self) -> StudyProgress | None:
        """The study's progress as last read (None until the first read lands)."""
        return self.detail.progress if self.detail is not None else None

    def chosen_study(self) -> StudyProgress | None:
        return self.progress

    # -- actions -------------------------------------------------------------------------------------
    def current_run_id(self) -> str | None:
        table = self.query_one("#study-table", DataTable)
        if table.row_count == 0 or table.cursor_row < 0:
            return None
        return table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value

    @on(DataTable.RowSelected, "#study-table")
    def open_selected_row(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(event.row_key.value)

    def action_open_run(self) -> None:
        run_id = self.current_run_id()
        if run_id is not None:
            self.app.open_run(run_id)

    def action_compare_all(self) -> None:
        if self.detail is None:
            return
        if len(self.detail.run_ids) < 2:
            self.notify("The study has one run: nothing to compare it with.", severity="warning")
            return
        self.app.open_comparison(self.detail.run_ids)

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            PaletteCommand("Open run", "The run of the variant under the cursor, live", self.action_open_run),
            PaletteCommand("Compare all", "Every run of the study side by side, baseline first", self.action_compare_all),
            PaletteCommand("Stop study", "Running runs checkpoint and stop, queued ones unqueue (asks first)",
                           self.action_stop_study),
            PaletteCommand("Resume study", "Continue its stopped runs from their checkpoints", self.action_resume_study),
            PaletteCommand("Write study report", "PNG figures and report.md into a folder", self.action_write_report),
        ]
