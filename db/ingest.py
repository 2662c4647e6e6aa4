"""Runner events -> store records: the one place in ``db/`` that knows the runner's event schema
(``docs/events.md``). :meth:`db.store.RunStore.ingest_events` calls :func:`translate` and stores what
it returns with the generic :meth:`db.store.RunStore.ingest_records`.

    records = translate(read_events("runs/x/events.jsonl"))
    store.ingest_records(run_id, records)        # = store.ingest_events(run_id, events)

What each kind becomes:

- ``step``: points ``loss``, ``learning_rate``, ``grad_norm``, ``seconds_per_step``,
  ``tokens_per_second``, ``samples_per_second``, ``padding_share``, ``peak_memory_gb/<device>``, and
  the window figures ``window_seconds`` / ``window_tokens`` the speed summary is built from
  (:mod:`db.summary`); ``max_steps``.
- ``eval``: points ``eval_loss``, ``eval_seconds``; kept.
- ``start``: ``max_steps``; kept. ``checkpoint``: kept.
- ``end``: ``final_loss`` (its ``train_loss``) and ``eval_loss``; kept.
- ``error``: ``last_error`` ("Type: message", first line); kept.
- ``eval_result``: an evaluation (``step``, ``dataset``, ``metrics``, ``predictions_path``); kept.
- ``phase`` (``phase``, ``done``, ``total``): kept; the live views read the current phase from it.
- anything else (``eval_progress``, unknown kinds): nothing but its sequence number.

NaN/inf numbers never become points (the kept event still has them); a ``time`` that is no plausible
Unix time counts as missing. Integers the store cannot hold (a ``step`` or ``max_steps`` beyond
32 bits) are not dropped: the store refuses the event (``UnstorableValueError``). Statuses are not
derived from events: the supervisor sets them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from db.errors import StoreError
from db.records import CHECKPOINT_KIND, EvalRecord, EventRecords, KeptEvent
from db.rows import finite, unix_time
from db.summary import PEAK_VRAM_PREFIX, WINDOW_SECONDS_KEY, WINDOW_TOKENS_KEY

# Fields of a `step` event that become metric points under their own name.
STEP_METRICS = (
    "loss",
    "learning_rate",
    "grad_norm",
    "seconds_per_step",
    "tokens_per_second",
    "samples_per_second",
    "padding_share",
)
EVAL_METRICS = ("eval_loss", "eval_seconds")
KEPT_EVENT_KINDS = frozenset({"start", "eval", CHECKPOINT_KIND, "end", "error", "eval_result", "phase"})
# Kept for callers of the old name; the summary's own constant is db.summary.PEAK_VRAM_PREFIX.
PEAK_MEMORY_PREFIX = PEAK_VRAM_PREFIX


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_sequence(events: Iterable[Any]) -> list[dict]:
    """The events in ``seq`` order, each checked to be a dict with a positive int ``seq``
    (StoreError otherwise, before anything is written)."""
    checked: list[tuple[int, dict]] = []
    for event in events:
        if not isinstance(event, dict):
            raise StoreError(f"an event must be a dict, got {type(event).__name__}")
        seq = event.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise StoreError(f"event without a positive integer seq: {str(event)[:80]}")
        checked.append((seq, event))
    checked.sort(key=lambda item: item[0])
    return [event for _, event in checked]


def window_figures(event: dict) -> tuple[float, float] | None:
    """(seconds, real tokens) of a step event's logging window. Events written before the runner
    reported ``window_seconds``/``window_tokens`` count their window as ``window_steps`` (else one)
    steps of ``seconds_per_step`` at ``tokens_per_second``."""
    seconds = finite(event.get("window_seconds"))
    if seconds is None:
        per_step = finite(event.get("seconds_per_step"))
        steps = _int(event.get("window_steps")) or 1
        seconds = None if per_step is None else per_step * steps
    tokens = finite(event.get("window_tokens"))
    if tokens is None and seconds is not None:
        rate = finite(event.get("tokens_per_second"))
        tokens = None if rate is None else rate * seconds
    if seconds is None or tokens is None or seconds <= 0:
        return None
    return seconds, tokens


def event_records(event: dict) -> EventRecords:
    """What one event (already checked by :func:`check_sequence`) becomes."""
    kind = event.get("event")
    wall = unix_time(event.get("time"))
    step = _int(event.get("step"))
    points: list[tuple[str, int, float, float | None]] = []
    run_fields: dict[str, Any] = {}
    evals: tuple[EvalRecord, ...] = ()
    if kind == "step" and step is not None:
        for key in STEP_METRICS:
            value = finite(event.get(key))
            if value is not None:
                points.append((key, step, value, wall))
        peak = event.get("peak_memory_gb")
        if isinstance(peak, dict):
            for device, gb in peak.items():
                value = finite(gb)
                if value is not None:
                    points.append((f"{PEAK_VRAM_PREFIX}{device}", step, value, wall))
        window = window_figures(event)
        if window is not None:
            points += [
                (WINDOW_SECONDS_KEY, step, window[0], wall),
                (WINDOW_TOKENS_KEY, step, window[1], wall),
            ]
    elif kind == "eval" and step is not None:
        for key in EVAL_METRICS:
            value = finite(event.get(key))
            if value is not None:
                points.append((key, step, value, wall))
    if kind in ("start", "step") and _int(event.get("max_steps")) is not None:
        run_fields["max_steps"] = event["max_steps"]
    if kind == "end":
        if finite(event.get("train_loss")) is not None:
            run_fields["final_loss"] = float(event["train_loss"])
        if finite(event.get("eval_loss")) is not None:
            run_fields["eval_loss"] = float(event["eval_loss"])
    elif kind == "error":
        message = f"{event.get('type') or 'Error'}: {event.get('message') or ''}".strip()
        run_fields["last_error"] = message.splitlines()[0] if message else "Error"
    elif kind == "eval_result" and isinstance(event.get("metrics"), dict):
        evals = (
            EvalRecord(
                step=step if step is not None else 0,
                dataset=str(event.get("dataset") or "eval"),
                metrics=event["metrics"],
                predictions_path=event.get("predictions_path"),
            ),
        )
    kept = KeptEvent(kind, step, event) if kind in KEPT_EVENT_KINDS else None
    return EventRecords(
        seq=event["seq"],
        time=wall if wall is not None else time.time(),
        points=tuple(points),
        run_fields=run_fields,
        kept=kept,
        evals=evals,
    )


def translate(events: Iterable[Any]) -> list[EventRecords]:
    """Runner events (any order) -> records in ``seq`` order. StoreError for an event that is not a
    dict or lacks a positive int ``seq``."""
    return [event_records(event) for event in check_sequence(events)]
