"""The foreground view of a run: ``arctui launch`` without ``--detach`` (and ``resume``).

It only reads the store, a few times a second; the supervisor does the work. Ctrl-C asks the run to
stop gracefully (SIGTERM to its training process group: it saves a checkpoint); a second Ctrl-C kills
it. Returns the run's exit code. On a terminal it draws a rich Live panel; otherwise (a pipe, a CI
log) it prints one line per new step.
"""

from __future__ import annotations

import signal
import sys
import time
from datetime import UTC, datetime

from arctui.formatting import format_duration

EXIT_FOR_STATUS = {"completed": 0, "stopped": 143, "failed": 1, "crashed": 1}


def run_exit_code(run) -> int:
    if run.exit_code is not None and (run.status != "completed" or run.exit_code == 0):
        return int(run.exit_code)
    return EXIT_FOR_STATUS.get(run.status, 1)


def fmt(value, spec: str = ".4g", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def eta_seconds(summary) -> float | None:
    if summary.seconds_per_step and summary.max_steps and summary.last_step is not None:
        return max(0, summary.max_steps - summary.last_step) * summary.seconds_per_step
    return None


def status_line(summary) -> str:
    run = summary.run
    step = f"{summary.last_step or 0}/{summary.max_steps or '?'}"
    return (f"run {run.id} {run.name} {run.status} step {step} loss {fmt(summary.loss)} "
            f"eval {fmt(summary.eval_loss)} s/step {fmt(summary.seconds_per_step, '.3g')} "
            f"tok/s {fmt(summary.tokens_per_second, '.0f')} ETA {format_duration(eta_seconds(summary))}")


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


def render(summary, gpu_samples, note: str = ""):
    from rich.markup import escape
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    run = summary.run
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    total = summary.max_steps or 0
    done = summary.last_step or 0
    grid.add_row("progress", ProgressBar(total=max(total, 1), completed=min(done, max(total, 1)), width=40))
    grid.add_row("step", f"{done}/{total or '?'}")
    grid.add_row("loss", f"{fmt(summary.loss)}   eval loss {fmt(summary.eval_loss)}")
    grid.add_row("speed", f"{fmt(summary.seconds_per_step, '.3g')} s/step   "
                          f"{fmt(summary.tokens_per_second, '.0f')} tokens/s")
    grid.add_row("VRAM", escape(vram_text(summary, gpu_samples)))
    grid.add_row("ETA", format_duration(eta_seconds(summary)))
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
    last_step = None
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
            if live is not None:
                shown = note or ("waiting in the GPU queue" if summary.run.status == "queued" else "")
                live.update(render(summary, store.latest_gpu_samples(run_id), shown))
            elif summary.last_step != last_step:
                last_step = summary.last_step
                print(status_line(summary), file=out, flush=True)
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
    print(f"run {run.id} ({run.name}) {run.status} in {format_duration(took)}"
          + (f": {run.last_error.splitlines()[0]}" if run.status in ("failed", "crashed") and run.last_error else ""),
          file=sys.stderr, flush=True)
    return run_exit_code(run)
