"""An injected CUDA OOM (the runner's test hook ``ARCTUI_TEST_OOM_AT_STEP``) ends its run as failed with
reason "out of memory", and the study goes on with its other runs.

A run config cannot carry environment variables to its runner, so the hook is set for the whole study
(every supervisor and runner inherits it) and only one variant reaches the step it fires at: ``oom``
trains 4 steps and hits the injected OOM at step 3; ``fits`` trains 2 steps and never gets there. With
``--max-parallel 1`` the failing variant runs first and the study then starts the other one.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.supervisor.helpers import make_env, write_config

pytestmark = pytest.mark.slow


def test_an_injected_oom_fails_its_run_as_out_of_memory_and_the_study_goes_on(
    tmp_path, tiny_model_dir, wait_seconds, monkeypatch
):
    env = make_env(tmp_path)
    base = write_config(tmp_path, tiny_model_dir, name="tiny", max_steps=2, eval_steps=2, save_steps=2)
    study = {
        "name": "ooms",
        "base": str(base),
        "variants": [{"name": "oom", "max_steps": 4}, {"name": "fits", "max_steps": 2}],
        "max_parallel": 1,
    }
    study_file = tmp_path / "ooms.yaml"
    study_file.write_text(yaml.safe_dump(study, sort_keys=False))
    monkeypatch.setenv("ARCTUI_TEST_OOM_AT_STEP", "3")  # env.environ() copies os.environ into arctui's

    proc = env.arctui("study", "launch", str(study_file), timeout=wait_seconds * 10)
    assert proc.returncode == 1, proc.stderr  # not every run completed
    assert "failed: out of memory" in proc.stdout

    record = json.loads(env.arctui("study", "show", "ooms", "--format", "json", check=True).stdout)
    assert record["status"] == "done"
    oom, fits = record["rows"]
    assert (oom["variant"], oom["status"], oom["reason"]) == ("oom", "failed", "out of memory")
    assert oom["step"] == 2  # the two steps before the injected OOM were trained and logged
    assert (fits["variant"], fits["status"], fits["reason"], fits["step"]) == ("fits", "completed", None, 2)
    assert fits["metrics"]["s_per_step"] > 0 and fits["metrics"]["final_loss"] > 0

    table = env.arctui("study", "show", "ooms", check=True).stdout
    assert "failed: out of memory" in table and "completed" in table

    store = env.store()
    try:
        summaries = store.study_runs("ooms")
        failed = summaries[0].run
        errors = store.recent_events(failed.id, limit=50, kinds=["error"])
    finally:
        store.close()
    assert failed.status == "failed" and failed.started_at < summaries[1].run.started_at
    assert "OutOfMemoryError" in failed.last_error and "ARCTUI_TEST_OOM_AT_STEP=3" in failed.last_error
    # The runner's own error event carries the exception type.
    assert any((e.data or {}).get("type") == "OutOfMemoryError" for e in errors), errors
