"""The foreground view of a run: ``arctui launch`` without ``--detach`` (and ``resume``), and what
every live view reads of a run beyond its summary: the current phase, an ETA that counts the
evaluations still to come, and the training processes' memory and CPU use.

:func:`watch_run` only reads the store, a few times a second; the supervisor does the work. Ctrl-C
asks the run to stop gracefully (SIGTERM to its training process group: it saves a checkpoint); a
second Ctrl-C kills it. Returns the run's exit code. On a terminal it draws a rich Live panel whose
elapsed time ticks every refresh; otherwise (a pipe, a CI log) it prints one line per new step or phase.

The phase comes from the runner's ``phase`` events (``docs/events.md``), kept by the store, and,
once training has ended while the run is still running, from the events of the evaluation after
training in the run's newest ``eval-*/`` folder (never ingested: :mod:`arctui.supervisor.evaluation`).
The Run screen reads the same :class:`LiveState` through :mod:`arctui.views`.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from arctui.formatting import eta_seconds, format_duration, format_number
from arctui.supervisor.runfolder import RunFolder

EXIT_FOR_STATUS = {"completed": 0, "stopped": 143, "failed": 1, "crashed": 1}


def run_exit_code(run) -> int:
    if run.status == "stopped" and run.exit_code == 0:
        return EXIT_FOR_STATUS["stopped"]  # a clean stop: the launcher waited for the checkpoint
    if run.exit_code is not None and (run.status != "completed" or run.exit_code == 0):
        return int(run.exit_code)
    return EXIT_FOR_STATUS.get(run.status, 1)


def fmt(value, spec: str = ".4g", none: str = "-") -> str:
    return none if value is None else format(value, spec)


# -- phases ----------------------------------------------------------------------------------------
# What a phase is called on screen; done/total follow when the runner gives them.
PHASE_LABELS = {
    "loading_model": "loading the model",
    "train": "training",
    "eval_loss": "eval loss",
    "saving_checkpoint": "saving a checkpoint",
    "predictions": "evaluating predictions",
    "evaluation": "starting the evaluation after training",
}
# Phases whose progress is the run's step counter (the runner's done/total only mark where it began).
STEP_COUNTED_PHASES = frozenset({"train"})
# Kept events read to find the phase: the newest phase and its earlier events (for its speed).
PHASE_EVENTS = 200


@dataclass(frozen=True)
class Phase:
    """What the run is doing now: ``name`` (a key of :data:`PHASE_LABELS`), since when (Unix time),
    its progress ``done``/``total`` when known and the speed measured since it began (units/s)."""

    name: str
    since: float
    done: int | None = None
    total: int | None = None
    rate: float | None = None

    @property
    def counted(self) -> bool:
        """Whether the phase has progress of its own to show (training's is the step counter)."""
        return bool(self.total) and self.name not in STEP_COUNTED_PHASES

    @property
    def label(self) -> str:
        label = PHASE_LABELS.get(self.name, self.name.replace("_", " "))
        if self.counted:
            label += f" {self.done or 0}/{self.total}"
        return label

    @property
    def share(self) -> float | None:
        """done / total (0..1), None when the phase has no counted progress."""
        if not self.counted:
            return None
        return max(0.0, min(1.0, (self.done or 0) / self.total))

    def remaining_seconds(self) -> float | None:
        """The rest of this phase at its measured speed (None before two readings)."""
        if not self.total or not self.rate:
            return None
        return max(0, self.total - (self.done or 0)) / self.rate

    def text(self, now: float) -> str:
        """``eval loss 3/10 for 12s``."""
        return f"{self.label} for {format_duration(max(0.0, now - self.since))}"


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def phase_of(events: list[tuple[float, dict]]) -> Phase | None:
    """The current phase from ``(time, event)`` pairs, oldest first: the newest ``phase`` event
    (an evaluation's ``eval_progress`` counts as the ``predictions`` phase), since the first event
    of the unbroken run of events of that phase, with its speed measured over that run."""
    run: list[tuple[float, str, int | None, int | None]] = []
    for when, event in events:
        kind = event.get("event")
        if kind == "phase" and isinstance(event.get("phase"), str):
            name = event["phase"]
        elif kind == "eval_progress":
            name = "predictions"
        else:
            continue
        entry = (when, name, _count(event.get("done")), _count(event.get("total")))
        if run and run[-1][1] != name:
            run = []
        run.append(entry)
    if not run:
        return None
    first, last = run[0], run[-1]
    counted = [e for e in run if e[2] is not None]
    rate = None
    if len(counted) >= 2 and counted[-1][0] > counted[0][0] and counted[-1][2] > counted[0][2]:
        rate = (counted[-1][2] - counted[0][2]) / (counted[-1][0] - counted[0][0])
    total = next((e[3] for e in reversed(run) if e[3] is not None), None)  # the newest one given
    return Phase(last[1], first[0], last[2], total, rate)


def _evaluation_phase(run, ended_at: float) -> Phase:
    """The evaluation after training, from the newest ``eval-*/events.jsonl`` written since training
    ended (``ended_at``); "starting" until it has written something."""
    from runner.events import read_events

    newest = None
    for path in RunFolder.of(run).root.glob("eval-*/events.jsonl"):
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        if mtime >= ended_at and (newest is None or mtime > newest[0]):
            newest = (mtime, path)
    if newest is not None:
        try:
            events = read_events(newest[1])
        except OSError:
            events = []
        timed = [(e["time"], e) for e in events if isinstance(e.get("time"), int | float)]
        phase = phase_of(timed)
        if phase is not None:
            return phase
    return Phase("evaluation", ended_at)


def evaluations_left(config: dict, step: int | None, max_steps: int | None) -> int:
    """How many eval-loss passes the trainer still makes after ``step``, when there is a validation
    set: one every ``eval_steps``, and one at the last step with ``eval_at_end``."""
    every = config.get("eval_steps")
    if not config.get("val_dataset") or not max_steps or not isinstance(every, int) or every <= 0:
        return 0
    done = step or 0
    left = max_steps // every - done // every
    if config.get("eval_at_end") and max_steps % every and done < max_steps:
        left += 1
    return max(0, left)


@dataclass(frozen=True)
class LiveState:
    """What a live view shows beyond the run's summary."""

    phase: Phase | None = None
    evals_left: int = 0
    """Eval-loss passes still to come in training (the current one not counted)."""
    eval_seconds: float | None = None
    """How long the latest eval-loss pass took."""
    evaluation_pending: bool = False
    """Whether an evaluation after training is still to run (its duration is not known yet)."""

    def _pass_seconds(self) -> float | None:
        """How long one eval-loss pass takes: the last one's duration, else the one under way's at
        its current speed."""
        phase = self.phase
        if self.eval_seconds is None and phase is not None and phase.name == "eval_loss" and phase.rate:
            return phase.total / phase.rate
        return self.eval_seconds

    def eta(self, step: int | None, max_steps: int | None, seconds_per_step: float | None) -> float | None:
        """Seconds left that can be measured: the training steps at ``seconds_per_step``, the rest
        of the current phase at its speed and the eval-loss passes to come at :meth:`_pass_seconds`
        each (:meth:`unmeasured` names what is not counted yet). None while training's own pace
        (or, once it ended, the evaluation's) is unknown."""
        phase = self.phase
        if phase is not None and phase.name in ("predictions", "evaluation"):
            return phase.remaining_seconds()
        total = eta_seconds(step, max_steps, seconds_per_step)
        if total is None:
            return None
        if phase is not None and phase.name == "eval_loss":
            total += phase.remaining_seconds() or 0.0
        if self.evals_left and self._pass_seconds() is not None:
            total += self.evals_left * self._pass_seconds()
        return total

    def unmeasured(self) -> str:
        """What :meth:`eta` cannot count yet, to write after it: `` + eval loss`` (passes not timed
        yet), `` + evaluation`` (after training), `` + evals`` (both), or nothing."""
        phase = self.phase
        if phase is not None and phase.name in ("predictions", "evaluation"):
            return ""
        loss = bool(self.evals_left and self._pass_seconds() is None) or (
            phase is not None and phase.name == "eval_loss" and phase.remaining_seconds() is None)
        if loss and self.evaluation_pending:
            return " + evals"
        return " + eval loss" if loss else " + evaluation" if self.evaluation_pending else ""


def read_live_state(store, run) -> LiveState:
    """The :class:`LiveState` of a store ``Run`` (an empty one once it has ended)."""
    if run.status != "running":
        return LiveState()
    kept = store.recent_events(run.id, limit=PHASE_EVENTS, kinds=["phase", "start", "end", "eval"])
    config = run.config if isinstance(run.config, dict) else {}
    eval_seconds = next((e.data.get("eval_seconds") for e in kept if e.kind == "eval"
                         and isinstance(e.data.get("eval_seconds"), int | float)), None)
    newest = next((e for e in kept if e.kind != "eval"), None)
    if newest is not None and newest.kind == "end":
        # training is over and the run still runs: the supervisor's evaluation after training
        return LiveState(_evaluation_phase(run, newest.time))
    # this launch's phases only (a resumed run's earlier launch ended with `end`, and its training
    # began at `start`; `loading_model` comes just before `start`)
    recent = []
    for event in kept:
        if event.kind == "end" or (event.kind == "start" and recent):
            break
        if event.kind == "phase":
            recent.append((event.time, event.data))
    phase = phase_of(recent[::-1])
    summary = store.get_summary(run.id)
    # a pass under way runs at the step already logged: it is not among those still to come
    left = evaluations_left(config, summary.last_step, summary.max_steps)
    return LiveState(phase, left, eval_seconds, bool(config.get("eval_after_training")))


# -- the training processes' memory and CPU (CPU runs have no GPU panel) ----------------------------
@dataclass(frozen=True)
class ProcessUsage:
    """The resident memory and CPU use of a run's training process group."""

    processes: int
    rss_bytes: int
    cpu_share: float | None
    """CPU time per wall second since the previous reading (1.0 = one core busy); None at first."""

    @property
    def rss_text(self) -> str:
        """``2.78 GB``, or ``850 MB`` below a gigabyte."""
        gib = self.rss_bytes / 1024**3
        return f"{format_number(gib)} GB" if gib >= 1 else f"{format_number(self.rss_bytes / 1024**2)} MB"

    @property
    def cpu_text(self) -> str:
        """``150%`` (100% = one core busy), ``-`` before two readings."""
        return "-" if self.cpu_share is None else f"{self.cpu_share * 100:.0f}%"

    def text(self) -> str:
        plural = "es" if self.processes != 1 else ""
        return f"RSS {self.rss_text}  CPU {self.cpu_text} ({self.processes} process{plural})"


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _group_stats(pgid: int, proc: Path) -> tuple[int, int, int]:
    """(processes, rss bytes, cpu ticks) of the processes in group ``pgid``, from ``/proc/*/stat``."""
    count = rss = ticks = 0
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        fields = text[text.rfind(")") + 2:].split()
        # after "(comm)": state ppid pgrp ... utime(12th) stime(13th) ... rss(22nd), 0-based from state
        if len(fields) < 22 or int(fields[2]) != pgid:
            continue
        count += 1
        ticks += int(fields[11]) + int(fields[12])
        rss += int(fields[21]) * _PAGE
    return count, rss, ticks


@dataclass
class ProcessSampler:
    """Reads a run's process group from ``/proc``; CPU use is the change since the last reading, so
    keep one sampler per view and call :meth:`read` on each refresh."""

    proc: Path = Path("/proc")
    _last: dict[int, tuple[float, int]] = field(default_factory=dict)

    def read(self, run) -> ProcessUsage | None:
        """The usage of ``run``'s training processes, None when they are not on this machine."""
        pgid = run.pgid
        if not pgid or run.status != "running" or (run.host and run.host != socket.gethostname()):
            return None
        if not self.proc.is_dir():
            return None
        count, rss, ticks = _group_stats(pgid, self.proc)
        if not count:
            return None
        now = time.monotonic()
        previous = self._last.get(pgid)
        self._last = {pgid: (now, ticks)}
        share = None
        if previous is not None and now > previous[0] and ticks >= previous[1]:
            share = (ticks - previous[1]) / _TICKS / (now - previous[0])
        return ProcessUsage(count, rss, share)


# -- the launch box ---------------------------------------------------------------------------------
def status_line(summary, state: LiveState | None = None, now: float | None = None) -> str:
    run = summary.run
    state = state or LiveState()
    step = f"{summary.last_step or 0}/{summary.max_steps or '?'}"
    phase = f" [{state.phase.label}]" if state.phase is not None else ""
    eta = state.eta(summary.last_step, summary.max_steps, summary.seconds_per_step)
    return (f"run {run.id} {run.name} {run.status}{phase} step {step} loss {fmt(summary.loss)} "
            f"eval {fmt(summary.eval_loss)} s/step {fmt(summary.seconds_per_step, '.3g')} "
            f"tok/s {fmt(summary.tokens_per_second, '.0f')} ETA {format_duration(eta)}")


def vram_text(summary, gpu_samples) -> str:
    parts = []
    for g in sorted(gpu_samples, key=lambda g: g.gpu_index):
        used = fmt((g.memory_used_mb or 0) / 1024, ".1f")
        total = fmt((g.memory_total_mb or 0) / 1024, ".0f")
        parts.append(f"GPU{g.gpu_index} {used}/{total} GB {fmt(g.utilization_pct, '.0f')}%")
    if not parts:
        if not summary.run.gpu_ids:
            return "cpu"
        return f"peak {fmt(summary.peak_vram_gb, '.1f')} GB (torch)"
    return "  ".join(parts)


def resource_text(summary, gpu_samples, usage: ProcessUsage | None) -> str:
    """GPU readings; on CPU the training processes' memory and CPU use instead."""
    if not gpu_samples and not summary.run.gpu_ids and usage is not None:
        return usage.text()
    return vram_text(summary, gpu_samples)


def render(summary, gpu_samples, note: str = "", *, state: LiveState | None = None,
           usage: ProcessUsage | None = None, now: float | None = None, stopping: bool = False):
    """The launch box: progress, the current phase with its own bar, losses, speed, GPU (or CPU
    process) use, elapsed time and an ETA (none once a stop was asked for: the run ends early)."""
    from rich.markup import escape
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    run = summary.run
    state = state or LiveState()
    now = time.time() if now is None else now
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    total = summary.max_steps or 0
    done = summary.last_step or 0
    grid.add_row("progress", ProgressBar(total=max(total, 1), completed=min(done, max(total, 1)), width=40))
    grid.add_row("step", f"{done}/{total or '?'}")
    phase = state.phase
    if phase is not None:
        grid.add_row("phase", escape(phase.text(now)))
        if phase.share is not None:
            grid.add_row("", ProgressBar(total=phase.total, completed=min(phase.done or 0, phase.total), width=40))
    grid.add_row("loss", f"{fmt(summary.loss)}   eval loss {fmt(summary.eval_loss)}")
    grid.add_row("speed", f"{fmt(summary.seconds_per_step, '.3g')} s/step   "
                          f"{fmt(summary.tokens_per_second, '.0f')} tokens/s")
    label = "CPU" if usage is not None and not gpu_samples and not run.gpu_ids else "VRAM"
    grid.add_row(label, escape(resource_text(summary, gpu_samples, usage)))
    if run.started_at is not None:
        ended = run.ended_at.timestamp() if run.ended_at else now
        grid.add_row("elapsed", format_duration(max(0.0, ended - run.started_at.timestamp())))
    if not stopping and run.status in ("queued", "running"):
        eta = state.eta(summary.last_step, summary.max_steps, summary.seconds_per_step)
        grid.add_row("ETA", format_duration(eta) + (state.unmeasured() if eta is not None else ""))
    if note:
        grid.add_row("", f"[yellow]{escape(note)}[/]")
    return Panel(grid, title=escape(f"run {run.id} {run.name} [{run.status}]"), expand=False)


class _Interrupts:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum, frame) -> None:
        self.count += 1


