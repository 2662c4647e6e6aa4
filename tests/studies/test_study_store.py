"""Studies in the store: revision 0004 upgrades a database with runs in it, studies are created,
listed and read back, runs point at their study, and `--where study=NAME` finds them."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from arctui.cli import main
from db.errors import StoreError
from db.models import HEAD_REVISION
from db.query import parse_where
from db.store import RunStore, schema_revision, upgrade


def test_revision_4_upgrades_runs_in_place(store_url):
    assert upgrade(store_url, "0003") == (None, "0003")
    engine = create_engine(store_url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO runs (name, status, config_json, gpu_ids, datasets, tags, notes, created_at, points, "
            "events_cursor, msl) VALUES ('before', 'completed', '{}', '[]', '[]', '[]', '', 1700000000.0, 0, 0, 2048)"
        ))
    engine.dispose()
    assert upgrade(store_url) == ("0003", HEAD_REVISION)
    assert schema_revision(store_url) == HEAD_REVISION  # 0004 and every later revision ran
    with RunStore.open(store_url) as store:
        old = store.get_run("before")
        assert (old.msl, old.study_id, old.variant) == (2048, None, None)
        study = store.create_study("s1", {"variants": ["a"]})
        run = store.create_run({"max_seq_len": 1024}, name="s1-a", study="s1", variant="a")
        assert (run.study_id, run.variant) == (study.id, "a")
        assert [s.run.name for s in store.list_runs("study=s1")] == ["s1-a"]
        assert [s.run.name for s in store.list_runs("study!=s1")] == ["before"]




def test_studies_api(store):
    study = store.create_study("iteration33", {"base": {"max_seq_len": 10240}, "max_parallel": 2})
    assert (study.name, study.status, study.spec["max_parallel"]) == ("iteration33", "active", 2)
    assert store.get_study("iteration33") == store.get_study(study.id) == store.get_study(str(study.id))
    a = store.create_run({"max_seq_len": 10240}, name="i33-01", study=study.id, variant="01_baseline")
    b = store.create_run({"max_seq_len": 2048}, name="i33-04", study="iteration33", variant="04")
    store.create_run({}, name="single")
    assert [s.run.id for s in store.study_runs("iteration33")] == [a.id, b.id]
    assert [s.run.variant for s in store.study_runs(study.id)] == ["01_baseline", "04"]
    other = store.create_study("other", {})
    assert [s.name for s in store.list_studies()] == ["other", "iteration33"]
    assert store.study_runs(other.id) == []
    assert store.set_study_status("iteration33", "stopped").status == "stopped"
    assert store.get_study(study.id).status == "stopped"
    assert store.get_run("i33-04").to_dict()["variant"] == "04"


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda s: s.create_study("taken", {}), "a study named 'taken' already exists"),
        (lambda s: s.create_study("a b", {}), "study name 'a b'"),
        (lambda s: s.create_study("123", {}), "not only digits"),
        (lambda s: s.create_study("x", {"f": object()}), "JSON-serialisable"),
        (lambda s: s.get_study("takne"), "did you mean 'taken'"),
        (lambda s: s.get_study(999), "no study with id 999"),
        (lambda s: s.set_study_status("taken", "paused"), "study status must be one of"),
        (lambda s: s.create_run({}, name="r", study="nope"), "no study named 'nope'"),
    ],
)
def test_study_errors_are_one_line(store, call, needle):
    store.create_study("taken", {})
    with pytest.raises(StoreError) as err:
        call(store)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_where_study_is_a_text_field(store):
    store.create_study("demo-cpu", {})
    store.create_run({}, name="in", study="demo-cpu", variant="v")
    store.create_run({}, name="out")
    assert [s.run.name for s in store.list_runs("study~demo")] == ["in"]
    assert [s.run.name for s in store.list_runs("study=demo-cpu or name=out", descending=False)] == ["in", "out"]
    assert [s.run.name for s in store.list_runs(sort="study", descending=False)] == ["in", "out"]
    parse_where("study='iteration33'")


def test_runs_where_study_on_the_command_line(sqlite_url, capsys):
    with RunStore.open(sqlite_url, upgrade=True) as store:
        store.create_study("iteration33", {})
        store.create_run({}, name="i33-a", study="iteration33", variant="a")
        store.create_run({}, name="lonely")
    assert main(["--db", sqlite_url, "runs", "--where", "study=iteration33", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "i33-a" in out and "lonely" not in out
