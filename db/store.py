"""The run store: the one API through which arctui reads and writes runs (see ``docs/store.md``).

    store = RunStore.open()                      # $ARCTUI_DB or sqlite:///$ARCTUI_HOME/arctui.db
    run = store.create_run(config, name="smollm-2048", tags=["baseline"])
    store.set_status(run.id, "running")
    store.ingest_events(run.id, events)          # runner events, exactly once
    store.list_runs("model~SmolLM and msl>=2048", sort="s_per_step", limit=20)

Every public method runs in its own transaction through :func:`db.engine.transaction`,
which commits or rolls back and turns driver errors into :class:`db.errors.StoreError`. Private helpers
take the connection as their first argument. Public methods return the frozen records of
:mod:`db.records`; the ORM tables of :mod:`db.models` never leave this module.
"""

from __future__ import annotations

import difflib
import gc
import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, inspect, select, update
from sqlalchemy.engine import URL, Engine

from db import query
from db.columns import columns_from_config, dataset_name
from db.engine import (
    check_sqlite_path,
    ensure_wal,
    make_engine,
    parse_url,
    safe_url,
    sqlite_path,
    transaction,
    translate_errors,
)
from db.errors import IllegalTransitionError, StoreError, UnknownRunError
from db.models import (
    HEAD_REVISION,
    KNOWN_REVISIONS,
    eval_results,
    gpu_samples,
    metric_points,
    metric_stats,
    run_events,
    runs,
)
from db.records import (
    ACTIVE_STATUSES,
    LEGAL_TRANSITIONS,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    Comparison,
    EvalResult,
    GpuSample,
    MetricPoint,
    MetricStats,
    Run,
    RunDetail,
    RunEvent,
    RunSummary,
    SeriesPoint,
    utc_datetime,
)

__all__ = [
    "ACTIVE_STATUSES",
    "HEAD_REVISION",
    "RUN_STATUSES",
    "TERMINAL_STATUSES",
    "Comparison",
    "EvalResult",
    "GpuSample",
    "MetricPoint",
    "MetricStats",
    "Run",
    "RunDetail",
    "RunEvent",
    "RunStore",
    "RunSummary",
    "SeriesPoint",
    "database_url",
    "schema_revision",
    "upgrade",
]

NAME_RE = re.compile(r"[A-Za-z0-9._\-+:@]{1,100}")
TAG_RE = re.compile(r"[A-Za-z0-9._\-+:@/]{1,64}")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Fields of a `step` event that become metric points (peak_memory_gb is a dict, handled apart).
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
KEPT_EVENT_KINDS = frozenset({"start", "eval", "checkpoint", "end", "error", "eval_result"})
PEAK_MEMORY_PREFIX = "peak_memory_gb/"
# The summary's seconds_per_step is the median of this many latest points (all of them for short runs).
MEDIAN_WINDOW = 101

UPDATABLE_FIELDS = frozenset(
    {
        "name", "notes", "tags", "host", "supervisor_pid", "pgid", "gpu_ids", "output_dir", "log_path",
        "last_error", "exit_code", "config", "model", "encoder", "msl", "batch_size", "per_device_batch",
        "learning_rate", "lora_r", "gpus", "datasets", "max_steps",
    }
)  # fmt: skip
INT_FIELDS = frozenset(
    {"supervisor_pid", "pgid", "exit_code", "msl", "batch_size", "per_device_batch", "lora_r", "gpus", "max_steps"}
)
TEXT_FIELDS = frozenset({"notes", "host", "output_dir", "log_path", "last_error", "model", "encoder"})

# ------------------------------------------------------------------------------ opening and schema


def _resolve_url(url: str | None) -> tuple[URL, bool]:
    """(parsed URL, whether it is the default one)."""
    from runner.paths import default_db_url

    is_default = url is None
    return parse_url(default_db_url() if url is None else url), is_default


def database_url(url: str | None = None) -> str:
    """The URL the store opens for ``url`` (None: the default), password hidden: for messages."""
    return safe_url(_resolve_url(url)[0])


def _engine_for(url: str | None) -> tuple[Engine, URL]:
    parsed, is_default = _resolve_url(url)
    path = sqlite_path(parsed) if parsed.get_backend_name() == "sqlite" else None
    if path is not None:
        check_sqlite_path(path, create_parent=is_default)
    return make_engine(parsed), parsed


def _read_revision(connection: Connection) -> tuple[str | None, list[str]]:
    """(alembic revision or None, table names) of the database behind ``connection``."""
    tables = inspect(connection).get_table_names()
    if "alembic_version" not in tables:
        return None, tables
    rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    return (rows[0][0] if rows else None), tables


def _schema_problem(revision: str | None, tables: list[str], url: URL) -> str | None:
    """Why this database cannot be used or migrated as it is (None when it can be)."""
    if revision is None:
        others = [t for t in tables if t != "alembic_version"]
        if others:
            shown = ", ".join(sorted(others)[:5])
            return (
                f"{safe_url(url)} holds other tables ({shown}) but no arctui schema: "
                "choose another --db (an empty database or a new file)"
            )
        return None
    if revision not in KNOWN_REVISIONS:
        return (
            f"database {safe_url(url)} is at revision {revision}, newer than this arctui knows "
            f"({HEAD_REVISION}): upgrade arctui"
        )
    return None


def _alembic_config(connection: Connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _migrate(engine: Engine, url: URL, target: str = "heads") -> tuple[str | None, str]:
    """Run the Alembic migrations up to ``target`` under a write lock; (from, to) revisions."""
    from alembic import command

    with translate_errors(url), engine.connect() as connection:
        connection.execution_options(arctui_write=True)
        is_sqlite = engine.dialect.name == "sqlite"
        if is_sqlite:
            # Batch migrations rebuild tables (copy, drop, rename); with foreign keys on, dropping `runs`
            # would cascade-delete every metric. The pragma only works outside a transaction.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
        try:
            with connection.begin():
                if engine.dialect.name == "postgresql":
                    # Two processes opening a new database at once: one migrates, the other waits.
                    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7401553)")
                before, tables = _read_revision(connection)
                problem = _schema_problem(before, tables, url)
                if problem:
                    raise StoreError(problem)
                if before != (HEAD_REVISION if target == "heads" else target):
                    command.upgrade(_alembic_config(connection), target)
                if is_sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise StoreError(
                            f"migrating {safe_url(url)} left {len(broken)} broken references; "
                            "nothing was changed: report this bug"
                        )
                after, _ = _read_revision(connection)
        finally:
            if is_sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys = ON")
    return before, after or HEAD_REVISION


