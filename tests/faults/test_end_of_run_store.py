"""Issue 16, item 2: a store error at the end of a run (database down, disk full) killed the
supervisor, left the run ``running`` and lost the exit code. Now the exit code goes into the run
folder (``exit-code``) first, the end-of-run writes (last events, status with the exit code, the
lookups of the evaluation after training) are retried with backoff, and when the store stays down
past the retry window recovery records the persisted exit code."""

from __future__ import annotations

import subprocess

import pytest

from arctui.supervisor import outcome
from arctui.supervisor.supervise import Supervisor
from db.errors import StoreError
from tests.faults.conftest import TRACEBACK, cli
from tests.supervisor.helpers import START, dead_group, running_run, steps

pytestmark = pytest.mark.faults


class Outage:
    """Make ``store.METHOD`` raise StoreError ``times`` times (None: until ``end()``), then work."""

    def __init__(self, monkeypatch, store, method: str, times: int | None) -> None:
        self.calls = 0
        self.times = times
        self.down = True
        real = getattr(store, method)

        def flaky(*args, **kwargs):
            self.calls += 1
            if self.down and (self.times is None or self.calls <= self.times):
                raise StoreError("database error: connection refused (injected outage); check --db")
            return real(*args, **kwargs)

        monkeypatch.setattr(store, method, flaky)

    def end(self) -> None:
        self.down = False


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(outcome, "RETRY_FIRST_SECONDS", 0.01)
    monkeypatch.setattr(outcome, "RETRY_MAX_SECONDS", 0.02)


def trainer(code: int) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", f"exit {code}"], start_new_session=True)


def test_end_of_run_writes_are_retried(store, home, monkeypatch, fast_retries, capsys):
    run_id, folder = running_run(store, "outage", dead_group(), [START, *steps(5)])
    ingest = Outage(monkeypatch, store, "ingest_events", times=4)
    status_writes = Outage(monkeypatch, store, "set_status", times=3)
    popen = trainer(3)
    status = Supervisor(store, run_id, poll=0.01).watch(popen=popen, pgid=popen.pid, gpu_ids=())
    run = store.get_run(run_id)
    assert status == run.status == "failed" and run.exit_code == 3
    assert status_writes.calls == 4 and ingest.calls > 4
    assert [p.step for p in store.metric_series(run_id, "loss")] == [1, 2, 3, 4, 5]  # none lost
    assert folder.recorded_exit_code() == 3
    log = capsys.readouterr().out
    assert "store error while recording failed, retrying in" in log


def test_an_outage_past_the_window_leaves_the_exit_code_to_recovery(store, store_url, home, monkeypatch,
                                                                     fast_retries, capsys):
    monkeypatch.setattr(outcome, "RETRY_WINDOW_SECONDS", 0.1)
    run_id, folder = running_run(store, "outage2", dead_group(), [START, *steps(2)])
    outage = Outage(monkeypatch, store, "set_status", times=None)
    popen = trainer(3)
    with pytest.raises(StoreError):  # the supervisor gives up (and exits) only after the window
        Supervisor(store, run_id, poll=0.01).watch(popen=popen, pgid=popen.pid, gpu_ids=())
    assert store.get_run(run_id).status == "running"
    assert folder.recorded_exit_code() == 3  # persisted before any store write
    outage.end()
    code, _, err = cli(capsys, "--db", store_url, "runs")  # recovery, as any later command does it
    assert code == 0 and TRACEBACK not in err, err
    run = store.get_run(run_id)
    assert run.status == "failed" and run.exit_code == 3


def test_recovery_uses_the_persisted_exit_code(store, store_url, home, capsys):
    run_id, folder = running_run(store, "persisted", dead_group(), [START, *steps(2)])
    folder.write_exit_code(3)
    code, _, err = cli(capsys, "--db", store_url, "runs")
    assert code == 0, err
    run = store.get_run(run_id)
    assert run.exit_code == 3 and run.status == "failed"  # not "crashed, exit status unknown"
    assert "exit code 3" in run.last_error
