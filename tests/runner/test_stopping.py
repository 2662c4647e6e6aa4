"""How a stop reaches training processes (runner.stopping), with real signals to real processes.

A child Python installs :class:`StopRequest` and stands in for a training process: once a stop is
requested it "saves a checkpoint" (waits for a line on stdin) and exits 0. The launcher tests run
``python -m runner.stopping`` on a small launcher module that, as torchrun does, starts its workers
in sessions of their own and exits with their status; the real torchrun is in
``tests/supervisor/test_multiprocess_stop.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from arctui.supervisor.process import group_alive, signal_group
from tests.conftest import REPO_ROOT

WORKER = textwrap.dedent("""
    import os, sys, time
    from runner.stopping import StopRequest

    stop = StopRequest()
    stop.install()
    print("ready", os.getpid(), flush=True)
    while not stop.requested:
        time.sleep(0.05)
    print("stopping on", stop.signal_name, flush=True)
    sys.stdin.readline()  # the checkpoint: as long as the test wants
    print("saved", flush=True)
""")

# A launcher module in the shape of torchrun: each worker in a session of its own, the launcher waits
# for them and exits 1 when one failed. START_FILE: start the workers only once it exists.
LAUNCHER = textwrap.dedent("""
    import os, subprocess, sys, time

    print("launcher up", flush=True)
    start_file = os.environ.get("START_FILE")
    while start_file and not os.path.exists(start_file):
        time.sleep(0.05)
    folder = os.environ["WORKER_DIR"]
    workers = []
    for rank in range(2):
        out = open(os.path.join(folder, f"worker{rank}.log"), "w")
        workers.append(subprocess.Popen([sys.executable, "-c", os.environ["WORKER_CODE"]], stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.PIPE, start_new_session=True))
    with open(os.path.join(folder, "pids"), "w") as fh:
        fh.write(" ".join(str(w.pid) for w in workers))
    codes = [w.wait() for w in workers]
    with open(os.path.join(folder, "codes"), "w") as fh:
        fh.write(" ".join(map(str, codes)))
    sys.exit(next((1 for c in codes if c), 0))
""")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def _start_worker(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    proc = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=out.open("w"),
                            stderr=err.open("w"), env=_env(), text=True)
    return proc, out, err


def test_a_repeated_sigterm_keeps_the_graceful_stop(tmp_path, wait_until):
    proc, out, err = _start_worker(tmp_path)
    wait_until(lambda: "ready" in out.read_text(), what="the worker's handler")
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping on SIGTERM" in out.read_text(), what="the stop")
    proc.send_signal(signal.SIGTERM)  # a second `arctui stop`, or Slurm signalling every process
    wait_until(lambda: "again" in err.read_text() or proc.poll() is not None, what="the repeated signal's effect")
    assert proc.poll() is None, err.read_text()  # still saving its checkpoint
    proc.communicate("done\n")
    assert proc.returncode == 0
    assert out.read_text().splitlines()[-1] == "saved"
    assert err.read_text().count("SIGTERM again: already stopping") == 1, err.read_text()


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
def test_sigint_during_a_stop_gives_up_at_once(tmp_path, wait_until, first):
    proc, out, err = _start_worker(tmp_path)
    wait_until(lambda: "ready" in out.read_text(), what="the worker's handler")
    proc.send_signal(first)
    wait_until(lambda: "stopping on" in out.read_text(), what="the stop")
    proc.send_signal(signal.SIGINT)  # a person pressing Ctrl-C (again)
    proc.wait()
    assert proc.returncode != 0
    assert "saved" not in out.read_text()
    assert "KeyboardInterrupt" in err.read_text()


def _start_launcher(tmp_path: Path, **extra: str) -> subprocess.Popen:
    (tmp_path / "fake_torchrun.py").write_text(LAUNCHER)
    env = _env(WORKER_DIR=str(tmp_path), WORKER_CODE=WORKER, **extra)
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    return subprocess.Popen([sys.executable, "-m", "runner.stopping", "fake_torchrun"], env=env,
                            stdout=(tmp_path / "launcher.log").open("w"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _worker_pids(tmp_path: Path, wait_until) -> list[int]:
    pids = wait_until(lambda: (tmp_path / "pids").is_file() and (tmp_path / "pids").read_text().split(),
                      what="the workers' start")
    return [int(pid) for pid in pids]


def _log(tmp_path: Path, rank: int) -> str:
    path = tmp_path / f"worker{rank}.log"
    return path.read_text() if path.is_file() else ""


def _finish_checkpoints(pids: list[int]) -> None:
    for pid in pids:  # the "checkpoint" waits for a line on the worker's stdin
        with open(f"/proc/{pid}/fd/0", "w") as stdin:
            stdin.write("done\n")


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the launcher finds its children in /proc (Linux)")
def test_the_launcher_passes_one_sigterm_to_workers_in_their_own_sessions_and_waits(tmp_path, wait_until):
    launcher = _start_launcher(tmp_path)
    pids = _worker_pids(tmp_path, wait_until)
    wait_until(lambda: all("ready" in _log(tmp_path, r) for r in range(2)), what="the workers' handlers")
    assert all(os.getpgid(pid) == pid != launcher.pid for pid in pids)  # out of the group's reach
    signal_group(launcher.pid, signal.SIGTERM)  # what `arctui stop` does
    wait_until(lambda: all("stopping on SIGTERM" in _log(tmp_path, r) for r in range(2)), what="both workers stopping")
    assert launcher.poll() is None  # it outlives the signal, waiting for the checkpoints
    _finish_checkpoints(pids)
    assert launcher.wait() == 0
    for rank in range(2):
        assert _log(tmp_path, rank).rstrip().endswith("saved") and "again" not in _log(tmp_path, rank)
    assert "passed on to the training processes" in (tmp_path / "launcher.log").read_text()


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the launcher finds its children in /proc (Linux)")
def test_a_stop_before_the_workers_start_reaches_them_when_they_do(tmp_path, wait_until):
    start_file = tmp_path / "go"
    launcher = _start_launcher(tmp_path, START_FILE=str(start_file))
    wait_until(lambda: "launcher up" in (tmp_path / "launcher.log").read_text(), what="the launcher's start")
    signal_group(launcher.pid, signal.SIGTERM)
    wait_until(lambda: "passed on" in (tmp_path / "launcher.log").read_text(), what="the launcher's handler")
    start_file.touch()
    pids = _worker_pids(tmp_path, wait_until)
    # A worker signalled before it installed its StopRequest ends on SIGTERM, one signalled after stops
    # gracefully: either way the stop is not lost.
    wait_until(lambda: all("stopping on SIGTERM" in _log(tmp_path, r) or not group_alive(pid)
                           for r, pid in enumerate(pids)), what="both workers stopping")
    _finish_checkpoints([pid for r, pid in enumerate(pids) if "stopping" in _log(tmp_path, r)])
    launcher.wait()
    codes = [int(code) for code in (tmp_path / "codes").read_text().split()]
    assert all(code == 0 if "stopping" in _log(tmp_path, r) else code == -signal.SIGTERM
               for r, code in enumerate(codes)), codes


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="the kill finds the workers in /proc (Linux)")
def test_sigkill_of_the_group_reaches_workers_in_their_own_sessions(tmp_path, wait_until):
    launcher = _start_launcher(tmp_path)
    pids = _worker_pids(tmp_path, wait_until)
    signal_group(launcher.pid, signal.SIGKILL)  # `arctui stop --kill`
    assert launcher.wait() == -signal.SIGKILL
    wait_until(lambda: not any(group_alive(pid) for pid in pids), what="the workers' end")
