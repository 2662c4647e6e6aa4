"""Issue 16, item 4: deleting the run folder mid-run ended as ``completed``, exit 0, 8 of 40 steps, no
error. No ``end`` event = not completed: the run ends ``failed`` with "run folder disappeared", both
under a live supervisor and when recovery finds it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from arctui.supervisor.supervise import Supervisor
from tests.faults.conftest import TRACEBACK, cli
from tests.supervisor.helpers import START, dead_group, running_run, steps

pytestmark = pytest.mark.faults


def test_live_supervisor_marks_a_vanished_folder_failed(store, home):
    run_id, folder = running_run(store, "gone", dead_group(), [START, *steps(8)])
    supervisor = Supervisor(store, run_id, poll=0.01)
    supervisor.ingest_or_retry()  # the first 8 steps landed while the folder was there
    shutil.rmtree(folder.root)
    training = subprocess.Popen(["true"], start_new_session=True)  # the trainer exits 0 without an end
    status = supervisor.watch(popen=training, pgid=training.pid, gpu_ids=())
    run = store.get_run(run_id)
    assert status == run.status == "failed"
    assert run.last_error.startswith("run folder disappeared") and run.exit_code == 0
    assert store.get_summary(run_id).last_step == 8


def test_recovery_marks_a_vanished_folder_failed(store, store_url, home, capsys):
    run_id, folder = running_run(store, "gone2", dead_group(), [START, *steps(8)])
    shutil.rmtree(folder.root)
    code, _, err = cli(capsys, "--db", store_url, "runs")
    assert code == 0 and TRACEBACK not in err, err
    run = store.get_run(run_id)
    assert run.status == "failed" and run.last_error.startswith("run folder disappeared")


def test_logs_of_a_vanished_folder_say_so(store, store_url, home, capsys):
    run_id, folder = running_run(store, "gone3", dead_group(), [START, *steps(2)], log="step 1\n")
    shutil.rmtree(folder.root)
    code, out, err = cli(capsys, "--db", store_url, "logs", str(run_id))
    assert code != 0 and out == ""
    # recovery (any command) first says what it found, then the one error line
    assert err.splitlines()[0].endswith("its run folder disappeared; marked failed"), err
    error = err.splitlines()[-1]
    assert error.startswith("arctui: error:") and "run folder" in error and "is gone" in error, err
    assert not folder.root.exists()  # looking at a deleted run does not bring its folder back
    assert TRACEBACK not in err
    code, out, err = cli(capsys, "--db", store_url, "logs", str(run_id), "--supervisor")
    assert code != 0 and "is gone" in err
