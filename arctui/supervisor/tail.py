"""Tail a runner's ``events.jsonl`` from a byte offset, yielding complete, valid events only.

The runner flushes one JSON object per line (docs/events.md), so a reader may see the first half of a
line that is still being written: only bytes up to the last newline are consumed, the rest is read
again next time. Exactly-once delivery into the store does not depend on the offset: every event
carries ``seq`` and the store skips ``seq <= cursor``, so a restarted tailer may simply start over.

The file is read as the runner writes it (issue 16, item 3): every line must be a JSON object with a
positive int ``seq``, a numeric ``time`` and a string ``event`` (a ``step`` event also an int
``step``), and its ``seq`` must be the previous accepted one + 1; a resumed runner's ``start`` may
instead continue from the highest ``seq`` of any parseable line, as ``runner.events`` counts. A line
that does not fit is *quarantined*: never handed on (so a stray high ``seq`` cannot move the store's
cursor past the real events), recorded in ``quarantined`` for the supervisor to report, and the lines
after it are judged on their own. A torn line with a real event appended to it (a writer killed
mid-line, then another one) gives that event back and quarantines only the fragment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# How json.dumps (the runner's writer) starts every event: where a torn line's real event begins.
EVENT_HEAD = b'{"seq"'


@dataclass(frozen=True)
class Quarantined:
    """One line of the event file that was not handed on: where it is, why, and how it starts."""

    offset: int
    reason: str
    text: str

    def describe(self) -> str:
        return f"byte {self.offset}: {self.reason}: {self.text}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def schema_problem(event: Any) -> str | None:
    """Why a parsed line is not a runner event (None when it is one)."""
    if not isinstance(event, dict):
        return f"not a JSON object ({type(event).__name__})"
    if not _positive_int(event.get("seq")):
        return "no positive integer seq"
    if not _number(event.get("time")):
        return "no numeric time"
    if not isinstance(event.get("event"), str) or not event["event"]:
        return "no event kind"
    if event["event"] == "step" and (not isinstance(event.get("step"), int) or isinstance(event["step"], bool)):
        return "a step event without an integer step"
    return None


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # UnicodeDecodeError included
        return _PARSE_ERROR


_PARSE_ERROR = object()


class EventTailer:
    """Incremental reader of a JSON-lines event file.

    ``read()`` returns the valid events completed since the previous call (possibly none). Lines that
    do not fit (see the module docstring) are counted in ``bad_lines`` and listed in ``quarantined``.
    """

    def __init__(self, path: str | os.PathLike, offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset
        self.quarantined: list[Quarantined] = []
        self.last_seq = 0  # seq of the last event handed on
        self.max_seq = 0  # highest seq of any parseable line: where a resumed runner continues
        self._anchored = offset == 0  # from a later offset, the first valid event sets the numbering
        self._inode: int | None = None

    @property
    def bad_lines(self) -> int:
        return len(self.quarantined)

    def _restart(self) -> None:
        self.offset = 0
        self.last_seq = self.max_seq = 0
        self.quarantined = []
        self._anchored = True

    def read(self, max_bytes: int = 16 * 1024 * 1024) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                stat = os.fstat(fh.fileno())
                if self._inode is not None and stat.st_ino != self._inode or stat.st_size < self.offset:
                    # Replaced or truncated: start over; the store's cursor drops what it already has.
                    self._restart()
                self._inode = stat.st_ino
                if stat.st_size == self.offset:
                    return []
                fh.seek(self.offset)
                chunk = fh.read(max_bytes)
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        start_offset = self.offset
        self.offset += end + 1
        events: list[dict[str, Any]] = []
        position = 0
        for raw in chunk[: end + 1].split(b"\n")[:-1]:
            at = start_offset + position
            position += len(raw) + 1
            if not raw.strip():
                continue
            event = self._accept(raw, at)
            if event is not None:
                events.append(event)
        return events

    def _quarantine(self, at: int, reason: str, raw: bytes) -> None:
        text = raw[:80].decode("utf-8", "replace") + ("..." if len(raw) > 80 else "")
        self.quarantined.append(Quarantined(at, reason, text))

    def _accept(self, raw: bytes, at: int) -> dict[str, Any] | None:
        event = _parse(raw)
        if event is _PARSE_ERROR:
            head = raw.find(EVENT_HEAD, 1)
            salvaged = _parse(raw[head:]) if head > 0 else _PARSE_ERROR
            if salvaged is _PARSE_ERROR or schema_problem(salvaged) is not None:
                self._quarantine(at, "not JSON (a torn or foreign line)", raw)
                return None
            self._quarantine(at, "torn line (its fragment dropped, the event after it kept)", raw[:head])
            event, at = salvaged, at + head
        problem = schema_problem(event)
        if isinstance(event, dict) and _positive_int(event.get("seq")):
            prior_max, self.max_seq = self.max_seq, max(self.max_seq, event["seq"])
        else:
            prior_max = self.max_seq
        if problem is not None:
            self._quarantine(at, problem, raw)
            return None
        seq = event["seq"]
        if not self._anchored:
            self._anchored, self.last_seq = True, seq - 1
        resumed = event["event"] == "start" and seq == prior_max + 1 and seq > self.last_seq
        if seq != self.last_seq + 1 and not resumed:
            self._quarantine(at, f"seq {seq} where {self.last_seq + 1} was expected", raw)
            return None
        self.last_seq = seq
        return event

    def read_all(self) -> list[dict[str, Any]]:
        """Everything up to the end of the file (loops over ``read`` for files over ``max_bytes``)."""
        out: list[dict[str, Any]] = []
        while True:
            before = self.offset
            out.extend(self.read())
            if self.offset == before:
                return out


def batches(items: list, size: int) -> list[list]:
    """Split ``items`` into lists of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]
