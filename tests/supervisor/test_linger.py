"""A process left in the training group after the runner's `end` event must not keep a run
"running": the supervisor kills the group after a grace period and records the runner's status."""

from __future__ import annotations

import json
import os
import subprocess
import time

from arctui.supervisor.process import group_alive
from arctui.supervisor.supervise import Supervisor
from tests.supervisor.helpers import START, running_run, steps


def test_a_lingering_group_member_is_killed_after_the_end_event(env, tmp_path):
    store, _ = env
    end = {"seq": 4, "time": time.time(), "event": "end", "status": "completed", "step": 2, "train_loss": 0.5}
    run_id, folder = running_run(store, "lingers", 0, [])
    lines = "".join(json.dumps(e) + "\n" for e in [START, *steps(2), end])
    # The "launcher" writes the events, leaves a child behind in its process group and exits 0.
    script = f"printf '%s' '{lines}' > '{folder.events_file}'; sleep 600 & exit 0"
    popen = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    pgid = os.getpgid(popen.pid)
    supervisor = Supervisor(store, run_id, poll=0.05, linger_after_end=1.0)
    try:
        status = supervisor.watch(popen, pgid, gpu_ids=[])
    finally:
        if group_alive(pgid):
            os.killpg(pgid, 9)
    assert status == "completed"
    assert not group_alive(pgid)
    assert store.get_run(run_id).status == "completed"
    assert [p.step for p in store.metric_series(run_id, "loss")] == [1, 2]
