"""Issue 16, item 1 through the real CLI: a run whose event file holds a value the store cannot hold
(the issue's ``max_steps=10**20``) and whose supervisor is gone. Every command still answers without a
traceback, the events before the bad one are stored (0 lost, 0 doubled), and the run must end
``failed`` with the reason rather than stay ``running`` with a store error on every command."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import TRACEBACK, arctui_process, cli
from tests.supervisor.helpers import START, dead_group, running_run, steps

pytestmark = pytest.mark.faults

HUGE = 10**20


def events() -> list[dict]:
    bad = {"seq": 5, "time": time.time(), "event": "step", "step": 4, "max_steps": HUGE, "loss": 0.5}
    return [START, *steps(3), bad, *steps(2, start_seq=6)]


@pytest.fixture
def orphan(store, store_url, home):
    run_id, folder = running_run(store, "huge", dead_group(), events())
    return store, store_url, run_id


def test_commands_answer_without_a_traceback_and_keep_the_good_events(orphan, capsys):
    store, url, run_id = orphan
    for argv in (["runs"], ["show", "huge"], ["stop", "huge"], ["runs"]):
        code, _, err = cli(capsys, "--db", url, *argv)
        assert code in (0, 2) and err.count("\n") <= 1 and TRACEBACK not in err, (argv, err)
    run = store.get_run(run_id)
    assert run.events_cursor == 4  # start + 3 steps stored, once
    assert [p.step for p in store.metric_series(run_id, "loss")] == [1, 2, 3]
    assert "max_steps 100000000000000000000 is beyond what the store holds" in run.last_error
    if store.dialect == "sqlite":
        proc = arctui_process("--db", url, "runs")
        assert TRACEBACK not in proc.stderr and "OverflowError" not in proc.stderr, proc.stderr


def test_the_run_ends_failed_with_the_reason(orphan, capsys):
    store, url, run_id = orphan
    code, _, err = cli(capsys, "--db", url, "runs")
    assert code == 0, err
    run = store.get_run(run_id)
    assert run.status == "failed"
    assert "event 5: max_steps 100000000000000000000 is beyond what the store holds" in run.last_error
    code, _, err = cli(capsys, "--db", url, "runs")  # and it stays that way: no error on later commands
    assert code == 0 and err == ""
