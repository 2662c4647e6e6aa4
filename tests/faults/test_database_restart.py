"""Issue 16, items 2 and 10, with a real database going away: a private PostgreSQL server (its own
data folder and port, so the shared test server is never touched) is stopped and started again while a
supervisor watches a run.

- In the middle of a run: the supervisor backs off (0.5 s, 1 s, 2 s, ... in ``supervisor.log``, not
  five lines a second), the events written meanwhile land once the server is back, none lost or
  doubled.
- At the end of a run: the status and the exit code are recorded once the server is back.
- The latency figure counts only events written while the supervisor watched, once each.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from arctui.supervisor import outcome, supervise
from arctui.supervisor.supervise import Supervisor
from tests.supervisor.helpers import START, running_run, steps

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (required in CI)")
    pytest.skip(message)


class PrivateServer:
    """A throwaway PostgreSQL cluster run by the ``postgres`` user (initdb refuses root)."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            _missing("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin): `source .ci/postgres.sh` installs them")
        self.bin = Path(bins[-1]).parent
        self.user = "postgres" if os.geteuid() == 0 else None
        self.data = Path(tempfile.mkdtemp(prefix="arctui-pg-outage-", dir="/tmp"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        if self.user:
            shutil.chown(self.data, self.user, self.user)
        self.run("initdb", "-A", "trust", "-U", "arctui", "-D", str(self.data))
        self.start()
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "arctui", "outage")
        self.url = f"postgresql+psycopg://arctui@127.0.0.1:{self.port}/outage"

    def run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.user:
            cmd = ["su", self.user, "-s", "/bin/sh", "-c", " ".join(f"'{part}'" for part in cmd)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.data}"
        self.run("pg_ctl", "-s", "-w", "-D", str(self.data), "-l", str(self.data / "server.log"), "-o", options,
                 "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-s", "-w", "-D", str(self.data), "-m", "fast", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def server():
    if shutil.which("su") is None:
        _missing("`su` is needed to run a private PostgreSQL server")
    srv = PrivateServer()
    yield srv
    srv.destroy()


@pytest.fixture
def store(server, home):
    from db.store import RunStore

    opened = RunStore.open(server.url)
    yield opened
    opened.close()


class LogLines:
    """The supervisor's log lines, as it writes them to ``supervisor.log``."""

    def __init__(self, monkeypatch) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        for module in (outcome, supervise):
            monkeypatch.setattr(module, "log", self.add)

    def add(self, message: str) -> None:
        with self.changed:
            self.lines.append(message)
            self.changed.notify_all()

    def wait_for(self, predicate, timeout: float) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.lines), timeout), self.lines


def stored_steps(url: str) -> list[int]:
    from db.errors import StoreError
    from db.store import RunStore

    try:
        other = RunStore.open(url)
    except StoreError:
        return []
    try:
        return [p.step for p in other.metric_series(1, "loss", max_points=100000)]
    except StoreError:
        return []
    finally:
        other.close()


def retry_delays(lines: list[str]) -> list[float]:
    return [float(m.group(1)) for line in lines if (m := re.search(r"while ingesting, retrying in ([\d.]+) s", line))]


def append(folder, events: list[dict]) -> None:
    with folder.events_file.open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(e) + "\n" for e in events)


