"""What the screens show, as plain dataclasses, and the reads (run in thread workers) that fill them.

The screens never touch the store or the file system themselves: a worker calls one of the ``read_*``
functions here and posts the result in a message from :mod:`arctui.messages`. Keeping the view data
plain makes the widgets testable with fixed data and keeps SQL in ``db.store``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACTIVE_STATUSES = frozenset({"queued", "running"})


@dataclass(frozen=True)
class RunRow:
    """One line of the Runs table: identity, settings people filter on and the live summary."""

    id: str
    name: str
    status: str
    model: str = ""
    encoder: str = ""
    max_seq_len: int | None = None
    batch_size: int | None = None
    per_device_batch: int | None = None
    gpus: str = ""
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    eval_loss: float | None = None
    seconds_per_step: float | None = None
    tokens_per_second: float | None = None
    peak_vram_gb: float | None = None
    accuracy: float | None = None
    created_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    tags: tuple[str, ...] = ()

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


@dataclass(frozen=True)
class GpuReading:
    """One GPU as last sampled: memory, utilization and the run that holds it (if any)."""

    index: int
    name: str
    memory_used_gb: float | None
    memory_total_gb: float | None
    utilization: float | None  # percent 0..100
    run_id: str | None = None
    run_name: str | None = None


@dataclass(frozen=True)
class MetricSeries:
    """A metric over steps, already downsampled by the store."""

    key: str
    steps: tuple[float, ...]
    values: tuple[float, ...]

    @property
    def last(self) -> float | None:
        return self.values[-1] if self.values else None


@dataclass(frozen=True)
class RunDetail:
    """Everything the Run screen shows for one run."""

    row: RunRow
    config: dict = field(default_factory=dict)
    series: dict[str, MetricSeries] = field(default_factory=dict)
    gpus: tuple[GpuReading, ...] = ()
    log_tail: tuple[str, ...] = ()
    share_over_msl: float | None = None
    last_error: str | None = None
    output_dir: str | None = None


@dataclass(frozen=True)
class Comparison:
    """Several runs side by side: parameters that differ, metrics, and their loss curves."""

    runs: tuple[RunRow, ...]
    differing: tuple[tuple[str, tuple[str, ...]], ...]
    metrics: tuple[tuple[str, tuple[float | None, ...]], ...]
    loss_curves: tuple[MetricSeries, ...]
    baseline: int = 0


# ---------------------------------------------------------------------------------------------------
# Reads. Each takes an open ``db.store.RunStore`` and runs in a thread worker.

# Metric keys the Run screen plots (as written by the store's ingestion of runner events).
PLOTTED_KEYS = ("loss", "eval_loss", "seconds_per_step", "tokens_per_second")
LOG_TAIL_BYTES = 64 * 1024


def _timestamp(value) -> float | None:
    return value.timestamp() if value is not None else None


def row_from_summary(summary) -> RunRow:
    """Flatten a store ``RunSummary`` into the row the Runs table shows."""
    run = summary.run
    if run.gpu_ids:
        gpus = ",".join(str(i) for i in run.gpu_ids)
    else:
        requested = run.config.get("gpus") if isinstance(run.config, dict) else None
        if isinstance(requested, list | tuple):
            gpus = ",".join(str(i) for i in requested)
        elif requested:
            gpus = str(requested)
        else:
            gpus = f"{run.gpus}x" if run.gpus else ""
    return RunRow(
        id=str(run.id),
        name=run.name,
        status=run.status,
        model=run.model or "",
        encoder=run.encoder or "",
        max_seq_len=run.msl,
        batch_size=run.batch_size,
        per_device_batch=run.per_device_batch,
        gpus=gpus,
        step=summary.last_step,
        max_steps=summary.max_steps,
        loss=summary.loss if summary.loss is not None else summary.final_loss,
        eval_loss=summary.eval_loss,
        seconds_per_step=summary.seconds_per_step,
        tokens_per_second=summary.tokens_per_second,
        peak_vram_gb=summary.peak_vram_gb,
        accuracy=summary.accuracy,
        created_at=_timestamp(run.created_at),
        started_at=_timestamp(run.started_at),
        ended_at=_timestamp(run.ended_at),
        tags=tuple(run.tags),
    )


def read_runs(store, where: str, sort: str, descending: bool, limit: int) -> list[RunRow]:
    """The runs matching ``where`` (the store's filter language), sorted, at most ``limit``."""
    summaries = store.list_runs(where.strip() or None, sort=sort, limit=limit, descending=descending)
    return [row_from_summary(s) for s in summaries]


def read_log_tail(path: str | None, lines: int = 200) -> tuple[str, ...]:
    """The last ``lines`` lines of a run's log file (empty when there is none yet)."""
    if not path:
        return ()
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            data = handle.read()
    except OSError:
        return ()
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    return tuple(line for line in text.splitlines() if line.strip())[-lines:]


def _series(store, ref, key: str, max_points: int) -> MetricSeries:
    points = store.metric_series(ref, key, max_points=max_points)
    return MetricSeries(key, tuple(float(p.step) for p in points), tuple(float(p.value) for p in points))


def gpu_from_sample(sample, run_names: dict[int, str] | None = None) -> GpuReading:
    run_names = run_names or {}
    return GpuReading(
        index=sample.gpu_index,
        name=sample.gpu_name,
        memory_used_gb=None if sample.memory_used_mb is None else sample.memory_used_mb / 1024,
        memory_total_gb=None if sample.memory_total_mb is None else sample.memory_total_mb / 1024,
        utilization=sample.utilization_pct,
        run_id=None if sample.run_id is None else str(sample.run_id),
        run_name=run_names.get(sample.run_id),
    )


def read_run_detail(store, ref, *, max_points: int = 400, log_lines: int = 200) -> RunDetail:
    """One run's summary, plotted series, latest GPU samples, skipped-prompt share and log tail."""
    detail = store.run_detail(ref, events=0)
    run = detail.summary.run
    keys = set(detail.metrics)
    series = {key: _series(store, run.id, key, max_points) for key in PLOTTED_KEYS if key in keys}
    share = None
    starts = store.recent_events(run.id, limit=1, kinds=["start"])
    if starts:
        share = starts[0].data.get("share_over_msl")
    return RunDetail(
        row=row_from_summary(detail.summary),
        config=dict(run.config) if isinstance(run.config, dict) else {},
        series=series,
        gpus=tuple(gpu_from_sample(s, {run.id: run.name}) for s in detail.gpu),
        log_tail=read_log_tail(run.log_path, log_lines),
        share_over_msl=share,
        last_error=run.last_error,
        output_dir=run.output_dir,
    )


def _plain_value(value) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_plain_value(v) for v in value)
    return "-" if value is None else str(value)


