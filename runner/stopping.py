"""How a stop reaches the runner's processes, each of them once.

A stop (``arctui stop``, the app's Stop, Ctrl-C in ``arctui launch``'s live view) is one SIGTERM to the
run's training process group. In each training process :class:`StopRequest` turns it into a flag the
loop checks between optimizer steps; the loop then saves a checkpoint and ends with status
``stopped``. A repeated SIGTERM changes nothing (a second ``arctui stop``, Slurm signalling every
process of a job); SIGINT while a stop is pending means "now": the run gives up and ends failed.

With more than one process ``accelerate launch`` runs torchrun, which starts each worker in a session
of its own (out of reach of a signal to the launcher's group), takes SIGTERM over, passes it on and
SIGKILLs the workers 30 s later whatever their checkpoint is doing. So arctui starts the launcher
through this module::

    python -m runner.stopping accelerate.commands.launch --num_processes 2 ... -m runner.fine_tuning ...

It runs the named launcher module as ``__main__``, with torchrun told to handle every signal it
usually does but SIGTERM, and a SIGTERM handler of its own that passes the signal on, once, to each
child the group signal did not reach: children in a process group of their own (torchrun's workers),
and children started after the stop (a stop during start-up is not lost). The launcher then waits
for its workers and exits with their status; a worker that crashes still ends the run through
torchrun's own failure handling. A handler, not ``SIG_IGN``: an ignored signal stays ignored across
``exec``, a handled one is reset, so a worker that has not yet installed its :class:`StopRequest` ends
on SIGTERM instead of losing the stop. SIGKILL (``arctui stop --kill``) goes to the workers' groups
too (``arctui.supervisor.process.signal_group``), with :func:`process_table`.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

# torchrun's default list (its --signals_to_handle) without SIGTERM
LAUNCHER_HANDLED_SIGNALS = "SIGINT,SIGHUP,SIGQUIT"
PASS_ON_POLL_SECONDS = 0.5


class StopRequest:
    """Set by SIGTERM or SIGINT; the loop checks it between optimizer steps.

    A repeated SIGTERM is noted on stderr and ignored; a SIGINT once a stop is pending raises
    KeyboardInterrupt (a person pressing Ctrl-C twice wants it to end now)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is None:
            self.signal_name = name
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt(f"{name} during a graceful stop")
        else:
            # os.write, not print: a handler may run in the middle of another write to stderr
            os.write(2, f"[pid {os.getpid()}] {name} again: already stopping after this step\n".encode())

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


class ProcessEntry(NamedTuple):
    ppid: int
    pgid: int
    state: str  # R, S, D, Z (zombie), ...


def process_table() -> dict[int, ProcessEntry]:
    """Every process ``/proc`` shows (empty where there is no ``/proc``)."""
    table: dict[int, ProcessEntry] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("ascii", "replace")
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3:
            table[int(entry)] = ProcessEntry(int(fields[1]), int(fields[2]), fields[0])
    return table


def descendants(roots: Iterable[int], table: dict[int, ProcessEntry]) -> set[int]:
    """The pids below ``roots`` in ``table`` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for pid, entry in table.items():
        children.setdefault(entry.ppid, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class PassOnStop:
    """The launcher's SIGTERM handler: from the first SIGTERM on, every child the group signal did
    not reach gets one SIGTERM (to its process group when it leads one), until the launcher ends."""

    def __init__(self) -> None:
        self.done: set[int] | None = None  # children that have the signal: None until a stop

    def __call__(self, signum: int, _frame: object) -> None:
        if self.done is not None:
            return
        os.write(2, b"[launcher] SIGTERM: passed on to the training processes; waiting for them to end\n")
        own_group = os.getpgrp()
        table = process_table()
        self.done = {pid for pid, entry in table.items() if entry.ppid == os.getpid() and entry.pgid == own_group}
        self.pass_on(table)
        threading.Thread(target=self._keep_passing_on, name="arctui-pass-on-stop", daemon=True).start()

    def pass_on(self, table: dict[int, ProcessEntry]) -> None:
        assert self.done is not None
        me = os.getpid()
        for pid, entry in table.items():
            if entry.ppid != me or pid in self.done:
                continue
            self.done.add(pid)
            try:
                if entry.pgid == pid:
                    os.killpg(pid, signal.SIGTERM)
                else:
                    os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _keep_passing_on(self) -> None:
        while True:
            time.sleep(PASS_ON_POLL_SECONDS)
            self.pass_on(process_table())


def run_launcher(argv: Sequence[str]) -> None:
    """Run the launcher module ``argv[0]`` as ``__main__`` with the arguments ``argv[1:]``, SIGTERM
    handled by :class:`PassOnStop` and kept from torchrun."""
    if not argv:
        raise SystemExit("usage: python -m runner.stopping LAUNCHER_MODULE [ARGS...]")
    module, *args = argv
    # torchrun reads PET_SIGNALS_TO_HANDLE (its --signals_to_handle) and hands the list on in
    # TORCHELASTIC_SIGNALS_TO_HANDLE, which older releases read directly
    os.environ["PET_SIGNALS_TO_HANDLE"] = os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = LAUNCHER_HANDLED_SIGNALS
    signal.signal(signal.SIGTERM, PassOnStop())
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    run_launcher(sys.argv[1:])
