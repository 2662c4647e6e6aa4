"""Snapshots (pytest-textual-snapshot) of every screen with fixed data.

Data is seeded through RunStore into a fresh database (ids 1..5), the app's clock is frozen relative
to the stored times, GPUs come from a fixed NVML-shaped reader, and cursors do not blink. Update after
an intended change with ``pytest tests/app/test_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input

from arctui.app import make_app
from arctui.screens.compare import CompareScreen
from arctui.screens.new_run import NewRunScreen
from arctui.screens.run import RunScreen

PRESET = Path(__file__).parent / "presets" / "snapshot-cpu.yaml"  # ours, so others' edits of configs/ keep these stable


def no_nvidia(indices=None):
    from arctui.supervisor.gpus import NoGpuError

    raise NoGpuError("NVML Shared Library Not Found")


def app_for(seeded, gpu_reader=no_nvidia):
    return make_app(seeded.url, clock=lambda: seeded.frozen_now, gpu_reader=gpu_reader, analyze_prompts=False)


async def settle(pilot, predicate, tries: int = 200) -> None:
    for _ in range(tries):
        if predicate():
            break
        await pilot.pause(0.05)
    assert predicate(), "the screen never showed its data"
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    # DataTable sizes its columns to new rows when idle; on a busy machine that can trail the data
    for _ in range(tries):
        if all(measured(table) for table in pilot.app.screen.query(DataTable)):
            break
        await pilot.pause(0.05)
    # ...and headless, the new widths may reach the screen only on its next repaint: ask for one
    for table in pilot.app.screen.query(DataTable):
        table.refresh(layout=True)
    await pilot.pause(0.2)


def measured(table: DataTable) -> bool:
    """Whether the table's columns and size cover its current rows (DataTable measures new rows when
    idle, so its column widths and virtual size trail the data it was given; on a loaded machine a
    snapshot taken before that showed cells cut to their header's width)."""
    from rich.cells import cell_len
    from rich.text import Text

    for key, column in table.columns.items():
        cells = [cell.plain if isinstance(cell, Text) else str(cell) for cell in table.get_column(key)]
        if column.auto_width and column.content_width < max(map(cell_len, cells), default=0):
            return False
    header = table.header_height if table.show_header else 0
    width = sum(column.get_render_width(table) for column in table.columns.values())
    return tuple(table.virtual_size) == (width, header + sum(row.height for row in table.rows.values()))


def gpus_checked(form: NewRunScreen) -> bool:
    """The form has asked the (fake, driverless) GPU reader and says why it offers the CPU only."""
    return "NVML Shared Library Not Found" in str(form.query_one("#note-gpus").render())


def runs_loaded(app) -> bool:
    tables = app.screen.query("#runs-table")
    return bool(tables) and tables.first(DataTable).row_count == 5


def test_runs_screen_120x40(snap_compare, seeded):
    async def run_before(pilot):
        await settle(pilot, lambda: runs_loaded(pilot.app))

    assert snap_compare(app_for(seeded), terminal_size=(120, 40), run_before=run_before)


def test_runs_screen_80x24_with_selection(snap_compare, seeded):
    async def run_before(pilot):
        await settle(pilot, lambda: runs_loaded(pilot.app))
        await pilot.press("down", "down", "space", "space")

    assert snap_compare(app_for(seeded), terminal_size=(80, 24), run_before=run_before)


def test_run_screen_120x40(snap_compare, seeded):
    async def run_before(pilot):
        pilot.app.open_run(str(seeded.running_id))
        await settle(pilot, lambda: isinstance(pilot.app.screen, RunScreen) and pilot.app.screen.detail is not None
                     and len(pilot.app.screen.query_one("#run-log").lines) == 40)

    assert snap_compare(app_for(seeded), terminal_size=(120, 40), run_before=run_before)


def test_run_screen_80x24(snap_compare, seeded):
    async def run_before(pilot):
        pilot.app.open_run(str(seeded.running_id))
        await settle(pilot, lambda: isinstance(pilot.app.screen, RunScreen) and pilot.app.screen.detail is not None
                     and len(pilot.app.screen.query_one("#run-log").lines) == 40)

    assert snap_compare(app_for(seeded), terminal_size=(80, 24), run_before=run_before)


