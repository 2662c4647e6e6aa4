"""Honest speed summaries: per-key value sums, the seconds-per-step index, and the window figures.

Adds ``metric_stats.total`` (sum of the key's values), ``metric_stats.middle_value``/``middle_step``
(the seconds-per-step median's lower middle point; left NULL here, the store finds it on the next
batch) and the partial index
``ix_metric_points_speed`` (run_id, value, step) over the ``seconds_per_step`` points. Existing runs get
their ``window_seconds``/``window_tokens`` points back-filled from their ``seconds_per_step`` and
``tokens_per_second`` points (each window spans the steps since the previous logged step), and their
``seconds_per_step`` / ``tokens_per_second`` summary columns recomputed as ``docs/store.md`` defines
them (warm-up window excluded; the figures are written out here so that this script keeps meaning
what it meant when later code changes).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SPEED_INDEX_WHERE = "key = 'seconds_per_step'"


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _backfill(connection) -> None:
    series = sa.text(
        "SELECT step, value, wall_time FROM metric_points WHERE run_id = :run AND key = :key ORDER BY step"
    )
    run_ids = (
        connection.execute(
            sa.text("SELECT DISTINCT run_id FROM metric_points WHERE key = 'seconds_per_step'")
        )
        .scalars()
        .all()
    )
    for run_id in run_ids:
        per_step = connection.execute(series, {"run": run_id, "key": "seconds_per_step"}).all()
        rates = {
            step: value
            for step, value, _ in connection.execute(series, {"run": run_id, "key": "tokens_per_second"})
        }
        windows = []  # (step, seconds, tokens, wall_time)
        previous = 0
        for step, value, wall in per_step:
            steps = step - previous if step > previous else 1
            previous = step
            if step in rates and value > 0:
                windows.append((step, value * steps, rates[step] * value * steps, wall))
        values = [value for _, value, _ in per_step]
        counted = windows[1:] if len(windows) > 1 else windows
        seconds = sum(w[1] for w in counted)
        connection.execute(
            sa.text("UPDATE runs SET seconds_per_step = :s, tokens_per_second = :t WHERE id = :run"),
            {
                "run": run_id,
                "s": _median(values[1:] if len(values) > 1 else values),
                "t": sum(w[2] for w in counted) / seconds if seconds > 0 else None,
            },
        )
        for key, column in (("window_seconds", 1), ("window_tokens", 2)):
            if not windows:
                continue
            connection.execute(
                sa.text(
                    "INSERT INTO metric_points (run_id, key, step, value, wall_time) "
                    "VALUES (:run, :key, :step, :value, :wall)"
                ),
                [
                    {"run": run_id, "key": key, "step": w[0], "value": w[column], "wall": w[3]}
                    for w in windows
                ],
            )
            column_values = [w[column] for w in windows]
            connection.execute(
                sa.text(
                    "INSERT INTO metric_stats (run_id, key, count, latest, latest_step, min, max, total) "
                    "VALUES (:run, :key, :count, :latest, :top, :low, :high, :total)"
                ),
                {
                    "run": run_id, "key": key, "count": len(windows), "latest": column_values[-1],
                    "top": windows[-1][0], "low": min(column_values), "high": max(column_values),
                    "total": sum(column_values),
                },
            )  # fmt: skip
        connection.execute(
            sa.text("UPDATE runs SET points = points + :added WHERE id = :run"),
            {"run": run_id, "added": 2 * len(windows)},
        )


def upgrade() -> None:
    with op.batch_alter_table("metric_stats") as batch:
        batch.add_column(sa.Column("total", sa.Float()))
        batch.add_column(sa.Column("middle_value", sa.Float()))
        batch.add_column(sa.Column("middle_step", sa.Integer()))
    op.execute(
        "UPDATE metric_stats SET total = (SELECT SUM(p.value) FROM metric_points p "
        "WHERE p.run_id = metric_stats.run_id AND p.key = metric_stats.key)"
    )
    op.create_index(
        "ix_metric_points_speed",
        "metric_points",
        ["run_id", "value", "step"],
        sqlite_where=sa.text(SPEED_INDEX_WHERE),
        postgresql_where=sa.text(SPEED_INDEX_WHERE),
    )
    _backfill(op.get_bind())


def downgrade() -> None:
    op.execute(
        "UPDATE runs SET points = points - (SELECT COUNT(*) FROM metric_points p "
        "WHERE p.run_id = runs.id AND p.key IN ('window_seconds', 'window_tokens'))"
    )
    op.execute("DELETE FROM metric_points WHERE key IN ('window_seconds', 'window_tokens')")
    op.execute("DELETE FROM metric_stats WHERE key IN ('window_seconds', 'window_tokens')")
    op.drop_index("ix_metric_points_speed", table_name="metric_points")
    with op.batch_alter_table("metric_stats") as batch:
        batch.drop_column("middle_step")
        batch.drop_column("middle_value")
        batch.drop_column("total")
