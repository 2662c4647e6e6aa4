"""The Predictions screen: a run's evaluated tasks as ARC grids; and the two-run task comparison.

:class:`PredictionsScreen` lists the tasks of one evaluation (a checkpoint on a data set) with their
solved / unsolved / unanswered mark, the top candidate's votes and mean log-probability; ``f`` filters
by status, ``/`` by task id, ``o`` changes the order, ``c`` moves to the run's next evaluation. The
selected task shows its train pairs, test input, expected output and the two most voted candidates in
the ARC colours (:class:`arctui.widgets.arc_grid.ArcGrid`), each wrong candidate's wrong cells, and the
raw text and decoding error of invalid predictions. Files are read in a thread worker; what is read
and how it is ranked is :mod:`arctui.views.predictions`'s, the same as ``arctui eval --show``'s.

:class:`TaskDiffScreen` compares two runs on the same tasks: the tasks each solves that the other does
not (``arctui eval-diff A B``); Enter opens the predictions of a task there.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Input, Static

from arctui.formatting import format_percent
from arctui.screens.base import ArcScreen, quit_binding
from arctui.screens.commands import PaletteCommand
from arctui.views.predictions import (
    FILTERS,
    SORT_KEYS,
    STATUS_MARKS,
    STATUS_STYLES,
    UNANSWERED,
    UNANSWERED_NOTE,
    EvalPredictions,
    EvalSource,
    TaskDiff,
    TaskResult,
    filter_tasks,
    invalid_lines,
    load_predictions,
    read_eval_sources,
    read_task_diff,
    sample_panels,
    sort_tasks,
    task_diff_lines,
    task_heading,
    train_panels,
)
from arctui.widgets.arc_grid import ArcGrid
from runner.errors import UserError


class PredictionsLoaded(Message):
    """An evaluation's predictions were read (``evaluation`` is None when there is none: see ``problem``)."""

    def __init__(self, evaluation: EvalPredictions | None, sources: list[EvalSource], problem: str = "") -> None:
        super().__init__()
        self.evaluation = evaluation
        self.sources = sources
        self.problem = problem


class TaskDiffLoaded(Message):
    """Two runs' evaluations were read and compared (``diff`` is None when they cannot be: ``problem``)."""

    def __init__(self, diff: TaskDiff | None, problem: str = "") -> None:
        super().__init__()
        self.diff = diff
        self.problem = problem


def status_cell(status: str) -> Text:
    return Text(STATUS_MARKS[status], style=STATUS_STYLES[status])


