"""The predictions browser: the view layer on a fixed evaluation of real ARC tasks, the set difference
of two runs, the grid renderer, and Pilot walks of the screens - one on a REAL tiny-model evaluation
(``arctui eval`` running ``runner.evaluate`` in its own process)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from arctui.app import make_app
from arctui.cli import main as arctui_main
from arctui.screens.compare import CompareScreen
from arctui.screens.predictions import PredictionsScreen, TaskDiffScreen
from arctui.screens.run import RunScreen
from arctui.views.grid_render import (
    ARC_COLOURS,
    GridPanel,
    grid_lines,
    layout_panels,
    wrong_cells,
)
from arctui.views.predictions import (
    SOLVED,
    UNANSWERED,
    UNSCORED,
    UNSOLVED,
    filter_tasks,
    latest_source,
    load_predictions,
    read_eval_sources,
    read_task_diff,
    solved_sets,
    sort_tasks,
)
from arctui.widgets.arc_grid import ArcGrid
from db.store import RunStore
from runner.errors import UserError
from runner.synthetic import make_tasks, write_tasks
from tests.predictions_data import SECOND_A, SOLVED_A, UNANSWERED_A, UNSOLVED_A, record_evaluation


@pytest.fixture
def two_evaluated_runs(tmp_path) -> tuple[str, int, int]:
    """(store URL, run a, run b): two runs evaluated on the same four ARC tasks, run b solving
    017c7c7b and not 007bbfb7, and a third run never evaluated."""
    url = f"sqlite:///{tmp_path / 'arctui.db'}"
    with RunStore.open(url) as store:
        a = store.create_run({"model_path": "/models/a"}, name="run-a")
        b = store.create_run({"model_path": "/models/b"}, name="run-b")
        store.create_run({"model_path": "/models/c"}, name="run-c")
        record_evaluation(store, a.id, tmp_path / "eval-a")
        record_evaluation(store, b.id, tmp_path / "eval-b", variant="b")
    return url, a.id, b.id


# -- the renderer -----------------------------------------------------------------------------------
def test_half_blocks_fit_a_30x30_grid_in_15_lines():
    grid = [[(r + c) % 10 for c in range(30)] for r in range(30)]
    lines = grid_lines(grid, coloured=True)
    assert len(lines) == 15 and all(line.cell_len == 30 for line in lines)
    first = lines[0].spans[0].style
    assert (first.color.name, first.bgcolor.name) == (ARC_COLOURS[0].lower(), ARC_COLOURS[1].lower())
    odd = grid_lines([[1], [2], [3]], coloured=True)
    assert len(odd) == 2 and odd[1].spans[0].style.bgcolor is None  # the lone last row
    assert [t.plain for t in grid_lines([[1, 2], [3, 0]], coloured=False)] == ["12", "30"]


def test_wrong_cells_and_their_mask():
    assert wrong_cells([[1, 2], [3, 4]], [[1, 0], [3, 4]]) == [[False, True], [False, False]]
    assert wrong_cells([[1, 2]], [[1, 2], [3, 4]]) is None
    assert [t.plain for t in grid_lines(mask=[[False, True]], coloured=False)] == [".x"]


def test_panels_wrap_into_bands_at_the_width():
    panels = [GridPanel(f"g{i}", [[i] * 10]) for i in range(4)]
    wide = layout_panels(panels, width=200, coloured=False)
    assert [t.plain for t in wide] == ["g0" + " " * 11 + "g1" + " " * 11 + "g2" + " " * 11 + "g3",
                                       "   ".join(str(i) * 10 for i in range(4))]
    narrow = [t.plain for t in layout_panels(panels, width=25, coloured=False)]
    assert narrow == ["g0" + " " * 11 + "g1", "0" * 10 + "   " + "1" * 10, "",
                      "g2" + " " * 11 + "g3", "2" * 10 + "   " + "3" * 10]


# -- the view layer ---------------------------------------------------------------------------------
def test_a_fixed_evaluation_reads_task_by_task(two_evaluated_runs):
    url, a, _ = two_evaluated_runs
    with RunStore.open(url) as store:
        source = latest_source(store, a)
    evaluation = load_predictions(source)
    assert {t.task_id: t.status for t in evaluation.tasks} == {
        SOLVED_A: SOLVED, UNSOLVED_A: UNSOLVED, SECOND_A: SOLVED, UNANSWERED_A: UNANSWERED}
    assert evaluation.counts() == {SOLVED: 2, UNSOLVED: 1, UNANSWERED: 1, UNSCORED: 0}

    solved = evaluation.task(SOLVED_A)
    assert len(solved.train) == 5 and solved.votes_label == "3/4"
    first, second = solved.samples[0].candidates
    assert (first.votes, first.correct, first.wrong_count) == (3, True, 0)
    assert (second.votes, second.correct, second.wrong_count) == (1, False, 1)

    unsolved = evaluation.task(UNSOLVED_A).samples[0]
    assert unsolved.candidates[0].wrong_count == 2 and unsolved.candidates[0].votes == 3
    assert unsolved.candidates[1].wrong is None  # wrong shape: no mask
    by_second = evaluation.task(SECOND_A).samples[0]
    assert [c.correct for c in by_second.candidates] == [False, True]  # vote_2, not vote_1

    unanswered = evaluation.task(UNANSWERED_A).samples[0]
    assert unanswered.candidates == () and len(unanswered.invalid) == 4
    errors = {i.prediction_index: (i.text, i.error) for i in unanswered.invalid}
    assert errors[0] == ("I think the answer is blue", "invalid prediction: missing opening fence '```grid shape:'")
    assert errors[1][0] is None and "over --max_seq_len" in errors[1][1]


def test_filter_and_sort(two_evaluated_runs):
    url, a, _ = two_evaluated_runs
    with RunStore.open(url) as store:
        evaluation = load_predictions(latest_source(store, a))
    assert [t.task_id for t in filter_tasks(evaluation.tasks, SOLVED)] == [SOLVED_A, SECOND_A]
    assert [t.task_id for t in filter_tasks(evaluation.tasks, UNANSWERED)] == [UNANSWERED_A]
    assert [t.task_id for t in filter_tasks(evaluation.tasks, "all", "7C")] == [UNSOLVED_A]
    assert [t.task_id for t in sort_tasks(evaluation.tasks, "status")] == [SOLVED_A, SECOND_A, UNSOLVED_A,
                                                                            UNANSWERED_A]
    assert [t.task_id for t in sort_tasks(evaluation.tasks, "votes")][:2] == [SOLVED_A, UNSOLVED_A]  # 3 of 4 votes
    assert sort_tasks(evaluation.tasks, "log-prob")[-1].task_id == UNANSWERED_A  # no candidate: last


def test_set_difference_of_solved_tasks():
    a = {"t1": SOLVED, "t2": SOLVED, "t3": UNSOLVED, "t4": UNANSWERED, "t5": SOLVED, "t6": UNSCORED}
    b = {"t1": SOLVED, "t2": UNSOLVED, "t3": SOLVED, "t4": UNSOLVED, "t6": SOLVED, "t7": SOLVED}
    only_a, only_b, both, neither, left_out = solved_sets(a, b)
    assert (only_a, only_b, both, neither) == (["t2"], ["t3"], ["t1"], ["t4"])
    assert left_out == 3  # t5 and t7 were evaluated by one run only, t6 has no expected output in a
    assert solved_sets(b, a)[:2] == (["t3"], ["t2"])


def test_two_runs_on_the_same_tasks(two_evaluated_runs):
    url, a, b = two_evaluated_runs
    with RunStore.open(url) as store:
        diff = read_task_diff(store, a, b)
        assert (diff.only_a, diff.only_b, diff.both, diff.neither) == ((SOLVED_A,), (UNSOLVED_A,), (SECOND_A,),
                                                                       (UNANSWERED_A,))
        with pytest.raises(UserError, match="run run-c has no evaluation yet"):
            read_task_diff(store, a, "run-c")
        with pytest.raises(UserError, match="not both evaluated on other-data"):
            read_task_diff(store, a, b, dataset="other-data")


# -- Pilot: a real evaluation -----------------------------------------------------------------------
@pytest.fixture
def really_evaluated(tmp_path, tiny_model_dir) -> tuple[str, int, list[str]]:
    """(store URL, run id, task ids): a run whose checkpoint (the tiny random model) was evaluated by
    ``arctui eval`` on two synthetic tasks."""
    url = f"sqlite:///{tmp_path / 'arctui.db'}"
    tasks = make_tasks(2, ["flip_lr"], seed=1, max_size=3)
    data = write_tasks(tmp_path / "val.json", tasks)
    output_dir = tmp_path / "runs" / "1-tiny" / "output"
    shutil.copytree(tiny_model_dir, output_dir / "checkpoint-4")
    with RunStore.open(url) as store:
        run = store.create_run({"model_path": str(tiny_model_dir), "max_seq_len": 2048,
                                "val_dataset": [str(data), "output-from-examples-v1"]},
                               name="tiny", output_dir=str(output_dir), log_path=str(output_dir.parent / "train.log"))
    code = arctui_main(["--db", url, "eval", "tiny", "--checkpoint", "4", "--predictions-per-task", "2",
                        "--max-new-tokens", "6", "--batch-size", "4", "--device", "cpu", "--quiet"])
    assert code == 0
    return url, run.id, sorted(tasks)


def rows_of(table: DataTable) -> list[str]:
    return [str(table.get_row_at(i)[1]) for i in range(table.row_count)]


@pytest.mark.slow
async def test_walk_the_browser_on_a_real_evaluation(really_evaluated, wait_for):
    url, run_id, task_ids = really_evaluated
    app = make_app(url, analyze_prompts=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_run(str(run_id))
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.press("p")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, PredictionsScreen) and app.screen.evaluation
                                and app.screen)
        table = screen.query_one("#predictions-tasks", DataTable)
        await wait_for(pilot, lambda: rows_of(table) == task_ids)
        # a random tiny model writes no grid: every task is unanswered, and says why
        assert {t.status for t in screen.evaluation.tasks} == {UNANSWERED}
        assert "step 4" in str(screen.query_one("#predictions-title", Static).render())

        await pilot.press("down")
        await wait_for(pilot, lambda: screen.selected == task_ids[1])
        heading = str(screen.query_one("#detail-heading", Static).render())
        assert task_ids[1] in heading and "unanswered" in heading
        test_grids = screen.query_one("#detail-test", ArcGrid)
        titles = [p.title for p in test_grids.panels]
        assert titles[0].startswith("test 0 input") and titles[1].startswith("expected")
        assert titles[2] == "no valid prediction (0 of 2)"
        # the grids are drawn under their titles, and the widget is as tall as what it draws
        await wait_for(pilot, lambda: test_grids.size.height == len(test_grids.lines(test_grids.size.width)) > 1)
        invalid = str(screen.query_one("#detail-invalid", Static).render())
        record = screen.evaluation.task(task_ids[1]).samples[0].invalid[0]
        assert f"prediction {record.prediction_index}: {record.error}" in invalid and record.text[:6] in invalid
        assert len(screen.query_one("#detail-train", ArcGrid).panels) == 2 * 3  # three train pairs

        await pilot.press("f")  # solved
        await wait_for(pilot, lambda: screen.status_filter == SOLVED and table.row_count == 0)
        assert "no task matches" in str(screen.query_one("#detail-heading", Static).render())
        await pilot.press("f")  # unsolved
        await wait_for(pilot, lambda: screen.status_filter == UNSOLVED and table.row_count == 0)
        await pilot.press("f")  # unanswered
        await wait_for(pilot, lambda: rows_of(table) == task_ids)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*task_ids[0].split("-")[1], "enter")  # the digits only the first id has
        await wait_for(pilot, lambda: rows_of(table) == [task_ids[0]] and screen.selected == task_ids[0])
        assert app.focused is table


# -- Pilot: fixed data ------------------------------------------------------------------------------
async def test_browser_shows_candidates_votes_and_wrong_cells(two_evaluated_runs, wait_for):
    url, a, _ = two_evaluated_runs
    app = make_app(url, analyze_prompts=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_predictions(str(a), task_id=UNSOLVED_A)
        screen = await wait_for(pilot, lambda: isinstance(app.screen, PredictionsScreen) and app.screen.evaluation
                                and app.screen)
        await wait_for(pilot, lambda: screen.selected == UNSOLVED_A)
        titles = [p.title for p in screen.query_one("#detail-test", ArcGrid).panels]
        assert titles[2].startswith("#1 3 votes · log-p -") and titles[2].endswith("✗")
        assert titles[3] == "#1 2 wrong cells" and titles[4].startswith("#2 1 vote · log-p")
        assert "vote_2 50.0% of 4 tasks" in str(screen.query_one("#predictions-title", Static).render())
        await pilot.press("o")  # by status: solved first
        table = screen.query_one("#predictions-tasks", DataTable)
        await wait_for(pilot, lambda: rows_of(table) == [SOLVED_A, SECOND_A, UNSOLVED_A, UNANSWERED_A])
        assert screen.selected == UNSOLVED_A  # the selection survives a new order
        await pilot.press("g")
        await wait_for(pilot, lambda: screen.selected == SOLVED_A)


async def test_compare_opens_the_two_run_task_difference(two_evaluated_runs, wait_for, notified):
    url, a, b = two_evaluated_runs
    app = make_app(url, analyze_prompts=False)
    async with app.run_test(size=(120, 40), message_hook=notified) as pilot:
        app.open_comparison([str(a), str(b), "3"])
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        await pilot.press("d")
        await wait_for(pilot, lambda: notified.find("Compare exactly two runs"))
        app.pop_screen()
        app.open_comparison([str(a), str(b)])
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        await pilot.press("d")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, TaskDiffScreen) and app.screen.diff
                                and app.screen)
        only_a, only_b = screen.query_one("#diff-only-a", DataTable), screen.query_one("#diff-only-b", DataTable)
        assert [str(only_a.get_row_at(i)[0]) for i in range(only_a.row_count)] == [SOLVED_A]
        assert [str(only_b.get_row_at(i)[0]) for i in range(only_b.row_count)] == [UNSOLVED_A]
        assert only_b.border_title == "only #2 run-b solves (1)"
        only_b.focus()
        await pilot.press("enter")
        predictions = await wait_for(pilot, lambda: isinstance(app.screen, PredictionsScreen)
                                     and app.screen.evaluation and app.screen)
        await wait_for(pilot, lambda: predictions.selected == UNSOLVED_A)
        assert predictions.run_id == str(b) and predictions.evaluation.task(UNSOLVED_A).status == SOLVED


async def test_a_run_without_evaluation_says_so(two_evaluated_runs, wait_for):
    url, _, _ = two_evaluated_runs
    app = make_app(url, analyze_prompts=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.open_predictions("3")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, PredictionsScreen) and app.screen.problem
                                and app.screen)
        assert "run 3 has no evaluation yet" in screen.problem
        assert "`arctui eval 3`" in screen.problem  # the command to type, with this run's id
        assert screen.query_one("#predictions-tasks", DataTable).row_count == 0


def test_eval_sources_are_per_step_and_data_set(two_evaluated_runs, tmp_path):
    url, a, _ = two_evaluated_runs
    with RunStore.open(url) as store:
        record_evaluation(store, a, Path(tmp_path / "eval-a-later"), step=200)
        sources = read_eval_sources(store, a)
    assert [(s.step, s.dataset) for s in sources] == [(100, "arcagi1/train[:4]"), (200, "arcagi1/train[:4]")]
    assert sources[-1].metrics["vote_2"] == 0.5
