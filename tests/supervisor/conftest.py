"""Fixtures shared by the supervisor tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def env(tmp_path, monkeypatch):
    """(store, url): a fresh SQLite store, with ARCTUI_HOME and ARCTUI_DB pointing at this test's own."""
    from db.store import RunStore

    monkeypatch.setenv("ARCTUI_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'r.db'}"
    monkeypatch.setenv("ARCTUI_DB", url)
    with RunStore.open(url) as store:
        yield store, url
