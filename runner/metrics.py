"""ARC metrics, exactly as ``REFERENCE.md`` defines them.

Each metric is computed per test sample over all of that sample's predictions, averaged over the
samples of a task, then averaged over tasks (so a task with three test samples weighs as much as a
task with one):

- ``accuracy``: share of predictions equal to the solution.
- ``correct_pixels``: mean pixel agreement; wrong-shape, empty and invalid predictions count as 0.
- ``correct_size``: share of predictions with the solution's shape.
- ``pass_n``: 1 if any prediction is exact.
- ``vote_1`` / ``vote_2``: ``pass_n`` over the 1 / 2 grids with most votes (ties broken by mean
  log-probability per token, see :mod:`runner.voting`). ARC's own score is ``vote_2``.
- ``unanswered``: share of empty or invalid predictions (None, ``[]``, ragged rows, cells outside 0-9).

:func:`submission_metrics` scores a submission (a few attempts per test sample, no votes) as arc24's
``evaluation.evaluate`` does, adding ``max_correct_pixels`` (the best attempt's ``correct_pixels``)
and ``any_correct_size``; where arc24 raises on a ragged attempt, arctui counts it as unanswered.

Pure: no torch, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runner.voting import Grid, ScoredPrediction, is_valid_grid, top_grids

METRIC_NAMES = (
    "accuracy",
    "correct_pixels",
    "correct_size",
    "pass_n",
    "vote_1",
    "vote_2",
    "unanswered",
)
# What each figure means in one line, for every place that shows it (the app, `arctui eval`, the help);
# each is a mean over a task's test samples, then over the tasks.
METRIC_MEANINGS = {
    "vote_2": "tasks whose expected output is among the two most voted grids (ARC's score)",
    "vote_1": "tasks whose most voted grid is the expected output",
    "pass_n": "tasks where any prediction is the expected output",
    "accuracy": "share of predictions equal to the expected output",
    "correct_pixels": "mean share of right cells (0 for a wrong shape)",
    "correct_size": "share of predictions with the expected shape",
    "unanswered": "share of predictions with no valid grid",
}
UNANSWERED_MEANS = ("unanswered = share of predictions with no valid grid: an answer that does not decode "
                    "to one, or a prompt longer than max_seq_len that was not run; it counts as wrong in "
                    "every other figure")
# arc24's evaluate(): the metrics of a submission's attempts.
SUBMISSION_METRIC_NAMES = (
    "accuracy",
    "correct_pixels",
    "correct_size",
    "max_correct_pixels",
    "any_correct_size",
    "pass_n",
    "unanswered",
)


def _shape(grid: Grid) -> tuple[int, int]:
    return len(grid), len(grid[0])


def correct_pixels(prediction: object, solution: Grid) -> float:
    """Share of the solution's cells that the prediction gets right; 0 unless shapes match."""
    if not is_valid_grid(prediction) or _shape(prediction) != _shape(solution):  # type: ignore[arg-type]
        return 0.0
    cells = sum(len(row) for row in solution)
    hits = sum(
        p == s
        for predicted_row, solution_row in zip(prediction, solution, strict=True)  # type: ignore[arg-type]
        for p, s in zip(predicted_row, solution_row, strict=True)
    )
    return hits / cells


def _check_solution(solution: Grid) -> None:
    if not is_valid_grid(solution):
        raise ValueError(f"the solution is not a valid ARC grid: {solution!r}")


def grid_metrics(grids: Sequence[object], solution: Grid) -> dict[str, float]:
    """The metrics of one test sample's grids (at least one) that need no votes; invalid grids
    (None, ``[]``, ragged, cells outside 0-9) count as unanswered and wrong."""
    n = len(grids)
    valid = [is_valid_grid(g) for g in grids]
    exact = [ok and g == solution for ok, g in zip(valid, grids, strict=True)]
    sized = [ok and _shape(g) == _shape(solution) for ok, g in zip(valid, grids, strict=True)]  # type: ignore[arg-type]
    pixels = [correct_pixels(g, solution) for g in grids]
    return {
        "accuracy": sum(exact) / n,
        "correct_pixels": sum(pixels) / n,
        "correct_size": sum(sized) / n,
        "max_correct_pixels": max(pixels),
        "any_correct_size": float(any(sized)),
        "pass_n": float(any(exact)),
        "unanswered": sum(not ok for ok in valid) / n,
    }


