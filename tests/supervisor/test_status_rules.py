"""How the supervisor turns what it saw into a final status and an error text (pure parts)."""

from __future__ import annotations

import subprocess

import pytest

from arctui.supervisor.outcome import StreamState, error_text, final_status
from arctui.supervisor.process import describe_exit, group_alive, normalize_returncode
from arctui.supervisor.runfolder import RunFolder, tail_lines
from tests.supervisor.helpers import wait_until

ACCELERATE_TAIL = """[fine_tuning] step 1/4
fine_tuning: error: no training prompt fits --max_seq_len 768 (shortest is 831 tokens); raise --max_seq_len
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/accelerate/commands/launch.py", line 999, in simple_launcher
    raise subprocess.CalledProcessError(returncode=process.returncode, cmd=cmd)
subprocess.CalledProcessError: Command '[...]' returned non-zero exit status 2.
"""


def state(*events) -> StreamState:
    s = StreamState()
    for e in events:
        s.observe(e)
    return s


@pytest.mark.parametrize(
    ("events", "code", "stop", "expected"),
    [
        ([{"event": "start"}, {"event": "end", "status": "completed"}], 0, None, "completed"),
        ([{"event": "start"}, {"event": "end", "status": "stopped"}], 143, "term", "stopped"),
        ([{"event": "start"}, {"event": "end", "status": "failed"}], 1, None, "failed"),
        # a resumed session: the first session's end no longer counts
        ([{"event": "start"}, {"event": "end", "status": "stopped"}, {"event": "start"}], 1, None, "failed"),
        ([{"event": "start"}], 0, None, "completed"),
        ([{"event": "start"}], 137, "kill", "stopped"),
        ([{"event": "start"}], 137, None, "failed"),
        ([{"event": "start"}], None, None, "crashed"),
    ],
)
def test_final_status(events, code, stop, expected):
    assert final_status(state(*events), code, stop) == expected


def test_error_text_prefers_the_error_event(tmp_path):
    folder = RunFolder(tmp_path)
    s = state({"event": "error", "type": "ValueError", "message": "bad grid", "traceback": ["a", "b"]})
    assert error_text(s, folder, 1) == "ValueError: bad grid\na\nb"


def test_error_text_digs_the_runners_line_out_of_accelerates_traceback(tmp_path):
    folder = RunFolder(tmp_path)
    folder.log_file.write_text(ACCELERATE_TAIL)
    text = error_text(StreamState(), folder, 1)
    assert text.splitlines()[0].startswith("fine_tuning: error: no training prompt fits")
    assert "CalledProcessError" not in text


def test_error_text_without_any_error_line_names_the_exit(tmp_path):
    folder = RunFolder(tmp_path)
    folder.log_file.write_text("step 1\r step 2\r step 3\n\n")
    assert error_text(StreamState(), folder, 137).splitlines() == [
        "killed by SIGKILL (out of memory? `dmesg` tells) (exit 137)", " step 3"]
    assert tail_lines(tmp_path / "missing.log") == []


@pytest.mark.parametrize(
    "launcher_line",
    [
        "subprocess.CalledProcessError: Command '['/venv/bin/python', '-m', 'runner.fine_tuning']' "
        "died with <Signals.SIGKILL: 9>.",
        "  exitcode  : -9 (pid: 4242)",
    ],
)
def test_a_worker_killed_by_sigkill_is_named_not_the_launchers_exit_1(tmp_path, launcher_line):
    # What the OOM killer leaves: the worker dies by SIGKILL and accelerate's launcher exits 1.
    folder = RunFolder(tmp_path)
    folder.log_file.write_text(
        "step 3\nTraceback (most recent call last):\n"
        '  File "/venv/lib/python3.11/site-packages/accelerate/commands/launch.py", line 1, in launch\n'
        f"{launcher_line}\n")
    first = error_text(StreamState(), folder, 1).splitlines()[0]
    assert first == "the training process was killed by SIGKILL (out of memory? `dmesg` tells)"


def test_exit_codes_and_groups():
    assert normalize_returncode(-15) == 143 and normalize_returncode(0) == 0 and normalize_returncode(None) is None
    assert describe_exit(143) == "killed by SIGTERM (exit 143)" and describe_exit(2) == "exit code 2"
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert group_alive(proc.pid)
    finally:
        proc.kill()
    # Not reaped yet: once the kernel has delivered the SIGKILL (on a loaded machine that takes a
    # while) the zombie left behind is not a live member.
    wait_until(lambda: not group_alive(proc.pid), what="the killed group to count as gone")
    proc.wait()
    assert not group_alive(proc.pid) and not group_alive(None)


def test_run_folder_lock_is_exclusive(tmp_path):
    folder = RunFolder(tmp_path / "run")
    assert not folder.supervisor_alive()
    fd = folder.try_lock()
    assert fd is not None and folder.supervisor_alive() and folder.try_lock() is None
    import os

    os.close(fd)
    assert not folder.supervisor_alive()
