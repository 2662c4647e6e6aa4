"""Process-group helpers for the training process (Linux-first, POSIX fallback)."""

from __future__ import annotations

import os
import signal
import socket
import sys

from runner.stopping import descendants, process_table


def group_alive(pgid: int | None) -> bool:
    """True while the process group has a member that is not a zombie."""
    if not pgid:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc"):
        return True
    # Orphaned training processes are reaped by init; in containers init may not reap, and a zombie
    # still answers kill(0). Look for a live member instead.
    return any(p.pgid == pgid and p.state not in ("Z", "X") for p in process_table().values())


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False when it is already gone.

    SIGKILL also goes to the process groups that members' descendants lead (torchrun starts each
    worker in a session of its own): nothing of a killed run trains on. SIGTERM does not: the launcher
    passes it on to them once (:mod:`runner.stopping`)."""
    if sig == signal.SIGKILL:
        table = process_table()
        below = descendants((pid for pid, p in table.items() if p.pgid == pgid), table)
        for group in {table[pid].pgid for pid in below} - {pgid}:
            try:
                os.killpg(group, sig)
            except (ProcessLookupError, PermissionError):
                pass
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def normalize_returncode(code: int | None) -> int | None:
    """Popen's ``-N`` (killed by signal N) as the shell's ``128+N``."""
    if code is None:
        return None
    return 128 - code if code < 0 else code


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code > 128 and code - 128 in signal.Signals._value2member_map_:
        return f"{killed_by(signal.Signals(code - 128).name)} (exit {code})"
    return f"exit code {code}"


def killed_by(signal_name: str) -> str:
    """"killed by SIGNAL", with the likely cause for SIGKILL: the kernel's OOM killer sends it."""
    if signal_name == "SIGKILL":
        return "killed by SIGKILL (out of memory? `dmesg` tells)"
    return f"killed by {signal_name}"


def accelerate_command(num_processes: int, *, cpu: bool, threads: str | None = None, python: str | None = None,
                       machines: int = 1, machine_rank: str = "0", main_ip: str | None = None,
                       port: str | None = None) -> list[str]:
    """``python -m runner.stopping accelerate.commands.launch ...`` up to the training module, for this
    machine or one of ``machines`` Accelerate machines (Accelerate's multi-node flags; values may be
    ``$VARS`` of a batch script). ``port``: the rendezvous port, needed with more than one process.
    ``runner.stopping`` runs the launcher so that a SIGTERM to the group reaches each worker once and
    the launcher waits for their checkpoints (torchrun alone would SIGKILL them 30 s later)."""
    launch = [python or sys.executable, "-m", "runner.stopping", "accelerate.commands.launch",
              "--num_processes", str(num_processes), "--num_machines", str(machines),
              "--dynamo_backend", "no", "--mixed_precision", "no"]  # the runner picks bf16 itself
    if cpu:
        launch += ["--cpu", "--num_cpu_threads_per_process", threads or str(os.cpu_count() or 1)]
    if machines > 1:
        launch += ["--machine_rank", machine_rank, "--main_process_ip", str(main_ip)]
    if num_processes > 1:
        # on CPU Accelerate's simple launcher starts this machine's one process (gloo); on GPUs torchrun
        launch += [*([] if cpu else ["--multi_gpu"]), "--main_process_port", str(port or free_port())]
    return launch


def free_port() -> int:
    """A free TCP port on loopback, for torch.distributed's rendezvous of one run."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