def test_run_screen_in_the_eval_loss_phase_80x24(snap_compare, seeded):
    """The phase line with its own progress, the ETA with the eval-loss passes to come."""
    from db.store import RunStore

    with RunStore.open(seeded.url) as store:
        run = store.get_run(seeded.running_id)
        store.update_run(run.id, config={**run.config, "eval_steps": 20})
        t, seq = seeded.frozen_now - 30, run.events_cursor + 1
        store.ingest_events(run.id, [
            {"seq": seq, "time": t, "event": "phase", "phase": "eval_loss", "done": 0, "total": 10},
            {"seq": seq + 1, "time": t + 20, "event": "phase", "phase": "eval_loss", "done": 4, "total": 10}])

    async def run_before(pilot):
        pilot.app.open_run(str(seeded.running_id))
        await settle(pilot, lambda: isinstance(pilot.app.screen, RunScreen) and pilot.app.screen.detail is not None
                     and len(pilot.app.screen.query_one("#run-log").lines) == 40)

    assert snap_compare(app_for(seeded), terminal_size=(80, 24), run_before=run_before)


def test_compare_screen(snap_compare, seeded):
    async def run_before(pilot):
        pilot.app.open_comparison(["2", "1", "3"])
        await settle(pilot, lambda: isinstance(pilot.app.screen, CompareScreen)
                     and pilot.app.screen.comparison is not None)

    assert snap_compare(app_for(seeded), terminal_size=(120, 40), run_before=run_before)


def test_gpus_screen_without_driver(snap_compare, seeded):
    async def run_before(pilot):
        await settle(pilot, lambda: runs_loaded(pilot.app))
        await pilot.press("u")
        await settle(pilot, lambda: getattr(pilot.app.screen, "unavailable_reason", None) is not None)

    assert snap_compare(app_for(seeded), terminal_size=(100, 20), run_before=run_before)


def test_gpus_screen_with_two_gpus(snap_compare, seeded, two_h100s):
    async def run_before(pilot):
        await settle(pilot, lambda: runs_loaded(pilot.app))
        await pilot.press("u")
        await settle(pilot, lambda: getattr(pilot.app.screen, "gpus", ()))

    assert snap_compare(app_for(seeded, two_h100s), terminal_size=(100, 20), run_before=run_before)


def test_new_run_form_from_preset(snap_compare, seeded):
    async def run_before(pilot):
        pilot.app.push_screen(NewRunScreen(preset=PRESET))
        await settle(pilot, lambda: isinstance(pilot.app.screen, NewRunScreen)
                     and pilot.app.screen.query("#field-name") and pilot.app.screen.text("name") == "snapshot-cpu"
                     and not pilot.app.screen.pending and gpus_checked(pilot.app.screen))

    assert snap_compare(app_for(seeded), terminal_size=(120, 40), run_before=run_before)


def test_new_run_form_with_errors(snap_compare, seeded):
    async def run_before(pilot):
        pilot.app.push_screen(NewRunScreen(preset=PRESET))
        await settle(pilot, lambda: isinstance(pilot.app.screen, NewRunScreen)
                     and pilot.app.screen.query("#field-name") and pilot.app.screen.text("name") == "snapshot-cpu"
                     and not pilot.app.screen.pending and gpus_checked(pilot.app.screen))
        screen = pilot.app.screen
        screen.query_one("#field-grid_encoder", Input).value = "GridShapeEncoder(Nope())"
        screen.query_one("#field-batch_size", Input).value = "3"
        await settle(pilot, lambda: "grid_encoder" in screen.errors)

    assert snap_compare(app_for(seeded), terminal_size=(120, 40), run_before=run_before)


def test_help_screen(snap_compare, seeded):
    async def run_before(pilot):
        await settle(pilot, lambda: runs_loaded(pilot.app))
        await pilot.press("question_mark")

    assert snap_compare(app_for(seeded), terminal_size=(100, 40), run_before=run_before)


