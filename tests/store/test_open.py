"""Opening the store: defaults, pragmas, and one clear line (with nothing written) for every way the
database can be unusable."""

from __future__ import annotations

import os
import sqlite3

import pytest
from sqlalchemy import create_engine, text

from arctui.cli import main
from db.errors import StoreError
from db.store import HEAD_REVISION, RunStore, upgrade


def one_line_error(url, **kwargs) -> str:
    with pytest.raises(StoreError) as info:
        RunStore.open(url, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_default_url_is_arctui_home(tmp_path, monkeypatch):
    home = tmp_path / "fresh" / "home"  # missing: created for the default location only
    monkeypatch.setenv("ARCTUI_HOME", str(home))
    monkeypatch.delenv("ARCTUI_DB", raising=False)
    with RunStore.open() as store:
        store.create_run({}, name="a")
        assert store.url == f"sqlite:///{home / 'arctui.db'}" and store.dialect == "sqlite"
    assert (home / "arctui.db").is_file()
    other = tmp_path / "other.db"
    monkeypatch.setenv("ARCTUI_DB", f"sqlite:///{other}")
    with RunStore.open() as store:
        assert store.list_runs() == []
    assert other.is_file()


def test_sqlite_runs_in_wal_with_busy_timeout_and_foreign_keys(sqlite_url):
    with RunStore.open(sqlite_url) as store:
        store.create_run({})
        with store._engine.connect() as connection:
            pragmas = {p: connection.exec_driver_sql(f"PRAGMA {p}").scalar() for p in
                       ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")}  # fmt: skip
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 30000, "foreign_keys": 1, "synchronous": 1}


def test_missing_folder_is_refused_and_not_created(tmp_path):
    target = tmp_path / "nope" / "arctui.db"
    assert "folder" in one_line_error(f"sqlite:///{target}") and "does not exist" in one_line_error(f"sqlite:///{target}")
    assert not target.parent.exists()


def test_parent_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    assert "not a folder" in one_line_error(f"sqlite:///{tmp_path / 'file' / 'arctui.db'}")


def test_folder_instead_of_a_file_is_refused(tmp_path):
    assert "is a folder" in one_line_error(f"sqlite:///{tmp_path}")


@pytest.mark.parametrize("content", [b"hello, not a database\n" * 50, b"PK\x03\x04zipfile", b"x"])
def test_a_file_that_is_not_a_database_is_left_untouched(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    assert "is not an SQLite database" in one_line_error(f"sqlite:///{path}")
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no -wal / -shm either


def test_an_empty_file_becomes_a_database(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    with RunStore.open(f"sqlite:///{path}") as store:
        assert store.list_runs() == []


def test_a_database_of_something_else_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    before = path.read_bytes()
    assert "holds other tables (invoices) but no arctui schema" in one_line_error(f"sqlite:///{path}")
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "url,message",
    [
        ("not a url", "bad database URL"),
        ("", "empty database URL"),
        ("mysql://user@localhost/arctui", "unsupported database 'mysql'"),
        ("oracle+cx://x@y/z", "unsupported database"),
    ],
)
def test_bad_urls(url, message):
    assert message in one_line_error(url)


def test_unreachable_server_hides_the_password():
    message = one_line_error("postgresql://arctui:s3cret@127.0.0.1:1/arctui")
    assert "cannot connect to postgresql+psycopg://arctui:***@127.0.0.1:1/arctui" in message
    assert "s3cret" not in message


@pytest.mark.postgres
def test_missing_postgres_database(postgres_url):
    from tests.store.conftest import postgres_base_url

    base = postgres_base_url().rsplit("/", 1)[0]
    assert "does not exist" in one_line_error(f"{base}/no_such_database_here")


def test_out_of_date_schema_is_refused_until_upgraded(store_url):
    assert upgrade(store_url, "0001") == (None, "0001")
    message = one_line_error(store_url)
    assert f"is at revision 0001, this arctui needs {HEAD_REVISION}: run `arctui db upgrade`" in message
    with RunStore.open(store_url, upgrade=True) as store:
        store.create_run({}, name="after-upgrade")
    with RunStore.open(store_url) as store:
        assert store.get_run("after-upgrade").events_cursor == 0


def test_newer_schema_is_refused(store_url):
    RunStore.open(store_url).close()
    engine = create_engine(store_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    assert "revision 9999, newer than this arctui knows" in one_line_error(store_url)
    assert "newer" in one_line_error(store_url, upgrade=True)


def test_cli_prints_store_errors_as_one_line(tmp_path, capsys):
    (tmp_path / "junk.db").write_text("junk")
    assert main(["--db", f"sqlite:///{tmp_path / 'junk.db'}", "db", "upgrade"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("arctui: error: ") and "not an SQLite database" in err[0]


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux sysfs (unwritable even for root)")
def test_unwritable_folder_is_one_line():
    message = one_line_error("sqlite:////sys/kernel/arctui.db")
    assert "cannot open database" in message or "not writable" in message
    assert not os.path.exists("/sys/kernel/arctui.db")


def test_in_memory_database_is_shared_by_threads():
    import threading

    with RunStore.open("sqlite://") as store:
        store.create_run({}, name="mem")
        seen = []
        thread = threading.Thread(target=lambda: seen.append(store.get_run("mem").name))
        thread.start()
        thread.join()
        assert seen == ["mem"]