def schema_revision(url: str | None = None) -> str | None:
    """The schema revision of the database at ``url`` without changing it (None: no arctui schema yet).
    A SQLite file that does not exist is not created."""
    parsed, is_default = _resolve_url(url)
    path = sqlite_path(parsed) if parsed.get_backend_name() == "sqlite" else None
    if path is not None and not path.exists():
        return None
    engine, parsed = _engine_for(url)
    try:
        with translate_errors(parsed), engine.connect() as connection:
            revision, tables = _read_revision(connection)
        problem = _schema_problem(revision, tables, parsed)
        if problem:
            raise StoreError(problem)
        return revision
    finally:
        engine.dispose()


def upgrade(url: str | None = None, revision: str = "heads") -> tuple[str | None, str]:
    """Migrate the database at ``url`` (created if new) to ``revision``; returns (from, to)."""
    engine, parsed = _engine_for(url)
    try:
        moved = _migrate(engine, parsed, revision)
        with translate_errors(parsed):
            ensure_wal(engine)
        return moved
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------------- row conversion


@lru_cache(maxsize=4096)
def _json_tuple(text: str | None) -> tuple:
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


def _run_from_row(row) -> Run:
    """A Run from a runs-table row (tuple or Row). Filled through ``__dict__``: a frozen dataclass's
    ``__init__`` pays an ``object.__setattr__`` per field, which dominates a 10,000-run listing."""
    c = _COL
    run = _NEW(Run)
    d = run.__dict__
    for field, i in _RUN_PLAIN:
        d[field] = row[i]
    d["gpu_ids"] = _json_tuple(row[c["gpu_ids"]])
    d["datasets"] = _json_tuple(row[c["datasets"]])
    d["tags"] = _json_tuple(row[c["tags"]])
    d["notes"] = row[c["notes"]] or ""
    d["_created"] = row[c["created_at"]]
    d["_started"] = row[c["started_at"]]
    d["_ended"] = row[c["ended_at"]]
    d["events_cursor"] = row[c["events_cursor"]] or 0
    d["_config_json"] = row[c["config_json"]] or "{}"
    return run


def _without_gc(build):
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


def _summary_from_row(row) -> RunSummary:
    summary = _NEW(RunSummary)
    d = summary.__dict__
    d["run"] = _run_from_row(row)
    for field, i in _SUMMARY_PLAIN:
        d[field] = row[i]
    d["points"] = row[_COL["points"]] or 0
    d["_updated"] = row[_COL["updated_at"]]
    return summary


def _stats_from_row(row) -> MetricStats:
    return MetricStats(
        key=row.key, count=row.count, latest=row.latest, latest_step=row.latest_step, min=row.min, max=row.max
    )


def _gpu_from_row(row) -> GpuSample:
    return GpuSample(
        gpu_index=row.gpu_index,
        gpu_name=row.gpu_name,
        time=row.time,
        memory_used_mb=row.memory_used_mb,
        memory_total_mb=row.memory_total_mb,
        utilization_pct=row.utilization_pct,
        power_w=row.power_w,
        run_id=row.run_id,
    )


def _event_from_row(row) -> RunEvent:
    return RunEvent(
        run_id=row.run_id, seq=row.seq, time=row.time, kind=row.kind, step=row.step, data=json.loads(row.data_json)
    )


def _eval_from_row(row) -> EvalResult:
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


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name.isdigit():
        raise StoreError(
            f"run name {name!r} must be 1-100 letters, digits or ._-+:@ and not only digits: choose another"
        )
    return name


def _check_tags(tags: Any) -> list[str]:
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for tag in tags or ():
        if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
            raise StoreError(f"tag {tag!r} must be 1-64 letters, digits or ._-+:@/: rename it")
        if tag not in out:
            out.append(tag)
    return out


