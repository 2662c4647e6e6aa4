"""First-come-first-served GPU queue for ``gpus: auto`` runs, across every arctui process on a machine.

A queued run's supervisor loops: under an exclusive ``flock`` on ``$ARCTUI_HOME/gpu-queue.lock`` it
checks that its run is the oldest queued ``auto`` run in the store, and that enough GPUs are free:
not held by a running arctui run (the store's ``gpu_ids``) and not used by a foreign process beyond
``ARCTUI_GPU_BUSY_MB`` of memory (default 1024 MiB). If so it records the GPUs and marks the run
``running`` before letting go of the lock, so the next supervisor in line sees them taken. Strict
FCFS: a younger run never overtakes an older one that waits for more GPUs.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager

from runner.paths import arctui_home, make_private_dir

QUEUE_POLL_SECONDS = 2.0


def busy_threshold_mb() -> float:
    return float(os.environ.get("ARCTUI_GPU_BUSY_MB", "1024"))


@contextmanager
def queue_lock():
    path = arctui_home() / "gpu-queue.lock"
    make_private_dir(path.parent)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def choose_gpus(inventory: Iterable, held: set[int], need: int, busy_mb: float) -> tuple[int, ...] | None:
    """The ``need`` lowest-index GPUs that are neither held by arctui nor busy; None if too few.

    ``inventory`` items have ``index`` and ``memory_used_mb`` (None when unknown).
    """
    free = [
        g.index for g in sorted(inventory, key=lambda g: g.index)
        if g.index not in held and (g.memory_used_mb or 0) <= busy_mb
    ]
    return tuple(free[:need]) if len(free) >= need else None


def first_in_line(store, run_id: int) -> bool:
    """True when ``run_id`` is the oldest queued run that waits for ``auto`` GPUs."""
    for run in store.active_runs():  # oldest first
        if run.status == "queued" and (run.config or {}).get("gpus") == "auto":
            return run.id == run_id
    return False


def try_take_gpus(store, run_id: int, need: int, inventory: Callable[[], list],
                  busy_mb: float | None = None) -> tuple[tuple[int, ...] | None, bool]:
    """One attempt under the queue lock: (gpu_ids or None, still_queued)."""
    from db.errors import IllegalTransitionError

    busy_mb = busy_threshold_mb() if busy_mb is None else busy_mb
    with queue_lock():
        if store.get_run(run_id).status != "queued":
            return None, False
        if not first_in_line(store, run_id):
            return None, True
        held = {i for r in store.runs_holding_gpus() for i in r.gpu_ids}
        chosen = choose_gpus(inventory(), held, need, busy_mb)
        if chosen is None:
            return None, True
        store.update_run(run_id, gpu_ids=list(chosen))
        try:
            store.set_status(run_id, "running")
        except IllegalTransitionError:
            return None, False
        return chosen, True


def wait_for_gpus(store, run_id: int, need: int, *, inventory: Callable[[], list] | None = None,
                  poll: float = QUEUE_POLL_SECONDS, log: Callable[[str], None] = print) -> tuple[int, ...] | None:
    """Block until the run gets ``need`` GPUs (returned; the run is then ``running``), or return None
    when it leaves the queue (stopped) meanwhile."""
    if inventory is None:
        from arctui.supervisor.gpus import list_gpus as inventory
    said = False
    while True:
        chosen, queued = try_take_gpus(store, run_id, need, inventory)
        if chosen is not None:
            return chosen
        if not queued:
            return None
        if not said:
            log(f"queued: waiting for {need} free GPU(s)")
            said = True
        time.sleep(poll)
