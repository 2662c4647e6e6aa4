"""The base of every arctui screen: failed workers become notifications (harlequin's pattern)."""

from __future__ import annotations

from typing import Generic, TypeVar

from textual import on
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState


def quit_binding(screen: str) -> Binding:
    """``q Quit`` for ``screen``'s own bindings, listed right after Back: the app's binding comes last
    in the footer, which an 80-column terminal cuts before it."""
    return Binding("q", "app.quit", "Quit", id=f"{screen}.quit")


def explaining_binding(key: str, action: str, screen: str, what: str) -> Binding:
    """A hidden second binding of ``key`` that runs ``action('anyway')`` when the screen's
    ``check_action`` hides the shown one because it does not apply: the action then says why (a
    finished run cannot be stopped) instead of the key doing nothing. ``check_action`` lets actions
    with this parameter through; the help lists a key once, by its first binding."""
    return Binding(key, f"{action}('anyway')", f"{what}: why it does not apply", show=False,
                   id=f"{screen}.{action}.anyway")


class ArcScreen(Screen):
    """A screen whose failed workers (store unreachable, bad filter, launch refused) are shown as a
    notification with the reason instead of ending the app with a traceback."""

    @on(Worker.StateChanged)
    def report_failed_worker(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.app.report_error(event.worker.error)


ResultType = TypeVar("ResultType")


class ArcModalScreen(ModalScreen[ResultType], Generic[ResultType]):
    """A modal screen with the same error reporting as :class:`ArcScreen`."""

    @on(Worker.StateChanged)
    def report_failed_worker(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.app.report_error(event.worker.error)


def is_visible_screen(screen: Screen) -> bool:
    """True when ``screen`` is on top, or right under a modal dialog (so still seen): polls of a
    screen hidden under another one would only cost the screen on top its redraws."""
    stack = screen.app.screen_stack
    if stack and stack[-1] is screen:
        return True
    return len(stack) >= 2 and stack[-2] is screen and isinstance(stack[-1], ModalScreen)