def watch_run(store, run_id: int, *, db_url: str | None, poll: float = 0.5, out=None) -> int:
    """Show the run until it ends; Ctrl-C stops it (twice: kills). Returns the run's exit code."""
    from arctui.supervisor.launch import stop_run
    from arctui.supervisor.recovery import recover_if_orphaned

    out = out or sys.stdout
    interrupts = _Interrupts()
    previous = signal.signal(signal.SIGINT, interrupts)
    acted = 0
    note = ""
    live = None
    last_shown = None
    sampler = ProcessSampler()
    next_check = time.monotonic() + 2.0
    try:
        if out.isatty():
            from rich.console import Console
            from rich.live import Live

            live = Live(console=Console(file=out), refresh_per_second=4, transient=False)
            live.start()
        while True:
            if interrupts.count > acted:
                acted = interrupts.count
                kill = acted >= 2
                note = "killing..." if kill else "stopping: saving a checkpoint (Ctrl-C again to kill)"
                if live is None:
                    print(f"arctui: {note}", file=sys.stderr, flush=True)
                try:
                    stop_run(store, run_id, kill=kill)
                except Exception as exc:  # already ending: keep watching
                    note = str(exc)
            summary = store.get_summary(run_id)
            state = read_live_state(store, summary.run)
            if live is not None:
                shown = note or ("waiting in the GPU queue" if summary.run.status == "queued" else "")
                live.update(render(summary, store.latest_gpu_samples(run_id), shown, state=state,
                                   usage=sampler.read(summary.run), stopping=acted > 0))
            else:
                # one line per new step or new phase (a long phase is no longer silent)
                seen = (summary.last_step, state.phase.name if state.phase else None)
                if seen != last_shown:
                    last_shown = seen
                    print(status_line(summary, state), file=out, flush=True)
            if summary.run.status not in ("queued", "running"):
                break
            if time.monotonic() >= next_check:
                # The supervisor may have died under us: recovery re-attaches or records the end.
                recover_if_orphaned(store, summary.run, db_url)
                next_check = time.monotonic() + 2.0
            time.sleep(poll)
    finally:
        if live is not None:
            live.stop()
        signal.signal(signal.SIGINT, previous)
    run = store.get_run(run_id)
    ended = run.ended_at or datetime.now(UTC)
    took = (ended - run.started_at).total_seconds() if run.started_at else None
    extra = ""
    if run.status in ("failed", "crashed") and run.last_error:
        extra = f": {run.last_error.splitlines()[0]}"
    elif run.status == "completed" and run.last_error:  # only the evaluation after training's note
        extra = f"; {run.last_error.splitlines()[0]}"
    print(f"run {run.id} ({run.name}) {run.status} in {format_duration(took)}{extra}", file=sys.stderr, flush=True)
    return run_exit_code(run)
