"""The ``--where`` filter language: every operator on both backends, errors that point at the
position, and injection attempts that stay plain values."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from db import query
from db.errors import FilterError, StoreError
from db.models import runs
from db.store import RunStore
from tests.store.conftest import PostgresSchema, postgres_base_url


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fleet(request, tmp_path_factory):
    """Five runs with different settings and summaries, built once per backend (the tests only read)."""
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fleet') / 'arctui.db'}"
    else:
        schema = PostgresSchema(postgres_base_url())
        url = schema.url
    store = RunStore.open(url)
    try:
        _fill(store)
        yield store
    finally:
        store.close()
        if schema is not None:
            schema.drop()


def _fill(store) -> None:
    specs = [
        ("smol-2048", {"model_path": "/m/SmolLM-135M-Instruct", "max_seq_len": 2048, "learning_rate": 1e-4,
                       "lora_r": 32, "batch_size": 16, "train_datasets": [["d/train_rs7.json", "v1"]]},
         ["baseline"], 2.9, "completed"),
        ("smol-10240", {"model_path": "/m/SmolLM-135M-Instruct", "max_seq_len": 10240, "learning_rate": 1e-4,
                        "lora_r": 32, "batch_size": 16}, ["baseline", "long"], 3.3, "completed"),
        ("qwen-2048", {"model_path": "/m/Qwen2-0.5B-Instruct", "max_seq_len": 2048, "learning_rate": 2e-4,
                       "lora_r": 64}, [], 6.0, "failed"),
        ("llama", {"model_path": "/m/Llama-3.2-1B_100%", "max_seq_len": 4096, "learning_rate": 5e-5}, ["fifty_off"],
         None, "queued"),
        ("odd'name", {"model_path": "it's \"quoted\"; DROP TABLE runs; --"}, [], 1.5, "running"),
    ]  # fmt: skip
    for name, config, tags, s_per_step, status in specs:
        run = store.create_run(config, name=name.replace("'", "-"), tags=tags)
        if s_per_step is not None:
            store.append_metrics(run.id, [("seconds_per_step", 1, s_per_step), ("loss", 1, s_per_step / 10)])
        for step in {"completed": ["running", "completed"], "failed": ["failed"], "running": ["running"]}.get(
            status, []
        ):
            store.set_status(run.id, step)


def names(store, where, **kwargs):
    return sorted(s.run.name for s in store.list_runs(where, **kwargs))


CASES = [
    ("model~SmolLM and msl>=2048 and status=completed", ["smol-10240", "smol-2048"]),
    ("model~smollm", ["smol-10240", "smol-2048"]),  # ~ is case-insensitive
    ("tag=baseline", ["smol-10240", "smol-2048"]),
    ("tag=long", ["smol-10240"]),
    ("tag=base", []),  # = matches a whole element
    ("tag~base", ["smol-10240", "smol-2048"]),
    ("tag!=baseline", ["llama", "odd-name", "qwen-2048"]),
    ("tag=fifty_off", ["llama"]),
    ("tag~_", ["llama"]),  # LIKE wildcards are escaped: _ and % are plain characters
    ("model~%", ["llama"]),
    ("model~'_100%'", ["llama"]),
    ("model~_", ["llama"]),
    ("s_per_step<2", ["odd-name"]),
    ("s_per_step<=2.9", ["odd-name", "smol-2048"]),
    ("s_per_step>3.3", ["qwen-2048"]),
    ("s_per_step>=3.3", ["qwen-2048", "smol-10240"]),
    ("s_per_step=3.3", ["smol-10240"]),
    ("s_per_step!=3.3", ["llama", "odd-name", "qwen-2048", "smol-2048"]),  # != keeps runs without a value
    ("msl=2048", ["qwen-2048", "smol-2048"]),
    ("msl==2048", ["qwen-2048", "smol-2048"]),
    ("msl!=2048", ["llama", "odd-name", "smol-10240"]),
    ("lr=1e-4", ["smol-10240", "smol-2048"]),
    ("learning_rate<0.0001", ["llama"]),
    ("lora_r>32 or status=queued", ["llama", "qwen-2048"]),
    ("(msl=2048 or msl=4096) and not status=failed", ["llama", "smol-2048"]),
    ("not (tag=baseline)", ["llama", "odd-name", "qwen-2048"]),
    ("not loss<0.3", ["llama", "qwen-2048", "smol-10240"]),  # NULL loss counts as "not < 0.3"
    ("status=running", ["odd-name"]),
    ("status!=completed", ["llama", "odd-name", "qwen-2048"]),
    ("status~ail", ["qwen-2048"]),
    ("STATUS=Completed AND MSL>4096", ["smol-10240"]),  # keywords, fields and statuses are case-insensitive
    ("dataset~train_rs7", ["smol-2048"]),
    ("dataset=d/train_rs7.json", ["smol-2048"]),
    ("name>smol", ["smol-10240", "smol-2048"]),
    ("name<b", []),
    ("name='smol-2048'", ["smol-2048"]),
    ("created>2000-01-01 and created<2999-01-01T00:00", ["llama", "odd-name", "qwen-2048", "smol-10240", "smol-2048"]),
    ("ended>=2000-01-01", ["qwen-2048", "smol-10240", "smol-2048"]),
    ("model~\"DROP TABLE\"", ["odd-name"]),
    ("model~'\\'s \"quoted\"'", ["odd-name"]),
    ("", ["llama", "odd-name", "qwen-2048", "smol-10240", "smol-2048"]),
]


@pytest.mark.parametrize("where,expected", CASES)
def test_filters_select_the_right_runs(fleet, where, expected):
    assert names(fleet, where) == expected


INJECTIONS = [
    "name='x' or 1=1",
    "name=\"x'; DROP TABLE runs; --\"",
    "name=\"' OR '1'='1\"",
    "model~\"%' OR 1=1 --\"",
    "tag=\"baseline\\\" OR 1=1\"",
    "name=\"x\\\" or status=completed\"",
    "notes~\"'); DELETE FROM runs; --\"",
]


@pytest.mark.parametrize("where", INJECTIONS)
def test_injection_attempts_are_plain_values(fleet, where):
    try:
        found = names(fleet, where)
    except FilterError:
        found = []  # refused as a syntax error is fine too
    assert found == []
    assert len(fleet.list_runs()) == 5  # the table is intact


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()])
def test_values_never_reach_the_sql_text(dialect):
    where = "model~\"'; DROP TABLE runs; --\" and msl>=2048 or tag=evil"
    sql = str(query.where_clause(where, runs).compile(dialect=dialect))
    assert "DROP" not in sql and "evil" not in sql and "2048" not in sql


ERRORS = [
    ("modle~SmolLM", 0, "unknown field 'modle' at position 0 (did you mean 'model'?)"),
    ("msl>=2048 and stauts=completed", 14, "did you mean 'status'?"),
    ("msl 2048", 4, "expected an operator"),
    ("msl>=", 5, "expected a value after 'msl>='"),
    ("msl>=abc", 5, "'msl' needs a number, got 'abc'"),
    ("model>=2048 and", 15, "expected a field name"),
    ("(msl=2048", 9, "expected ')' (to close position 0)"),
    ("msl=2048)", 8, "unbalanced ')'"),
    ("msl=2048 status=completed", 9, "expected 'and', 'or' or the end"),
    ("model~\"SmolLM", 6, "unterminated quoted value"),
    ("model=Smol;LM", 10, "unexpected character ';'"),
    ("msl~20", 0, "'~' matches text"),
    ("status=runing", 7, "unknown status 'runing' at position 7 (did you mean 'running'?)"),
    ("status<running", 0, "'status' takes =, != or ~"),
    ("tag>a", 0, "matches one element"),
    ("created>yesterday", 8, "needs a date/time"),
    ("loss<nan", 5, "finite number"),
    ("and", 0, "expected a field name"),
    ("msl>=2048 or", 12, "expected a field name"),
]


@pytest.mark.parametrize("where,position,message", ERRORS)
def test_errors_point_at_the_position(where, position, message):
    with pytest.raises(FilterError) as info:
        query.parse_where(where)
    assert message in str(info.value)
    assert info.value.position == position
    assert "\n" not in str(info.value)
    assert isinstance(info.value, StoreError)


def test_unknown_field_error_lists_fields(store):
    with pytest.raises(FilterError, match="fields: id, name, status, model"):
        store.list_runs("nope=1")


def test_every_field_and_alias_compiles(fleet):
    for name, field in list(query.FIELDS.items()) + [(a, query.FIELDS[t]) for a, t in query.ALIASES.items()]:
        if field.kind in ("int", "float"):
            where = f"{name}>=0"
        elif field.kind == "time":
            where = f"{name}>=2000-01-01"
        elif field.kind == "status":
            where = f"{name}=queued"
        elif field.kind == "bool":
            where = f"{name}=true"
        else:
            where = f"{name}~a"
        fleet.list_runs(where)  # every field is a real column or expression
        if field.kind != "list":
            fleet.list_runs(sort=name)
