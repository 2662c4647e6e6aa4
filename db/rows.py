"""Plain-Python halves of the store's work, no SQL: runs-table rows -> records, checks of the values
callers pass (names, tags, numbers, JSON), metric point validation and per-batch figures, and series
downsampling. :mod:`db.store` runs the statements around them.
"""

from __future__ import annotations

import gc
import json
import math
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import groupby
from operator import itemgetter
from typing import Any

from db.columns import dataset_name
from db.errors import StoreError, UnstorableValueError
from db.models import runs
from db.records import (
    EvalResult,
    GpuSample,
    MetricPoint,
    MetricStats,
    Run,
    RunEvent,
    RunSummary,
    utc_datetime,
)

NAME_RE = re.compile(r"[A-Za-z0-9._\-+:@]{1,100}")
TAG_RE = re.compile(r"[A-Za-z0-9._\-+:@/]{1,64}")

UPDATABLE_FIELDS = frozenset(
    {
        "name", "notes", "tags", "host", "supervisor_pid", "pgid", "gpu_ids", "output_dir", "log_path",
        "last_error", "exit_code", "config", "model", "encoder", "msl", "batch_size", "per_device_batch",
        "learning_rate", "lora_r", "gpus", "datasets", "max_steps", "executor", "job_id", "job_ids", "job_state",
        "node_list",
    }
)  # fmt: skip
INT_FIELDS = frozenset(
    {"supervisor_pid", "pgid", "exit_code", "msl", "batch_size", "per_device_batch", "lora_r", "gpus", "max_steps"}
)
TEXT_FIELDS = frozenset(
    {"notes", "host", "output_dir", "log_path", "last_error", "model", "encoder", "job_id", "job_state", "node_list"}
)

# Integer columns are INTEGER: 32-bit on PostgreSQL, the narrower of the two databases. One range for
# both, so a run that fits in SQLite fits in PostgreSQL too (and no driver overflow reaches a caller).
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# Unix seconds that a datetime can show (0001-01-02 .. 9999-12-30 in any time zone).
TIME_MIN, TIME_MAX = -62135510400.0, 253402214400.0

# ----------------------------------------------------------------------------------- row conversion


@lru_cache(maxsize=4096)
def json_tuple(text: str | None) -> tuple:
    """A JSON list column as a tuple; cached because thousands of runs share the same few values."""
    if not text or text == "[]":
        return ()
    return tuple(json.loads(text))


# Column positions of the runs table: rows are read as plain tuples (``select(runs)`` keeps this order).
_COL = {column.name: i for i, column in enumerate(runs.columns)}
_RUN_PLAIN = tuple(
    (field, _COL[field])
    for field in (
        "id", "name", "status", "model", "encoder", "msl", "batch_size", "per_device_batch", "learning_rate",
        "lora_r", "gpus", "host", "supervisor_pid", "pgid", "exit_code", "output_dir", "log_path", "last_error",
    )
)  # fmt: skip
_SUMMARY_PLAIN = tuple(
    (field, _COL[field])
    for field in (
        "last_step", "max_steps", "loss", "min_loss", "final_loss", "eval_loss", "accuracy", "seconds_per_step",
        "tokens_per_second", "peak_vram_gb",
    )
)  # fmt: skip
_NEW = object.__new__


def run_from_row(row) -> Run:
    """A Run from a runs-table row (tuple or Row). Filled through ``__dict__``: a frozen dataclass's
    ``__init__`` pays an ``object.__setattr__`` per field, which dominates a 10,000-run listing."""
    c = _COL
    run = _NEW(Run)
    d = run.__dict__
    for field, i in _RUN_PLAIN:
        d[field] = row[i]
    d["gpu_ids"] = json_tuple(row[c["gpu_ids"]])
    d["datasets"] = json_tuple(row[c["datasets"]])
    d["tags"] = json_tuple(row[c["tags"]])
    d["notes"] = row[c["notes"]] or ""
    d["_created"] = row[c["created_at"]]
    d["_started"] = row[c["started_at"]]
    d["_ended"] = row[c["ended_at"]]
    d["events_cursor"] = row[c["events_cursor"]] or 0
    d["_config_json"] = row[c["config_json"]] or "{}"
    d["study_id"] = row[c["study_id"]]
    d["variant"] = row[c["variant"]]
    d["executor"] = row[c["executor"]] or "local"
    d["job_id"] = row[c["job_id"]]
    d["job_ids"] = json_tuple(row[c["job_ids"]])
    d["job_state"] = row[c["job_state"]]
    d["node_list"] = row[c["node_list"]]
    return run


