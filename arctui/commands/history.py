"""``arctui runs | show | compare``: what ran, how it went, and how runs compare.

    arctui runs --where "model~SmolLM and msl>=2048" --sort s_per_step --limit 20 --format csv
    arctui show 12
    arctui compare 3 4 5 --baseline 3 --format markdown      # paste into an iteration note

These commands only read the store: they never import torch (checked by tests), so they answer fast.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, datetime
from typing import Any

from arctui.formatting import format_duration
from runner.errors import UserError

FORMATS = ("table", "json", "csv")
COMPARE_FORMATS = ("table", "markdown", "csv", "json")


def register(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list runs", description="List runs, newest first.")
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
    p.add_argument("--baseline", default=None, metavar="RUN", help="run the ratios refer to (default: the first)")
    p.add_argument("--all-params", action="store_true", help="every parameter, not only those that differ")
    p.add_argument("--format", choices=COMPARE_FORMATS, default="table")
    p.set_defaults(func=compare_command)


# -- small formatting helpers -------------------------------------------------------------------------

def short_encoder(spec: str | None) -> str | None:
    """``GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))`` -> ``Shape(RowNumber(Minimal))``."""
    if spec is None:
        return None
    return spec.replace("Encoder", "").replace("Grid", "").replace("()", "") or spec


def num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 10 ** digits else f"{value:.{digits}g}"
    return str(value)


def iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if dt else None


def duration_seconds(run) -> float | None:
    if not run.started_at:
        return None
    end = run.ended_at or datetime.now(UTC)
    return max(0.0, (end - run.started_at).total_seconds())


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def csv_text(headers: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([["" if c is None else c for c in row] for row in rows])
    return buf.getvalue()


# -- runs --------------------------------------------------------------------------------------------

RUN_COLUMNS = ("id", "name", "status", "model", "encoder", "msl", "batch", "gpus", "steps", "final_loss",
               "eval_loss", "s_per_step", "peak_vram_gb", "accuracy", "started", "duration")


def run_row(summary) -> dict[str, Any]:
    run = summary.run
    gpus = ",".join(map(str, run.gpu_ids)) if run.gpu_ids else (
        "cpu" if (run.config or {}).get("gpus") == "cpu" else (str(run.gpus) if run.gpus else None))
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "model": run.model,
        "encoder": run.encoder,
        "msl": run.msl,
        "batch": run.batch_size,
        "per_device_batch": run.per_device_batch,
        "gpus": gpus,
        "steps": summary.last_step,
        "max_steps": summary.max_steps,
        "final_loss": summary.final_loss if summary.final_loss is not None else summary.loss,
        "eval_loss": summary.eval_loss,
        "s_per_step": summary.seconds_per_step,
        "tokens_per_second": summary.tokens_per_second,
        "peak_vram_gb": summary.peak_vram_gb,
        "accuracy": summary.accuracy,
        "started": iso(run.started_at),
        "ended": iso(run.ended_at),
        "duration_s": duration_seconds(run),
        "tags": list(run.tags),
    }


def runs_table(rows: list[dict[str, Any]]) -> str:
    headers = ["ID", "NAME", "STATUS", "MODEL", "ENCODER", "MSL", "BATCH", "GPUS", "STEPS", "LOSS",
               "EVAL", "S/STEP", "VRAM GB", "ACC", "STARTED", "DURATION"]
    body = []
    for r in rows:
        steps = "-" if r["steps"] is None else f"{r['steps']}/{r['max_steps'] or '?'}"
        batch = "-" if r["batch"] is None else f"{r['batch']}/{r['per_device_batch'] or '-'}"
        acc = "-" if r["accuracy"] is None else f"{r['accuracy'] * 100:.2f}%"
        body.append([str(r["id"]), r["name"], r["status"], r["model"] or "-", short_encoder(r["encoder"]) or "-",
                     num(r["msl"]), batch, r["gpus"] or "-", steps, num(r["final_loss"]), num(r["eval_loss"]),
                     num(r["s_per_step"], 3), num(r["peak_vram_gb"], 3), acc,
                     (r["started"] or "-")[:16], format_duration(r["duration_s"])])
    return text_table(headers, body)


def runs_command(args) -> int:
    from arctui.supervisor import open_store

    if args.limit < 0:
        raise UserError("--limit must be >= 0 (0 = all runs)")
    store = open_store(args.db)
    try:
        summaries = store.list_runs(args.where, sort=args.sort, limit=args.limit or None,
                                    descending=not args.asc)
    finally:
        store.close()
    rows = [run_row(s) for s in summaries]
    if args.format == "json":
        print(json.dumps(rows, indent=1))
    elif args.format == "csv":
        keys = list(rows[0]) if rows else [*RUN_COLUMNS]
        sys.stdout.write(csv_text(keys, [[";".join(v) if isinstance(v, list) else v for v in r.values()]
                                         for r in rows]))
    else:
        print(runs_table(rows) if rows else "no runs" + (" match --where" if args.where else
                                                         "; start one with `arctui launch configs/tiny-cpu.yaml`"))
    return 0


# -- show --------------------------------------------------------------------------------------------

def show_command(args) -> int:
    import yaml

    from arctui.supervisor import RunFolder, open_store
    from arctui.supervisor.runfolder import tail_lines

    if args.events < 0:
        raise UserError("--events must be >= 0")
    store = open_store(args.db)
    try:
        detail = store.run_detail(args.run, events=args.events)
    finally:
        store.close()
    summary = detail.summary
    run = summary.run
    folder = RunFolder.of(run)
    log_tail = tail_lines(folder.log_file, 15)
    row = run_row(summary)
    if args.format == "json":
        print(json.dumps({
            "run": row, "config": run.config, "last_error": run.last_error, "exit_code": run.exit_code,
            "output_dir": run.output_dir, "log_path": run.log_path,
            "metrics": {k: _plain(v) for k, v in detail.metrics.items()},
            "recent_events": [e.data for e in detail.recent_events],
            "checkpoints": [e.data for e in detail.checkpoints],
            "evals": [_plain(e) for e in detail.evals],
            "log_tail": log_tail,
        }, indent=1, default=str))
        return 0
    out = [f"run {run.id}  {run.name}  [{run.status}]" + (f"  exit {run.exit_code}" if run.exit_code is not None else "")]
    out.append(f"  created {iso(run.created_at)}  started {iso(run.started_at) or '-'}  ended "
               f"{iso(run.ended_at) or '-'}  duration {format_duration(row['duration_s'])}")
    out.append(f"  host {run.host or '-'}  supervisor pid {run.supervisor_pid or '-'}  process group "
               f"{run.pgid or '-'}  GPUs {row['gpus'] or '-'}")
    out.append(f"  folder {folder.root}")
    if run.tags or run.notes:
        out.append(f"  tags {', '.join(run.tags) or '-'}  notes {run.notes or '-'}")
    out.append("")
    out.append("summary")
    out.append(f"  steps {num(summary.last_step)}/{num(summary.max_steps)}  loss {num(summary.loss)} "
               f"(min {num(summary.min_loss)}, final {num(summary.final_loss)})  eval loss {num(summary.eval_loss)}")
    acc = "-" if summary.accuracy is None else f"{summary.accuracy * 100:.2f}%"
    out.append(f"  median s/step {num(summary.seconds_per_step, 3)}  tokens/s {num(summary.tokens_per_second, 4)}  "
               f"peak VRAM {num(summary.peak_vram_gb, 3)} GB  accuracy {acc}  points {summary.points}")
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
            out.append(f"  step {e.step}  {e.dataset}  {e.metric} {num(e.value)}")
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

# (key, header, how to get it from a summary, how the ratio to the baseline is read)
METRICS = (
    ("steps", "steps", lambda s: s.last_step, None),
    ("s_per_step", "s/step", lambda s: s.seconds_per_step, "speed-up"),
    ("tokens_per_second", "tokens/s", lambda s: s.tokens_per_second, "throughput"),
    ("duration_s", "duration", lambda s: duration_seconds(s.run), "time"),
    ("peak_vram_gb", "peak VRAM GB", lambda s: s.peak_vram_gb, "memory"),
    ("final_loss", "final loss", lambda s: s.final_loss if s.final_loss is not None else s.loss, "delta"),
    ("eval_loss", "eval loss", lambda s: s.eval_loss, "delta"),
    ("accuracy", "accuracy", lambda s: s.accuracy, "delta"),
)


def ratio(kind: str | None, value: float | None, base: float | None) -> float | None:
    """speed-up = base s/step / s/step; time, memory, throughput = value / base; delta = value - base."""
    if kind is None or value is None or base is None:
        return None
    if kind == "delta":
        return value - base
    if kind == "speed-up":
        return base / value if value else None
    return value / base if base else None


def ratio_text(kind: str | None, r: float | None, is_baseline: bool) -> str:
    if kind is None:
        return ""
    if is_baseline:
        return "baseline"
    if r is None:
        return ""
    if kind == "speed-up":
        return f"speed-up {r:.2g}x" if r >= 1 else f"slow-down {1 / r:.2g}x"
    if kind == "delta":
        return f"{r:+.3g}"
    return f"{r:.2g}x"


def _param_text(value, key: str = "") -> str:
    if value is None:
        return "-"
    if key == "val_dataset" and isinstance(value, list):
        return " ".join(map(str, value))  # one [file, prompt_version] pair, as train_datasets shows them
    if isinstance(value, list):
        return ", ".join(_param_text(v) for v in value) if all(not isinstance(v, list) for v in value) \
            else "; ".join(" ".join(map(str, v)) if isinstance(v, list) else str(v) for v in value)
    return str(value)


def build_comparison(store, refs: list[str], baseline: str | None, all_params: bool) -> dict[str, Any]:
    runs = [store.get_run(r) for r in refs]
    ids = [r.id for r in runs]
    if len(set(ids)) != len(ids):
        raise UserError("compare got the same run twice; list each run once")
    base_id = store.get_run(baseline).id if baseline is not None else ids[0]
    if base_id not in ids:
        ids.insert(0, base_id)
    comparison = store.compare(ids)
    summaries = comparison.summaries
    configs = [s.run.config or {} for s in summaries]
    if all_params:
        keys = sorted({k for c in configs for k in c if k != "name"})
    else:
        keys = sorted(k for k in comparison.config_diff if k != "name")
    base_index = ids.index(base_id)
    base = summaries[base_index]
    rows = []
    for i, s in enumerate(summaries):
        metrics, ratios = {}, {}
        for key, _header, get, kind in METRICS:
            value = get(s)
            metrics[key] = value
            if kind:
                ratios[key] = ratio(kind, value, get(base)) if i != base_index else None
        rows.append({
            "id": s.run.id, "name": s.run.name, "status": s.run.status, "baseline": i == base_index,
            "params": {k: configs[i].get(k) for k in keys}, "metrics": metrics, "ratios": ratios,
        })
    return {"baseline": base_id, "param_keys": keys, "runs": rows}


def compare_tables(data: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """Both tables have one row per run. Metrics: s/step with a "speed-up" column (as the seed note
    reads), every other metric with its ratio or difference to the baseline in parentheses."""
    p_headers = ["run", *data["param_keys"]]
    p_rows = [[f"{r['id']} {r['name']}", *(_param_text(r["params"][k], k) for k in data["param_keys"])]
              for r in data["runs"]]
    m_headers = ["run", "status"]
    for _key, header, _get, kind in METRICS:
        m_headers.append(header)
        if kind == "speed-up":
            m_headers.append("speed-up")
    m_rows = []
    for r in data["runs"]:
        row = [f"{r['id']} {r['name']}", r["status"]]
        for key, _header, _get, kind in METRICS:
            value = r["metrics"][key]
            if value is None:
                text = "-"
            elif key == "accuracy":
                text = f"{value * 100:.2f}%"
            elif key == "duration_s":
                text = format_duration(value)
            else:
                text = num(value, 4)
            compared = ratio_text(kind, r["ratios"].get(key), r["baseline"])
            if kind == "speed-up":
                row += [text, compared if value is not None else ""]
            elif compared and compared != "baseline" and value is not None:
                row.append(f"{text} ({compared})")
            else:
                row.append(text)
        m_rows.append(row)
    # Drop metric columns that are empty for every run (e.g. accuracy before any evaluation).
    keep = [i for i in range(len(m_headers)) if i < 2 or any(row[i] not in ("-", "") for row in m_rows)]
    m_headers = [m_headers[i] for i in keep]
    m_rows = [[row[i] for i in keep] for row in m_rows]
    return p_headers, p_rows, m_headers, m_rows


def compare_command(args) -> int:
    from arctui.supervisor import open_store

    if len(args.runs) < 2 and args.baseline is None:
        raise UserError("compare needs at least two runs (or one run and --baseline RUN)")
    store = open_store(args.db)
    try:
        data = build_comparison(store, args.runs, args.baseline, args.all_params)
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps(data, indent=1, default=str))
        return 0
    p_headers, p_rows, m_headers, m_rows = compare_tables(data)
    if args.format == "csv":
        headers = ["id", "name", "status", "baseline", *data["param_keys"],
                   *(k for k, *_ in METRICS), *(f"{k}_ratio" for k, _h, _g, kind in METRICS if kind)]
        rows = []
        for r in data["runs"]:
            rows.append([r["id"], r["name"], r["status"], r["baseline"],
                         *(json.dumps(r["params"][k]) if isinstance(r["params"][k], list) else r["params"][k]
                           for k in data["param_keys"]),
                         *(r["metrics"][k] for k, *_ in METRICS),
                         *(r["ratios"].get(k) for k, _h, _g, kind in METRICS if kind)])
        sys.stdout.write(csv_text(headers, rows))
        return 0
    base = next(r for r in data["runs"] if r["baseline"])
    if args.format == "markdown":
        title = "Parameters" if args.all_params else "Parameters that differ"
        parts = []
        if data["param_keys"]:
            parts += [f"**{title}**", "", markdown_table(p_headers, p_rows), ""]
        parts += [f"**Metrics** (baseline: {base['id']} {base['name']})", "", markdown_table(m_headers, m_rows)]
        print("\n".join(parts))
        return 0
    parts = []
    if data["param_keys"]:
        parts += [("parameters" if args.all_params else "parameters that differ"), text_table(p_headers, p_rows), ""]
    else:
        parts += ["parameters: identical", ""]
    parts += [f"metrics (baseline {base['id']} {base['name']})", text_table(m_headers, m_rows)]
    print("\n".join(parts))
    return 0
