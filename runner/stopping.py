"""How the runner is asked to stop: SIGTERM or SIGINT sets a flag the training loop checks between
optimizer steps (it then saves a checkpoint and ends with status ``stopped``)."""

from __future__ import annotations

import signal


class StopRequest:
    """Set by SIGTERM/SIGINT; the loop checks it between optimizer steps."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self, signum: int, _frame: object) -> None:
        if self.signal_name is not None:
            # A second signal means "now": give up on the graceful stop (the run ends as failed).
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name} during a graceful stop")
        self.signal_name = signal.Signals(signum).name

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)

    @property
    def requested(self) -> bool:
        return self.signal_name is not None
