"""The main path, for real: fill the new-run form for the tiny model on CPU, launch (a detached
supervisor and `accelerate launch`), watch progress and the loss curve arrive, close the app (the run
goes on), reopen it, stop the run with confirmation, resume it and stop it again."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from arctui.app import make_app
from arctui.screens.confirm import ConfirmScreen
from arctui.screens.new_run import NewRunScreen
from arctui.screens.run import RunScreen
from arctui.widgets.line_plot import LinePlot
from db.store import RunStore

# Bounds on waits for real training on a shared CPU (they turn a hang into a failure; nothing here
# asserts speed): starting `accelerate launch` imports torch, which takes minutes on a loaded machine.
TRAINING_SECONDS = 600


def training_reached(screen, step: int) -> bool:
    """The run shown by ``screen`` is past ``step``; fails at once, with its error, if it ended badly."""
    detail = screen.detail
    if detail is None:
        return False
    if detail.row.status in ("failed", "crashed"):
        raise AssertionError(f"run {detail.row.status}: {detail.last_error}\n" + "\n".join(detail.log_tail[-15:]))
    return (detail.row.step or 0) > step


def kill_active_runs(url: str) -> None:
    """Leave no training behind when the test fails half-way."""
    from arctui.supervisor.launch import stop_run

    with RunStore.open(url) as store:
        for run in store.active_runs():
            try:
                stop_run(store, run.id, kill=True)
            except Exception:  # already ending: nothing left to stop
                pass


@pytest.fixture
def main_path_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'arctui.db'}"
    yield url
    kill_active_runs(url)


@pytest.mark.slow
async def test_form_launch_watch_and_stop_a_tiny_cpu_run(main_path_url, configs_dir, wait_for, wait_until, notified):
    url = main_path_url
    app = make_app(url, analyze_prompts=False)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen) and bool(app.screen.query("#field-name")))
        form = app.screen
        # The form fills itself with the default preset in a worker: let that land first, or it could
        # overwrite the preset chosen below (two loads in threads finish in either order).
        await wait_for(pilot, lambda: form.text("name") != "")
        form.load_preset(configs_dir / "tiny-cpu.yaml")
        await wait_for(pilot, lambda: form.text("name") == "tiny-cpu" and form.text("model_path") == "tiny:random-llama")
        form.query_one("#field-name", Input).value = "app-main-path"
        form.query_one("#field-max_steps", Input).value = "500"  # long enough to stop it mid-way
        await wait_for(pilot, lambda: not form.pending and not form.errors)
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), timeout=TRAINING_SECONDS)
        screen = app.screen
        await wait_for(pilot, lambda: notified.find("Launched app-main-path"))

        # progress and a loss curve arrive from the store while the run trains
        await wait_for(pilot, lambda: training_reached(screen, 1), timeout=TRAINING_SECONDS)
        assert screen.detail.row.status == "running"
        loss = screen.query_one("#loss-plot", LinePlot)
        await wait_for(pilot, lambda: loss.series and len(loss.series[0].xs) >= 2)
        assert screen.detail.row.max_steps == 500
        run_id = screen.run_id
        step_when_closed = screen.detail.row.step

    # closing the app never stops a run: it keeps training with no app open
    with RunStore.open(url) as store:
        wait_until(lambda: store.get_summary(run_id).last_step > step_when_closed, timeout=TRAINING_SECONDS,
                   poll=0.5, what="a step after the app closed")
        assert store.get_run(run_id).status == "running"

    # reopening shows it live again; stop it from there, with confirmation
    app = make_app(url, analyze_prompts=False)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        await wait_for(pilot, lambda: app.screen.query("#runs-table") and app.screen.rows)
        row = app.screen.rows[0]
        assert (row.id, row.status) == (run_id, "running")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail is not None)
        screen = app.screen
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.detail.row.status == "stopped", timeout=TRAINING_SECONDS)
        stopped_at = screen.detail.row.step or 0
        assert stopped_at < 500

        # resume: the same run continues from its latest checkpoint, step numbers go on
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.detail.row.status in ("queued", "running"))
        await wait_for(pilot, lambda: training_reached(screen, stopped_at), timeout=TRAINING_SECONDS)
        assert screen.detail.row.id == run_id
        await pilot.press("x")
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.detail.row.status == "stopped", timeout=TRAINING_SECONDS)
    with RunStore.open(url) as store:
        run = store.get_run(run_id)
        assert run.status == "stopped"
        assert store.metric_series(run.id, "loss")
