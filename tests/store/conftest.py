"""Store fixtures: every test gets a fresh database on each backend.

``store_url`` is parametrised over SQLite (a tmp_path file) and PostgreSQL (a fresh schema per test on
the server named by ``ARCTUI_TEST_PG_URL``; ``source .ci/postgres.sh`` starts one and exports it).
Without that variable the PostgreSQL cases are skipped locally and fail when ``CI=true``.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest

PG_ENV = "ARCTUI_TEST_PG_URL"


def postgres_base_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        message = f"{PG_ENV} is not set: `source .ci/postgres.sh` starts a server and exports it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (required in CI)")
        pytest.skip(message)
    return url


def _psycopg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class PostgresSchema:
    """A throwaway schema; the returned URL points the store's search_path at it."""

    def __init__(self, base_url: str) -> None:
        import psycopg

        self.base_url = base_url
        self.name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_psycopg_dsn(base_url), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.name}"')
        separator = "&" if "?" in base_url else "?"
        self.url = f"{base_url}{separator}options={quote(f'-csearch_path={self.name}')}"

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(_psycopg_dsn(self.base_url), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'arctui.db'}"


@pytest.fixture
def postgres_url():
    schema = PostgresSchema(postgres_base_url())
    try:
        yield schema.url
    finally:
        schema.drop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def store(store_url):
    from db.store import RunStore

    opened = RunStore.open(store_url)
    try:
        yield opened
    finally:
        opened.close()
