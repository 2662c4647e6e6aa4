"""The synthetic task families: valid ARC tasks whose samples really follow their rule."""

from __future__ import annotations

import json

import pytest

from runner.errors import UserError
from runner.synthetic import RULES, main, make_task, make_tasks
from runner.voting import is_valid_grid


def rotate(grid):
    return [list(reversed(row)) for row in reversed(grid)]


def test_every_rule_gives_valid_tasks():
    tasks = make_tasks(60, RULES, seed=3)
    assert len(tasks) == 60
    for task_id, task in tasks.items():
        assert task_id.rsplit("-", 1)[1] in RULES
        assert len(task["train"]) == 3 and len(task["test"]) == 1
        for sample in task["train"] + task["test"]:
            assert is_valid_grid(sample["input"]) and is_valid_grid(sample["output"])
            assert any(any(row) for row in sample["input"])


def test_samples_follow_their_rule():
    import random

    rng = random.Random(0)
    task = make_task("rotate_180", rng)
    for sample in task["train"] + task["test"]:
        assert sample["output"] == rotate(sample["input"])
    task = make_task("transpose", rng, min_size=2, max_size=5)
    for sample in task["train"] + task["test"]:
        assert sample["output"] == [list(c) for c in zip(*sample["input"], strict=True)]


def test_recolour_is_one_mapping_per_task_that_changes_every_colour():
    import random

    task = make_task("recolour", random.Random(1), n_colours=4)
    mapping = {}
    for sample in task["train"] + task["test"]:
        for row_in, row_out in zip(sample["input"], sample["output"], strict=True):
            for a, b in zip(row_in, row_out, strict=True):
                assert mapping.setdefault(a, b) == b
    assert mapping.get(0, 0) == 0
    assert all(a != b for a, b in mapping.items() if a)


def test_seeds_are_reproducible_and_distinct():
    assert make_tasks(10, seed=5) == make_tasks(10, seed=5)
    a = [t["test"][0]["input"] for t in make_tasks(30, seed=0).values()]
    b = [t["test"][0]["input"] for t in make_tasks(30, seed=1).values()]
    assert a != b


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="unknown synthetic rule"):
        make_tasks(2, ["spin"])
    with pytest.raises(UserError):
        make_tasks(0)


def test_command_line_writes_arc_json(tmp_path, capsys):
    out = tmp_path / "tasks.json"
    assert main([str(out), "--rules", "flip_lr,recolour", "--tasks", "4", "--seed", "2"]) == 0
    tasks = json.loads(out.read_text())
    assert len(tasks) == 4
    assert main([str(out), "--rules", "nope"]) == 2
    assert "unknown synthetic rule" in capsys.readouterr().err
