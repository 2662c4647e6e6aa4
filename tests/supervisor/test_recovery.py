"""Recovery of runs whose supervisor died, with real processes and a real store (no training)."""

from __future__ import annotations

import json
import os
import subprocess
import time

from arctui.supervisor.recovery import recover_orphans
from tests.supervisor.helpers import START, dead_group, running_run, steps, wait_until


def test_dead_run_with_an_end_event_gets_the_runners_status(env):
    store, url = env
    end = {"seq": 5, "time": time.time(), "event": "end", "status": "completed", "step": 3, "train_loss": 0.5}
    run_id, _ = running_run(store, "finished-alone", dead_group(), [START, *steps(3), end])
    actions = recover_orphans(store, url)
    assert actions == [f"run {run_id} (finished-alone): supervisor and training were gone; marked completed"]
    assert store.get_run(run_id).status == "completed"
    assert [p.step for p in store.metric_series(run_id, "loss")] == [1, 2, 3]


def test_dead_run_without_an_end_event_is_crashed_with_the_log_tail(env):
    store, url = env
    log = "[fine_tuning] step 2/10\nTraceback (most recent call last):\nRuntimeError: CUDA error: boom\n"
    run_id, _ = running_run(store, "died", dead_group(), [START, *steps(2)], log=log)
    recover_orphans(store, url)
    run = store.get_run(run_id)
    assert run.status == "crashed"
    assert "supervisor and the training process are gone" in run.last_error
    assert "RuntimeError: CUDA error: boom" in run.last_error
    assert store.get_summary(run_id).last_step == 2


def test_leaves_alone_runs_it_must_not_touch(env):
    store, url = env
    elsewhere, _ = running_run(store, "elsewhere", dead_group(), [START], host="another-host")
    watched, folder = running_run(store, "watched", dead_group(), [START])
    fd = folder.try_lock()  # a live supervisor holds it
    fresh = store.create_run({"name": "fresh", "gpus": "cpu"}, name="fresh").id  # launch in progress
    try:
        assert recover_orphans(store, url) == []
    finally:
        os.close(fd)
    assert [store.get_run(i).status for i in (elsewhere, watched, fresh)] == ["running", "running", "queued"]


def test_live_training_gets_a_new_supervisor_that_records_the_end(env):
    store, url = env
    training = subprocess.Popen(["sleep", "600"], start_new_session=True)  # killed below
    try:
        run_id, folder = running_run(store, "orphan", training.pid, [START, *steps(2)])
        actions = recover_orphans(store, url)
        assert actions == [f"run {run_id} (orphan): supervisor was gone; re-attached to its training process"]
        wait_until(lambda: store.get_run(run_id).supervisor_pid not in (None, 999999),
                   what="the new supervisor")
        assert folder.supervisor_alive()
        assert recover_orphans(store, url) == []  # one supervisor at a time
        wait_until(lambda: store.get_run(run_id).events_cursor == 3, what="catching up")
        later = {**steps(3)[2], "seq": 4}  # the training goes on: step 3
        with open(folder.events_file, "a") as fh:
            fh.write(json.dumps(later) + "\n")
        wait_until(lambda: store.get_summary(run_id).last_step == 3 and store.get_run(run_id).events_cursor == 4,
                   what="ingestion")
    finally:
        training.kill()
        training.wait()
    run = wait_until(lambda: (r := store.get_run(run_id)).status != "running" and r, what="the end")
    assert run.status == "crashed"
    assert "ended while no supervisor watched it" in run.last_error
    assert "re-attaching" in folder.supervisor_log.read_text()
