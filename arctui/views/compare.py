"""Runs side by side: the parameters that differ, the summary figures with ratios to a baseline, and
the training loss curves. ``arctui compare`` (every ``--format``) and the app's Compare screen (its
tables and its markdown copy) are both built from one :class:`Comparison`.

The baseline rule (:data:`BASELINE_RULE`): the baseline is the first run in the order given.
``arctui compare A B C`` compares to A; ``--baseline B`` moves B to the front (adding it if it was not
listed). In the app the order given is the order in which runs were marked (space) on the Runs
screen; ``b`` on the Compare screen moves the next run to the front (:func:`rotated`). The baseline is
therefore always the first column.

Ratios are ``value / baseline`` with a verdict from the figure's direction (``0.55x, better`` for a
lower s/step); see :mod:`arctui.views.figures`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from arctui.views.figures import (
    ACCURACY,
    EVAL_LOSS,
    FIGURE_BY_KEY,
    FIGURE_NOTES,
    LOSS,
    MIN_LOSS,
    PEAK_VRAM,
    RATIO_NOTE,
    S_PER_STEP,
    STEPS,
    TOKENS_PER_S,
    Figure,
    ratio,
    ratio_text,
)
from arctui.views.rows import RunRow, row_from_summary
from arctui.views.summary import SETUP_LABELS, MetricSeries, read_series, read_training_setup
from arctui.views.tables import csv_text, markdown_table, text_table
from runner.errors import UserError

BASELINE_RULE = (
    "the baseline is the first run in the order given (the first RUN argument, or the first run marked "
    "on the Runs screen); --baseline RUN or b on the Compare screen moves another run to the front"
)

# The figures a comparison lists, in order (those no run has a value for are left out). Not the
# duration: it depends on the steps run and on the machine's load, and has no better direction.
COMPARED_FIGURES: tuple[Figure, ...] = (STEPS, S_PER_STEP, TOKENS_PER_S, PEAK_VRAM, LOSS, MIN_LOSS, EVAL_LOSS,
                                        ACCURACY)


@dataclass(frozen=True)
class Comparison:
    """Several runs side by side, the baseline first.

    ``params`` holds one tuple of raw config values per run (in ``param_keys`` order); ``figures``
    holds, per compared figure key, one value per run."""

    runs: tuple[RunRow, ...]
    param_keys: tuple[str, ...]
    params: tuple[tuple[Any, ...], ...]
    figures: tuple[tuple[str, tuple[float | int | None, ...]], ...]
    loss_curves: tuple[MetricSeries, ...] = ()
    all_params: bool = False

    @property
    def baseline(self) -> RunRow:
        """The run every ratio refers to (always the first)."""
        return self.runs[0]

    @property
    def run_ids(self) -> list[str]:
        return [r.id for r in self.runs]


def baseline_first(refs: list[str], baseline: str | None) -> list[str]:
    """The baseline rule on references: ``baseline`` moved (or added) to the front of ``refs``."""
    refs = [str(r) for r in refs]
    if baseline is None:
        return refs
    return [str(baseline), *(r for r in refs if r != str(baseline))]


def read_comparison(
    store,
    refs: list[str],
    *,
    baseline: str | None = None,
    all_params: bool = False,
    curves: bool = False,
    now: float | None = None,
    max_points: int = 400,
) -> Comparison:
    """Read ``refs`` (ids or names) from the store, baseline first (see :data:`BASELINE_RULE`).

    ``all_params`` lists every config key, not only those that differ; ``curves`` also reads each
    run's training loss (the app plots them); ``now`` dates the durations of active runs."""
    now = time.time() if now is None else now
    ids = [store.get_run(r).id for r in refs]
    if len(set(ids)) != len(ids):
        raise UserError("compare got the same run twice; list each run once")
    if baseline is not None:
        base_id = store.get_run(baseline).id
        ids = [base_id, *(i for i in ids if i != base_id)]
    if len(ids) < 2:
        raise UserError("compare needs at least two different runs (or one run and --baseline RUN)")
    found = store.compare(ids)
    summaries = found.summaries
    configs = [s.run.config if isinstance(s.run.config, dict) else {} for s in summaries]
    if all_params:
        keys = sorted({k for c in configs for k in c if k != "name"})
    else:
        keys = sorted(k for k in found.config_diff if k != "name")
    # What each run really trained with (optimizer used, LoRA variant): always listed, as flags alone
    # do not say it (a fallback optimizer, a resumed adapter's own settings).
    setups = [read_training_setup(store, s.run.id) for s in summaries]
    setup_keys = [label for label in SETUP_LABELS.values() if any(label in setup for setup in setups)]
    keys = [*keys, *setup_keys]
    configs = [{**c, **setup} for c, setup in zip(configs, setups, strict=True)]
    runs = tuple(row_from_summary(s) for s in summaries)
    every = [(f.key, tuple(r.figure(f.key, now) for r in runs)) for f in COMPARED_FIGURES]
    figures = tuple((key, values) for key, values in every if any(v is not None for v in values))
    loss_curves = ()
    if curves:
        loss_curves = tuple(read_series(store, s.run.id, "loss", max_points, name=s.run.name) for s in summaries)
    return Comparison(
        runs=runs,
        param_keys=tuple(keys),
        params=tuple(tuple(c.get(k) for k in keys) for c in configs),
        figures=figures,
        loss_curves=loss_curves,
        all_params=all_params,
    )


