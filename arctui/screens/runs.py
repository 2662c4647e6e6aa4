"""The Runs screen: every run with its live status, sortable, filterable, multi-selectable.

It shows the most recent runs first and reads at most ``PAGE_SIZE`` of them per poll (the store sorts
and filters in SQL), so it stays fast with tens of thousands of runs in the store. Archived runs are
hidden unless the filter names them; the sort and the filter are remembered per store across restarts
(``arctui.app_state``). Typing a plain word in the filter searches run names as you type; a filter
with an operator (``msl>=2048``) applies on enter.
"""

from __future__ import annotations

import re

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Input, Static

from arctui.formatting import clip, progress_bar
from arctui.messages import RunsLoaded
from arctui.screens.base import ArcScreen, explaining_binding, is_visible_screen, quit_binding
from arctui.screens.commands import PaletteCommand
from arctui.screens.confirm import AskScreen, ConfirmScreen
from arctui.views.rows import (
    RUN_COLUMN_BY_KEY,
    RUN_COLUMNS,
    RunColumn,
    RunRow,
    check_where,
    read_runs,
    steps_text,
)

PAGE_SIZE = 500
FIXED_COLUMNS = 3  # the selection mark, id and name stay in view when the table scrolls sideways
_NOT_A_NAME = re.compile(r"""[=<>~!()'"]|\b(and|or|not)\b""", re.IGNORECASE)

