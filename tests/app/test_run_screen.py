"""Pilot tests of the Run screen: live panels from the store, stop with confirmation, resume refusal,
a log that follows, phases with their progress, a ticking elapsed time, the ETA with evaluations,
the evaluation-after-training note and a CPU run's process panel."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from textual.widgets import Log, Static

from arctui.app import make_app
from arctui.screens.confirm import ConfirmScreen
from arctui.screens.run import RunScreen
from arctui.widgets.following_log import FollowingLog
from arctui.widgets.line_plot import LinePlot
from db.store import RunStore
from tests.app.conftest import config


def static_text(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def open_run(wait_for, pilot, app, run_id) -> RunScreen:
    app.open_run(str(run_id))
    await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail is not None)
    return app.screen


async def test_run_screen_shows_curves_progress_gpus_and_log(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(wait_for, pilot, app, seeded.running_id)
        loss = screen.query_one("#loss-plot", LinePlot)
        names = [s.name for s in loss.series]
        assert names == ["train", "eval"]
        assert len(loss.series[0].xs) == 40 and loss.series[0].xs[-1] == 40
        # the plot's legend shows the latest step's value, the progress panel the median: both say so
        assert [s.name for s in screen.query_one("#speed-plot", LinePlot).series] == ["latest s/step"]
        progress = static_text(screen, "#run-progress-text")
        assert "step 40/100" in progress
        assert "s/step (median) 1.80 (latest " in progress and "tok/s (mean) 13.3k" in progress
        assert "peak VRAM 9.5 GB" in progress
        # 60 steps left at the median 1.8 s/step; elapsed is the frozen clock minus started_at
        assert "ETA 1m48s" in progress and "elapsed 10m00s" in progress
        assert "skipped 35.0% of prompts" in progress
        gpus = static_text(screen, "#run-gpus")
        assert "H100 80GB HBM3" in gpus and "9.5/80 GB" in gpus and "87%" in gpus
        log = screen.query_one("#run-log", Log)
        assert log.lines[-1] == "step 40/100 loss 0.6461"
        assert len(log.lines) == 40


async def test_new_events_reach_the_screen(seeded, wait_for, step_events):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(wait_for, pilot, app, seeded.running_id)
        with RunStore.open(seeded.url) as store:
            cursor = store.get_run(seeded.running_id).events_cursor
            store.ingest_events(seeded.running_id, step_events(cursor + 1, range(41, 43), floor=0.35,
                                                               seconds_per_step=1.8, vram=9.5, max_steps=100))
        await wait_for(pilot, lambda: screen.detail.row.step == 42)  # the next poll (0.5 s) brings them
        assert screen.query_one("#loss-plot", LinePlot).series[0].xs[-1] == 42
        assert "step 42/100" in static_text(screen, "#run-progress-text")


async def test_stop_asks_first_and_cancel_keeps_the_run(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(wait_for, pilot, app, 5)  # queued: stopping it needs no process
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert app.screen is screen
        with RunStore.open(seeded.url) as store:
            assert store.get_run(5).status == "queued"


async def test_stop_confirmed_stops_a_queued_run(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        screen = await open_run(wait_for, pilot, app, 5)
        await pilot.press("x")
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.detail.row.status == "stopped")
        assert app.screen is screen


async def test_stop_of_a_finished_run_is_refused_with_a_reason(seeded, wait_for, notified):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        await open_run(wait_for, pilot, app, seeded.completed_ids[0])
        await pilot.press("x")
        assert not isinstance(app.screen, ConfirmScreen)
        await wait_for(pilot, lambda: notified.find("only queued or running runs can be stopped"))


async def test_resume_of_a_completed_run_is_a_notification(seeded, wait_for, notified):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        screen = await open_run(wait_for, pilot, app, seeded.completed_ids[0])
        await pilot.press("r")
        await wait_for(pilot, lambda: notified.find("completed"))
        assert app.screen is screen


async def test_failed_run_shows_its_error(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(wait_for, pilot, app, 4)
        assert "OutOfMemoryError: CUDA out of memory" in static_text(screen, "#run-title")
        assert static_text(screen, "#run-gpus").startswith("no GPU samples yet")


async def test_unknown_run_is_a_notification(seeded, wait_for, notified):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        app.open_run("999")
        message = await wait_for(pilot, lambda: next(iter(notified.messages), None))
        assert "999" in message
        assert isinstance(app.screen, RunScreen)


async def test_a_run_that_crashes_while_watched_is_notified(seeded, wait_for, notified):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        screen = await open_run(wait_for, pilot, app, seeded.running_id)
        with RunStore.open(seeded.url) as store:
            store.set_status(seeded.running_id, "crashed", error="supervisor gone and no training process")
        await wait_for(pilot, lambda: screen.detail.row.status == "crashed")
        await wait_for(pilot, lambda: notified.find("crashed"))
        assert "supervisor gone" in static_text(screen, "#run-title")


# -- the log follows its newest line (issue 14, item 1) ------------------------------------------------
def append_log(path, *lines: str) -> None:
    with open(path, "a") as handle:
        handle.write("".join(f"{line}\n" for line in lines))


def at_end(log: FollowingLog) -> bool:
    return log.following and log.scroll_y == log.max_scroll_y and log.max_scroll_y > 0


async def test_log_follows_after_a_resize_to_80x24(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(wait_for, pilot, app, seeded.running_id)
        log = screen.query_one("#run-log", FollowingLog)
        await wait_for(pilot, lambda: at_end(log))
        assert log.border_subtitle == "following"
        await pilot.resize_terminal(80, 24)  # a smaller panel: its end moves below the view
        await wait_for(pilot, lambda: log.size.height < 10 and at_end(log))
        append_log(seeded.log_path, "step 41/100 after the resize")
        await wait_for(pilot, lambda: log.lines[-1] == "step 41/100 after the resize" and at_end(log))


async def test_scrolling_up_pauses_the_log_and_f_follows_again(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(wait_for, pilot, app, seeded.running_id)
        log = screen.query_one("#run-log", FollowingLog)
        await wait_for(pilot, lambda: at_end(log))
        log.focus()  # takes effect on a later turn of the event loop: keys go to the log only then
        await wait_for(pilot, lambda: log.has_focus)
        await pilot.press("home")
        await wait_for(pilot, lambda: log.scroll_y == 0)
        assert not log.following and log.border_subtitle.startswith("paused")
        append_log(seeded.log_path, "step 41/100 while paused")
        await wait_for(pilot, lambda: log.lines[-1] == "step 41/100 while paused")
        assert log.scroll_y == 0 and not log.following  # the reader keeps their place
        await pilot.press("end")  # scrolling back to the end follows again
        await wait_for(pilot, lambda: at_end(log))
        await pilot.press("home")
        await wait_for(pilot, lambda: not log.following)
        screen.focus_next()
        await pilot.press("f")
        await wait_for(pilot, lambda: at_end(log) and log.border_subtitle == "following")


# -- phases, elapsed time, ETA (item 2) -------------------------------------------------------------------
def phase_event(seq: int, when: float, phase: str, done, total) -> dict:
    return {"seq": seq, "time": when, "event": "phase", "phase": phase, "done": done, "total": total}


def ingest_more(url: str, run_id: int, events_of) -> None:
    with RunStore.open(url) as store:
        cursor = store.get_run(run_id).events_cursor
        store.ingest_events(run_id, events_of(cursor + 1))


async def test_the_eval_loss_phase_shows_its_progress_and_counts_in_the_eta(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    t = seeded.frozen_now - 30
    with RunStore.open(seeded.url) as store:
        # the seeded run evaluates every 20 steps (eval_steps=20 in its config) and its last eval took 12 s
        store.update_run(seeded.running_id, config={**store.get_run(seeded.running_id).config, "eval_steps": 20})
    ingest_more(seeded.url, seeded.running_id, lambda seq: [
        phase_event(seq, t, "eval_loss", 0, 10), phase_event(seq + 1, t + 20, "eval_loss", 4, 10)])
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(wait_for, pilot, app, seeded.running_id)
        progress = static_text(screen, "#run-progress-text")
        assert "phase eval loss 4/10" in progress and "for 30s" in progress
        # 60 steps at the median 1.8 s = 1m48s, the rest of this pass: 6 batches at 0.2/s = 30 s, and
        # the passes still to come at steps 60, 80, 100 at the last pass's 12 s each = 36 s
        assert "ETA 2m54s" in progress


async def test_elapsed_ticks_without_events(seeded, wait_for):
    now = [seeded.frozen_now]
    app = make_app(seeded.url, clock=lambda: now[0])
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(wait_for, pilot, app, seeded.running_id)
        assert "elapsed 10m00s" in static_text(screen, "#run-progress-text")
        now[0] += 7  # no event arrives; the screen's own timer redraws
        await wait_for(pilot, lambda: "elapsed 10m07s" in static_text(screen, "#run-progress-text"))


def test_phase_events_pass_the_tailer_and_are_kept(seeded, tmp_path):
    """The supervisor's path: events.jsonl -> EventTailer -> store; the phase event is kept whole."""
    from arctui.supervisor.outcome import StreamState, ingest
    from arctui.supervisor.tail import EventTailer

    with RunStore.open(seeded.url) as store:
        run = store.create_run(config(), name="phases", host="elsewhere")
        store.set_status(run.id, "running")
        events = tmp_path / "events.jsonl"
        events.write_text("".join(json.dumps(e) + "\n" for e in (
            {"seq": 1, "time": 1.7e9, "event": "start", "max_steps": 4},
            phase_event(2, 1.7e9 + 1, "loading_model", None, None),
            phase_event(3, 1.7e9 + 2, "train", 0, 4),
            {"seq": 4, "time": 1.7e9 + 3, "event": "something_newer", "x": 1},
        )))
        tailer = EventTailer(events)
        assert ingest(store, run.id, tailer, StreamState()) == 4 and not tailer.bad_lines
        kept = store.recent_events(run.id, kinds=["phase"])
        assert [(e.data["phase"], e.data["done"], e.data["total"]) for e in kept] == [("train", 0, 4),
                                                                                      ("loading_model", None, None)]
        assert store.get_run(run.id).events_cursor == 4


