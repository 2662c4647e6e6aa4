"""Fixtures of the fault suite (issue 16): each test injects one fault and checks the outcome through
the public API or the real CLI. The store fixtures are the store tests' own: every case runs on SQLite
and on PostgreSQL (``source .ci/postgres.sh``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.store.conftest import postgres_url, sqlite_url, store, store_url  # noqa: F401 - fixtures

TRACEBACK = "Traceback (most recent call last)"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private ``ARCTUI_HOME`` (not created: arctui creates it) and no ``ARCTUI_DB``."""
    path = tmp_path / "home"
    monkeypatch.setenv("ARCTUI_HOME", str(path))
    monkeypatch.delenv("ARCTUI_DB", raising=False)
    return path


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``arctui ARGV`` in this process: (exit code, stdout, stderr). An exception escaping ``main``
    (what a user would see as a traceback) fails the test."""
    from arctui.cli import main

    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def arctui_process(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed ``arctui`` as a user runs it (a separate interpreter)."""
    return subprocess.run(
        [sys.executable, "-m", "arctui", *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
