"""Issue 16 item 5: liveness does not rest on the lock file alone. A deleted ``supervisor.lock`` under a
live supervisor must not give the run a second supervisor (or a second evaluation after training)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from arctui.supervisor.recovery import recover_orphans, supervisor_alive
from tests.supervisor.helpers import START, dead_group, running_run, steps

pytestmark = pytest.mark.faults


def fake_supervisor(run_id: int) -> subprocess.Popen:
    """A process whose command line reads like ``python -m arctui.supervisor RUN_ID`` (it only sleeps)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                             "-m", "arctui.supervisor", str(run_id)], start_new_session=True)


def test_a_live_supervisor_without_its_lock_file_keeps_the_run(env):
    store, url = env
    run_id, folder = running_run(store, "lockless", dead_group(), [START, *steps(2)])
    supervisor = fake_supervisor(run_id)
    try:
        store.update_run(run_id, supervisor_pid=supervisor.pid)
        assert not folder.lock_file.exists() or folder.try_lock() is not None  # nobody holds a lock
        assert supervisor_alive(supervisor.pid, run_id)
        assert recover_orphans(store, url) == []
        assert store.get_run(run_id).status == "running"
    finally:
        supervisor.kill()
        supervisor.wait()
    # Once that supervisor is really gone, recovery takes the run over as before.
    assert not supervisor_alive(supervisor.pid, run_id)
    actions = recover_orphans(store, url)
    assert actions and "supervisor and training were gone" in actions[0]
    assert store.get_run(run_id).status == "crashed"


def test_another_process_or_another_runs_supervisor_is_not_this_runs(env):
    other = fake_supervisor(41)
    try:
        assert supervisor_alive(other.pid, 41)
        assert not supervisor_alive(other.pid, 4)  # the run id must match, not just the module
    finally:
        other.kill()
        other.wait()
    assert not supervisor_alive(None, 41)
    assert not supervisor_alive(999999, 41)
