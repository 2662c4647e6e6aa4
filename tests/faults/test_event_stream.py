"""Issue 16, item 3: the event cursor trusted any ``seq``. A stray line with a high ``seq`` made every
later event look already seen (15 of 20 steps and the ``end`` lost, the run "completed" at 5/20); a
half-written line followed by a real event lost that event. Now each line is checked (schema, ``seq``
strictly +1 from the runner's previous event), what does not fit is quarantined with a warning in
``supervisor.log`` and a count in ``arctui show``, and the good lines after it all land."""

from __future__ import annotations

import json
import time

import pytest

from arctui.supervisor.tail import EventTailer
from tests.faults.conftest import TRACEBACK, cli
from tests.supervisor.helpers import START, dead_group, running_run, steps

pytestmark = pytest.mark.faults


def line(event: dict) -> bytes:
    return (json.dumps(event) + "\n").encode()


def end(seq: int, step: int = 20) -> dict:
    return {"seq": seq, "time": time.time(), "event": "end", "status": "completed", "step": step}


STRAY = {"seq": 1000, "time": 1.0, "event": "step", "step": 99, "loss": 9.0}


def recovered(store, url, capsys, name: str, data: bytes):
    """A run whose supervisor and training are gone, its event file ``data``; recovery through the
    CLI (``arctui runs``), then the run and its ``arctui show`` text."""
    run_id, folder = running_run(store, name, dead_group(), [])
    folder.events_file.write_bytes(data)
    code, _, err = cli(capsys, "--db", url, "runs")
    assert code == 0 and TRACEBACK not in err, err
    code, out, err = cli(capsys, "--db", url, "show", name)
    assert code == 0 and TRACEBACK not in err, err
    return store.get_run(run_id), folder, out


def loss_steps(store, run_id) -> list[int]:
    return [p.step for p in store.metric_series(run_id, "loss", max_points=100000)]


def numbered(n: int) -> list[dict]:
    """``start`` then ``n`` step events: seq 2..n+1, steps 1..n of ``max_steps`` n."""
    return [START, *[{"seq": i + 2, "time": time.time(), "event": "step", "step": i + 1, "max_steps": n,
                      "loss": 1.0} for i in range(n)]]


def test_a_stray_high_seq_hides_nothing(store, store_url, home, capsys):
    """The issue's case: a stray line after step 4 of 20. All 20 steps and the end land, once."""
    events = numbered(20)
    data = b"".join(map(line, events[:5])) + line(STRAY) + b"".join(map(line, events[5:])) + line(end(22))
    run, folder, shown = recovered(store, store_url, capsys, "stray", data)
    assert loss_steps(store, run.id) == list(range(1, 21))  # 0 lost, 0 doubled, no step 99
    assert run.events_cursor == 22 and run.status == "completed"
    assert store.get_summary(run.id).last_step == 20
    assert [e.kind for e in store.recent_events(run.id, limit=1)] == ["end"]
    assert "1 line of events.jsonl quarantined" in run.last_error
    assert "quarantined" in shown  # visible in `arctui show`
    assert "seq 1000 where 6 was expected" in folder.supervisor_log.read_text()


def test_a_torn_line_followed_by_a_real_event_keeps_the_event(store, store_url, home, capsys):
    events = numbered(5)
    torn = line(events[3])[:17]  # a writer killed mid-line; the next writer appended to the same line
    data = b"".join(map(line, events[:3])) + torn + b"".join(map(line, events[3:])) + line(end(7, step=5))
    run, folder, _ = recovered(store, store_url, capsys, "torn", data)
    assert loss_steps(store, run.id) == [1, 2, 3, 4, 5]
    assert run.events_cursor == 7 and run.status == "completed"
    assert "torn line" in folder.supervisor_log.read_text()


def test_bad_schema_lines_are_quarantined(tmp_path):
    path = tmp_path / "events.jsonl"
    good = [START, {"seq": 2, "time": 1.0, "event": "step", "step": 1}]
    bad = [b"not json\n", b"[1, 2]\n", b'{"seq": "x", "time": 1, "event": "step"}\n',
           b'{"seq": 3, "event": "step", "step": 2}\n',  # no time
           b'{"seq": 3, "time": 1.0}\n',  # no kind
           b'{"seq": 3, "time": 1.0, "event": "step", "step": "two"}\n',
           b'{"seq": 2, "time": 1.0, "event": "step", "step": 1}\n',  # a duplicate
           b'{"seq": true, "time": 1.0, "event": "step", "step": 1}\n']
    path.write_bytes(b"".join(map(line, good)) + b"".join(bad) + line({"seq": 3, "time": 1.0, "event": "end"}))
    tailer = EventTailer(path)
    assert [e["seq"] for e in tailer.read_all()] == [1, 2, 3]
    assert tailer.bad_lines == len(bad)


def test_a_resumed_runner_continues_after_a_stray_seq(tmp_path):
    """``runner.events`` resumes from the highest seq of any parseable line, a stray one included: its
    ``start`` may jump there; anything else after a stray line must follow the runner's own numbering."""
    path = tmp_path / "events.jsonl"
    first = [START, *steps(2)]
    resumed = [{"seq": 1001, "time": 1.0, "event": "start"}, *steps(2, start_seq=1002)]
    path.write_bytes(b"".join(map(line, [*first, STRAY, *resumed])))
    tailer = EventTailer(path)
    assert [e["seq"] for e in tailer.read_all()] == [1, 2, 3, 1001, 1002, 1003]
    assert tailer.bad_lines == 1


def test_quarantined_lines_show_while_the_run_goes_on(store, store_url, home, capsys):
    from arctui.supervisor.supervise import Supervisor

    events = numbered(6)
    run_id, folder = running_run(store, "live-stray", dead_group(), events[:3])
    folder.events_file.write_bytes(b"".join(map(line, events[:3])) + line(STRAY) + b"".join(map(line, events[3:])))
    supervisor = Supervisor(store, run_id, poll=0.01)
    supervisor.ingest_or_retry()  # one live poll: the run is still running
    run = store.get_run(run_id)
    assert run.status == "running" and "1 line of events.jsonl quarantined" in run.last_error
    assert loss_steps(store, run_id) == list(range(1, 7))  # `arctui show` prints last_error (test above)
