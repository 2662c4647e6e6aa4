"""Voting on hand-made predictions: grouping, ties, unanswered and invalid grids."""

from __future__ import annotations

from runner.voting import (
    ScoredPrediction,
    is_valid_grid,
    rank_predictions,
    select_attempts,
    top_grids,
)

A = [[1, 2], [3, 4]]
B = [[4, 3], [2, 1]]
C = [[0]]


def P(grid, logprob=0.0, n_tokens=0):
    return ScoredPrediction(grid=grid, logprob=logprob, n_tokens=n_tokens)


def test_most_votes_wins_and_votes_are_counted():
    ranked = rank_predictions([P(A), P(B), P(B), P(C), P(B), P(A)])
    assert [(r.grid, r.votes) for r in ranked] == [(B, 3), (A, 2), (C, 1)]


def test_tie_in_votes_goes_to_higher_mean_logprob_per_token():
    # A: -4 over 8 tokens = -0.5/token; B: -3 over 3 tokens = -1/token although its total is higher.
    predictions = [P(B, -3.0, 3), P(A, -4.0, 8)]
    assert top_grids(predictions, 2) == [A, B]


def test_mean_logprob_is_the_mean_of_each_predictions_per_token_logprob():
    ranked = rank_predictions([P(A, -1.0, 2), P(A, -6.0, 4)])
    assert ranked[0].mean_logprob == -1.0  # (-0.5 + -1.5) / 2; pooled it would be -7/6


def test_tie_break_does_not_pool_predictions_of_different_lengths():
    # Rotated frames give one grid answers of different lengths. A: per token -0.1 and -1.0, mean -0.55
    # (pooled: -10.5/15 = -0.7); B: -0.6 twice. arc24 ranks A first; pooling would rank B first.
    predictions = [P(B, -0.6, 1), P(A, -0.5, 5), P(B, -0.6, 1), P(A, -10.0, 10)]
    assert top_grids(predictions, 2) == [A, B]


def test_votes_beat_logprob():
    predictions = [P(A, -0.01, 10), P(B, -9.0, 3), P(B, -9.0, 3)]
    assert top_grids(predictions, 1) == [B]


def test_full_tie_keeps_first_seen_order():
    predictions = [P(C, -1.0, 1), P(A, -1.0, 1), P(B, -1.0, 1)]
    assert top_grids(predictions, 3) == [C, A, B]


def test_unanswered_and_invalid_cast_no_vote():
    predictions = [P(None), P([]), P([[1, 2], [3]]), P([[10]]), P([[True]]), P(A), P(None)]
    ranked = rank_predictions(predictions)
    assert [(r.grid, r.votes) for r in ranked] == [(A, 1)]


def test_attempts_for_submission():
    assert select_attempts([P(A), P(B), P(A)]) == {"attempt_1": A, "attempt_2": B}
    # arc24 writes [] for an attempt it has no grid for
    assert select_attempts([P(A)]) == {"attempt_1": A, "attempt_2": []}
    assert select_attempts([P(None), P([])]) == {"attempt_1": [], "attempt_2": []}
    assert select_attempts([]) == {"attempt_1": [], "attempt_2": []}
    assert select_attempts([P(A), P(B), P(C), P(C)], n=3) == {"attempt_1": C, "attempt_2": A, "attempt_3": B}


def test_ranked_grids_are_copies():
    grid = [[1]]
    ranked = rank_predictions([P(grid)])
    ranked[0].grid[0][0] = 7
    assert grid == [[1]]


def test_is_valid_grid():
    assert is_valid_grid([[0, 9], [5, 5]])
    assert not is_valid_grid([])
    assert not is_valid_grid([[]])
    assert not is_valid_grid([[1], [1, 2]])
    assert not is_valid_grid([[-1]])
    assert not is_valid_grid("12\n30")
    assert not is_valid_grid(None)
