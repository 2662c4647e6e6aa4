"""The run store: everything arctui knows about runs, in SQLite (default) or PostgreSQL.

``db.store.RunStore`` is the public API (``docs/store.md``); ``db.records`` holds the frozen records it
returns, ``db.errors`` its errors, ``db.query`` the ``--where`` filter language. ``db.models`` (tables),
``db.engine`` (connections) and ``db/migrations`` (Alembic) are internal. Never imports textual, torch
or transformers.
"""
