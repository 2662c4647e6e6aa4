"""Voting: turn many predictions of one test sample into a ranked list of distinct grids.

Identical grids (after reverting each prediction's augmentation) are grouped; groups are ranked by
the number of votes, then by the mean over the group's predictions of each prediction's
log-probability per generated token (higher is better), and groups that rank equal keep the order in
which their grid first appeared. This is arc24's ``select_most_voted_solutions_solving_ties_with_logprob``
(``compat/arc24/voting.jsonl``): a pooled mean (summed log-probs over summed tokens) would rank
differently when one grid's predictions have different lengths, as rotated frames do. The top two
grids are a Kaggle submission's ``attempt_1`` / ``attempt_2``; a missing attempt is ``[]``, as arc24
writes it.

Pure: no torch, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Grid = list[list[int]]

# arc24 writes an attempt it has no grid for as an empty list; it scores as a wrong answer.
NO_ATTEMPT: Grid = []


@dataclass(frozen=True)
class ScoredPrediction:
    """One prediction of one test sample: the grid (None when unanswered or invalid), the summed
    log-probability of its generated tokens and how many tokens were generated."""

    grid: Grid | None
    logprob: float = 0.0
    n_tokens: int = 0

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ScoredPrediction:
        """The prediction a ``predictions.jsonl`` record (``grid``, ``logprob``, ``tokens``) stands for,
        as the evaluation votes with it; a prompt that was not run has no grid, log-prob or tokens."""
        return cls(record.get("grid"), record.get("logprob") or 0.0, record.get("tokens") or 0)


@dataclass(frozen=True)
class RankedGrid:
    """A distinct grid, the number of predictions that voted for it and the mean over those
    predictions of each one's log-probability per token (``-inf`` when one has no token count)."""

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


def _logprob_per_token(prediction: ScoredPrediction) -> float:
    # Without a token count there is no per-token figure: such a prediction loses the tie-break.
    return prediction.logprob / prediction.n_tokens if prediction.n_tokens else float("-inf")


def rank_predictions(predictions: Sequence[ScoredPrediction]) -> list[RankedGrid]:
    """Distinct valid grids, most voted first; ties go to the higher mean over the grid's predictions of
    log-prob per token, then to the grid seen first. Unanswered and invalid predictions cast no vote."""
    scores: dict[tuple[tuple[int, ...], ...], list[float]] = {}  # insertion order = first seen
    for prediction in predictions:
        if is_valid_grid(prediction.grid):
            key = _grid_key(prediction.grid)  # type: ignore[arg-type]
            scores.setdefault(key, []).append(_logprob_per_token(prediction))
    ranked = [
        RankedGrid(grid=[list(row) for row in key], votes=len(values), mean_logprob=sum(values) / len(values))
        for key, values in scores.items()
    ]
    # sort is stable: groups that rank equal keep their first-seen order
    ranked.sort(key=lambda entry: (-entry.votes, -entry.mean_logprob))
    return ranked


def top_grids(predictions: Sequence[ScoredPrediction], k: int) -> list[Grid]:
    """The k best distinct grids (fewer when fewer were predicted)."""
    return [entry.grid for entry in rank_predictions(predictions)[:k]]


def select_attempts(predictions: Sequence[ScoredPrediction], n: int = 2) -> dict[str, Grid]:
    """``{"attempt_1": G, ..., "attempt_n": G}`` for a submission: the ``n`` best grids, best first; an
    attempt without a grid is :data:`NO_ATTEMPT` (``[]``), as arc24 writes it."""
    best = top_grids(predictions, n)
    return {f"attempt_{i + 1}": best[i] if i < len(best) else list(NO_ATTEMPT) for i in range(n)}
