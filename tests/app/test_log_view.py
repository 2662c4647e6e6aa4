"""The full-screen log view (``L`` on the Run screen): the incremental log reader, then Pilot tests on
the seeded store's running run, whose ``train.log`` (and a ``supervisor.log`` next to it) the tests
write: opening from the Run screen, search with highlighted matches and n/N, following appended
lines (and not while scrolled up), the other log, a missing log, and a 100,000-line log."""

from __future__ import annotations

import shutil

from textual.widgets import Input, Static

from arctui.app import make_app
from arctui.screens.commands import ArcCommands
from arctui.screens.help import HelpScreen
from arctui.screens.log_view import LogViewScreen, SearchableLog, find_matches, search_query
from arctui.screens.run import RunScreen
from arctui.views.logs import LogFollower, fold_carriage_returns
from db.store import RunStore
from tests.app.conftest import config

# -- the reader ------------------------------------------------------------------------------------


def test_follower_reads_only_complete_appended_lines(tmp_path):
    path = tmp_path / "train.log"
    follower = LogFollower(path)
    assert follower.read().missing
    path.write_bytes(b"one\ntwo\nthr")
    assert follower.read().lines == ("one", "two")
    assert follower.read().lines == ()  # nothing new; the unfinished line waits
    with open(path, "ab") as fh:
        fh.write(b"ee\nfour\n")
    chunk = follower.read()
    assert chunk.lines == ("three", "four") and not chunk.restarted
    assert follower.offset == path.stat().st_size


def test_follower_folds_progress_bar_redraws_and_keeps_blank_lines(tmp_path):
    path = tmp_path / "train.log"
    path.write_bytes(b"Map:  10%\rMap:  50%\rMap: 100%\r\n\nwindows line\r\n")
    assert LogFollower(path).read().lines == ("Map: 100%", "", "windows line")
    assert fold_carriage_returns("a\rb") == "b"