# Metrics the Compare screen lists, in order: (label, summary attribute).
COMPARED_METRICS = (
    ("steps", "last_step"),
    ("loss", "loss"),
    ("final loss", "final_loss"),
    ("min loss", "min_loss"),
    ("eval loss", "eval_loss"),
    ("s/step", "seconds_per_step"),
    ("tokens/s", "tokens_per_second"),
    ("peak VRAM", "peak_vram_gb"),
    ("accuracy", "accuracy"),
)


def read_comparison(store, refs: list[str], baseline: int = 0, *, max_points: int = 400) -> Comparison:
    """Runs side by side: differing config keys, summary metrics, and the training loss curves."""
    comparison = store.compare(list(refs))
    summaries = comparison.summaries
    differing = tuple(
        (key, tuple(_plain_value(v) for v in values)) for key, values in sorted(comparison.config_diff.items())
    )
    metrics = tuple(
        (label, tuple(getattr(s, attribute) for s in summaries))
        for label, attribute in COMPARED_METRICS
        if any(getattr(s, attribute) is not None for s in summaries)
    )
    curves = tuple(_named_series(store, s, max_points) for s in summaries)
    return Comparison(
        runs=tuple(row_from_summary(s) for s in summaries),
        differing=differing,
        metrics=metrics,
        loss_curves=curves,
        baseline=baseline,
    )


def _named_series(store, summary, max_points: int) -> MetricSeries:
    series = _series(store, summary.run.id, "loss", max_points)
    return MetricSeries(summary.run.name, series.steps, series.values)


# ---------------------------------------------------------------------------------------------------
# GPUs

def read_gpus(store=None, read=None) -> tuple[list[GpuReading], str | None]:
    """Every NVIDIA GPU now, with the arctui run holding it; ``([], reason)`` without a driver.

    ``read`` is the supervisor's NVML reader (``arctui.supervisor.gpus.read_nvml`` by default)."""
    from arctui.supervisor.gpus import list_gpus

    try:
        gpus = list_gpus(read=read) if read is not None else list_gpus()
    except Exception as error:  # NVML missing or broken: the app shows the reason, never crashes
        return [], str(error)
    if not gpus:
        return [], "no NVIDIA GPU or driver found; runs go on the CPU"
    holders: dict[int, tuple[str, str]] = {}
    if store is not None:
        for run in store.runs_holding_gpus():
            for index in run.gpu_ids:
                holders[index] = (str(run.id), run.name)
    readings = []
    for gpu in gpus:
        used = gpu.memory_used_mb
        total = gpu.memory_total_mb
        holder = holders.get(gpu.index)
        readings.append(
            GpuReading(
                index=gpu.index,
                name=gpu.name,
                memory_used_gb=None if used is None else used / 1024,
                memory_total_gb=None if total is None else total / 1024,
                utilization=gpu.utilization_pct,
                run_id=holder[0] if holder else None,
                run_name=holder[1] if holder else None,
            )
        )
    return readings, None


