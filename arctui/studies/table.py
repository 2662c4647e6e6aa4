"""The study table: one row per variant, the seed note's table built from the store.

    table = read_study_table(store, "iteration33", baseline=None)
    print(study_text(table))          # or study_markdown / study_csv / study_record (json)

Columns: the variant, the parameters that differ between its runs, status (with the reason when it
failed: a CUDA OOM reads ``failed: out of memory``), steps, s/step (median), tok/s (mean), peak VRAM,
wall time, final train loss, eval loss, accuracy and vote_2 when evaluated, and the s/step ratio to
the baseline variant (``--baseline NAME``, default the first). Figures, labels and ratios are those of
:mod:`arctui.views.figures`, so the table reads like ``arctui compare``. No textual, no torch.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from arctui.studies.spec import differing_keys
from arctui.views.compare import param_text
from arctui.views.figures import (
    ACCURACY,
    DURATION,
    EVAL_LOSS,
    LOSS,
    PEAK_VRAM,
    RATIO_NOTE,
    S_PER_STEP,
    TOKENS_PER_S,
    Figure,
    ratio,
    ratio_text,
    short_encoder,
)
from arctui.views.rows import RunRow, row_from_summary, steps_text
from arctui.views.tables import csv_text, markdown_table, text_table
from runner.errors import UserError

FINAL_LOSS = Figure("final_loss", "final loss", LOSS.better, "training loss at the end of the run")
VOTE_2 = Figure("vote_2", "vote_2", ACCURACY.better, "ARC score: a test output solved by one of the 2 most voted grids",
                ACCURACY.write)
# The figures of a study row, in order (those no run has are left out of the table, not of json).
STUDY_FIGURES: tuple[Figure, ...] = (S_PER_STEP, TOKENS_PER_S, PEAK_VRAM, DURATION, FINAL_LOSS, EVAL_LOSS, ACCURACY,
                                     VOTE_2)
RATIO_FIGURE = S_PER_STEP
_OOM = re.compile(r"out of memory|OutOfMemoryError|CUDA error: out of memory|\bOOM\b", re.IGNORECASE)


def failure_reason(error: str | None) -> str:
    """A short reason from a run's last error: ``out of memory`` for any CUDA/torch OOM."""
    if not error:
        return ""
    if _OOM.search(error):
        return "out of memory"
    first = error.strip().splitlines()[0] if error.strip() else ""
    first = re.sub(r"^\w+: error: ", "", first)  # the runner's one-line error prefix
    return first[:70] + ("..." if len(first) > 70 else "")


def status_text(status: str, error: str | None) -> str:
    """``completed``, ``running``, ``failed: out of memory``, ``stopped``..."""
    if status in ("failed", "crashed"):
        reason = failure_reason(error)
        return f"{status}: {reason}" if reason else status
    return status


@dataclass(frozen=True)
class StudyRow:
    variant: str
    run: RunRow
    error: str | None
    params: tuple[Any, ...]
    figures: dict[str, float | int | None]

    @property
    def status(self) -> str:
        return status_text(self.run.status, self.error)


@dataclass(frozen=True)
class StudyTable:
    name: str
    status: str
    param_keys: tuple[str, ...]
    rows: tuple[StudyRow, ...]
    baseline: int  # index into rows

    @property
    def shown_figures(self) -> tuple[Figure, ...]:
        return tuple(f for f in STUDY_FIGURES if any(r.figures.get(f.key) is not None for r in self.rows))


def _vote_2(store, run_id: int) -> float | None:
    results = [e for e in store.eval_results(run_id) if e.metric == "vote_2"]
    return results[-1].value if results else None


def read_study_table(store, study_ref, *, baseline: str | None = None, now: float | None = None) -> StudyTable:
    """Read a study and its runs from the store. ``baseline``: a variant (or run) name; default the first."""
    now = time.time() if now is None else now
    study = store.get_study(study_ref)
    summaries = store.study_runs(study.id)
    if not summaries:
        raise UserError(f"study {study.name} has no runs")
    configs = [s.run.config if isinstance(s.run.config, dict) else {} for s in summaries]
    keys = [k for k in differing_keys(configs) if k not in ("tags", "notes", "output_dir")]
    rows = []
    for summary, config in zip(summaries, configs, strict=True):
        row = row_from_summary(summary)
        figures = {f.key: row.figure(f.key, now) for f in (S_PER_STEP, TOKENS_PER_S, PEAK_VRAM, DURATION, EVAL_LOSS,
                                                        ACCURACY)}
        figures["final_loss"] = summary.final_loss if summary.final_loss is not None else summary.loss
        figures["vote_2"] = _vote_2(store, summary.run.id) if summary.accuracy is not None else None
        rows.append(StudyRow(
            variant=summary.run.variant or summary.run.name, run=row, error=summary.run.last_error,
            params=tuple(config.get(k) for k in keys), figures=figures,
        ))
    index = 0
    if baseline is not None:
        names = [r.variant for r in rows]
        matches = [i for i, r in enumerate(rows) if baseline in (r.variant, r.run.name, r.run.id)]
        if not matches:
            raise UserError(f"--baseline: study {study.name} has no variant '{baseline}'; variants: {', '.join(names)}")
        index = matches[0]
    return StudyTable(study.name, study.status, tuple(keys), tuple(rows), index)