def sample_metrics(predictions: Sequence[ScoredPrediction], solution: Grid) -> dict[str, float]:
    """All metrics of one test sample. A sample with no predictions at all is fully unanswered."""
    _check_solution(solution)
    if not predictions:
        return {name: (1.0 if name == "unanswered" else 0.0) for name in METRIC_NAMES}
    plain = grid_metrics([p.grid for p in predictions], solution)
    ranked = top_grids(predictions, 2)
    voted = {"vote_1": float(solution in ranked[:1]), "vote_2": float(solution in ranked[:2])}
    return {name: voted[name] if name in voted else plain[name] for name in METRIC_NAMES}


def _mean_of(rows: Sequence[Mapping[str, float]], names: Sequence[str] = METRIC_NAMES) -> dict[str, float]:
    return {name: sum(row[name] for row in rows) / len(rows) for name in names}


def task_metrics(
    predictions_per_sample: Sequence[Sequence[ScoredPrediction]], solutions: Sequence[Grid]
) -> dict[str, float]:
    """Metrics of one task: the mean over its test samples."""
    if len(predictions_per_sample) != len(solutions):
        raise ValueError(
            f"{len(predictions_per_sample)} prediction lists for {len(solutions)} test samples"
        )
    if not solutions:
        raise ValueError("a task needs at least one test sample to be scored")
    return _mean_of(
        [sample_metrics(preds, sol) for preds, sol in zip(predictions_per_sample, solutions, strict=True)]
    )


def dataset_metrics(
    predictions: Mapping[str, Sequence[Sequence[ScoredPrediction]]],
    solutions: Mapping[str, Sequence[Grid]],
) -> dict[str, float]:
    """Metrics of a data set: the mean over tasks of :func:`task_metrics`.

    ``predictions[task_id][test_index]`` lists the predictions of that test sample;
    ``solutions[task_id][test_index]`` is its solution. Every task with solutions is scored; a task
    missing from ``predictions`` counts as fully unanswered.
    """
    if not solutions:
        raise ValueError("no tasks to score")
    unknown = sorted(set(predictions) - set(solutions))
    if unknown:
        raise ValueError(f"predictions for tasks without solutions: {', '.join(unknown[:5])}")
    rows = [
        task_metrics(predictions.get(task_id, [[] for _ in task_solutions]), task_solutions)
        for task_id, task_solutions in solutions.items()
    ]
    return _mean_of(rows)


def submission_metrics(
    submission: Mapping[str, Sequence[Mapping[str, object]]], solutions: Mapping[str, Sequence[Grid]]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(global metrics, metrics per task) of a submission, as arc24's ``evaluate``: every attempt of a
    test sample (``attempt_1``, ``attempt_2``, ...) is scored like a prediction, a task's metrics are the
    mean over its test samples and the global ones the mean over the tasks *in the submission* (tasks
    it leaves out are not counted). Names: :data:`SUBMISSION_METRIC_NAMES`."""
    if not submission:
        raise ValueError("the submission holds no tasks to score")
    per_task = {}
    for task_id, samples in submission.items():
        if task_id not in solutions:
            raise ValueError(f"the submission has task {task_id!r}, which has no solutions")
        task_solutions = solutions[task_id]
        if len(samples) != len(task_solutions):
            raise ValueError(f"task {task_id!r}: {len(samples)} submitted test samples for {len(task_solutions)} solutions")
        rows = []
        for attempts, solution in zip(samples, task_solutions, strict=True):
            _check_solution(solution)
            if not attempts:
                raise ValueError(f"task {task_id!r}: a test sample has no attempts")
            rows.append(grid_metrics(list(attempts.values()), solution))
        per_task[task_id] = _mean_of(rows, SUBMISSION_METRIC_NAMES)
    return _mean_of(list(per_task.values()), SUBMISSION_METRIC_NAMES), per_task
