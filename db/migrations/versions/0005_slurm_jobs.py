"""Executors: which executor runs a run, and for Slurm its jobs, current Slurm state and node list.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: on SQLite this rebuilds `runs` (copy and move), keeping its rows and constraints.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("executor", sa.String(16), nullable=False, server_default="local"))
        batch.add_column(sa.Column("job_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("job_ids", sa.Text(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("job_state", sa.Text(), nullable=True))
        batch.add_column(sa.Column("node_list", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("node_list")
        batch.drop_column("job_state")
        batch.drop_column("job_ids")
        batch.drop_column("job_id")
        batch.drop_column("executor")
