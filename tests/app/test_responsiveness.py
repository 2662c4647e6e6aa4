"""The app stays responsive with 10,000 runs in the store while a run streams events.

A separate process (like a supervisor) ingests a step event every 20 ms into one run (faster than any
real runner logs) and keeps going until the test has finished driving the Runs and Run screens with
keys, so every key is pressed while the store is being written, however slow the machine is. Every
key must be handled, the streamed steps must all reach the screen, and redraws must be coalesced (at
most about one per poll, far fewer than the events). The test prints the startup time and the
event-to-screen latency it saw; run it with ``-s`` to read them. It asserts behaviour, never
wall-clock limits.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable

from arctui.app import make_app
from arctui.screens.run import RunScreen
from arctui.screens.runs import PAGE_SIZE, RunsScreen

# Writes one step event per period until the stop file exists, and prints when each step was written.
STREAMER = r"""
import math, os, sys, time
from db.store import RunStore
url, run_id, period, stop_file = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
with RunStore.open(url) as store:
    seq = store.get_run(run_id).events_cursor + 1
    step = (store.get_summary(run_id).last_step or 0) + 1
    while not os.path.exists(stop_file):
        store.ingest_events(run_id, [{
            "seq": seq, "time": 1_700_000_000.0 + step, "event": "step", "step": step, "max_steps": 100_000,
            "loss": round(0.4 + 1.6 * math.exp(-step / 25), 4), "learning_rate": 1e-4, "grad_norm": 1.0,
            "seconds_per_step": 1.0, "tokens_per_second": 24000.0, "samples_per_second": 16.0,
            "padding_share": 0.1, "peak_memory_gb": {},
        }])
        print(step, time.monotonic(), flush=True)  # CLOCK_MONOTONIC: comparable across processes
        seq += 1
        step += 1
        time.sleep(period)
"""


class Streamer:
    """The writer process: ``start()`` it, ``stop()`` it; ``written`` maps each step it wrote to when."""

    def __init__(self, url: str, run_id: int, stop_file: Path, cwd: Path, period: float = 0.02) -> None:
        self.args = [sys.executable, "-c", STREAMER, url, str(run_id), str(period), str(stop_file)]
        self.stop_file = stop_file
        self.stderr_file = stop_file.with_name("streamer.stderr")
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self.written: dict[int, float] = {}
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        with self.stderr_file.open("w") as stderr:
            self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=self.cwd)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            step, when = line.split()
            with self._lock:
                self.written[int(step)] = float(when)

    def written_since(self, since: float) -> int:
        """How many steps were written at or after ``since`` (fails at once if the writer died)."""
        if self.process.poll() is not None and not self.stop_file.exists():
            raise AssertionError(f"the streamer exited ({self.process.returncode}): {self.stderr_file.read_text()}")
        with self._lock:
            return sum(1 for when in self.written.values() if when >= since)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Ask the writer to finish its current step and exit."""
        self.stop_file.touch()

    def join(self) -> None:
        """Collect the writer's exit (call once it is no longer running)."""
        self.process.wait()
        self._reader.join()
        assert self.process.returncode == 0, self.stderr_file.read_text()


@pytest.fixture
def streamer(big_store, repo_root, tmp_path):
    url, live_id = big_store
    streamer = Streamer(url, live_id, tmp_path / "stop-streaming", cwd=repo_root)
    yield streamer
    if streamer.process is not None and streamer.running:  # the test failed half-way
        streamer.stop()
        try:
            streamer.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            streamer.process.kill()
            streamer.process.wait()


@pytest.mark.slow
async def test_responsive_with_10000_runs_while_a_run_streams(big_store, streamer, wait_for):
    url, _ = big_store
    started = time.monotonic()
    app = make_app(url)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and len(app.screen.rows) == PAGE_SIZE)
        startup = time.monotonic() - started
        runs = app.screen
        table = runs.query_one("#runs-table", DataTable)
        assert table.row_count == PAGE_SIZE  # the newest page, not all 10,000
        assert runs.rows[0].name == "streaming"

        # Every key below is pressed while the store is being written: the writer runs until told to stop.
        streamer.start()
        await wait_for(pilot, lambda: streamer.written_since(0.0) > 0)
        for expected in range(1, 6):
            await pilot.press("down")
            await wait_for(pilot, lambda: table.cursor_row == expected)  # noqa: B023  (awaited here)
        await pilot.press("s")  # sort by the next column (created -> id): a new query over 10,000 runs
        await wait_for(pilot, lambda: runs.sort_key == "id" and runs.rows[0].name == "streaming")
        await pilot.press("S")  # ascending
        await wait_for(pilot, lambda: runs.rows[0].name == "sweep-00000")
        await pilot.press("s")  # by name, still ascending
        await wait_for(pilot, lambda: [r.name for r in runs.rows[:2]] == ["streaming", "sweep-00000"])
        runs.sort_by("created", descending=True)
        await wait_for(pilot, lambda: runs.rows[0].name == "streaming")
        table.move_cursor(row=0)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail is not None)
        screen = app.screen
        shown: list[tuple[int, float]] = []
        watching_since = time.monotonic()
        screen.watch(screen, "detail", lambda d: d and shown.append((d.row.step or 0, time.monotonic())),
                     init=False)
        await pilot.press("l")  # toggling the log is handled mid-stream
        await wait_for(pilot, lambda: not screen.show_log)
        await pilot.press("l")
        await wait_for(pilot, lambda: screen.show_log)

        # Watch the stream for a while. Redraws are coalesced: the screen redraws about once per poll
        # whatever the event rate, so the events written while watching pull ahead of the redraws (a
        # screen that redrew once per event would never get here).
        await wait_for(pilot, lambda: len(shown) >= 5
                       and streamer.written_since(watching_since) >= 3 * len(shown) + 100)
        streamer.stop()
        await wait_for(pilot, lambda: not streamer.running)
        streamer.join()
        last = max(streamer.written)
        await wait_for(pilot, lambda: screen.detail.row.step == last)  # every streamed step reached the screen

    latencies = []
    for step, written in streamer.written.items():
        if written < watching_since:
            continue  # written before the Run screen was open: not a latency
        seen = next((when for shown_step, when in shown if shown_step >= step), None)
        if seen is not None and seen >= written:
            latencies.append(seen - written)
    assert len(shown) < streamer.written_since(watching_since) / 3
    assert latencies
    streamed_for = max(streamer.written.values()) - min(streamer.written.values())
    print(f"\nstreamed {len(streamer.written)} events over {streamed_for:.1f} s")
    print(f"startup with {PAGE_SIZE} of 10,000 runs: {startup:.2f} s to the first page")
    print(f"event-to-screen latency over {len(latencies)} events: median {statistics.median(latencies) * 1000:.0f} ms,"
          f" max {max(latencies) * 1000:.0f} ms; {len(shown)} redraws for {len(streamer.written)} events")
