"""Issue 16, item 1 (store half): a value the store cannot hold is refused with one line naming the
field and the value (``UnstorableValueError``), never a driver ``OverflowError`` or "integer out of
range"; ingestion stores the events before it and notes the reason on the run; and rows that hold
extreme values (written before these checks) never make ``runs``/``show``/``compare``/``stop`` fail.
Every case runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
import time

import pytest
from sqlalchemy import create_engine, text

from db.errors import StoreError, UnknownRunError, UnstorableValueError
from db.records import GpuSample
from db.rows import INT_MAX
from tests.faults.conftest import TRACEBACK, arctui_process, cli

pytestmark = pytest.mark.faults

HUGE = 10**20  # the issue's `--set max_steps=100000000000000000000`


def start(seq: int = 1, max_steps=10) -> dict:
    return {"seq": seq, "time": time.time(), "event": "start", "max_steps": max_steps, "start_step": 0}


def step(seq: int, n: int, max_steps=10) -> dict:
    return {"seq": seq, "time": time.time(), "event": "step", "step": n, "max_steps": max_steps, "loss": 1.0 / n,
            "seconds_per_step": 0.5}


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message and len(message) < 300, message
    return message


@pytest.mark.parametrize(
    ("bad", "field", "shown"),
    [
        (start(3, max_steps=HUGE), "max_steps", str(HUGE)),
        (step(3, 2**40), "step", str(2**40)),  # fits SQLite's 64 bits, not PostgreSQL's INTEGER
        (step(3, 2, max_steps=-(2**63) - 1), "max_steps", str(-(2**63) - 1)),
        ({"seq": 2**70, "time": 1.0, "event": "eval_progress"}, "seq", str(2**70)),
    ],
)
def test_ingest_refuses_an_event_it_cannot_hold_and_keeps_the_ones_before(store, bad, field, shown):
    run = store.create_run({"max_steps": 10}, name="huge")
    good = [start(1), step(2, 1)]
    with pytest.raises(UnstorableValueError) as caught:
        store.ingest_events(run.id, [*good, bad, step(bad["seq"] + 1, 3)])
    message = one_line(caught.value)
    assert field in message and shown in message and f"event {bad['seq']}" in message
    assert caught.value.field == field and caught.value.seq == bad["seq"]
    stored = store.get_summary(run.id)
    assert stored.run.events_cursor == 2 and stored.last_step == 1 and stored.points > 0  # nothing lost
    assert stored.run.last_error == f"the store refused {message}"
    # The same file read again (the supervisor's retry): refused the same way, nothing doubled.
    with pytest.raises(UnstorableValueError):
        store.ingest_events(run.id, [*good, bad])
    assert store.get_summary(run.id).points == stored.points
    assert isinstance(caught.value, StoreError)  # callers that catch StoreError still catch it


def test_a_refused_event_at_or_below_the_cursor_is_skipped_like_any_stored_one(store):
    run = store.create_run({}, name="skipped")
    store.ingest_events(run.id, [start(1), step(2, 1)])
    assert store.ingest_events(run.id, [start(1, max_steps=HUGE), step(2, 1), step(3, 2)]) == 1


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"learning_rate": math.inf}, "learning_rate"),
        ({"learning_rate": math.nan}, "learning_rate"),
        ({"learning_rate": 10**400}, "learning_rate"),
        ({"exit_code": 2**64}, "exit_code"),
        ({"max_steps": HUGE}, "max_steps"),
        ({"msl": 10**12}, "msl"),
        ({"gpu_ids": [2**70]}, "gpu_ids"),
        ({"pgid": 1e300}, "pgid"),
    ],
)
def test_update_run_refuses_numbers_the_store_cannot_hold(store, fields, named):
    run = store.create_run({}, name="numbers")
    with pytest.raises(UnstorableValueError) as caught:
        store.update_run(run.id, **fields)
    assert named in one_line(caught.value)
    assert store.get_run(run.id) == run  # nothing written


def test_create_run_refuses_a_config_column_it_cannot_hold(store):
    with pytest.raises(UnstorableValueError, match="msl 1000000000000 is beyond"):
        store.create_run({"max_seq_len": 10**12}, name="wide")
    with pytest.raises(UnstorableValueError, match="learning_rate must be a finite number"):
        store.create_run({"learning_rate": math.inf}, name="wide")
    assert store.list_runs() == []


def test_other_writers_refuse_too(store):
    run = store.create_run({}, name="writers")
    with pytest.raises(UnstorableValueError, match="step 1208925819614629174706176 of metric loss"):
        store.append_metrics(run.id, [("loss", 2**80, 1.0)])
    with pytest.raises(UnstorableValueError, match="wall_time inf of metric loss"):
        store.append_metrics(run.id, [("loss", 1, 1.0, math.inf)])
    with pytest.raises(UnstorableValueError, match="beyond what the store holds"):
        store.append_metrics(run.id, [("loss", 1, 10**400)])
    assert store.append_metrics(run.id, [("loss", 1, math.nan), ("loss", 2, 0.5)]) == 1  # NaN loss: dropped
    with pytest.raises(UnstorableValueError, match="step"):
        store.record_eval(run.id, 2**80, "eval", {"accuracy": 0.5})
    with pytest.raises(UnstorableValueError, match="exit_code"):
        store.set_status(run.id, "running", exit_code=2**64)
    sample = GpuSample(0, "gpu", time.time(), 1.0, 2.0, 3.0, 4.0)
    for bad in ({"memory_used_mb": math.nan}, {"time": math.inf}, {"gpu_index": 2**40}, {"power_w": 10**400}):
        with pytest.raises(UnstorableValueError):
            store.append_gpu_samples(run.id, [GpuSample(**{**sample.__dict__, **bad})])
    assert store.append_gpu_samples(run.id, [sample]) == 1
    assert store.get_summary(run.id).points == 1


def test_the_boundary_itself_is_stored(store):
    run = store.create_run({}, name="edge")
    store.ingest_events(run.id, [start(1, max_steps=INT_MAX), step(2, INT_MAX, max_steps=INT_MAX)])
    summary = store.get_summary(run.id)
    assert summary.max_steps == INT_MAX and summary.last_step == INT_MAX


def test_refs_and_limits_beyond_the_range_are_plain_answers(store):
    with pytest.raises(UnknownRunError, match="no run with id"):
        store.get_run(2**70)
    with pytest.raises(UnknownRunError):
        store.get_run(str(10**30))
    store.create_run({}, name="one")
    assert len(store.list_runs(limit=2**70)) == 1


def test_a_forged_event_time_counts_as_missing(store):
    run = store.create_run({}, name="clock")
    before = time.time()
    store.ingest_events(run.id, [{**start(1), "time": 1e308}, {**step(2, 1), "time": math.inf}])
    (event,) = store.recent_events(run.id)
    assert before <= event.time <= time.time() + 1 and event.data["time"] == 1e308
    assert store.metric_series(run.id, "loss")[0].wall_time is None


def _raw_update(url: str, sql: str, **params) -> None:
    """Write a row the way an older arctui (or a hand edit) could have: around the store's checks."""
    engine = create_engine(url.replace("postgresql+psycopg", "postgresql+psycopg", 1))
    try:
        with engine.begin() as connection:
            connection.execute(text(sql), params)
    finally:
        engine.dispose()


