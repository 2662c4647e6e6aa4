"""EventWriter: sequence numbers across reopen, torn lines, non-main processes, strict JSON."""

from __future__ import annotations

import json

from runner.events import EventWriter, last_sequence_number, read_events


def test_sequence_continues_when_a_resumed_run_reopens_the_file(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as writer:
        writer.emit("start", step=0)
        writer.emit("step", step=1, loss=2.5)
    with EventWriter(path) as writer:
        record = writer.emit("start", step=1)
    assert record["seq"] == 3
    events = read_events(path)
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert [e["event"] for e in events] == ["start", "step", "start"]
    assert all(isinstance(e["time"], float) for e in events)


def test_a_torn_last_line_is_skipped_and_never_glued_to_the_next_event(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as writer:
        writer.emit("step", step=1)
    with path.open("a") as handle:
        handle.write('{"seq": 2, "time": 1.0, "ev')  # killed mid-write
    assert last_sequence_number(path) == 1
    with EventWriter(path) as writer:
        writer.emit("end", status="stopped")
    events = read_events(path)
    assert [(e["seq"], e["event"]) for e in events] == [(1, "step"), (2, "end")]


def test_lines_are_on_disk_as_soon_as_emitted(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer.emit("step", step=1)
    # Read while the writer is still open: a tailing reader must see the complete line.
    assert json.loads(path.read_text().splitlines()[0])["step"] == 1
    writer.close()


def test_non_main_process_writes_nothing(tmp_path):
    path = tmp_path / "sub" / "events.jsonl"
    writer = EventWriter(path, enabled=False)
    assert writer.emit("start") is None
    writer.close()
    assert not path.exists()


def test_non_finite_numbers_become_null(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as writer:
        writer.emit("step", loss=float("nan"), grad_norm=float("inf"), peak_memory_gb={"0": 1.5})
    line = path.read_text().splitlines()[0]
    assert "NaN" not in line and "Infinity" not in line
    event = json.loads(line)
    assert event["loss"] is None and event["grad_norm"] is None and event["peak_memory_gb"] == {"0": 1.5}
