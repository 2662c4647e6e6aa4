"""Plain frozen records that the store returns. Nothing here touches SQL; the rest of arctui sees only
these (the ORM classes in :mod:`db.models` stay private to the store)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

RUN_STATUSES = ("queued", "running", "completed", "failed", "stopped", "crashed")
ACTIVE_STATUSES = ("queued", "running")
TERMINAL_STATUSES = ("completed", "failed", "stopped", "crashed")

# from-status -> statuses it may move to. Terminal runs that did not complete may be queued again
# (resume from the last checkpoint or retry); a completed run is final.
LEGAL_TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "stopped", "failed"}),
    "running": frozenset({"completed", "failed", "stopped", "crashed"}),
    "stopped": frozenset({"queued"}),
    "failed": frozenset({"queued"}),
    "crashed": frozenset({"queued"}),
    "completed": frozenset(),
}


def utc_datetime(seconds: float | None) -> datetime | None:
    """Unix seconds -> timezone-aware UTC datetime (None stays None). A time no datetime can show (a
    forged 1e308 stored by an older arctui) is clamped to years 1..9999, so reading it never fails."""
    if seconds is None:
        return None
    if not -62135510400.0 <= seconds <= 253402214400.0:  # also NaN
        seconds = -62135510400.0 if seconds < 0 else 253402214400.0
    return datetime.fromtimestamp(seconds, UTC)


def _plain(value: Any) -> Any:
    """A JSON-ready version of a record field value."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


