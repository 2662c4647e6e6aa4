"""Studies as the app and ``arctui study list`` show them: progress and ETA of every study, one study's
live table and loss curves, and what the Studies screens ask of the study control (stop, resume,
write the report).

    progress = read_study_list(store, now)             # newest first, with counts and an ETA
    detail = read_study_detail(store, "demo-cpu", now)  # the study table + latest s/step + loss curves
    request_study_stop(store, "demo-cpu", db_url)       # the same functions `arctui study ...` calls

The study table itself (columns, labels, ratios, the failure reason) is :mod:`arctui.studies.table`'s;
this module adds what a live view needs on top of it. No textual, no torch; reads are for thread
workers and commands.
"""

from __future__ import annotations

import heapq
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from arctui.formatting import format_duration
from arctui.studies.table import (
    FINAL_LOSS,
    STUDY_FIGURES,
    StudyTable,
    cells,
    headers,
    read_study_table,
)
from arctui.views.figures import DURATION, LATEST, S_PER_STEP, TOKENS_PER_S, Figure
from arctui.views.rows import RunRow
from arctui.views.summary import MetricSeries, read_series

# The counts a study's progress is told by, in the order the list shows them ("failed" counts crashed
# runs too: both ended without completing and need a look).
PROGRESS_KEYS = ("completed", "running", "queued", "failed", "stopped")
ETA_LABEL = "ETA"


@dataclass(frozen=True)
class StudyProgress:
    """One study in a list: identity, status, how many of its runs are where, and when it should end."""

    id: int
    name: str
    status: str
    runs: int
    counts: dict[str, int]
    crashed: int
    created_at: float
    eta_s: float | None
    """Seconds until its last run should end (None when nothing is left or it cannot be told yet)."""

    @property
    def done_text(self) -> str:
        """``2 of 5``: completed runs of all runs."""
        return f"{self.counts['completed']} of {self.runs}"

    @property
    def eta_text(self) -> str:
        return format_duration(self.eta_s)

    def record(self) -> dict:
        """For ``arctui study list --format json``: every count (crashed apart from failed) and the ETA."""
        return {"id": self.id, "name": self.name, "status": self.status, "runs": self.runs,
                **{k: self.counts[k] - (self.crashed if k == "failed" else 0) for k in PROGRESS_KEYS},
                "crashed": self.crashed, "eta_s": self.eta_s,
                "created": datetime.fromtimestamp(self.created_at, UTC).isoformat()}


def _max_steps(summary) -> int | None:
    config = summary.run.config if isinstance(summary.run.config, dict) else {}
    value = summary.max_steps or config.get("max_steps")
    return int(value) if isinstance(value, int | float) and value > 0 else None


def _slots(spec: dict, n_runs: int, running: int) -> int:
    """How many runs of the study go at once, for the ETA: its ``max_parallel``, else (``gpus: auto``,
    where free GPUs decide) as many as run now."""
    from arctui.studies.scheduler import parallel_limit

    if not spec.get("max_parallel") and spec.get("run_gpus") == "auto":
        return max(1, running)
    return parallel_limit(spec, n_runs)


