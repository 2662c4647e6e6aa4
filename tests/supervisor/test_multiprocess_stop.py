"""A stop of a run with more than one training process: it checkpoints instead of aborting.

The run is launched as arctui launches one on two GPUs (``gpus: 0,1``: ``accelerate launch --multi_gpu
--num_processes 2``, that is torchrun) through the real supervisor, and stopped with ``stop_run``, the
path of ``arctui stop``, the app's Stop and Ctrl-C in the live view. On a machine without a GPU the
two workers find no CUDA device and train on the CPU with gloo; only the launch-time GPU check is
skipped (``prepared=True``, and a resume's check answered yes). The one-process case (Accelerate's
simple launcher) runs the same assertions; a worker that crashes still ends a two-process run.
"""

from __future__ import annotations

import os
import signal

import pytest

from arctui.config import load_config
from arctui.supervisor import launch
from arctui.supervisor.launch import launch_run, resume_run, stop_run
from arctui.supervisor.process import group_alive
from arctui.supervisor.resolve import resolve_config
from arctui.supervisor.runfolder import RunFolder
from runner.stopping import descendants, process_table
from tests.supervisor.helpers import file_events, write_config

FINAL = ("completed", "stopped", "failed", "crashed")
# What torchrun writes when it signals or kills its workers, and what a second signal used to cause.
NOT_IN_LOG = ("closing signal", "forcefully", "SIGKILL", "SignalException", "exitcode", "KeyboardInterrupt",
              "again: already stopping")


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


@pytest.mark.slow
@pytest.mark.parametrize("gpus, processes", [("0,1", 2), ("cpu", 1)], ids=["torchrun-2-processes", "simple-launcher"])
def test_a_stop_checkpoints_every_process_and_a_resume_continues(tmp_path, tiny_model_dir, env, wait_until,
                                                                 monkeypatch, gpus, processes):
    if gpus != "cpu" and 0 < _gpu_count() < 2:
        pytest.skip("two training processes need no GPU (CPU, gloo) or two GPUs; this machine has one")
    store, url = env
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two workers on a small shared machine
    path = write_config(tmp_path, tiny_model_dir, name=f"stop-{processes}", gpus=gpus, max_steps=400,
                        save_steps=1000, eval_steps=1000)
    cfg = resolve_config(load_config(str(path)))
    assert cfg.num_processes == processes
    run = launch_run(store, cfg, db_url=url, prepared=True)

    wait_until(lambda: (store.get_summary(run.id).last_step or 0) >= 2, what="step 2")
    stop_run(store, run.id)
    run = wait_until(lambda: (r := store.get_run(run.id)).status in FINAL and r, what="the run's end")

    folder = RunFolder.of(run)
    log = folder.log_file.read_text()
    assert run.status == "stopped" and run.exit_code == 0, (run.status, run.exit_code, run.last_error, log[-3000:])
    assert f"on {processes} process(es)" in log
    assert not [mark for mark in NOT_IN_LOG if mark in log], log[-3000:]
    ends = [e for e in file_events(folder.root) if e["event"] == "end"]
    assert [e["status"] for e in ends] == ["stopped"]
    stopped_at = ends[0]["step"]
    assert 2 <= stopped_at < 400
    assert [p.name for p in folder.checkpoints()] == [f"checkpoint-{stopped_at}"]

    # The machine has no GPU to check; everything else of `arctui resume` runs.
    monkeypatch.setattr(launch, "check_gpus", lambda _cfg: None)
    resume_run(store, run.id, db_url=url, overrides={"max_steps": stopped_at + 2})
    run = wait_until(lambda: (r := store.get_run(run.id)).status in FINAL and r, what="the resumed run's end")
    assert run.status == "completed" and run.exit_code == 0, (run.last_error, folder.log_file.read_text()[-3000:])
    steps = [p.step for p in store.metric_series(run.id, "loss", max_points=100000)]
    assert steps == list(range(1, stopped_at + 3))
    events = file_events(folder.root)
    resumed = [e for e in events[[e["event"] for e in events].index("end") + 1:] if e["event"] == "step"]
    assert [e["step"] for e in resumed] == [stopped_at + 1, stopped_at + 2]
    assert not os.path.exists(folder.stop_file)


@pytest.mark.slow
def test_a_crashed_worker_still_ends_a_two_process_run(tmp_path, tiny_model_dir, env, wait_until, monkeypatch):
    if 0 < _gpu_count() < 2:
        pytest.skip("two training processes need no GPU (CPU, gloo) or two GPUs; this machine has one")
    store, url = env
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = write_config(tmp_path, tiny_model_dir, name="crash", gpus="0,1", max_steps=400, save_steps=1000,
                        eval_steps=1000)
    run = launch_run(store, resolve_config(load_config(str(path))), db_url=url, prepared=True)
    wait_until(lambda: (store.get_summary(run.id).last_step or 0) >= 2, what="step 2")
    run = store.get_run(run.id)
    table = process_table()
    workers = [pid for pid in descendants([run.pgid], table) if table[pid].pgid == pid]
    assert len(workers) == 2  # torchrun's workers, each in a session of its own
    os.kill(workers[1], signal.SIGKILL)  # what the OOM killer does to one of them
    run = wait_until(lambda: (r := store.get_run(run.id)).status in FINAL and r, what="the run's end")
    assert run.status == "failed" and run.exit_code not in (None, 0), (run.status, run.exit_code)
    assert not any(group_alive(pid) for pid in (run.pgid, *workers))
