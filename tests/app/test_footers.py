"""Pilot tests of what the footers offer at 80x24, where a footer shows six or seven keys: quitting
and each screen's main keys come first, and Stop and Resume show only where they apply (pressed
anyway, they still say why they do not)."""

from __future__ import annotations

from textual.widgets import Footer

from arctui.app import make_app
from arctui.screens.run import RunScreen
from arctui.screens.runs import RunsScreen
from db.store import RunStore

SMALL = (80, 24)


def footer_keys(screen) -> list[str]:
    """The keys the footer shows whole, left of the palette key (an 80-column footer cuts the rest)."""
    footer = screen.query_one(Footer)
    shown = list(footer.query("FooterKey"))  # by type name: textual does not export the class
    keys = [key for key in shown if not key.has_class("-command-palette")]
    palette = [key for key in shown if key.has_class("-command-palette")]
    right = palette[0].region.x if palette else footer.region.right
    return [key.key for key in keys if key.region.width and key.region.right <= right]


async def open_run(wait_for, pilot, app, run_id) -> RunScreen:
    app.open_run(str(run_id))
    return await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail is not None
                          and app.screen)


async def test_a_running_run_offers_back_quit_stop_predictions_and_the_full_log_at_80_columns(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_run(wait_for, pilot, app, seeded.running_id)
        keys = await wait_for(pilot, lambda: "x" in footer_keys(screen) and footer_keys(screen))
        assert keys[:6] == ["escape", "q", "x", "p", "L", "l"]
        assert "r" not in keys  # a running run is not resumed


async def test_an_ended_run_offers_resume_only_when_it_can_be_resumed(seeded, wait_for, notified):
    with RunStore.open(seeded.url) as store:
        stopped = store.create_run({"model_path": "/models/m", "max_steps": 10}, name="stopped-early")
        store.set_status(stopped.id, "running")
        store.set_status(stopped.id, "stopped", exit_code=0)
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=SMALL, notifications=True, message_hook=notified) as pilot:
        screen = await open_run(wait_for, pilot, app, stopped.id)
        keys = await wait_for(pilot, lambda: "r" in footer_keys(screen) and footer_keys(screen))
        assert keys[:2] == ["escape", "q"] and "x" not in keys
        await pilot.press("escape")
        screen = await open_run(wait_for, pilot, app, seeded.completed_ids[0])
        keys = await wait_for(pilot, lambda: footer_keys(screen) if "r" not in footer_keys(screen) else None)
        assert "x" not in keys and {"p", "L"} <= set(keys)  # a completed run: neither stopped nor resumed
        await pilot.press("x")  # the key still answers, with the reason
        await wait_for(pilot, lambda: notified.find("only queued or running runs can be stopped"))


async def test_the_runs_footer_shows_quit_new_run_and_help_and_stop_only_on_an_active_run(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=SMALL) as pilot:
        screen = await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.rows
                                and app.screen)
        await pilot.press("g")
        # newest first: the queued run is on top, and can be stopped
        keys = await wait_for(pilot, lambda: "x" in footer_keys(screen) and footer_keys(screen))
        assert keys[:2] == ["q", "n"] and "question_mark" in keys
        completed = len(screen.rows) - 1  # the oldest run completed
        await pilot.press("G")
        keys = await wait_for(pilot, lambda: screen.query_one("#runs-table").cursor_row == completed
                              and "x" not in footer_keys(screen) and footer_keys(screen))
        assert keys[:2] == ["q", "n"] and "question_mark" in keys


async def test_the_studies_footer_offers_no_report_before_there_is_a_study(tmp_path, wait_for):
    from arctui.screens.studies import StudiesScreen

    app = make_app(f"sqlite:///{tmp_path / 'empty.db'}", analyze_prompts=False)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("i")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, StudiesScreen) and app.screen.loaded
                                and app.screen)
        keys = await wait_for(pilot, lambda: footer_keys(screen))
        assert keys[:2] == ["escape", "q"] and not {"w", "x", "r"} & set(keys)


async def test_the_help_lists_each_key_once_with_what_the_footer_leaves_out(seeded, wait_for):
    from arctui.screens.help import HelpScreen

    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=SMALL) as pilot:
        await open_run(wait_for, pilot, app, seeded.completed_ids[0])
        await pilot.press("question_mark")
        help_screen = await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen) and app.screen)
        entries = help_screen.entries["Run screen"]
        keys = [key for key, _ in entries]
        assert len(keys) == len(set(keys))  # x and r are bound twice, listed once
        assert {("x", "Stop"), ("r", "Resume"), ("L", "Full log"), ("f", "Follow log")} <= set(entries)