def test_rows_with_extreme_values_never_break_the_history_commands(store, store_url, home, capsys):
    widest = INT_MAX if store.dialect == "postgresql" else 2**63 - 1
    done = store.create_run({"max_steps": HUGE, "learning_rate": 1e308}, name="extreme")
    live = store.create_run({"max_steps": HUGE}, name="live")  # running, its supervisor gone
    for run in (done, live):
        store.ingest_events(run.id, [start(1), step(2, 1),
                                     {"seq": 3, "time": 1.0, "event": "checkpoint", "step": 1, "path": "x"}])
        store.set_status(run.id, "running")
    store.set_status(done.id, "completed", exit_code=0)
    _raw_update(
        store_url,
        "UPDATE runs SET max_steps = :i, last_step = :i, msl = :i, batch_size = :n, "
        "learning_rate = :inf, loss = :big, tokens_per_second = :ninf, peak_vram_gb = :big, "
        "seconds_per_step = :big, started_at = :big, created_at = :nbig",
        i=widest, n=-widest, inf=math.inf, ninf=-math.inf, big=1e308, nbig=-1e308,
    )
    _raw_update(store_url, "UPDATE runs SET exit_code = :i WHERE id = :id", i=widest, id=done.id)
    _raw_update(store_url, "UPDATE run_events SET time = :big, step = :i", big=1e308, i=widest)
    for argv in (["runs"], ["runs", "--format", "json"], ["runs", "--format", "csv"], ["show", "extreme"],
                 ["show", "extreme", "--format", "json"], ["compare", "extreme", "live"], ["show", "live"],
                 ["runs", "--where", f"max_steps>{HUGE}"], ["runs", "--sort", "loss"]):
        code, out, err = cli(capsys, "--db", store_url, *argv)
        assert code == 0 and "error" not in err, (argv, err)
    for argv in (["stop", "live"], ["stop", "extreme"], ["show", str(10**30)]):
        code, _, err = cli(capsys, "--db", store_url, *argv)
        assert code in (0, 2) and err.count("\n") <= 1, (argv, err)  # an answer, or one line
    if store.dialect == "sqlite":  # the same through a real process: no traceback, whatever the row holds
        proc = arctui_process("--db", store_url, "show", "extreme", "--format", "json")
        assert proc.returncode == 0 and TRACEBACK not in proc.stderr, proc.stderr
        assert json.loads(proc.stdout)["run"]["name"] == "extreme"
