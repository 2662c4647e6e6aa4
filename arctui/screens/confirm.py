"""Small modals: a yes/no question (the question, the consequence, two buttons, optionally one
checkbox such as "also delete the run folder") and a one-line text question (rename, tags)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Static


class ConfirmScreen(ModalScreen[bool]):
    """Asks ``question``; dismisses with True only on an explicit yes. With ``option``, a checkbox
    (unticked) whose state is :attr:`option_chosen` when the answer arrives."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, detail: str = "", yes_label: str = "Yes", option: str = "") -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.yes_label = yes_label
        self.option = option
        self.option_chosen = False
        """Whether the checkbox of ``option`` was ticked."""

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(self.question, id="confirm-question")
            if self.detail:
                yield Static(self.detail, id="confirm-detail")
            if self.option:
                yield Checkbox(self.option, id="confirm-option", compact=True)
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.yes_label} (y)", variant="error", id="confirm-yes")
                yield Button("Cancel (n)", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    @on(Checkbox.Changed, "#confirm-option")
    def option_changed(self, event: Checkbox.Changed) -> None:
        self.option_chosen = event.value

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class AskScreen(ModalScreen[str | None]):
    """Asks for one line of text (prefilled with ``value``); enter answers, escape cancels (None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="ask.cancel")]

    def __init__(self, question: str, value: str = "", detail: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.detail = detail
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="ask-dialog"):
            yield Static(self.question, id="ask-question")
            yield Input(self.value, placeholder=self.placeholder, id="ask-input", compact=True)
            yield Static(self.detail or "enter: done  ·  escape: cancel", id="ask-detail")

    @on(Input.Submitted, "#ask-input")
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
