"""A run's evaluated predictions, task by task: what the Predictions screen, ``arctui eval --show`` and
``arctui eval-diff`` show.

An evaluation (``arctui eval`` or the one after training) leaves ``predictions.jsonl`` (one record per
prediction, written by ``runner.evaluate.score_predictions``) and ``metrics.json`` (whose ``config.data``
names the tasks evaluated) in its ``eval-<step>-<data>/`` folder; the store's eval results point at the
predictions file. Here each task gets a status - solved (every test sample's expected output is among
the two most voted grids, ARC's ``vote_2``), unsolved, unanswered (no prediction decoded to a grid) or
unscored (the tasks have no expected outputs) - and each test sample its two most voted candidates
(ranked by :func:`runner.voting.rank_predictions`, the evaluation's own ranking) with their votes, mean
log-probability per token and wrong-cell masks, plus the raw text and decoding error of every invalid
prediction.

    sources = read_eval_sources(store, "12")        # one per (step, data set), newest last
    evaluation = load_predictions(sources[-1])      # reads files: call it from a worker
    shown = sort_tasks(filter_tasks(evaluation.tasks, SOLVED, "00"), "votes")
    diff = read_task_diff(store, "12", "13")        # which tasks each solves that the other does not

No textual, no torch; the reads are meant for thread workers (the app) or a command (the CLI).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arctui.views.evaluations import read_metrics_file
from arctui.views.grid_render import Grid, GridPanel, Mask, shape_label, task_panels, wrong_cells
from runner.errors import DataError, UserError
from runner.voting import ScoredPrediction, is_valid_grid, rank_predictions

SOLVED, UNSOLVED, UNANSWERED, UNSCORED = "solved", "unsolved", "unanswered", "unscored"
STATUSES = (SOLVED, UNSOLVED, UNANSWERED, UNSCORED)
STATUS_MARKS = {SOLVED: "✓", UNSOLVED: "✗", UNANSWERED: "∅", UNSCORED: "?"}
STATUS_STYLES = {SOLVED: "bold green", UNSOLVED: "bold red", UNANSWERED: "yellow", UNSCORED: "dim"}
FILTERS = ("all", SOLVED, UNSOLVED, UNANSWERED)
SORT_KEYS = ("task", "status", "votes", "log-prob")
UNANSWERED_NOTE = ("unanswered: no prediction of the task decoded to a valid grid (an empty or malformed "
                   "answer, or a prompt longer than max_seq_len)")
TOP_K = 2  # ARC scores the two most voted grids (vote_2)
RAW_TEXT_CHARS = 400  # of an invalid prediction's text, shown with its decoding error


# -- where the predictions are ------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalSource:
    """One evaluation of a run: the checkpoint step, the data set, its files and its stored metrics."""

    run_id: int
    run_name: str
    step: int
    dataset: str
    predictions_path: str | None
    metrics: Mapping[str, float]
    created: float = 0.0

    @property
    def label(self) -> str:
        return f"step {self.step} · {self.dataset}"

    @property
    def run_label(self) -> str:
        return f"#{self.run_id} {self.run_name}"


def read_eval_sources(store, run_ref: int | str) -> list[EvalSource]:
    """The run's evaluations, one per (step, data set), the most recently recorded last."""
    run = store.get_run(run_ref)
    grouped: dict[tuple[int, str], dict[str, Any]] = {}
    for result in store.eval_results(run.id):
        entry = grouped.setdefault((result.step, result.dataset), {"metrics": {}, "path": None, "created": 0.0})
        entry["metrics"][result.metric] = result.value
        entry["path"] = entry["path"] or result.predictions_path
        entry["created"] = max(entry["created"], result.created_at.timestamp())
    sources = [
        EvalSource(run.id, run.name, step, dataset, entry["path"], entry["metrics"], entry["created"])
        for (step, dataset), entry in grouped.items()
    ]
    return sorted(sources, key=lambda s: (s.created, s.step, s.dataset))