def rotated(comparison: Comparison, steps: int = 1) -> Comparison:
    """The same comparison with the next run (``steps`` on, cyclically) first, so it is the baseline."""
    n = len(comparison.runs)
    k = steps % n if n else 0

    def turn(items: tuple) -> tuple:
        return items[k:] + items[:k] if items else items

    return Comparison(
        runs=turn(comparison.runs),
        param_keys=comparison.param_keys,
        params=turn(comparison.params),
        figures=tuple((key, turn(values)) for key, values in comparison.figures),
        loss_curves=turn(comparison.loss_curves),
        all_params=comparison.all_params,
    )


# -- cells and tables (one shape for the terminal, the app and markdown) -----------------------------

def param_text(value: Any, key: str = "") -> str:
    """A config value in a cell: lists joined, ``[file, prompt_version]`` pairs as ``file version``."""
    if value is None:
        return "-"
    if key == "val_dataset" and isinstance(value, list):
        return " ".join(map(str, value))  # one [file, prompt_version] pair, as train_datasets shows them
    if isinstance(value, list | tuple):
        if all(not isinstance(v, list | tuple) for v in value):
            return ", ".join(param_text(v) for v in value)
        return "; ".join(" ".join(map(str, v)) if isinstance(v, list | tuple) else str(v) for v in value)
    return str(value)


def run_header(row: RunRow, is_baseline: bool) -> str:
    """A run's column header: ``#2 1gpu-2048 (baseline)``."""
    return f"#{row.id} {row.name}" + (" (baseline)" if is_baseline else "")


def run_headers(comparison: Comparison) -> list[str]:
    return [run_header(r, i == 0) for i, r in enumerate(comparison.runs)]


def param_rows(comparison: Comparison) -> list[list[str]]:
    """One row per parameter: its key, then its value in each run."""
    return [
        [key, *(param_text(values[i], key) for values in comparison.params)]
        for i, key in enumerate(comparison.param_keys)
    ]


@dataclass(frozen=True)
class MetricLine:
    """One figure across the runs: label, direction and per run (value text, ratio text)."""

    figure: Figure
    cells: tuple[tuple[str, str], ...]

    def texts(self) -> list[str]:
        """The cells as one string each: ``1.80 (0.55x, better)``."""
        return [f"{value} ({compared})" if compared else value for value, compared in self.cells]


def metric_lines(comparison: Comparison) -> list[MetricLine]:
    """Every compared figure with its value in each run and, after the baseline, its ratio."""
    lines = []
    for key, values in comparison.figures:
        figure = FIGURE_BY_KEY[key]
        base = values[0]
        cells = tuple(
            (figure.text(v), ratio_text(figure, v, base) if i else "") for i, v in enumerate(values)
        )
        lines.append(MetricLine(figure, cells))
    return lines


