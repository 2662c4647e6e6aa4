"""The foreground view reads the store only: render a run from a real store, and watch a finished one."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from arctui.supervisor.live import render, run_exit_code, status_line, watch_run
from db.records import GpuSample


@pytest.fixture
def store(tmp_path, monkeypatch):
    from db.store import RunStore

    monkeypatch.setenv("ARCTUI_HOME", str(tmp_path / "home"))
    with RunStore.open(f"sqlite:///{tmp_path / 'live.db'}") as store:
        yield store


def started_run(store, name="live", gpu_ids=(0,)):
    run = store.create_run({"name": name, "gpus": list(gpu_ids) or "cpu"}, name=name)
    store.update_run(run.id, gpu_ids=list(gpu_ids))
    store.set_status(run.id, "running")
    t = time.time()
    store.ingest_events(run.id, [
        {"seq": 1, "time": t, "event": "start", "max_steps": 100, "start_step": 0},
        {"seq": 2, "time": t, "event": "step", "step": 40, "max_steps": 100, "loss": 0.75,
         "seconds_per_step": 2.0, "tokens_per_second": 5000.0, "peak_memory_gb": {"0": 7.0}},
        {"seq": 3, "time": t, "event": "eval", "step": 40, "eval_loss": 0.8, "eval_seconds": 1.0},
    ])
    return run.id


def test_render_shows_progress_losses_speed_vram_and_eta(store):
    run_id = started_run(store)
    store.append_gpu_samples(run_id, [GpuSample(gpu_index=0, gpu_name="H100", time=time.time(),
                                                memory_used_mb=7.5 * 1024, memory_total_mb=80 * 1024,
                                                utilization_pct=97.0, power_w=500.0)])
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(render(store.get_summary(run_id), store.latest_gpu_samples(run_id), "stopping"))
    text = console.file.getvalue()
    for part in ("run 1 live [running]", "40/100", "0.75", "eval loss 0.8", "2 s/step", "5000 tokens/s",
                 "GPU0 7.5/80 GB 97%", "2m00s", "stopping"):
        assert part in text, part


def test_status_line_without_gpu_samples(store):
    run_id = started_run(store, "cpu-run", gpu_ids=())
    line = status_line(store.get_summary(run_id))
    assert line == "run 1 cpu-run running step 40/100 loss 0.75 eval 0.8 s/step 2 tok/s 5000 ETA 2m00s"


def test_watching_a_finished_run_returns_its_exit_code(store, capsys):
    run_id = started_run(store, gpu_ids=())
    store.set_status(run_id, "failed", exit_code=3, error="RuntimeError: boom")
    out = io.StringIO()
    assert watch_run(store, run_id, db_url=None, out=out) == 3
    assert "step 40/100" in out.getvalue()
    assert "failed" in capsys.readouterr().err


def test_exit_codes_by_status(store):
    run_id = started_run(store, gpu_ids=())
    store.set_status(run_id, "stopped", exit_code=0)  # the launcher exits 0 after a clean stop
    assert run_exit_code(store.get_run(run_id)) == 143
    store.set_status(run_id, "queued")
    store.set_status(run_id, "running")
    store.set_status(run_id, "completed", exit_code=0)
    assert run_exit_code(store.get_run(run_id)) == 0