def latest_source(store, run_ref: int | str) -> EvalSource:
    """The run's most recent evaluation; a one-line UserError when it has none."""
    sources = read_eval_sources(store, run_ref)
    if not sources:
        run = store.get_run(run_ref)
        raise UserError(f"run {run.name} has no evaluation yet; run `arctui eval {run.name}` first")
    return sources[-1]


# -- one task's results -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """A distinct predicted grid among the most voted: its votes, its pooled mean log-probability per
    token, whether it is the expected output (None: no expected output) and its wrong cells (None when
    there is no expected output or the shapes differ)."""

    grid: Grid
    votes: int
    mean_logprob: float
    correct: bool | None
    wrong: Mask | None

    @property
    def wrong_count(self) -> int | None:
        return None if self.wrong is None else sum(sum(row) for row in self.wrong)


@dataclass(frozen=True)
class InvalidPrediction:
    """A prediction that gave no grid: its index, raw text (None when its prompt was not run) and why."""

    prediction_index: int
    text: str | None
    error: str


@dataclass(frozen=True)
class SampleResult:
    """One test sample: its input, expected output, two most voted candidates and invalid predictions."""

    test_index: int
    test_input: Grid | None
    expected: Grid | None
    candidates: tuple[Candidate, ...]
    predictions: int
    invalid: tuple[InvalidPrediction, ...]

    @property
    def solved(self) -> bool | None:
        if self.expected is None:
            return None
        return any(c.correct for c in self.candidates)


@dataclass(frozen=True)
class TaskResult:
    """One task: its status, its train pairs (when the tasks could be read) and its test samples."""

    task_id: str
    status: str
    train: tuple[dict, ...]
    samples: tuple[SampleResult, ...]

    @property
    def mark(self) -> str:
        return STATUS_MARKS[self.status]

    @property
    def votes_label(self) -> str:
        """The top candidate's votes over the predictions, per test sample: ``6/8`` or ``6/8 2/8``."""
        return " ".join(f"{s.candidates[0].votes if s.candidates else 0}/{s.predictions}" for s in self.samples)

    @property
    def agreement(self) -> float:
        """The lowest share of votes the top candidate got over the test samples (0 when unanswered)."""
        shares = [(s.candidates[0].votes / s.predictions) if s.candidates and s.predictions else 0.0
                  for s in self.samples]
        return min(shares, default=0.0)

    @property
    def top_logprob(self) -> float | None:
        """The top candidate's mean log-prob per token, the lowest over the test samples."""
        values = [s.candidates[0].mean_logprob for s in self.samples if s.candidates]
        return min(values) if values else None


def sample_result(test_index: int, test_input: Grid | None, expected: Grid | None,
                  records: Sequence[Mapping[str, Any]]) -> SampleResult:
    """Rank one test sample's predictions and compare the two best with the expected output."""
    ranked = rank_predictions([ScoredPrediction.from_record(r) for r in records])
    candidates = tuple(
        Candidate(
            grid=entry.grid, votes=entry.votes, mean_logprob=entry.mean_logprob,
            correct=None if expected is None else entry.grid == expected,
            wrong=None if expected is None else wrong_cells(entry.grid, expected),
        )
        for entry in ranked[:TOP_K]
    )
    invalid = tuple(
        InvalidPrediction(int(r.get("prediction_index", i)), r.get("text"), str(r.get("error") or "not a valid grid"))
        for i, r in enumerate(records) if not is_valid_grid(r.get("grid"))
    )
    return SampleResult(test_index, test_input, expected, candidates, len(records), invalid)


def task_status(samples: Sequence[SampleResult]) -> str:
    if not any(s.candidates for s in samples):
        return UNANSWERED
    solved = [s.solved for s in samples]
    if any(v is None for v in solved):
        return UNSCORED
    return SOLVED if all(solved) else UNSOLVED