class _Record:
    # Properties that to_dict includes besides the public fields.
    _derived: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the public fields and derived properties (datetimes as ISO strings)."""
        out = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if not f.name.startswith("_")}
        for name in self._derived:
            out[name] = _plain(getattr(self, name))
        return out


@dataclass(frozen=True)
class Run(_Record):
    """One training run: identity, lifecycle, the columns people filter on, and process bookkeeping."""

    id: int
    name: str
    status: str
    model: str | None
    encoder: str | None
    msl: int | None
    batch_size: int | None
    per_device_batch: int | None
    learning_rate: float | None
    lora_r: int | None
    gpus: int | None
    gpu_ids: tuple[int, ...]
    datasets: tuple[str, ...]
    tags: tuple[str, ...]
    notes: str
    host: str | None
    supervisor_pid: int | None
    pgid: int | None
    exit_code: int | None
    output_dir: str | None
    log_path: str | None
    last_error: str | None
    events_cursor: int
    # Unix seconds as stored; the datetime properties below are built on first access, so listing
    # thousands of runs does not pay for datetimes (or config dicts) nobody looks at.
    _created: float = field(default=0.0, repr=False)
    _started: float | None = field(default=None, repr=False)
    _ended: float | None = field(default=None, repr=False)
    _config_json: str = field(default="{}", repr=False)
    # Revision 0004: the study the run belongs to (None: a single run) and its variant's name there.
    study_id: int | None = None
    variant: str | None = None
    # Revision 0005: ``local`` or ``slurm``; for Slurm the current job id, every job id of the run (a
    # resume submits a new job), Slurm's own state (e.g. ``PENDING (Resources)``) and node list.
    executor: str = "local"
    job_id: str | None = None
    job_ids: tuple[str, ...] = ()
    job_state: str | None = None
    node_list: str | None = None

    _derived = ("created_at", "started_at", "ended_at", "config")

    @cached_property
    def created_at(self) -> datetime:
        """When the run was created (UTC)."""
        return utc_datetime(self._created)

    @cached_property
    def started_at(self) -> datetime | None:
        """When the run first went running (UTC), or None."""
        return utc_datetime(self._started)

    @cached_property
    def ended_at(self) -> datetime | None:
        """When the run reached a terminal status (UTC), or None."""
        return utc_datetime(self._ended)

    @cached_property
    def config(self) -> dict[str, Any]:
        """The full run config (parsed on first access)."""
        return json.loads(self._config_json)

    def __repr__(self) -> str:
        return f"Run(id={self.id}, name={self.name!r}, status={self.status!r}, model={self.model!r}, msl={self.msl})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


@dataclass(frozen=True)
class RunSummary(_Record):
    """A run plus the figures kept current as its metrics arrive (no raw points are scanned to list)."""

    run: Run
    last_step: int | None
    max_steps: int | None
    loss: float | None
    min_loss: float | None
    final_loss: float | None
    eval_loss: float | None
    accuracy: float | None
    seconds_per_step: float | None
    tokens_per_second: float | None
    peak_vram_gb: float | None
    points: int
    _updated: float | None = field(default=None, repr=False)

    _derived = ("updated_at", "progress")

    @cached_property
    def updated_at(self) -> datetime | None:
        """When metrics last arrived (UTC), or None."""
        return utc_datetime(self._updated)

    @property
    def progress(self) -> float | None:
        """last_step / max_steps, clipped to 0..1 (None when either is unknown)."""
        if self.last_step is None or not self.max_steps:
            return None
        return max(0.0, min(1.0, self.last_step / self.max_steps))


@dataclass(frozen=True)
class MetricStats(_Record):
    """Running statistics of one metric key of one run."""

    key: str
    count: int
    latest: float
    latest_step: int
    min: float
    max: float


@dataclass(frozen=True)
class MetricPoint(_Record):
    """One metric value at one step (input of :meth:`RunStore.append_metrics`)."""

    key: str
    step: int
    value: float
    wall_time: float | None = None


@dataclass(frozen=True)
class SeriesPoint(_Record):
    """One point of a (possibly downsampled) metric series."""

    step: int
    value: float
    wall_time: float | None


@dataclass(frozen=True)
class GpuSample(_Record):
    """One reading of one GPU (memory in MiB, utilization in percent, power in watts)."""

    gpu_index: int
    gpu_name: str
    time: float
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    utilization_pct: float | None = None
    power_w: float | None = None
    run_id: int | None = None


@dataclass(frozen=True)
class RunEvent(_Record):
    """A kept runner event (start, eval, checkpoint, end, error, eval_result); ``data`` is the whole event."""

    run_id: int
    seq: int
    time: float
    kind: str
    step: int | None
    data: dict[str, Any]


@dataclass(frozen=True)
class EvalResult(_Record):
    """One metric of one evaluation of a checkpoint on one data set."""

    run_id: int
    step: int
    dataset: str
    metric: str
    value: float
    predictions_path: str | None
    created_at: datetime


@dataclass(frozen=True)
class RunDetail(_Record):
    """Everything ``arctui show`` displays about one run."""

    summary: RunSummary
    metrics: dict[str, MetricStats]
    recent_events: list[RunEvent]
    checkpoints: list[RunEvent]
    evals: list[EvalResult]
    gpu: list[GpuSample]


@dataclass(frozen=True)
class Comparison(_Record):
    """Several runs side by side: summaries in the requested order, the config keys whose values differ
    (one value per run, None where a run lacks the key) and per-key metric statistics."""

    summaries: list[RunSummary]
    config_diff: dict[str, tuple[Any, ...]]
    metrics: dict[str, tuple[MetricStats | None, ...]]


STUDY_STATUSES = ("active", "stopped", "done")


@dataclass(frozen=True)
class Study(_Record):
    """A study (revision 0004): a base config plus variants run as one. ``spec`` is what the study
    file resolved to (base, variants with their overrides, scheduling options). ``status``: ``active``
    (its queued runs are started as slots free up), ``stopped`` (nothing more is started) or ``done``."""

    id: int
    name: str
    spec: dict[str, Any]
    status: str
    _created: float = field(default=0.0, repr=False)

    _derived = ("created_at",)

    @cached_property
    def created_at(self) -> datetime:
        return utc_datetime(self._created)


# ------------------------------------------------------------------------------ ingest input records
# What db.ingest makes of one runner event; RunStore.ingest_records stores a list of them exactly once.


@dataclass(frozen=True)
class KeptEvent(_Record):
    """An input event worth keeping whole (it becomes a :class:`RunEvent`)."""

    kind: str
    step: int | None
    data: dict[str, Any]


@dataclass(frozen=True)
class EvalRecord(_Record):
    """An evaluation to store as by :meth:`RunStore.record_eval`."""

    step: int
    dataset: str
    metrics: dict[str, Any]
    predictions_path: str | None = None


# The kind of kept event that records a saved checkpoint (RunStore.checkpoints lists them).
CHECKPOINT_KIND = "checkpoint"
# Run columns that an input record may set (the last record of a batch that sets one wins).
RECORD_RUN_FIELDS = frozenset({"max_steps", "final_loss", "eval_loss", "last_error"})


@dataclass(frozen=True)
class EventRecords(_Record):
    """Everything one sequenced input event becomes: metric points ``(key, step, value, wall_time)``,
    run column values (keys in :data:`RECORD_RUN_FIELDS`), a kept event and evaluations. ``seq`` is
    the event's sequence number: the store skips records at or below the run's cursor."""

    seq: int
    time: float
    points: tuple[tuple[str, int, float, float | None], ...] = ()
    run_fields: dict[str, Any] = field(default_factory=dict)
    kept: KeptEvent | None = None
    evals: tuple[EvalRecord, ...] = ()
