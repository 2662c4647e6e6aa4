"""``arctui eval RUN`` against a real store and a real ``runner.evaluate`` subprocess."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from arctui.cli import main as arctui_main
from runner.synthetic import make_tasks, write_tasks


@pytest.fixture()
def run_with_checkpoint(tmp_path, tiny_model_dir):
    """A run in a fresh store whose output folder holds a full-model checkpoint at step 5."""
    from db.store import RunStore

    db_url = f"sqlite:///{tmp_path / 'arctui.db'}"
    data = write_tasks(tmp_path / "val.json", make_tasks(2, ["flip_lr"], seed=1, max_size=3))
    output_dir = tmp_path / "runs" / "1-evalme" / "output"
    shutil.copytree(tiny_model_dir, output_dir / "checkpoint-5")
    config = {"model_path": str(tiny_model_dir), "max_seq_len": 2048,
              "val_dataset": [str(data), "output-from-examples-v1"]}
    with RunStore.open(db_url) as store:
        run = store.create_run(config, name="evalme", output_dir=str(output_dir),
                               log_path=str(output_dir.parent / "train.log"))
    return db_url, run, data


def test_eval_records_metrics_for_the_checkpoint(run_with_checkpoint, capsys):
    from db.store import RunStore

    db_url, run, data = run_with_checkpoint
    code = arctui_main(["--db", db_url, "eval", "evalme", "--checkpoint", "5", "--predictions-per-task", "2",
                        "--max-new-tokens", "4", "--batch-size", "4", "--device", "cpu", "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    printed = json.loads(captured.out.strip().splitlines()[-1])
    assert printed["step"] == 5 and printed["unanswered"] == 1.0  # a random model writes no grid
    with RunStore.open(db_url) as store:
        results = {r.metric: r for r in store.eval_results(run.id)}
    assert results["accuracy"].step == 5 and results["accuracy"].dataset == str(data)
    assert results["unanswered"].value == 1.0
    assert "vote_2" in results and "tokens_per_second" in results
    folder = next(Path(run.log_path).parent.glob("eval-5-*"))
    assert {"submission.json", "predictions.jsonl", "metrics.json", "events.jsonl"} <= {p.name for p in folder.iterdir()}


def test_eval_errors_are_one_line(run_with_checkpoint, capsys):
    db_url, run, _ = run_with_checkpoint
    assert arctui_main(["--db", db_url, "eval", "evalme", "--checkpoint", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("arctui: error:") and "no checkpoint at step 7 (have: 5)" in err and "\n" not in err
    assert arctui_main(["--db", db_url, "eval", "evalme", "--data", "/nonexistent.json",
                        "--max-new-tokens", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "evaluation of run evalme failed" in err and "\n" not in err
