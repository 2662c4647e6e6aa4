"""Command group (being written)."""


def register(subparsers) -> None:
    """Add this group's commands to the arctui parser."""
