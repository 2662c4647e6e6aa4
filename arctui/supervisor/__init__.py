"""Launch runs, watch them, queue them for GPUs, and recover them when a supervisor dies.

Public API (see docs/supervisor.md)::

    from arctui.supervisor import open_store, launch_run, stop_run, resume_run, RunFolder

    store = open_store(db_url)        # RunStore.open + recovery of orphaned runs
    run = launch_run(store, cfg, db_url=db_url)

Modules: ``launch`` (start/stop/resume, in the calling process), ``supervise`` (the detached
supervisor process, ``python -m arctui.supervisor RUN_ID``), ``tail`` (events.jsonl reader),
``queue`` (FCFS GPU queue), ``recovery``, ``live`` (the foreground display), ``gpus`` (NVML).
Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import sys

# Imported on first use (PEP 562), so `arctui runs` pays only for what it touches.
_LAZY = {
    "launch_run": "arctui.supervisor.launch",
    "prepare_config": "arctui.supervisor.launch",
    "resume_run": "arctui.supervisor.launch",
    "stop_run": "arctui.supervisor.launch",
    "wait_for_final": "arctui.supervisor.launch",
    "RunFolder": "arctui.supervisor.runfolder",
}
__all__ = ["RunFolder", "launch_run", "prepare_config", "open_store", "resume_run", "stop_run", "wait_for_final"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(db_url: str | None, *, recover: bool = True, quiet: bool = False):
    """Open the run store and repair runs whose supervisor died (one stderr line per repair)."""
    from db.store import RunStore

    store = RunStore.open(db_url)
    if recover and store.active_runs():  # the common case, nothing active, skips the imports below
        from arctui.supervisor.recovery import recover_orphans

        try:
            actions = recover_orphans(store, db_url)
        except BaseException:
            store.close()
            raise
        if not quiet:
            for line in actions:
                print(f"arctui: {line}", file=sys.stderr)
    return store