def task_result(task_id: str, task: Mapping[str, Any] | None, records: Sequence[Mapping[str, Any]]) -> TaskResult:
    """A task's result from its prediction records (any order) and its task data (None if unknown)."""
    by_sample: dict[int, list[Mapping[str, Any]]] = {}
    for record in records:
        by_sample.setdefault(int(record.get("test_index", 0)), []).append(record)
    tests = list(task.get("test", [])) if task else []
    samples = []
    for index in sorted(set(by_sample) | set(range(len(tests)))):
        sample = tests[index] if index < len(tests) else {}
        samples.append(sample_result(index, sample.get("input"), sample.get("output"), by_sample.get(index, [])))
    return TaskResult(task_id, task_status(samples), tuple(task.get("train", [])) if task else (), tuple(samples))


# -- one evaluation ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalPredictions:
    """An evaluation's predictions, task by task (ordered by task id), and what could not be read."""

    source: EvalSource
    tasks: tuple[TaskResult, ...]
    data_ref: str | None
    note: str | None = None  # e.g. why train pairs and expected outputs are missing

    def counts(self) -> dict[str, int]:
        return status_counts(self.tasks)

    def task(self, task_id: str) -> TaskResult | None:
        return next((t for t in self.tasks if t.task_id == task_id), None)


def read_records(path: Path) -> dict[str, list[dict]]:
    """``predictions.jsonl`` grouped by task id, streamed line by line (the file can be large)."""
    grouped: dict[str, list[dict]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path}: line {number} is not JSON; the evaluation was cut short, run it again") from None
            grouped.setdefault(str(record.get("task_id")), []).append(record)
    return grouped


def evaluated_data(predictions_path: Path) -> str | None:
    """The tasks the evaluation read (``config.data`` of its ``metrics.json``), or None."""
    config = read_metrics_file(predictions_path.parent).get("config")
    data = config.get("data") if isinstance(config, dict) else None
    return str(data) if data else None


def load_predictions(source: EvalSource) -> EvalPredictions:
    """Read an evaluation's predictions and the tasks it evaluated (slow for big files: use a worker)."""
    from runner.data import load_tasks

    if not source.predictions_path:
        raise UserError(f"run {source.run_name}'s evaluation at {source.label} recorded no predictions file; "
                        f"evaluate again with `arctui eval {source.run_name}`")
    path = Path(source.predictions_path)
    if not path.is_file():
        raise UserError(f"{path} is gone (run {source.run_name}, {source.label}); "
                        f"evaluate again with `arctui eval {source.run_name}`")
    records = read_records(path)
    data_ref, note, tasks = evaluated_data(path), None, {}
    if data_ref is None:
        note = f"no metrics.json next to {path.name}: train pairs and expected outputs are unknown"
    else:
        try:
            tasks = load_tasks(data_ref, require_test_outputs=False)
        except DataError as exc:
            note = f"the evaluated tasks could not be read ({exc}): train pairs and expected outputs are unknown"
    results = tuple(task_result(task_id, tasks.get(task_id), records[task_id]) for task_id in sorted(records))
    return EvalPredictions(source, results, data_ref, note)


