"""Revision 0005: a run's executor and, on Slurm, its jobs, Slurm state and nodes, through the store's
public API on a real SQLite file; a database at revision 0004 upgrades with its runs as local runs."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from db.errors import StoreError
from db.store import RunStore, upgrade


def test_a_run_keeps_its_jobs_state_and_nodes(tmp_path):
    with RunStore.open(f"sqlite:///{tmp_path / 'a.db'}") as store:
        run = store.create_run({"max_seq_len": 1024}, name="on-slurm")
        assert (run.executor, run.job_id, run.job_ids, run.job_state, run.node_list) == ("local", None, (), None, None)
        store.update_run(run.id, executor="slurm", job_id="41", job_ids=["41"], job_state="PENDING (Priority)")
        run = store.update_run(run.id, job_id="57", job_ids=["41", 57], job_state="RUNNING", node_list="gpu[01-02]")
        again = store.get_run("on-slurm")
        assert (again.executor, again.job_id, again.job_ids, again.job_state, again.node_list) == \
            ("slurm", "57", ("41", "57"), "RUNNING", "gpu[01-02]")
        with pytest.raises(StoreError, match="executor must be local or slurm"):
            store.update_run(run.id, executor="kubernetes")


def test_revision_4_upgrades_with_its_runs_local(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    assert upgrade(url, "0004") == (None, "0004")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO runs (name, status, config_json, gpu_ids, datasets, tags, notes, created_at, points) "
            "VALUES ('old-run', 'completed', '{}', '[]', '[]', '[]', '', 1700000000.0, 0)"))
    engine.dispose()
    assert upgrade(url) == ("0004", "0005")
    with RunStore.open(url) as store:
        run = store.get_run("old-run")
    assert (run.executor, run.job_id, run.job_ids) == ("local", None, ())
