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


def sample_metrics(predictions: Sequence[ScoredPrediction], solution: Grid) -> dict[str, float]:
    """All metrics of one test sample. A sample with no predictions at all is fully unanswered."""
    if not is_valid_grid(solution):
        raise ValueError(f"the solution is not a valid ARC grid: {solution!r}")
    n = len(predictions)
    if n == 0:
        return {name: (1.0 if name == "unanswered" else 0.0) for name in METRIC_NAMES}
    grids = [p.grid for p in predictions]
    valid = [is_valid_grid(g) for g in grids]
    exact = [ok and g == solution for ok, g in zip(valid, grids, strict=True)]
    ranked = top_grids(predictions, 2)
    return {
        "accuracy": sum(exact) / n,
        "correct_pixels": sum(correct_pixels(g, solution) for g in grids) / n,
        "correct_size": sum(ok and _shape(g) == _shape(solution) for ok, g in zip(valid, grids, strict=True))
        / n,
        "pass_n": float(any(exact)),
        "vote_1": float(solution in ranked[:1]),
        "vote_2": float(solution in ranked[:2]),
        "unanswered": sum(not ok for ok in valid) / n,
    }


def _mean_of(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return {name: sum(row[name] for row in rows) / len(rows) for name in METRIC_NAMES}


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
