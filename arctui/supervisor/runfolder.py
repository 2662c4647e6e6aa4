"""A run's folder and the small files that coordinate the processes working on it.

``$ARCTUI_HOME/runs/<id>-<name>/`` holds:

- ``output/``: the runner's ``--output_dir`` (checkpoints, final adapter, cfg.json);
- ``events.jsonl``: the runner's event stream (docs/events.md);
- ``train.log``: stdout and stderr of ``accelerate launch`` (appended to on resume);
- ``supervisor.log``: the supervisor's own messages;
- ``supervisor.lock``: held (``flock``) by the live supervisor for its whole life. The kernel drops
  the lock when the process dies, even by ``kill -9``, so "can I take the lock?" is an exact test of
  "is the supervisor gone?", free of pid-reuse races;
- ``stop-request``: written by ``arctui stop`` (``term`` or ``kill``) so the supervisor can tell a
  requested stop from a crash;
- ``exit-code``: the training's exit code, written by the supervisor as soon as it knows it and
  before any store write, so recovery can record it when the store was down at the end of the run
  (removed when a new training session starts).
"""

from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass
from pathlib import Path

from runner.paths import make_private_dir, runs_dir


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @classmethod
    def for_run(cls, run_id: int, name: str) -> RunFolder:
        safe = re.sub(r"[^A-Za-z0-9._+@-]", "_", name)[:80]
        return cls(runs_dir() / f"{run_id}-{safe}")

    @classmethod
    def of(cls, run) -> RunFolder:
        """The folder of a store ``Run`` (from its log path, else the default layout)."""
        if run.log_path:
            return cls(Path(run.log_path).parent)
        return cls.for_run(run.id, run.name)

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def events_file(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def log_file(self) -> Path:
        return self.root / "train.log"

    @property
    def supervisor_log(self) -> Path:
        return self.root / "supervisor.log"

    @property
    def lock_file(self) -> Path:
        return self.root / "supervisor.lock"

    @property
    def stop_file(self) -> Path:
        return self.root / "stop-request"

    @property
    def exit_code_file(self) -> Path:
        return self.root / "exit-code"

    def write_exit_code(self, code: int) -> bool:
        """Persist the training's exit code (atomically); False when the folder cannot take it."""
        tmp = self.root / ".exit-code.tmp"
        try:
            tmp.write_text(f"{int(code)}\n")
            os.replace(tmp, self.exit_code_file)
        except OSError:
            return False
        return True

    def recorded_exit_code(self) -> int | None:
        """The exit code a supervisor persisted for the current session, if any."""
        try:
            text = self.exit_code_file.read_text().strip()
        except OSError:
            return None
        return int(text) if re.fullmatch(r"-?\d{1,6}", text) else None

    def clear_exit_code(self) -> None:
        try:
            self.exit_code_file.unlink(missing_ok=True)
        except OSError:
            pass

    def create(self) -> None:
        make_private_dir(self.output_dir)  # new folders 0700: other users must not read runs

    def checkpoints(self) -> list[Path]:
        """``checkpoint-N`` folders in the output dir, by step."""
        if not self.output_dir.is_dir():
            return []
        found = [p for p in self.output_dir.glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()]
        return sorted(found, key=lambda p: int(p.name[11:]))

    def stop_request(self) -> str | None:
        try:
            return self.stop_file.read_text().strip() or "term"
        except FileNotFoundError:
            return None

    def request_stop(self, mode: str) -> None:
        make_private_dir(self.root)
        self.stop_file.write_text(mode + "\n")

    def clear_stop_request(self) -> None:
        self.stop_file.unlink(missing_ok=True)

    def try_lock(self) -> int | None:
        """Take the supervisor lock without waiting; the open fd holds it, or None if someone has it."""
        make_private_dir(self.root)
        return try_flock(self.lock_file)

    def supervisor_alive(self) -> bool:
        """True while some process holds the supervisor lock."""
        if not self.lock_file.exists():
            return False
        fd = self.try_lock()
        if fd is None:
            return True
        os.close(fd)
        return False


def tail_lines(path: Path, n: int = 20, max_bytes: int = 64 * 1024) -> list[str]:
    """The last ``n`` non-empty lines of a text file (progress-bar carriage returns folded)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except FileNotFoundError:
        return []
    lines = []
    for raw in data.decode("utf-8", "replace").split("\n"):
        line = raw.rsplit("\r", 1)[-1].rstrip()
        if line.strip():
            lines.append(line)
    return lines[-n:]


def try_flock(path: Path) -> int | None:
    """Take an exclusive ``flock`` on ``path`` (created if missing) without waiting: the open fd holds
    it until closed or the process dies, or None when another process holds it. Liveness for
    supervisors and study schedulers alike."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