# ---------------------------------------------------------------------------------------------------
# Prompt lengths for the new-run form. The tokenizer needs transformers, which the app never imports
# (it would pull torch into the UI process): the analysis runs in a child Python and answers in JSON.

_ANALYSIS_SCRIPT = r"""
import json, sys
from pathlib import Path
args = json.loads(sys.argv[1])
model = args["model"]
if model == "demo:SmolLM2-135M-Instruct":
    from runner.modelzoo import demo_model_dir
    model = str(demo_model_dir())
elif model == "tiny:random-llama":
    from arctui.supervisor.launch import ensure_tiny_model
    model = str(ensure_tiny_model())
from runner.analysis import analyze_prompt_lengths
from runner.encoders import DEFAULT_GRID_ENCODER
from runner.errors import UserError
try:
    report = analyze_prompt_lengths(args["data"], str(Path(model).expanduser()),
        grid_encoder=args["encoder"] or DEFAULT_GRID_ENCODER, prompt_version=args["version"])
except UserError as error:
    print(json.dumps({"error": str(error)}))
    sys.exit(0)
print(json.dumps({"prompts": report.prompts, "percentiles": report.percentiles, "lengths": report.lengths}))
"""


@dataclass(frozen=True)
class PromptLengths:
    """Token lengths of every training prompt of a data set, for the share that fits an msl."""

    prompts: int
    percentiles: dict
    lengths: tuple[int, ...]

    def share_fitting(self, msl: int) -> float:
        if not self.lengths:
            return 0.0
        return sum(1 for n in self.lengths if n <= msl) / len(self.lengths)


def _fingerprint(model: str, data: list[str], encoder: str | None, version: str) -> str:
    """What the analysis depends on: the inputs, and the modification times of local files."""
    import hashlib
    import json
    import os

    def stamp(path: str) -> float | None:
        try:
            return os.stat(os.path.expanduser(path)).st_mtime
        except OSError:
            return None

    model_files = [os.path.join(os.path.expanduser(model), name) for name in ("tokenizer.json", "tokenizer_config.json")]
    parts = [model, [stamp(p) for p in model_files], [(d, stamp(d)) for d in data], encoder, version]
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:20]


def prompt_length_analysis(
    model: str, data: list[str], encoder: str | None, version: str, *, started=None
) -> PromptLengths | None:
    """Run ``runner.analysis.analyze_prompt_lengths`` in a child process (see above), or answer from
    the cache in ``$ARCTUI_HOME/cache``. ``started(process)`` receives the child so the caller can
    end it when the question changes; a child ended that way answers None."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from runner.errors import UserError
    from runner.paths import arctui_home

    cache = arctui_home() / "cache" / f"prompt-lengths-{_fingerprint(model, data, encoder, version)}.json"
    try:
        answer = json.loads(cache.read_text())
    except (OSError, ValueError):
        answer = None
    if answer is None:
        repo_root = Path(__file__).resolve().parents[2]
        payload = json.dumps({"model": model, "data": data, "encoder": encoder, "version": version})
        process = subprocess.Popen(
            [sys.executable, "-c", _ANALYSIS_SCRIPT, payload],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo_root,
        )
        if started is not None:
            started(process)
        out, err = process.communicate()
        if process.returncode < 0:
            return None  # ended on purpose: the form asked a newer question
        if process.returncode != 0:
            raise UserError((err.strip().splitlines() or ["analysis failed"])[-1])
        answer = json.loads(out.strip().splitlines()[-1])
        if "error" not in answer:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(answer))
            except OSError:
                pass  # a cache we cannot write only costs time
    if "error" in answer:
        raise UserError(answer["error"])
    return PromptLengths(answer["prompts"], answer["percentiles"], tuple(answer["lengths"]))


def describe_fit(analysis: PromptLengths, msl: int | None) -> str:
    """``65% of 835 prompts fit msl 2048 (p50 1475, p90 4182, max 10420)``."""
    p = analysis.percentiles
    spread = f"p50 {p.get('p50')}, p90 {p.get('p90')}, max {p.get('max')} tokens"
    if msl is None:
        return f"{analysis.prompts} prompts: {spread}"
    share = analysis.share_fitting(msl)
    text = f"{share * 100:.0f}% of {analysis.prompts} prompts fit msl {msl} ({spread})"
    if share < 0.95:
        text += f"; {100 - share * 100:.0f}% would be skipped"
    return text
