"""What the screens ask of the supervisor, for thread workers: stop a run, resume a run.

The supervisor owns the training processes; the screens only ask, through here (screens import
neither ``db`` nor ``arctui.supervisor``), and see the result in the store on their next poll.
"""

from __future__ import annotations


def request_stop(store, run_id: str):
    """SIGTERM to the run's process group (a queued run is marked stopped at once); returns the Run."""
    from arctui.supervisor import stop_run

    return stop_run(store, run_id)


def request_resume(store, run_id: str, db_url: str | None):
    """Resume a stopped, failed or crashed run from its latest checkpoint, as the same run, under a
    new detached supervisor; ``UserError`` when it is queued or running."""
    from arctui.supervisor import resume_run

    return resume_run(store, run_id, db_url=db_url)
