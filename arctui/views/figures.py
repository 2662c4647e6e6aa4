"""The figures a run is summarised by, with one label each, and the short model and encoder labels.

Every table and screen names a figure by its ``label`` here, so a reader always knows which number it
is. The store computes the summary figures (``db.store`` keeps ``RunSummary.seconds_per_step``,
``tokens_per_second`` and ``peak_vram_gb`` current); their definitions:

- ``s/step (median)``: the median of seconds per step over the logged steps, excluding the first
  (warm-up) step;
- ``tok/s (mean)``: the tokens of those same steps divided by their time;
- ``peak VRAM``: the maximum over steps and devices.

Where a screen shows the value of the latest logged step next to such a summary, it is labelled
:data:`LATEST`.

Ratios to a baseline are always ``value / baseline`` (``0.55x``) followed by a verdict read from the
figure's direction: ``better``, ``worse`` or ``same`` (see :func:`ratio_text`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from arctui.formatting import DASH, format_duration, format_gb, format_number, format_percent

LOWER = "lower"
HIGHER = "higher"
LATEST = "latest"
"""The label of a value from the latest logged step, where it is shown next to a summary figure."""


@dataclass(frozen=True)
class Figure:
    """One figure of a run summary: its key (as in JSON output), its label on every screen and table,
    which direction is better (None: a ratio would mean nothing) and what it is."""

    key: str
    label: str
    better: str | None
    definition: str
    write: Callable[[float | int], str] = format_number

    def text(self, value) -> str:
        """``value`` as this figure is written everywhere (a dash when unknown)."""
        return DASH if value is None else self.write(value)


def _steps(value) -> str:
    return str(int(value))


STEPS = Figure("steps", "steps", None, "the last logged optimizer step", _steps)
DURATION = Figure("duration_s", "duration", None, "wall time from start to end (to now while active)",
                  format_duration)
S_PER_STEP = Figure("s_per_step", "s/step (median)", LOWER,
                    "median seconds per step over the logged steps, excluding the first (warm-up) step")
TOKENS_PER_S = Figure("tokens_per_second", "tok/s (mean)", HIGHER,
                      "tokens over the same steps as s/step divided by their time")
PEAK_VRAM = Figure("peak_vram_gb", "peak VRAM", LOWER, "maximum GPU memory over steps and devices", format_gb)
LOSS = Figure("loss", "loss", LOWER, "training loss at the last logged step")
MIN_LOSS = Figure("min_loss", "min loss", LOWER, "lowest training loss logged")
EVAL_LOSS = Figure("eval_loss", "eval loss", LOWER, "validation loss at the last evaluation")
ACCURACY = Figure("accuracy", "accuracy", HIGHER, "share of test outputs solved at the last evaluation",
                  lambda v: format_percent(v, 2))

FIGURES: tuple[Figure, ...] = (STEPS, DURATION, S_PER_STEP, TOKENS_PER_S, PEAK_VRAM, LOSS, MIN_LOSS, EVAL_LOSS,
                               ACCURACY)
FIGURE_BY_KEY = {f.key: f for f in FIGURES}

FIGURE_DEFINITIONS = (
    f"{S_PER_STEP.label}: median over logged steps excluding the first (warm-up) step",
    f"{TOKENS_PER_S.label}: tokens over the same steps / their time",
    f"{PEAK_VRAM.label}: max over steps and devices",
)
"""What the speed and memory figures are, one line each (``arctui show``)."""

FIGURE_NOTES = "; ".join(FIGURE_DEFINITIONS) + "."
"""The same as one line, for the foot of a comparison."""

RATIO_NOTE = "ratio = value / baseline; better or worse by each figure's direction"


# -- ratios -------------------------------------------------------------------------------------------

# Ratios closer to 1 than this read "same": two runs a rounding error apart are not better or worse.
SAME_WITHIN = 0.005


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``, or None when either is unknown or the baseline is zero."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def verdict(figure: Figure, r: float | None) -> str | None:
    """``better``, ``worse`` or ``same`` for a ratio of ``figure`` (None without a direction)."""
    if r is None or figure.better is None:
        return None
    if abs(r - 1) < SAME_WITHIN:
        return "same"
    return "better" if (r < 1) == (figure.better == LOWER) else "worse"


def ratio_text(figure: Figure, value: float | None, baseline: float | None) -> str:
    """``0.55x, better``: the one wording of a comparison to the baseline ("" when there is none)."""
    if figure.better is None:
        return ""
    r = ratio(value, baseline)
    if r is None:
        return ""
    return f"{r:.2f}x, {verdict(figure, r)}"


# -- short labels -------------------------------------------------------------------------------------

def short_encoder(spec: str | None) -> str:
    """``GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))`` -> ``Shape(RowNumber(Minimal))``."""
    if not spec:
        return DASH
    return spec.replace("Encoder", "").replace("Grid", "").replace("()", "") or spec


def short_model(model: str | None) -> str:
    """The last part of a model path or hub name: ``/models/SmolLM-135M-Instruct/`` -> ``SmolLM-135M-Instruct``."""
    text = (model or "").rstrip("/")
    return text.rsplit("/", 1)[-1] if text else DASH
