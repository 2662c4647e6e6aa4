"""A study's queue: its runs wait in the store, and whoever looks starts them as slots free up.

The queue is the store: a study's runs are created ``queued`` and without a supervisor; such a run
waits for its study (:mod:`arctui.supervisor.recovery` leaves it alone). :func:`advance` starts the
next waiting runs (oldest first) while fewer than the study's ``max_parallel`` runs are busy, a busy
run being one that is running or whose supervisor is alive (it may wait for GPUs in the
cross-process FCFS queue, :mod:`arctui.supervisor.queue`, which hands out the GPUs). ``advance`` is
idempotent and holds a per-study ``flock`` while it decides, so any number of processes may call it:

- the detached scheduler ``python -m arctui.studies.scheduler STUDY_ID`` (started by ``arctui study
  launch|resume``; one per study, its own lock) calls it every half second until the study is done;
- ``arctui study launch`` in the foreground and ``arctui study show|list`` call it too, and restart
  the scheduler when it died: killing it loses nothing, the next command picks the queue up.

When no run of an active study is queued or running, the study is ``done``. A stopped study starts
nothing (``arctui study stop`` also stops its runs); ``arctui study resume`` queues its stopped and
crashed runs again (they continue from their latest checkpoint) and makes it active.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from arctui.supervisor.runfolder import try_flock
from runner.paths import arctui_home

POLL_SECONDS = 0.5
RECOVERY_SECONDS = 5.0


def studies_dir() -> Path:
    path = arctui_home() / "studies"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def study_lock(study_id: int) -> Iterator[None]:
    """Exclusive, blocking: one process at a time decides which of the study's runs start."""
    with open(studies_dir() / f"{study_id}.lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def parallel_limit(spec: dict, n_runs: int) -> int:
    """How many runs of the study may be busy at once: ``max_parallel`` when set; else all of them
    for ``gpus: auto`` (the GPU queue decides) and one on CPU or pinned GPUs."""
    if spec.get("max_parallel"):
        return int(spec["max_parallel"])
    return max(1, n_runs) if spec.get("run_gpus") == "auto" else 1


def _folder(run):
    from arctui.supervisor import RunFolder

    return RunFolder.of(run)


def is_waiting(run) -> bool:
    """Queued in its study's queue: no supervisor has taken it yet."""
    return run.status == "queued" and run.supervisor_pid is None and not _folder(run).supervisor_alive()


def advance(store, study_ref, db_url: str | None) -> list[int]:
    """Start the study's next waiting runs while slots are free; mark it done when nothing is left.
    Returns the ids of the runs started."""
    from arctui.supervisor.spawn import spawn_supervisor

    study = store.get_study(study_ref)
    if study.status != "active":
        return []
    started: list[int] = []
    with study_lock(study.id):
        runs = [s.run for s in store.study_runs(study.id)]
        waiting = [r for r in runs if r.status == "queued" and is_waiting(r)]
        waiting_ids = {r.id for r in waiting}
        busy = sum(1 for r in runs if r.status == "running" or (r.status == "queued" and r.id not in waiting_ids))
        free = parallel_limit(study.spec, len(runs)) - busy
        for run in waiting[:max(0, free)]:
            folder = _folder(run)
            folder.create()
            try:
                if spawn_supervisor(run.id, db_url, folder):
                    started.append(run.id)
            except OSError as exc:
                store.set_status(run.id, "failed", error=f"could not start the supervisor: {exc}")
        if not started and not waiting and busy == 0:
            store.set_study_status(study.id, "done")
    return started


def recover_study(store, study_ref, db_url: str | None) -> list[str]:
    """Repair the study's runs whose supervisor died (as every arctui command does for all runs)."""
    from arctui.supervisor.recovery import recover_orphans

    ids = [s.run.id for s in store.study_runs(study_ref) if s.run.status in ("queued", "running")]
    return recover_orphans(store, db_url, only=ids) if ids else []


# -- the detached scheduler ----------------------------------------------------------------------

def _scheduler_lock_path(study_id: int) -> Path:
    return studies_dir() / f"{study_id}.scheduler.lock"


def scheduler_alive(study_id: int) -> bool:
    fd = try_flock(_scheduler_lock_path(study_id))
    if fd is None:
        return True
    os.close(fd)
    return False


def ensure_scheduler(study_id: int, db_url: str | None) -> bool:
    """Start the study's detached scheduler unless one runs. Returns True when one was started."""
    from arctui.supervisor.spawn import python_env
    from runner.paths import default_db_url

    fd = try_flock(_scheduler_lock_path(study_id))
    if fd is None:
        return False
    env = python_env(ARCTUI_DB=db_url or default_db_url(), ARCTUI_HOME=str(arctui_home()))
    try:
        with open(studies_dir() / f"{study_id}.scheduler.log", "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "arctui.studies.scheduler", str(study_id), "--lock-fd", str(fd)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=(fd,), env=env,
            )
    finally:
        os.close(fd)
    return True


def run_scheduler(store, study_id: int, db_url: str | None, *, poll: float = POLL_SECONDS) -> None:
    """Advance the study until it is no longer active (done or stopped)."""
    next_recovery = 0.0
    while True:
        if time.monotonic() >= next_recovery:
            for line in recover_study(store, study_id, db_url):
                print(f"recovery: {line}", flush=True)
            next_recovery = time.monotonic() + RECOVERY_SECONDS
        for run_id in advance(store, study_id, db_url):
            print(f"{time.strftime('%H:%M:%S')} started run {run_id}", flush=True)
        if store.get_study(study_id).status != "active":
            return
        time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m arctui.studies.scheduler")
    parser.add_argument("study_id", type=int)
    parser.add_argument("--lock-fd", type=int, default=None, help="inherited descriptor holding the lock")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from db.store import RunStore

    fd = args.lock_fd if args.lock_fd is not None else try_flock(_scheduler_lock_path(args.study_id))
    if fd is None:
        print(f"another scheduler runs study {args.study_id}; exiting", flush=True)
        return 0
    db_url = os.environ.get("ARCTUI_DB")
    store = RunStore.open(db_url)
    try:
        print(f"{time.strftime('%H:%M:%S')} scheduler pid {os.getpid()} for study {args.study_id}", flush=True)
        run_scheduler(store, args.study_id, db_url)
        print(f"{time.strftime('%H:%M:%S')} study {args.study_id} is {store.get_study(args.study_id).status}; exiting",
              flush=True)
        return 0
    finally:
        store.close()
        os.close(fd)


if __name__ == "__main__":
    raise SystemExit(main())
