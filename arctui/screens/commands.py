"""Command-palette entries (ctrl+p): the app's actions plus what makes sense on the current screen.

A screen offers its own entries by defining ``palette_commands() -> list[PaletteCommand]`` (posting's
approach: the palette follows the screen, so "Stop run" only appears where there is a run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.command import DiscoveryHit, Hit, Hits, Provider


@dataclass(frozen=True)
class PaletteCommand:
    """One palette entry: what it says, what it does and a line of help."""

    name: str
    help: str
    callback: Callable[[], object]


class ArcCommands(Provider):
    """Offers app-wide commands and those of the screen under the palette."""

    def _commands(self) -> list[PaletteCommand]:
        app = self.app
        commands = [
            PaletteCommand("Runs", "Show every run", app.action_show_runs),
            PaletteCommand("New run", "Open the new-run form", app.action_new_run),
            PaletteCommand("GPUs", "Show every GPU and the run holding it", app.action_gpus),
            PaletteCommand("Help", "Key bindings and how to use arctui", app.action_help),
        ]
        screen_commands = getattr(self.screen, "palette_commands", None)
        if callable(screen_commands):
            commands = list(screen_commands()) + commands
        return commands

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(command.name, command.callback, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(score, matcher.highlight(command.name), command.callback, help=command.help)