def _check_int(field: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise StoreError(f"{field} must be an integer, got {value!r}")
    return value


def _check_float(field: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise StoreError(f"{field} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise StoreError(f"{field} must be a number, got {value!r}") from None


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} must be JSON-serialisable data ({exc}): pass plain values") from None


def _column_values(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate user-facing field values and convert them to column values."""
    values: dict[str, Any] = {}
    for field, value in fields.items():
        if field == "name":
            values["name"] = _check_name(value)
        elif field == "tags":
            values["tags"] = _dumps(_check_tags(value), "tags")
        elif field == "gpu_ids":
            ids = [_check_int("gpu_ids", v) for v in (value or ())]
            values["gpu_ids"] = _dumps(ids, "gpu_ids")
        elif field == "datasets":
            if isinstance(value, str):
                value = [value]
            names = [n for n in map(dataset_name, value or ()) if n]
            values["datasets"] = _dumps(names, "datasets")
        elif field == "config":
            if not isinstance(value, dict):
                raise StoreError(f"config must be a dict, got {type(value).__name__}")
            values["config_json"] = _dumps(value, "config")
        elif field in INT_FIELDS:
            values[field] = _check_int(field, value)
        elif field == "learning_rate":
            values[field] = _check_float(field, value)
        elif field in TEXT_FIELDS:
            values[field] = None if value is None else str(value)
            if field == "notes" and value is None:
                values[field] = ""
        else:  # pragma: no cover - callers pass only known fields
            raise StoreError(f"unknown run field {field!r}")
    return values


def _median(sorted_values: Sequence[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


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


def _slow_point(p: Any) -> tuple | None:
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
    value = float(value)
    if not math.isfinite(value):
        return None
    return (key, step, value, None if wall is None else float(wall))


def _point_tuples(points: Iterable[MetricPoint | tuple]) -> list[tuple[str, int, float, float | None]]:
    """Validated (key, step, value, wall_time) tuples; NaN/inf values are dropped. Well-typed 4-tuples
    pass through without a copy (the fast path of a 100k points/s ingest); keys are checked per key by
    :class:`_PointBatch`."""
    rows = []
    append = rows.append
    for p in points:
        if type(p) is tuple and len(p) == 4:
            key, step, value, wall = p
            # value - value is 0.0 for finite floats and NaN for NaN/inf.
            if (
                type(key) is str and type(step) is int and type(value) is float and value - value == 0.0
                and (wall is None or type(wall) is float)
            ):  # fmt: skip
                append(p)
                continue
        row = _slow_point(p)
        if row is not None:
            append(row)
    return rows


_KEY, _STEP, _VALUE = itemgetter(0), itemgetter(1), itemgetter(2)


class _PointBatch:
    """A batch of validated points and its per-key figures, computed before the write lock is taken
    (C-level sort, min and max; no per-point Python work). Counts assume no point is stored already;
    the insert's row count tells when that was wrong, and the store then recounts those keys."""

    def __init__(self, run_id: int, rows: list[tuple]) -> None:
        self.run_id = run_id
        self.rows = rows
        self.stats: dict[str, tuple] = {}  # key -> (count, latest, top step, min, max)
        for key, group in groupby(sorted(rows, key=_KEY), _KEY):  # stable: a key's points keep their order
            if not key or len(key) > 100:
                raise StoreError(f"metric key must be 1-100 characters, got {key!r}")
            points = list(group)
            steps = list(map(_STEP, points))
            values = list(map(_VALUE, points))
            top = max(steps)
            # The first point of a repeated step is the one stored (ON CONFLICT DO NOTHING).
            self.stats[key] = (len(points), values[steps.index(top)], top, min(values), max(values))
        self.top_step = max((s[2] for s in self.stats.values()), default=0)
        self.params = [(run_id, k, s, v, w) for k, s, v, w in rows]  # driver rows, in POINT_COLUMNS order


def _finite(value: Any) -> float | None:
    """A float for a JSON number that is finite (NaN/inf losses are dropped, not stored)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class _Compiled:
    """A statement compiled once for the store's dialect and run through ``exec_driver_sql``: the hot
    paths (ingest, series) skip SQLAlchemy's per-call statement building, cache-key and per-row
    parameter processing. The SQL is still generated by SQLAlchemy from the table metadata, and every
    value is a bound parameter."""

    def __init__(self, statement, dialect, column_keys: list[str] | None = None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        self.order = tuple(compiled.positiontup or ()) if self.positional else ()
        self.defaults = dict(compiled.params)  # e.g. LIMIT values SQLAlchemy binds itself

    def params(self, values: dict[str, Any]) -> tuple | dict:
        merged = {**self.defaults, **values}
        return tuple(merged[name] for name in self.order) if self.positional else merged

    def execute(self, connection: Connection, values: dict[str, Any]):
        return connection.exec_driver_sql(self.sql, self.params(values))

    def execute_many(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        connection.exec_driver_sql(self.sql, [self.params(v) for v in rows])


STAT_COLUMNS = ("count", "latest", "latest_step", "min", "max")
POINT_COLUMNS = ("run_id", "key", "step", "value", "wall_time")


class _HotStatements:
    """The statements of the ingest and series paths, compiled once per store."""

    def __init__(self, dialect, insert_ignore) -> None:
        b = bindparam
        self.lock_run = _Compiled(
            select(runs.c.id, runs.c.last_step, runs.c.points, runs.c.peak_vram_gb)
            .where(runs.c.id == b("run_id"))
            .with_for_update(),
            dialect,
        )
        self.stats = _Compiled(
            select(metric_stats.c.key, *(metric_stats.c[c] for c in STAT_COLUMNS)).where(
                metric_stats.c.run_id == b("run_id")
            ),
            dialect,
        )
        points_of_key = (metric_points.c.run_id == b("run_id"), metric_points.c.key == b("key"))
        self.key_stats = _Compiled(
            select(
                func.count().label("count"),
                func.max(metric_points.c.step).label("top"),
                func.min(metric_points.c.value).label("low"),
                func.max(metric_points.c.value).label("high"),
            ).where(*points_of_key),
            dialect,
        )
        self.value_at = _Compiled(
            select(metric_points.c.value).where(*points_of_key, metric_points.c.step == b("step")), dialect
        )
        self.insert_points = _Compiled(insert_ignore(metric_points), dialect, column_keys=list(POINT_COLUMNS))
        # With positional parameters in column order, the batch's tuples go to the driver as they are.
        self.points_as_tuples = self.insert_points.positional and self.insert_points.order == POINT_COLUMNS
        self.insert_stats = _Compiled(insert(metric_stats), dialect, column_keys=["run_id", "key", *STAT_COLUMNS])
        self.update_stats = _Compiled(
            update(metric_stats)
            .where(metric_stats.c.run_id == b("b_run_id"), metric_stats.c.key == b("b_key"))
            .values({c: b(f"v_{c}") for c in STAT_COLUMNS}),
            dialect,
        )
        self.recent_values = _Compiled(
            select(metric_points.c.value)
            .where(metric_points.c.run_id == b("run_id"), metric_points.c.key == b("key"))
            .order_by(metric_points.c.step.desc())
            .limit(MEDIAN_WINDOW),
            dialect,
        )
        keep = {  # a NULL parameter keeps the stored value
            c: func.coalesce(b(f"v_{c}", type_=runs.c[c].type), runs.c[c])
            for c in ("loss", "min_loss", "eval_loss", "tokens_per_second", "seconds_per_step")
        }
        self.update_summary = _Compiled(
            update(runs)
            .where(runs.c.id == b("b_id"))
            .values(
                points=b("v_points"),
                updated_at=b("v_updated_at"),
                last_step=b("v_last_step"),
                peak_vram_gb=b("v_peak_vram_gb"),
                **keep,
            ),
            dialect,
        )
        self.series = _Compiled(
            select(metric_points.c.step, metric_points.c.value, metric_points.c.wall_time)
            .where(metric_points.c.run_id == b("run_id"), metric_points.c.key == b("key"))
            .order_by(metric_points.c.step),
            dialect,
        )


# -------------------------------------------------------------------------------------------- store


class RunStore:
    """Runs, their metrics, GPU samples, evaluations and events, in SQLite or PostgreSQL."""

    def __init__(self, engine: Engine, url: URL) -> None:
        self._engine = engine
        self._url = url
        self._dialect = engine.dialect.name
        self._hot = _HotStatements(engine.dialect, self._insert_ignore)

    # ---------------------------------------------------------------------------------- lifecycle

    @classmethod
    def open(cls, url: str | None = None, *, upgrade: bool = False) -> RunStore:
        """Open (and, when new, create) the store at ``url`` (None: ``runner.paths.default_db_url()``).
        An out-of-date schema is refused with the command that upgrades it, unless ``upgrade``."""
        engine, parsed = _engine_for(url)
        try:
            with translate_errors(parsed), engine.connect() as connection:
                revision, tables = _read_revision(connection)
                connection.rollback()
            problem = _schema_problem(revision, tables, parsed)
            if problem:
                raise StoreError(problem)
            if revision != HEAD_REVISION:
                if revision is not None and not upgrade:
                    raise StoreError(
                        f"database {safe_url(parsed)} is at revision {revision}, this arctui needs "
                        f"{HEAD_REVISION}: run `arctui db upgrade`"
                    )
                _migrate(engine, parsed)
            with translate_errors(parsed):
                ensure_wal(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, parsed)

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The database URL with any password hidden."""
        return safe_url(self._url)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._dialect

    def _transaction(self, *, write: bool = False):
        return transaction(self._engine, self._url, write=write)

    def _insert_ignore(self, table):
        """INSERT .. ON CONFLICT DO NOTHING for this dialect."""
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        return dialect_insert(table).on_conflict_do_nothing()

    def _upsert(self, table, index_elements: list[str], update_columns: list[str]):
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        stmt = dialect_insert(table)
        return stmt.on_conflict_do_update(
            index_elements=index_elements, set_={c: stmt.excluded[c] for c in update_columns}
        )

    # ----------------------------------------------------------------------------------- run refs

    def _run_id(self, connection: Connection, ref: int | str, *, lock: bool = False) -> int:
        """The id of run ``ref`` (id, digit string or name); ``lock`` holds the row until commit
        (PostgreSQL row lock; SQLite write sessions already hold the database write lock)."""
        if isinstance(ref, bool) or not isinstance(ref, int | str):
            raise UnknownRunError(f"run reference must be an id or a name, got {ref!r}")
        if isinstance(ref, str) and ref.strip().isdigit():
            ref = int(ref.strip())
        stmt = select(runs.c.id)
        stmt = stmt.where(runs.c.id == ref) if isinstance(ref, int) else stmt.where(runs.c.name == ref)
        if lock:
            stmt = stmt.with_for_update()
        found = connection.execute(stmt).scalar()
        if found is None:
            raise self._unknown(connection, ref)
        return found

    def _unknown(self, connection: Connection, ref: int | str) -> UnknownRunError:
        if isinstance(ref, int):
            return UnknownRunError(f"no run with id {ref}: list runs with `arctui runs`")
        names = connection.execute(select(runs.c.name).order_by(runs.c.id.desc()).limit(5000)).scalars().all()
        close = difflib.get_close_matches(ref, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return UnknownRunError(f"no run named '{ref}'{hint}: list runs with `arctui runs`")

    def _run_row(self, connection: Connection, run_id: int):
        return connection.execute(select(runs).where(runs.c.id == run_id)).one()

    # -------------------------------------------------------------------------------------- runs

    def create_run(
        self,
        config: dict,
        *,
        name: str | None = None,
        status: str = "queued",
        tags: Iterable[str] = (),
        notes: str = "",
        host: str | None = None,
        output_dir: str | None = None,
        log_path: str | None = None,
        model: str | None = None,
        encoder: str | None = None,
        msl: int | None = None,
        batch_size: int | None = None,
        per_device_batch: int | None = None,
        learning_rate: float | None = None,
        lora_r: int | None = None,
        gpus: int | None = None,
        datasets: Iterable[str] | None = None,
    ) -> Run:
        """Create a run (queued by default). Filter columns not given come from the config."""
        if not isinstance(config, dict):
            raise StoreError(f"config must be a dict, got {type(config).__name__}")
        if status not in ("queued", "running"):
            raise StoreError(f"a new run starts queued or running, not {status!r}")
        fields: dict[str, Any] = columns_from_config(config)
        explicit = {
            "model": model, "encoder": encoder, "msl": msl, "batch_size": batch_size,
            "per_device_batch": per_device_batch, "learning_rate": learning_rate, "lora_r": lora_r,
            "gpus": gpus, "datasets": datasets,
        }  # fmt: skip
        fields.update({k: v for k, v in explicit.items() if v is not None})
        fields.update(tags=list(tags or ()), notes=notes, host=host, output_dir=output_dir, log_path=log_path)
        fields["config"] = config
        values = _column_values(fields)
        if name is not None:
            values["name"] = _check_name(name)
        now = time.time()
        values.update(status=status, created_at=now, points=0, events_cursor=0, gpu_ids="[]")
        if status == "running":
            values["started_at"] = now
        with self._transaction(write=True) as connection:
            if name is not None:
                self._refuse_taken_name(connection, name)
            else:
                values["name"] = f"~new-{time.time_ns()}"  # replaced by run-<id> below, same transaction
            run_id = connection.execute(insert(runs).values(**values)).inserted_primary_key[0]
            if name is None:
                auto, n = f"run-{run_id}", 1
                while connection.execute(select(runs.c.id).where(runs.c.name == auto)).first():
                    n += 1
                    auto = f"run-{run_id}-{n}"
                connection.execute(update(runs).where(runs.c.id == run_id).values(name=auto))
            return _run_from_row(self._run_row(connection, run_id))

    def _refuse_taken_name(self, connection: Connection, name: str, run_id: int | None = None) -> None:
        taken = connection.execute(select(runs.c.id).where(runs.c.name == name)).scalar()
        if taken is not None and taken != run_id:
            raise StoreError(f"a run named '{name}' already exists (id {taken}): choose another name")

    def get_run(self, ref: int | str) -> Run:
        """The run with this id or name (UnknownRunError with a did-you-mean otherwise)."""
        with self._transaction() as connection:
            return _run_from_row(self._run_row(connection, self._run_id(connection, ref)))

    def get_summary(self, ref: int | str) -> RunSummary:
        with self._transaction() as connection:
            return _summary_from_row(self._run_row(connection, self._run_id(connection, ref)))

    def run_detail(self, ref: int | str, events: int = 20) -> RunDetail:
        """Summary, per-key statistics, recent events, checkpoints, evaluations and latest GPU readings."""
        with self._transaction() as connection:
            run_id = self._run_id(connection, ref)
            summary = _summary_from_row(self._run_row(connection, run_id))
            stats = self._metric_stats(connection, run_id)
            recent = self._recent_events(connection, run_id, events, None) if events > 0 else []
            checkpoints = self._recent_events(connection, run_id, None, ["checkpoint"])[::-1]
            evals = self._eval_results(connection, run_id)
            gpu = self._latest_gpu_samples(connection, run_id)
        return RunDetail(summary, stats, recent, checkpoints, evals, gpu)

    def update_run(self, ref: int | str, **fields: Any) -> Run:
        """Change bookkeeping or descriptive fields of a run (never its status: see set_status)."""
        if "status" in fields:
            raise StoreError("update_run cannot change status: use set_status (it checks the transition)")
        unknown = sorted(set(fields) - UPDATABLE_FIELDS)
        if unknown:
            close = difflib.get_close_matches(unknown[0], UPDATABLE_FIELDS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise StoreError(
                f"unknown run field '{unknown[0]}'{hint}; fields: {', '.join(sorted(UPDATABLE_FIELDS))}"
            )
        values = _column_values(fields)
        with self._transaction(write=True) as connection:
            run_id = self._run_id(connection, ref, lock=True)
            if "name" in values:
                self._refuse_taken_name(connection, values["name"], run_id)
            if values:
                connection.execute(update(runs).where(runs.c.id == run_id).values(**values))
            return _run_from_row(self._run_row(connection, run_id))

    def set_status(
        self, ref: int | str, status: str, *, exit_code: int | None = None, error: str | None = None
    ) -> Run:
        """Move a run to ``status`` if the lifecycle allows it (check and write in one transaction)."""
        if status not in RUN_STATUSES:
            close = difflib.get_close_matches(str(status), RUN_STATUSES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise StoreError(f"unknown status {status!r}{hint}; statuses: {', '.join(RUN_STATUSES)}")
        exit_code = _check_int("exit_code", exit_code)
        with self._transaction(write=True) as connection:
            run_id = self._run_id(connection, ref, lock=True)
            row = self._run_row(connection, run_id)
            current = row.status
            values: dict[str, Any] = {}
            if exit_code is not None:
                values["exit_code"] = exit_code
            if error is not None:
                values["last_error"] = str(error)
            if status != current:
                if status not in LEGAL_TRANSITIONS.get(current, frozenset()):
                    allowed = ", ".join(sorted(LEGAL_TRANSITIONS.get(current, ()))) or "nothing (final)"
                    raise IllegalTransitionError(
                        f"run '{row.name}' cannot go from {current} to {status} (from {current}: {allowed})"
                    )
                values["status"] = status
                now = time.time()
                if status == "running" and row.started_at is None:
                    values["started_at"] = now
                if status in TERMINAL_STATUSES:
                    values["ended_at"] = now
                if status == "queued":
                    values.update(ended_at=None, supervisor_pid=None, pgid=None, gpu_ids="[]")
                    if exit_code is None:
                        values["exit_code"] = None
            if values:
                connection.execute(update(runs).where(runs.c.id == run_id).values(**values))
                row = self._run_row(connection, run_id)
            return _run_from_row(row)

    def delete_run(self, ref: int | str) -> None:
        """Delete a run and everything it owns (refused while it is queued or running)."""
        with self._transaction(write=True) as connection:
            run_id = self._run_id(connection, ref, lock=True)
            row = self._run_row(connection, run_id)
            if row.status in ACTIVE_STATUSES:
                raise StoreError(f"run '{row.name}' is {row.status}: stop it first (`arctui stop {row.name}`)")
            for table in (metric_points, metric_stats, run_events, eval_results, gpu_samples):
                connection.execute(delete(table).where(table.c.run_id == run_id))
            connection.execute(delete(runs).where(runs.c.id == run_id))

    def active_runs(self) -> list[Run]:
        """Queued and running runs, oldest first (what the supervisor must recover after a restart)."""
        with self._transaction() as connection:
            rows = connection.execute(
                select(runs).where(runs.c.status.in_(ACTIVE_STATUSES)).order_by(runs.c.id)
            )
            return [_run_from_row(r) for r in rows]

    def runs_holding_gpus(self) -> list[Run]:
        """Running runs that hold GPUs (``gpu_ids`` set), oldest first."""
        with self._transaction() as connection:
            rows = connection.execute(
                select(runs).where(runs.c.status == "running", runs.c.gpu_ids != "[]").order_by(runs.c.id)
            )
            return [_run_from_row(r) for r in rows]

    # ---------------------------------------------------------------------------- listing / compare

    def list_runs(
        self,
        where: str | None = None,
        sort: str | None = None,
        limit: int | None = None,
        descending: bool = True,
    ) -> list[RunSummary]:
        """Runs with their summaries, filtered by the ``--where`` language (see :mod:`db.query`), sorted
        by any field (NULLs last, ties by id), newest first by default."""
        condition = query.where_clause(where, runs)
        column = query.sort_column(sort or "created", runs)
        order = column.desc() if descending else column.asc()
        tie = runs.c.id.desc() if descending else runs.c.id.asc()
        # NULLs last on both dialects; a NOT NULL column skips the term so its index can serve the order.
        nullable = getattr(column, "nullable", True)
        stmt = select(runs).where(condition).order_by(*((column.is_(None),) if nullable else ()), order, tie)
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise StoreError(f"limit must be a non-negative integer, got {limit!r}")
            stmt = stmt.limit(limit)
        with self._transaction() as connection:
            result = connection.execute(stmt)
            rows = _without_gc(result.cursor.fetchall)  # plain driver tuples: no column needs converting
            result.close()
        return _without_gc(lambda: [_summary_from_row(r) for r in rows])

    def compare(self, refs: Sequence[int | str]) -> Comparison:
        """Several runs side by side, in the order given."""
        if not refs:
            raise StoreError("compare needs at least one run")
        with self._transaction() as connection:
            ids = [self._run_id(connection, ref) for ref in refs]
            summaries = [_summary_from_row(self._run_row(connection, i)) for i in ids]
            stats = [self._metric_stats(connection, i) for i in ids]
        configs = [s.run.config for s in summaries]
        keys = sorted({k for c in configs for k in c})
        config_diff = {}
        for key in keys:
            values = tuple(c.get(key) for c in configs)
            if any(v != values[0] for v in values[1:]):
                config_diff[key] = values
        metric_keys = sorted({k for s in stats for k in s})
        metrics = {k: tuple(s.get(k) for s in stats) for k in metric_keys}
        return Comparison(summaries, config_diff, metrics)

    # ------------------------------------------------------------------------------------ metrics

    def append_metrics(self, ref: int | str, points: Iterable[MetricPoint | tuple]) -> int:
        """Insert a batch of metric points; (run, key, step) duplicates are ignored. Returns how many
        were new. The run's summary is updated in the same transaction."""
        rows = _without_gc(lambda: _point_tuples(points))
        if not rows:
            return 0
        run_id = ref if type(ref) is int else self._resolve_id(ref)
        # Everything that does not need the database is prepared before taking the write lock, so two
        # writers overlap this work instead of queueing for it.
        batch = _without_gc(lambda: _PointBatch(run_id, rows))
        with self._transaction(write=True) as connection:
            locked = self._hot.lock_run.execute(connection, {"run_id": run_id}).first()
            if locked is None:
                raise UnknownRunError(f"no run with id {run_id}: list runs with `arctui runs`")
            return _without_gc(lambda: self._insert_batch(connection, batch, locked))

    def _resolve_id(self, ref: int | str) -> int:
        with self._transaction() as connection:
            return self._run_id(connection, ref)

    def _insert_points(self, connection: Connection, run_id: int, rows: list[tuple]) -> int:
        return self._insert_batch(connection, _PointBatch(run_id, rows)) if rows else 0

    def _insert_batch(self, connection: Connection, batch: _PointBatch, locked=None) -> int:
        """Insert ``batch`` (duplicates of stored points are skipped by the database), update per-key
        statistics and the run summary. The caller holds the run's write lock."""
        hot, run_id = self._hot, batch.run_id
        if not batch.rows:
            return 0
        if hot.points_as_tuples:
            result = connection.exec_driver_sql(hot.insert_points.sql, batch.params)
        else:
            result = connection.exec_driver_sql(
                hot.insert_points.sql, [hot.insert_points.params(dict(zip(POINT_COLUMNS, p, strict=True))) for p in batch.params]
            )
        inserted = result.rowcount
        old_stats = {r.key: r for r in hot.stats.execute(connection, {"run_id": run_id}) if r.key in batch.stats}
        merged: dict[str, list] = {}  # key -> [count, latest, latest_step, min, max]
        if inserted == len(batch.rows):  # every point was new: merge the batch's figures
            for key, (count, latest, top, low, high) in batch.stats.items():
                old = old_stats.get(key)
                if old is None:
                    merged[key] = [count, latest, top, low, high]
                else:
                    newest = (latest, top) if top >= old.latest_step else (old.latest, old.latest_step)
                    merged[key] = [old.count + count, *newest, min(old.min, low), max(old.max, high)]
        else:  # a re-send: some points were stored already, so recount the batch's keys from the table
            if inserted == 0:
                return 0
            for key in batch.stats:
                row = hot.key_stats.execute(connection, {"run_id": run_id, "key": key}).one()
                if row.count:
                    latest = hot.value_at.execute(connection, {"run_id": run_id, "key": key, "step": row.top}).scalar()
                    merged[key] = [row.count, latest, row.top, row.low, row.high]
        self._update_stats(connection, run_id, merged, old_stats, inserted, batch.top_step, locked)
        return inserted

    def _update_stats(
        self,
        connection: Connection,
        run_id: int,
        merged: dict[str, list],
        old_stats: dict,
        added: int,
        top_step: int,
        locked=None,
    ) -> None:
        """Write the merged per-key statistics and the run's summary columns. ``locked`` is the run's
        summary row when the caller already read it under the write lock."""
        hot = self._hot
        inserts = [
            {"run_id": run_id, "key": k, **dict(zip(STAT_COLUMNS, s, strict=True))} for k, s in merged.items() if k not in old_stats
        ]
        updates = [
            {"b_run_id": run_id, "b_key": k, **{f"v_{c}": v for c, v in zip(STAT_COLUMNS, s, strict=True)}}
            for k, s in merged.items()
            if k in old_stats
        ]
        if inserts:
            hot.insert_stats.execute_many(connection, inserts)
        if updates:
            hot.update_stats.execute_many(connection, updates)
        summary = locked if locked is not None else hot.lock_run.execute(connection, {"run_id": run_id}).one()
        vram = [s[4] for k, s in merged.items() if k.startswith(PEAK_MEMORY_PREFIX)]
        if summary.peak_vram_gb is not None:
            vram.append(summary.peak_vram_gb)
        latest = {k: merged[k][1] for k in ("loss", "eval_loss", "tokens_per_second") if k in merged}
        hot.update_summary.execute(
            connection,
            {
                "b_id": run_id,
                "v_points": (summary.points or 0) + added,
                "v_updated_at": time.time(),
                "v_last_step": top_step if summary.last_step is None else max(summary.last_step, top_step),
                "v_peak_vram_gb": max(vram) if vram else None,
                "v_loss": latest.get("loss"),
                "v_min_loss": merged["loss"][3] if "loss" in merged else None,
                "v_eval_loss": latest.get("eval_loss"),
                "v_tokens_per_second": latest.get("tokens_per_second"),
                "v_seconds_per_step": (
                    self._recent_median(connection, run_id, "seconds_per_step") if "seconds_per_step" in merged else None
                ),
            },
        )

    def _recent_median(self, connection: Connection, run_id: int, key: str) -> float | None:
        """Median of the latest MEDIAN_WINDOW points of ``key`` (a primary-key range read, no sort of
        the whole series): the current speed, robust to warm-up steps and evaluation pauses."""
        result = self._hot.recent_values.execute(connection, {"run_id": run_id, "key": key})
        values = [r[0] for r in result.cursor.fetchall()]
        result.close()
        return _median(sorted(values)) if values else None

    def metric_keys(self, ref: int | str) -> list[str]:
        """The metric keys this run has points for, sorted."""
        with self._transaction() as connection:
            run_id = self._run_id(connection, ref)
            return sorted(self._metric_stats(connection, run_id))

    def metric_stats(self, ref: int | str) -> dict[str, MetricStats]:
        with self._transaction() as connection:
            return self._metric_stats(connection, self._run_id(connection, ref))

    def _metric_stats(self, connection: Connection, run_id: int) -> dict[str, MetricStats]:
        rows = connection.execute(
            select(metric_stats).where(metric_stats.c.run_id == run_id).order_by(metric_stats.c.key)
        )
        return {r.key: _stats_from_row(r) for r in rows}

    def metric_series(self, ref: int | str, key: str, max_points: int = 2000) -> list[SeriesPoint]:
        """The points of one metric in step order, downsampled to at most ``max_points`` (keeping the
        first, the last, and each bucket's min and max)."""
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
            raise StoreError(f"max_points must be a positive integer, got {max_points!r}")
        with self._transaction() as connection:
            run_id = self._run_id(connection, ref)
            # Hot read path (100k points): plain driver tuples, no Row objects.
            result = connection.exec_driver_sql(
                self._hot.series.sql, self._hot.series.params({"run_id": run_id, "key": key})
            )
            rows = _without_gc(result.cursor.fetchall)
            result.close()
        return [SeriesPoint(s, v, w) for s, v, w in downsample(rows, max_points)]

    # ------------------------------------------------------------------------------------- events

    def ingest_events(self, ref: int | str, events: Sequence[dict]) -> int:
        """Store runner events exactly once (skipping seq <= the run's cursor): metric points, kept
        events, evaluations, summary and cursor in one transaction. Returns how many events were new.
        Status is not changed here: the supervisor calls set_status."""
        checked: list[tuple[int, dict]] = []
        for event in events:
            if not isinstance(event, dict):
                raise StoreError(f"an event must be a dict, got {type(event).__name__}")
            seq = event.get("seq")
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
                raise StoreError(f"event without a positive integer seq: {str(event)[:80]}")
            checked.append((seq, event))
        checked.sort(key=lambda item: item[0])
        with self._transaction(write=True) as connection:
            run_id = self._run_id(connection, ref, lock=True)
            cursor = connection.execute(select(runs.c.events_cursor).where(runs.c.id == run_id)).scalar() or 0
            fresh: list[dict] = []
            seen: set[int] = set()
            for seq, event in checked:
                if seq > cursor and seq not in seen:
                    seen.add(seq)
                    fresh.append(event)
            if not fresh:
                return 0
            self._apply_events(connection, run_id, fresh)
            connection.execute(update(runs).where(runs.c.id == run_id).values(events_cursor=fresh[-1]["seq"]))
            return len(fresh)

    def _apply_events(self, connection: Connection, run_id: int, events: list[dict]) -> None:
        points: list[tuple] = []
        kept: list[dict[str, Any]] = []
        run_values: dict[str, Any] = {}
        evals: list[dict] = []
        for event in events:
            kind = event.get("event")
            wall = _finite(event.get("time"))
            step = event.get("step") if isinstance(event.get("step"), int) else None
            if kind == "step" and step is not None:
                for key in STEP_METRICS:
                    value = _finite(event.get(key))
                    if value is not None:
                        points.append((key, step, value, wall))
                peak = event.get("peak_memory_gb")
                if isinstance(peak, dict):
                    for device, gb in peak.items():
                        value = _finite(gb)
                        if value is not None:
                            points.append((f"{PEAK_MEMORY_PREFIX}{device}", step, value, wall))
            elif kind == "eval" and step is not None:
                for key in EVAL_METRICS:
                    value = _finite(event.get(key))
                    if value is not None:
                        points.append((key, step, value, wall))
            if kind in ("start", "step") and isinstance(event.get("max_steps"), int):
                run_values["max_steps"] = event["max_steps"]
            if kind == "end":
                if _finite(event.get("train_loss")) is not None:
                    run_values["final_loss"] = float(event["train_loss"])
                if _finite(event.get("eval_loss")) is not None:
                    run_values["eval_loss"] = float(event["eval_loss"])
            elif kind == "error":
                message = f"{event.get('type') or 'Error'}: {event.get('message') or ''}".strip()
                run_values["last_error"] = message.splitlines()[0] if message else "Error"
            elif kind == "eval_result" and isinstance(event.get("metrics"), dict):
                evals.append(event)
            if kind in KEPT_EVENT_KINDS:
                kept.append(
                    {
                        "run_id": run_id,
                        "seq": event["seq"],
                        "time": wall if wall is not None else time.time(),
                        "kind": kind,
                        "step": step,
                        "data_json": json.dumps(event, ensure_ascii=False, default=str),
                    }
                )
        self._insert_points(connection, run_id, points)
        if kept:
            connection.execute(self._insert_ignore(run_events), kept)
        for event in evals:
            self._record_eval(
                connection,
                run_id,
                event.get("step") if isinstance(event.get("step"), int) else 0,
                str(event.get("dataset") or "eval"),
                event["metrics"],
                event.get("predictions_path"),
            )
        if run_values:
            connection.execute(update(runs).where(runs.c.id == run_id).values(**run_values))

    def recent_events(
        self, ref: int | str, limit: int | None = 20, kinds: Iterable[str] | None = None
    ) -> list[RunEvent]:
        """Kept events of a run, newest first (all when ``limit`` is None)."""
        with self._transaction() as connection:
            return self._recent_events(connection, self._run_id(connection, ref), limit, kinds)

    def _recent_events(self, connection: Connection, run_id: int, limit, kinds) -> list[RunEvent]:
        stmt = select(run_events).where(run_events.c.run_id == run_id)
        if kinds is not None:
            stmt = stmt.where(run_events.c.kind.in_(list(kinds)))
        stmt = stmt.order_by(run_events.c.seq.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        return [_event_from_row(r) for r in connection.execute(stmt)]

    def checkpoints(self, ref: int | str) -> list[RunEvent]:
        """The run's checkpoint events, oldest first."""
        return self.recent_events(ref, limit=None, kinds=["checkpoint"])[::-1]

    # --------------------------------------------------------------------------------------- GPUs

    def append_gpu_samples(self, ref: int | str | None, samples: Iterable[GpuSample]) -> int:
        """Store GPU readings (``ref`` None: not tied to a run). Returns how many were stored."""
        rows = []
        for s in samples:
            if not isinstance(s, GpuSample):
                raise StoreError(f"append_gpu_samples takes GpuSample records, got {type(s).__name__}")
            rows.append(
                {
                    "gpu_index": s.gpu_index,
                    "gpu_name": s.gpu_name,
                    "time": s.time,
                    "memory_used_mb": s.memory_used_mb,
                    "memory_total_mb": s.memory_total_mb,
                    "utilization_pct": s.utilization_pct,
                    "power_w": s.power_w,
                }
            )
        if not rows:
            return 0
        with self._transaction(write=True) as connection:
            run_id = None if ref is None else self._run_id(connection, ref)
            for row in rows:
                row["run_id"] = run_id
            connection.execute(insert(gpu_samples), rows)
        return len(rows)

    def gpu_samples(self, ref: int | str, since: float | None = None, limit: int | None = None) -> list[GpuSample]:
        """A run's GPU readings in time order (the latest ``limit`` when given)."""
        with self._transaction() as connection:
            run_id = self._run_id(connection, ref)
            stmt = select(gpu_samples).where(gpu_samples.c.run_id == run_id)
            if since is not None:
                stmt = stmt.where(gpu_samples.c.time >= since)
            stmt = stmt.order_by(gpu_samples.c.time.desc(), gpu_samples.c.id.desc())
            if limit is not None:
                stmt = stmt.limit(limit)
            return [_gpu_from_row(r) for r in connection.execute(stmt)][::-1]

    def latest_gpu_samples(self, ref: int | str | None = None) -> list[GpuSample]:
        """The latest reading of each GPU (of one run, or of all GPUs when ``ref`` is None)."""
        with self._transaction() as connection:
            run_id = None if ref is None else self._run_id(connection, ref)
            return self._latest_gpu_samples(connection, run_id)

    def _latest_gpu_samples(self, connection: Connection, run_id: int | None) -> list[GpuSample]:
        inner = select(gpu_samples.c.gpu_index, func.max(gpu_samples.c.id).label("last_id"))
        if run_id is not None:
            inner = inner.where(gpu_samples.c.run_id == run_id)
        inner = inner.group_by(gpu_samples.c.gpu_index).subquery()
        stmt = (
            select(gpu_samples)
            .join(inner, gpu_samples.c.id == inner.c.last_id)
            .order_by(gpu_samples.c.gpu_index)
        )
        return [_gpu_from_row(r) for r in connection.execute(stmt)]

    # -------------------------------------------------------------------------------- evaluations

    def record_eval(
        self,
        ref: int | str,
        step: int,
        dataset: str,
        metrics: dict[str, float],
        predictions_path: str | None = None,
    ) -> list[EvalResult]:
        """Store an evaluation of the checkpoint at ``step`` on ``dataset`` (re-recording replaces)."""
        with self._transaction(write=True) as connection:
            run_id = self._run_id(connection, ref, lock=True)
            return self._record_eval(connection, run_id, step, dataset, metrics, predictions_path)

    def _record_eval(self, connection, run_id, step, dataset, metrics, predictions_path) -> list[EvalResult]:
        step = _check_int("step", step)
        if step is None:
            raise StoreError("record_eval needs the checkpoint step")
        if not isinstance(dataset, str) or not dataset:
            raise StoreError(f"record_eval needs a data set name, got {dataset!r}")
        if not isinstance(metrics, dict):
            raise StoreError(f"metrics must be a dict of name -> number, got {type(metrics).__name__}")
        now = time.time()
        rows = []
        for metric, value in metrics.items():
            number = _finite(value)
            if number is None:
                continue  # e.g. a nested dict or a missing value: not a scalar metric
            rows.append(
                {
                    "run_id": run_id, "step": step, "dataset": dataset, "metric": str(metric)[:100],
                    "value": number, "predictions_path": predictions_path, "created_at": now,
                }
            )  # fmt: skip
        if rows:
            connection.execute(
                self._upsert(
                    eval_results, ["run_id", "step", "dataset", "metric"], ["value", "predictions_path", "created_at"]
                ),
                rows,
            )
            accuracy = connection.execute(
                select(eval_results.c.value)
                .where(eval_results.c.run_id == run_id, eval_results.c.metric == "accuracy")
                .order_by(eval_results.c.step.desc(), eval_results.c.created_at.desc(), eval_results.c.id.desc())
                .limit(1)
            ).scalar()
            if accuracy is not None:
                connection.execute(update(runs).where(runs.c.id == run_id).values(accuracy=accuracy))
        stored = connection.execute(
            select(eval_results)
            .where(eval_results.c.run_id == run_id, eval_results.c.step == step, eval_results.c.dataset == dataset)
            .order_by(eval_results.c.metric)
        )
        return [_eval_from_row(r) for r in stored]

    def eval_results(self, ref: int | str) -> list[EvalResult]:
        """All evaluation results of a run, by step, data set and metric."""
        with self._transaction() as connection:
            return self._eval_results(connection, self._run_id(connection, ref))

    def _eval_results(self, connection: Connection, run_id: int) -> list[EvalResult]:
        rows = connection.execute(
            select(eval_results)
            .where(eval_results.c.run_id == run_id)
            .order_by(eval_results.c.step, eval_results.c.dataset, eval_results.c.metric)
        )
        return [_eval_from_row(r) for r in rows]

