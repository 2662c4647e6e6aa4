"""Tail a runner's ``events.jsonl`` from a byte offset, yielding complete, parsed events only.

The runner flushes one JSON object per line (docs/events.md), so a reader may see the first half of a
line that is still being written: only bytes up to the last newline are consumed, the rest is read
again next time. Exactly-once delivery into the store does not depend on the offset: every event
carries ``seq`` and the store skips ``seq <= cursor``, so a restarted tailer may simply start over.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class EventTailer:
    """Incremental reader of a JSON-lines event file.

    ``read()`` returns the events completed since the previous call (possibly none). A line that is
    not a JSON object with an integer ``seq`` is skipped and counted in ``bad_lines``.
    """

    def __init__(self, path: str | os.PathLike, offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset
        self.bad_lines = 0
        self._inode: int | None = None

    def read(self, max_bytes: int = 16 * 1024 * 1024) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                stat = os.fstat(fh.fileno())
                if self._inode is not None and stat.st_ino != self._inode or stat.st_size < self.offset:
                    # Replaced or truncated: start over; the store's cursor drops what it already has.
                    self.offset = 0
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
        self.offset += end + 1
        events: list[dict[str, Any]] = []
        for raw in chunk[: end + 1].splitlines():
            if not raw.strip():
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                self.bad_lines += 1
                continue
            if not isinstance(event, dict) or not isinstance(event.get("seq"), int):
                self.bad_lines += 1
                continue
            events.append(event)
        return events

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
