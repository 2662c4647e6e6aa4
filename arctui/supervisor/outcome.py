"""What a run's event stream says, moving it into the store, and recording how the run ended.

Shared by the live supervisor (:mod:`arctui.supervisor.supervise`) and by recovery of a run whose
supervisor died (:mod:`arctui.supervisor.recovery`):

    state = StreamState()
    ingest(store, run_id, EventTailer(folder.events_file), state)      # exactly once, by seq
    status = finish(store, run_id, folder, state, exit_code)           # completed/stopped/failed/crashed

The final status comes from the runner's last ``end`` event (after the last ``start``), else: exit 0
-> completed; a stop request -> stopped; an unknown exit -> crashed; otherwise failed.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from arctui.supervisor.process import describe_exit
from arctui.supervisor.runfolder import RunFolder, tail_lines
from arctui.supervisor.tail import EventTailer, batches

BATCH_EVENTS = 500
# "fine_tuning: error: ..." (a UserError) or the last line of a Python traceback.
ERROR_LINE = re.compile(r"^(\w+: error: .+|[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*)$")
FINAL_STATUSES_FROM_RUNNER = ("completed", "stopped", "failed")


def log(message: str) -> None:
    """A timestamped line on stdout: the supervisor's ``supervisor.log``."""
    print(time.strftime("%Y-%m-%d %H:%M:%S"), message, flush=True)


@dataclass
class StreamState:
    """What the event stream said about the current session (since its last ``start``)."""

    start: dict | None = None
    end: dict | None = None
    error: dict | None = None
    ingested: int = 0
    latencies: list[float] = field(default_factory=list)

    def observe(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "start":
            self.start, self.end, self.error = event, None, None
        elif kind == "end":
            self.end = event
        elif kind == "error":
            self.error = event


def ingest(store, run_id: int, tailer: EventTailer, state: StreamState) -> int:
    """Move every complete new event of the file into the store; returns how many were new."""
    events = tailer.read_all()
    new = 0
    for chunk in batches(events, BATCH_EVENTS):
        new += store.ingest_events(run_id, chunk)
        now = time.time()
        for event in chunk:
            state.observe(event)
            if isinstance(event.get("time"), int | float):
                state.latencies.append(now - event["time"])
    state.ingested += new
    return new


def error_text(state: StreamState, folder: RunFolder, code: int | None, lines: int = 12) -> str:
    """The error event if the runner wrote one, else the last lines of the training log."""
    if state.error:
        head = f"{state.error.get('type', 'Error')}: {state.error.get('message', '')}".strip()
        tb = [str(x) for x in (state.error.get("traceback") or [])][-lines:]
        return "\n".join([head, *tb]) if tb else head
    tail = tail_lines(folder.log_file, 60)
    # accelerate's launcher re-raises the worker's exit as its own traceback, which buries the
    # runner's one-line "fine_tuning: error: ..." message: keep the log up to that traceback.
    for i in range(len(tail) - 1, -1, -1):
        if tail[i].startswith("Traceback") and any("accelerate/commands/launch.py" in x for x in tail[i:]):
            tail = tail[:i]
            break
    head = next((x for x in reversed(tail) if ERROR_LINE.match(x)), None)
    shown = tail[-lines:]
    return "\n".join([head or describe_exit(code), *(x for x in shown if x != head)])


def final_status(state: StreamState, code: int | None, stop_request: str | None) -> str:
    """Decide a finished run's status from the ``end`` event, the exit code and any stop request."""
    if state.end and state.end.get("status") in FINAL_STATUSES_FROM_RUNNER:
        return state.end["status"]
    if code == 0:
        return "completed"
    if stop_request:
        return "stopped"
    if code is None:
        return "crashed"
    return "failed"


def _to_stderr(message: str) -> None:
    print(f"arctui: {message}", file=sys.stderr, flush=True)


def finish(store, run_id: int, folder: RunFolder, state: StreamState, code: int | None,
           *, attached: bool = False, note: str | None = None, refused: str | None = None,
           log: Callable[[str], None] = _to_stderr) -> str:
    """Record the final status of a run whose training processes are all gone. ``note`` becomes the
    last error of a completed run (an evaluation after training that failed or was stopped);
    ``refused`` (the store refused an event for good) makes the run failed with that reason."""
    from db.errors import IllegalTransitionError

    status = "failed" if refused else final_status(state, code, folder.stop_request())
    error = note if status == "completed" else None
    if refused:
        error = refused
    elif status == "failed":
        error = error_text(state, folder, code)
    elif status == "crashed":
        why = "the training process ended while no supervisor watched it" if attached else \
            "the supervisor and the training process are gone"
        error = f"{why} and left no end event; " + error_text(state, folder, code)
    try:
        store.set_status(run_id, status, exit_code=code, error=error)
    except IllegalTransitionError as exc:
        log(f"could not record {status}: {exc}")
    return status
