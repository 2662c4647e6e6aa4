"""A run's log files for the full-screen log view: where they are, and reading only what was appended.

A run's folder holds ``train.log`` (the training's stdout and stderr, appended to on resume) and
``supervisor.log`` (the supervisor's own messages) (:mod:`arctui.supervisor.runfolder`). The log view
opens them through :func:`run_logs` and follows each with a :class:`LogFollower` in a thread worker:
the first read takes the whole file (in chunks of at most ``chunk_bytes``, so a huge log arrives in
pieces and the screen can draw between them), every later read only the bytes appended since.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from arctui.supervisor.runfolder import RunFolder

TRAIN_LOG = "train.log"
SUPERVISOR_LOG = "supervisor.log"
LOG_NAMES = (TRAIN_LOG, SUPERVISOR_LOG)
"""The logs a run's folder holds, in the order the log view's toggle walks them."""

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class RunLogs:
    """Where one run's logs are, and what to say while one is missing."""

    run_id: str
    name: str
    status: str
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)
    """Log name (``train.log``, ``supervisor.log``) -> its path."""

    def missing_message(self, log_name: str) -> str:
        """Why ``log_name`` has nothing to show: a run that has not started, or a folder gone."""
        path = self.files[log_name]
        if self.status == "queued":
            return f"{log_name} does not exist yet: run {self.run_id} is queued (it appears when training starts)"
        if not self.folder.is_dir():
            return f"no log: the run folder {self.folder} was deleted"
        return f"no {log_name} in {path.parent}"


def run_logs(store, ref: int | str) -> RunLogs:
    """The log files of run ``ref`` (an id or a name); ``UnknownRunError`` when there is no such run."""
    run = store.get_run(ref)
    folder = RunFolder.of(run)
    files = {TRAIN_LOG: folder.log_file, SUPERVISOR_LOG: folder.supervisor_log}
    return RunLogs(str(run.id), run.name, run.status, folder.root, files)


def fold_carriage_returns(line: str) -> str:
    """What a terminal would show of a line that redraws itself with ``\\r`` (progress bars): its last
    part; a ``\\r\\n`` line ending is not a redraw."""
    return line.rstrip("\r").rsplit("\r", 1)[-1]


@dataclass(frozen=True)
class LogChunk:
    """What one :meth:`LogFollower.read` found."""

    lines: tuple[str, ...] = ()
    """The complete lines appended since the last read (progress-bar redraws folded)."""
    restarted: bool = False
    """The file was truncated or replaced: ``lines`` start again from its beginning."""
    missing: bool = False
    """There is no such file (yet, or any more)."""
    more: bool = False
    """The read stopped at ``chunk_bytes``: more is already waiting."""


class LogFollower:
    """Reads a growing text file line by line, each call only the bytes appended since the last one.

    A line is given once it is complete (ends with ``\\n``); an unfinished last line waits for its
    end. A file that shrank or was replaced (another inode) is read again from its start, and the
    chunk says so. Not thread-safe: one reader (a thread worker at a time) per follower.
    """

    def __init__(self, path: Path, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.path = Path(path)
        self.chunk_bytes = chunk_bytes
        self.offset = 0
        """Bytes of the file consumed so far (complete lines and the pending part)."""
        self._pending = b""
        self._inode: int | None = None
        self._lost = False
        """The file went away after it had been read: when it is back, it is read as a new one."""

    def read(self) -> LogChunk:
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                restarted = self._restart_if_replaced(stat.st_ino, stat.st_size)
                if stat.st_size == self.offset:
                    return LogChunk(restarted=restarted)
                handle.seek(self.offset)
                data = handle.read(self.chunk_bytes)
        except FileNotFoundError:
            self._lost = self._lost or self._inode is not None
            self._restart(None)
            return LogChunk(missing=True)
        self.offset += len(data)
        data = self._pending + data
        end = data.rfind(b"\n") + 1
        self._pending = data[end:]
        # a progress bar redraws an unfinished line with "\r" for as long as a phase lasts: keep its
        # last drawing only (a "\r" at the very end may be the first half of a "\r\n")
        redraw = self._pending.rfind(b"\r", 0, len(self._pending) - 1)
        if redraw >= 0:
            self._pending = self._pending[redraw + 1 :]
        # split on "\n" only: str.splitlines would also cut at the "\r" of a progress bar's redraws
        text = data[:end].decode("utf-8", errors="replace")
        lines = tuple(fold_carriage_returns(line) for line in text.split("\n")[:-1])
        return LogChunk(lines, restarted, more=self.offset < stat.st_size)

    def _restart_if_replaced(self, inode: int, size: int) -> bool:
        replaced = self._lost or (self._inode is not None and (inode != self._inode or size < self.offset))
        if replaced or self._inode is None:
            self._restart(inode)
        self._lost = False
        return replaced

    def _restart(self, inode: int | None) -> None:
        self._inode = inode
        self.offset = 0
        self._pending = b""
