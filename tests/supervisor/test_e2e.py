"""Real launches: `arctui launch` -> supervisor -> `accelerate launch -m runner.fine_tuning` (tiny model,
CPU) -> events.jsonl -> store, read back through the CLI and the store's API. Each test launches
as few runs as its behaviours need: a launch costs several seconds of interpreter start-up."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from arctui.supervisor.process import group_alive
from arctui.supervisor.runfolder import RunFolder
from tests.supervisor.helpers import (
    assert_points_match_file,
    file_events,
    get_run,
    last_step,
    make_env,
    stored_steps,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.slow


def test_foreground_and_detached_runs_at_once_into_one_sqlite_file(tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    config = write_config(tmp_path, tiny_model_dir)
    detached = env.arctui("launch", str(config), "--detach", "--set", "max_steps=400", check=True)
    long_id = int(detached.stdout.splitlines()[0])
    assert "arctui logs" in detached.stderr

    proc = env.arctui("launch", str(config), "--set", "max_steps=4")  # foreground, meanwhile
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    run_id = int(lines[0])  # the id comes first, for scripts
    assert run_id != long_id and any("step 4/4" in line for line in lines)
    run = get_run(env, run_id)
    assert (run.status, run.exit_code, run.name) == ("completed", 0, "e2e-2")
    assert assert_points_match_file(env, run_id) == [1, 2, 3, 4]
    folder = Path(run.log_path).parent
    assert (folder / "output" / "checkpoint-2").is_dir()
    assert "accelerate.commands.launch" in (folder / "train.log").read_text()

    wait_until(lambda: last_step(env, long_id) >= 1, what="the detached run's first step")
    assert get_run(env, long_id).status == "running"
    stopped = env.arctui("stop", str(long_id), "--kill", "--wait", "300", check=True)
    assert "stopped" in stopped.stdout
    long_run = get_run(env, long_id)
    assert long_run.status == "stopped" and long_run.exit_code == 137  # SIGKILL: no checkpoint, no end event
    assert_points_match_file(env, long_id)

    listed = json.loads(env.arctui("runs", "--format", "json", check=True).stdout)
    assert [(r["id"], r["status"]) for r in listed] == [(run_id, "completed"), (long_id, "stopped")]
    assert listed[0]["steps"] == 4 and listed[0]["s_per_step"] > 0
    assert listed[0]["final_loss"] is not None and listed[0]["eval_loss"] is not None
    shown = env.arctui("show", str(run_id), check=True).stdout
    assert "checkpoints" in shown and "step 2" in shown and "completed" in shown and "max_steps: 4" in shown
    logs = env.arctui("logs", str(run_id), "-n", "3", check=True).stdout
    assert 0 < len(logs.splitlines()) <= 3
    followed = env.arctui("logs", str(run_id), "-f", check=True).stdout  # ended run: prints all, returns
    assert "[fine_tuning]" in followed and followed == (folder / "train.log").read_text()
    assert "supervisor pid" in env.arctui("logs", str(run_id), "--supervisor", check=True).stdout


def test_ctrl_c_stops_gracefully_and_resume_continues_the_step_count(tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, max_steps=400)
    proc = env.popen("launch", str(config))
    run_id = int(proc.stdout.readline())
    wait_until(lambda: last_step(env, run_id) >= 3, what="step 3")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=300)
    run = get_run(env, run_id)
    assert run.status == "stopped", err
    assert proc.returncode == 143  # the run's own: ended by SIGTERM after saving a checkpoint
    assert "stopping" in err
    stopped_at = assert_points_match_file(env, run_id)[-1]
    folder = Path(run.log_path).parent
    assert any(p.name.startswith("checkpoint-") for p in (folder / "output").iterdir())
    assert [e["status"] for e in file_events(folder) if e["event"] == "end"] == ["stopped"]

    proc = env.arctui("resume", str(run_id), "--set", f"max_steps={stopped_at + 2}")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.splitlines()[0]) == run_id
    assert get_run(env, run_id).status == "completed"
    steps = assert_points_match_file(env, run_id)
    assert steps == list(range(1, stopped_at + 3))
    starts = [e for e in file_events(folder) if e["event"] == "start"]
    assert len(starts) == 2 and starts[1]["start_step"] > 0


def test_kill_9_of_the_supervisor_is_recovered_then_a_dead_run_becomes_crashed(tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, max_steps=400)
    run_id = int(env.arctui("launch", str(config), "--detach", check=True).stdout.splitlines()[0])
    wait_until(lambda: last_step(env, run_id) >= 2, what="step 2")
    run = get_run(env, run_id)
    os.kill(run.supervisor_pid, signal.SIGKILL)
    killed_at = last_step(env, run_id)
    folder = RunFolder.of(run)
    # The kernel frees the run's lock once the supervisor is really gone; training goes on unwatched
    # and its events pile up in the file.
    wait_until(lambda: not folder.supervisor_alive(), what="the killed supervisor's lock to be free")
    wait_until(lambda: max((e["step"] for e in file_events(folder.root) if e["event"] == "step"), default=0)
               > killed_at + 1, what="unwatched steps in the events file")
    proc = env.arctui("runs", check=True)
    assert f"run {run_id}" in proc.stderr and "re-attached" in proc.stderr
    wait_until(lambda: last_step(env, run_id) > killed_at + 1, what="the new supervisor ingesting")
    new = get_run(env, run_id)
    assert new.supervisor_pid != run.supervisor_pid and new.status == "running"
    steps = stored_steps(env, run_id)  # still running: the file may be a step ahead of the store
    assert steps == list(range(1, steps[-1] + 1))  # none lost, none doubled across the gap

    # Now both the supervisor and the training die: the next command records what is known.
    os.kill(new.supervisor_pid, signal.SIGKILL)
    os.killpg(new.pgid, signal.SIGKILL)
    wait_until(lambda: not group_alive(new.pgid), what="training gone")
    wait_until(lambda: not folder.supervisor_alive(), what="the second supervisor's lock to be free")
    proc = env.arctui("runs", "--format", "json", check=True)
    assert "marked crashed" in proc.stderr
    assert json.loads(proc.stdout)[0]["status"] == "crashed"
    assert "supervisor and the training process are gone" in get_run(env, run_id).last_error
    steps = assert_points_match_file(env, run_id)
    assert steps == list(range(1, steps[-1] + 1))


@pytest.mark.postgres
def test_launch_into_postgresql(tmp_path, tiny_model_dir):
    """The supervisor reaches the store named by --db (handed over in its environment) on PostgreSQL."""
    from tests.store.conftest import PostgresSchema, postgres_base_url

    schema = PostgresSchema(postgres_base_url())
    try:
        env = make_env(tmp_path)
        env.db_url = schema.url
        config = write_config(tmp_path, tiny_model_dir, max_steps=2)
        proc = env.arctui("--db", schema.url, "launch", str(config))
        assert proc.returncode == 0, proc.stderr
        run_id = int(proc.stdout.splitlines()[0])
        assert get_run(env, run_id).status == "completed"
        assert assert_points_match_file(env, run_id) == [1, 2]
    finally:
        schema.drop()