class PredictionsScreen(ArcScreen):
    """One run's predictions on one evaluation, task by task, drawn as grids."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="predictions.back"),
        quit_binding("predictions"),
        Binding("f", "next_filter", "Filter", id="predictions.filter"),
        Binding("o", "next_sort", "Sort", id="predictions.sort"),
        Binding("slash", "search", "Search id", id="predictions.search"),
        Binding("c", "next_evaluation", "Checkpoint", id="predictions.evaluation"),
        Binding("j", "cursor(1)", "Next task", id="predictions.down", show=False),
        Binding("k", "cursor(-1)", "Previous task", id="predictions.up", show=False),
        Binding("g", "cursor_to(0)", "First task", id="predictions.first", show=False),
        Binding("G", "cursor_to(-1)", "Last task", id="predictions.last", show=False),
    ]

    evaluation: reactive[EvalPredictions | None] = reactive(None)
    """The evaluation shown; None until the first read lands."""
    status_filter: reactive[str] = reactive("all")
    """Which tasks the list shows: ``all`` or one status (:data:`arctui.views.predictions.FILTERS`)."""
    sort_key: reactive[str] = reactive("task")
    """The list's order (:data:`arctui.views.predictions.SORT_KEYS`)."""
    search: reactive[str] = reactive("")
    """Only task ids containing this text (case-insensitive)."""
    selected: reactive[str | None] = reactive(None)
    """The task whose grids the detail pane shows."""

    def __init__(self, run_id: str, *, source_key: tuple[int, str] | None = None, task_id: str | None = None) -> None:
        super().__init__()
        self.run_id = str(run_id)
        """The run whose predictions these are."""
        self.source_key = source_key
        """Which of the run's evaluations: (step, data set); None = the newest."""
        self.sources: list[EvalSource] = []
        """The run's evaluations, as last read."""
        self.shown: list[TaskResult] = []
        """The tasks the list shows, in its order."""
        self.problem = ""
        """Why nothing is shown (no evaluation yet, predictions file gone), or empty."""
        self._wanted_task = task_id

    def compose(self) -> ComposeResult:
        yield Static(f"predictions of run {self.run_id}: reading…", id="predictions-title")
        with Horizontal(id="predictions-body"):
            with Vertical(id="predictions-side"):
                yield Input(placeholder="/ task id contains…", id="predictions-search")
                yield Static("", id="predictions-counts")
                yield DataTable(id="predictions-tasks", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="predictions-detail"):
                yield Static("", id="detail-heading")
                yield ArcGrid(id="detail-train")
                yield ArcGrid(id="detail-test")
                yield Static("", id="detail-invalid")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#predictions-tasks", DataTable)
        for label in ("", "task", "votes", "log-p"):
            table.add_column(label, key=label or "mark")
        self.query_one("#predictions-detail").border_title = "task"
        table.focus()
        self.load(self.source_key)

    @work(thread=True, exclusive=True, group="predictions-load", exit_on_error=False)
    def load(self, key: tuple[int, str] | None) -> None:
        sources = read_eval_sources(self.app.store(), self.run_id)
        if not sources:
            self.post_message(PredictionsLoaded(None, sources, f"run {self.run_id} has no evaluation yet; "
                                                f"evaluate it with `arctui eval {self.run_id}` in a terminal "
                                                "(or eval_after_training: true in its config)"))
            return
        try:
            chosen = next((s for s in sources if (s.step, s.dataset) == key), sources[-1])
            evaluation = load_predictions(chosen)
        except UserError as exc:
            self.post_message(PredictionsLoaded(None, sources, str(exc)))
            return
        self.post_message(PredictionsLoaded(evaluation, sources))

    @on(PredictionsLoaded)
    def take_predictions(self, message: PredictionsLoaded) -> None:
        self.sources = message.sources
        self.problem = message.problem
        if message.evaluation is None:
            self.query_one("#predictions-title", Static).update(Text(message.problem, style="bold yellow"))
            self.evaluation, self.shown = None, []
            self.query_one("#predictions-tasks", DataTable).clear()
            self.show_task(None)
            return
        self.evaluation = message.evaluation

    def watch_evaluation(self, evaluation: EvalPredictions | None) -> None:
        if evaluation is None:
            return
        source = evaluation.source
        tasks = len(evaluation.tasks)
        vote_2 = source.metrics.get("vote_2")
        title = Text.assemble(
            ("predictions ", "bold"), f"run {source.run_label} · step {source.step} · {source.dataset} · ",
            (f"vote_2 {format_percent(vote_2, 1)} of {tasks} tasks" if vote_2 is not None else f"{tasks} tasks", "bold"),
        )
        if len(self.sources) > 1:
            position = self.sources.index(source) + 1 if source in self.sources else len(self.sources)
            title.append(f"  (evaluation {position}/{len(self.sources)}, c: next)", style="dim")
        if evaluation.note:
            title.append(f"  {evaluation.note}", style="yellow")
        self.query_one("#predictions-title", Static).update(title)
        self.refresh_list()
        if self.selected is not None:  # the same task of another evaluation: watch_selected does not fire
            self.show_task(evaluation.task(self.selected))

    def watch_status_filter(self) -> None:
        self.refresh_list()

    def watch_sort_key(self) -> None:
        self.refresh_list()

    def watch_search(self) -> None:
        self.refresh_list()

    def refresh_list(self) -> None:
        evaluation = self.evaluation
        if evaluation is None or not self.is_mounted:
            return
        self.shown = sort_tasks(filter_tasks(evaluation.tasks, self.status_filter, self.search), self.sort_key)
        counts = evaluation.counts()
        text = Text.assemble(("filter ", "dim"), (self.status_filter, "bold"), ("  sort ", "dim"), (self.sort_key, "bold"), "\n")
        # two counts a line: three never fit the side panel's 40 columns, and a wrap split a count
        for status, end in (("solved", "  "), ("unsolved", "\n"), (UNANSWERED, "  ")):
            text.append_text(status_cell(status))
            text.append(f" {status} {counts[status]}{end}")
        if counts["unscored"]:
            text.append(f"? unscored {counts['unscored']}")
        text.rstrip()
        self.query_one("#predictions-counts", Static).update(text)
        table = self.query_one("#predictions-tasks", DataTable)
        keep = self._wanted_task or self.selected
        table.clear()
        for task in self.shown:
            logprob = task.top_logprob
            table.add_row(status_cell(task.status), task.task_id, task.votes_label,
                          "-" if logprob is None else f"{logprob:.2f}", key=task.task_id)
        ids = [t.task_id for t in self.shown]
        if keep in ids:
            self._wanted_task = None
            table.move_cursor(row=ids.index(keep))
        self.selected = ids[table.cursor_row] if ids else None
        if not ids:
            self.show_task(None)

    @on(DataTable.RowHighlighted, "#predictions-tasks")
    def highlight_task(self, event: DataTable.RowHighlighted) -> None:
        # Highlights arrive as messages: after a refill (row 0, then the kept task's row) an older one
        # can land after the cursor moved on, and must not take the selection back.
        if event.cursor_row != event.data_table.cursor_row:
            return
        if event.row_key is not None and event.row_key.value is not None:
            self.selected = str(event.row_key.value)

    def watch_selected(self, task_id: str | None) -> None:
        evaluation = self.evaluation
        self.show_task(evaluation.task(task_id) if evaluation is not None and task_id else None)

    def show_task(self, task: TaskResult | None) -> None:
        heading = self.query_one("#detail-heading", Static)
        train, test = self.query_one("#detail-train", ArcGrid), self.query_one("#detail-test", ArcGrid)
        invalid = self.query_one("#detail-invalid", Static)
        if task is None:
            heading.update(Text("no task matches the filter" if self.evaluation is not None else "", style="dim"))
            train.panels, test.panels = (), ()
            invalid.update("")
            return
        heading.update(Text(task_heading(task), style=STATUS_STYLES[task.status]))
        train.panels = tuple(train_panels(task))
        test.panels = tuple(panel for sample in task.samples for panel in sample_panels(sample))
        lines = [line for sample in task.samples for line in invalid_lines(sample)]
        if task.status == UNANSWERED:
            lines.append(UNANSWERED_NOTE)
        invalid.update(Text("\n".join(lines), style="dim"))
        self.query_one("#predictions-detail", VerticalScroll).scroll_home(animate=False)

    # -- keys -------------------------------------------------------------------------------------
    def action_next_filter(self) -> None:
        self.status_filter = FILTERS[(FILTERS.index(self.status_filter) + 1) % len(FILTERS)]

    def action_next_sort(self) -> None:
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]

    def action_cursor(self, delta: int) -> None:
        table = self.query_one("#predictions-tasks", DataTable)
        if table.row_count:
            table.move_cursor(row=max(0, min(table.row_count - 1, table.cursor_row + delta)))

    def action_cursor_to(self, row: int) -> None:
        table = self.query_one("#predictions-tasks", DataTable)
        if table.row_count:
            table.move_cursor(row=row % table.row_count)

    def action_search(self) -> None:
        self.query_one("#predictions-search", Input).focus()

    def action_next_evaluation(self) -> None:
        if len(self.sources) < 2:
            self.notify("This run has one evaluation; `arctui eval RUN --checkpoint STEP` adds more.")
            return
        current = self.evaluation.source if self.evaluation is not None else self.sources[-1]
        position = self.sources.index(current) if current in self.sources else len(self.sources) - 1
        following = self.sources[(position + 1) % len(self.sources)]
        self.source_key = (following.step, following.dataset)
        self.load(self.source_key)

    @on(Input.Changed, "#predictions-search")
    def search_changed(self, event: Input.Changed) -> None:
        self.search = event.value

    @on(Input.Submitted, "#predictions-search")
    def search_done(self) -> None:
        self.query_one("#predictions-tasks", DataTable).focus()

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            PaletteCommand("Filter tasks", "All, solved, unsolved, unanswered", self.action_next_filter),
            PaletteCommand("Sort tasks", "By task id, status, votes, log-prob", self.action_next_sort),
            PaletteCommand("Next evaluation", "Another checkpoint or data set of this run", self.action_next_evaluation),
        ]


