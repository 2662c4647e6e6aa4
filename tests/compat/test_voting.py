"""arctui's voting and submission metrics against arc24's: every line of ``voting.jsonl``.

``voting`` lines: arc24's ``select_most_voted_solutions_solving_ties_with_logprob(task_results, n=2)``;
arctui groups the same predictions per test sample and asks :func:`runner.voting.select_attempts`.
``metrics`` lines: arc24's ``evaluation.evaluate(ground_truth, solutions)`` against
:func:`runner.metrics.submission_metrics`. Where arc24 raises (a ragged attempt) arctui scores the
attempt as unanswered instead (``docs/compat.md``).
"""

from __future__ import annotations

import pytest

from runner.metrics import SUBMISSION_METRIC_NAMES, submission_metrics
from runner.voting import ScoredPrediction, select_attempts
from tests.compat.conftest import reference_params

VOTING = reference_params("voting.jsonl", lambda case: f"{case['kind']}-{case['case']}")


def _solutions_from_results(task_results: list[dict], n: int) -> dict[str, list[dict]]:
    """arc24's task results grouped per (task, test sample) as ``runner.evaluate`` groups them."""
    per_sample: dict[str, dict[int, list[ScoredPrediction]]] = {}
    for result in task_results:
        samples = per_sample.setdefault(result["task_id"], {})
        # arc24 stores an invalid prediction as []; arctui as None. Both cast no vote.
        grid = result["grid"] or None
        samples.setdefault(result["idx"], []).append(
            ScoredPrediction(grid, result["cumulative_logprob"], result["n_tokens"])
        )
    return {
        task_id: [select_attempts(samples[index], n) for index in range(max(samples) + 1)]
        for task_id, samples in per_sample.items()
    }


@pytest.mark.parametrize("case", VOTING)
def test_voting_and_metrics_match_arc24(case):
    if case["kind"] == "voting":
        assert _solutions_from_results(case["task_results"], case["n"]) == case["solutions"]
        return
    solutions = {
        task_id: [sample["output"] for sample in task["test"]] for task_id, task in case["ground_truth"].items()
    }
    global_metrics, task_metrics = submission_metrics(case["solutions"], solutions)
    if case["arc24_error"] is None:
        assert global_metrics == pytest.approx(case["global_metrics"])
        assert task_metrics == {t: pytest.approx(m) for t, m in case["task_metrics"].items()}
        assert set(global_metrics) == set(SUBMISSION_METRIC_NAMES)
    else:
        # arc24 raises on a ragged attempt; arctui scores it as an unanswered, wrong attempt.
        assert case["case"] == "ragged prediction grid"
        assert global_metrics == pytest.approx(
            {"accuracy": 0.5, "correct_pixels": 0.5, "correct_size": 0.5, "max_correct_pixels": 1.0,
             "any_correct_size": 1.0, "pass_n": 1.0, "unanswered": 0.5}
        )
