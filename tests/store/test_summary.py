"""Honest summaries (db.summary, docs/store.md "Summaries") on both backends: s/step leaves the warm-up
window out, tokens/s is tokens over time of the same windows, peak VRAM is the max over steps and
devices; and the figures the store keeps current batch by batch equal a recompute from scratch."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db import summary
from db.errors import StoreError
from db.records import EventRecords, KeptEvent


def step_event(seq, step, *, steps, seconds_per_step, tokens, vram):
    seconds = seconds_per_step * steps
    return {
        "seq": seq, "time": 1000.0 + seq, "event": "step", "step": step, "max_steps": 1000, "loss": 1.0 / seq,
        "seconds_per_step": seconds_per_step, "tokens_per_second": tokens / seconds, "window_steps": steps,
        "window_seconds": seconds, "window_tokens": tokens, "peak_memory_gb": vram,
    }  # fmt: skip


def stored_points(store, run_id):
    """Every stored point of a run as (key, step, value), read through the public API."""
    out = []
    for key in store.metric_keys(run_id):
        out += [(key, p.step, p.value) for p in store.metric_series(run_id, key, max_points=1_000_000)]
    return out


def test_slow_first_window_and_noisy_last_window(store):
    # Windows of 10 steps at ~1 s/step and 2000 tokens/s; the first (warm-up) takes 8 s/step, the last
    # is a noisy 3 s/step at a third of the throughput. GPU 1 peaks once, mid-run.
    windows = [(8.0, 10 * 8.0 * 500)] + [(1.0 + 0.01 * i, 10 * (1.0 + 0.01 * i) * 2000) for i in range(8)]
    windows.append((3.0, 10 * 3.0 * 2000 / 3))
    events = [{"seq": 1, "time": 1000.0, "event": "start", "max_steps": 100}]
    for i, (sps, tokens) in enumerate(windows):
        vram = {"0": 5.0 + 0.1 * i, "1": 9.5 if i == 4 else 4.0}
        events.append(
            step_event(i + 2, 10 * (i + 1), steps=10, seconds_per_step=sps, tokens=tokens, vram=vram)
        )
    run = store.create_run({}, name="noisy")
    store.ingest_events(run.id, events)
    got = store.get_summary(run.id)
    counted = windows[1:]
    assert got.seconds_per_step == pytest.approx(
        sorted(s for s, _ in counted)[len(counted) // 2]
    )  # 9 windows
    assert got.tokens_per_second == pytest.approx(
        sum(t for _, t in counted) / sum(10 * s for s, _ in counted)
    )
    # Not the last window's rate (a third), not the mean of the rates: the time-weighted figure.
    assert got.tokens_per_second == pytest.approx((10 * 2000 * 8 * 1.035 + 20000) / (10 * (8 * 1.035 + 3.0)))
    assert got.peak_vram_gb == 9.5
    assert summary.from_points(stored_points(store, run.id)) == pytest.approx(
        {
            "seconds_per_step": got.seconds_per_step,
            "tokens_per_second": got.tokens_per_second,
            "peak_vram_gb": 9.5,
        }
    )


def test_one_window_counts_when_it_is_the_only_one(store):
    run = store.create_run({})
    store.ingest_events(run.id, [step_event(1, 5, steps=5, seconds_per_step=4.0, tokens=1000.0, vram={})])
    got = store.get_summary(run.id)
    assert got.seconds_per_step == 4.0 and got.tokens_per_second == pytest.approx(50.0)
    assert got.peak_vram_gb is None


def test_no_window_figures_no_tokens_per_second(store):
    run = store.create_run({})
    store.append_metrics(run.id, [("seconds_per_step", 1, 2.0), ("tokens_per_second", 1, 5.0)])
    assert store.get_summary(run.id).tokens_per_second is None


def test_pure_definitions():
    assert summary.seconds_per_step([]) is None and summary.tokens_per_second([], []) is None
    assert summary.seconds_per_step([(3, 1.0), (1, 9.0), (2, 3.0)]) == 2.0  # step 1 is the warm-up
    assert (
        summary.tokens_per_second([(1, 10.0), (2, 1.0), (3, 3.0)], [(1, 0.0), (2, 100.0), (3, 100.0)]) == 50.0
    )
    assert (
        summary.peak_vram_gb([("peak_memory_gb/0", 1, 2.0), ("peak_memory_gb/1", 9, 3.0), ("loss", 1, 9.0)])
        == 3.0
    )


def test_ingest_records_is_generic_and_checks_its_input(store):
    run = store.create_run({})
    records = [
        EventRecords(seq=2, time=5.0, points=(("custom", 1, 2.0, None),), run_fields={"max_steps": 7}),
        EventRecords(seq=1, time=4.0, kept=KeptEvent("note", None, {"text": "hello"})),
    ]
    assert store.ingest_records(run.id, records) == 2 and store.ingest_records(run.id, records) == 0
    got = store.get_summary(run.id)
    assert got.max_steps == 7 and got.run.events_cursor == 2 and store.metric_keys(run.id) == ["custom"]
    assert store.recent_events(run.id)[0].data == {"text": "hello"}
    with pytest.raises(StoreError, match="cannot set run field"):
        store.ingest_records(run.id, [EventRecords(seq=3, time=1.0, run_fields={"status": "completed"})])
    with pytest.raises(StoreError, match="EventRecords"):
        store.ingest_records(run.id, [{"seq": 3}])


windows_strategy = st.lists(
    st.tuples(
        st.integers(1, 5),  # optimizer steps in the window
        st.floats(0.05, 20.0),  # seconds per step
        st.floats(0.0, 1e6),  # real tokens
        st.dictionaries(
            st.sampled_from(["0", "1", "2"]), st.floats(0.0, 80.0), max_size=3
        ),  # peak GB per device
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(windows=windows_strategy, cuts=st.lists(st.integers(0, 60), max_size=6), seed=st.integers(0, 2**32))
def test_incremental_figures_equal_a_recompute_from_scratch(store, windows, cuts, seed):
    events, step = [{"seq": 1, "time": 1.0, "event": "start", "max_steps": 1000}], 0
    for steps, sps, tokens, vram in windows:
        step += steps
        events.append(
            step_event(len(events) + 1, step, steps=steps, seconds_per_step=sps, tokens=tokens, vram=vram)
        )
    # Batches as a tailer delivers them, some overlapping (a re-read from an older offset).
    rng = random.Random(seed)
    bounds = sorted({0, len(events), *(c % (len(events) + 1) for c in cuts)})
    batched = store.create_run({})
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        store.ingest_events(batched.id, events[max(0, lo - rng.randint(0, 2)) : hi])
    at_once = store.create_run({})
    store.ingest_events(at_once.id, events)
    # The same points appended directly, out of step order, in small batches.
    shuffled = store.create_run({})
    points = stored_points(store, at_once.id)
    rng.shuffle(points)
    for i in range(0, len(points), 7):
        store.append_metrics(shuffled.id, points[i : i + 7])

    expected = summary.from_points(stored_points(store, at_once.id))
    counted = windows[1:] or windows
    time = sum(steps * sps for steps, sps, _, _ in counted)
    assert expected["tokens_per_second"] == pytest.approx(
        sum(t for *_, t, _ in counted) / time if time else None
    )
    for run in (batched, at_once, shuffled):
        got = store.get_summary(run.id)
        figures = {"seconds_per_step": got.seconds_per_step, "tokens_per_second": got.tokens_per_second,
                   "peak_vram_gb": got.peak_vram_gb}  # fmt: skip
        assert figures == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.lists(
            st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.0, 8.0]) | st.floats(0.01, 100.0), min_size=1, max_size=6
        ),
        min_size=1,
        max_size=12,
    ),
    seed=st.integers(0, 2**32),
)
def test_the_median_follows_every_batch(store, batches, seed):
    # The store moves the median's middle point from batch to batch (up or down, ties included) and
    # falls back to a walk from the lowest value when a batch re-sends points or brings an earlier step.
    rng = random.Random(seed)
    run = store.create_run({})
    sent: dict[int, float] = {}
    step = 1000
    for values in batches:
        points = []
        for value in values:
            step += rng.randint(1, 3)
            points.append(("seconds_per_step", step, value))
        if rng.random() < 0.2:  # an earlier step: the warm-up point changes
            points.append(("seconds_per_step", rng.randint(0, 999), rng.choice(values)))
        if sent and rng.random() < 0.2:  # a re-send of a stored point (its first value stays)
            old = rng.choice(sorted(sent))
            points.append(("seconds_per_step", old, 0.25))
        store.append_metrics(run.id, points)
        for _, s, v in points:
            sent.setdefault(s, v)
        assert store.get_summary(run.id).seconds_per_step == pytest.approx(
            summary.seconds_per_step(sent.items())
        )