async def test_the_evaluation_after_training_shows_its_predictions_progress(seeded, wait_for):
    ingest_more(seeded.url, seeded.running_id, lambda seq: [
        {"seq": seq, "time": time.time(), "event": "end", "status": "completed", "step": 40}])
    folder = seeded.log_path.parent / "eval-40-arcagi1_eval"  # the run folder holds the log
    folder.mkdir()
    t = time.time()
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in (
        phase_event(1, t, "loading_model", None, None),
        phase_event(2, t + 1, "predictions", 0, 8),
        {"seq": 3, "time": t + 3, "event": "eval_progress", "done": 4, "total": 8},
    )))
    app = make_app(seeded.url, clock=lambda: t + 3)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(wait_for, pilot, app, seeded.running_id)
        progress = static_text(screen, "#run-progress-text")
        assert "phase evaluating predictions 4/8" in progress
        assert "ETA 2s" in progress  # 4 predictions left at the 2 per second measured


# -- a completed run whose evaluation after training was stopped (item 7) --------------------------------
async def test_a_stop_during_the_evaluation_after_training_is_shown(seeded, wait_for):
    note = "evaluation after training stopped (killed by SIGTERM); the training completed"
    with RunStore.open(seeded.url) as store:
        store.set_status(seeded.running_id, "completed", exit_code=0, error=note)
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(wait_for, pilot, app, seeded.running_id)
        title = static_text(screen, "#run-title")
        assert "completed" in title and "evaluation stopped (killed by SIGTERM); the training completed" in title