def study_eta(summaries, spec: dict, now: float) -> float | None:
    """Seconds until the study's last queued or running run should end, or None when none is left or
    one's length cannot be told yet (no run has completed or logged an s/step).

    A running run has its steps left at its median s/step; a queued run (or a running one not yet
    timed) takes its steps at the wall time per step of the completed runs (start-up included), or
    their median duration without a step count; before any run completed, at the median s/step of
    the running ones. Queued runs start in creation order whenever fewer
    runs than the study's limit are busy."""
    finished = [s for s in summaries if s.run.status == "completed" and s.run.started_at and s.run.ended_at]
    per_step = [(s.run.ended_at - s.run.started_at).total_seconds() / s.last_step for s in finished if s.last_step]
    durations = [(s.run.ended_at - s.run.started_at).total_seconds() for s in finished]

    # Before any run completed: the pace of those running (start-up not included).
    paces = per_step or [s.seconds_per_step for s in summaries if s.run.status == "running" and s.seconds_per_step]

    def expected(summary) -> float | None:
        steps = _max_steps(summary)
        if paces and steps:
            return statistics.median(paces) * steps
        return statistics.median(durations) if durations else None

    running, queued = [], []
    for summary in summaries:
        status = summary.run.status
        if status == "running":
            steps = _max_steps(summary)
            if summary.seconds_per_step and steps is not None and summary.last_step is not None:
                left = max(0, steps - summary.last_step) * summary.seconds_per_step
            else:
                total = expected(summary)
                if total is None:
                    return None
                started = summary.run.started_at.timestamp() if summary.run.started_at else now
                left = max(0.0, total - (now - started))
            running.append(left)
        elif status == "queued":
            total = expected(summary)
            if total is None:
                return None
            queued.append(total)
    if not running and not queued:
        return None
    # As the scheduler does: the next queued run starts once fewer runs than the limit are busy.
    limit = _slots(spec, len(summaries), len(running))
    busy = sorted(running)  # when each busy run ends (a heap)
    ends = list(running)
    clock = 0.0
    for total in queued:
        while len(busy) >= limit:
            clock = max(clock, heapq.heappop(busy))
        heapq.heappush(busy, clock + total)
        ends.append(clock + total)
    return max(ends)


def study_progress(study, summaries, now: float) -> StudyProgress:
    """Counts and ETA of ``study`` from its runs' summaries (``store.study_runs``)."""
    statuses = [s.run.status for s in summaries]
    crashed = statuses.count("crashed")
    counts = {k: statuses.count(k) for k in PROGRESS_KEYS}
    counts["failed"] += crashed
    # a stopped study starts nothing more, and its running runs are stopping: no ETA
    eta = study_eta(summaries, study.spec, now) if study.status == "active" else None
    return StudyProgress(study.id, study.name, study.status, len(summaries), counts, crashed,
                         study.created_at.timestamp(), eta)


def read_study_list(store, now: float) -> list[StudyProgress]:
    """Every study, newest first, with its progress and ETA."""
    return [study_progress(study, store.study_runs(study.id), now) for study in store.list_studies()]


# -- one study, live -----------------------------------------------------------------------------------

LOSS_POINTS = 400
LATEST_HEADER = f"{LATEST} s/step"


@dataclass(frozen=True)
class RunCurve:
    """One run's training loss as read at its step ``step`` (while the step stays, the curve does)."""

    run_id: str
    step: int | None
    loss: MetricSeries


@dataclass(frozen=True)
class StudyDetail:
    """Everything the Study screen shows: the study table (:mod:`arctui.studies.table`), each run's
    latest logged s/step (the "current" pace next to the median), the training loss curves of its
    runs and the study's progress."""

    table: StudyTable
    latest: tuple[float | None, ...]
    """Per row: seconds per step of the latest logged step, while the run is active."""
    run_curves: tuple[RunCurve, ...]
    """Per row: its training loss over steps, named by its variant (empty before its first step)."""
    progress: StudyProgress

    @property
    def curves(self) -> tuple[MetricSeries, ...]:
        """The loss curves with at least one point, in row order."""
        return tuple(c.loss for c in self.run_curves if c.loss.steps)

    @property
    def rows(self) -> tuple[RunRow, ...]:
        return tuple(r.run for r in self.table.rows)

    @property
    def run_ids(self) -> list[str]:
        """Its runs in variant order (the first is the study's baseline)."""
        ids = [r.run.id for r in self.table.rows]
        base = ids.pop(self.table.baseline)
        return [base, *ids]


# Shown from the start, so columns do not come and go as a study's first steps arrive; the others
# (peak VRAM, eval loss, accuracy, vote_2) once a run has them.
LIVE_FIGURES = (S_PER_STEP, TOKENS_PER_S, DURATION, FINAL_LOSS)


