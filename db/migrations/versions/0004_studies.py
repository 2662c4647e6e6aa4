"""Studies: a table of studies, and each run's study and variant name.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_studies"),
        sa.UniqueConstraint("name", name="uq_studies_name"),
    )
    # Batch mode: on SQLite this rebuilds `runs` (copy and move), keeping its rows and constraints.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("study_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("variant", sa.String(100), nullable=True))
        batch.create_foreign_key("fk_runs_study_id_studies", "studies", ["study_id"], ["id"], ondelete="SET NULL")
        batch.create_index("ix_runs_study_id", ["study_id"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_study_id")
        batch.drop_constraint("fk_runs_study_id_studies", type_="foreignkey")
        batch.drop_column("variant")
        batch.drop_column("study_id")
    op.drop_table("studies")
