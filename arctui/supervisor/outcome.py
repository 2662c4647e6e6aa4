"""What a run's event stream says, moving it into the store, and recording how the run ended.

Shared by the live supervisor (:mod:`arctui.supervisor.supervise`) and by recovery of a run whose
supervisor died (:mod:`arctui.supervisor.recovery`):

    state = StreamState()
    ingest(store, run_id, EventTailer(folder.events_file), state)      # exactly once, by seq
    status = finish(store, run_id, folder, state, exit_code)           # completed/stopped/failed/crashed

The final status comes from the runner's last ``end`` event (after the last ``start``), else: a run
folder that disappeared -> failed ("run folder disappeared"); exit 0 -> completed; a stop request ->
stopped; an unknown exit -> crashed; otherwise failed.

End-of-run store writes go through :func:`with_retries` (backoff, like the ingest); the exit code is
persisted in the run folder (``exit-code``) before them, so recovery can still record it.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from arctui.supervisor.process import describe_exit, killed_by
from arctui.supervisor.runfolder import RunFolder, tail_lines
from arctui.supervisor.tail import EventTailer, batches

BATCH_EVENTS = 500
# "fine_tuning: error: ..." (a UserError) or the last line of a Python traceback.
# How a worker's death by signal reads in accelerate's output: its simple launcher's
# CalledProcessError ("died with <Signals.SIGKILL: 9>") and torch elastic's summary ("exitcode: -9").
SIGNAL_DEATH = re.compile(r"died with <Signals\.(SIG[A-Z0-9]+): \d+>|exitcode\s*:\s*-(\d+)")
ERROR_LINE = re.compile(r"^(\w+: error: .+|[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*)$")
FINAL_STATUSES_FROM_RUNNER = ("completed", "stopped", "failed")
FOLDER_GONE = "run folder disappeared"
# Store errors at the end of a run (a database restarting, a full disk) are retried this long, with a
# delay doubling from RETRY_FIRST_SECONDS up to RETRY_MAX_SECONDS between tries.
RETRY_WINDOW_SECONDS = 600.0
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 15.0
# Quarantined event lines named one by one in supervisor.log; beyond that only counted.
QUARANTINE_LOG_LINES = 20


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
    # Event-to-store latencies, only of events that are new to this supervisor and were written
    # while it watched: events re-read after a store error or a re-attach, and times outside
    # [watch start, now] (a forged or skewed clock), are not latencies.
    latencies: list[float] = field(default_factory=list)
    watching_since: float = field(default_factory=time.time)
    timed_seq: int = 0  # highest seq whose latency was taken

    def observe(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "start":
            self.start, self.end, self.error = event, None, None
        elif kind == "end":
            self.end = event
        elif kind == "error":
            self.error = event

    def time_event(self, event: dict, now: float) -> None:
        """Take ``event``'s event-to-store latency when it is one (see ``latencies``)."""
        seq, written = event.get("seq"), event.get("time")
        if not isinstance(seq, int) or seq <= self.timed_seq:
            return
        self.timed_seq = seq
        if isinstance(written, int | float) and self.watching_since <= written <= now:
            self.latencies.append(now - written)


def ingest(store, run_id: int, tailer: EventTailer, state: StreamState) -> int:
    """Move every complete new event of the file into the store; returns how many were new."""
    events = tailer.read_all()
    new = 0
    for chunk in batches(events, BATCH_EVENTS):
        new += store.ingest_events(run_id, chunk)
        now = time.time()
        for event in chunk:
            state.observe(event)
            state.time_event(event, now)
    state.ingested += new
    return new


def next_retry_delay(delay: float) -> float:
    """The backoff after ``delay`` (0: the first retry): doubling from RETRY_FIRST_SECONDS, capped."""
    return RETRY_FIRST_SECONDS if delay <= 0 else min(delay * 2, RETRY_MAX_SECONDS)


def with_retries(what: str, call: Callable[[], object], *, log: Callable[[str], None],
                 window: float | None = None, sleep: Callable[[float], None] = time.sleep):
    """``call()``, retried with backoff on store errors that may pass (a database restarting, a full
    disk) for up to ``window`` seconds (``RETRY_WINDOW_SECONDS``); permanent ones (an illegal
    transition, an unknown run, a value the store cannot hold) and the last failure are raised."""
    from db.errors import IllegalTransitionError, StoreError, UnknownRunError, UnstorableValueError

    deadline = time.monotonic() + (RETRY_WINDOW_SECONDS if window is None else window)
    delay = RETRY_FIRST_SECONDS
    while True:
        try:
            return call()
        except (IllegalTransitionError, UnknownRunError, UnstorableValueError):
            raise
        except StoreError as exc:
            if time.monotonic() + delay > deadline:
                if delay > RETRY_FIRST_SECONDS:  # it was retried: say it gave up
                    log(f"store error while {what}, giving up: {exc}")
                raise
            log(f"store error while {what}, retrying in {delay:.1f} s: {exc}")
            sleep(delay)
            delay = next_retry_delay(delay)


def report_quarantine(tailer: EventTailer, seen: set[int], log: Callable[[str], None]) -> None:
    """Log each quarantined line of the event file once (``seen``: offsets already logged)."""
    for item in tailer.quarantined:
        if item.offset in seen:
            continue
        seen.add(item.offset)
        if len(seen) <= QUARANTINE_LOG_LINES:
            log(f"warning: quarantined a line of events.jsonl at {item.describe()}")
        elif len(seen) == QUARANTINE_LOG_LINES + 1:
            log("warning: more lines of events.jsonl quarantined; only counted from here on")


