"""Initial schema: runs with their summary columns, metric points and statistics, GPU samples,
evaluation results.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("model", sa.Text()),
        sa.Column("encoder", sa.Text()),
        sa.Column("msl", sa.Integer()),
        sa.Column("batch_size", sa.Integer()),
        sa.Column("per_device_batch", sa.Integer()),
        sa.Column("learning_rate", sa.Float()),
        sa.Column("lora_r", sa.Integer()),
        sa.Column("gpus", sa.Integer()),
        sa.Column("gpu_ids", sa.Text(), nullable=False),
        sa.Column("datasets", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("host", sa.String(255)),
        sa.Column("supervisor_pid", sa.Integer()),
        sa.Column("pgid", sa.Integer()),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("output_dir", sa.Text()),
        sa.Column("log_path", sa.Text()),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float()),
        sa.Column("ended_at", sa.Float()),
        sa.Column("last_step", sa.Integer()),
        sa.Column("max_steps", sa.Integer()),
        sa.Column("loss", sa.Float()),
        sa.Column("min_loss", sa.Float()),
        sa.Column("final_loss", sa.Float()),
        sa.Column("eval_loss", sa.Float()),
        sa.Column("accuracy", sa.Float()),
        sa.Column("seconds_per_step", sa.Float()),
        sa.Column("tokens_per_second", sa.Float()),
        sa.Column("peak_vram_gb", sa.Float()),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float()),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.UniqueConstraint("name", name="uq_runs_name"),
    )
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_created_at", "runs", ["created_at"])

    op.create_table(
        "metric_points",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("wall_time", sa.Float()),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_metric_points_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "key", "step", name="pk_metric_points"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "metric_stats",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("latest", sa.Float(), nullable=False),
        sa.Column("latest_step", sa.Integer(), nullable=False),
        sa.Column("min", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_metric_stats_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_metric_stats"),
    )
    op.create_table(
        "gpu_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer()),
        sa.Column("gpu_index", sa.Integer(), nullable=False),
        sa.Column("gpu_name", sa.String(255), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("memory_used_mb", sa.Float()),
        sa.Column("memory_total_mb", sa.Float()),
        sa.Column("utilization_pct", sa.Float()),
        sa.Column("power_w", sa.Float()),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_gpu_samples_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_gpu_samples"),
    )
    op.create_index("ix_gpu_samples_run_time", "gpu_samples", ["run_id", "time"])
    op.create_index("ix_gpu_samples_gpu_time", "gpu_samples", ["gpu_index", "time"])
    op.create_table(
        "eval_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("predictions_path", sa.Text()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_eval_results_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_eval_results"),
        sa.UniqueConstraint(
            "run_id", "step", "dataset", "metric", name="uq_eval_results_run_id_step_dataset_metric"
        ),
    )
    op.create_index("ix_eval_results_run_id", "eval_results", ["run_id"])


def downgrade() -> None:
    op.drop_table("eval_results")
    op.drop_table("gpu_samples")
    op.drop_table("metric_stats")
    op.drop_table("metric_points")
    op.drop_table("runs")
