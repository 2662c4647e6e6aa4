"""Runs on a real one-node Slurm cluster, driven through `arctui` (see conftest.py for the cluster).

Each run is the tiny model on real ARC tasks on CPU: a few steps of real training in a real batch job,
its events tailed into a real SQLite store by the supervisor on the submit host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.slurm.conftest import write_slurm_config
from tests.supervisor.helpers import assert_points_match_file, file_events, get_run, last_step

pytestmark = pytest.mark.slow


def launch(env, config: Path, *args: str) -> int:
    done = env.arctui("launch", str(config), "--detach", *args, check=True)
    return int(done.stdout.split()[0])


# A job waits for Slurm's scheduler, starts Python and torch on a node, trains, and its processes exit:
# on a loaded machine that is minutes. This bound only turns a hang into a failure.
SLURM_PATIENCE = 5


def wait_final(env, run_id: int, wait_until):
    return wait_until(lambda: (r := get_run(env, run_id)).status not in ("queued", "running") and r,
                      poll=0.5, what=f"run {run_id} to end", timeout=SLURM_PATIENCE * wait_bound())


def wait_bound() -> float:
    return float(os.environ.get("ARCTUI_TEST_WAIT_SECONDS", "120"))


def wait_step(env, run_id: int, step: int, wait_until):
    def reached():
        run = get_run(env, run_id)
        assert run.status in ("queued", "running"), f"run {run_id} ended {run.status}: {run.last_error}"
        return last_step(env, run_id) >= step and run
    return wait_until(reached, poll=0.3, what=f"run {run_id} to reach step {step}",
                      timeout=SLURM_PATIENCE * wait_bound())


def slurm(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True).stdout


def test_a_run_goes_queued_running_completed_with_every_point(slurm_env, tmp_path, tiny_model_dir, wait_until):
    env = slurm_env
    config = write_slurm_config(tmp_path, tiny_model_dir, max_steps=4)
    done = env.arctui("launch", str(config), "--detach", check=True)
    run_id = int(done.stdout.split()[0])
    assert "queued" in done.stderr and "PostgreSQL" in done.stderr  # the SQLite warning, one line
    seen = []

    def ended():
        run = get_run(env, run_id)
        if not seen or seen[-1] != run.status:
            seen.append(run.status)
        return run.status not in ("queued", "running") and run

    run = wait_until(ended, poll=0.2, what="the Slurm run to end", timeout=SLURM_PATIENCE * wait_bound())
    assert run.status == "completed", run.last_error
    assert seen[0] in ("queued", "running") and seen[-1] == "completed"
    assert run.executor == "slurm" and run.job_id and run.job_ids == (run.job_id,)
    assert run.started_at is not None and run.created_at <= run.started_at <= run.ended_at
    assert run.job_state == "COMPLETED" and run.node_list
    assert assert_points_match_file(env, run_id) == [1, 2, 3, 4]
    shown = env.arctui("show", str(run_id), check=True).stdout
    assert f"Slurm job {run.job_id}  state COMPLETED  nodes {run.node_list}" in shown
    as_json = json.loads(env.arctui("show", str(run_id), "--format", "json", check=True).stdout)
    assert as_json["slurm"]["job_id"] == run.job_id
    # Slurm itself agrees: the job ran the batch script arctui wrote
    assert "JobState=COMPLETED" in slurm("scontrol", "show", "job", run.job_id)


def test_two_tasks_are_two_accelerate_machines_and_match_one_process(slurm_env, tmp_path, tiny_model_dir,
                                                                     wait_until):
    env = slurm_env
    two = write_slurm_config(tmp_path, tiny_model_dir, {"tasks_per_node": 2}, max_steps=3, name="two-machines")
    two_id = launch(env, two)
    one_id = launch(env, two, "--executor", "local", "--name", "one-process")
    runs = {run_id: wait_final(env, run_id, wait_until) for run_id in (two_id, one_id)}
    for run in runs.values():
        assert run.status == "completed", run.last_error
    starts = [e for e in file_events(Path(runs[two_id].log_path).parent) if e["event"] == "start"]
    assert starts[-1]["world_size"] == 2  # the two-machine rendezvous (gloo) really ran
    assert "--num_machines 2" in (Path(runs[two_id].log_path).parent / "job.sbatch").read_text()

    def losses(run_id):
        events = file_events(Path(runs[run_id].log_path).parent)
        return [e["loss"] for e in events if e["event"] == "step"]

    # the same global batch (2 = 2 machines x 1, or 1 process x 2 accumulated): the same loss
    assert losses(two_id) == pytest.approx(losses(one_id), rel=2e-2)


def test_stop_checkpoints_and_resume_submits_a_new_job(slurm_env, tmp_path, tiny_model_dir, wait_until):
    env = slurm_env
    config = write_slurm_config(tmp_path, tiny_model_dir, max_steps=2000, save_steps=1000)
    run_id = launch(env, config)
    wait_step(env, run_id, 2, wait_until)
    env.arctui("stop", str(run_id), check=True)
    run = wait_final(env, run_id, wait_until)
    assert run.status == "stopped", run.last_error
    stopped_at = last_step(env, run_id)
    folder = Path(run.log_path).parent
    assert (folder / "output" / f"checkpoint-{stopped_at}").is_dir()
    first_job = run.job_id
    env.arctui("resume", str(run_id), "--set", f"max_steps={stopped_at + 2}", "--detach", check=True)
    run = wait_final(env, run_id, wait_until)
    assert run.status == "completed", run.last_error
    assert len(run.job_ids) == 2 and run.job_ids[0] == first_job and run.job_id == run.job_ids[1] != first_job
    assert assert_points_match_file(env, run_id) == list(range(1, stopped_at + 3))
    starts = [e for e in file_events(folder) if e["event"] == "start"]
    assert [s["start_step"] for s in starts] == [0, stopped_at]


def test_the_time_limit_warning_requeues_and_the_step_count_goes_on(slurm_env, tmp_path, tiny_model_dir,
                                                                     wait_until):
    """``--time=1 --signal=B:TERM@20``: the warning comes while the job trains; the runner checkpoints,
    the batch script requeues the job, and the same job continues from the checkpoint. Once it was
    requeued the limit is lifted (``scontrol update``) so that the second start can finish."""
    env = slurm_env
    config = write_slurm_config(tmp_path, tiny_model_dir, {"time": "1", "signal_seconds": 20},
                                max_steps=300, save_steps=1000, logging_steps=5)
    run_id = launch(env, config)
    folder = Path(get_run(env, run_id).log_path).parent

    def requeued():
        run = get_run(env, run_id)
        assert run.status in ("queued", "running"), run.last_error
        return run.job_state and "requeued" in run.job_state and run

    run = wait_until(requeued, poll=0.5, what="the job to be requeued after its warning signal",
                     timeout=SLURM_PATIENCE * wait_bound())
    slurm("scontrol", "update", f"jobid={run.job_id}", "timelimit=UNLIMITED")
    run = wait_final(env, run_id, wait_until)
    assert run.status == "completed", run.last_error
    assert run.job_ids == (run.job_id,)  # one run, one job that ran twice
    events = file_events(folder)
    starts = [e for e in events if e["event"] == "start"]
    ends = [e for e in events if e["event"] == "end"]
    assert len(starts) >= 2 and ends[0]["status"] == "stopped"
    checkpoints = [e["step"] for e in events if e["event"] == "checkpoint"]
    assert starts[1]["start_step"] == checkpoints[0] > 0
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == sorted(set(steps)) and steps[-1] == 300  # no step trained or logged twice
    assert_points_match_file(env, run_id)


def test_scancel_from_outside_ends_the_run_cancelled(slurm_env, tmp_path, tiny_model_dir, wait_until):
    env = slurm_env
    config = write_slurm_config(tmp_path, tiny_model_dir, max_steps=2000, save_steps=1000)
    run_id = launch(env, config)
    run = wait_step(env, run_id, 1, wait_until)
    slurm("scancel", run.job_id)
    run = wait_final(env, run_id, wait_until)
    assert run.status == "stopped" and run.job_state.startswith("CANCELLED")
    assert "cancelled" in run.last_error
    assert_points_match_file(env, run_id)


def test_a_node_going_down_ends_the_run_crashed(slurm_env, slurm_node, tmp_path, tiny_model_dir, wait_until):
    env = slurm_env
    config = write_slurm_config(tmp_path, tiny_model_dir, {"requeue": False}, max_steps=2000, save_steps=1000)
    run_id = launch(env, config)
    wait_step(env, run_id, 1, wait_until)
    try:
        slurm("scontrol", "update", f"nodename={slurm_node}", "state=down", "reason=arctui-test")
        run = wait_final(env, run_id, wait_until)
    finally:  # the node back for the next tests (Slurm refuses a resume of a node that is not down)
        subprocess.run(["scontrol", "update", f"nodename={slurm_node}", "state=resume"], capture_output=True)
        wait_until(lambda: "idle" in slurm("sinfo", "-h", "-n", slurm_node, "-o", "%T"), poll=0.5,
                   what=f"node {slurm_node} to be back")
    assert run.status == "crashed" and run.job_state.startswith("NODE_FAIL"), (run.status, run.job_state)
    assert "NODE_FAIL" in run.last_error


def test_a_killed_supervisor_is_replaced_and_nothing_is_lost(slurm_env, tmp_path, tiny_model_dir, wait_until):
    env = slurm_env
    config = write_slurm_config(tmp_path, tiny_model_dir, max_steps=30)
    run_id = launch(env, config)
    run = wait_step(env, run_id, 1, wait_until)
    os.kill(run.supervisor_pid, signal.SIGKILL)
    wait_until(lambda: not Path(f"/proc/{run.supervisor_pid}").exists() or
               Path(f"/proc/{run.supervisor_pid}/stat").read_text().split()[2] == "Z", what="the supervisor to die")
    listed = env.arctui("runs", check=True)  # any command that opens the store repairs the run
    assert f"re-attached to Slurm job {run.job_id}" in listed.stderr
    final = wait_final(env, run_id, wait_until)
    assert final.status == "completed", final.last_error
    assert final.supervisor_pid != run.supervisor_pid
    assert assert_points_match_file(env, run_id) == list(range(1, 31))


def test_a_study_runs_its_variants_as_slurm_jobs_within_max_parallel(slurm_env, tmp_path, tiny_model_dir,
                                                                      wait_until):
    import yaml

    env = slurm_env
    base = write_slurm_config(tmp_path, tiny_model_dir, max_steps=2)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "on-slurm", "base": str(base),
                                     "variants": [{"name": "r4"}, {"name": "r8", "lora_r": 8}]}))
    env.arctui("study", "launch", str(study), "--max-parallel", "1", "--detach", check=True)
    store = env.store()
    try:
        run_ids = [s.run.id for s in store.study_runs("on-slurm")]
    finally:
        store.close()
    assert len(run_ids) == 2

    def both_ran():
        runs = [get_run(env, i) for i in run_ids]
        assert sum(r.status == "running" for r in runs) <= 1  # --max-parallel 1 holds on Slurm too
        env.arctui("study", "show", "on-slurm")  # whoever looks advances the study's queue
        return all(r.status not in ("queued", "running") for r in runs) and runs

    runs = wait_until(both_ran, poll=1.0, what="both variants to end", timeout=2 * SLURM_PATIENCE * wait_bound())
    assert [r.status for r in runs] == ["completed", "completed"], [r.last_error for r in runs]
    assert all(r.executor == "slurm" and r.job_id for r in runs)
    assert runs[0].job_id != runs[1].job_id
    assert [r.variant for r in runs] == ["r4", "r8"]


def test_the_cluster_view_shows_nodes_and_arctuis_jobs(slurm_env, slurm_node, tmp_path, tiny_model_dir, wait_until):
    env = slurm_env
    config = write_slurm_config(tmp_path, tiny_model_dir, max_steps=2000, save_steps=1000)
    run_id = launch(env, config)
    run = wait_until(lambda: (r := get_run(env, run_id)).job_id and r, what="the job to be submitted")
    try:
        cluster = json.loads(env.arctui("gpus", "--executor", "slurm", "--format", "json", check=True).stdout)
        node = next(n for n in cluster["nodes"] if n["node"] == slurm_node)
        assert node["partition"].rstrip("*") == "debug" and node["cpus"] >= 1 and node["gpus"] == 0
        job = next(j for j in cluster["jobs"] if j["job_id"] == run.job_id)
        assert job["run"] == f"{run_id} {run.name}" and job["state"] in ("PENDING", "RUNNING")
        table = env.arctui("gpus", "--executor", "slurm", check=True).stdout
        assert "PARTITION" in table and slurm_node in table and f"{run_id} {run.name}" in table
    finally:
        env.arctui("stop", str(run_id), "--kill", check=True)
    assert wait_final(env, run_id, wait_until).status == "stopped"