def quarantine_note(count: int) -> str | None:
    if not count:
        return None
    return (f"{count} line{'s' if count != 1 else ''} of events.jsonl quarantined (not the runner's "
            f"event stream; see supervisor.log)")


def folder_gone(folder: RunFolder, state: StreamState) -> bool:
    """The run folder vanished under the run (or its event file, after events were read from it)."""
    return not folder.root.is_dir() or (state.start is not None and not folder.events_file.exists())


def append_log(folder: RunFolder) -> Callable[[str], None]:
    """A ``log`` that appends timestamped lines to the run's ``supervisor.log`` (for recovery)."""

    def write(message: str) -> None:
        try:
            with open(folder.supervisor_log, "a") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        except OSError:
            pass

    return write


def error_text(state: StreamState, folder: RunFolder, code: int | None, lines: int = 12) -> str:
    """The error event if the runner wrote one, else the last lines of the training log."""
    if state.error:
        head = f"{state.error.get('type', 'Error')}: {state.error.get('message', '')}".strip()
        tb = [str(x) for x in (state.error.get("traceback") or [])][-lines:]
        return "\n".join([head, *tb]) if tb else head
    tail = tail_lines(folder.log_file, 60)
    died = _signal_death(tail)
    # accelerate's launcher re-raises the worker's exit as its own traceback, which buries the
    # runner's one-line "fine_tuning: error: ..." message: keep the log up to that traceback.
    for i in range(len(tail) - 1, -1, -1):
        if tail[i].startswith("Traceback") and any("accelerate/commands/launch.py" in x for x in tail[i:]):
            tail = tail[:i]
            break
    head = next((x for x in reversed(tail) if ERROR_LINE.match(x)), None)
    shown = tail[-lines:]
    if head is None and died is not None:
        # The launcher itself exits 1 when its worker is killed: say what killed the worker.
        head = f"the training process was {killed_by(died)}"
    return "\n".join([head or describe_exit(code), *(x for x in shown if x != head)])


def _signal_death(lines: list[str]) -> str | None:
    """The signal that killed a training worker, as accelerate reported it in the log, or None."""
    import signal

    for line in reversed(lines):
        found = SIGNAL_DEATH.search(line)
        if found and found.group(1):
            return found.group(1)
        if found and int(found.group(2)) in signal.Signals._value2member_map_:
            return signal.Signals(int(found.group(2))).name
    return None


def final_status(state: StreamState, code: int | None, stop_request: str | None,
                 *, vanished: bool = False) -> str:
    """Decide a finished run's status from the ``end`` event, the exit code and any stop request.
    Without an end event, a run whose folder ``vanished`` is failed whatever its exit code."""
    if state.end and state.end.get("status") in FINAL_STATUSES_FROM_RUNNER:
        return state.end["status"]
    if vanished:
        return "failed"
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
           quarantined: int = 0, vanished: bool | None = None,
           log: Callable[[str], None] = _to_stderr, retry_window: float | None = None,
           ended_by: tuple[str, str | None] | None = None) -> str:
    """Record the final status of a run whose training processes are all gone. ``note`` becomes the
    last error of a completed run (an evaluation after training that failed or was stopped);
    ``refused`` (the store refused an event for good) makes the run failed with that reason;
    ``quarantined`` lines of the event file are counted in the last error. A completed run keeps no
    older error as its last one (the history stays in its kept events). The exit code goes into the
    run folder first; store errors are retried (:func:`with_retries`). ``ended_by``: (status, why) from
    the executor (a Slurm job's end state) for a runner that wrote no end event."""
    from db.errors import IllegalTransitionError

    if code is not None:
        folder.write_exit_code(code)
    if vanished is None:
        vanished = folder_gone(folder, state)
    status = "failed" if refused else final_status(state, code, folder.stop_request(), vanished=vanished)
    error = note if status == "completed" else None
    # Slurm's verdict on a job that did not end well (a node failure, a cancel, the time limit) wins
    # over a runner that only says it stopped, or says nothing; a runner's completed or failed wins.
    said = state.end.get("status") if state.end is not None else None
    if ended_by is not None and not refused and said not in ("completed", "failed") and \
            (said is None or ended_by[0] != "completed"):
        status, error = ended_by[0], ended_by[1] if ended_by[0] != "completed" else note
        if status == "failed":
            error = f"{error}; " + error_text(state, folder, code)
    elif refused:
        error = refused
    elif status == "failed" and vanished and not state.end:
        error = f"{FOLDER_GONE} ({folder.root}) before the runner's end event; {describe_exit(code)}"
    elif status == "failed":
        error = error_text(state, folder, code)
    elif status == "crashed":
        why = "the training process ended while no supervisor watched it" if attached else \
            "the supervisor and the training process are gone"
        error = f"{why} and left no end event; " + error_text(state, folder, code)
    extra = quarantine_note(quarantined)
    if extra:
        error = f"{error}\n{extra}" if error else extra

    def record() -> None:
        if status == "completed" and error is None:
            store.update_run(run_id, last_error=None)  # an older session's error is history now
        store.set_status(run_id, status, exit_code=code, error=error)

    try:
        with_retries(f"recording {status}", record, log=log, window=retry_window)
    except IllegalTransitionError as exc:
        log(f"could not record {status}: {exc}")
    return status
