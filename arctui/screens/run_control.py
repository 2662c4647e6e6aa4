"""Stop (after a confirmation) and resume runs through the supervisor, in thread workers.

The supervisor owns the training processes: stopping sends SIGTERM to the run's process group (the
runner saves and ends with status ``stopped``); resuming spawns a new detached supervisor. The app
only asks; the Run and Runs screens see the result in the store on their next poll.
"""

from __future__ import annotations

from textual.screen import Screen

from arctui.screens.confirm import ConfirmScreen
from arctui.views.rows import RunRow


def confirm_and_stop(screen: Screen, row: RunRow) -> None:
    """Ask whether to stop ``row``'s run; stop it on yes."""
    if not row.is_active:
        screen.notify(f"Run {row.name} is {row.status}; only queued or running runs can be stopped.", severity="warning")
        return

    def answered(yes: bool | None) -> None:
        if yes:
            _stop(screen, row.id, row.name)

    screen.app.push_screen(
        ConfirmScreen(
            f"Stop run {row.name} (#{row.id})?",
            "The runner saves a checkpoint and ends as 'stopped'; resume it later with r.",
            yes_label="Stop",
        ),
        answered,
    )


def _stop(screen: Screen, run_id: str, name: str) -> None:
    screen.run_worker(
        lambda: _stop_thread(screen, run_id, name), thread=True, exit_on_error=False, group="run-control"
    )


def _stop_thread(screen: Screen, run_id: str, name: str) -> None:
    from arctui.views.control import request_stop

    request_stop(screen.app.store(), run_id)
    screen.app.call_from_thread(screen.notify, f"Stop requested for {name}; it ends after its current step.")


def resume(screen: Screen, row: RunRow) -> None:
    """Resume ``row``'s run from its latest checkpoint (same run, steps continue)."""
    if row.is_active:
        screen.notify(f"Run {row.name} is already {row.status}.", severity="warning")
        return
    screen.run_worker(lambda: _resume_thread(screen, row.id, row.name), thread=True, exit_on_error=False, group="run-control")


def _resume_thread(screen: Screen, run_id: str, name: str) -> None:
    from arctui.views.control import request_resume

    request_resume(screen.app.store(), run_id, screen.app.db_url)
    screen.app.call_from_thread(screen.notify, f"Resuming {name} from its latest checkpoint.")
