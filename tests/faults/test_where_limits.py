"""Issue 16, item 7: ``--where`` bounds its nesting (parentheses and ``not``s) and its number of
comparisons with one clear line, instead of a RecursionError traceback or a "database error" that blames
``--db``. Filters up to the bounds work on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from db.errors import FilterError
from db.query import MAX_COMPARISONS, MAX_DEPTH, parse_where
from tests.faults.conftest import TRACEBACK, arctui_process, cli

pytestmark = pytest.mark.faults


def nested(depth: int) -> str:
    return "(" * depth + "id=1" + ")" * depth


def ors(count: int, term: str = "id={}") -> str:
    return " or ".join(term.format(i) for i in range(count))


def test_the_issue_inputs_get_one_line_each(sqlite_url, home):
    for where, expected in (
        (nested(3000), f"--where: more than {MAX_DEPTH} nested parentheses or 'not's at position {MAX_DEPTH}"),
        (ors(5000), f"--where: more than {MAX_COMPARISONS} comparisons"),
    ):
        proc = arctui_process("--db", sqlite_url, "runs", "--where", where)
        assert proc.returncode == 2, proc.stderr[-500:]
        assert proc.stderr.startswith(f"arctui: error: {expected}") and proc.stderr.count("\n") == 1
        assert TRACEBACK not in proc.stderr and "check --db" not in proc.stderr


@pytest.mark.parametrize(
    "where",
    [
        "not " * (MAX_DEPTH + 1) + "id=1",
        "(not " * ((MAX_DEPTH + 2) // 2) + "id=1" + ")" * ((MAX_DEPTH + 2) // 2),
        ors(MAX_COMPARISONS + 1, "tag=t{}"),
        " and ".join(f"msl>{i}" for i in range(MAX_COMPARISONS + 1)),
    ],
)
def test_one_step_past_a_bound_is_refused_before_any_sql(where):
    with pytest.raises(FilterError) as caught:
        parse_where(where)
    assert "\n" not in str(caught.value) and 0 <= caught.value.position < len(where)


@pytest.mark.parametrize(
    "where",
    [
        "not " * MAX_DEPTH + "id=1",
        nested(MAX_DEPTH),
        # The deepest SQL for the bound: alternating and/or, each level in parentheses.
        "(id=2 and (id=3 or " * (MAX_DEPTH // 2) + "id=1" + "))" * (MAX_DEPTH // 2),
        "not (tag!=x or " * (MAX_DEPTH // 2) + "dataset~y" + ")" * (MAX_DEPTH // 2),
        ors(MAX_COMPARISONS, "tag=t{}"),
        " or ".join(f"(dataset~d{i} and msl>{i})" for i in range(MAX_COMPARISONS // 2)),
    ],
)
def test_filters_at_the_bounds_run_on_both_databases(store, store_url, where, capsys):
    store.create_run({"max_seq_len": 10}, name="r", tags=["x"])
    store.list_runs(where)  # neither a parser stack overflow nor an expression-depth error
    code, _, err = cli(capsys, "--db", store_url, "runs", "--where", where, "--format", "json")
    assert code == 0 and err == "", err
