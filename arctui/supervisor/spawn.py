"""Starting processes: a run's detached supervisor, and the process groups it watches.

    spawn_supervisor(run_id, db_url, folder)          # python -m arctui.supervisor RUN_ID, own session
    popen = start_group(cmd, folder.log_file, gpu_ids=(0, 1), cwd=folder.root)   # training, evaluation

Both children get a session of their own (their pid is their process group id), ``PYTHONPATH``
pointing at this checkout and unbuffered output. The training command's launcher runs under
``python -m runner.stopping``, so one SIGTERM to the group (``arctui stop``) reaches every training
process once, torchrun's workers in their own sessions included, and the launcher waits for their
checkpoints. Light module: no torch, no store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from arctui.supervisor.process import accelerate_command
from arctui.supervisor.runfolder import RunFolder
from runner.paths import arctui_home, default_db_url, make_private_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
# Spawned supervisors, polled now and then so a long-lived parent (the TUI) leaves no zombies.
_children: list[subprocess.Popen] = []


def python_env(**changes: str | None) -> dict[str, str]:
    """This process's environment for a child Python of this checkout; ``None`` removes a variable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def spawn_supervisor(run_id: int, db_url: str | None, folder: RunFolder, lock_fd: int | None = None) -> bool:
    """Start ``python -m arctui.supervisor RUN_ID`` detached, handing it the run's lock.

    The lock is taken here and inherited by the child (same open file description), so no other
    command can mistake the run for an orphan in the moment before the child starts. Returns False
    when another supervisor already holds the lock. Raises OSError when the child cannot start.
    """
    reap_children()
    if lock_fd is None:
        lock_fd = folder.try_lock()
        if lock_fd is None:
            return False
    # The URL travels in the environment, not argv, so a password never shows in `ps`.
    env = python_env(ARCTUI_DB=db_url or default_db_url(), ARCTUI_HOME=str(arctui_home()))
    try:
        with open(folder.supervisor_log, "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "arctui.supervisor", str(run_id), "--lock-fd", str(lock_fd)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, pass_fds=(lock_fd,), env=env, cwd=str(REPO_ROOT),
            )
    finally:
        os.close(lock_fd)
    _children.append(child)
    return True


def training_command(cfg, folder: RunFolder, gpu_ids: Sequence[int]) -> list[str]:
    """``accelerate launch ... -m runner.fine_tuning FLAGS`` of a resolved config on this machine
    (resuming when the run folder holds a checkpoint)."""
    argv = cfg.runner_argv(output_dir=folder.output_dir, events_file=folder.events_file,
                           resume=bool(folder.checkpoints()))
    launch = accelerate_command(cfg.num_processes, cpu=not gpu_ids, threads=os.environ.get("OMP_NUM_THREADS"))
    return [*launch, "-m", "runner.fine_tuning", *argv]


def reap_children() -> None:
    """Collect the exit status of spawned supervisors that have ended."""
    _children[:] = [c for c in _children if c.poll() is None]


def start_group(cmd: Sequence[str], log_path: Path, *, gpu_ids: Sequence[int] | None, cwd: Path) -> subprocess.Popen:
    """Start ``cmd`` in its own session, stdout and stderr appended to ``log_path`` after a ``$ cmd`` line.

    ``gpu_ids``: the GPUs it may see (``CUDA_VISIBLE_DEVICES``, PCI bus order; empty = none); None
    leaves the caller's ``CUDA_VISIBLE_DEVICES`` as it is. The child never sees ``ARCTUI_DB``: the
    runner knows nothing of the store. Raises OSError when it cannot start.
    """
    changes: dict[str, str | None] = {"ARCTUI_DB": None}
    if gpu_ids is not None:
        changes["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        changes["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpu_ids))
    env = python_env(**changes)
    make_private_dir(log_path.parent)
    with open(log_path, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        return subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=str(cwd))