class TaskDiffScreen(ArcScreen):
    """Two runs on the same tasks: which each solves that the other does not."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="task_diff.back")]

    diff: reactive[TaskDiff | None] = reactive(None)
    """The comparison; None until read."""

    def __init__(self, run_a: str, run_b: str) -> None:
        super().__init__()
        self.runs = (str(run_a), str(run_b))
        """The two runs compared."""
        self.problem = ""
        """Why they cannot be compared, or empty."""

    def compose(self) -> ComposeResult:
        yield Static(f"solved tasks of runs {self.runs[0]} and {self.runs[1]}: reading…", id="diff-title")
        with Horizontal(id="diff-body"):
            yield DataTable(id="diff-only-a", cursor_type="row")
            yield DataTable(id="diff-only-b", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        for table in self.query(DataTable):
            table.add_column("task", key="task")
        self.load()

    @work(thread=True, exclusive=True, group="task-diff", exit_on_error=False)
    def load(self) -> None:
        try:
            diff = read_task_diff(self.app.store(), *self.runs)
        except UserError as exc:
            self.post_message(TaskDiffLoaded(None, str(exc)))
            return
        self.post_message(TaskDiffLoaded(diff))

    @on(TaskDiffLoaded)
    def take_diff(self, message: TaskDiffLoaded) -> None:
        self.problem = message.problem
        if message.diff is None:
            self.query_one("#diff-title", Static).update(Text(message.problem, style="bold yellow"))
        self.diff = message.diff

    def watch_diff(self, diff: TaskDiff | None) -> None:
        if diff is None:
            return
        lines = task_diff_lines(diff)[:2]  # the lists below hold the rest
        lines.append(f"solved by both {len(diff.both)}  ·  by neither {len(diff.neither)}")
        self.query_one("#diff-title", Static).update(Text("\n".join(lines)))
        for table_id, source, tasks in (("#diff-only-a", diff.a, diff.only_a), ("#diff-only-b", diff.b, diff.only_b)):
            table = self.query_one(table_id, DataTable)
            table.border_title = f"only {source.run_label} solves ({len(tasks)})"
            table.clear()
            for task_id in tasks:
                table.add_row(task_id, key=task_id)

    @on(DataTable.RowSelected)
    def open_task(self, event: DataTable.RowSelected) -> None:
        if self.diff is None or event.row_key.value is None:
            return
        source = self.diff.a if event.data_table.id == "diff-only-a" else self.diff.b
        self.app.open_predictions(str(source.run_id), source_key=(source.step, source.dataset),
                                  task_id=str(event.row_key.value))
