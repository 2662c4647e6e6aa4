"""Find runs whose supervisor died (kill -9, reboot) and put them right.

Called by every arctui command that opens the store (:func:`arctui.supervisor.open_store`). For each
queued or running run of this host whose supervisor lock is free:

- training process group still alive -> spawn a new supervisor that re-attaches and ingests from where
  the store's cursor left off (no lost or duplicated points); a Slurm run with a job id likewise (its
  supervisor asks Slurm whether the job still runs, and records the end Slurm gives when not);
- queued -> spawn a new supervisor that goes back into the queue;
- otherwise -> ingest what the event file still holds (lines that do not fit quarantined and logged in
  ``supervisor.log``) and record the end the runner wrote, or the exit code the supervisor left in the
  run folder (``exit-code``), or ``crashed`` with the last error lines when there is neither; a run
  folder that disappeared makes it ``failed``. No run stays ``running`` forever.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC
from pathlib import Path

from arctui.supervisor.outcome import StreamState, append_log, finish, ingest, report_quarantine
from arctui.supervisor.process import group_alive
from arctui.supervisor.runfolder import RunFolder
from arctui.supervisor.spawn import spawn_supervisor
from arctui.supervisor.tail import EventTailer
from db.errors import UnstorableValueError

# A queued run without a supervisor yet is left alone this long (launch is between create and spawn).
LAUNCH_GRACE_SECONDS = 60.0


def boot_time() -> float | None:
    try:
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def _training_alive(run) -> bool:
    started = run.started_at.timestamp() if run.started_at else None
    booted = boot_time()
    if started is not None and booted is not None and started < booted:
        return False  # the machine rebooted since: that process group number is someone else's now
    return group_alive(run.pgid)


def supervisor_alive(pid: int | None, run_id: int) -> bool:
    """Whether ``pid`` is a live ``python -m arctui.supervisor RUN_ID`` process: the lock file is the
    first test of liveness, this the second (a deleted lock must not give a run two supervisors)."""
    if not pid:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False  # gone (or not Linux: then the lock alone decides, as before)
    args = [a.decode(errors="replace") for a in argv if a]
    return any(args[i:i + 3] == ["-m", "arctui.supervisor", str(run_id)] for i in range(len(args)))


def recover_orphans(store, db_url: str | None, *, only: list[int] | None = None) -> list[str]:
    """Repair orphaned runs; returns one line per action taken."""
    host = socket.gethostname()
    actions: list[str] = []
    now = time.time()
    for run in store.active_runs():
        if only is not None and run.id not in only:
            continue
        if run.host and run.host != host:
            continue
        if run.supervisor_pid is None and run.status == "queued":
            if run.study_id is not None:
                continue  # waits in its study's queue; arctui.studies.scheduler starts it when a slot frees
            created = run.created_at.replace(tzinfo=run.created_at.tzinfo or UTC).timestamp()
            if now - created < LAUNCH_GRACE_SECONDS:
                continue
        folder = RunFolder.of(run)
        vanished = not folder.root.is_dir()  # try_lock makes the folder again
        fd = folder.try_lock()
        if fd is None:
            continue  # its supervisor is alive
        if supervisor_alive(run.supervisor_pid, run.id):
            os.close(fd)  # the lock file was deleted under a live supervisor: it still watches the run
            continue
        on_slurm = run.executor == "slurm" and run.job_id is not None
        if run.status == "queued" or on_slurm or (run.status == "running" and _training_alive(run)):
            # A Slurm run's new supervisor asks Slurm about its job: it re-attaches, or records the
            # job's end from Slurm's end state.
            spawn_supervisor(run.id, db_url, folder, lock_fd=fd)
            what = f"re-attached to Slurm job {run.job_id}" if on_slurm else \
                "re-attached to its training process" if run.status == "running" else "back in the queue"
            actions.append(f"run {run.id} ({run.name}): supervisor was gone; {what}")
            continue
        try:
            state = StreamState()
            refused = None
            tailer = EventTailer(folder.events_file)
            try:
                ingest(store, run.id, tailer, state)
            except UnstorableValueError as exc:  # permanent: record it instead of failing every command
                refused = f"the store refused {exc}"
            report_quarantine(tailer, set(), append_log(folder))
            # the exit code a supervisor persisted before the store failed it at the end of the run
            code = run.exit_code if run.exit_code is not None else folder.recorded_exit_code()
            status = finish(store, run.id, folder, state, code, attached=False, refused=refused,
                            quarantined=tailer.bad_lines, vanished=vanished or None, retry_window=0)
            why = "its run folder disappeared" if vanished else "supervisor and training were gone"
            actions.append(f"run {run.id} ({run.name}): {why}; marked {status}")
        finally:
            os.close(fd)
            if vanished:
                _unmake(folder)
    return actions


def _unmake(folder: RunFolder) -> None:
    """Remove what taking the lock re-created in a vanished run folder: a deleted run stays deleted."""
    for leftover in (folder.supervisor_log, folder.lock_file):
        leftover.unlink(missing_ok=True)
    for empty in (folder.output_dir, folder.root):
        try:
            empty.rmdir()
        except OSError:
            pass  # something else is in it now: leave it


def recover_if_orphaned(store, run, db_url: str | None) -> None:
    """Run recovery for this one run when it is active and its supervisor lock is free."""
    if run.status in ("queued", "running") and not RunFolder.of(run).supervisor_alive():
        recover_orphans(store, db_url, only=[run.id])
