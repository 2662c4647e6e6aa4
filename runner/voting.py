"""Voting: turn many predictions of one test sample into a ranked list of distinct grids.

Identical grids (after reverting each prediction's augmentation) are grouped; groups are ranked by
the number of votes, then by mean log-probability per generated token (higher is better), then by
the order in which the grid first appeared so the ranking is deterministic. The top two grids are a
Kaggle submission's ``attempt_1`` / ``attempt_2``.

Pure: no torch, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Grid = list[list[int]]

# Kaggle's format needs two attempts per test sample even when fewer distinct grids were predicted;
# a 1x1 background grid is a valid ARC grid that almost never scores.
FALLBACK_GRID: Grid = [[0]]


@dataclass(frozen=True)
class ScoredPrediction:
    """One prediction of one test sample: the grid (None when unanswered or invalid), the summed
    log-probability of its generated tokens and how many tokens were generated."""

    grid: Grid | None
    logprob: float = 0.0
    n_tokens: int = 0


@dataclass(frozen=True)
class RankedGrid:
    """A distinct grid, the number of predictions that voted for it and their pooled mean
    log-probability per token (summed log-probs / summed tokens)."""

    grid: Grid
    votes: int
    mean_logprob: float


def is_valid_grid(grid: object) -> bool:
    """A non-empty rectangular list of non-empty rows of ints 0-9."""
    if not isinstance(grid, list) or not grid:
        return False
    width = None
    for row in grid:
        if not isinstance(row, list) or not row:
            return False
        if width is None:
            width = len(row)
        elif len(row) != width:
            return False
        for cell in row:
            if isinstance(cell, bool) or not isinstance(cell, int) or not 0 <= cell <= 9:
                return False
    return True


def _grid_key(grid: Grid) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(row) for row in grid)


def rank_predictions(predictions: Sequence[ScoredPrediction]) -> list[RankedGrid]:
    """Distinct valid grids, most voted first; ties go to the higher mean log-prob per token, then to
    the grid seen first. Unanswered and invalid predictions cast no vote."""
    order: list[tuple[tuple[int, ...], ...]] = []
    votes: dict[tuple[tuple[int, ...], ...], int] = {}
    logprob_sum: dict[tuple[tuple[int, ...], ...], float] = {}
    token_sum: dict[tuple[tuple[int, ...], ...], int] = {}
    for prediction in predictions:
        if not is_valid_grid(prediction.grid):
            continue
        key = _grid_key(prediction.grid)  # type: ignore[arg-type]
        if key not in votes:
            order.append(key)
            votes[key] = 0
            logprob_sum[key] = 0.0
            token_sum[key] = 0
        votes[key] += 1
        logprob_sum[key] += prediction.logprob
        token_sum[key] += prediction.n_tokens
    ranked = [
        RankedGrid(
            grid=[list(row) for row in key],
            votes=votes[key],
            # Without token counts there is no per-token mean: such a group loses the tie-break.
            mean_logprob=logprob_sum[key] / token_sum[key] if token_sum[key] else float("-inf"),
        )
        for key in order
    ]
    first_seen = {id(entry): index for index, entry in enumerate(ranked)}
    ranked.sort(key=lambda entry: (-entry.votes, -entry.mean_logprob, first_seen[id(entry)]))
    return ranked


def top_grids(predictions: Sequence[ScoredPrediction], k: int) -> list[Grid]:
    """The k best distinct grids (fewer when fewer were predicted)."""
    return [entry.grid for entry in rank_predictions(predictions)[:k]]


def select_attempts(predictions: Sequence[ScoredPrediction]) -> dict[str, Grid]:
    """``{"attempt_1": G, "attempt_2": G}`` for a submission: the two best grids; missing attempts
    repeat the first grid, or are :data:`FALLBACK_GRID` when nothing valid was predicted."""
    best = top_grids(predictions, 2)
    attempt_1 = best[0] if best else FALLBACK_GRID
    attempt_2 = best[1] if len(best) > 1 else attempt_1
    return {"attempt_1": attempt_1, "attempt_2": attempt_2}
