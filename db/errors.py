"""Errors the store raises. Each carries one line that names the problem and the fix; the CLI prints it
without a traceback (they are :class:`runner.errors.UserError`)."""

from __future__ import annotations

from runner.errors import UserError


class StoreError(UserError):
    """The database cannot be opened, read or written, or a store call got bad input."""


class UnknownRunError(StoreError):
    """No run has the given id or name."""


class IllegalTransitionError(StoreError):
    """A status change that the run lifecycle does not allow (e.g. completed -> running)."""


class FilterError(StoreError):
    """A ``--where`` expression that does not parse; ``position`` is the 0-based column of the problem."""

    def __init__(self, message: str, position: int = 0) -> None:
        super().__init__(message)
        self.position = position


class UnstorableValueError(StoreError):
    """A value the database cannot hold (an integer beyond the store's range, a NaN or infinite number
    where a column needs one). Permanent: retrying the same call fails the same way, so a caller that
    retries store errors (the supervisor's ingest) must not retry this one. ``field`` and ``value`` name
    what was refused; for ingestion, ``seq`` is the event that held it (records before it were stored)."""

    def __init__(self, message: str, field: str = "", value: object = None, seq: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value
        self.seq = seq
