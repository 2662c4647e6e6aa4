"""End to end on CPU: a study of three tiny variants with --max-parallel 2 runs to completion through
real supervisors and `accelerate launch`, never more than two at once, and its table has three rows
with real figures. Then stop/resume: a stopped study continues its runs from their checkpoints."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.supervisor.helpers import make_env, wait_until, write_config

pytestmark = pytest.mark.slow


def _write_study(tmp_path, base, **extra):
    study = {
        "name": "trio",
        "base": str(base),
        "variants": [{"name": "r2", "lora_r": 2}, {"name": "r4", "lora_r": 4}, {"name": "r8", "lora_r": 8}],
        **extra,
    }
    path = tmp_path / "trio.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _max_overlap(runs) -> int:
    """The most runs that were running at the same moment (from their start and end times)."""
    moments = sorted([(r.started_at.timestamp(), 1) for r in runs] + [(r.ended_at.timestamp(), -1) for r in runs],
                     key=lambda m: (m[0], m[1]))
    busy = peak = 0
    for _, change in moments:
        busy += change
        peak = max(peak, busy)
    return peak


def test_study_of_three_tiny_variants_completes_two_at_a_time(tmp_path, tiny_model_dir, wait_seconds):
    env = make_env(tmp_path)
    base = write_config(tmp_path, tiny_model_dir, name="tiny", max_steps=4)
    study_file = _write_study(tmp_path, base)

    proc = env.arctui("study", "launch", str(study_file), "--max-parallel", "2", timeout=wait_seconds * 10)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "1"  # the study id first
    assert "study trio (done; 3 of 3 completed" in proc.stdout

    shown = env.arctui("study", "show", "trio", "--format", "json", check=True)
    record = json.loads(shown.stdout)
    assert record["status"] == "done" and record["param_keys"] == ["lora_r"]
    rows = record["rows"]
    assert [r["variant"] for r in rows] == ["r2", "r4", "r8"]
    assert [r["params"]["lora_r"] for r in rows] == [2, 4, 8]
    for row in rows:
        assert row["status"] == "completed" and row["step"] == 4
        metrics = row["metrics"]
        assert metrics["s_per_step"] > 0 and metrics["tokens_per_second"] > 0 and metrics["duration_s"] > 0
        assert metrics["final_loss"] > 0 and metrics["eval_loss"] > 0
    assert rows[0]["baseline"] and rows[1]["ratios"]["s_per_step"] > 0

    table = env.arctui("study", "report", "trio", "--baseline", "r4", check=True).stdout
    lines = table.splitlines()
    assert len(lines) == 5 and "baseline r4" in lines[0]  # title, header, three rows
    assert "s/step (median)" in lines[1] and "vs baseline" in lines[1]
    assert all("completed" in line for line in lines[2:])
    assert "baseline" in lines[3] and "x, " in lines[2]
    markdown = env.arctui("study", "report", "trio", "--format", "markdown", check=True).stdout
    assert markdown.count("\n| r") == 3
    csv_text = env.arctui("study", "report", "trio", "--format", "csv", check=True).stdout
    assert len(csv_text.strip().splitlines()) == 4

    plots = tmp_path / "plots"
    env.arctui("study", "report", "trio", "--plots", str(plots), check=True)
    report = (plots / "report.md").read_text()
    assert report.count("\n| r") == 3 and "![training loss](loss.png)" in report and "(speed.png)" in report
    from PIL import Image

    for name in ("loss.png", "speed.png"):
        with Image.open(plots / name) as image:
            image.verify()  # decodes as a PNG
            assert image.format == "PNG" and image.size[0] > 100

    listed = env.arctui("runs", "--where", "study=trio", "--format", "json", check=True)
    assert len(json.loads(listed.stdout)) == 3
    store = env.store()
    try:
        runs = [s.run for s in store.study_runs("trio")]
    finally:
        store.close()
    assert _max_overlap(runs) == 2  # two at once, never three
    listing = env.arctui("study", "list", check=True).stdout
    assert "trio" in listing and "3 of 3" in listing


def test_stop_then_resume_completes_the_remaining_runs(tmp_path, tiny_model_dir, wait_seconds):
    env = make_env(tmp_path)
    base = write_config(tmp_path, tiny_model_dir, name="tiny", max_steps=40, save_steps=2, eval_steps=40)
    study_file = _write_study(tmp_path, base, max_parallel=1)
    env.arctui("study", "launch", str(study_file), "--detach", check=True)

    def first_running_with_checkpoint():
        store = env.store()
        try:
            runs = [s for s in store.study_runs("trio")]
            return runs[0].run.status == "running" and len(store.checkpoints(runs[0].run.id)) >= 1
        finally:
            store.close()

    wait_until(first_running_with_checkpoint, timeout=wait_seconds * 3, what="a checkpoint of the first run")
    stopped = env.arctui("study", "stop", "trio", check=True).stdout
    assert "unqueued" in stopped and "stop requested" in stopped

    def all_ended():
        store = env.store()
        try:
            return all(s.run.status not in ("queued", "running") for s in store.study_runs("trio"))
        finally:
            store.close()

    wait_until(all_ended, timeout=wait_seconds * 3, what="the study's runs to stop")
    store = env.store()
    try:
        assert store.get_study("trio").status == "stopped"
        statuses = [s.run.status for s in store.study_runs("trio")]
        stopped_at = store.study_runs("trio")[0].last_step
    finally:
        store.close()
    assert statuses == ["stopped", "stopped", "stopped"]
    assert "trio" in env.arctui("study", "list", check=True).stdout  # nothing deleted

    proc = env.arctui("study", "resume", "trio", timeout=wait_seconds * 20)
    assert proc.returncode == 0, proc.stderr
    store = env.store()
    try:
        summaries = store.study_runs("trio")
        first = summaries[0].run.id
        steps = [p.step for p in store.metric_series(first, "loss", max_points=100000)]
        resumed_from = [e for e in store.recent_events(first, limit=50, kinds=["start"])]
    finally:
        store.close()
    assert [s.run.status for s in summaries] == ["completed"] * 3
    assert all(s.last_step == 40 for s in summaries)
    assert steps == list(range(1, 41))  # continuous: resumed from its checkpoint, nothing repeated or lost
    assert stopped_at is not None and stopped_at < 40 and len(resumed_from) == 2


def test_the_queue_survives_the_death_of_its_scheduler(tmp_path, tiny_model_dir, wait_seconds):
    import os
    import signal

    env = make_env(tmp_path)
    base = write_config(tmp_path, tiny_model_dir, name="tiny", max_steps=4)
    env.arctui("study", "launch", str(_write_study(tmp_path, base, max_parallel=1)), "--detach", check=True)
    log = env.home / "studies" / "1.scheduler.log"

    def scheduler_pids() -> list[int]:
        text = log.read_text() if log.exists() else ""
        return [int(line.split("scheduler pid ")[1].split()[0]) for line in text.splitlines() if "scheduler pid" in line]

    pid = wait_until(lambda: (scheduler_pids() or [None])[0], what="the scheduler to start")
    os.kill(pid, signal.SIGKILL)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(gone, what="the scheduler to die")

    def statuses() -> list[str]:
        store = env.store()
        try:
            return [s.run.status for s in store.study_runs("trio")]
        finally:
            store.close()

    wait_until(lambda: statuses()[0] not in ("queued", "running"), timeout=wait_seconds * 3,
               what="the first run to end (its supervisor is not the scheduler)")
    # The queue is the store: the next command that looks at the study starts what waits, and a new scheduler.
    env.arctui("study", "show", "trio", check=True)
    wait_until(lambda: statuses() == ["completed"] * 3, timeout=wait_seconds * 6, what="every run to complete")
    assert len(scheduler_pids()) == 2