# -- CPU runs: the training processes' memory and CPU use (item 10) --------------------------------------
async def test_a_cpu_run_shows_its_processes_memory_and_cpu_use(tmp_path, wait_for):
    from arctui.supervisor.runfolder import RunFolder

    url = f"sqlite:///{tmp_path / 'cpu.db'}"
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        with RunStore.open(url) as store:
            run = store.create_run(config(gpus="cpu"), name="cpu-run", host=socket.gethostname())
            store.set_status(run.id, "running")
            store.update_run(run.id, pgid=busy.pid, log_path=str(tmp_path / "run" / "train.log"))
        lock = RunFolder(tmp_path / "run").try_lock()  # its "supervisor": recovery leaves the run alone
        app = make_app(url)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_run(wait_for, pilot, app, run.id)
            assert screen.query_one("#run-gpus").border_title == "CPU"
            # the second read measures CPU time over the time between the two reads
            await wait_for(pilot, lambda: "% (100% = one core)" in static_text(screen, "#run-gpus"))
            text = static_text(screen, "#run-gpus")
            assert "run processes (1)" in text and re.search(r"RSS [\d.]+ MB", text)  # a small Python process
        os.close(lock)
    finally:
        busy.kill()
        busy.wait()


def test_the_s_per_step_plot_leaves_out_the_slow_first_step():
    from arctui.screens.run import series_of
    from arctui.views.summary import MetricSeries, RunDetail

    detail = RunDetail(row=None, series={"seconds_per_step": MetricSeries("seconds_per_step", (1.0, 2.0, 3.0),
                                                                          (40.0, 2.0, 2.1))})
    speed = series_of(detail, "seconds_per_step", "s/step", "#fff", skip_first=True)
    assert (speed.xs, speed.ys) == ((2.0, 3.0), (2.0, 2.1))
    single = RunDetail(row=None, series={"seconds_per_step": MetricSeries("seconds_per_step", (1.0,), (40.0,))})
    assert series_of(single, "seconds_per_step", "s/step", "#fff", skip_first=True).xs == (1.0,)