def _param_cell(key: str, value: Any) -> str:
    if key == "grid_encoder" and isinstance(value, str):
        return short_encoder(value)
    return param_text(value, key)


def headers(table: StudyTable, figures: tuple[Figure, ...] | None = None) -> list[str]:
    """The table's headers; ``figures`` (default: those some run has) picks the figure columns."""
    ratio_header = f"{RATIO_FIGURE.label.split(' ')[0]} vs baseline"
    shown = table.shown_figures if figures is None else figures
    return ["variant", *table.param_keys, "status", "steps", *(f.label for f in shown), ratio_header]


def cells(table: StudyTable, figures: tuple[Figure, ...] | None = None) -> list[list[str]]:
    """Each row's cells, in the order of :func:`headers` with the same ``figures``."""
    shown = table.shown_figures if figures is None else figures
    base = table.rows[table.baseline].figures.get(RATIO_FIGURE.key)
    out = []
    for i, row in enumerate(table.rows):
        compared = "baseline" if i == table.baseline else ratio_text(RATIO_FIGURE, row.figures.get(RATIO_FIGURE.key), base)
        out.append([
            row.variant, *(_param_cell(k, v) for k, v in zip(table.param_keys, row.params, strict=True)),
            row.status, steps_text(row.run) or "-", *(f.text(row.figures.get(f.key)) for f in shown),
            compared or "-",
        ])
    return out


def _title(table: StudyTable) -> str:
    done = sum(1 for r in table.rows if r.run.status == "completed")
    return (f"study {table.name} ({table.status}; {done} of {len(table.rows)} completed; "
            f"baseline {table.rows[table.baseline].variant}; {RATIO_NOTE})")


def study_text(table: StudyTable) -> str:
    return _title(table) + "\n" + text_table(headers(table), cells(table))


def study_markdown(table: StudyTable) -> str:
    return f"**{_title(table)[:1].upper()}{_title(table)[1:]}**\n\n" + markdown_table(headers(table), cells(table)) + "\n"


def study_record(table: StudyTable) -> dict[str, Any]:
    """Raw numbers for ``--format json``; ``ratios`` are value / baseline for figures with a direction."""
    base = table.rows[table.baseline]
    rows = []
    for i, row in enumerate(table.rows):
        rows.append({
            "variant": row.variant, "run_id": int(row.run.id), "run": row.run.name, "status": row.run.status,
            "reason": failure_reason(row.error) if row.run.status in ("failed", "crashed") else None,
            "baseline": i == table.baseline, "step": row.run.step, "max_steps": row.run.max_steps,
            "params": dict(zip(table.param_keys, row.params, strict=True)),
            "metrics": dict(row.figures),
            "ratios": {f.key: ratio(row.figures.get(f.key), base.figures.get(f.key)) if i != table.baseline else None
                       for f in STUDY_FIGURES if f.better},
        })
    return {"study": table.name, "status": table.status, "baseline": base.variant,
            "param_keys": list(table.param_keys),
            "figures": [{"key": f.key, "label": f.label, "better": f.better, "definition": f.definition}
                        for f in STUDY_FIGURES],
            "rows": rows}


def study_csv(table: StudyTable) -> str:
    record = study_record(table)
    keys = [f.key for f in STUDY_FIGURES]
    ratio_keys = [f.key for f in STUDY_FIGURES if f.better]
    head = ["variant", "run_id", "status", "reason", "baseline", "step", *table.param_keys, *keys,
            *(f"{k}_ratio" for k in ratio_keys)]
    lines = []
    for r in record["rows"]:
        params = [json.dumps(v) if isinstance(v, list | tuple | dict) else v for v in r["params"].values()]
        lines.append([r["variant"], r["run_id"], r["status"], r["reason"], r["baseline"], r["step"], *params,
                      *(r["metrics"].get(k) for k in keys), *(r["ratios"][k] for k in ratio_keys)])
    return csv_text(head, lines)


def render(table: StudyTable, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(study_record(table), indent=2)
    if fmt == "csv":
        return study_csv(table).rstrip("\n")
    if fmt == "markdown":
        return study_markdown(table).rstrip("\n")
    return study_text(table)
