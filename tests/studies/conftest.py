"""The store fixtures of tests/store (SQLite and, with ARCTUI_TEST_PG_URL, PostgreSQL)."""

from tests.store.conftest import postgres_url, sqlite_url, store, store_url  # noqa: F401