def test_a_database_restart_mid_run_loses_nothing_and_backs_off(server, store, monkeypatch, tmp_path,
                                                                wait_until, wait_seconds):
    log = LogLines(monkeypatch)
    run_id, folder = running_run(store, "midrun", 0, [{**START, "time": 0.0}])
    go = tmp_path / "go"
    trainer = subprocess.Popen(["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; exit 0"],
                               start_new_session=True)
    store.update_run(run_id, pgid=trainer.pid)
    events = [START, *steps(12)]

    failures: list[BaseException] = []

    def outage() -> None:
        down = False
        try:
            append(folder, events[1:5])
            wait_until(lambda: stored_steps(server.url) == [1, 2, 3, 4], what="the first steps stored")
            server.stop()
            down = True
            append(folder, events[5:9])  # written while the database is down
            log.wait_for(lambda lines: len(retry_delays(lines)) >= 3, wait_seconds)
            server.start()
            down = False
            append(folder, events[9:])
            wait_until(lambda: stored_steps(server.url) == list(range(1, 13)), what="every step stored")
            append(folder, [{"seq": 14, "time": 0.0, "event": "end", "status": "completed", "step": 12}])
        except BaseException as exc:  # the watch below must end either way
            failures.append(exc)
            if down:
                server.start()
        finally:
            go.touch()

    helper = threading.Thread(target=outage, daemon=True)
    helper.start()
    status = Supervisor(store, run_id, poll=0.02).watch(popen=trainer, pgid=trainer.pid, gpu_ids=())
    helper.join(wait_seconds)
    assert not failures, failures
    assert status == "completed"
    assert [p.step for p in store.metric_series(run_id, "loss", max_points=100000)] == list(range(1, 13))
    delays = retry_delays(log.lines)
    # Backoff: each retry waits longer than the one before (up to the cap), so an outage of a few
    # seconds is a handful of lines, not five a second.
    assert delays[:3] == [outcome.RETRY_FIRST_SECONDS, outcome.RETRY_FIRST_SECONDS * 2, outcome.RETRY_FIRST_SECONDS * 4]
    assert all(b >= a for a, b in zip(delays, delays[1:], strict=False))
    assert any("store reachable again" in line for line in log.lines)


def test_a_database_down_at_the_end_of_a_run_records_status_and_exit_code(server, store, monkeypatch,
                                                                           wait_seconds):
    monkeypatch.setattr(outcome, "RETRY_FIRST_SECONDS", 0.1)
    log = LogLines(monkeypatch)
    run_id, folder = running_run(store, "endrun", 0, [START, *steps(5)])
    trainer = subprocess.Popen(["sh", "-c", "exit 3"], start_new_session=True)
    trainer.wait()
    supervisor = Supervisor(store, run_id, poll=0.02)  # watching since the run started
    server.stop()  # down when the supervisor records the end of the run

    def restart() -> None:
        try:
            log.wait_for(lambda lines: sum("retrying in" in line for line in lines) >= 2, wait_seconds)
        finally:
            server.start()

    helper = threading.Thread(target=restart, daemon=True)
    helper.start()
    status = supervisor.watch(popen=trainer, pgid=trainer.pid, gpu_ids=())
    helper.join(wait_seconds)
    run = store.get_run(run_id)
    assert status == run.status == "failed" and run.exit_code == 3
    assert folder.recorded_exit_code() == 3
    assert [p.step for p in store.metric_series(run_id, "loss")] == [1, 2, 3, 4, 5]


def test_latency_counts_only_events_written_while_watching_once(store, monkeypatch):
    from arctui.supervisor.outcome import StreamState, ingest
    from arctui.supervisor.tail import EventTailer

    now = __import__("time").time()
    old = [{**e, "time": now - 3600} for e in [START, *steps(3)]]  # before a re-attach
    run_id, folder = running_run(store, "latency", 0, old)
    state = StreamState(watching_since=now)
    tailer = EventTailer(folder.events_file)
    ingest(store, run_id, tailer, state)
    assert state.latencies == []  # the backlog of a re-attach is not a latency
    fresh = steps(2, start_seq=5)
    fresh[0]["step"], fresh[1]["step"] = 4, 5
    forged = {"seq": 7, "time": now + 86400, "event": "step", "step": 6, "max_steps": 10, "loss": 1.0}
    append(folder, [*fresh, forged])
    ingest(store, run_id, tailer, state)
    assert len(state.latencies) == 2 and all(0 <= x < 3600 for x in state.latencies)  # the forged time left out
    ingest(store, run_id, EventTailer(folder.events_file), state)  # the whole file re-read (a store error)
    assert len(state.latencies) == 2
