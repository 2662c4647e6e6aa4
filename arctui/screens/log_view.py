"""The full-screen log view: a run's ``train.log`` (``s``: its ``supervisor.log``) as in ``less``.

Opened with ``L`` from the Run screen. The log follows its newest line while the view sits at the
bottom and pauses when scrolled up (the border says which, as on the Run screen); ``g``/``G`` jump to
the top/bottom (``G`` follows again). ``/`` searches as you type: every match is highlighted, the
current one more strongly, ``n``/``N`` move to the next/previous one (wrapping around), and the bar
below says ``3/17``. A query in lower case ignores case; one with a capital letter does not (smart
case). Enter keeps the search, Esc in the search field drops it; Esc or ``q`` closes the view.

Nothing here blocks the screen: a thread worker reads each log through
:class:`arctui.views.logs.LogFollower` (the whole file once, in chunks, then only what was appended,
every poll), and searches run in a thread worker over the lines shown. A missing log (a queued run,
a deleted run folder) is said in place of the log, and the log appears once the file does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.strip import Strip
from textual.widgets import ContentSwitcher, Footer, Input, Static
from textual.worker import Worker, get_current_worker

from arctui.screens.base import ArcScreen, is_visible_screen
from arctui.screens.commands import PaletteCommand
from arctui.views.logs import LOG_NAMES, SUPERVISOR_LOG, TRAIN_LOG, LogChunk, LogFollower, RunLogs, run_logs
from arctui.widgets.following_log import FollowingLog
from runner.errors import UserError

Match = tuple[int, int]
"""A search match: (line index, which occurrence in that line, from 0)."""


@dataclass(frozen=True)
class SearchQuery:
    """Plain text to find (not a regular expression: log lines are full of dots and brackets), with
    smart case: a query in lower case ignores case, one with a capital letter does not."""

    text: str

    @property
    def ignore_case(self) -> bool:
        return self.text == self.text.lower()

    def spans(self, line: str) -> list[tuple[int, int]]:
        """Where the query occurs in ``line``, without overlaps, left to right."""
        haystack = line.lower() if self.ignore_case else line
        spans, start = [], haystack.find(self.text)
        while start >= 0:
            spans.append((start, start + len(self.text)))
            start = haystack.find(self.text, start + len(self.text))
        return spans


def search_query(text: str) -> SearchQuery | None:
    """The query for the search field's text; None when there is nothing to search for."""
    return SearchQuery(text) if text else None


def find_matches(query: SearchQuery, lines: Sequence[str], start: int = 0, stop: int | None = None,
                 cancelled: Callable[[], bool] = lambda: False) -> list[Match]:
    """Every occurrence of ``query`` in ``lines[start:stop]``, in reading order (stops early, with
    what it found so far, once ``cancelled()``: a newer keystroke made this search useless)."""
    found: list[Match] = []
    text, lower = query.text, query.ignore_case
    for index in range(start, len(lines) if stop is None else stop):
        line = lines[index]
        # the plain `in` test first: most lines do not match, and it is the fastest test there is
        if text in (line.lower() if lower else line):
            found.extend((index, k) for k in range(len(query.spans(line))))
        elif index % 8192 == 0 and cancelled():
            break
    return found


