"""Messages the app's workers post back to the screens, named for what already happened.

Workers read the store in threads and post one of these; high-rate ones define ``can_replace`` so
that a newer snapshot still waiting in the queue supersedes an older one (toolong's trick): however
fast a run streams, a screen redraws at most once per poll.
"""

from __future__ import annotations

from textual.message import Message

from arctui.views.compare import Comparison
from arctui.views.gpus import GpuReading
from arctui.views.rows import RunRow
from arctui.views.studies import StudyDetail, StudyProgress
from arctui.views.summary import RunDetail


class RunsLoaded(Message):
    """A page of runs was read for the Runs screen."""

    def __init__(self, rows: list[RunRow], total: int, where: str, sort: str, descending: bool) -> None:
        super().__init__()
        self.rows = rows
        self.total = total
        self.where = where
        self.sort = sort
        self.descending = descending

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsLoaded)


class RunDetailLoaded(Message):
    """A fresh snapshot of one run (summary, series, GPUs, log tail) was read."""

    def __init__(self, detail: RunDetail) -> None:
        super().__init__()
        self.detail = detail

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunDetailLoaded) and message.detail.row.id == self.detail.row.id


class GpusSampled(Message):
    """The GPUs were read (empty list and a reason when there is no NVIDIA driver)."""

    def __init__(self, gpus: list[GpuReading], unavailable_reason: str | None) -> None:
        super().__init__()
        self.gpus = gpus
        self.unavailable_reason = unavailable_reason

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GpusSampled)


class ComparisonLoaded(Message):
    """The runs chosen for comparison were read."""

    def __init__(self, comparison: Comparison) -> None:
        super().__init__()
        self.comparison = comparison


class StudiesLoaded(Message):
    """Every study was read with its progress and ETA, for the Studies screen."""

    def __init__(self, studies: list[StudyProgress]) -> None:
        super().__init__()
        self.studies = studies

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StudiesLoaded)


class StudyDetailLoaded(Message):
    """A fresh snapshot of one study (its table, latest paces and loss curves) was read."""

    def __init__(self, detail: StudyDetail) -> None:
        super().__init__()
        self.detail = detail

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StudyDetailLoaded) and message.detail.progress.id == self.detail.progress.id
