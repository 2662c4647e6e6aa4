"""ORM tables of the run store. Private to :mod:`db.store`: nothing outside ``db/`` imports these.

Times are stored as Unix seconds (float): portable across SQLite and PostgreSQL, cheap to sort and to
convert. Lists (tags, datasets, GPU ids) are JSON text so that filters can match one element with a
bound LIKE parameter on both dialects.

The schema is owned by the Alembic scripts in ``db/migrations/versions``; these classes mirror the
head revision (``tests/store/test_migrations.py`` checks that they agree).
"""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Revisions this code knows, oldest first; the last one is what the code needs.
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004", "0005")
HEAD_REVISION = KNOWN_REVISIONS[-1]
# The partial index behind the seconds-per-step median (db.summary.SECONDS_PER_STEP_KEY).
SPEED_INDEX_WHERE = "key = 'seconds_per_step'"


# Named constraints, so that batch migrations on SQLite (copy-and-move) can find and alter them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    config_json: Mapped[str] = mapped_column(Text, default="{}")
    # The fields people filter and sort on, copied out of the config.
    model: Mapped[str | None] = mapped_column(Text)
    encoder: Mapped[str | None] = mapped_column(Text)
    msl: Mapped[int | None] = mapped_column(Integer)
    batch_size: Mapped[int | None] = mapped_column(Integer)
    per_device_batch: Mapped[int | None] = mapped_column(Integer)
    learning_rate: Mapped[float | None] = mapped_column(Float)
    lora_r: Mapped[int | None] = mapped_column(Integer)
    gpus: Mapped[int | None] = mapped_column(Integer)
    gpu_ids: Mapped[str] = mapped_column(Text, default="[]")
    datasets: Mapped[str] = mapped_column(Text, default="[]")
    tags: Mapped[str] = mapped_column(Text, default="[]")
    notes: Mapped[str] = mapped_column(Text, default="")
    # Process bookkeeping, for stop/recovery.
    host: Mapped[str | None] = mapped_column(String(255))
    supervisor_pid: Mapped[int | None] = mapped_column(Integer)
    pgid: Mapped[int | None] = mapped_column(Integer)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    output_dir: Mapped[str | None] = mapped_column(Text)
    log_path: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    started_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float)
    # Per-run summary, kept current at ingest time so listings never scan metric points.
    last_step: Mapped[int | None] = mapped_column(Integer)
    max_steps: Mapped[int | None] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float)
    min_loss: Mapped[float | None] = mapped_column(Float)
    final_loss: Mapped[float | None] = mapped_column(Float)
    eval_loss: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    seconds_per_step: Mapped[float | None] = mapped_column(Float)
    tokens_per_second: Mapped[float | None] = mapped_column(Float)
    peak_vram_gb: Mapped[float | None] = mapped_column(Float)
    points: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[float | None] = mapped_column(Float)
    # Revision 0002: highest runner event seq ingested (exactly-once ingestion).
    events_cursor: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Revision 0004: the study a run belongs to (NULL: a single run) and its variant's name there.
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id", ondelete="SET NULL"), index=True)
    variant: Mapped[str | None] = mapped_column(String(100))
    # Revision 0005: the executor (local or slurm); for Slurm the current job, every job the run had
    # (JSON list: a resume submits a new one), Slurm's state as Slurm words it, and the job's nodes.
    executor: Mapped[str] = mapped_column(String(16), default="local", server_default="local")
    job_id: Mapped[str | None] = mapped_column(String(32))
    job_ids: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")
    job_state: Mapped[str | None] = mapped_column(Text)
    node_list: Mapped[str | None] = mapped_column(Text)


class MetricPointRow(Base):
    """One value per (run, key, step). SQLite keeps it WITHOUT ROWID: the primary key is the only
    B-tree, which makes batch inserts ~1.4x faster than a rowid table with a unique index."""

    __tablename__ = "metric_points"
    __table_args__ = (
        # Revision 0003: the seconds_per_step points by value, for the summary's median (an index walk
        # to the middle instead of a sort of the series). Partial: no other key pays for it.
        Index(
            "ix_metric_points_speed",
            "run_id",
            "value",
            "step",
            sqlite_where=text(SPEED_INDEX_WHERE),
            postgresql_where=text(SPEED_INDEX_WHERE),
        ),
        {"sqlite_with_rowid": False},
    )

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    wall_time: Mapped[float | None] = mapped_column(Float)


class MetricStatsRow(Base):
    __tablename__ = "metric_stats"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    latest: Mapped[float] = mapped_column(Float)
    latest_step: Mapped[int] = mapped_column(Integer)
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
    # Revision 0003: sum of the values (speed summary: tokens over time of the logging windows), and for
    # seconds_per_step the lower middle point (value, step) of the points after the first, which the
    # median moves from batch to batch (NULL: not known, recomputed by an index walk).
    total: Mapped[float | None] = mapped_column(Float)
    middle_value: Mapped[float | None] = mapped_column(Float)
    middle_step: Mapped[int | None] = mapped_column(Integer)


class GpuSampleRow(Base):
    __tablename__ = "gpu_samples"
    __table_args__ = (
        Index("ix_gpu_samples_run_time", "run_id", "time"),
        Index("ix_gpu_samples_gpu_time", "gpu_index", "time"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    gpu_index: Mapped[int] = mapped_column(Integer)
    gpu_name: Mapped[str] = mapped_column(String(255))
    time: Mapped[float] = mapped_column(Float)
    memory_used_mb: Mapped[float | None] = mapped_column(Float)
    memory_total_mb: Mapped[float | None] = mapped_column(Float)
    utilization_pct: Mapped[float | None] = mapped_column(Float)
    power_w: Mapped[float | None] = mapped_column(Float)


class EvalResultRow(Base):
    __tablename__ = "eval_results"
    __table_args__ = (UniqueConstraint("run_id", "step", "dataset", "metric"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    dataset: Mapped[str] = mapped_column(Text)
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    predictions_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


class RunEventRow(Base):
    """Revision 0002: the runner events worth showing later (not the per-step ones)."""

    __tablename__ = "run_events"
    __table_args__ = (Index("ix_run_events_run_kind", "run_id", "kind"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(32))
    step: Mapped[int | None] = mapped_column(Integer)
    data_json: Mapped[str] = mapped_column(Text)


class StudyRow(Base):
    """Revision 0004: a study, a base config plus variants run as one (``arctui study``)."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    spec_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))


runs = RunRow.__table__
metric_points = MetricPointRow.__table__
metric_stats = MetricStatsRow.__table__
gpu_samples = GpuSampleRow.__table__
eval_results = EvalResultRow.__table__
run_events = RunEventRow.__table__
studies = StudyRow.__table__