METRIC_HEADERS = ["metric", "better"]


def metric_rows(comparison: Comparison) -> list[list[str]]:
    """Rows under ``METRIC_HEADERS + run_headers``: label, ``lower``/``higher`` (or empty), cells."""
    return [[line.figure.label, line.figure.better or "", *line.texts()] for line in metric_lines(comparison)]


def _params_title(comparison: Comparison) -> str:
    return "parameters" if comparison.all_params else "parameters that differ"


def _metrics_title(comparison: Comparison) -> str:
    return f"metrics (baseline {run_header(comparison.baseline, False)}; {RATIO_NOTE})"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def comparison_markdown(comparison: Comparison) -> str:
    """The comparison as markdown for an iteration note: parameters, then figures (``arctui compare
    --format markdown`` and the Compare screen's copy write exactly this)."""
    headers = run_headers(comparison)
    parts = []
    if comparison.param_keys:
        parts += [f"**{_capital(_params_title(comparison))}**", "", markdown_table(["parameter", *headers], param_rows(comparison)), ""]
    else:
        parts += ["**Parameters**: all equal", ""]
    parts += [f"**{_capital(_metrics_title(comparison))}**", "",
              markdown_table([*METRIC_HEADERS, *headers], metric_rows(comparison)), "", FIGURE_NOTES]
    return "\n".join(parts) + "\n"


def comparison_text(comparison: Comparison) -> str:
    """The comparison as plain-text tables for a terminal (same rows and columns as the markdown)."""
    headers = run_headers(comparison)
    parts = []
    if comparison.param_keys:
        parts += [_params_title(comparison), text_table(["parameter", *headers], param_rows(comparison)), ""]
    else:
        parts += ["parameters: all equal", ""]
    parts += [_metrics_title(comparison), text_table([*METRIC_HEADERS, *headers], metric_rows(comparison)), "", FIGURE_NOTES]
    return "\n".join(parts)


def comparison_record(comparison: Comparison) -> dict[str, Any]:
    """The comparison for ``--format json``: raw numbers; ``ratios`` are value / baseline for figures
    with a direction (None for the baseline itself and where a value is missing)."""
    figures = [FIGURE_BY_KEY[key] for key, _ in comparison.figures]
    runs = []
    for j, row in enumerate(comparison.runs):
        metrics = {key: values[j] for key, values in comparison.figures}
        ratios = {
            f.key: (ratio(values[j], values[0]) if j else None)
            for f, (_key, values) in zip(figures, comparison.figures, strict=True)
            if f.better
        }
        runs.append({
            "id": int(row.id) if row.id.isdigit() else row.id, "name": row.name, "status": row.status,
            "baseline": j == 0,
            "params": dict(zip(comparison.param_keys, comparison.params[j], strict=True)),
            "metrics": metrics, "ratios": ratios,
        })
    return {
        "baseline": runs[0]["id"],
        "baseline_rule": BASELINE_RULE,
        "param_keys": list(comparison.param_keys),
        "figures": [{"key": f.key, "label": f.label, "better": f.better, "definition": f.definition} for f in figures],
        "runs": runs,
    }


def comparison_csv(comparison: Comparison) -> str:
    """One line per run: identity, parameters, figures and ratios to the baseline."""
    record = comparison_record(comparison)
    keys = [key for key, _ in comparison.figures]
    ratio_keys = [f["key"] for f in record["figures"] if f["better"]]
    headers = ["id", "name", "status", "baseline", *comparison.param_keys, *keys, *(f"{k}_ratio" for k in ratio_keys)]
    rows = []
    for run in record["runs"]:
        params = [json.dumps(v) if isinstance(v, list | tuple | dict) else v for v in run["params"].values()]
        rows.append([run["id"], run["name"], run["status"], run["baseline"], *params,
                     *(run["metrics"][k] for k in keys), *(run["ratios"][k] for k in ratio_keys)])
    return csv_text(headers, rows)
