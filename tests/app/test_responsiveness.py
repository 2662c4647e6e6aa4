"""The app stays responsive with 10,000 runs in the store while a run streams events.

A writer thread ingests a step event every 20 ms into one run (faster than any real runner logs)
while the test drives the Runs and Run screens with keys. Every key must be handled, the streamed
steps must all reach the screen, and redraws must be coalesced (at most about one per poll, far
fewer than the events). The test prints the startup time and the event-to-screen latency it saw;
run it with ``-s`` to read them. It asserts behaviour, never wall-clock limits.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest
from textual.widgets import DataTable

from arctui.app import make_app
from arctui.screens.run import RunScreen
from arctui.screens.runs import PAGE_SIZE, RunsScreen
from db.store import RunStore
from tests.app.conftest import GPU_HOST, REPO_ROOT, config, start_event, step_events
from tests.app.test_runs_screen import wait_for

RUNS = 10_000


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    """10,000 runs (a few with metrics) and one running run that the test streams into."""
    folder = tmp_path_factory.mktemp("big")
    url = f"sqlite:///{folder / 'arctui.db'}"
    with RunStore.open(url) as store:
        for i in range(RUNS - 1):
            run = store.create_run(config(max_seq_len=1024 * (1 + i % 8), lora_r=4 * (1 + i % 16)), name=f"sweep-{i:05d}",
                                   host=GPU_HOST)
            if i % 1000 == 0:
                store.ingest_events(run.id, [start_event(100, 0.2)] + step_events(
                    2, range(1, 11), floor=0.5, seconds_per_step=2.0, vram=7.0, max_steps=100))
        live = store.create_run(config(max_steps=100_000), name="streaming", host=GPU_HOST)
        store.set_status(live.id, "running")
        store.ingest_events(live.id, [start_event(100_000, 0.35)])
    return url, live.id


STREAMER = r"""
import sys, time
from db.store import RunStore
from tests.app.conftest import step_events
url, run_id, steps, period = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
with RunStore.open(url) as store:
    seq = store.get_run(run_id).events_cursor + 1
    first = (store.get_summary(run_id).last_step or 0) + 1
    for step in range(first, first + steps):
        events = step_events(seq, range(step, step + 1), floor=0.4, seconds_per_step=1.0, vram=None,
                             max_steps=100_000)
        store.ingest_events(run_id, events)
        print(step, time.monotonic(), flush=True)  # CLOCK_MONOTONIC: comparable across processes
        seq += len(events)
        time.sleep(period)
"""


class Streamer:
    """A separate process (like a supervisor) that ingests one step event every ``period`` seconds and
    reports when each step was written."""

    def __init__(self, url: str, run_id: int, steps: int, period: float = 0.02) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", STREAMER, url, str(run_id), str(steps), str(period)],
            stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        )
        self.written: dict[int, float] = {}

    def join(self) -> None:
        out, _ = self.process.communicate(timeout=300)
        assert self.process.returncode == 0
        for line in out.splitlines():
            step, when = line.split()
            self.written[int(step)] = float(when)

    @property
    def running(self) -> bool:
        return self.process.poll() is None


@pytest.mark.slow
async def test_responsive_with_10000_runs_while_a_run_streams(big_store):
    url, live_id = big_store
    started = time.monotonic()
    app = make_app(url)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and len(app.screen.rows) == PAGE_SIZE,
                       tries=600)
        startup = time.monotonic() - started
        runs = app.screen
        table = runs.query_one("#runs-table", DataTable)
        assert table.row_count == PAGE_SIZE  # the newest page, not all 10,000
        assert runs.rows[0].name == "streaming"

        streamer = Streamer(url, live_id, steps=300)
        # keys are handled while the store is being written
        for expected in range(1, 6):
            await pilot.press("down")
            assert table.cursor_row == expected
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
        assert not screen.show_log
        await pilot.press("l")
        assert screen.show_log

        assert streamer.running  # everything above happened while the store was being written
        while streamer.running:
            await pilot.pause(0.1)
        streamer.join()
        last = max(streamer.written)
        await wait_for(pilot, lambda: screen.detail.row.step == last, tries=200)

    latencies = []
    for step, written in streamer.written.items():
        if written < watching_since:
            continue  # written before the Run screen was open: not a latency
        seen = next((when for shown_step, when in shown if shown_step >= step), None)
        if seen is not None and seen >= written:
            latencies.append(seen - written)
    # 300 events arrived; the screen redrew about once per poll, not once per event
    assert len(shown) < len(streamer.written) / 3
    assert latencies
    streamed_for = max(streamer.written.values()) - min(streamer.written.values())
    print(f"\nstreamed {len(streamer.written)} events over {streamed_for:.1f} s")
    print(f"startup with {RUNS} runs: {startup:.2f} s to the first page of {PAGE_SIZE} rows")
    print(f"event-to-screen latency over {len(latencies)} events: median {statistics.median(latencies) * 1000:.0f} ms,"
          f" max {max(latencies) * 1000:.0f} ms; {len(shown)} redraws for {len(streamer.written)} events")
