"""Command-palette entries (ctrl+p): the app's actions plus what makes sense on the current screen,
each with its key binding, so the palette also teaches the keys.

A screen offers its own entries by defining ``palette_commands() -> list[PaletteCommand]`` (posting's
approach: the palette follows the screen, so "Stop run" only appears where there is a run). An entry
whose callback is a binding's ``action_<name>`` shows that binding's key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider


@dataclass(frozen=True)
class PaletteCommand:
    """One palette entry: what it says, what it does, a line of help and its key (if it has one)."""

    name: str
    help: str
    callback: Callable[[], object]
    key: str = ""

    @property
    def help_with_key(self) -> str:
        return f"{self.help}  ·  key {self.key}" if self.key else self.help


def key_display(app, binding: Binding) -> str:
    """``j, down``: every key of ``binding`` as the app displays it."""
    return ", ".join(app.get_key_display(Binding(key.strip(), "")) for key in binding.key.split(","))


def keys_of_actions(owner) -> dict[str, str]:
    """Action name -> its keys as displayed, for the described bindings of ``owner`` (a screen or the
    app)."""
    keys: dict[str, str] = {}
    for binding in getattr(owner, "BINDINGS", ()):
        if isinstance(binding, Binding) and binding.description:
            keys.setdefault(binding.action.removeprefix("app."), key_display(owner.app, binding))
    return keys


def with_key(command: PaletteCommand, keys: dict[str, str]) -> PaletteCommand:
    """``command`` with the key of the binding whose action its callback is (``action_<name>``)."""
    action = getattr(command.callback, "__name__", "").removeprefix("action_")
    if command.key or action not in keys:
        return command
    return PaletteCommand(command.name, command.help, command.callback, keys[action])


class ArcCommands(Provider):
    """Offers app-wide commands and those of the screen under the palette."""

    def _commands(self) -> list[PaletteCommand]:
        app = self.app
        commands = [
            PaletteCommand("Runs", "Show every run", app.action_show_runs),
            PaletteCommand("New run", "Open the new-run form", app.action_new_run),
            PaletteCommand("GPUs", "Show every GPU and the run holding it", app.action_gpus),
            PaletteCommand("Studies", "Every study with its progress and ETA", app.action_studies),
            PaletteCommand("Help", "Key bindings and how to use arctui", app.action_help),
        ]
        screen_commands = getattr(self.screen, "palette_commands", None)
        if callable(screen_commands):
            commands = list(screen_commands()) + commands
        keys = keys_of_actions(app) | keys_of_actions(self.screen)
        return [with_key(command, keys) for command in commands]

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(command.name, command.callback, help=command.help_with_key)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(score, matcher.highlight(command.name), command.callback, help=command.help_with_key)
