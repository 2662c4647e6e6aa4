"""``arctui runs | show | compare``: what ran, how it went, and how runs compare.

    arctui runs --where "model~SmolLM and msl>=2048" --sort s_per_step --limit 20 --format csv
    arctui show 12
    arctui compare 3 4 5 --baseline 3 --format markdown      # paste into an iteration note

These commands only read the store: they never import torch (checked by tests), so they answer fast.
Rows, labels, summaries and comparisons come from the view layer (:mod:`arctui.views`), the same code
the app's screens show, so both front ends agree figure for figure.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime

from arctui.formatting import format_duration
from arctui.views.compare import (
    comparison_csv,
    comparison_markdown,
    comparison_record,
    comparison_text,
    read_comparison,
)
from arctui.views.figures import FIGURE_DEFINITIONS
from arctui.views.manage import hidden_runs
from arctui.views.rows import (
    RUN_COLUMNS,
    RunRow,
    job_line,
    job_record,
    read_runs,
    row_from_summary,
    run_cells,
    run_record,
)
from arctui.views.summary import read_training_setup, summary_lines, summary_record
from arctui.views.tables import csv_text, text_table
from runner.errors import UserError

FORMATS = ("table", "json", "csv")
COMPARE_FORMATS = ("table", "markdown", "csv", "json")


def register(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list runs", description="List runs, newest first (archived runs "
                              "only with a filter that names them: --where tag=archived).")
    p.add_argument("--where", default=None, metavar="EXPR",
                   help="filter, e.g. \"model~SmolLM and msl>=2048 and status=completed\"")
    p.add_argument("--sort", default=None, metavar="KEY", help="sort key, e.g. s_per_step, loss, created")
    p.add_argument("--asc", action="store_true", help="ascending order (default: descending)")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N runs (default 50; 0 = all)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=runs_command)

    p = subparsers.add_parser("show", help="one run: config, summary, events, log tail, checkpoints")
    p.add_argument("run", metavar="RUN", help="run id or name")
    p.add_argument("--events", type=int, default=10, metavar="N", help="recent events to show")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=show_command)

    p = subparsers.add_parser("compare", help="compare runs: differing parameters, metrics, ratios")
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more run ids or names")
    p.add_argument("--baseline", default=None, metavar="RUN", help="run the ratios refer to, moved to the front (default: the first RUN)")
    p.add_argument("--all-params", action="store_true", help="every parameter, not only those that differ")
    p.add_argument("--format", choices=COMPARE_FORMATS, default="table")
    p.set_defaults(func=compare_command)


# -- runs --------------------------------------------------------------------------------------------

def runs_command(args) -> int:
    from arctui.supervisor import open_store

    if args.limit < 0:
        raise UserError("--limit must be >= 0 (0 = all runs)")
    store = open_store(args.db)
    try:
        rows = read_runs(store, args.where, args.sort, not args.asc, args.limit or None, also=hidden_runs(args.where))
    finally:
        store.close()
    now = time.time()
    if args.format == "json":
        print(json.dumps([run_record(r, now) for r in rows], indent=1))
    elif args.format == "csv":
        records = [run_record(r, now) for r in rows]
        keys = list(records[0]) if records else list(run_record(RunRow("0", "", ""), now))
        sys.stdout.write(csv_text(keys, [[";".join(v) if isinstance(v, list) else v for v in r.values()]
                                         for r in records]))
    elif rows:
        print(text_table([c.label for c in RUN_COLUMNS], [run_cells(r, now) for r in rows]))
    else:
        print("no runs" + (" match --where" if args.where else "; start one with `arctui launch configs/tiny-cpu.yaml`"))
    return 0


# -- show --------------------------------------------------------------------------------------------

def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if dt else None


def show_command(args) -> int:
    import yaml

    from arctui.supervisor import RunFolder, open_store
    from arctui.supervisor.runfolder import tail_lines

    if args.events < 0:
        raise UserError("--events must be >= 0")
    store = open_store(args.db)
    try:
        detail = store.run_detail(args.run, events=args.events)
        setup = read_training_setup(store, args.run)
    finally:
        store.close()
    summary = detail.summary
    run = summary.run
    row = row_from_summary(summary)
    now = time.time()
    folder = RunFolder.of(run)
    log_tail = tail_lines(folder.log_file, 15)
    if args.format == "json":
        print(json.dumps({
            "run": run_record(row, now), "summary": summary_record(row, now), "config": run.config,
            "training_setup": setup,
            "last_error": run.last_error, "exit_code": run.exit_code,
            "output_dir": run.output_dir, "log_path": run.log_path,
            "metrics": {k: _plain(v) for k, v in detail.metrics.items()},
            "recent_events": [e.data for e in detail.recent_events],
            "checkpoints": [e.data for e in detail.checkpoints],
            "evals": [_plain(e) for e in detail.evals],
            "log_tail": log_tail, "slurm": job_record(run),
        }, indent=1, default=str))
        return 0
    out = [f"run {run.id}  {run.name}  [{run.status}]" + (f"  exit {run.exit_code}" if run.exit_code is not None else "")]
    out.append(f"  created {_iso(run.created_at)}  started {_iso(run.started_at) or '-'}  ended "
               f"{_iso(run.ended_at) or '-'}  duration {format_duration(row.duration(now))}")
    out.append(f"  host {run.host or '-'}  supervisor pid {run.supervisor_pid or '-'}  process group "
               f"{run.pgid or '-'}  GPUs {row.gpus or '-'}")
    if job_line(run):
        out.append(f"  {job_line(run)}")
    out.append(f"  folder {folder.root}")
    if run.tags or run.notes:
        out.append(f"  tags {', '.join(run.tags) or '-'}  notes {run.notes or '-'}")
    out.append("")
    out.append(f"summary ({summary.points} logged points)")
    out += ["  " + line for line in summary_lines(row, now)]
    out += ["  " + line for line in FIGURE_DEFINITIONS]
    if setup:
        out.append("")
        out.append("training setup (as run)")
        out += [f"  {label} {text}" for label, text in setup.items()]
    if run.last_error:
        out.append("")
        out.append("last error")
        out += ["  " + line for line in run.last_error.splitlines()]
    out.append("")
    out.append("config")
    out += ["  " + line for line in yaml.safe_dump(run.config, sort_keys=False, default_flow_style=None).splitlines()]
    if detail.evals:
        out.append("")
        out.append("evaluations")
        for e in detail.evals:
            out.append(f"  step {e.step}  {e.dataset}  {e.metric} {e.value:.4g}")
    out.append("")
    out.append("checkpoints")
    if detail.checkpoints:
        out += [f"  step {e.step}  {e.data.get('path', '')}" for e in detail.checkpoints]
    else:
        out.append("  none")
    out.append("")
    out.append(f"recent events (newest first, {len(detail.recent_events)})")
    for e in detail.recent_events:
        fields = {k: v for k, v in e.data.items() if k not in ("seq", "time", "event", "config", "versions",
                                                               "traceback")}
        text = " ".join(f"{k}={_short(v)}" for k, v in fields.items())
        out.append(f"  #{e.seq} {datetime.fromtimestamp(e.time, UTC).strftime('%H:%M:%S')} {e.kind} {text}"[:160])
    out.append("")
    out.append(f"log tail ({folder.log_file})")
    out += ["  " + line for line in log_tail] or ["  (empty)"]
    print("\n".join(out))
    return 0


def _plain(value):
    import dataclasses

    if dataclasses.is_dataclass(value):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return value


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- compare -----------------------------------------------------------------------------------------

def compare_command(args) -> int:
    from arctui.supervisor import open_store

    if len(args.runs) < 2 and args.baseline is None:
        raise UserError("compare needs at least two runs (or one run and --baseline RUN)")
    store = open_store(args.db)
    try:
        comparison = read_comparison(store, args.runs, baseline=args.baseline, all_params=args.all_params)
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps(comparison_record(comparison), indent=1, default=str))
    elif args.format == "csv":
        sys.stdout.write(comparison_csv(comparison))
    elif args.format == "markdown":
        sys.stdout.write(comparison_markdown(comparison))
    else:
        print(comparison_text(comparison))
    return 0
