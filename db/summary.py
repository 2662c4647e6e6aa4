"""What the figures of a run summary mean, defined once (``docs/store.md``, "Summaries").

The store keeps these figures current as points arrive (:meth:`db.store.RunStore.append_metrics`),
from per-key statistics and a few index reads instead of a scan of every point; the functions here
compute the same figures from scratch out of a run's stored points. They are the reference the
store's incremental figures are tested against.

Speed figures are built from *logging windows*: each logged step (a runner ``step`` event) covers
the optimizer steps since the previous one and gives their mean seconds per step, plus the window's
time and real-token count (the ``window_seconds`` and ``window_tokens`` points, written by
:mod:`db.ingest`). The window with the lowest step is the warm-up one (CUDA kernels, allocator,
first batches) and is left out of both speed figures, unless it is the only one.

- ``seconds_per_step``: median over logged windows of their mean seconds per step, the warm-up
  window excluded.
- ``tokens_per_second``: real tokens over the same windows / their time: sum(window_tokens) /
  sum(window_seconds), the warm-up window excluded. One noisy window moves it by its share of the
  time, not wholesale. None when the run has no window figures.
- ``peak_vram_gb``: max over logged steps and devices of the ``peak_memory_gb/<device>`` points.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Metric keys the summary reads. db.ingest writes them; the store's summary columns follow them.
LOSS_KEY = "loss"
EVAL_LOSS_KEY = "eval_loss"
SECONDS_PER_STEP_KEY = "seconds_per_step"
TOKENS_PER_SECOND_KEY = "tokens_per_second"
WINDOW_SECONDS_KEY = "window_seconds"
WINDOW_TOKENS_KEY = "window_tokens"
PEAK_VRAM_PREFIX = "peak_memory_gb/"
# The evaluation metric behind the summary's accuracy (latest step's value).
ACCURACY_METRIC = "accuracy"
# A batch touching one of these changes the speed figures.
SPEED_KEYS = frozenset({SECONDS_PER_STEP_KEY, WINDOW_SECONDS_KEY, WINDOW_TOKENS_KEY})


def median(sorted_values: Sequence[float]) -> float:
    """The median of already sorted values (the mean of the middle two for an even count)."""
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


def counted(points: Iterable[tuple[int, float]]) -> list[tuple[int, float]]:
    """The (step, value) points that speed figures count: all but the lowest step, unless it is alone."""
    ordered = sorted(points)
    return ordered[1:] if len(ordered) > 1 else ordered


def seconds_per_step(points: Iterable[tuple[int, float]]) -> float | None:
    """Median of the ``seconds_per_step`` points (step, value) without the warm-up (lowest-step) one."""
    values = sorted(value for _, value in counted(points))
    return median(values) if values else None


def tokens_per_second(
    seconds: Iterable[tuple[int, float]], tokens: Iterable[tuple[int, float]]
) -> float | None:
    """Sum of ``window_tokens`` / sum of ``window_seconds`` over the logged windows, warm-up excluded."""
    time = sum(value for _, value in counted(seconds))
    real = sum(value for _, value in counted(tokens))
    return real / time if time > 0 else None


def peak_vram_gb(points: Iterable[tuple[str, int, float]]) -> float | None:
    """Max over steps and devices of the ``peak_memory_gb/<device>`` points (key, step, value)."""
    return max((value for key, _, value in points if key.startswith(PEAK_VRAM_PREFIX)), default=None)


def from_points(points: Iterable[tuple[str, int, float]]) -> dict[str, float | None]:
    """The speed and memory figures of a run, from scratch, out of all its (key, step, value) points."""
    by_key: dict[str, list[tuple[int, float]]] = {}
    rows = list(points)
    for key, step, value in rows:
        by_key.setdefault(key, []).append((step, value))
    return {
        "seconds_per_step": seconds_per_step(by_key.get(SECONDS_PER_STEP_KEY, ())),
        "tokens_per_second": tokens_per_second(
            by_key.get(WINDOW_SECONDS_KEY, ()), by_key.get(WINDOW_TOKENS_KEY, ())
        ),
        "peak_vram_gb": peak_vram_gb(rows),
    }
