"""Argument-parsing pieces shared by every command line of the project (``arctui``,
``python -m runner.fine_tuning``, ``python -m runner.evaluate``): usage errors as one line naming the
problem and where to look, and value types whose errors say what was expected. Light: argparse only."""

from __future__ import annotations

import argparse
import math


class OneLineArgumentParser(argparse.ArgumentParser):
    """Usage errors as one line ``PROG: error: MESSAGE (see 'PROG --help')`` and exit 2, never the
    usage block. ``help_hint`` overrides how to ask for help (e.g. ``python -m runner.evaluate --help``)."""

    def __init__(self, *args, help_hint: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.help_hint = help_hint

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = self.help_hint or f"{self.prog} --help"
        self.exit(2, f"{self.prog}: error: {message} (see '{hint}')\n")


def positive_int(text: str) -> int:
    """An int of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """A finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value
