"""Keyboard habits (issue #14, items 5, 8, 9): list movement, q never quits from a form, leaving a form
with unsaved changes asks first, keys shown in the command palette, the help's screen titles."""

from __future__ import annotations

from textual.widgets import Button, DataTable, Input, Select

from arctui.app import make_app
from arctui.screens.commands import ArcCommands
from arctui.screens.confirm import ConfirmScreen
from arctui.screens.help import HelpScreen
from arctui.screens.new_run import NewRunScreen
from arctui.screens.runs import RunsScreen


def table_ids(app) -> list[str]:
    return [row.value for row in app.screen.query_one("#runs-table", DataTable).rows]


def cursor_id(app) -> str:
    return app.screen.current_run_id()


async def open_filled_form(app, pilot, wait_for) -> NewRunScreen:
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen) and bool(app.screen.query("#field-name"))
                   and app.screen.text("name") != "" and not app.screen.pending)
    return app.screen


async def test_j_k_g_G_move_in_the_runs_list(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        assert cursor_id(app) == "5"
        await pilot.press("j", "j")
        assert cursor_id(app) == "3"
        await pilot.press("k")
        assert cursor_id(app) == "4"
        await pilot.press("G")
        assert cursor_id(app) == "1"
        await pilot.press("j")  # stays on the last row
        assert cursor_id(app) == "1"
        await pilot.press("g")
        assert cursor_id(app) == "5" and isinstance(app.screen, RunsScreen)  # g no longer opens the GPUs
        await pilot.press("u")
        from arctui.screens.gpus import GpusScreen

        await wait_for(pilot, lambda: isinstance(app.screen, GpusScreen))


async def test_q_never_quits_from_the_form_whatever_has_focus(seeded, wait_for, notified):
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        form = await open_filled_form(app, pilot, wait_for)
        for widget in (form.query_one("#preset", Select), form.query_one("#save", Button),
                       form.query_one("#launch", Button)):
            widget.focus()
            await pilot.press("q")
            await pilot.pause()
            assert app.is_running and app.screen is form, widget
        await wait_for(pilot, lambda: notified.find("q does not quit from a form"))
        # typed into a field, q is just a letter
        form.query_one("#field-name", Input).focus()
        await pilot.press("end", "q")
        assert form.text("name").endswith("q") and app.screen is form


async def test_escape_asks_before_discarding_a_changed_form(seeded, wait_for):
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_filled_form(app, pilot, wait_for)
        assert not form.is_dirty  # filled from the default preset: nothing to lose yet
        form.query_one("#field-max_steps", Input).value = "7"
        await pilot.pause()
        assert form.is_dirty
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")  # keep editing
        await wait_for(pilot, lambda: app.screen is form)
        assert form.text("max_steps") == "7"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")  # discard
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        # the palette's "Runs" closes the form the same way: asking first when something would be lost
        form = await open_filled_form(app, pilot, wait_for)
        form.query_one("#field-max_steps", Input).value = "9"
        runs = [hit async for hit in ArcCommands(form).discover() if hit.text == "Runs"]
        runs[0].command()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_an_unchanged_form_closes_at_once_and_a_changed_one_asks_before_quitting(seeded, wait_for):
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_filled_form(app, pilot, wait_for)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        form = await open_filled_form(app, pilot, wait_for)
        form.query_one("#field-learning_rate", Input).value = "3e-4"
        await pilot.pause()
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is form)
        assert app.is_running
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.is_running)


async def test_the_palette_shows_each_command_with_its_key(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        hits = {hit.text: hit.help async for hit in ArcCommands(app.screen).discover()}
        assert hits["Compare selected runs"].endswith("key c")
        assert hits["Delete run"].endswith("key d")
        assert hits["Clone run"].endswith("key C")
        assert hits["New run"].endswith("key n")
        assert hits["GPUs"].endswith("key u")
        assert "key" not in hits["Runs"]  # no key of its own


async def test_help_names_the_gpus_screen_properly(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now, gpu_reader=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        await pilot.press("u")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert "GPUs screen" in app.screen.entries and "Gpus screen" not in app.screen.entries
        intro = str(app.screen.query_one("#help-intro").render())
        assert "unanswered = share of predictions with no valid grid" in intro
        assert "Accuracy is the share of predictions equal to the expected output" in intro


async def test_the_focused_field_is_marked(seeded, wait_for):
    from textual.widgets import Label

    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_filled_form(app, pilot, wait_for)
        model = form.query_one("#field-model_path", Input)
        name = form.query_one("#field-name", Input)
        model.focus()
        await pilot.pause()
        assert model.parent.has_class("-focused") and not name.parent.has_class("-focused")
        label = model.parent.query_one(Label)
        other = name.parent.query_one(Label)
        assert label.styles.text_style.bold and not other.styles.text_style.bold
        assert label.styles.color != other.styles.color
        assert model.styles.background != name.styles.background  # the box itself too