STATUS_STYLES = {
    "running": "bold green",
    "queued": "yellow",
    "completed": "blue",
    "stopped": "dim",
    "failed": "bold red",
    "crashed": "bold red",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def plural(count: int, noun: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def filter_where(text: str) -> str:
    """The store filter for what was typed: a plain word searches run names (``name~"word"``), anything
    with an operator or a keyword is the ``--where`` language as is."""
    text = text.strip()
    if not text or _NOT_A_NAME.search(text):
        return text
    return f'name~"{text}"'


def app_wording(error: Exception) -> str:
    """The store's filter error as the app says it (no CLI flag names), and what the table shows."""
    message = str(error).removeprefix("--where: ")
    return f"Filter not applied: {message}. The table still shows the previous results."


# The columns are the view layer's (the same as `arctui runs`); this screen only adds colour, a
# progress bar and fixed widths (so columns do not jump as values change and the first paint is final).
COLUMNS: tuple[RunColumn, ...] = RUN_COLUMNS
COLUMN_BY_KEY = RUN_COLUMN_BY_KEY
SORTABLE_KEYS = tuple(c.key for c in COLUMNS if c.sort_field is not None)


def column_width(column: RunColumn) -> int:
    """Wide enough for the column's values and for its header with a sort arrow."""
    return max(column.width, len(column.label) + 2)


def render_cell(column: RunColumn, row: RunRow, now: float) -> str | Text:
    """What the table shows in ``column`` for ``row``: the view layer's text, styled."""
    if column.key == "status":
        return status_text(row.status)
    if column.key == "progress":
        if row.step is None:
            return Text("")
        return Text.assemble((progress_bar(row.step, row.max_steps, 5), "green"), " ", steps_text(row))
    # a name keeps its end: a study's runs share their beginning and differ in their last words
    return clip(column.cell(row, now), column_width(column), keep_end=column.key == "name")


EMPTY_HINT = (
    "No runs yet.\n\n"
    "Press n for a new run: the demo-cpu preset fine-tunes SmolLM2-135M-Instruct with LoRA on ARC-AGI-1 "
    "on this machine's CPU in a few minutes.\n"
    "Runs launched elsewhere (arctui launch configs/demo-cpu.yaml in another terminal) appear here live."
)
SELECT_MARK = "●"


class RunsScreen(ArcScreen):
    """Every run, most recent first; open one, select several to compare, launch new ones."""

    AUTO_FOCUS = "#runs-table"

    BINDINGS = [
        # in the order an 80-column footer should keep them: quit, start, compare, stop (only when the
        # highlighted run can be stopped: check_action), sort; the filter box says "/" itself
        quit_binding("runs"),
        Binding("enter", "open_run", "Open", id="runs.open"),
        Binding("n", "app.new_run", "New run", id="runs.new_run"),
        Binding("space", "toggle_select", "Select", id="runs.select"),
        Binding("c", "compare", "Compare", id="runs.compare"),
        Binding("x", "stop_run", "Stop", id="runs.stop"),
        Binding("s", "cycle_sort", "Sort", id="runs.sort"),
        Binding("slash", "focus_filter", "Filter", id="runs.filter", show=False),
        Binding("S", "reverse_sort", "Reverse sort", id="runs.reverse", show=False),
        Binding("r", "resume_run", "Resume run", id="runs.resume", show=False),
        Binding("C", "clone_run", "Clone into a new run", id="runs.clone", show=False),
        Binding("e", "rename_run", "Rename run", id="runs.rename", show=False),
        Binding("t", "tag_run", "Tag run", id="runs.tag", show=False),
        Binding("a", "archive_run", "Archive / unarchive run", id="runs.archive", show=False),
        Binding("d", "delete_run", "Delete run (asks)", id="runs.delete", show=False),
        Binding("j,down", "cursor(1)", "Down", id="runs.down", show=False),
        Binding("k,up", "cursor(-1)", "Up", id="runs.up", show=False),
        Binding("g,home", "cursor_to(0)", "First run", id="runs.first", show=False),
        Binding("G,end", "cursor_to(-1)", "Last run", id="runs.last", show=False),
        Binding("escape", "clear", "Clear selection, then filter", id="runs.clear", show=False),
        explaining_binding("x", "stop_run", "runs", "Stop"),
    ]

    where: reactive[str] = reactive("")
    """The filter in the store's ``--where`` language; empty shows every run (but archived ones)."""

    sort_key: reactive[str] = reactive("created")
    """Key of the column the store sorts by."""

    descending: reactive[bool] = reactive(True)
    """Sort direction (newest / largest first by default)."""

    selected: reactive[tuple[str, ...]] = reactive(())
    """Ids of the runs marked for comparison, in the order they were marked (the first marked is the
    comparison's baseline: see ``arctui.views.compare.BASELINE_RULE``)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[RunRow] = []
        self._poll = None
        self._cells: dict[str, list[str]] = {}  # run id -> the text of each column as shown
        self._state_read = False  # the remembered sort and filter are applied before the first read
        self._filter_error = ""
        self._where_text = ""  # what was typed for the filter in force
        self._committed_text = ""  # ...and for the last one entered (kept while an expression is typed)
        self._detail_key: tuple | None = None  # the run (and accuracy) the line under the table is about

    def compose(self) -> ComposeResult:
        with Horizontal(id="runs-bar"):
            yield Static("arctui", id="runs-title")
            yield Input(
                placeholder="/ search names, or filter: model~SmolLM and msl>=2048 and status=completed",
                id="where",
                compact=True,
            )
        table: DataTable = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True,
                                     fixed_columns=FIXED_COLUMNS)
        yield table
        yield Static(EMPTY_HINT, id="runs-empty")
        yield Static("", id="runs-detail")
        yield Static("", id="runs-status")
        yield Footer()

    def on_screen_resume(self) -> None:
        self.refresh_runs()  # back from another screen: show what changed meanwhile at once

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        table.add_column(" ", key="mark", width=1)
        for column in COLUMNS:
            table.add_column(self._header(column), key=column.key, width=column_width(column))
        table.focus()
        self.restore_view()
        self.set_interval(self.app.poll_seconds * 2, self.refresh_runs)

    def _header(self, column: RunColumn) -> Text:
        if column.key == self.sort_key:
            return Text(f"{column.label} {'▼' if self.descending else '▲'}", style="bold")
        return Text(column.label)

    def _relabel_headers(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        for column in COLUMNS:
            table.columns[column.key].label = self._header(column)
        table.refresh()

    # -- the remembered view ---------------------------------------------------------------------
    def _store_key(self) -> str:
        return self.app.db_url or "default"

    @work(thread=True, exit_on_error=False, group="runs-state")
    def restore_view(self) -> None:
        """Apply the sort and filter remembered for this store, then start reading."""
        from arctui.app_state import load_section

        self.app.call_from_thread(self._restored, load_section(self._store_key(), "runs"))

    def _restored(self, state: dict) -> None:
        text = state.get("filter")
        if isinstance(text, str) and text:
            with self.prevent(Input.Changed):
                self.query_one("#where", Input).value = text
            self._set_where(text)
        if state.get("sort") in SORTABLE_KEYS:
            self.sort_key = state["sort"]
        if isinstance(state.get("descending"), bool):
            self.descending = state["descending"]
        self._state_read = True
        self._poll = None
        self.refresh_runs()

    def remember_view(self) -> None:
        if self._state_read:
            state = {"filter": self._where_text, "sort": self.sort_key, "descending": self.descending}
            self._save_view(state)

    @work(thread=True, exit_on_error=False, group="runs-state-save")
    def _save_view(self, state: dict) -> None:
        from arctui.app_state import save_section

        save_section(self._store_key(), "runs", state)

    # -- reading ---------------------------------------------------------------------------------
    def refresh_runs(self) -> None:
        """Start a read unless one is still running (a slow database never piles up threads) or the
        screen is hidden under another one (it catches up when it shows again)."""
        if self._poll is not None and not self._poll.is_finished:
            return
        if not self._state_read or not is_visible_screen(self):
            return
        self._poll = self.load_runs(self.where, COLUMN_BY_KEY[self.sort_key].sort_field, self.descending)

    @work(thread=True, exit_on_error=False, group="runs-poll")
    def load_runs(self, where: str, sort: str, descending: bool) -> None:
        from arctui.views.manage import hidden_runs

        rows = read_runs(self.app.store(), where, sort, descending, PAGE_SIZE, also=hidden_runs(where))
        self.post_message(RunsLoaded(rows, len(rows), where, sort, descending))

    @on(RunsLoaded)
    def show_runs(self, message: RunsLoaded) -> None:
        if message.where != self.where or message.descending != self.descending:
            return  # a read started before the filter or sort changed; the next poll is current
        if message.sort != COLUMN_BY_KEY[self.sort_key].sort_field:
            return
        self._apply_rows(message.rows)
        self._show_empty_state(not message.rows)
        self._update_status()
        self._show_detail()
        self.app.note_statuses(message.rows)

    def _apply_rows(self, rows: list[RunRow]) -> None:
        table = self.query_one("#runs-table", DataTable)
        now = self.app.clock()
        cells = {row.id: [c.cell(row, now) for c in COLUMNS] for row in rows}
        if [r.id for r in rows] == [r.id for r in self.rows]:
            # same runs in the same order: touch only the cells whose text changed (data or clock)
            for row in rows:
                old = self._cells.get(row.id)
                for i, column in enumerate(COLUMNS):
                    if old is None or old[i] != cells[row.id][i]:
                        table.update_cell(row.id, column.key, render_cell(column, row, now))
        else:
            cursor_id = self.current_run_id()
            table.clear()
            for row in rows:
                mark = SELECT_MARK if row.id in self.selected else " "
                table.add_row(mark, *(render_cell(c, row, now) for c in COLUMNS), key=row.id)
            if cursor_id is not None and any(r.id == cursor_id for r in rows):
                table.move_cursor(row=table.get_row_index(cursor_id), animate=False)
        self._cells = cells
        self.rows = rows

    def _show_empty_state(self, empty: bool) -> None:
        """An empty store says how to start; an empty filter result says so instead of a blank table."""
        hint = self.query_one("#runs-empty", Static)
        hint.update(EMPTY_HINT if not self.where.strip() else
                    f"No run matches the filter: {self.where}\n(archived runs show with tag=archived)")
        hint.set_class(empty, "-shown")

    def _update_status(self) -> None:
        running = sum(1 for r in self.rows if r.status == "running")
        queued = sum(1 for r in self.rows if r.status == "queued")
        shown = plural(len(self.rows), "run") + (
            " (most recent first; refine the filter to see others)" if len(self.rows) >= PAGE_SIZE else "")
        parts = [shown, f"{running} running", f"{queued} queued"]
        if self.selected:
            listed = {r.id for r in self.rows}
            hidden = sum(1 for run_id in self.selected if run_id not in listed)
            parts.append(f"{len(self.selected)} selected" + (f", {hidden} hidden by the filter" if hidden else "")
                         + " (c: compare)")
        if self._filter_error:
            parts.append("filter not applied: previous results")
        column = COLUMN_BY_KEY[self.sort_key]
        parts.append(f"sort: {column.label} {'▼' if self.descending else '▲'}")
        self.query_one("#runs-status", Static).update(" · ".join(parts))

    # -- filter and sort ---------------------------------------------------------------------------
    @on(Input.Submitted, "#where")
    def apply_filter(self, event: Input.Submitted) -> None:
        self.check_and_set_filter(event.value)
        self.query_one("#runs-table", DataTable).focus()

    @on(Input.Changed, "#where")
    def search_as_typed(self, event: Input.Changed) -> None:
        """A plain word (or nothing) searches names as it is typed; while a filter expression is being
        typed, the filter last applied stays in force until enter."""
        text = event.value.strip()
        if not text or filter_where(text) != text:
            self._set_where(text, commit=False)
        elif self._where_text != self._committed_text:
            self._set_where(self._committed_text, commit=False)

    @work(thread=True, exit_on_error=False, group="runs-filter")
    def check_and_set_filter(self, text: str) -> None:
        try:
            check_where(filter_where(text))
        except Exception as error:
            self.app.call_from_thread(self._filter_invalid, error)
            return
        self.app.call_from_thread(self._set_where, text)

    def _filter_invalid(self, error: Exception) -> None:
        self.query_one("#where", Input).add_class("-invalid")
        self._filter_error = str(error)
        self._set_where(self._committed_text, commit=False)
        self._update_status()
        self.app.report_error(app_wording(error))

    def _set_where(self, text: str, commit: bool = True) -> None:
        """Filter by ``text`` (a name search or a filter expression); ``commit``: it was entered."""
        text = text.strip()
        if commit:
            self.query_one("#where", Input).remove_class("-invalid")
            self._filter_error = ""
            self._committed_text = text
        self._where_text = text
        self.where = filter_where(text)

    def watch_where(self) -> None:
        self._poll = None
        self.refresh_runs()
        self.remember_view()

    def watch_sort_key(self) -> None:
        self._resorted()

    def watch_descending(self) -> None:
        self._resorted()

    def _resorted(self) -> None:
        if not self.is_mounted:
            return
        self._relabel_headers()
        self._poll = None
        self.refresh_runs()
        self.remember_view()

    @on(DataTable.HeaderSelected, "#runs-table")
    def sort_by_header(self, event: DataTable.HeaderSelected) -> None:
        key = event.column_key.value
        if key not in SORTABLE_KEYS:
            return
        if key == self.sort_key:
            self.descending = not self.descending
        else:
            self.sort_by(key)

    def sort_by(self, key: str, descending: bool | None = None) -> None:
        """Sort by the column ``key`` (numbers and dates largest first unless told otherwise)."""
        if key not in SORTABLE_KEYS:
            return
        self.sort_key = key
        if descending is not None:
            self.descending = descending

    def action_cycle_sort(self) -> None:
        keys = SORTABLE_KEYS
        self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)]

    def action_reverse_sort(self) -> None:
        self.descending = not self.descending

    def action_focus_filter(self) -> None:
        self.query_one("#where", Input).focus()

    def action_clear(self) -> None:
        where = self.query_one("#where", Input)
        if self.focused is where:
            self.query_one("#runs-table", DataTable).focus()
        elif self.selected:
            self.selected = ()
        elif self.where or where.value:
            with self.prevent(Input.Changed):
                where.value = ""
            self._set_where("")

    def action_cursor(self, delta: int) -> None:
        table = self.query_one("#runs-table", DataTable)
        if table.row_count:
            table.move_cursor(row=max(0, min(table.row_count - 1, table.cursor_row + delta)), animate=False)

    def action_cursor_to(self, row: int) -> None:
        table = self.query_one("#runs-table", DataTable)
        if table.row_count:
            table.move_cursor(row=row if row >= 0 else table.row_count - 1, animate=False)

    # -- selection and actions ------------------------------------------------------------------------
    def current_run_id(self) -> str | None:
        table = self.query_one("#runs-table", DataTable)
        if table.row_count == 0 or table.cursor_row < 0:
            return None
        return table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value

    def action_open_run(self) -> None:
        run_id = self.current_run_id()
        if run_id is not None:
            self.app.open_run(run_id)

    @on(DataTable.RowSelected, "#runs-table")
    def open_selected_row(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(event.row_key.value)

    def action_toggle_select(self) -> None:
        run_id = self.current_run_id()
        if run_id is None:
            return
        if run_id in self.selected:
            self.selected = tuple(r for r in self.selected if r != run_id)
        else:
            self.selected = (*self.selected, run_id)
        table = self.query_one("#runs-table", DataTable)
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1, animate=False)

    def watch_selected(self, old: tuple[str, ...], new: tuple[str, ...]) -> None:
        if not self.is_mounted:
            return
        table = self.query_one("#runs-table", DataTable)
        for run_id in set(old) ^ set(new):
            if run_id in table.rows:
                table.update_cell(run_id, "mark", SELECT_MARK if run_id in new else " ")
        self._update_status()

    def action_compare(self) -> None:
        # in the order the runs were marked (also those a filter now hides): the first is the baseline
        chosen = list(self.selected)
        if len(chosen) < 2:
            self.notify("Select at least two runs with space, then press c.", severity="warning")
            return
        self.app.open_comparison(chosen)

    def _current_row(self) -> RunRow | None:
        run_id = self.current_run_id()
        return next((r for r in self.rows if r.id == run_id), None)

    def action_stop_run(self, _anyway: str = "") -> None:
        from arctui.screens.run_control import confirm_and_stop

        row = self._current_row()
        if row is not None:
            confirm_and_stop(self, row)

    def action_resume_run(self) -> None:
        from arctui.screens.run_control import resume

        row = self._current_row()
        if row is not None:
            resume(self, row)

    def action_clone_run(self) -> None:
        run_id = self.current_run_id()
        if run_id is not None:
            self.app.action_new_run(clone_from=run_id)

    # -- the highlighted run's evaluation -------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#runs-table")
    def highlighted(self) -> None:
        self._show_detail()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Stop is offered while the highlighted run is queued or running (pressed otherwise, or from
        the palette, it says why not)."""
        if action == "stop_run" and not parameters:
            row = self._current_row()
            return row is not None and row.is_active
        return True

    def _show_detail(self) -> None:
        """The highlighted run's evaluation line (read again only when its accuracy changes)."""
        row = self._current_row()
        key = None if row is None else (row.id, row.name, row.accuracy, row.eval_note, row.is_active)
        if key == self._detail_key:
            return
        if (key and key[-1]) != (self._detail_key and self._detail_key[-1]):
            self.refresh_bindings()  # Stop follows the highlighted run's status
        self._detail_key = key
        if row is None:
            self.query_one("#runs-detail", Static).update("")
        elif row.accuracy is None:
            self._detail_shown(row.id, row.eval_note)
        else:
            self.load_detail(row.id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs-detail")
    def load_detail(self, run_id: str) -> None:
        from arctui.views.evaluations import evaluation_coverage

        coverage = evaluation_coverage(self.app.store(), run_id)
        self.app.call_from_thread(self._detail_shown, run_id, coverage.line() if coverage else "")

    def _detail_shown(self, run_id: str, text: str) -> None:
        if self.current_run_id() == run_id:
            row = self._current_row()
            # the whole name, which the table may cut, then what its accuracy covers
            line = "" if row is None else f"#{run_id} {row.name}" + (f": {text}" if text else "")
            self.query_one("#runs-detail", Static).update(Text(line))

    # -- rename, tag, archive, delete (the store's checks, as `arctui rename|tag|archive|delete`) --------
    def _manage(self, what: str, call, done: str) -> None:
        """Run ``call(store)`` in a worker; notify ``done`` (or the result line) and re-read the runs."""
        def work_thread() -> None:
            result = call(self.app.store())
            message = result if isinstance(result, str) else done
            self.app.call_from_thread(self._managed, message)

        self.run_worker(work_thread, thread=True, exit_on_error=False, group=f"runs-{what}")

    def _managed(self, message: str) -> None:
        self.notify(message)
        self._poll = None
        self.refresh_runs()

    def action_rename_run(self) -> None:
        from arctui.views.manage import rename_run

        row = self._current_row()
        if row is None:
            return

        def answered(name: str | None) -> None:
            if name and name.strip() and name.strip() != row.name:
                self._manage("rename", lambda store: rename_run(store, row.id, name),
                             f"Renamed {row.name} (#{row.id}) to {name.strip()}")

        self.app.push_screen(AskScreen(f"Rename run {row.name} (#{row.id}) to:", row.name), answered)

    def action_tag_run(self) -> None:
        from arctui.views.manage import ARCHIVED_TAG, set_tags

        row = self._current_row()
        if row is None:
            return

        def answered(text: str | None) -> None:
            if text is not None:
                tags = [t.strip() for t in text.split(",")]
                self._manage("tag", lambda store: set_tags(store, row.id, tags), f"Tags of {row.name} saved")

        tags = ", ".join(t for t in row.tags if t != ARCHIVED_TAG)
        self.app.push_screen(AskScreen(f"Tags of run {row.name} (#{row.id}), comma separated:", tags,
                                       placeholder="e.g. baseline, smollm"), answered)

    def action_archive_run(self) -> None:
        from arctui.views.manage import ARCHIVED_TAG, set_archived

        row = self._current_row()
        if row is None:
            return
        archived = ARCHIVED_TAG in row.tags
        verb = "Unarchived" if archived else "Archived"
        hint = "" if archived else "; filter with tag=archived to see it"
        self._manage("archive", lambda store: set_archived(store, row.id, not archived),
                     f"{verb} {row.name} (#{row.id}){hint}")

    def action_delete_run(self) -> None:
        from arctui.views.manage import delete_run

        row = self._current_row()
        if row is None:
            return
        if row.is_active:
            self.notify(f"Run {row.name} is {row.status}: stop it first (x).", severity="warning")
            return
        dialog = ConfirmScreen(
            f"Delete run {row.name} (#{row.id})?",
            "Its metrics, events and evaluations leave the store. Archive it (a) to only hide it.",
            yes_label="Delete",
            option="also delete its folder (checkpoints, logs)",
        )

        def answered(yes: bool | None) -> None:
            if yes:
                remove = dialog.option_chosen
                self._manage("delete", lambda store: delete_run(store, row.id, remove_folder=remove), "")

        self.app.push_screen(dialog, answered)

    def palette_commands(self) -> list[PaletteCommand]:
        commands = [
            PaletteCommand("Open run", "Show the run under the cursor live", self.action_open_run),
            PaletteCommand("Compare selected runs", "Side by side, ratios to the first marked", self.action_compare),
            PaletteCommand("Filter runs", "Search names as you type, or a filter such as msl>=2048",
                           self.action_focus_filter),
            PaletteCommand("Stop run", "Stop the run under the cursor (asks first)", self.action_stop_run),
            PaletteCommand("Resume run", "Resume the run under the cursor from its last checkpoint",
                           self.action_resume_run),
            PaletteCommand("Clone run", "New run form filled from the run under the cursor", self.action_clone_run),
            PaletteCommand("Rename run", "Give the run under the cursor another name", self.action_rename_run),
            PaletteCommand("Tag run", "Set the tags of the run under the cursor", self.action_tag_run),
            PaletteCommand("Archive run", "Hide the run under the cursor from the list (again: unarchive)",
                           self.action_archive_run),
            PaletteCommand("Delete run", "Delete the run under the cursor (asks; its folder only if ticked)",
                           self.action_delete_run),
            PaletteCommand("Reverse sort", "Flip the sort direction", self.action_reverse_sort),
        ]
        for column in (c for c in COLUMNS if c.key in SORTABLE_KEYS):
            commands.append(
                PaletteCommand(f"Sort runs by {column.label}", f"Sort by {column.key}", lambda k=column.key: self.sort_by(k))
            )
        return commands
