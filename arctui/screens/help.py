"""The help screen: what arctui shows, and every key binding of the screen below, by group."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from arctui.screens.commands import key_display
from runner.metrics import METRIC_MEANINGS, UNANSWERED_MEANS

INTRO = """\
[b]arctui[/b] manages LoRA fine-tuning runs of small language models on ARC tasks. \
Runs belong to their own supervisor process: closing arctui never stops them, and reopening it \
shows them live again, wherever they were launched from (`arctui launch` too).

[b]Search[/b] run names by typing a word after /, or [b]filter[/b] (enter applies) with the language of `arctui runs --where`, for example:
  model~SmolLM and msl>=2048
  status=running or status=queued
  tag=baseline and s_per_step<2
  tag=archived            (archived runs are hidden otherwise)
The sort and the filter are remembered for next time. In lists, j/k move, g/G jump to the top/bottom.
[b]Accuracy[/b] is the {accuracy}, always with the number of tasks and the data set it was measured on (the line under the runs table, Compare); {unanswered}.
[b]ctrl+p[/b] opens the command palette: every action of the current screen, with its key.
"""


def binding_entries(bindings: list[Binding], app) -> list[tuple[str, str]]:
    """(keys as displayed, description) for every described binding; a key bound twice (the second
    answers when the first does not apply) is listed once, by its first binding."""
    entries = []
    for binding in bindings:
        keys = key_display(app, binding)
        if binding.description and all(keys != listed for listed, _ in entries):
            entries.append((keys, binding.description))
    return entries


def bindings_table(title: str, entries: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("action")
    for keys, description in entries:
        table.add_row(keys, description)
    return table


# Screen class names whose plain spelling would be wrong in a title ("Gpus" -> "GPUs").
TITLE_WORDS = {"Gpus": "GPUs", "NewRun": "New run", "TaskDiff": "Task diff", "LogView": "Log view"}


def screen_title(screen) -> str:
    """``Runs screen``, ``GPUs screen``: what the help calls the screen it was opened from."""
    name = type(screen).__name__.removesuffix("Screen") or "This"
    return f"{TITLE_WORDS.get(name, name)} screen"


def _as_bindings(items) -> list[Binding]:
    out = []
    for item in items:
        out.append(item if isinstance(item, Binding) else Binding(*item))
    return out


class HelpScreen(ModalScreen[None]):
    """Key bindings of the screen it was opened from, the app's, and a short introduction."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def __init__(self, below=None) -> None:
        super().__init__()
        self.below = below
        """The screen whose bindings are listed first."""
        self.entries: dict[str, list[tuple[str, str]]] = {}
        """Group title -> (keys, description) shown."""

    def compose(self) -> ComposeResult:
        below = self.below
        with VerticalScroll(id="help-dialog"):
            if below is not None and getattr(below, "BINDINGS", None):
                self.entries[screen_title(below)] = binding_entries(_as_bindings(below.BINDINGS), self.app)
            self.entries["Everywhere"] = binding_entries(_as_bindings(self.app.BINDINGS), self.app) + [
                ("ctrl+p", "Command palette"),
            ]
            for title, entries in self.entries.items():
                yield Static(bindings_table(title, entries))
            yield Static(Text.from_markup(INTRO.format(accuracy=METRIC_MEANINGS["accuracy"], unanswered=UNANSWERED_MEANS)), id="help-intro")

    def on_mount(self) -> None:
        # on the frame, so it shows however far the help is scrolled (a long screen's keys fill it)
        self.query_one("#help-dialog").border_subtitle = "escape closes · ↑↓ scroll"