def status_counts(tasks: Iterable[TaskResult]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for task in tasks:
        counts[task.status] += 1
    return counts


def filter_tasks(tasks: Iterable[TaskResult], status: str = "all", text: str = "") -> list[TaskResult]:
    """The tasks with ``status`` (``all``: any) whose id contains ``text`` (case-insensitive)."""
    needle = text.strip().lower()
    return [t for t in tasks if (status == "all" or t.status == status) and needle in t.task_id.lower()]


def sort_tasks(tasks: Iterable[TaskResult], key: str = "task") -> list[TaskResult]:
    """By task id; by status (solved first); by votes (most agreed first); by log-prob (highest first)."""
    by_id = sorted(tasks, key=lambda t: t.task_id)
    if key == "status":
        return sorted(by_id, key=lambda t: STATUSES.index(t.status))
    if key == "votes":
        return sorted(by_id, key=lambda t: -t.agreement)
    if key == "log-prob":
        return sorted(by_id, key=lambda t: -(t.top_logprob if t.top_logprob is not None else float("-inf")))
    return by_id


# -- what to draw -----------------------------------------------------------------------------------
def candidate_panels(rank: int, candidate: Candidate, expected: Grid | None) -> list[GridPanel]:
    """A candidate, titled with its votes and mean log-prob, and next to it its wrong cells."""
    verdict = {True: " ✓", False: " ✗", None: ""}[candidate.correct]
    title = f"#{rank} {candidate.votes} vote{'s' if candidate.votes != 1 else ''} · log-p {candidate.mean_logprob:.3f}{verdict}"
    style = {True: "bold green", False: "bold red", None: "bold"}[candidate.correct]
    notes: tuple[str, ...] = ()
    if expected is not None and candidate.wrong is None:
        notes = (f"wrong shape {shape_label(candidate.grid)}, expected {shape_label(expected)}",)
    panels = [GridPanel(title, candidate.grid, notes=notes, title_style=style)]
    if candidate.wrong is not None and candidate.wrong_count:
        panels.append(GridPanel(f"#{rank} {candidate.wrong_count} wrong cell{'s' if candidate.wrong_count != 1 else ''}",
                                mask=candidate.wrong, title_style="bold"))
    return panels


def sample_panels(sample: SampleResult) -> list[GridPanel]:
    """Test input, expected output and the two most voted candidates of one test sample."""
    panels = []
    if sample.test_input is not None:
        panels.append(GridPanel(f"test {sample.test_index} input {shape_label(sample.test_input)}", sample.test_input))
    if sample.expected is not None:
        panels.append(GridPanel(f"expected {shape_label(sample.expected)}", sample.expected))
    for rank, candidate in enumerate(sample.candidates, 1):
        panels += candidate_panels(rank, candidate, sample.expected)
    if not sample.candidates:
        panels.append(GridPanel(f"no valid prediction (0 of {sample.predictions})", title_style="bold yellow"))
    return panels


def train_panels(task: TaskResult) -> list[GridPanel]:
    return task_panels({"train": list(task.train)})[0]


def invalid_lines(sample: SampleResult, limit: int = 3) -> list[str]:
    """The first ``limit`` invalid predictions of a sample: decoding error, then raw text."""
    lines = []
    if sample.invalid:
        lines.append(f"test {sample.test_index}: {len(sample.invalid)} of {sample.predictions} predictions gave no grid")
    for invalid in sample.invalid[:limit]:
        lines.append(f"  prediction {invalid.prediction_index}: {invalid.error}")
        if invalid.text is None:
            lines.append("    (not generated)")
        else:
            text = invalid.text if len(invalid.text) <= RAW_TEXT_CHARS else invalid.text[:RAW_TEXT_CHARS] + "…"
            lines += ["    " + line for line in (text.splitlines() or [repr(text)])]
    return lines


def task_heading(task: TaskResult) -> str:
    solved = [s.solved for s in task.samples]
    parts = [f"{task.mark} {task.task_id}  {task.status}"]
    if len(solved) > 1 and all(v is not None for v in solved):
        parts.append(f"{sum(bool(v) for v in solved)}/{len(solved)} test samples solved")
    parts.append(f"votes {task.votes_label}")
    return "  ·  ".join(parts)


# -- two runs on the same tasks ---------------------------------------------------------------------
@dataclass(frozen=True)
class TaskDiff:
    """Two evaluations on the same tasks: which each solves that the other does not (the set
    difference), which both and neither solve, over the tasks both evaluated with expected outputs."""

    a: EvalSource
    b: EvalSource
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    both: tuple[str, ...]
    neither: tuple[str, ...]
    not_in_both: int  # tasks only one of the two evaluated (or that have no expected output)

    @property
    def common(self) -> int:
        return len(self.only_a) + len(self.only_b) + len(self.both) + len(self.neither)


def solved_sets(a: Mapping[str, str], b: Mapping[str, str]) -> tuple[list[str], list[str], list[str], list[str], int]:
    """From task id -> status of two evaluations: (only a solves, only b solves, both, neither, tasks
    not scored in both), each list sorted by task id. Unscored tasks take no part."""
    scored_a = {t for t, s in a.items() if s != UNSCORED}
    scored_b = {t for t, s in b.items() if s != UNSCORED}
    common = scored_a & scored_b
    solved_a = {t for t in common if a[t] == SOLVED}
    solved_b = {t for t in common if b[t] == SOLVED}
    not_in_both = len((set(a) | set(b)) - common)
    return (sorted(solved_a - solved_b), sorted(solved_b - solved_a), sorted(solved_a & solved_b),
            sorted(common - solved_a - solved_b), not_in_both)


def pick_pair(sources_a: Sequence[EvalSource], sources_b: Sequence[EvalSource],
              dataset: str | None = None) -> tuple[EvalSource, EvalSource]:
    """Each run's newest evaluation on one data set both evaluated (``dataset``, or the newest shared).
    Both lists must be non-empty."""
    datasets_b = {s.dataset for s in sources_b}
    for source in reversed(sources_a):
        if source.dataset in datasets_b and (dataset is None or source.dataset == dataset):
            match = [s for s in sources_b if s.dataset == source.dataset]
            return source, match[-1]
    a, b = sources_a[-1], sources_b[-1]
    if dataset is not None:
        raise UserError(f"runs {a.run_name} and {b.run_name} are not both evaluated on {dataset}; "
                        f"evaluate them with `arctui eval RUN --data {dataset}`")
    have_a = ", ".join(sorted({s.dataset for s in sources_a}))
    have_b = ", ".join(sorted(datasets_b))
    raise UserError(f"runs {a.run_name} ({have_a}) and {b.run_name} ({have_b}) share no evaluated data set; "
                    f"evaluate both on the same tasks with `arctui eval RUN --data REF`")


def task_diff(a: EvalPredictions, b: EvalPredictions) -> TaskDiff:
    only_a, only_b, both, neither, not_in_both = solved_sets(
        {t.task_id: t.status for t in a.tasks}, {t.task_id: t.status for t in b.tasks})
    return TaskDiff(a.source, b.source, tuple(only_a), tuple(only_b), tuple(both), tuple(neither), not_in_both)


def read_task_diff(store, run_a: int | str, run_b: int | str, *, dataset: str | None = None) -> TaskDiff:
    """Compare two runs' newest evaluations on a shared data set (reads files: use a worker)."""
    sources = []
    for run in (run_a, run_b):
        sources.append(read_eval_sources(store, run))
        if not sources[-1]:
            latest_source(store, run)  # says which run has no evaluation yet
    source_a, source_b = pick_pair(sources[0], sources[1], dataset)
    return task_diff(load_predictions(source_a), load_predictions(source_b))


def task_diff_lines(diff: TaskDiff) -> list[str]:
    """The comparison as text lines (``arctui eval-diff`` and the app)."""
    a, b = diff.a, diff.b
    lines = [
        f"solved tasks: run {a.run_label} ({a.label}) vs run {b.run_label} ({b.label})",
        f"on the {diff.common} tasks both evaluated with expected outputs"
        + (f" ({diff.not_in_both} more left out: evaluated by one run only, or unscored)" if diff.not_in_both else ""),
        f"  solved by both     {len(diff.both)}",
        f"  solved by neither  {len(diff.neither)}",
        f"  only {a.run_label:<14} {len(diff.only_a)}" + (f": {' '.join(diff.only_a)}" if diff.only_a else ""),
        f"  only {b.run_label:<14} {len(diff.only_b)}" + (f": {' '.join(diff.only_b)}" if diff.only_b else ""),
    ]
    return lines


def task_diff_record(diff: TaskDiff) -> dict[str, Any]:
    def side(source: EvalSource) -> dict[str, Any]:
        return {"run_id": source.run_id, "run": source.run_name, "step": source.step, "dataset": source.dataset}

    return {"a": side(diff.a), "b": side(diff.b), "common_tasks": diff.common, "not_in_both": diff.not_in_both,
            "only_a": list(diff.only_a), "only_b": list(diff.only_b), "both": list(diff.both),
            "neither": list(diff.neither)}
