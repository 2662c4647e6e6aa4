"""``eval_after_training: true``: the supervisor evaluates the final weights as part of the run, through
the real CLI (``arctui launch`` in a subprocess, a detached supervisor, ``runner.evaluate``)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from arctui.supervisor.process import group_alive
from arctui.supervisor.runfolder import RunFolder
from tests.supervisor.helpers import get_run, make_env, wait_until, write_config

EVAL = {"predictions_per_task": 2, "max_new_tokens": 8, "batch_size": 4, "max_tasks": 1}


def supervisor_log(run) -> str:
    return (Path(run.log_path).parent / "supervisor.log").read_text()


@pytest.mark.slow
def test_launch_evaluates_the_final_weights_and_shows_the_accuracy(tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    cfg = write_config(tmp_path, tiny_model_dir, eval_after_training=True, eval=EVAL)
    proc = env.arctui("launch", str(cfg), "--name", "evaltrain")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    with env.store() as store:
        run = store.get_run("evaltrain")
        results = {r.metric: r for r in store.eval_results(run.id)}
        last = store.get_summary(run.id).last_step
    assert run.status == "completed" and run.exit_code == 0 and not run.last_error, run.last_error
    assert last == 4
    accuracy = results["accuracy"]
    assert accuracy.step == 4 and accuracy.dataset.endswith("val.json[:1]")
    assert {"pass_n", "vote_2", "unanswered", "tokens_per_second"} <= set(results)
    assert results["unanswered"].value == 1.0  # a random tiny model writes no valid grid in 8 tokens

    run_dir = Path(run.log_path).parent
    eval_folder = run_dir / "eval-4-val"
    assert {"metrics.json", "submission.json", "predictions.jsonl", "tasks.json"} <= {
        p.name for p in eval_folder.iterdir()}
    assert len(json.loads((eval_folder / "tasks.json").read_text())) == 1
    # 1 task x its test samples x 2 predictions, all written by the evaluation of step 4
    metrics = json.loads((eval_folder / "metrics.json").read_text())
    assert metrics["step"] == 4 and metrics["tasks"] == 1 and metrics["predictions_per_task"] == 2
    # the evaluation's own events never reached the run's event stream (their seq would clash)
    with env.store() as store:
        assert store.get_run(run.id).events_cursor == max(
            json.loads(line)["seq"] for line in (run_dir / "events.jsonl").read_text().splitlines())
    assert "runner.evaluate" in (run_dir / "train.log").read_text()
    assert "evaluation recorded at step 4" in supervisor_log(run)

    show = env.arctui("show", "evaltrain", check=True).stdout
    assert "accuracy 0.00%" in show
    rows = json.loads(env.arctui("runs", "--format", "json", check=True).stdout)
    assert [r["accuracy"] for r in rows if r["name"] == "evaltrain"] == [0.0]


@pytest.mark.slow
def test_a_failed_evaluation_keeps_the_training_completed(tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    cfg = write_config(tmp_path, tiny_model_dir, name="badeval", max_steps=2, eval_steps=2, save_steps=2,
                       eval_after_training=True, eval={**EVAL, "data": str(tmp_path / "missing.json")})
    proc = env.arctui("launch", str(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with env.store() as store:
        run = store.get_run("badeval")
        assert store.eval_results(run.id) == []
    assert run.status == "completed" and run.exit_code == 0
    assert run.last_error.startswith("evaluation after training failed")
    assert "missing.json" in run.last_error


@pytest.mark.slow
def test_stop_during_the_evaluation_stops_it_and_keeps_the_training_completed(tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    long_eval = {"predictions_per_task": 8, "max_new_tokens": 1000, "batch_size": 2}  # minutes if not stopped
    cfg = write_config(tmp_path, tiny_model_dir, name="stopeval", max_steps=2, eval_steps=2, save_steps=2,
                       eval_after_training=True, eval=long_eval)
    run_id = int(env.arctui("launch", str(cfg), "--detach", check=True).stdout.split()[0])
    log = Path(get_run(env, run_id).log_path).parent / "supervisor.log"
    wait_until(lambda: log.exists() and "evaluation after training: pid" in log.read_text(), what="evaluation")
    run = get_run(env, run_id)
    assert run.status == "running"  # the run reads running while it evaluates
    eval_pgid = run.pgid
    assert f"process group {eval_pgid}" in log.read_text().split("evaluation after training: pid")[1]
    proc = env.arctui("stop", str(run_id), "--wait", "600")
    assert proc.returncode == 0, proc.stderr
    run = get_run(env, run_id)
    assert run.status == "completed" and run.exit_code == 0
    assert run.last_error.startswith("evaluation after training stopped")
    assert not group_alive(eval_pgid)
    with env.store() as store:
        assert store.eval_results(run_id) == []


@pytest.mark.slow
def test_a_supervisor_killed_during_the_evaluation_is_replaced_and_the_evaluation_still_stops(
        tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    long_eval = {"predictions_per_task": 8, "max_new_tokens": 1000, "batch_size": 2}
    cfg = write_config(tmp_path, tiny_model_dir, name="orphaneval", max_steps=2, eval_steps=2, save_steps=2,
                       eval_after_training=True, eval=long_eval)
    run_id = int(env.arctui("launch", str(cfg), "--detach", check=True).stdout.split()[0])
    log = Path(get_run(env, run_id).log_path).parent / "supervisor.log"
    wait_until(lambda: log.exists() and "evaluation after training: pid" in log.read_text(), what="evaluation")
    run = get_run(env, run_id)
    eval_pgid, old_supervisor = run.pgid, run.supervisor_pid
    os.kill(old_supervisor, signal.SIGKILL)  # the supervisor this test's launch started
    # recovery acts once the kernel has freed the dead supervisor's lock
    wait_until(lambda: not RunFolder.of(run).supervisor_alive(), what="supervisor death")
    env.arctui("runs", check=True)  # any command that opens the store repairs orphans
    wait_until(lambda: get_run(env, run_id).supervisor_pid not in (None, old_supervisor), what="new supervisor")
    wait_until(lambda: "re-attaching to training process group" in log.read_text(), what="re-attach")
    assert group_alive(eval_pgid) and get_run(env, run_id).status == "running"
    proc = env.arctui("stop", str(run_id), "--wait", "600")
    assert proc.returncode == 0, proc.stderr
    run = get_run(env, run_id)
    assert run.status == "completed" and run.last_error.startswith("evaluation after training")
    assert not group_alive(eval_pgid)


def test_without_eval_after_training_nothing_is_evaluated_by_default(tmp_path):
    from arctui.config import load_config

    cfg = load_config(write_config(tmp_path, tmp_path, name="plain"))
    assert cfg.eval_after_training is False
    assert cfg.eval_options["predictions_per_task"] == 8 and cfg.eval_options["data"] is None
