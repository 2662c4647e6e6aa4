"""Engines and sessions of the run store: URL checks, SQLite pragmas, write locks, and the translation of
driver errors into one-line :class:`StoreError` messages. Private to :mod:`db.store`."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from db.errors import StoreError, UnstorableValueError
from runner.paths import create_private_file, make_private_dir

SQLITE_BUSY_TIMEOUT_S = 30
POSTGRES_CONNECT_TIMEOUT_S = 5
SQLITE_HEADER = b"SQLite format 3\x00"
URL_EXAMPLES = "e.g. sqlite:////path/to/arctui.db or postgresql+psycopg://user@host:5432/dbname"


def parse_url(url: str) -> URL:
    """Parse and normalise a database URL; plain ``postgresql://`` means the psycopg 3 driver."""
    if not isinstance(url, str) or not url.strip():
        raise StoreError(f"empty database URL: pass one with --db ({URL_EXAMPLES})")
    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        raise StoreError(f"bad database URL '{url}': expected {URL_EXAMPLES}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"unsupported database '{parsed.get_backend_name()}' in URL {safe_url(parsed)}: "
            f"use SQLite or PostgreSQL ({URL_EXAMPLES})"
        )
    return parsed


def safe_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    """The file behind an SQLite URL (None for an in-memory database)."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).expanduser()


def check_sqlite_path(path: Path, *, create_parent: bool) -> None:
    """Refuse, before anything is written, a path that cannot hold an SQLite database; create a new
    one as an empty file only its owner can read (0600)."""
    parent = path.parent
    if create_parent and not parent.exists():
        try:
            make_private_dir(parent)  # $ARCTUI_HOME: 0700
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder {parent} for the database ({exc.strerror}): "
                "set ARCTUI_HOME or --db to a writable place"
            ) from None
    if parent.exists() and not parent.is_dir():
        raise StoreError(f"{parent} is a file, not a folder (database {path}): choose another --db path")
    if not parent.is_dir():
        raise StoreError(
            f"folder {parent} does not exist (database {path}): create it or choose another --db path"
        )
    if path.exists():
        if path.is_dir():
            raise StoreError(f"{path} is a folder, not a database file: point --db at a file path")
        try:
            with path.open("rb") as handle:
                header = handle.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise StoreError(f"cannot read database {path} ({exc.strerror}): check its permissions") from None
        if header and header != SQLITE_HEADER:
            raise StoreError(
                f"{path} is not an SQLite database: point --db at an arctui database or a new file path"
            )
        if not os.access(path, os.W_OK):
            raise StoreError(f"database {path} is not writable: fix its permissions or choose another --db")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(
            f"folder {parent} is not writable, so database {path} cannot be created: choose another --db"
        )
    else:
        # Created here rather than by SQLite, which would follow the umask (0644: every user of the
        # machine could read every run); SQLite gives its -wal and -shm files the database's mode.
        try:
            create_private_file(path)
        except OSError as exc:
            raise StoreError(
                f"folder {parent} is not writable, so database {path} cannot be created ({exc.strerror}): "
                "choose another --db"
            ) from None


def make_engine(url: URL) -> Engine:
    backend = url.get_backend_name()
    if backend == "sqlite":
        if sqlite_path(url) is None:
            # In-memory: one database per connection, so every thread must share the one connection.
            engine = create_engine(
                url, connect_args={"check_same_thread": False}, poolclass=StaticPool
            )
            _install_sqlite_hooks(engine)
            return engine
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        _install_sqlite_hooks(engine)
        return engine
    try:
        return create_engine(
            url, connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}, pool_pre_ping=True
        )
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise StoreError(
            f"no driver for {url.drivername} ({exc}): install psycopg with `pip install 'psycopg[binary]'`"
        ) from None


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let us emit BEGIN ourselves (pysqlite's implicit transactions cannot do BEGIN IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
            cursor.execute("PRAGMA foreign_keys = ON")
            # WAL is switched on by ensure_wal() once the file is known to be ours (it rewrites the header).
            # WAL + NORMAL: durable against application crashes, never corrupts; skips an fsync per commit.
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # Writers take the write lock up front: a deferred transaction that reads and then writes gets
        # SQLITE_BUSY without waiting when another writer committed in between.
        if not connection.get_execution_options().get("arctui_write", False):
            connection.exec_driver_sql("BEGIN")
            return
        begin_immediate(connection.connection.driver_connection)


def begin_immediate(driver: sqlite3.Connection, timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
    """BEGIN IMMEDIATE, waiting up to ``timeout_s`` for another writer to commit.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms between tries, so a
    writer that finds the lock taken often sleeps long after it was released; with two writers that
    halves throughput. Polling every 0.2-2 ms hands the lock over within a millisecond or two."""
    driver.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + timeout_s
        delay = 0.0002
        while True:
            try:
                driver.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 1.5, 0.002)
    finally:
        driver.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")


def ensure_wal(engine: Engine) -> None:
    """Put an SQLite database in WAL mode (persistent in the file; readers never block the writer)."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        mode = driver.execute("PRAGMA journal_mode").fetchone()[0].lower()
        if mode not in ("wal", "memory"):
            driver.execute("PRAGMA journal_mode = WAL")


