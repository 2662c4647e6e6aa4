"""Alembic migrations: a database created at revision 1 upgrades to head with its data, the ORM models
match what the migrations build, and the scripts are found from an installed copy of the package."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from arctui.cli import main
from db.models import HEAD_REVISION, KNOWN_REVISIONS, Base
from db.store import MIGRATIONS_DIR, RunStore, schema_revision, upgrade
from tests.conftest import REPO_ROOT


def test_known_revisions_match_the_scripts():
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    assert script.get_heads() == [HEAD_REVISION]
    walked = [rev.revision for rev in script.walk_revisions()][::-1]
    assert tuple(walked) == KNOWN_REVISIONS
    assert MIGRATIONS_DIR.parent == Path(__import__("db").__file__).parent


def test_create_at_revision_1_then_upgrade_keeps_the_data(store_url):
    assert upgrade(store_url, "0001") == (None, "0001")
    assert schema_revision(store_url) == "0001"
    engine = create_engine(store_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO runs (name, status, config_json, gpu_ids, datasets, tags, notes, created_at, points, "
                "msl, loss) VALUES ('old-run', 'completed', '{\"max_seq_len\": 2048}', '[]', '[]', '[\"baseline\"]', "
                "'', 1700000000.0, 2, 2048, 0.5)"
            )
        )
        run_id = connection.execute(text("SELECT id FROM runs WHERE name = 'old-run'")).scalar()
        connection.execute(
            text("INSERT INTO metric_points (run_id, key, step, value) VALUES (:r, 'loss', 1, 0.9), (:r, 'loss', 2, 0.5)"),
            {"r": run_id},
        )
        connection.execute(
            text("INSERT INTO metric_stats (run_id, key, count, latest, latest_step, min, max) "
                 "VALUES (:r, 'loss', 2, 0.5, 2, 0.5, 0.9)"),  # fmt: skip
            {"r": run_id},
        )
    engine.dispose()

    assert upgrade(store_url) == ("0001", HEAD_REVISION)
    assert upgrade(store_url) == (HEAD_REVISION, HEAD_REVISION)  # idempotent
    with RunStore.open(store_url) as store:
        summary = store.get_summary("old-run")
        assert (summary.run.msl, summary.run.tags, summary.loss, summary.run.events_cursor) == (2048, ("baseline",), 0.5, 0)
        assert [p.value for p in store.metric_series("old-run", "loss")] == [0.9, 0.5]
        # The new revision's features work on the migrated run.
        assert store.ingest_events("old-run", [{"seq": 1, "time": 1.0, "event": "checkpoint", "step": 2, "path": "c"}]) == 1
        assert store.list_runs("tag=baseline and msl=2048")[0].run.name == "old-run"
        # Foreign keys survived the migration: deleting the run removes its points.
        store.delete_run("old-run")
    engine = create_engine(store_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM metric_points")).scalar() == 0
    engine.dispose()


def test_revision_3_recomputes_old_speed_summaries(store_url):
    """A run stored at revision 0002 (latest tokens/s, median of recent s/step, no window figures) gets
    window points back-filled from its step gaps and both speed figures recomputed as defined now."""
    upgrade(store_url, "0002")
    engine = create_engine(store_url)
    sps = {10: 9.0, 20: 1.0, 30: 2.0, 35: 4.0}  # the last window is 5 steps long
    tps = {10: 100.0, 20: 1000.0, 30: 1000.0, 35: 200.0}
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO runs (name, status, config_json, gpu_ids, datasets, tags, notes, created_at, points, "
                 "seconds_per_step, tokens_per_second) VALUES ('old', 'completed', '{}', '[]', '[]', '[]', '', 1.0, "
                 "8, 2.0, 200.0)")  # fmt: skip
        )
        run_id = connection.execute(text("SELECT id FROM runs WHERE name = 'old'")).scalar()
        for key, values in (("seconds_per_step", sps), ("tokens_per_second", tps)):
            connection.execute(
                text("INSERT INTO metric_points (run_id, key, step, value, wall_time) VALUES (:r, :k, :s, :v, 5.0)"),
                [{"r": run_id, "k": key, "s": s, "v": v} for s, v in values.items()],
            )
            connection.execute(
                text("INSERT INTO metric_stats (run_id, key, count, latest, latest_step, min, max) "
                     "VALUES (:r, :k, 4, :latest, 35, :low, :high)"),  # fmt: skip
                {"r": run_id, "k": key, "latest": values[35], "low": min(values.values()), "high": max(values.values())},
            )
    engine.dispose()
    upgrade(store_url)
    with RunStore.open(store_url) as store:
        summary = store.get_summary("old")
        assert summary.seconds_per_step == 2.0  # median of 1, 2, 4: the warm-up 9 is left out
        seconds = {20: 10.0, 30: 20.0, 35: 20.0}
        assert summary.tokens_per_second == pytest.approx(sum(tps[s] * t for s, t in seconds.items()) / 50.0)
        assert summary.points == 16
        stats = store.metric_stats("old")
        assert stats["window_seconds"].count == 4 and stats["window_seconds"].max == 90.0
        # New windows keep the figures current from where the back-fill left them.
        store.ingest_events("old", [{"seq": 1, "time": 6.0, "event": "step", "step": 45, "seconds_per_step": 3.0,
                                     "tokens_per_second": 500.0, "window_seconds": 30.0, "window_tokens": 15000}])
        summary = store.get_summary("old")
        assert summary.seconds_per_step == 2.5
        assert summary.tokens_per_second == pytest.approx((sum(tps[s] * t for s, t in seconds.items()) + 15000) / 80.0)


def test_models_match_the_migrations(store_url):
    RunStore.open(store_url).close()
    engine = create_engine(store_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_db_commands(sqlite_url, capsys):
    assert main(["--db", sqlite_url, "db", "current"]) == 0
    assert "no arctui schema yet" in capsys.readouterr().out
    upgrade(sqlite_url, "0001")
    assert main(["--db", sqlite_url, "db", "current"]) == 1
    assert f"revision 0001, this arctui needs {HEAD_REVISION}: run `arctui db upgrade`" in capsys.readouterr().out
    assert main(["--db", sqlite_url, "db", "upgrade"]) == 0
    assert f"upgraded from revision 0001 to {HEAD_REVISION}" in capsys.readouterr().out
    assert main(["--db", sqlite_url, "db", "upgrade"]) == 0
    assert f"already at revision {HEAD_REVISION}" in capsys.readouterr().out
    assert main(["--db", sqlite_url, "db", "current"]) == 0
    assert "(up to date)" in capsys.readouterr().out


def _package_data_globs() -> list[str]:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return pyproject["tool"]["setuptools"]["package-data"]["db"]


@pytest.mark.slow
def test_migrations_run_from_an_installed_copy(tmp_path):
    """Copy the db package as setuptools would install it (its .py modules + package-data) and create a
    database from there, in a fresh interpreter that cannot see the repository's db/."""
    site = tmp_path / "site"
    for package in ("runner", "arctui"):
        shutil.copytree(REPO_ROOT / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
    source = REPO_ROOT / "db"
    wanted = {p for p in source.glob("*.py")}
    for pattern in _package_data_globs():
        wanted |= set(source.glob(pattern))
    for path in wanted:
        target = site / "db" / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    code = (
        "import db.store, sys; from db.store import RunStore, HEAD_REVISION, schema_revision\n"
        f"url = 'sqlite:///{tmp_path / 'installed.db'}'\n"
        "RunStore.open(url).close(); print(db.store.__file__, schema_revision(url) == HEAD_REVISION)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "ARCTUI_HOME": str(tmp_path)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    module_file, at_head = out.stdout.split()
    assert module_file.startswith(str(site)) and at_head == "True"
    assert re.search(r"versions/0001_initial\.py", " ".join(str(p) for p in wanted))