def with_evaluation(seeded):
    """The seeded store plus a fixed evaluation of four real ARC tasks for the baseline run (#1)."""
    from db.store import RunStore
    from tests.predictions_data import record_evaluation

    with RunStore.open(seeded.url) as store:
        record_evaluation(store, seeded.completed_ids[0], Path(seeded.url.removeprefix("sqlite:///")).parent / "eval")
    return seeded


def predictions_shown(app, task_id: str) -> bool:
    from arctui.screens.predictions import PredictionsScreen

    screen = app.screen
    return isinstance(screen, PredictionsScreen) and screen.evaluation is not None and screen.selected == task_id


def test_predictions_screen_120x40(snap_compare, seeded):
    from tests.predictions_data import UNSOLVED_A

    async def run_before(pilot):
        pilot.app.open_predictions(str(seeded.completed_ids[0]), task_id=UNSOLVED_A)
        await settle(pilot, lambda: predictions_shown(pilot.app, UNSOLVED_A))

    assert snap_compare(app_for(with_evaluation(seeded)), terminal_size=(120, 40), run_before=run_before)


def test_predictions_screen_80x24(snap_compare, seeded):
    from tests.predictions_data import SOLVED_A

    async def run_before(pilot):
        pilot.app.open_predictions(str(seeded.completed_ids[0]), task_id=SOLVED_A)
        await settle(pilot, lambda: predictions_shown(pilot.app, SOLVED_A))

    assert snap_compare(app_for(with_evaluation(seeded)), terminal_size=(80, 24), run_before=run_before)


def test_runs_screen_80x24_scrolled_right_keeps_id_and_name(snap_compare, seeded):
    async def run_before(pilot):
        await settle(pilot, lambda: runs_loaded(pilot.app))
        await pilot.press("G")  # the last run: its accuracy line shows under the table
        table = pilot.app.screen.query_one("#runs-table", DataTable)
        table.scroll_to(x=table.max_scroll_x, animate=False)
        await settle(pilot, lambda: "accuracy" in str(pilot.app.screen.query_one("#runs-detail").render()))

    assert snap_compare(app_for(seeded), terminal_size=(80, 24), run_before=run_before)


def test_new_run_form_saved_as_a_study(snap_compare, seeded):
    async def run_before(pilot):
        from arctui.screens.study_form import StudyFormScreen

        pilot.app.push_screen(NewRunScreen(preset=PRESET))
        await settle(pilot, lambda: isinstance(pilot.app.screen, NewRunScreen)
                     and pilot.app.screen.query("#field-name") and pilot.app.screen.text("name") == "snapshot-cpu"
                     and not pilot.app.screen.pending and gpus_checked(pilot.app.screen))
        await pilot.press("ctrl+t")
        await settle(pilot, lambda: isinstance(pilot.app.screen, StudyFormScreen))
        await pilot.press(*"msl-1024", "enter", *"max_seq_len=1024", "enter", *"lr", "enter")
        await settle(pilot, lambda: len(pilot.app.screen.variants) == 1)

    assert snap_compare(app_for(seeded), terminal_size=(100, 30), run_before=run_before)


def test_log_view_searching_80x24(snap_compare, seeded):
    async def run_before(pilot):
        from arctui.screens.log_view import LogViewScreen

        pilot.app.open_run(str(seeded.running_id))
        await settle(pilot, lambda: isinstance(pilot.app.screen, RunScreen) and pilot.app.screen.detail is not None)
        await pilot.press("L")
        await settle(pilot, lambda: isinstance(pilot.app.screen, LogViewScreen)
                     and len(pilot.app.screen.log_widget.lines) == 40)
        await pilot.press("slash", *"loss 0.8", "enter", "N")  # from the bottom: the newest match, then back one
        await settle(pilot, lambda: str(pilot.app.screen.query_one("#log-matches").render()).startswith("3/4"))

    assert snap_compare(app_for(seeded), terminal_size=(80, 24), run_before=run_before)