def describe_driver_error(exc: BaseException, url: URL) -> str:
    """One line for a driver error: what went wrong and what to do."""
    orig = getattr(exc, "orig", None) or exc
    text = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    where = safe_url(url)
    lowered = text.lower()
    if "file is not a database" in lowered or "file is encrypted" in lowered:
        return f"{where} is not an SQLite database: point --db at an arctui database or a new file path"
    if "unable to open database" in lowered:
        return f"cannot open database {where}: check that its folder exists and is writable"
    if "readonly database" in lowered or "read-only" in lowered:
        return f"database {where} is read-only: fix its permissions or choose another --db"
    if "database is locked" in lowered:
        return (
            f"database {where} stayed locked by another process for {SQLITE_BUSY_TIMEOUT_S} s: "
            "retry, or look for a stuck arctui process"
        )
    if type(orig).__name__ == "NumericValueOutOfRange":  # PostgreSQL: integer or numeric out of range
        return f"a value is beyond what {where} holds (NumericValueOutOfRange: {text})"
    if "disk is full" in lowered or "no space" in lowered:
        return f"no space left for database {where}: free some disk space"
    if url.get_backend_name() == "postgresql" and isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return f"lost the connection to {where} ({text}): check that the server is running"
    if url.get_backend_name() == "postgresql" and (
        "connection" in lowered or "could not" in lowered or "password" in lowered or "timeout" in lowered
    ):
        if "does not exist" in lowered and "database" in lowered:
            return f"cannot connect to {where} ({text}): create the database or fix --db"
        return f"cannot connect to {where} ({text}): start the server or fix the host/port/user in --db"
    return f"database error on {where} ({type(orig).__name__}: {text}): check --db and retry"


@contextmanager
def translate_errors(url: URL) -> Iterator[None]:
    """Turn driver and SQLAlchemy errors into StoreError (one line, no traceback)."""
    try:
        yield
    except StoreError:
        raise
    except OverflowError as exc:  # sqlite3 binding an int beyond 64 bits; the store checks values first
        raise UnstorableValueError(f"a value is beyond what {safe_url(url)} holds ({exc})") from exc
    except (SQLAlchemyError, sqlite3.Error) as exc:
        message = describe_driver_error(exc, url)
        if type(getattr(exc, "orig", None)).__name__ == "NumericValueOutOfRange":
            raise UnstorableValueError(message) from exc
        raise StoreError(message) from exc
    except OSError as exc:  # psycopg may raise plain socket errors while connecting
        raise StoreError(f"cannot reach {safe_url(url)} ({exc}): check --db") from exc


@contextmanager
def transaction(engine: Engine, url: URL, *, write: bool = False) -> Iterator[Connection]:
    """One transaction on a pooled connection: commits on success, rolls back on any error, and maps
    driver errors to StoreError. ``write=True`` takes SQLite's write lock at BEGIN (see ``_on_begin``).
    A Core connection rather than an ORM Session: the store writes in batches and reads into plain
    records, so the unit of work would only add overhead."""
    with translate_errors(url):
        with engine.connect() as connection:
            if write:
                connection.execution_options(arctui_write=True)
            elif connection.dialect.name == "postgresql":
                # One snapshot for every statement of a read (SQLite's read transactions already are).
                connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                yield connection