def live_figures(detail: StudyDetail) -> tuple[Figure, ...]:
    shown = detail.table.shown_figures
    return tuple(f for f in STUDY_FIGURES if f in LIVE_FIGURES or f in shown)


def live_headers(detail: StudyDetail) -> list[str]:
    """The study table's headers in the app's order (see :func:`_live_row`), with the latest s/step."""
    return _live_row(detail, headers(detail.table, live_figures(detail)), LATEST_HEADER)


def live_cells(detail: StudyDetail) -> list[list[str]]:
    """The study table's cells (the same text as ``arctui study show``) in the app's order, with each
    run's latest s/step."""
    figures = live_figures(detail)
    return [_live_row(detail, row, S_PER_STEP.text(latest))
            for row, latest in zip(cells(detail.table, figures), detail.latest, strict=True)]


def _live_row(detail: StudyDetail, row: list[str], latest: str) -> list[str]:
    """The variant, its status, steps and figures (the latest s/step right after the median), then
    the parameters that differ: what moves comes first, so a narrow terminal shows it without
    scrolling sideways (the variant's name already tells the variants apart)."""
    n_params = len(detail.table.param_keys)
    variant, params, rest = row[0], row[1:1 + n_params], row[1 + n_params:]
    after_median = 3  # status, steps, s/step (median)
    return [variant, *rest[:after_median], latest, *rest[after_median:], *params]


def read_study_detail(store, study_ref, now: float, *, previous: StudyDetail | None = None,
                      max_points: int = LOSS_POINTS) -> StudyDetail:
    """One study's table (figures as of ``now``), latest paces and loss curves. With the ``previous``
    read, a run whose step has not moved since (every ended run) keeps its curve: a poll then reads
    the series of the running runs only."""
    table = read_study_table(store, study_ref, now=now)
    study = store.get_study(study_ref)
    known = {c.run_id: c for c in previous.run_curves} if previous is not None else {}
    latest = []
    curves = []
    for row in table.rows:
        run = row.run
        pace = store.metric_stats(run.id).get("seconds_per_step") if run.is_active and run.step is not None else None
        latest.append(pace.latest if pace is not None else None)
        cached = known.get(run.id)
        if cached is not None and cached.step == run.step and cached.loss.key == row.variant:
            curves.append(cached)
        elif run.step is None:
            curves.append(RunCurve(run.id, None, MetricSeries(row.variant, (), ())))
        else:
            curves.append(RunCurve(run.id, run.step, read_series(store, run.id, "loss", max_points, name=row.variant)))
    progress = study_progress(study, store.study_runs(study.id), now)
    return StudyDetail(table, tuple(latest), tuple(curves), progress)


# -- what the Studies screens ask (the functions `arctui study stop|resume|report` call) -------------

def request_study_stop(store, study_ref, db_url: str | None) -> list[str]:
    """Stop the study: its running runs stop gracefully, its queued ones are unqueued; one line per run."""
    from arctui.studies.control import stop_study

    return stop_study(store, study_ref, db_url=db_url)


def request_study_resume(store, study_ref, db_url: str | None) -> list[str]:
    """Queue the study's stopped and crashed runs again and restart its scheduler; one line per run
    (``UserError`` when nothing is left to resume)."""
    from arctui.studies.control import resume_study

    return resume_study(store, study_ref, db_url=db_url)


def default_report_dir(study_name: str) -> Path:
    """Where the app writes a study's report unless told otherwise: ``$ARCTUI_HOME/reports/NAME``."""
    from runner.paths import arctui_home

    return arctui_home() / "reports" / study_name


def write_study_report(store, study_ref, out_dir: Path | None = None) -> list[Path]:
    """``arctui study report STUDY --plots DIR``: the PNG figures and report.md; returns the files."""
    from arctui.studies.plots import write_report
    from runner.errors import UserError

    study = store.get_study(study_ref)
    try:
        return write_report(store, study.id, out_dir or default_report_dir(study.name))
    except UserError as exc:  # the app asked for a folder, not for a --plots flag
        raise UserError(str(exc).removeprefix("--plots: ")) from None