def without_gc(build):
    """Run ``build()`` with the cyclic garbage collector paused. Building 20,000 records next to a list
    of 10,000 fetched rows otherwise triggers collections that rescan every one of them (half the cost
    of a large listing); these records hold no reference cycles."""
    if not gc.isenabled():
        return build()
    gc.disable()
    try:
        return build()
    finally:
        gc.enable()


def summary_from_row(row) -> RunSummary:
    summary = _NEW(RunSummary)
    d = summary.__dict__
    d["run"] = run_from_row(row)
    for field, i in _SUMMARY_PLAIN:
        d[field] = row[i]
    d["points"] = row[_COL["points"]] or 0
    d["_updated"] = row[_COL["updated_at"]]
    return summary


def stats_from_row(row) -> MetricStats:
    return MetricStats(
        key=row.key, count=row.count, latest=row.latest, latest_step=row.latest_step, min=row.min, max=row.max
    )


def gpu_from_row(row) -> GpuSample:
    return GpuSample(
        gpu_index=row.gpu_index,
        gpu_name=row.gpu_name,
        time=shown_time(row.time),
        memory_used_mb=row.memory_used_mb,
        memory_total_mb=row.memory_total_mb,
        utilization_pct=row.utilization_pct,
        power_w=row.power_w,
        run_id=row.run_id,
    )


def shown_time(seconds: float | None) -> float | None:
    """A stored time clamped to what a datetime can show: rows written before the store checked times
    may hold anything, and reading them back must not fail."""
    if seconds is None or TIME_MIN <= seconds <= TIME_MAX:
        return seconds
    return TIME_MIN if seconds < 0 else TIME_MAX  # NaN too


def event_from_row(row) -> RunEvent:
    return RunEvent(
        run_id=row.run_id, seq=row.seq, time=shown_time(row.time), kind=row.kind, step=row.step,
        data=json.loads(row.data_json),
    )


def eval_from_row(row) -> EvalResult:
    return EvalResult(
        run_id=row.run_id,
        step=row.step,
        dataset=row.dataset,
        metric=row.metric,
        value=row.value,
        predictions_path=row.predictions_path,
        created_at=utc_datetime(row.created_at),
    )


# ------------------------------------------------------------------------------------ value checks


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name.isdigit():
        raise StoreError(
            f"run name {name!r} must be 1-100 letters, digits or ._-+:@ and not only digits: choose another"
        )
    return name


def check_tags(tags: Any) -> list[str]:
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for tag in tags or ():
        if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
            raise StoreError(f"tag {tag!r} must be 1-64 letters, digits or ._-+:@/: rename it")
        if tag not in out:
            out.append(tag)
    return out


def shown(value: Any) -> str:
    """A value for a one-line message (a 10**400 does not fill the screen)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(text)} chars)"


def in_int_range(field: str, value: int) -> int:
    """``value`` if an integer column can hold it, else UnstorableValueError naming field and value."""
    if not INT_MIN <= value <= INT_MAX:
        raise UnstorableValueError(
            f"{field} {shown(value)} is beyond what the store holds ({INT_MIN}..{INT_MAX})", field, value
        )
    return value


def check_int(field: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return in_int_range(field, int(value))
        if isinstance(value, float):
            raise UnstorableValueError(f"{field} must be a finite integer, got {value!r}", field, value)
        raise StoreError(f"{field} must be an integer, got {shown(value)}")
    return in_int_range(field, value)


def check_float(field: str, value: Any) -> float | None:
    """A finite float for a number column (NaN and infinities cannot be compared, summed or shown)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise StoreError(f"{field} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        raise UnstorableValueError(
            f"{field} {shown(value)} is beyond what the store holds (a 64-bit float)", field, value
        ) from None
    except (TypeError, ValueError):
        raise StoreError(f"{field} must be a number, got {shown(value)}") from None
    if not math.isfinite(number):
        raise UnstorableValueError(f"{field} must be a finite number, got {number!r}", field, value)
    return number


def check_time(field: str, value: Any) -> float | None:
    """Unix seconds a datetime can show (a forged 1e308 would break every listing that shows it)."""
    number = check_float(field, value)
    if number is not None and not TIME_MIN <= number <= TIME_MAX:
        raise UnstorableValueError(f"{field} {number!r} is not a Unix time the store can show", field, value)
    return number


def dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} must be JSON-serialisable data ({exc}): pass plain values") from None


