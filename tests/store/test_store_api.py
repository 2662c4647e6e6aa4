"""The public RunStore API on both backends (SQLite file and PostgreSQL schema)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from db.errors import IllegalTransitionError, StoreError, UnknownRunError
from db.records import LEGAL_TRANSITIONS, RUN_STATUSES
from db.store import GpuSample, MetricPoint, RunStore

SEED_CONFIG = {
    "name": "01_baseline",
    "model_path": "/models/SmolLM-135M-Instruct",
    "grid_encoder": "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))",
    "max_seq_len": 10240,
    "batch_size": 16,
    "per_device_train_batch_size": 1,
    "learning_rate": 1e-4,
    "lora_r": 32,
    "gpus": [0, 1],
    "train_datasets": [["data/train_rs7.json", "output-from-examples-v1"]],
    "val_dataset": ["data/val_rs7.json", "output-from-examples-v1"],
    "max_steps": 100,
}


def step_event(seq, step, loss, s_per_step=3.0, vram=None, max_steps=100):
    return {
        "seq": seq, "time": 1000.0 + seq, "event": "step", "step": step, "max_steps": max_steps,
        "loss": loss, "learning_rate": 1e-4, "grad_norm": 0.5, "seconds_per_step": s_per_step,
        "tokens_per_second": 1000.0 + step, "samples_per_second": 5.0, "padding_share": 0.1,
        "peak_memory_gb": vram or {},
    }  # fmt: skip


def run_events(n_steps=10):
    events = [{"seq": 1, "time": 1000.0, "event": "start", "max_steps": 100, "config": {"lora_r": 32}}]
    seq = 1
    for i in range(1, n_steps + 1):
        seq += 1
        events.append(step_event(seq, i * 10, 2.0 / i, s_per_step=float(i), vram={"0": 1.0 + i, "1": 0.5}))
    seq += 1
    events.append({"seq": seq, "time": 2000.0, "event": "eval", "step": 100, "eval_loss": 0.7, "eval_seconds": 3.0})
    seq += 1
    events.append({"seq": seq, "time": 2001.0, "event": "checkpoint", "step": 100, "path": "out/checkpoint-100"})
    seq += 1
    events.append({"seq": seq, "time": 2002.0, "event": "eval_progress", "done": 1, "total": 2})
    seq += 1
    events.append(
        {"seq": seq, "time": 2003.0, "event": "end", "status": "completed", "step": 100, "train_loss": 0.25,
         "eval_loss": 0.6, "total_seconds": 50.0}
    )  # fmt: skip
    return events


# ------------------------------------------------------------------------------------------- runs


def test_create_run_fills_filter_columns_from_the_seed_config(store):
    run = store.create_run(SEED_CONFIG, name="baseline", tags=["baseline", "smollm"], notes="iteration 33")
    assert run.id >= 1 and run.name == "baseline" and run.status == "queued"
    assert run.model == "/models/SmolLM-135M-Instruct"
    assert run.encoder.startswith("GridShapeEncoder")
    assert (run.msl, run.batch_size, run.per_device_batch, run.lora_r, run.gpus) == (10240, 16, 1, 32, 2)
    assert run.learning_rate == pytest.approx(1e-4)
    assert run.datasets == ("data/train_rs7.json", "data/val_rs7.json")
    assert run.tags == ("baseline", "smollm") and run.notes == "iteration 33"
    assert run.config == SEED_CONFIG
    assert run.created_at.tzinfo is not None and run.started_at is None
    assert store.get_run(run.id) == run == store.get_run("baseline") == store.get_run(str(run.id))
    assert json.loads(json.dumps(run.to_dict()))["config"] == SEED_CONFIG


def test_explicit_columns_win_over_the_config(store):
    run = store.create_run(SEED_CONFIG, model="SmolLM-135M", gpus=1, datasets=["x.json"])
    assert (run.model, run.gpus, run.datasets) == ("SmolLM-135M", 1, ("x.json",))


def test_default_names_are_unique_and_names_are_checked(store):
    a = store.create_run({})
    b = store.create_run({})
    assert a.name == f"run-{a.id}" and b.name == f"run-{b.id}"
    with pytest.raises(StoreError, match="already exists"):
        store.create_run({}, name=a.name)
    for bad in ("123", "", "has space", "x" * 101, "semi;colon"):
        with pytest.raises(StoreError, match="run name"):
            store.create_run({}, name=bad)
    with pytest.raises(StoreError, match="JSON"):
        store.create_run({"x": object()})
    with pytest.raises(StoreError, match="tag"):
        store.create_run({}, tags=["bad tag"])
    assert len(store.list_runs()) == 2  # nothing half-written by the refused calls


def test_unknown_runs_say_so_with_a_suggestion(store):
    store.create_run({}, name="smollm-baseline")
    with pytest.raises(UnknownRunError, match="did you mean 'smollm-baseline'"):
        store.get_run("smollm-basline")
    with pytest.raises(UnknownRunError, match="no run with id 999"):
        store.get_run(999)
    with pytest.raises(UnknownRunError):
        store.append_metrics("nope", [("loss", 1, 1.0)])


def test_update_run_changes_fields_but_never_status(store):
    run = store.create_run(SEED_CONFIG, name="a")
    updated = store.update_run(
        "a", supervisor_pid=4321, pgid=4330, host="gpu-box", gpu_ids=[1, 0], output_dir="/runs/a",
        log_path="/runs/a/train.log", notes="n", tags=["x"], config={"lora_r": 64}, lora_r=64,
    )  # fmt: skip
    assert (updated.supervisor_pid, updated.pgid, updated.host, updated.gpu_ids) == (4321, 4330, "gpu-box", (1, 0))
    assert updated.config == {"lora_r": 64} and updated.lora_r == 64 and updated.tags == ("x",)
    assert store.update_run(run.id, name="b").name == "b"
    with pytest.raises(StoreError, match="set_status"):
        store.update_run(run.id, status="running")
    with pytest.raises(StoreError, match="did you mean 'supervisor_pid'"):
        store.update_run(run.id, supervisor_pd=1)
    with pytest.raises(StoreError, match="integer"):
        store.update_run(run.id, pgid="x")
    other = store.create_run({}, name="c")
    with pytest.raises(StoreError, match="already exists"):
        store.update_run(other.id, name="b")


@pytest.mark.parametrize("start", RUN_STATUSES)
def test_only_legal_transitions(store, start):
    paths = {  # how to reach each status legally from queued
        "queued": [], "running": ["running"], "completed": ["running", "completed"],
        "failed": ["failed"], "stopped": ["stopped"], "crashed": ["running", "crashed"],
    }  # fmt: skip
    for target in RUN_STATUSES:
        run = store.create_run({})
        for status in paths[start]:
            store.set_status(run.id, status)
        if target == start or target in LEGAL_TRANSITIONS[start]:
            assert store.set_status(run.id, target).status == target
        else:
            with pytest.raises(IllegalTransitionError, match=f"from {start} to {target}"):
                store.set_status(run.id, target)
            assert store.get_run(run.id).status == start


def test_status_timestamps_exit_code_and_error(store):
    run = store.create_run({})
    running = store.set_status(run.id, "running")
    assert running.started_at is not None and running.ended_at is None
    store.update_run(run.id, supervisor_pid=10, pgid=11, gpu_ids=[0])
    assert [r.id for r in store.runs_holding_gpus()] == [run.id]
    crashed = store.set_status(run.id, "crashed", exit_code=-9, error="killed by OOM")
    assert (crashed.exit_code, crashed.last_error) == (-9, "killed by OOM")
    assert crashed.ended_at >= crashed.started_at
    assert store.runs_holding_gpus() == []
    requeued = store.set_status(run.id, "queued")
    assert requeued.ended_at is None and requeued.exit_code is None and requeued.pgid is None
    assert requeued.gpu_ids == () and requeued.started_at == running.started_at
    with pytest.raises(StoreError, match="did you mean 'running'"):
        store.set_status(run.id, "runing")


def test_active_runs_and_delete(store):
    queued = store.create_run({}, name="q")
    running = store.create_run({}, name="r")
    store.set_status(running.id, "running")
    done = store.create_run({}, name="d")
    store.set_status(done.id, "running")
    store.set_status(done.id, "completed")
    assert [r.name for r in store.active_runs()] == ["q", "r"]
    with pytest.raises(StoreError, match="stop it first"):
        store.delete_run(queued.id)
    store.append_metrics(done.id, [("loss", 1, 1.0)])
    store.append_gpu_samples(done.id, [GpuSample(0, "H100", 1.0, 100.0, 80000.0, 50.0, 300.0)])
    store.record_eval(done.id, 1, "val", {"accuracy": 0.1})
    store.delete_run("d")
    with pytest.raises(UnknownRunError):
        store.get_run("d")
    assert [s.run.name for s in store.list_runs()] == ["r", "q"]


# ---------------------------------------------------------------------------------------- metrics


def test_append_metrics_ignores_duplicates_and_keeps_stats(store):
    run = store.create_run({})
    assert store.append_metrics(run.id, [MetricPoint("loss", s, 10.0 - s, 100.0 + s) for s in range(5)]) == 5
    # Overlapping batch: steps 3-4 exist (ignored, first value kept), 5-6 new; in-batch duplicate too.
    assert store.append_metrics(run.id, [("loss", 3, 99.0), ("loss", 4, 99.0), ("loss", 6, 1.0), ("loss", 5, 2.0), ("loss", 5, 7.0)]) == 2
    assert store.append_metrics(run.id, [("loss", 2, 99.0)]) == 0
    assert store.append_metrics(run.id, []) == 0
    stats = store.metric_stats(run.id)["loss"]
    assert (stats.count, stats.min, stats.max, stats.latest, stats.latest_step) == (7, 1.0, 10.0, 1.0, 6)
    series = store.metric_series(run.id, "loss")
    assert [(p.step, p.value) for p in series] == [(0, 10), (1, 9), (2, 8), (3, 7), (4, 6), (5, 2), (6, 1)]
    assert series[0].wall_time == 100.0
    summary = store.get_summary(run.id)
    assert (summary.points, summary.last_step, summary.loss, summary.min_loss) == (7, 6, 1.0, 1.0)
    # Out-of-order late point below the latest step does not become "latest".
    store.append_metrics(run.id, [("loss", -1, 0.5)])
    assert store.get_summary(run.id).loss == 1.0 and store.get_summary(run.id).min_loss == 0.5
    assert store.metric_keys(run.id) == ["loss"]


def test_append_metrics_rejects_bad_points_and_drops_non_finite_values(store):
    run = store.create_run({})
    with pytest.raises(StoreError, match="step must be an integer"):
        store.append_metrics(run.id, [("loss", "1", 1.0)])
    with pytest.raises(StoreError, match="metric point"):
        store.append_metrics(run.id, [("loss",)])
    assert store.append_metrics(run.id, [("loss", 1, float("nan")), ("loss", 2, float("inf")), ("loss", 3, 1.0)]) == 1


def test_median_seconds_per_step_without_warm_up_and_peak_vram(store):
    run = store.create_run({})
    store.append_metrics(run.id, [("seconds_per_step", 0, 9.0)])
    assert store.get_summary(run.id).seconds_per_step == 9.0  # the only window counts
    store.append_metrics(run.id, [("seconds_per_step", i, v) for i, v in [(1, 1.0), (2, 3.0)]])
    assert store.get_summary(run.id).seconds_per_step == 2.0  # median of 1, 3: the warm-up 9 is left out
    store.append_metrics(run.id, [("seconds_per_step", 3, 2.0)])
    assert store.get_summary(run.id).seconds_per_step == 2.0
    store.append_metrics(run.id, [("seconds_per_step", 4, 8.0)])
    assert store.get_summary(run.id).seconds_per_step == 2.5
    store.append_metrics(run.id, [("peak_memory_gb/0", 1, 7.0), ("peak_memory_gb/1", 1, 21.0)])
    store.append_metrics(run.id, [("peak_memory_gb/0", 2, 6.0)])
    assert store.get_summary(run.id).peak_vram_gb == 21.0


def test_metric_series_downsamples_keeping_first_last_min_max(store):
    run = store.create_run({})
    values = [float((i * 37) % 101) for i in range(5000)]
    values[1234], values[4321] = -50.0, 500.0  # spikes must survive
    store.append_metrics(run.id, [("loss", i, v) for i, v in enumerate(values)])
    series = store.metric_series(run.id, "loss", max_points=200)
    steps = [p.step for p in series]
    assert len(series) <= 200 and steps == sorted(steps) and len(set(steps)) == len(steps)
    assert steps[0] == 0 and steps[-1] == 4999
    assert min(p.value for p in series) == -50.0 and max(p.value for p in series) == 500.0
    assert len(store.metric_series(run.id, "loss", max_points=10_000)) == 5000
    assert store.metric_series(run.id, "missing") == []
    with pytest.raises(StoreError, match="max_points"):
        store.metric_series(run.id, "loss", max_points=0)


# ----------------------------------------------------------------------------------------- events


def test_ingest_events_is_exactly_once_and_fills_the_summary(store):
    run = store.create_run(SEED_CONFIG, name="r")
    events = run_events(10)
    assert store.ingest_events(run.id, events[:5]) == 5
    # The tailer re-reads from an older offset: overlap is skipped, the rest lands once.
    assert store.ingest_events(run.id, events[3:]) == len(events) - 5
    assert store.ingest_events(run.id, events) == 0
    assert store.get_run(run.id).events_cursor == events[-1]["seq"]
    summary = store.get_summary("r")
    assert summary.max_steps == 100 and summary.last_step == 100 and summary.progress == 1.0
    assert summary.loss == pytest.approx(0.2) and summary.min_loss == pytest.approx(0.2)
    assert summary.final_loss == 0.25 and summary.eval_loss == 0.6
    assert summary.seconds_per_step == 6.0  # median of 2..10: the warm-up window (1) is left out
    # Windows of 10 steps at i s/step and 1000 + 10 i tokens/s: tokens / time over windows 2..10.
    tokens = sum((1000.0 + 10 * i) * 10 * i for i in range(2, 11))
    assert summary.tokens_per_second == pytest.approx(tokens / sum(10 * i for i in range(2, 11)))
    assert summary.peak_vram_gb == 11.0
    assert summary.run.status == "queued"  # ingestion never changes status
    keys = store.metric_keys(run.id)
    assert {"loss", "learning_rate", "grad_norm", "seconds_per_step", "tokens_per_second", "samples_per_second",
            "padding_share", "peak_memory_gb/0", "peak_memory_gb/1", "eval_loss", "eval_seconds", "window_seconds",
            "window_tokens"} == set(keys)  # fmt: skip
    assert all(s.count == (1 if k.startswith("eval") else 10) for k, s in store.metric_stats(run.id).items())
    kinds = [e.kind for e in store.recent_events(run.id, limit=None)]
    assert kinds == ["end", "checkpoint", "eval", "start"]  # newest first; step/eval_progress not kept
    (checkpoint,) = store.checkpoints(run.id)
    assert checkpoint.step == 100 and checkpoint.data["path"] == "out/checkpoint-100"
    assert store.recent_events(run.id, limit=1, kinds=["start"])[0].data["config"] == {"lora_r": 32}


def test_ingest_is_all_or_nothing(store):
    run = store.create_run({})
    events = run_events(3)
    broken = events[:3] + [{"time": 1.0, "event": "step"}]  # no seq: the whole batch is refused
    with pytest.raises(StoreError, match="seq"):
        store.ingest_events(run.id, broken)
    assert store.get_run(run.id).events_cursor == 0 and store.metric_keys(run.id) == []
    assert store.ingest_events(run.id, list(reversed(events))) == len(events)  # order does not matter


def test_ingest_error_and_eval_result_events(store):
    run = store.create_run({})
    store.ingest_events(
        run.id,
        [
            {"seq": 1, "time": 1.0, "event": "error", "type": "OutOfMemoryError", "message": "CUDA out of memory.\nTried",
             "traceback": ["a", "b"]},
            {"seq": 2, "time": 2.0, "event": "eval_result", "step": 100, "dataset": "val_rs7",
             "metrics": {"accuracy": 0.0858, "pass_n": 0.2412, "vote_2": 0.1688, "n": {"nested": 1}},
             "predictions_path": "out/preds.json", "submission_path": "out/sub.json"},
        ],
    )  # fmt: skip
    summary = store.get_summary(run.id)
    assert summary.run.last_error == "OutOfMemoryError: CUDA out of memory."
    assert summary.accuracy == pytest.approx(0.0858)
    results = store.eval_results(run.id)
    assert [(r.metric, r.step, r.dataset) for r in results] == [
        ("accuracy", 100, "val_rs7"), ("pass_n", 100, "val_rs7"), ("vote_2", 100, "val_rs7"),
    ]  # fmt: skip
    assert results[0].predictions_path == "out/preds.json"


def test_record_eval_replaces_and_latest_step_sets_accuracy(store):
    run = store.create_run({})
    store.record_eval(run.id, 200, "val", {"accuracy": 0.2})
    store.record_eval(run.id, 100, "val", {"accuracy": 0.1})
    assert store.get_summary(run.id).accuracy == 0.2
    stored = store.record_eval(run.id, 200, "val", {"accuracy": 0.3, "correct_pixels": 0.7}, "p.json")
    assert [(r.metric, r.value) for r in stored] == [("accuracy", 0.3), ("correct_pixels", 0.7)]
    assert store.get_summary(run.id).accuracy == 0.3
    assert len(store.eval_results(run.id)) == 3


def test_gpu_samples(store):
    run = store.create_run({})
    samples = [GpuSample(g, "NVIDIA H100", 100.0 + t, 1000.0 * t, 81559.0, 10.0 * t, 100.0 + t)
               for t in range(3) for g in (0, 1)]  # fmt: skip
    assert store.append_gpu_samples(run.id, samples) == 6
    store.append_gpu_samples(None, [GpuSample(2, "NVIDIA H100", 500.0, 1.0, 81559.0, 0.0, 60.0)])
    assert [s.time for s in store.gpu_samples(run.id)] == [100, 100, 101, 101, 102, 102]
    assert [s.time for s in store.gpu_samples(run.id, limit=2)] == [102, 102]
    assert len(store.gpu_samples(run.id, since=101.5)) == 2
    latest = store.latest_gpu_samples(run.id)
    assert [(s.gpu_index, s.time, s.run_id) for s in latest] == [(0, 102, run.id), (1, 102, run.id)]
    assert [s.gpu_index for s in store.latest_gpu_samples()] == [0, 1, 2]
    with pytest.raises(StoreError, match="GpuSample"):
        store.append_gpu_samples(run.id, [{"gpu_index": 0}])


# ---------------------------------------------------------------------------------- list / compare


def test_list_runs_sort_limit_and_nulls_last(store):
    for i, s_per_step in enumerate([3.0, None, 1.0, 2.0]):
        run = store.create_run({"max_seq_len": 1024 * (i + 1)}, name=f"r{i}")
        if s_per_step is not None:
            store.append_metrics(run.id, [("seconds_per_step", 1, s_per_step)])
    assert [s.run.name for s in store.list_runs()] == ["r3", "r2", "r1", "r0"]
    assert [s.run.name for s in store.list_runs(sort="s_per_step", descending=False)] == ["r2", "r3", "r0", "r1"]
    assert [s.run.name for s in store.list_runs(sort="s_per_step")] == ["r0", "r3", "r2", "r1"]
    assert [s.run.name for s in store.list_runs(sort="msl", limit=2)] == ["r3", "r2"]
    assert [s.run.name for s in store.list_runs(sort="name", descending=False)] == ["r0", "r1", "r2", "r3"]
    with pytest.raises(StoreError, match="did you mean 'msl'"):
        store.list_runs(sort="mls")
    with pytest.raises(StoreError, match="cannot sort"):
        store.list_runs(sort="tag")
    with pytest.raises(StoreError, match="limit"):
        store.list_runs(limit=-1)


def test_compare_shows_config_differences_in_order(store):
    a = store.create_run(SEED_CONFIG, name="a")
    store.create_run(SEED_CONFIG | {"max_seq_len": 2048, "per_device_train_batch_size": 2}, name="b")
    store.append_metrics(a.id, [("loss", 1, 1.0)])
    comparison = store.compare(["b", a.id])
    assert [s.run.name for s in comparison.summaries] == ["b", "a"]
    assert comparison.config_diff == {"max_seq_len": (2048, 10240), "per_device_train_batch_size": (2, 1)}
    assert comparison.metrics["loss"][0] is None and comparison.metrics["loss"][1].latest == 1.0
    with pytest.raises(UnknownRunError):
        store.compare(["a", "zzz"])


def test_records_are_frozen(store):
    run = store.create_run({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.status = "running"  # type: ignore[misc]


def test_two_store_instances_see_each_others_writes(store_url):
    with RunStore.open(store_url) as writer, RunStore.open(store_url) as reader:
        run = writer.create_run({}, name="shared")
        writer.append_metrics(run.id, [("loss", 1, 0.5)])
        assert reader.get_summary("shared").loss == 0.5
