"""Issue 16, item 8: a run that failed, was resumed and completed kept the old error as its
``last_error``, so ``arctui runs --where 'error~...'`` still matched it. A completed run now has no
last error from an earlier session; the history stays in its kept ``error`` events."""

from __future__ import annotations

import json
import time

import pytest

from tests.faults.conftest import TRACEBACK, cli
from tests.supervisor.helpers import START, dead_group, running_run, steps

pytestmark = pytest.mark.faults


def test_a_completed_resume_clears_the_old_error(store, store_url, home, capsys):
    now = time.time()
    first = [START, *steps(2), {"seq": 4, "time": now, "event": "error", "type": "RuntimeError",
                                "message": "Boom in session one", "traceback": []},
             {"seq": 5, "time": now, "event": "end", "status": "failed", "step": 2}]
    run_id, folder = running_run(store, "again", dead_group(), first)
    code, _, err = cli(capsys, "--db", store_url, "runs")
    assert code == 0 and TRACEBACK not in err, err
    assert store.get_run(run_id).status == "failed"
    assert "Boom in session one" in store.get_run(run_id).last_error

    # `arctui resume`: queued -> running again, the runner appends a new session to the same file
    store.set_status(run_id, "queued")
    store.set_status(run_id, "running")
    store.update_run(run_id, supervisor_pid=999999, pgid=dead_group())
    second = [{"seq": 6, "time": now, "event": "start", "start_step": 2, "max_steps": 4},
              *steps(2, start_seq=7), {"seq": 9, "time": now, "event": "end", "status": "completed", "step": 4}]
    with open(folder.events_file, "a") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in second)
    code, _, err = cli(capsys, "--db", store_url, "runs")
    assert code == 0 and TRACEBACK not in err, err
    run = store.get_run(run_id)
    assert run.status == "completed" and run.last_error is None
    code, out, _ = cli(capsys, "--db", store_url, "runs", "--where", "error~Boom", "--format", "json")
    assert code == 0 and json.loads(out) == []
    assert [e.kind for e in store.recent_events(run_id, kinds=["error"])] == ["error"]  # history kept
