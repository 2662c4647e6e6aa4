"""db.ingest: what each runner event kind becomes (pure translation, no database)."""

from __future__ import annotations

import math

import pytest

from db.errors import StoreError
from db.ingest import check_sequence, event_records, translate, window_figures
from db.records import EvalRecord, EventRecords, KeptEvent

STEP = {
    "seq": 2, "time": 100.0, "event": "step", "step": 10, "max_steps": 50, "loss": 1.5, "learning_rate": 1e-4,
    "grad_norm": 0.5, "seconds_per_step": 2.0, "tokens_per_second": 3000.0, "samples_per_second": 8.0,
    "padding_share": 0.25, "peak_memory_gb": {"0": 7.5, "1": 6.0}, "skipped_share": 0.0,
    "window_steps": 10, "window_seconds": 20.0, "window_tokens": 60000,
}  # fmt: skip


def points(record: EventRecords) -> dict[str, float]:
    assert all(step == 10 and wall == 100.0 for _, step, _, wall in record.points)
    return {key: value for key, _, value, _ in record.points}


def test_step_becomes_metric_points_window_figures_and_max_steps():
    record = event_records(STEP)
    assert record.seq == 2 and record.time == 100.0 and record.kept is None and record.evals == ()
    assert points(record) == {
        "loss": 1.5, "learning_rate": 1e-4, "grad_norm": 0.5, "seconds_per_step": 2.0, "tokens_per_second": 3000.0,
        "samples_per_second": 8.0, "padding_share": 0.25, "peak_memory_gb/0": 7.5, "peak_memory_gb/1": 6.0,
        "window_seconds": 20.0, "window_tokens": 60000.0,
    }  # fmt: skip
    assert record.run_fields == {"max_steps": 50}


def test_window_figures_fall_back_for_events_written_before_the_runner_reported_them():
    old = {k: v for k, v in STEP.items() if not k.startswith("window_")}
    assert window_figures(old) == (2.0, 6000.0)  # one step of 2 s at 3000 tokens/s
    assert window_figures({**old, "window_steps": 10}) == (20.0, 60000.0)
    assert window_figures({**STEP, "window_tokens": None}) == (20.0, 60000.0)  # tokens from the rate
    assert window_figures({**old, "tokens_per_second": None}) is None
    assert window_figures({**old, "seconds_per_step": float("nan")}) is None
    assert window_figures({**STEP, "window_seconds": 0.0, "seconds_per_step": 0.0}) is None


def test_non_finite_values_are_not_points_and_a_step_without_step_has_none():
    record = event_records(
        {**STEP, "loss": float("nan"), "grad_norm": None, "peak_memory_gb": {"0": math.inf}}
    )
    assert {"loss", "grad_norm", "peak_memory_gb/0"}.isdisjoint(points(record))
    assert event_records({**STEP, "step": None}).points == ()
    assert event_records({**STEP, "step": True}).points == ()  # a bool is not a step number


def test_eval_points_and_kept_event():
    event = {"seq": 3, "time": 5.0, "event": "eval", "step": 20, "eval_loss": 0.7, "eval_seconds": 3.0}
    record = event_records(event)
    assert [(k, s, v) for k, s, v, _ in record.points] == [("eval_loss", 20, 0.7), ("eval_seconds", 20, 3.0)]
    assert record.kept == KeptEvent("eval", 20, event) and record.run_fields == {}


def test_start_checkpoint_end_error_and_eval_result():
    start = event_records(
        {"seq": 1, "time": 1.0, "event": "start", "max_steps": 200, "config": {"lora_r": 8}}
    )
    assert start.run_fields == {"max_steps": 200} and start.kept.kind == "start" and start.points == ()
    checkpoint = event_records(
        {"seq": 4, "time": 2.0, "event": "checkpoint", "step": 50, "path": "/out/c-50"}
    )
    assert checkpoint.kept == KeptEvent("checkpoint", 50, {"seq": 4, "time": 2.0, "event": "checkpoint",
                                                           "step": 50, "path": "/out/c-50"})  # fmt: skip
    assert checkpoint.run_fields == {} and checkpoint.points == ()
    end = event_records({"seq": 5, "time": 3.0, "event": "end", "status": "completed", "step": 50,
                         "train_loss": 0.25, "eval_loss": None})  # fmt: skip
    assert end.run_fields == {"final_loss": 0.25} and end.kept.kind == "end"
    error = event_records({"seq": 6, "time": 4.0, "event": "error", "type": "ValueError",
                           "message": "bad grid\nsecond line", "traceback": []})  # fmt: skip
    assert error.run_fields == {"last_error": "ValueError: bad grid"} and error.kept.kind == "error"
    result = event_records({"seq": 7, "time": 5.0, "event": "eval_result", "step": 50, "dataset": "val",
                            "metrics": {"accuracy": 0.5}, "predictions_path": "/p.json"})  # fmt: skip
    assert (
        result.evals == (EvalRecord(50, "val", {"accuracy": 0.5}, "/p.json"),)
        and result.kept.kind == "eval_result"
    )
    unnamed = event_records({"seq": 8, "time": 6.0, "event": "eval_result", "metrics": {"accuracy": 1.0}})
    assert unnamed.evals == (EvalRecord(0, "eval", {"accuracy": 1.0}, None),)


def test_other_kinds_only_carry_their_sequence_number():
    for event in ({"seq": 9, "time": 1.0, "event": "eval_progress", "done": 1, "total": 2},
                  {"seq": 10, "event": "something_new", "step": 3, "loss": 1.0}):  # fmt: skip
        record = event_records(event)
        assert (record.points, record.run_fields, record.kept, record.evals) == ((), {}, None, ())
    assert event_records({"seq": 10, "event": "x"}).time > 0  # no time: now


def test_translate_orders_by_seq_and_refuses_events_without_one():
    records = translate(
        [{**STEP, "seq": 3}, {"seq": 1, "event": "start"}, {"seq": 2, "event": "eval_progress"}]
    )
    assert [r.seq for r in records] == [1, 2, 3]
    for bad in ({"event": "step"}, {"seq": 0}, {"seq": True}, {"seq": "1"}):
        with pytest.raises(StoreError, match="positive integer seq"):
            translate([{"seq": 1}, bad])
    with pytest.raises(StoreError, match="must be a dict"):
        check_sequence([["seq", 1]])
