"""The arctui Textual app: runs, one run live, new run form, comparison and GPUs.

Run it with ``arctui`` (no command) or ``python -m arctui``; tests build it with :func:`make_app`.

The app only reads the store (in thread workers) and asks the supervisor to launch, stop or resume
runs; runs live in their own process sessions, so closing the app never stops them, and reopening it
shows them live again wherever they were launched from.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from textual import work
from textual.app import App
from textual.binding import Binding

from arctui.screens.commands import ArcCommands

POLL_SECONDS = 0.5  # ~2 reads per second for what is on screen; a new event shows within ~1 s
RECOVERY_SECONDS = 10.0  # how often the app looks for runs whose supervisor died while it was open


class ArcTuiApp(App[int]):
    """Terminal experiment manager for LoRA fine-tuning small LMs on ARC."""

    CSS_PATH = "app.tcss"
    TITLE = "arctui"
    COMMANDS = App.COMMANDS | {ArcCommands}
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("question_mark,f1", "help", "Help", id="app.help"),
        Binding("n", "new_run", "New run", id="app.new_run"),
        Binding("u", "gpus", "GPUs", id="app.gpus"),  # g/G move to the top/bottom of lists
        Binding("i", "studies", "Studies", id="app.studies"),  # a study runs an iteration as one; t tags a run
        Binding("q", "quit", "Quit", id="app.quit", priority=False),
    ]

    def __init__(
        self,
        db_url: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = POLL_SECONDS,
        gpu_reader: Callable | None = None,
        analyze_prompts: bool = True,
        open_run: str | None = None,
    ) -> None:
        super().__init__()
        self.db_url = db_url
        """The store's URL; None means ``runner.paths.default_db_url()``."""
        self.clock = clock
        """Wall clock for ages and ETAs (tests freeze it so snapshots are stable)."""
        self.poll_seconds = poll_seconds
        """How often screens re-read what they show."""
        self.gpu_reader = gpu_reader
        """The supervisor's NVML reader to use (None: ``arctui.supervisor.gpus.read_nvml``)."""
        self.analyze_prompts = analyze_prompts
        """Whether the new-run form counts prompt lengths for its fit figure (a child process that
        tokenizes every prompt: ~20 s of CPU for ARC-AGI-1 on 2 cores, then cached on disk)."""
        self.first_run = open_run
        """A run to open on start, above the Runs screen (``arctui --open-run RUN``; ``make run``)."""
        self._store = None
        self._store_lock = threading.Lock()
        self._last_error: tuple[str, float] | None = None
        self._statuses: dict[str, str] = {}

    # -- the store, opened once, lazily, from a worker thread ------------------------------------
    def store(self):
        """The open ``RunStore`` (opened on first use; safe to call from several worker threads)."""
        with self._store_lock:
            if self._store is None:
                from db.store import RunStore

                self._store = RunStore.open(self.db_url)
            return self._store

    def on_mount(self) -> None:
        from arctui.screens.runs import RunsScreen

        self.push_screen(RunsScreen())
        if self.first_run is not None:
            self.open_run(self.first_run)
        # A supervisor that dies while the app is open must not leave its run "running" on screen.
        self.recover_orphaned_runs()
        self.set_interval(RECOVERY_SECONDS, self.recover_orphaned_runs)

    def on_unmount(self) -> None:
        # Only the database connection is ours; runs belong to their supervisors and keep going.
        if self._store is not None:
            self._store.close()

    @work(thread=True, exclusive=True, group="recovery", exit_on_error=False)
    def recover_orphaned_runs(self) -> None:
        """Re-attach or close out this machine's runs whose supervisor died (the same repair every
        headless command makes when it opens the store); each repair becomes a notification."""
        try:
            store = self.store()
            if not store.active_runs():
                return
            from arctui.supervisor.recovery import recover_orphans

            actions = recover_orphans(store, self.db_url)
        except Exception as exc:  # shown, never fatal: the next round tries again
            self.call_from_thread(self.report_error, exc)
            return
        for line in actions:
            self.call_from_thread(self.notify, line, title="Recovered a run", severity="warning", timeout=10)

    # -- errors: every failed worker becomes a visible notification, never a traceback exit -----
    # (Worker.StateChanged does not bubble: each screen forwards failures here, see screens.base.)
    def report_error(self, error: BaseException | str | None) -> None:
        """Show ``error`` as a notification; the same message is not repeated within 10 s (polls)."""
        message = str(error) if error is not None else "unknown error"
        if not isinstance(error, str) and error is not None and not _is_user_error(error):
            message = f"{type(error).__name__}: {message}"
        now = time.monotonic()
        if self._last_error and self._last_error[0] == message and now - self._last_error[1] < 10:
            return
        self._last_error = (message, now)
        self.notify(message, title="Error", severity="error", timeout=8)

    def note_statuses(self, rows) -> None:
        """Remember the status of each run a screen read; a run seen active that is now failed or
        crashed gets a notification, whichever screen is on top."""
        for row in rows:
            before = self._statuses.get(row.id)
            self._statuses[row.id] = row.status
            if before in ("queued", "running") and row.status in ("failed", "crashed"):
                self.notify(
                    f"Run {row.name} (#{row.id}) {row.status}; open it for the last error and log.",
                    title="Run ended badly", severity="error", timeout=15,
                )

    # -- leaving forms: a filled form is never lost without asking ---------------------------------
    def after_forms_agree(self, then: Callable[[], object]) -> None:
        """Call ``then`` once every open form with unsaved changes has been confirmed discarded
        (forms define ``confirm_discard(then)``)."""
        forms = [s for s in self.screen_stack if callable(getattr(s, "confirm_discard", None))]

        def ask(remaining: list) -> None:
            if not remaining:
                then()
                return
            remaining[-1].confirm_discard(lambda: ask(remaining[:-1]))

        ask(forms)

    async def action_quit(self) -> None:
        """Quit (q, ctrl+q), asking first when a form has unsaved changes."""
        self.after_forms_agree(self.exit)

    # -- navigation -------------------------------------------------------------------------------
    def action_show_runs(self) -> None:
        """Back to the Runs screen (the bottom of the stack), closing the screens above it."""
        from arctui.screens.runs import RunsScreen

        def close_above() -> None:
            while len(self.screen_stack) > 1 and not isinstance(self.screen, RunsScreen):
                self.pop_screen()

        self.after_forms_agree(close_above)

    def action_help(self) -> None:
        from arctui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_new_run(self, clone_from: str | None = None) -> None:
        from arctui.screens.new_run import NewRunScreen

        self.push_screen(NewRunScreen(clone_from=clone_from))

    def action_gpus(self) -> None:
        from arctui.screens.gpus import GpusScreen

        if not isinstance(self.screen, GpusScreen):
            self.push_screen(GpusScreen())

    def action_studies(self) -> None:
        from arctui.screens.studies import StudiesScreen

        if not isinstance(self.screen, StudiesScreen):
            self.push_screen(StudiesScreen())

    def open_study(self, study_ref: str) -> None:
        """Show the Study screen for ``study_ref`` (an id or a name)."""
        from arctui.screens.studies import StudyScreen

        self.push_screen(StudyScreen(study_ref))

    def open_run(self, run_id: str) -> None:
        """Show the Run screen for ``run_id``."""
        from arctui.screens.run import RunScreen

        self.push_screen(RunScreen(run_id))

    def open_comparison(self, run_ids: list[str]) -> None:
        """Show the Compare screen for ``run_ids``, the first being the baseline
        (``arctui.views.compare.BASELINE_RULE``)."""
        from arctui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(run_ids))

    def open_predictions(self, run_id: str, *, source_key: tuple[int, str] | None = None,
                         task_id: str | None = None) -> None:
        """Show the Predictions screen of ``run_id``'s evaluation ``source_key`` ((step, data set);
        None: the newest), with ``task_id`` selected if given."""
        from arctui.screens.predictions import PredictionsScreen

        self.push_screen(PredictionsScreen(run_id, source_key=source_key, task_id=task_id))

    def open_task_diff(self, run_a: str, run_b: str) -> None:
        """Show which tasks each of two runs solves that the other does not."""
        from arctui.screens.predictions import TaskDiffScreen

        self.push_screen(TaskDiffScreen(run_a, run_b))


def _is_user_error(error: BaseException) -> bool:
    from runner.errors import UserError

    return isinstance(error, UserError)


def make_app(db_url: str | None = None, **options) -> ArcTuiApp:
    """The app on the store at ``db_url`` (None: the default store). Shared by the CLI and tests."""
    return ArcTuiApp(db_url, **options)