class SearchableLog(FollowingLog):
    """A following log that highlights the matches of a search and shows one of them as current."""

    COMPONENT_CLASSES = {"searchable-log--match", "searchable-log--current"}
    DEFAULT_CSS = """
    SearchableLog > .searchable-log--match { background: $warning-darken-1; color: $text; }
    SearchableLog > .searchable-log--current { background: $accent; color: $text; text-style: bold; }
    """

    def __init__(self, log_name: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.log_name = log_name
        self.search_for: SearchQuery | None = None
        self.matches: list[Match] = []
        self.current: int | None = None
        """Index into :attr:`matches` of the current match."""

    def add_lines(self, lines: Sequence[str]) -> None:
        """Append lines (already cleaned by :func:`clean_lines`), and their matches to the search."""
        start = len(self.lines)
        self.write_lines(lines)
        if self.search_for is not None:
            self.matches.extend(find_matches(self.search_for, self.lines, start))

    def set_matches(self, query: SearchQuery | None, matches: list[Match], current: int | None) -> None:
        self.search_for, self.matches, self.current = query, matches, current
        self.refresh()
        self.show_current()

    def move(self, step: int) -> None:
        """Make the match ``step`` places after the current one current (wrapping around)."""
        if not self.matches:
            return
        self.current = 0 if self.current is None else (self.current + step) % len(self.matches)
        self.refresh()
        self.show_current()

    def show_current(self) -> None:
        """Scroll the current match into view (its line a third down the view), and across if needed."""
        if self.current is None:
            return
        line, occurrence = self.matches[self.current]
        height, width = self.scrollable_content_region.height, self.scrollable_content_region.width
        y = self.scroll_y if self.scroll_y <= line < self.scroll_y + height else max(0, line - height // 3)
        start, end = self._occurrence_span(line, occurrence)
        x = self.scroll_x if self.scroll_x <= start and end <= self.scroll_x + width else max(0, start - width // 3)
        self.scroll_to(x=x, y=y, animate=False, immediate=True)

    def first_match_from(self, line: int) -> int | None:
        """The index of the first match on or after ``line`` (wrapping to the first one)."""
        if not self.matches:
            return None
        return next((i for i, match in enumerate(self.matches) if match[0] >= line), 0)

    def _occurrence_span(self, line: int, occurrence: int) -> tuple[int, int]:
        found = self.search_for.spans(self.lines[line]) if self.search_for else []
        return found[occurrence] if occurrence < len(found) else (0, 0)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        # lines without a match (and any selection) render as in a plain log
        if self.search_for is None or index >= len(self.lines) or self.text_selection is not None:
            return super().render_line(y)
        line = self.lines[index]
        found = self.search_for.spans(line)
        if not found:
            return super().render_line(y)
        base = self.rich_style
        text = Text(line, style=base, no_wrap=True)
        match_style = self.get_component_rich_style("searchable-log--match")
        current_style = self.get_component_rich_style("searchable-log--current")
        current = self.matches[self.current] if self.current is not None else None
        for occurrence, hit in enumerate(found):
            text.stylize(current_style if current == (index, occurrence) else match_style, *hit)
        strip = Strip(text.render(self.app.console), cell_len(line))
        return strip.crop_extend(scroll_x, scroll_x + self.size.width, base).apply_offsets(scroll_x, index)


def clean_lines(lines: Sequence[str]) -> list[str]:
    """Lines as the log draws them (tabs expanded, control characters replaced), so searches and
    highlights count the same characters; a blank line stays (``Log`` would drop an empty one)."""
    return [SearchableLog._process_line(line) or " " for line in lines]


def log_id(log_name: str) -> str:
    return "log-" + log_name.removesuffix(".log")


class LogViewScreen(ArcScreen):
    """One run's log, full-screen, following and searchable."""

    BINDINGS = [
        Binding("escape,q", "close", "Back", id="log.close"),
        Binding("slash", "search", "Search", id="log.search"),
        Binding("n", "next_match", "Next", id="log.next"),
        # the footer keeps to what fits 80 columns; help (?) and the bar under the log list the rest
        Binding("N", "previous_match", "Previous", id="log.previous", show=False),
        Binding("g", "top", "Top", id="log.top", show=False),
        Binding("G", "bottom", "Follow", id="log.bottom"),
        Binding("s", "switch_log", "Other log", id="log.switch"),
    ]

    class SearchFinished(Message):
        """A search of one log's first ``searched`` lines finished."""

        def __init__(self, log_name: str, query: SearchQuery, matches: list[Match], searched: int) -> None:
            super().__init__()
            self.log_name, self.query, self.matches, self.searched = log_name, query, matches, searched

    def __init__(self, run_id: str, log_name: str = TRAIN_LOG) -> None:
        super().__init__()
        self.run_id = str(run_id)
        self.shown = log_name
        """The log on screen (``train.log`` or ``supervisor.log``)."""
        self.logs: RunLogs | None = None
        self.followers: dict[str, LogFollower] = {}
        self.missing: dict[str, str] = {}
        """Log name -> why it has nothing to show (while its file is missing)."""
        self.query_text = ""
        self._search_from_end = False
        self._search_from_line = 0
        """Where the search field was opened (the top line then): the first match is looked for from
        there on every keystroke, as in vim's incremental search."""
        self._readers: dict[str, Worker] = {}
        self._titled = ""
        """The run name the title shows (it comes with the first read)."""

    def compose(self) -> ComposeResult:
        yield Static("", id="log-title")
        with ContentSwitcher(initial=log_id(self.shown), id="log-switcher"):
            for name in LOG_NAMES:
                yield SearchableLog(name, id=log_id(name))
            yield Static("", id="log-missing")
        with Horizontal(id="log-bar"):
            yield Input(placeholder="search (Enter keeps it, Esc drops it)", id="log-search")
            yield Static("", id="log-matches")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#log-search").display = False
        for name in LOG_NAMES:
            self.query_one(f"#{log_id(name)}").border_title = name
        self._show_title()
        self._show_matches()
        self.log_widget.focus()
        self.poll()
        self.set_interval(self.app.poll_seconds, self.poll)

    @property
    def log_widget(self) -> SearchableLog:
        return self.query_one(f"#{log_id(self.shown)}", SearchableLog)

    # -- reading ---------------------------------------------------------------------------------
    def poll(self) -> None:
        reader = self._readers.get(self.shown)
        if (reader is not None and not reader.is_finished) or not is_visible_screen(self):
            return
        self._readers[self.shown] = self.read_log(self.shown)

    @work(thread=True, exit_on_error=False, group="log-read")
    def read_log(self, log_name: str) -> None:
        """Read what was appended to ``log_name``; a big file chunk by chunk, each shown before the next
        is read (``call_from_thread`` waits for the screen to take it)."""
        if self.logs is None or log_name in self.missing:
            try:
                self.logs = run_logs(self.app.store(), self.run_id)
            except UserError as error:  # the run was deleted from the store
                self.app.call_from_thread(self._take_missing, log_name, str(error))
                return
        path = self.logs.files[log_name]
        follower = self.followers.get(log_name)
        if follower is None or follower.path != path:  # a queued run's log path is set when it starts
            follower = self.followers[log_name] = LogFollower(path)
        worker = get_current_worker()
        while not worker.is_cancelled:
            chunk = follower.read()
            self.app.call_from_thread(self._take_chunk, log_name, chunk, clean_lines(chunk.lines))
            if not chunk.more:
                return

    def _take_missing(self, log_name: str, why: str) -> None:
        if self.is_attached:
            self.missing[log_name] = why
            self._show_state()

    def _take_chunk(self, log_name: str, chunk: LogChunk, lines: list[str]) -> None:
        if not self.is_attached:  # closed while a read was under way
            return
        log = self.query_one(f"#{log_id(log_name)}", SearchableLog)
        if self.logs is not None and self._titled != self.logs.name:
            self._show_title()
        if chunk.missing:
            assert self.logs is not None
            self.missing[log_name] = self.logs.missing_message(log_name)
        else:
            self.missing.pop(log_name, None)
            if chunk.restarted:  # truncated or replaced: what was shown is gone
                log.clear()
                log.set_matches(log.search_for, [], None)
        if lines:
            log.add_lines(lines)
            if log.search_for is not None and log.current is None and log.matches:
                log.current = len(log.matches) - 1 if log.following else 0
            self._show_matches()
        self._show_state()

    def _show_state(self) -> None:
        """The shown log, or why it is missing (keeping what was read before the file went away)."""
        log = self.log_widget
        why = self.missing.get(self.shown)
        switcher = self.query_one("#log-switcher", ContentSwitcher)
        if why is not None and not log.lines:
            missing = self.query_one("#log-missing", Static)
            missing.update(why)
            missing.border_title = self.shown
            switcher.current = "log-missing"
        else:
            switcher.current = log.id
            log.border_title = f"{log.log_name}: {why}" if why else log.log_name

    def _show_title(self) -> None:
        other = SUPERVISOR_LOG if self.shown == TRAIN_LOG else TRAIN_LOG
        self._titled = self.logs.name if self.logs else ""
        name = f" {self._titled}" if self._titled else ""
        title = Text.assemble((f"run {self.run_id}{name}", "bold"), "  ", (self.shown, "cyan"),
                              (f"   s: {other}", "dim"))
        self.query_one("#log-title", Static).update(title)

    # -- searching -------------------------------------------------------------------------------
    @on(Input.Changed, "#log-search")
    def search_changed(self, event: Input.Changed) -> None:
        self.search(event.value)

    def search(self, query: str) -> None:
        """Search the shown log for ``query`` (in a worker); '' drops the search."""
        self.query_text = query
        log = self.log_widget
        wanted = search_query(query)
        if wanted is None:
            log.set_matches(None, [], None)
        else:
            self.search_lines(log.log_name, wanted, log.lines)
        self._show_matches(searching=wanted is not None)

    @work(thread=True, exclusive=True, exit_on_error=False, group="log-search")
    def search_lines(self, log_name: str, query: SearchQuery, lines: Sequence[str]) -> None:
        searched = len(lines)  # lines only grow while we search: the rest is searched on arrival
        worker = get_current_worker()
        matches = find_matches(query, lines, 0, searched, cancelled=lambda: worker.is_cancelled)
        if not worker.is_cancelled:
            self.post_message(self.SearchFinished(log_name, query, matches, searched))

    @on(SearchFinished)
    def take_search(self, message: SearchFinished) -> None:
        log = self.query_one(f"#{log_id(message.log_name)}", SearchableLog)
        if message.query != search_query(self.query_text) or log is not self.log_widget:
            return  # an older query's, or another log's
        matches = message.matches + find_matches(message.query, log.lines, message.searched)
        log.set_matches(message.query, matches, None)
        # from the bottom (following) the newest match is wanted, else the first one from the top line
        current = len(matches) - 1 if self._search_from_end else log.first_match_from(self._search_from_line)
        if matches:
            log.current = current
            log.show_current()
        self._show_matches()

    def _show_matches(self, searching: bool = False) -> None:
        log = self.log_widget
        bar = self.query_one("#log-matches", Static)
        if not self.query_text:
            bar.update(Text("/ search   n/N next/previous   g/G top/bottom   s other log   q back", style="dim"))
        elif searching:
            bar.update(Text(f"searching {len(log.lines):,} lines for {self.query_text!r}", style="dim"))
        elif not log.matches:
            bar.update(Text(f"no match for {self.query_text!r}", style="yellow"))
        else:
            place = "-" if log.current is None else f"{log.current + 1}"
            bar.update(Text.assemble((f"{place}/{len(log.matches)}", "bold"), f"  {self.query_text!r}",
                                     ("   n/N next/previous", "dim")))

    @on(Input.Submitted, "#log-search")
    def keep_search(self) -> None:
        self._close_search_field()

    def _close_search_field(self) -> None:
        self.query_one("#log-search").display = False
        self.log_widget.focus()

    # -- actions -------------------------------------------------------------------------------------
    def action_close(self) -> None:
        field = self.query_one("#log-search", Input)
        if field.has_focus:  # Esc in the search field drops the search, not the view
            field.value = ""
            self.search("")
            self._close_search_field()
            return
        self.dismiss()

    def action_search(self) -> None:
        field = self.query_one("#log-search", Input)
        self._search_from_end = self.log_widget.following
        self._search_from_line = round(self.log_widget.scroll_y)
        field.display = True
        field.focus()
        if field.value:
            field.select_all()

    def action_next_match(self) -> None:
        self.log_widget.move(1)
        self._show_matches()

    def action_previous_match(self) -> None:
        self.log_widget.move(-1)
        self._show_matches()

    def action_top(self) -> None:
        self.log_widget.scroll_home(animate=False, immediate=True)

    def action_bottom(self) -> None:
        self.log_widget.follow()

    def action_switch_log(self) -> None:
        self.shown = SUPERVISOR_LOG if self.shown == TRAIN_LOG else TRAIN_LOG
        self._show_title()
        self._show_state()
        self.log_widget.focus()
        self._search_from_end = self.log_widget.following
        self._search_from_line = round(self.log_widget.scroll_y)
        self.search(self.query_text)
        self.poll()

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            PaletteCommand("Search log", "Search this log as you type (n/N: next/previous)", self.action_search),
            PaletteCommand("Other log", "Switch between train.log and supervisor.log", self.action_switch_log),
            PaletteCommand("Top of log", "Jump to the first line", self.action_top),
            PaletteCommand("Bottom of log", "Jump to the newest line and follow", self.action_bottom),
        ]
