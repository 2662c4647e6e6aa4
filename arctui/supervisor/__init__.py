"""Launch runs, watch them, queue them for GPUs, and recover them when a supervisor dies.

Public API (see docs/supervisor.md)::

    from arctui.supervisor import open_store, launch_run, stop_run, resume_run, RunFolder

    store = open_store(db_url)        # RunStore.open + recovery of orphaned runs
    run = launch_run(store, cfg, db_url=db_url)

Layers, highest first; a module imports only from layers below its own (``|`` separates modules of
one layer, which do not import each other). Checked by ``tests/supervisor/test_layers.py``:

    __main__                                  python -m arctui.supervisor RUN_ID
    supervise | live                          the supervisor process; the foreground view
    launch                                    launch / stop / resume / wait, in arctui commands
    recovery | evaluation                     orphaned runs; the one evaluation path (arctui eval too)
    slurm                                     the Slurm executor: batch script, sbatch/squeue/scancel
    outcome | queue | spawn | resolve         stream state, ingest, finish; FCFS GPU queue;
                                              starting processes; config, model refs and GPUs
    gpus | runfolder | tail | process         NVML; the run folder and its lock; events.jsonl;
                                              process groups

This package's ``__init__`` (``open_store`` and the lazy names below) sits above all of them.
Nothing here imports torch at import time.
"""

from __future__ import annotations

import importlib
import sys

# Imported on first use (PEP 562), so `arctui runs` pays only for what it touches.
_LAZY = {
    "launch_run": "arctui.supervisor.launch",
    "prepare_config": "arctui.supervisor.resolve",
    "resolve_model": "arctui.supervisor.resolve",
    "resume_run": "arctui.supervisor.launch",
    "stop_run": "arctui.supervisor.launch",
    "wait_for_final": "arctui.supervisor.launch",
    "RunFolder": "arctui.supervisor.runfolder",
}
__all__ = ["RunFolder", "launch_run", "open_store", "prepare_config", "resolve_model", "resume_run", "stop_run",
           "wait_for_final"]
# Highest layer first; tests/supervisor/test_layers.py checks the imports against it.
LAYERS = (
    ("__main__",),
    ("supervise", "live"),
    ("launch",),
    ("recovery", "evaluation"),
    ("slurm",),
    ("outcome", "queue", "spawn", "resolve"),
    ("gpus", "runfolder", "tail", "process"),
)


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
