"""Real launches: `arctui launch` -> supervisor -> `accelerate launch -m runner.fine_tuning` (tiny model,
CPU) -> events.jsonl -> store, read back through the CLI and the store's API."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.supervisor.helpers import (
    assert_points_match_file,
    file_events,
    get_run,
    last_step,
    make_env,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.slow


def test_foreground_launch_lands_metrics_and_shows_them(tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    config = write_config(tmp_path, tiny_model_dir)
    proc = env.arctui("launch", str(config), "--set", "max_steps=4")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    run_id = int(lines[0])  # the id comes first, for scripts
    assert any("step 4/4" in line for line in lines)
    run = get_run(env, run_id)
    assert run.status == "completed" and run.exit_code == 0
    assert assert_points_match_file(env, run_id) == [1, 2, 3, 4]
    folder = Path(run.log_path).parent
    assert (folder / "output" / "checkpoint-2").is_dir()
    assert "accelerate.commands.launch" in (folder / "train.log").read_text()

    listed = json.loads(env.arctui("runs", "--format", "json", check=True).stdout)
    assert [(r["id"], r["status"], r["steps"]) for r in listed] == [(run_id, "completed", 4)]
    assert listed[0]["final_loss"] is not None and listed[0]["eval_loss"] is not None
    assert listed[0]["s_per_step"] > 0
    shown = env.arctui("show", str(run_id), check=True).stdout
    assert "checkpoints" in shown and "step 2" in shown and "completed" in shown
    assert "max_steps: 4" in shown


def test_detached_stop_then_resume_continues_the_step_count(tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, max_steps=400)
    proc = env.arctui("launch", str(config), "--detach", check=True)
    run_id = int(proc.stdout.splitlines()[0])
    wait_until(lambda: last_step(env, run_id) >= 3, what="step 3")
    stopped = env.arctui("stop", str(run_id), "--wait", "120", check=True)
    assert "stopped" in stopped.stdout
    run = get_run(env, run_id)
    assert run.status == "stopped"
    first = assert_points_match_file(env, run_id)
    stopped_at = first[-1]
    assert stopped_at < 400
    folder = Path(run.log_path).parent
    assert any(p.name.startswith("checkpoint-") for p in (folder / "output").iterdir())

    proc = env.arctui("resume", str(run_id), "--set", f"max_steps={stopped_at + 2}")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.splitlines()[0]) == run_id
    run = get_run(env, run_id)
    assert run.status == "completed"
    steps = assert_points_match_file(env, run_id)
    assert steps[-1] == stopped_at + 2 and steps == list(range(1, stopped_at + 3))
    starts = [e for e in file_events(folder) if e["event"] == "start"]
    assert len(starts) == 2 and starts[1]["start_step"] > 0


def test_kill_9_of_the_supervisor_then_recovery_loses_and_doubles_nothing(tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, max_steps=400)
    run_id = int(env.arctui("launch", str(config), "--detach", check=True).stdout.splitlines()[0])
    wait_until(lambda: last_step(env, run_id) >= 2, what="step 2")
    run = get_run(env, run_id)
    os.kill(run.supervisor_pid, signal.SIGKILL)
    killed_at = last_step(env, run_id)
    time.sleep(2.0)  # training goes on unwatched; its events pile up in the file
    proc = env.arctui("runs", check=True)
    assert f"run {run_id}" in proc.stderr and "re-attached" in proc.stderr
    wait_until(lambda: last_step(env, run_id) > killed_at + 1, what="the new supervisor ingesting")
    new = get_run(env, run_id)
    assert new.supervisor_pid != run.supervisor_pid and new.status == "running"
    env.arctui("stop", str(run_id), "--wait", "120", check=True)
    assert get_run(env, run_id).status == "stopped"
    steps = assert_points_match_file(env, run_id)
    assert steps == list(range(1, steps[-1] + 1))


def test_kill_9_of_supervisor_and_training_marks_the_run_crashed(tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, max_steps=400)
    run_id = int(env.arctui("launch", str(config), "--detach", check=True).stdout.splitlines()[0])
    wait_until(lambda: last_step(env, run_id) >= 1, what="step 1")
    run = get_run(env, run_id)
    os.kill(run.supervisor_pid, signal.SIGKILL)
    os.killpg(run.pgid, signal.SIGKILL)
    time.sleep(0.5)
    proc = env.arctui("runs", "--format", "json", check=True)
    assert "marked crashed" in proc.stderr
    row = json.loads(proc.stdout)[0]
    assert row["status"] == "crashed"
    run = get_run(env, run_id)
    assert "supervisor and the training process are gone" in run.last_error
    assert_points_match_file(env, run_id)


def test_ctrl_c_in_the_foreground_stops_gracefully(tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, max_steps=400)
    proc = env.popen("launch", str(config))
    run_id = int(proc.stdout.readline())
    wait_until(lambda: last_step(env, run_id) >= 2, what="step 2")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    run = get_run(env, run_id)
    assert run.status == "stopped", err
    assert proc.returncode == 143  # the run's: ended by SIGTERM
    assert "stopping" in err
    assert_points_match_file(env, run_id)


def test_two_runs_at_once_into_one_sqlite_file(tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, max_steps=6)
    ids = [int(env.arctui("launch", str(config), "--detach", check=True).stdout.splitlines()[0]) for _ in range(2)]
    assert ids[0] != ids[1]
    wait_until(lambda: all(get_run(env, i).status == "completed" for i in ids), timeout=240,
               what="both runs to complete")
    names = {get_run(env, i).name for i in ids}
    assert names == {"e2e", "e2e-2"}
    for run_id in ids:
        assert assert_points_match_file(env, run_id) == [1, 2, 3, 4, 5, 6]
