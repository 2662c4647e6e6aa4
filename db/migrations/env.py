"""Alembic environment of the run store.

The store runs migrations programmatically (``db.store.upgrade``) and hands its own connection in
``config.attributes["connection"]``, so no alembic.ini is needed and this works from an installed
package. Running ``alembic`` by hand also works: ``alembic -x url=sqlite:///path.db upgrade head`` with
``script_location`` pointing here.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the table.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = create_engine(url)
    with engine.begin() as conn:
        run_migrations(conn)
    engine.dispose()
