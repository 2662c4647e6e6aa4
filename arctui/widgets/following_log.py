"""A log panel that follows its newest line until the user scrolls up, and follows again once they
scroll back to the end (End, or the owner calling :meth:`FollowingLog.follow`).

Textual's ``Log`` only scrolls on a write when it already sits at the end, so anything that moves the
end away from the view without a write (a smaller terminal, a panel shown again) left it behind for
good. Here following is a state of its own: only a scroll that lands above the end pauses it, and a
resize while following scrolls to the new end. The border subtitle says which state it is in.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.reactive import reactive
from textual.widgets import Log

FOLLOWING = "following"
PAUSED = "paused: scrolled up (End follows)"


class FollowingLog(Log):
    """A :class:`~textual.widgets.Log` that keeps its newest line in view unless scrolled up."""

    following: reactive[bool] = reactive(True)
    """Whether new lines scroll the view to the end (False once the user scrolled up)."""

    def on_mount(self) -> None:
        self.border_subtitle = FOLLOWING

    def write_lines(self, lines: Iterable[str], scroll_end: bool | None = None) -> FollowingLog:
        super().write_lines(lines, scroll_end=False)
        if self.following if scroll_end is None else scroll_end:
            self.follow()
        return self

    def follow(self) -> None:
        """Scroll to the newest line and keep following."""
        self.following = True
        self.scroll_end(animate=False, immediate=True, x_axis=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # whoever moved it (wheel, keys, scrollbar, ourselves): at the end is following, above is not
        self.following = new_value >= self.max_scroll_y

    def watch_following(self, following: bool) -> None:
        self.border_subtitle = FOLLOWING if following else PAUSED

    def on_resize(self) -> None:
        # a smaller panel moves the end below the view without any scroll: go after it
        if self.following:
            self.call_after_refresh(self._follow_if_still_following)

    def _follow_if_still_following(self) -> None:
        # The user may have scrolled up between the resize and this refresh (a late layout pass on a
        # loaded machine): their scroll wins.
        if self.following:
            self.follow()
