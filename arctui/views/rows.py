"""Run rows: one line per run, the columns a run list shows, and the reads that fill them.

``arctui runs`` and the app's Runs screen show the same :data:`RUN_COLUMNS` with the same cell text
(the app adds colour and a progress bar around it); ``arctui runs --format json|csv`` writes
:func:`run_record`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arctui.formatting import DASH, format_age
from arctui.views.figures import (
    ACCURACY,
    DURATION,
    EVAL_LOSS,
    LOSS,
    PEAK_VRAM,
    S_PER_STEP,
    short_encoder,
    short_model,
)

ACTIVE_STATUSES = frozenset({"queued", "running"})
RESUMABLE_STATUSES = frozenset({"stopped", "failed", "crashed"})  # a completed run is not resumed: launch anew


@dataclass(frozen=True)
class RunRow:
    """One run as a list shows it: identity, the settings people filter on and its summary figures."""

    id: str
    name: str
    status: str
    model: str = ""
    encoder: str = ""
    max_seq_len: int | None = None
    batch_size: int | None = None
    per_device_batch: int | None = None
    gpus: str = ""
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    """Training loss at the last logged step (the store's end-of-run loss when no step is kept)."""
    min_loss: float | None = None
    eval_loss: float | None = None
    seconds_per_step: float | None = None
    tokens_per_second: float | None = None
    peak_vram_gb: float | None = None
    accuracy: float | None = None
    created_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    tags: tuple[str, ...] = ()
    eval_note: str = ""
    """Why a completed run has no evaluation after training (``evaluation skipped: ...``), else empty."""
    job: str = ""
    """A Slurm run's job id, Slurm state and nodes (:func:`job_line`), else empty."""

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_resumable(self) -> bool:
        """Whether ``arctui resume`` would take it up again (it ended before its last step)."""
        return self.status in RESUMABLE_STATUSES

    def duration(self, now: float) -> float | None:
        """Seconds from start to end (to ``now`` while the run has not ended), or None before it starts."""
        if self.started_at is None:
            return None
        return max(0.0, (self.ended_at if self.ended_at is not None else now) - self.started_at)

    def figure(self, key: str, now: float) -> float | int | None:
        """The value of the summary figure ``key`` (see :data:`arctui.views.figures.FIGURES`)."""
        if key == "steps":
            return self.step
        if key == "duration_s":
            return self.duration(now)
        if key == "s_per_step":
            return self.seconds_per_step
        return getattr(self, key)


def _timestamp(value) -> float | None:
    return value.timestamp() if value is not None else None


def gpus_text(run) -> str:
    """The GPUs a run holds (``0,1``), else those its config asks for (``auto``, ``cpu``), else ``2x``."""
    if run.gpu_ids:
        return ",".join(str(i) for i in run.gpu_ids)
    requested = run.config.get("gpus") if isinstance(run.config, dict) else None
    if isinstance(requested, list | tuple):
        return ",".join(str(i) for i in requested)
    if requested:
        return str(requested)
    return f"{run.gpus}x" if run.gpus else ""


# The supervisor records a completed run whose evaluation after training gave no result with a last
# error starting so (``arctui.supervisor.supervise``); `arctui show` prints it as the last error.
EVAL_NOTE_PREFIX = "evaluation after training"


def eval_note(run) -> str:
    """``evaluation skipped: a stop was requested`` (or ``evaluation failed: ...``) for a completed run
    whose evaluation after training gave no result, else empty."""
    error = (run.last_error or "").splitlines()[0] if run.last_error else ""
    if run.status != "completed" or not error.startswith(EVAL_NOTE_PREFIX):
        return ""
    return "evaluation " + error.removeprefix(EVAL_NOTE_PREFIX).strip()


def accuracy_cell(row: RunRow) -> str:
    """The accuracy, or why there is none (``skipped``, ``failed``) after an evaluation after training
    that gave no result."""
    if row.accuracy is None and row.eval_note:
        return "failed" if row.eval_note.startswith("evaluation failed") else "skipped"
    return ACCURACY.text(row.accuracy)


def row_from_summary(summary) -> RunRow:
    """Flatten a store ``RunSummary`` into a :class:`RunRow`."""
    run = summary.run
    return RunRow(
        id=str(run.id),
        name=run.name,
        status=run.status,
        model=run.model or "",
        encoder=run.encoder or "",
        max_seq_len=run.msl,
        batch_size=run.batch_size,
        per_device_batch=run.per_device_batch,
        gpus=gpus_text(run),
        step=summary.last_step,
        max_steps=summary.max_steps,
        loss=summary.loss if summary.loss is not None else summary.final_loss,
        min_loss=summary.min_loss,
        eval_loss=summary.eval_loss,
        seconds_per_step=summary.seconds_per_step,
        tokens_per_second=summary.tokens_per_second,
        peak_vram_gb=summary.peak_vram_gb,
        accuracy=summary.accuracy,
        created_at=_timestamp(run.created_at),
        started_at=_timestamp(run.started_at),
        ended_at=_timestamp(run.ended_at),
        tags=tuple(run.tags),
        eval_note=eval_note(run),
        job=job_line(run) or "",
    )


# -- columns ------------------------------------------------------------------------------------------

def steps_text(row: RunRow) -> str:
    """``40/100`` (or ``40`` without a known total; empty before the first step)."""
    if row.step is None:
        return ""
    return f"{row.step}/{row.max_steps}" if row.max_steps else str(row.step)


def batch_text(row: RunRow) -> str:
    """Total batch / per-device batch: ``16/2``."""
    if row.batch_size is None:
        return DASH
    return f"{row.batch_size}/{row.per_device_batch}" if row.per_device_batch else str(row.batch_size)


@dataclass(frozen=True)
class RunColumn:
    """A run-list column: key, header, the store's sort field (None: not sortable), the cell text and
    the app's fixed width. ``moves_with_time`` marks cells that change as the clock moves (ages,
    running durations)."""

    key: str
    label: str
    sort_field: str | None
    cell: Callable[[RunRow, float], str]
    width: int
    moves_with_time: bool = False


# Live figures first (speed first of all), settings after: at 80-120 columns the app's table scrolls
# sideways into the settings.
RUN_COLUMNS: tuple[RunColumn, ...] = (
    RunColumn("id", "id", "id", lambda r, n: r.id, 5),
    RunColumn("name", "name", "name", lambda r, n: r.name, 18),
    RunColumn("status", "status", "status", lambda r, n: r.status, 9),
    RunColumn("progress", "progress", "progress", lambda r, n: steps_text(r), 15),
    RunColumn("s_per_step", S_PER_STEP.label, "s_per_step", lambda r, n: S_PER_STEP.text(r.seconds_per_step), 15),
    RunColumn("loss", LOSS.label, "loss", lambda r, n: LOSS.text(r.loss), 6),
    RunColumn("eval_loss", EVAL_LOSS.label, "eval_loss", lambda r, n: EVAL_LOSS.text(r.eval_loss), 9),
    RunColumn("vram", PEAK_VRAM.label, "peak_vram", lambda r, n: PEAK_VRAM.text(r.peak_vram_gb), 9),
    RunColumn("accuracy", ACCURACY.label, "accuracy", lambda r, n: accuracy_cell(r), 8),
    RunColumn("msl", "msl", "msl", lambda r, n: DASH if r.max_seq_len is None else str(r.max_seq_len), 6),
    RunColumn("batch", "bs/dev", "batch_size", lambda r, n: batch_text(r), 8),
    RunColumn("gpus", "gpus", "gpus", lambda r, n: r.gpus or DASH, 6),
    RunColumn("model", "model", "model", lambda r, n: short_model(r.model), 22),
    RunColumn("encoder", "encoder", "encoder", lambda r, n: short_encoder(r.encoder), 28),
    RunColumn("created", "created", "created", lambda r, n: format_age(r.created_at, n), 9, moves_with_time=True),
    RunColumn("duration", DURATION.label, None, lambda r, n: DURATION.text(r.duration(n)), 8,
              moves_with_time=True),
)
RUN_COLUMN_BY_KEY = {c.key: c for c in RUN_COLUMNS}


def run_cells(row: RunRow, now: float) -> list[str]:
    """The text of every column of ``row``, in :data:`RUN_COLUMNS` order."""
    return [column.cell(row, now) for column in RUN_COLUMNS]


# -- records for scripts ------------------------------------------------------------------------------

def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def run_record(row: RunRow, now: float) -> dict[str, Any]:
    """``row`` for ``--format json|csv``: raw numbers, ISO times (UTC). ``final_loss`` is the ``loss``
    figure under the name scripts have read since the first release."""
    return {
        "id": int(row.id) if row.id.isdigit() else row.id,
        "name": row.name,
        "status": row.status,
        "model": row.model or None,
        "encoder": row.encoder or None,
        "msl": row.max_seq_len,
        "batch": row.batch_size,
        "per_device_batch": row.per_device_batch,
        "gpus": row.gpus or None,
        "steps": row.step,
        "max_steps": row.max_steps,
        "final_loss": row.loss,
        "eval_loss": row.eval_loss,
        "s_per_step": row.seconds_per_step,
        "tokens_per_second": row.tokens_per_second,
        "peak_vram_gb": row.peak_vram_gb,
        "accuracy": row.accuracy,
        "started": _iso(row.started_at),
        "ended": _iso(row.ended_at),
        "duration_s": row.duration(now),
        "tags": list(row.tags),
    }


def job_line(run) -> str | None:
    """How a run on Slurm reads in `arctui show` and the Run screen: job id, Slurm's state, nodes and
    the run's earlier jobs; None for a local run."""
    if getattr(run, "executor", "local") != "slurm":
        return None
    earlier = [j for j in run.job_ids if j != run.job_id]
    return (f"Slurm job {run.job_id or '-'}  state {run.job_state or '-'}  nodes {run.node_list or '-'}"
            + (f"  earlier jobs {', '.join(earlier)}" if earlier else ""))


def job_record(run) -> dict[str, Any] | None:
    """``job_line`` for ``--format json``."""
    if getattr(run, "executor", "local") != "slurm":
        return None
    return {"job_id": run.job_id, "job_ids": list(run.job_ids), "state": run.job_state, "nodes": run.node_list}


# -- reads (thread workers / commands) ----------------------------------------------------------------

def read_runs(store, where: str | None, sort: str | None, descending: bool, limit: int | None,
              also: str | None = None) -> list[RunRow]:
    """The runs matching ``where`` (the store's filter language) and ``also`` (the application's own
    filter, see :func:`arctui.views.manage.hidden_runs`), sorted by ``sort``, at most ``limit``."""
    where = (where or "").strip() or None
    return [row_from_summary(s)
            for s in store.list_runs(where, sort=sort, limit=limit, descending=descending, also=also)]


def check_where(text: str) -> None:
    """Raise the store's one-line error when ``text`` is not a valid ``--where`` filter."""
    from db.query import parse_where

    if text.strip():
        parse_where(text)
