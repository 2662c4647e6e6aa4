"""Pilot tests of the Run screen: live panels from the store, stop with confirmation, resume refusal."""

from __future__ import annotations

from textual.widgets import Log, Static

from arctui.app import make_app
from arctui.screens.confirm import ConfirmScreen
from arctui.screens.run import RunScreen
from arctui.widgets.line_plot import LinePlot
from db.store import RunStore


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
