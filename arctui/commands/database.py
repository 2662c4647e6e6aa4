"""``arctui db``: the schema of the run store.

    arctui db current                 # the database's schema revision and whether it is up to date
    arctui db upgrade                 # migrate it to this arctui's revision (creates a new database)
    arctui --db postgresql+psycopg://me@host/arctui db upgrade

Only imports the store (SQLAlchemy, and Alembic when migrating); never torch.
"""

from __future__ import annotations


def register(subparsers) -> None:
    """Add ``arctui db current|upgrade`` to the arctui parser."""
    parser = subparsers.add_parser(
        "db",
        help="database schema: current revision, upgrade",
        description="Show or upgrade the schema of the run database (--db URL, $ARCTUI_DB or "
        "$ARCTUI_HOME/arctui.db).",
    )
    actions = parser.add_subparsers(
        dest="db_action", metavar="ACTION", required=True, parser_class=type(parser)
    )
    current = actions.add_parser(
        "current", help="print the schema revision and whether it is up to date",
        description="Print the database's schema revision; exit 1 when it needs `arctui db upgrade`.",
    )  # fmt: skip
    current.set_defaults(func=current_command)
    upgrade = actions.add_parser(
        "upgrade", help="migrate the database to this arctui's schema (creates it if new)",
        description="Run the schema migrations up to this arctui's revision. Safe to repeat.",
    )  # fmt: skip
    upgrade.set_defaults(func=upgrade_command)


def current_command(args) -> int:
    from db.store import HEAD_REVISION, database_url, schema_revision

    revision = schema_revision(args.db)
    where = database_url(args.db)
    if revision is None:
        print(f"{where}: no arctui schema yet (created on first use, or now with `arctui db upgrade`)")
        return 0
    if revision == HEAD_REVISION:
        print(f"{where}: revision {revision} (up to date)")
        return 0
    print(f"{where}: revision {revision}, this arctui needs {HEAD_REVISION}: run `arctui db upgrade`")
    return 1


def upgrade_command(args) -> int:
    from db.store import database_url, upgrade

    before, after = upgrade(args.db)
    where = database_url(args.db)
    if before == after:
        print(f"{where}: already at revision {after}")
    elif before is None:
        print(f"{where}: created at revision {after}")
    else:
        print(f"{where}: upgraded from revision {before} to {after}")
    return 0
