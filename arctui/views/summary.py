"""One run: its block of summary figures, shown by ``arctui show`` and the Run screen alike, and the
Run screen's snapshot (plotted series, GPUs, log tail, current phase, process use) read in a thread
worker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from arctui.supervisor.live import LiveState, ProcessSampler, ProcessUsage, read_live_state
from arctui.views.figures import (
    ACCURACY,
    DURATION,
    EVAL_LOSS,
    LATEST,
    LOSS,
    MIN_LOSS,
    PEAK_VRAM,
    S_PER_STEP,
    STEPS,
    TOKENS_PER_S,
    Figure,
)
from arctui.views.gpus import GpuReading, gpu_from_sample
from arctui.views.rows import RunRow, row_from_summary, steps_text

# The figures of a run summary, one tuple per line.
SUMMARY_LINES: tuple[tuple[Figure, ...], ...] = (
    (STEPS, DURATION),
    (LOSS, MIN_LOSS, EVAL_LOSS, ACCURACY),
    (S_PER_STEP,),
    (TOKENS_PER_S, PEAK_VRAM),
)

# Summary figure -> the store's metric key whose latest logged value is shown next to it, labelled
# "latest" (the Run screen: the median s/step and the last step's s/step differ, and both are seen).
LATEST_KEYS = {S_PER_STEP.key: "seconds_per_step"}


def figure_text(figure: Figure, row: RunRow, now: float, latest: Mapping[str, float | None] | None = None) -> str:
    """``s/step (median) 1.80 (latest 1.85)``: a figure's label, its value and, where given, the value
    of the latest logged step."""
    value = (steps_text(row) or "-") if figure is STEPS else figure.text(row.figure(figure.key, now))
    text = f"{figure.label} {value}"
    key = LATEST_KEYS.get(figure.key)
    if latest and key and latest.get(key) is not None:
        text += f" ({LATEST} {figure.text(latest[key])})"
    return text


def summary_lines(
    row: RunRow,
    now: float,
    *,
    latest: Mapping[str, float | None] | None = None,
    skip: tuple[Figure, ...] = (),
    omit_unknown: bool = False,
) -> list[str]:
    """The summary block: one line per group of :data:`SUMMARY_LINES`, figures two spaces apart.

    ``latest`` maps store metric keys (``seconds_per_step``, ``tokens_per_second``) to the latest
    logged value; ``skip`` leaves figures out (the Run screen shows steps with its ETA);
    ``omit_unknown`` drops figures without a value instead of writing a dash."""
    lines = []
    for group in SUMMARY_LINES:
        parts = [
            figure_text(f, row, now, latest)
            for f in group
            if f not in skip and not (omit_unknown and row.figure(f.key, now) is None)
        ]
        if parts:
            lines.append("  ".join(parts))
    return lines


def summary_record(row: RunRow, now: float) -> list[dict]:
    """The summary figures for JSON: key, label, value, which direction is better and the definition."""
    return [
        {"key": f.key, "label": f.label, "value": row.figure(f.key, now), "better": f.better, "definition": f.definition}
        for group in SUMMARY_LINES
        for f in group
    ]


# What the runner really trained with (its latest `start` event), where that may differ from the
# flags: a fallback optimizer, a resumed adapter's own LoRA variant, the dtype and attention kernel.
SETUP_LABELS = {"lora": "LoRA (as trained)", "optimizer": "optimizer (used)", "dtype": "dtype",
                "attention": "attention"}


def training_setup(start: Mapping | None) -> dict[str, str]:
    """Label -> text of the run's training setup from a ``start`` event's data (``docs/events.md``);
    empty for events written before the runner reported it."""
    if not start:
        return {}
    setup: dict[str, str] = {}
    lora = start.get("lora")
    if isinstance(lora, Mapping):
        variant = " + ".join(name for name, on in (("rsLoRA", lora.get("rslora")), ("DoRA", lora.get("dora"))) if on)
        scale = lora.get("scale")
        setup["lora"] = (f"r{lora.get('r')} {variant or 'plain LoRA'}"
                         + (f", scale {scale:.3g}" if isinstance(scale, int | float) else "")
                         + (f", init {lora['init']}" if lora.get("init") not in (None, "default") else ""))
    elif "lora" in start:
        setup["lora"] = "none (full fine-tuning)"
    optimizer = start.get("optimizer")
    if isinstance(optimizer, Mapping) and optimizer.get("used"):
        used, asked = optimizer["used"], optimizer.get("requested")
        setup["optimizer"] = used + (f" (asked for {asked})" if asked and asked != used else "")
    if start.get("dtype"):
        setup["dtype"] = str(start["dtype"]) + (f", {start['quantization']}" if start.get("quantization") else "")
    if start.get("attn_implementation"):
        setup["attention"] = str(start["attn_implementation"])
    return {SETUP_LABELS[key]: text for key, text in setup.items()}


def read_training_setup(store, ref) -> dict[str, str]:
    """:func:`training_setup` of the run's latest ``start`` event in the store."""
    starts = store.recent_events(ref, limit=1, kinds=["start"])
    return training_setup(starts[0].data if starts else None)


# -- the Run screen's snapshot --------------------------------------------------------------------------

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
    live: LiveState = LiveState()
    """The current phase and what the ETA needs beyond the summary (empty once the run ended)."""
    usage: ProcessUsage | None = None
    """The training processes' memory and CPU use (when a sampler was given and they run here)."""

    def latest(self) -> dict[str, float | None]:
        """The latest logged value of each plotted metric (for :func:`summary_lines`)."""
        return {key: series.last for key, series in self.series.items()}


# Metric keys the Run screen plots (as written by the store's ingestion of runner events).
PLOTTED_KEYS = ("loss", "eval_loss", "seconds_per_step", "tokens_per_second")
LOG_TAIL_BYTES = 64 * 1024


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


def read_series(store, ref, key: str, max_points: int, name: str | None = None) -> MetricSeries:
    """One metric of one run over steps (downsampled by the store to at most ``max_points``)."""
    points = store.metric_series(ref, key, max_points=max_points)
    return MetricSeries(name or key, tuple(float(p.step) for p in points), tuple(float(p.value) for p in points))


def read_run_detail(store, ref, *, max_points: int = 400, log_lines: int = 200,
                    sampler: ProcessSampler | None = None) -> RunDetail:
    """One run's summary, plotted series, latest GPU samples, skipped-prompt share, log tail, current
    phase and (with a ``sampler``) its training processes' memory and CPU use."""
    detail = store.run_detail(ref, events=0)
    run = detail.summary.run
    keys = set(detail.metrics)
    series = {key: read_series(store, run.id, key, max_points) for key in PLOTTED_KEYS if key in keys}
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
        live=read_live_state(store, run),
        usage=sampler.read(run) if sampler is not None else None,
    )
