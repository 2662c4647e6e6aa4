"""The one evaluation path (arctui.supervisor.evaluation.evaluate_run) with a stand-in evaluator: what
``arctui eval`` and the supervisor's evaluation after training both rely on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from arctui.supervisor import evaluation
from arctui.supervisor.evaluation import EvalOptions, EvalRequest, evaluate_run
from arctui.supervisor.process import group_alive

# Writes a progress event, then (mode "result") the result and exits 0, or (mode "hang") waits to be
# stopped, or (mode "fail") an error event and exit 3.
EVALUATOR = """
import json, sys, time
events, mode = sys.argv[1], sys.argv[2]
def emit(seq, **event):
    with open(events, "a") as fh:
        fh.write(json.dumps({"seq": seq, "time": time.time(), **event}) + "\\n")
emit(1, event="eval_progress", done=1, total=2)
if mode == "result":
    emit(2, event="eval_result", step=5, dataset=sys.argv[3], metrics={"accuracy": 0.5, "vote_2": None})
elif mode == "fail":
    emit(2, event="error", message="CUDA out of memory\\nmore")
    sys.exit(3)
else:
    time.sleep(600)
"""


@pytest.fixture
def run(tmp_path, monkeypatch):
    from db.store import RunStore

    monkeypatch.setenv("ARCTUI_HOME", str(tmp_path / "home"))
    data = tmp_path / "val.json"
    data.write_text("{}")
    output_dir = tmp_path / "runs" / "1-evalme" / "output"
    (output_dir / "checkpoint-5").mkdir(parents=True)
    (output_dir / "checkpoint-5" / "config.json").write_text("{}")  # full-model weights: no base model
    with RunStore.open(f"sqlite:///{tmp_path / 'e.db'}") as store:
        run = store.create_run({"val_dataset": [str(data), "output-from-examples-v1"]}, name="evalme",
                               output_dir=str(output_dir), log_path=str(output_dir.parent / "train.log"))
        yield store, run


def stand_in(monkeypatch, mode: str) -> None:
    def command(run, weights, data, prompt_version, out_dir, options, *, dataset_name=None):
        return [sys.executable, "-c", EVALUATOR, str(Path(out_dir) / "events.jsonl"), mode, dataset_name]

    monkeypatch.setattr(evaluation, "build_command", command)


def test_the_result_is_recorded_and_every_event_seen(run, monkeypatch):
    store, r = run
    stand_in(monkeypatch, "result")
    started, seen = [], []
    outcome = evaluate_run(store, r, EvalRequest(checkpoint="5"), last_step=None, poll=0.02,
                           on_start=lambda plan, pid: started.append((plan.weights.step, pid)),
                           on_event=lambda e: seen.append(e["event"]))
    assert outcome.failure() is None and outcome.exit_code == 0 and not outcome.stopped
    assert started == [(5, outcome.pid)] and seen == ["eval_progress", "eval_result"]
    assert outcome.plan.out_dir.name == "eval-5-val" and (outcome.plan.out_dir / "eval.log").is_file()
    assert {(e.metric, e.step, e.value) for e in store.eval_results(r.id)} == {("accuracy", 5, 0.5)}


def test_a_failure_is_one_line_with_the_error_event_and_the_log(run, monkeypatch):
    store, r = run
    stand_in(monkeypatch, "fail")
    outcome = evaluate_run(store, r, EvalRequest(), last_step=None, poll=0.02)
    assert outcome.exit_code == 3 and outcome.result is None
    assert outcome.failure() == f"(exit code 3): CUDA out of memory; see {outcome.log_path}"
    assert store.eval_results(r.id) == []


def test_tick_stops_the_evaluation_group(run, monkeypatch, tmp_path):
    store, r = run
    stand_in(monkeypatch, "hang")
    log = tmp_path / "train.log"
    pids = []

    def tick() -> bool:  # stop once it has started writing events
        return bool(pids) and (Path(r.output_dir).parent / "eval-5-val" / "events.jsonl").exists()

    outcome = evaluate_run(store, r, EvalRequest(options=EvalOptions(device="cpu")), last_step=None,
                           log_path=log, gpu_ids=(), on_start=lambda plan, pid: pids.append(pid), tick=tick,
                           poll=0.02)
    assert outcome.stopped and outcome.exit_code == 143 and not group_alive(outcome.pid)
    assert outcome.failure().startswith("(killed by SIGTERM (exit 143))")
    assert log.read_text().startswith(f"\n$ {sys.executable} -c")  # the command, then its output


def test_relative_data_is_made_absolute(run, monkeypatch, tmp_path):
    store, r = run
    monkeypatch.chdir(tmp_path)
    plan = evaluation.plan_evaluation(r, EvalRequest(data="val.json"), last_step=None)
    assert plan.dataset_name == str(tmp_path / "val.json")
    assert plan.command[plan.command.index("--data") + 1] == str(tmp_path / "val.json")
