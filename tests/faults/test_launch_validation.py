"""Issue 16, item 6: launch validation gaps. A JSON file that holds no ARC tasks was accepted as a
dataset and failed 4-15 s later inside the run; a YAML config with a key twice silently kept the last
value. Both are refused with one line (exit 2) before anything is written."""

from __future__ import annotations

import json

import pytest

from runner.synthetic import make_tasks, write_tasks
from tests.faults.conftest import TRACEBACK, cli

pytestmark = pytest.mark.faults


def config_text(train: str, val: str) -> str:
    return (f"name: v\nmodel_path: tiny:random-llama\ngpus: cpu\nmax_steps: 2\n"
            f"train_datasets: [[{train}, output-from-examples-v1]]\nval_dataset: [{val}, output-from-examples-v1]\n")


def refused(capsys, tmp_path, home, text: str) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    db = tmp_path / "db" / "arctui.db"
    code, out, err = cli(capsys, "--db", f"sqlite:///{db}", "launch", str(path), "--detach")
    assert code == 2 and TRACEBACK not in err, err
    assert err.count("\n") == 1 and err.startswith("arctui: error: "), err
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())  # no run folder
    if db.exists():  # nor a run in the store
        from db.store import RunStore

        with RunStore.open(f"sqlite:///{db}") as store:
            assert store.list_runs() == []
    return err


@pytest.mark.parametrize("content", [{"a": 1}, [1, 2, 3], {"task": {"train": "x", "test": []}}, {}])
def test_a_json_file_without_arc_tasks_is_refused(capsys, tmp_path, home, content):
    good = write_tasks(tmp_path / "val.json", make_tasks(2, seed=1, max_size=3))
    bad = tmp_path / "not-arc.json"
    bad.write_text(json.dumps(content))
    err = refused(capsys, tmp_path, home, config_text(str(bad), str(good)))
    assert "train_datasets" in err and "not-arc.json" in err


def test_a_duplicated_yaml_key_is_refused(capsys, tmp_path, home):
    good = write_tasks(tmp_path / "train.json", make_tasks(4, seed=0, max_size=3))
    err = refused(capsys, tmp_path, home, config_text(str(good), str(good)) + "max_steps: 50\n")
    assert "key 'max_steps' appears twice (first on line 4)" in err