@pytest.mark.slow
async def test_the_log_keeps_following_through_a_cli_stop_and_a_resume(tmp_path, tiny_model_dir, wait_for,
                                                                        monkeypatch):
    """A real run (tiny model): stopped with `arctui stop` and resumed with `arctui resume` while the
    Run screen is open; the log shows the file's newest line each time, at the end of the view."""
    from arctui.views.summary import read_log_tail
    from tests.supervisor.helpers import make_env, write_config

    env = make_env(tmp_path)
    monkeypatch.setenv("ARCTUI_HOME", str(env.home))
    config = write_config(tmp_path, tiny_model_dir, max_steps=100_000, eval_steps=100_000, save_steps=100_000)
    run_id = int(env.arctui("launch", str(config), "--detach", check=True).stdout.split()[0])
    app = make_app(env.db_url)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_run(wait_for, pilot, app, run_id)
            log = screen.query_one("#run-log", FollowingLog)
            with env.store() as store:
                log_file = store.get_run(run_id).log_path

            def newest_line_shown() -> bool:
                tail = read_log_tail(log_file)
                return bool(tail) and log.lines[-1] == tail[-1] and at_end(log)

            await wait_for(pilot, lambda: (screen.detail.row.step or 0) >= 2 and newest_line_shown())
            await asyncio.to_thread(env.arctui, "stop", str(run_id), "--wait", "300", check=True)
            await wait_for(pilot, lambda: screen.detail.row.status == "stopped" and newest_line_shown())
            stopped_at = screen.detail.row.step
            await asyncio.to_thread(env.arctui, "resume", str(run_id), "--detach", check=True)

            def resumed_step_shown() -> bool:
                match = re.search(r"step (\d+)/", log.lines[-1]) if log.lines else None
                return bool(match) and int(match.group(1)) > stopped_at and newest_line_shown()

            await wait_for(pilot, resumed_step_shown)  # the resumed runner's lines, followed
            assert log.border_subtitle == "following"
    finally:
        env.arctui("stop", str(run_id), "--kill", "--wait", "300")


# -- `arctui --open-run RUN` (what `make run` opens: item 3) ---------------------------------------------
async def test_the_app_can_open_on_a_run_screen_above_the_runs_list(seeded, wait_for):
    from arctui.screens.runs import RunsScreen

    app = make_app(seeded.url, clock=lambda: seeded.frozen_now, open_run=str(seeded.running_id))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail is not None)
        assert app.screen.run_id == str(seeded.running_id)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
