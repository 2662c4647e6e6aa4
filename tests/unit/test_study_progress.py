"""A study's progress and ETA (``arctui.views.studies``) on the store's own records: the counts, and
the ETA's arithmetic - running runs finish at their pace, queued runs take the completed runs' wall
time per step and start in order as the study's slots free up."""

from __future__ import annotations

import json

import pytest

from arctui.views.studies import study_eta, study_progress
from db.records import Run, RunSummary, Study

T0 = 1_700_000_000.0


def summary(run_id: int, status: str, *, step: int | None = None, max_steps: int = 10, sps: float | None = None,
            started: float | None = None, ended: float | None = None) -> RunSummary:
    run = Run(run_id, f"r{run_id}", status, None, None, None, None, None, None, None, None, (), (), (), "", None,
              None, None, None, None, None, None, 0, _created=T0, _started=started, _ended=ended,
              _config_json=json.dumps({"max_steps": max_steps}), study_id=1, variant=f"v{run_id}")
    return RunSummary(run, step, None if status == "queued" else max_steps, None, None, None, None, None, sps, None,
                      None, 0)


def completed(run_id: int, seconds: float, steps: int = 10) -> RunSummary:
    return summary(run_id, "completed", step=steps, max_steps=steps, started=T0, ended=T0 + seconds)


def test_queued_runs_take_the_slot_that_frees_first():
    runs = [
        completed(1, 30.0),                                           # 3 s per step, start-up included
        summary(2, "running", step=0, sps=1.0, started=T0),           # 10 s left
        summary(3, "running", step=5, max_steps=55, sps=1.0, started=T0),  # 50 s left
        summary(4, "queued"), summary(5, "queued"), summary(6, "queued"),  # 30 s each
    ]
    # two slots end at 10 and 50; the queued runs go 10 -> 40, 40 -> 70, 50 -> 80
    assert study_eta(runs, {"max_parallel": 2}, T0) == pytest.approx(80.0)
    # one at a time (two run now, e.g. after a resume): the queued ones wait until both have ended
    assert study_eta(runs, {"max_parallel": 1}, T0) == pytest.approx(50.0 + 90.0)


def test_a_queued_run_with_more_steps_takes_longer():
    runs = [completed(1, 30.0), summary(2, "queued", max_steps=20)]
    assert study_eta(runs, {}, T0) == pytest.approx(60.0)


def test_a_running_run_not_yet_timed_goes_by_its_siblings():
    runs = [completed(1, 30.0), summary(2, "running", step=None, started=T0)]
    assert study_eta(runs, {}, T0 + 12.0) == pytest.approx(18.0)


def test_before_any_run_completed_queued_runs_go_at_the_running_pace():
    runs = [summary(1, "running", step=4, sps=2.0, started=T0), summary(2, "queued", max_steps=20)]
    assert study_eta(runs, {}, T0) == pytest.approx(6 * 2.0 + 20 * 2.0)


def test_gpus_auto_runs_as_many_at_once_as_run_now():
    runs = [completed(1, 30.0), summary(2, "running", step=0, sps=1.0, started=T0),
            summary(3, "queued"), summary(4, "queued")]
    # one runs now: the queued ones follow it one after the other
    assert study_eta(runs, {"run_gpus": "auto"}, T0) == pytest.approx(10.0 + 30.0 + 30.0)


def test_no_eta_when_nothing_is_left_or_nothing_to_go_by():
    assert study_eta([completed(1, 30.0)], {}, T0) is None
    assert study_eta([summary(1, "queued")], {}, T0) is None


def test_counts_put_crashed_with_failed_and_a_stopped_study_has_no_eta():
    runs = [completed(1, 30.0), summary(2, "crashed"), summary(3, "failed"), summary(4, "stopped"),
            summary(5, "queued")]
    active = Study(1, "s", {}, "active", _created=T0)
    progress = study_progress(active, runs, T0)
    assert progress.done_text == "1 of 5"
    assert progress.counts == {"completed": 1, "running": 0, "queued": 1, "failed": 2, "stopped": 1}
    assert progress.eta_s == pytest.approx(30.0) and progress.eta_text == "30s"
    record = progress.record()
    assert (record["failed"], record["crashed"], record["eta_s"]) == (1, 1, pytest.approx(30.0))
    assert study_progress(Study(1, "s", {}, "stopped", _created=T0), runs, T0).eta_s is None
