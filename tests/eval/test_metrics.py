"""Every metric on hand-made predictions, including ties, empty and wrong-shape grids."""

from __future__ import annotations

import pytest

from runner.metrics import (
    METRIC_NAMES,
    SUBMISSION_METRIC_NAMES,
    correct_pixels,
    dataset_metrics,
    sample_metrics,
    submission_metrics,
    task_metrics,
)
from runner.voting import ScoredPrediction

SOL = [[1, 2], [3, 4]]
HALF = [[1, 2], [0, 0]]  # right shape, 2 of 4 pixels
WIDE = [[1, 2, 0], [3, 4, 0]]  # wrong shape that contains the solution
OTHER = [[4, 3], [2, 1]]


def P(grid, logprob=0.0, n_tokens=0):
    return ScoredPrediction(grid=grid, logprob=logprob, n_tokens=n_tokens)


def test_correct_pixels():
    assert correct_pixels(SOL, SOL) == 1.0
    assert correct_pixels(HALF, SOL) == 0.5
    assert correct_pixels(WIDE, SOL) == 0.0
    assert correct_pixels([], SOL) == 0.0
    assert correct_pixels(None, SOL) == 0.0
    assert correct_pixels([[1, 2], [3]], SOL) == 0.0


def test_sample_metrics_mixed_predictions():
    # 5 predictions: 1 exact, 1 half right, 1 wrong shape, 1 empty, 1 unanswered.
    m = sample_metrics([P(SOL), P(HALF), P(WIDE), P([]), P(None)], SOL)
    assert m["accuracy"] == pytest.approx(1 / 5)
    assert m["correct_pixels"] == pytest.approx((1 + 0.5) / 5)
    assert m["correct_size"] == pytest.approx(2 / 5)
    assert m["pass_n"] == 1.0
    assert m["unanswered"] == pytest.approx(2 / 5)
    # Every valid grid has one vote; all log-probs tie at no tokens -> first seen wins: SOL.
    assert m["vote_1"] == 1.0 and m["vote_2"] == 1.0


def test_vote_1_and_vote_2_follow_the_ranking():
    # OTHER has 2 votes, SOL has 1: SOL is attempt_2 only.
    m = sample_metrics([P(OTHER), P(SOL), P(OTHER)], SOL)
    assert (m["vote_1"], m["vote_2"], m["pass_n"]) == (0.0, 1.0, 1.0)
    # Three grids, SOL last: passes pass_n but neither vote.
    m = sample_metrics([P(OTHER), P(OTHER), P(HALF), P(HALF), P(SOL)], SOL)
    assert (m["vote_1"], m["vote_2"], m["pass_n"]) == (0.0, 0.0, 1.0)


def test_vote_tie_broken_by_logprob_per_token():
    confident_sol = P(SOL, -1.0, 10)
    unsure_other = P(OTHER, -5.0, 10)
    assert sample_metrics([unsure_other, confident_sol], SOL)["vote_1"] == 1.0
    assert sample_metrics([P(OTHER, -0.5, 10), P(SOL, -5.0, 10)], SOL)["vote_1"] == 0.0


def test_no_predictions_is_fully_unanswered():
    m = sample_metrics([], SOL)
    assert m == {name: (1.0 if name == "unanswered" else 0.0) for name in METRIC_NAMES}


def test_all_unanswered():
    m = sample_metrics([P(None), P(None)], SOL)
    assert m["unanswered"] == 1.0 and m["accuracy"] == 0.0 and m["vote_2"] == 0.0


def test_invalid_solution_is_rejected():
    with pytest.raises(ValueError):
        sample_metrics([P(SOL)], [])


def test_task_averages_its_samples():
    m = task_metrics([[P(SOL), P(SOL)], [P(OTHER), P(None)]], [SOL, SOL])
    assert m["accuracy"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["unanswered"] == pytest.approx((0.0 + 0.5) / 2)
    assert m["pass_n"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        task_metrics([[P(SOL)]], [SOL, SOL])


def test_dataset_averages_tasks_not_samples():
    # Task a: 3 samples all right; task b: 1 sample wrong. Per-task mean -> 0.5 (not 3/4).
    predictions = {"a": [[P(SOL)], [P(SOL)], [P(SOL)]], "b": [[P(OTHER)]]}
    solutions = {"a": [SOL, SOL, SOL], "b": [SOL]}
    m = dataset_metrics(predictions, solutions)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["vote_2"] == pytest.approx(0.5)


def test_dataset_missing_task_counts_as_unanswered():
    m = dataset_metrics({"a": [[P(SOL)]]}, {"a": [SOL], "b": [SOL]})
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["unanswered"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        dataset_metrics({"zzz": [[P(SOL)]]}, {"a": [SOL]})


def test_submission_metrics_score_attempts_per_sample_then_task_as_arc24():
    submission = {
        "a": [{"attempt_1": SOL, "attempt_2": HALF}, {"attempt_1": [], "attempt_2": WIDE}],
        "b": [{"attempt_1": [[1, 2], [3]], "attempt_2": SOL}],  # a ragged attempt: unanswered, not a crash
    }
    global_metrics, per_task = submission_metrics(submission, {"a": [SOL, SOL], "b": [SOL], "c": [SOL]})
    assert set(per_task) == {"a", "b"}  # a task the submission leaves out is not counted
    assert per_task["a"] == pytest.approx(
        {"accuracy": 0.25, "correct_pixels": (1 + 0.5) / 4, "correct_size": 0.5, "max_correct_pixels": 0.5,
         "any_correct_size": 0.5, "pass_n": 0.5, "unanswered": 0.25}
    )
    assert per_task["b"]["unanswered"] == 0.5 and per_task["b"]["pass_n"] == 1.0
    assert global_metrics["accuracy"] == pytest.approx((0.25 + 0.5) / 2)
    assert set(global_metrics) == set(SUBMISSION_METRIC_NAMES)


def test_submission_metrics_refuse_unknown_tasks_and_missing_samples():
    with pytest.raises(ValueError, match="has no solutions"):
        submission_metrics({"zzz": [{"attempt_1": SOL}]}, {"a": [SOL]})
    with pytest.raises(ValueError, match="1 submitted test samples for 2"):
        submission_metrics({"a": [{"attempt_1": SOL}]}, {"a": [SOL, SOL]})
