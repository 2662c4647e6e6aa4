"""JSON-lines event stream written by the training runner (schema: ``docs/events.md``).

One JSON object per line, flushed per line, fsync'ed on ``checkpoint`` and ``end``. Every event carries
``seq`` (1, 2, 3, ... across the whole file: a resumed run appends and continues the numbering) and
``time`` (Unix seconds), so a reader that remembers the last ``seq`` it stored can resume tailing
without loss or duplication. Only the main process writes; other processes get a writer that drops
everything, so call sites need no ``if is_main`` checks.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

# Kinds whose loss would cost a reader the most: make them durable, not just flushed.
DURABLE_KINDS = frozenset({"checkpoint", "end", "error"})


def last_sequence_number(path: Path) -> int:
    """The highest ``seq`` in an existing event file (0 when missing or empty).

    A half-written last line (the process was killed mid-write) is ignored, like a reader would.
    """
    if not path.exists():
        return 0
    last = 0
    with path.open("rb") as handle:
        for raw in handle:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("seq"), int):
                last = max(last, event["seq"])
    return last


def _json_safe(value: Any) -> Any:
    """Non-finite floats become null: JSON has no NaN and strict readers reject it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class EventWriter:
    """Appends events to ``path``; a no-op writer when ``enabled`` is false (non-main processes)."""

    def __init__(self, path: str | os.PathLike[str], *, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._handle = None
        self._seq = 0
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._seq = last_sequence_number(self.path)
            self._handle = self.path.open("a", encoding="utf-8")
            self._terminate_partial_line()

    def _terminate_partial_line(self) -> None:
        # A killed writer may have left a line without its newline; start ours on a fresh line so
        # the torn fragment stays a separate (skippable) line instead of corrupting our first event.
        if self.path.stat().st_size == 0:
            return
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                self._handle.write("\n")
                self._handle.flush()

    @property
    def seq(self) -> int:
        """The sequence number of the last event written (0 before the first)."""
        return self._seq

    def emit(self, event: str, **fields: Any) -> dict[str, Any] | None:
        """Write one event; returns the record written (None on a disabled writer)."""
        if not self.enabled or self._handle is None:
            return None
        self._seq += 1
        record = {"seq": self._seq, "time": time.time(), "event": event, **_json_safe(fields)}
        self._handle.write(json.dumps(record, allow_nan=False) + "\n")
        self._handle.flush()
        if event in DURABLE_KINDS:
            os.fsync(self._handle.fileno())
        return record

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All complete events in a file, in order (torn lines skipped). For tests and tools."""
    events = []
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                events.append(record)
    return events
