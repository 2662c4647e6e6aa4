"""Exactly-once event ingestion: the runs' event cursor and the table of kept runner events.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: on SQLite this rebuilds `runs` (copy and move), keeping its rows and constraints.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("events_cursor", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "run_events",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("step", sa.Integer()),
        sa.Column("data_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_events_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_run_events"),
    )
    op.create_index("ix_run_events_run_kind", "run_events", ["run_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_run_events_run_kind", table_name="run_events")
    op.drop_table("run_events")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("events_cursor")