def column_values(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate user-facing field values and convert them to column values."""
    values: dict[str, Any] = {}
    for field, value in fields.items():
        if field == "name":
            values["name"] = check_name(value)
        elif field == "tags":
            values["tags"] = dumps(check_tags(value), "tags")
        elif field == "gpu_ids":
            ids = [check_int("gpu_ids", v) for v in (value or ())]
            values["gpu_ids"] = dumps(ids, "gpu_ids")
        elif field == "datasets":
            if isinstance(value, str):
                value = [value]
            names = [n for n in map(dataset_name, value or ()) if n]
            values["datasets"] = dumps(names, "datasets")
        elif field == "executor":
            if value not in ("local", "slurm"):
                raise StoreError(f"executor must be local or slurm, got {value!r}")
            values["executor"] = value
        elif field == "job_ids":
            values["job_ids"] = dumps([str(v) for v in (value or ())], "job_ids")
        elif field == "config":
            if not isinstance(value, dict):
                raise StoreError(f"config must be a dict, got {type(value).__name__}")
            values["config_json"] = dumps(value, "config")
        elif field in INT_FIELDS:
            values[field] = check_int(field, value)
        elif field == "learning_rate":
            values[field] = check_float(field, value)
        elif field in TEXT_FIELDS:
            values[field] = None if value is None else str(value)
            if field == "notes" and value is None:
                values[field] = ""
        else:  # pragma: no cover - callers pass only known fields
            raise StoreError(f"unknown run field {field!r}")
    return values


def downsample(points: Sequence[tuple], max_points: int) -> list[tuple]:
    """At most ``max_points`` of ``points`` (tuples whose [1] is the value, in step order): the first and
    last points always, and per bucket of consecutive points its min and its max, in step order. Spikes
    survive downsampling, which plain striding would drop. Per-bucket work is C-level min/max/index."""
    n = len(points)
    if n <= max_points:
        return list(points)
    if max_points < 4:
        return [points[0], points[-1]][:max_points]
    values = list(map(itemgetter(1), points))
    buckets = (max_points - 2) // 2
    size = (n - 2) / buckets
    out = [points[0]]
    for b in range(buckets):
        start, end = 1 + int(b * size), 1 + int((b + 1) * size)
        if start >= end:
            continue
        chunk = values[start:end]
        low = start + chunk.index(min(chunk))
        high = start + chunk.index(max(chunk))
        if low == high:
            out.append(points[low])
        elif low < high:
            out += (points[low], points[high])
        else:
            out += (points[high], points[low])
    out.append(points[-1])
    return out


def slow_point(p: Any) -> tuple | None:
    """Validate one point given in any accepted form; None for a NaN/inf value (a diverged loss)."""
    if type(p) is MetricPoint:
        key, step, value, wall = p.key, p.step, p.value, p.wall_time
    else:
        try:
            if len(p) == 4:
                key, step, value, wall = p
            else:
                (key, step, value), wall = p, None
        except (TypeError, ValueError):
            raise StoreError(f"a metric point is (key, step, value[, wall_time]), got {p!r}") from None
    if type(key) is not str:
        raise StoreError(f"metric key must be a string, got {key!r}")
    if type(step) is not int:
        raise StoreError(f"metric step must be an integer, got {step!r} for {key}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StoreError(f"metric value must be a number, got {value!r} for {key} at step {step}")
    if wall is not None and (isinstance(wall, bool) or not isinstance(wall, int | float)):
        raise StoreError(f"metric wall_time must be Unix seconds or None, got {wall!r} for {key}")
    if not INT_MIN <= step <= INT_MAX:
        raise UnstorableValueError(
            f"step {shown(step)} of metric {key} is beyond what the store holds ({INT_MIN}..{INT_MAX})", "step", step
        )
    try:
        value = float(value)
    except OverflowError:
        raise UnstorableValueError(
            f"metric {key} at step {step}: {shown(value)} is beyond what the store holds (a 64-bit float)",
            key, value,
        ) from None
    if not math.isfinite(value):
        return None
    if wall is not None and not TIME_MIN <= wall <= TIME_MAX:  # also NaN
        raise UnstorableValueError(f"wall_time {wall!r} of metric {key} is not a Unix time", "wall_time", wall)
    return (key, step, value, None if wall is None else float(wall))


def point_tuples(points: Iterable[MetricPoint | tuple]) -> list[tuple[str, int, float, float | None]]:
    """Validated (key, step, value, wall_time) tuples; NaN/inf values are dropped. Well-typed 4-tuples
    pass through without a copy (the fast path of a 100k points/s ingest); keys are checked per key by
    :class:`PointBatch`."""
    rows = []
    append = rows.append
    for p in points:
        if type(p) is tuple and len(p) == 4:
            key, step, value, wall = p
            # value - value is 0.0 for finite floats and NaN for NaN/inf.
            if (
                type(key) is str and type(step) is int and type(value) is float and value - value == 0.0
                and INT_MIN <= step <= INT_MAX and (wall is None or (type(wall) is float and TIME_MIN <= wall <= TIME_MAX))
            ):  # fmt: skip
                append(p)
                continue
        row = slow_point(p)
        if row is not None:
            append(row)
    return rows


_KEY, _STEP, _VALUE = itemgetter(0), itemgetter(1), itemgetter(2)


class PointBatch:
    """A batch of validated points and its per-key figures, computed before the write lock is taken
    (C-level sort, min and max; no per-point Python work). Counts assume no point is stored already;
    the insert's row count tells when that was wrong, and the store then recounts those keys."""

    def __init__(self, run_id: int, rows: list[tuple], ordered_keys: frozenset[str] = frozenset()) -> None:
        self.run_id = run_id
        self.rows = rows
        self.stats: dict[str, tuple] = {}  # key -> (count, latest, top step, min, max, total)
        self.ordered: dict[str, list[tuple[float, int]]] = {}  # key in ordered_keys -> sorted (value, step)
        for key, group in groupby(sorted(rows, key=_KEY), _KEY):  # stable: a key's points keep their order
            if not key or len(key) > 100:
                raise StoreError(f"metric key must be 1-100 characters, got {key!r}")
            points = list(group)
            steps = list(map(_STEP, points))
            values = list(map(_VALUE, points))
            top = max(steps)
            # The first point of a repeated step is the one stored (ON CONFLICT DO NOTHING).
            self.stats[key] = (len(points), values[steps.index(top)], top, min(values), max(values), sum(values))
            if key in ordered_keys:
                self.ordered[key] = sorted(zip(values, steps, strict=True))
        self.top_step = max((s[2] for s in self.stats.values()), default=0)
        self.params = [(run_id, k, s, v, w) for k, s, v, w in rows]  # driver rows, in POINT_COLUMNS order


def finite(value: Any) -> float | None:
    """A float for a JSON number that is finite (NaN/inf losses are dropped, not stored)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        value = float(value)
    except OverflowError:  # an int beyond any float: as unusable as inf
        return None
    return value if math.isfinite(value) else None


def unix_time(value: Any) -> float | None:
    """A JSON number that is a Unix time a datetime can show, else None (a forged or garbled time is
    treated as a missing one)."""
    number = finite(value)
    return number if number is not None and TIME_MIN <= number <= TIME_MAX else None


def gpu_row(sample: GpuSample) -> dict[str, Any]:
    """A gpu_samples row from a GpuSample, each number checked to fit its column."""
    if not isinstance(sample, GpuSample):
        raise StoreError(f"append_gpu_samples takes GpuSample records, got {type(sample).__name__}")
    time = check_time("GPU sample time", sample.time)
    if time is None:
        raise StoreError("a GPU sample needs its time (Unix seconds)")
    return {
        "gpu_index": check_int("gpu_index", sample.gpu_index),
        "gpu_name": str(sample.gpu_name)[:255],
        "time": time,
        "memory_used_mb": check_float("memory_used_mb", sample.memory_used_mb),
        "memory_total_mb": check_float("memory_total_mb", sample.memory_total_mb),
        "utilization_pct": check_float("utilization_pct", sample.utilization_pct),
        "power_w": check_float("power_w", sample.power_w),
    }


def record_run_values(run_fields: dict[str, Any]) -> dict[str, Any]:
    """Column values of the run fields an input record sets (``RECORD_RUN_FIELDS``), checked."""
    return {
        field: check_int(field, value) if field == "max_steps"
        else (None if value is None else str(value)) if field == "last_error"
        else check_float(field, value)
        for field, value in run_fields.items()
    }  # fmt: skip


def check_record(record) -> None:
    """Raise UnstorableValueError (with ``seq`` set) when an input record holds a value the store cannot
    hold: checked before anything is written, so the records before it can still be stored."""
    try:
        in_int_range("seq", record.seq)
        check_time("event time", record.time)
        point_tuples(record.points)
        if record.kept is not None and record.kept.step is not None:
            check_int("step", record.kept.step)
        for item in record.evals:
            check_int("step", item.step)
        record_run_values(record.run_fields)
    except UnstorableValueError as exc:
        raise UnstorableValueError(f"event {shown(record.seq)}: {exc}", exc.field, exc.value, record.seq) from None