def test_follower_starts_again_when_the_log_is_truncated_or_replaced(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("old 1\nold 2\n")
    follower = LogFollower(path)
    assert len(follower.read().lines) == 2
    path.write_text("new\n")  # shorter than what was read: truncated
    chunk = follower.read()
    assert chunk.restarted and chunk.lines == ("new",)
    replacement = tmp_path / "other.log"
    replacement.write_text("replaced 1\nreplaced 2\nreplaced 3\n")
    replacement.replace(path)  # another file under the same name
    chunk = follower.read()
    assert chunk.restarted and chunk.lines == ("replaced 1", "replaced 2", "replaced 3")
    path.unlink()
    assert follower.read().missing
    path.write_text("back\n")  # a log that comes back is read as a new one
    chunk = follower.read()
    assert chunk.restarted and chunk.lines == ("back",)


def test_follower_reads_a_big_log_in_chunks(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("".join(f"line {i}\n" for i in range(1000)))
    follower = LogFollower(path, chunk_bytes=1000)
    lines, reads = [], 0
    while True:
        chunk = follower.read()
        lines.extend(chunk.lines)
        reads += 1
        if not chunk.more:
            break
    assert lines == [f"line {i}" for i in range(1000)]
    assert reads == -(-path.stat().st_size // 1000)


def test_search_is_plain_text_with_smart_case():
    lines = ["Loss 1 loss", "nothing", "a.b LOSS"]
    assert find_matches(search_query("loss"), lines) == [(0, 0), (0, 1), (2, 0)]
    assert find_matches(search_query("Loss"), lines) == [(0, 0)]
    assert find_matches(search_query("."), lines) == [(2, 0)]  # not a regular expression
    assert search_query("") is None


# -- the screen ------------------------------------------------------------------------------------


def app_for(seeded):
    return make_app(seeded.url, clock=lambda: seeded.frozen_now)


async def open_log_view(wait_for, pilot, app, run_id) -> LogViewScreen:
    """Open the Run screen of ``run_id``, then its full log with ``L``."""
    app.open_run(str(run_id))
    await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail is not None)
    await pilot.press("L")
    await wait_for(pilot, lambda: isinstance(app.screen, LogViewScreen))
    return app.screen


def shown_log(screen: LogViewScreen) -> SearchableLog:
    return screen.log_widget


def bar_text(screen: LogViewScreen) -> str:
    return str(screen.query_one("#log-matches", Static).render())


async def test_opens_from_the_run_screen_following_and_closes_back(seeded, wait_for):
    app = app_for(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_log_view(wait_for, pilot, app, seeded.running_id)
        log = shown_log(screen)
        await wait_for(pilot, lambda: len(log.lines) == 40)
        assert log.lines == seeded.log_path.read_text().splitlines()
        await wait_for(pilot, lambda: log.scroll_y == log.max_scroll_y > 0)
        assert log.following and log.border_subtitle == "following"
        assert "1gpu-2048-pdbs2" in str(screen.query_one("#log-title", Static).render())
        await pilot.press("g")
        assert log.scroll_y == 0 and not log.following and log.border_subtitle.startswith("paused")
        await pilot.press("G")
        assert log.following and log.scroll_y == log.max_scroll_y
        # the keys are in the help (under this screen's name) and in the palette with their keys
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert ("n", "Next") in app.screen.entries["Log view screen"]
        assert ("N", "Previous") in app.screen.entries["Log view screen"]
        await pilot.press("escape")
        hits = {hit.text: hit.help async for hit in ArcCommands(screen).discover()}
        assert hits["Search log"].endswith("key /") and hits["Bottom of log"].endswith("key G")
        await pilot.press("q")  # q closes the view, it does not quit the app
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))


async def test_search_highlights_counts_and_moves_between_matches(seeded, wait_for):
    app = app_for(seeded)
    async with app.run_test(size=(100, 24)) as pilot:
        screen = await open_log_view(wait_for, pilot, app, seeded.running_id)
        log = shown_log(screen)
        await wait_for(pilot, lambda: len(log.lines) == 40)
        await pilot.press("g")  # from the top, the first match is the first one below the top line
        await pilot.press("slash")
        assert screen.query_one("#log-search", Input).has_focus
        await pilot.press(*"step 1")  # incremental: step 1, step 10..19, step 100 is not there yet
        await wait_for(pilot, lambda: bar_text(screen).startswith("1/11"))
        assert [log.lines[line].split("/")[0] for line, _ in log.matches] == [
            "step 1", *(f"step {i}" for i in range(10, 20))]
        await pilot.press("9")
        await wait_for(pilot, lambda: bar_text(screen).startswith("1/1 "))
        assert log.lines[log.matches[0][0]].startswith("step 19/")
        await pilot.press("backspace", "enter")  # Enter keeps the search and gives the keys back
        await wait_for(pilot, lambda: bar_text(screen).startswith("1/11"), timeout=5)
        assert log.has_focus and not screen.query_one("#log-search", Input).display
        await pilot.press("n", "n")
        assert bar_text(screen).startswith("3/11") and log.lines[log.matches[log.current][0]].startswith("step 11/")
        await pilot.press("N", "N", "N")  # wraps around to the last match
        assert bar_text(screen).startswith("11/11")
        line = log.matches[log.current][0]
        assert log.lines[line].startswith("step 19/") and log.scroll_y <= line < log.scroll_y + log.size.height
        # the highlighted match is drawn in the current match's style, the other matches in theirs
        row = log.render_line(line - round(log.scroll_y))
        current = log.get_component_rich_style("searchable-log--current").bgcolor
        other = log.get_component_rich_style("searchable-log--match").bgcolor
        assert current != other
        assert [segment.text for segment in row if segment.style.bgcolor == current] == ["step 1"]
        row = log.render_line(log.matches[0][0] - round(log.scroll_y))
        assert [segment.text for segment in row if segment.style.bgcolor == other] == ["step 1"]
        await pilot.press("slash", "x", "y", "z")
        await wait_for(pilot, lambda: bar_text(screen).startswith("no match for 'xyz'"))
        await pilot.press("escape")  # Esc in the field drops the search and keeps the view
        assert isinstance(app.screen, LogViewScreen) and log.search_for is None and not log.matches


async def test_search_from_the_bottom_starts_at_the_newest_match(seeded, wait_for):
    app = app_for(seeded)
    async with app.run_test(size=(100, 24)) as pilot:
        screen = await open_log_view(wait_for, pilot, app, seeded.running_id)
        log = shown_log(screen)
        await wait_for(pilot, lambda: len(log.lines) == 40 and log.following)
        await pilot.press("slash", *"step 1", "enter")
        await wait_for(pilot, lambda: bar_text(screen).startswith("11/11"))


async def test_following_takes_appended_lines_and_paused_keeps_the_view(seeded, wait_for):
    app = app_for(seeded)
    async with app.run_test(size=(100, 24)) as pilot:
        screen = await open_log_view(wait_for, pilot, app, seeded.running_id)
        log = shown_log(screen)
        await wait_for(pilot, lambda: len(log.lines) == 40)
        await pilot.press("slash", *"loss 0.5", "enter")
        await wait_for(pilot, lambda: "'loss 0.5'" in bar_text(screen))
        matches_before = len(log.matches)
        with open(seeded.log_path, "a") as fh:
            fh.write("step 41/100 loss 0.5999\nstep 42/100 loss 0.5")  # the second line is unfinished
        await wait_for(pilot, lambda: log.lines[-1] == "step 41/100 loss 0.5999")
        assert len(log.matches) == matches_before + 1  # matches of appended lines count at once
        await wait_for(pilot, lambda: log.scroll_y == log.max_scroll_y)
        await pilot.press("g")
        with open(seeded.log_path, "a") as fh:
            fh.write("901\n")
        await wait_for(pilot, lambda: log.lines[-1] == "step 42/100 loss 0.5901")
        assert log.scroll_y == 0 and not log.following  # scrolled up: the view stays where it is
        await pilot.press("G")
        with open(seeded.log_path, "a") as fh:
            fh.write("step 43/100 loss 0.5800\n")
        await wait_for(pilot, lambda: log.lines[-1] == "step 43/100 loss 0.5800")
        await wait_for(pilot, lambda: log.scroll_y == log.max_scroll_y)


async def test_s_shows_the_supervisor_log(seeded, wait_for):
    (seeded.log_path.parent / "supervisor.log").write_text("[07:00:01] supervisor started\n[07:00:02] training\n")
    app = app_for(seeded)
    async with app.run_test(size=(100, 24)) as pilot:
        screen = await open_log_view(wait_for, pilot, app, seeded.running_id)
        await wait_for(pilot, lambda: len(shown_log(screen).lines) == 40)
        await pilot.press("slash", *"train", "enter")
        await pilot.press("s")
        log = shown_log(screen)
        assert log.log_name == "supervisor.log"
        await wait_for(pilot, lambda: log.lines == ["[07:00:01] supervisor started", "[07:00:02] training"])
        await wait_for(pilot, lambda: bar_text(screen).startswith("1/1 "))  # the search moved along
        await pilot.press("s")
        assert shown_log(screen).log_name == "train.log" and len(shown_log(screen).lines) == 40
        await wait_for(pilot, lambda: bar_text(screen).startswith("no match for 'train'"))


async def test_a_missing_log_says_why(seeded, wait_for, tmp_path):
    with RunStore.open(seeded.url) as store:
        gone = store.create_run(config(), name="deleted-folder")
        store.update_run(gone.id, log_path=str(tmp_path / "deleted" / "train.log"))
        store.set_status(gone.id, "running")
        store.set_status(gone.id, "completed", exit_code=0)
    app = app_for(seeded)
    async with app.run_test(size=(100, 24)) as pilot:
        screen = await open_log_view(wait_for, pilot, app, 5)  # the seeded queued run
        missing = screen.query_one("#log-missing", Static)
        await wait_for(pilot, lambda: "queued" in str(missing.render()))
        assert "train.log does not exist yet" in str(missing.render()) and missing.display
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        await pilot.press("escape")
        screen = await open_log_view(wait_for, pilot, app, gone.id)
        missing = screen.query_one("#log-missing", Static)
        await wait_for(pilot, lambda: "was deleted" in str(missing.render()))
        # the folder comes back with a log: it shows up without reopening
        (tmp_path / "deleted").mkdir()
        (tmp_path / "deleted" / "train.log").write_text("back again\n")
        await wait_for(pilot, lambda: shown_log(screen).lines == ["back again"] and shown_log(screen).display)
        shutil.rmtree(tmp_path / "deleted")
        # what was read stays on screen; the border says the file went away
        await wait_for(pilot, lambda: "deleted" in str(shown_log(screen).border_title))
        assert shown_log(screen).lines == ["back again"]
        (tmp_path / "deleted").mkdir()
        (tmp_path / "deleted" / "train.log").write_text("a new log\n")
        await wait_for(pilot, lambda: shown_log(screen).lines == ["a new log"])
        assert shown_log(screen).border_title == "train.log"


async def test_a_100k_line_log_opens_whole_and_reads_only_what_is_appended(seeded, wait_for):
    n = 100_000
    seeded.log_path.write_text("".join(f"[rank0] step {i} loss {1 / (i + 1):.6f} lr 1e-4\n" for i in range(n)))
    app = app_for(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_log_view(wait_for, pilot, app, seeded.running_id)
        log = shown_log(screen)
        await wait_for(pilot, lambda: len(log.lines) == n and log.scroll_y == log.max_scroll_y)
        # the screen answers keys while the log is there (top, then a search across all of it)
        await pilot.press("g", "slash", *"step 54321 ", "enter")
        await wait_for(pilot, lambda: bar_text(screen).startswith("1/1 "))
        assert log.matches == [(54321, 0)] and log.scroll_y <= 54321 < log.scroll_y + log.size.height
        size = seeded.log_path.stat().st_size
        with open(seeded.log_path, "a") as fh:
            fh.write("the end\n")
        await wait_for(pilot, lambda: log.lines[-1] == "the end")
        follower = screen.followers["train.log"]
        assert follower.offset == size + len("the end\n")  # read once; then only the appended bytes


async def test_a_match_beyond_the_right_edge_scrolls_into_view(seeded, wait_for):
    with open(seeded.log_path, "a") as fh:
        fh.write("x" * 150 + " needle\n\tindented line\n\nafter a blank line\n")
    app = app_for(seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_log_view(wait_for, pilot, app, seeded.running_id)
        log = shown_log(screen)
        await wait_for(pilot, lambda: len(log.lines) == 44)
        # tabs are expanded and the blank line kept, as a terminal shows them
        assert log.lines[-3:] == ["        indented line", " ", "after a blank line"]
        assert log.scroll_x == 0
        await pilot.press("slash", *"needle", "enter")
        await wait_for(pilot, lambda: bar_text(screen).startswith("1/1 "))
        await wait_for(pilot, lambda: log.scroll_x <= 151 and 157 <= log.scroll_x + log.scrollable_content_region.width)
        await pilot.press("g")
        assert log.scroll_x == 0
