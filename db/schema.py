"""Schema of the run store: which database a URL names, which revision it is at, and the Alembic
migrations that bring it to :data:`db.models.HEAD_REVISION` (scripts in ``db/migrations/``).

    revision = schema_revision(url)            # None: no arctui schema yet (creates nothing)
    before, after = upgrade(url)               # `arctui db upgrade`
    engine, parsed = open_engine(url)          # what RunStore.open runs on (refuses an old schema)

``db.store`` re-exports ``schema_revision``, ``upgrade``, ``database_url``, ``HEAD_REVISION`` and
``MIGRATIONS_DIR`` under their old names.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, inspect
from sqlalchemy.engine import URL, Engine

from db.engine import (
    check_sqlite_path,
    ensure_wal,
    make_engine,
    parse_url,
    safe_url,
    sqlite_path,
    translate_errors,
)
from db.errors import StoreError
from db.models import HEAD_REVISION, KNOWN_REVISIONS

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def resolve_url(url: str | None) -> tuple[URL, bool]:
    """(parsed URL, whether it is the default one)."""
    from runner.paths import default_db_url

    is_default = url is None
    return parse_url(default_db_url() if url is None else url), is_default


def database_url(url: str | None = None) -> str:
    """The URL the store opens for ``url`` (None: the default), password hidden: for messages."""
    return safe_url(resolve_url(url)[0])


def engine_for(url: str | None) -> tuple[Engine, URL]:
    parsed, is_default = resolve_url(url)
    path = sqlite_path(parsed) if parsed.get_backend_name() == "sqlite" else None
    if path is not None:
        check_sqlite_path(path, create_parent=is_default)
    return make_engine(parsed), parsed


def read_revision(connection: Connection) -> tuple[str | None, list[str]]:
    """(alembic revision or None, table names) of the database behind ``connection``."""
    tables = inspect(connection).get_table_names()
    if "alembic_version" not in tables:
        return None, tables
    rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    return (rows[0][0] if rows else None), tables


def schema_problem(revision: str | None, tables: list[str], url: URL) -> str | None:
    """Why this database cannot be used or migrated as it is (None when it can be)."""
    if revision is None:
        others = [t for t in tables if t != "alembic_version"]
        if others:
            shown = ", ".join(sorted(others)[:5])
            return (
                f"{safe_url(url)} holds other tables ({shown}) but no arctui schema: "
                "choose another --db (an empty database or a new file)"
            )
        return None
    if revision not in KNOWN_REVISIONS:
        return (
            f"database {safe_url(url)} is at revision {revision}, newer than this arctui knows "
            f"({HEAD_REVISION}): upgrade arctui"
        )
    return None


def _alembic_config(connection: Connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, url: URL, target: str = "heads") -> tuple[str | None, str]:
    """Run the Alembic migrations up to ``target`` under a write lock; (from, to) revisions."""
    from alembic import command

    with translate_errors(url), engine.connect() as connection:
        connection.execution_options(arctui_write=True)
        is_sqlite = engine.dialect.name == "sqlite"
        if is_sqlite:
            # Batch migrations rebuild tables (copy, drop, rename); with foreign keys on, dropping `runs`
            # would cascade-delete every metric. The pragma only works outside a transaction.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
        try:
            with connection.begin():
                if engine.dialect.name == "postgresql":
                    # Two processes opening a new database at once: one migrates, the other waits.
                    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7401553)")
                before, tables = read_revision(connection)
                problem = schema_problem(before, tables, url)
                if problem:
                    raise StoreError(problem)
                if before != (HEAD_REVISION if target == "heads" else target):
                    command.upgrade(_alembic_config(connection), target)
                if is_sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise StoreError(
                            f"migrating {safe_url(url)} left {len(broken)} broken references; "
                            "nothing was changed: report this bug"
                        )
                after, _ = read_revision(connection)
        finally:
            if is_sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys = ON")
    return before, after or HEAD_REVISION


def schema_revision(url: str | None = None) -> str | None:
    """The schema revision of the database at ``url`` without changing it (None: no arctui schema yet).
    A SQLite file that does not exist is not created."""
    parsed, is_default = resolve_url(url)
    path = sqlite_path(parsed) if parsed.get_backend_name() == "sqlite" else None
    if path is not None and not path.exists():
        return None
    engine, parsed = engine_for(url)
    try:
        with translate_errors(parsed), engine.connect() as connection:
            revision, tables = read_revision(connection)
        problem = schema_problem(revision, tables, parsed)
        if problem:
            raise StoreError(problem)
        return revision
    finally:
        engine.dispose()


def upgrade(url: str | None = None, revision: str = "heads") -> tuple[str | None, str]:
    """Migrate the database at ``url`` (created if new) to ``revision``; returns (from, to)."""
    engine, parsed = engine_for(url)
    try:
        moved = migrate(engine, parsed, revision)
        with translate_errors(parsed):
            ensure_wal(engine)
        return moved
    finally:
        engine.dispose()


def open_engine(url: str | None, *, upgrade: bool = False) -> tuple[Engine, URL]:
    """An engine on the database at ``url`` (None: the default), created at head when new. A schema at
    an older revision is refused with the command that upgrades it, unless ``upgrade``."""
    engine, parsed = engine_for(url)
    try:
        with translate_errors(parsed), engine.connect() as connection:
            revision, tables = read_revision(connection)
            connection.rollback()
        problem = schema_problem(revision, tables, parsed)
        if problem:
            raise StoreError(problem)
        if revision != HEAD_REVISION:
            if revision is not None and not upgrade:
                raise StoreError(
                    f"database {safe_url(parsed)} is at revision {revision}, this arctui needs "
                    f"{HEAD_REVISION}: run `arctui db upgrade`"
                )
            migrate(engine, parsed)
        with translate_errors(parsed):
            ensure_wal(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine, parsed
