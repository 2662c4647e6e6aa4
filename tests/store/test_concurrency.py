"""Several processes on one store: writers never see lock errors, readers see consistent summaries, and
the same events ingested by two processes at once land exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from db.store import RunStore
from tests.conftest import REPO_ROOT

WRITER = """
import sys
from db.store import RunStore
url, name, batches, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
keys = ("loss", "grad_norm", "seconds_per_step", "tokens_per_second")
with RunStore.open(url) as store:
    run_id = store.get_run(name).id
    for b in range(batches):
        rows = [(keys[i % 4], (b * size + i) // 4, 1.0 + i, 1.7e9) for i in range(size)]
        store.append_metrics(run_id, rows)
"""

READER = """
import sys, time
from db.store import RunStore
url, seconds = sys.argv[1], float(sys.argv[2])
reads = 0
with RunStore.open(url) as store:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name in ("w1", "w2"):
            # Points, statistics and summary are written in one transaction and read in one snapshot.
            detail = store.run_detail(name)
            assert detail.summary.points == sum(s.count for s in detail.metrics.values())
        store.metric_series("w1", "loss", max_points=100)
        reads += 1
print(reads)
"""

INGESTER = """
import json, sys
from db.store import RunStore
url, path, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
events = json.load(open(path))
chunks = [events[i:i + chunk] for i in range(0, len(events), chunk)]
new = 0
with RunStore.open(url) as store:
    for part in chunks:
        new += store.ingest_events("shared", part)
print(new)
"""


def spawn(code: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "locked" not in err
    return out


@pytest.mark.slow
def test_two_writers_and_a_reader(store_url):
    with RunStore.open(store_url) as store:
        store.create_run({}, name="w1")
        store.create_run({}, name="w2")
    writers = [spawn(WRITER, store_url, name, 20, 400) for name in ("w1", "w2")]
    reader = spawn(READER, store_url, 3)
    for proc in writers:
        finish(proc)
    assert int(finish(reader)) > 0
    with RunStore.open(store_url) as store:
        for name in ("w1", "w2"):
            summary = store.get_summary(name)
            assert summary.points == 20 * 400 and summary.last_step == 20 * 400 // 4 - 1
            assert {k: s.count for k, s in store.metric_stats(name).items()} == {
                "loss": 2000, "grad_norm": 2000, "seconds_per_step": 2000, "tokens_per_second": 2000,
            }  # fmt: skip


@pytest.mark.slow
def test_the_same_events_from_two_processes_land_once(store_url, tmp_path):
    events = [{"seq": 1, "time": 1.0, "event": "start", "max_steps": 1000}]
    for seq in range(2, 301):
        events.append({"seq": seq, "time": float(seq), "event": "step", "step": seq * 10, "loss": 1.0 / seq,
                       "seconds_per_step": 2.0, "peak_memory_gb": {"0": 3.0}})  # fmt: skip
    events.append({"seq": 301, "time": 400.0, "event": "checkpoint", "step": 3000, "path": "c"})
    path = tmp_path / "events.json"
    path.write_text(json.dumps(events))
    with RunStore.open(store_url) as store:
        store.create_run({}, name="shared")
    procs = [spawn(INGESTER, store_url, path, 25), spawn(INGESTER, store_url, path, 40)]
    counts = [int(finish(p)) for p in procs]
    # Two tailers racing over the same file (e.g. recovery next to the live supervisor): every event
    # is counted by exactly one of them.
    assert sum(counts) == len(events)
    with RunStore.open(store_url) as store:
        summary = store.get_summary("shared")
        assert summary.run.events_cursor == 301
        stats = store.metric_stats("shared")
        assert stats["loss"].count == 299 and stats["seconds_per_step"].count == 299
        assert summary.points == 299 * 3 and summary.last_step == 3000
        assert [e.kind for e in store.recent_events("shared", limit=None)] == ["checkpoint", "start"]
