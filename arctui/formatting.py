"""Short, fixed-width-friendly text for numbers, durations and ages, shared by the app and the headless commands."""

from __future__ import annotations

import math

DASH = "-"


def format_number(value: float | int | None, digits: int = 3) -> str:
    """A number in at most ~7 characters: ``0.0123``, ``1.23``, ``123``, ``12.3k``, ``1.2e-05``."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) < 100_000 else f"{value / 1000:.0f}k"
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 100_000:
        return f"{value / 1000:.0f}k"
    if magnitude >= 10_000:
        return f"{value / 1000:.1f}k"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 0.001:
        return f"{value:#.{digits}g}"  # '#' keeps trailing zeros so columns line up: 0.390, 3.30
    return f"{value:.1e}"


def format_duration(seconds: float | None) -> str:
    """``45s``, ``12m05s``, ``3h07m``, ``2d04h``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return DASH
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_age(timestamp: float | None, now: float) -> str:
    """How long ago ``timestamp`` was: ``just now``, ``5m ago``, ``3h ago``, ``4d ago``."""
    if timestamp is None:
        return DASH
    delta = now - timestamp
    if delta < 10:
        return "just now"
    # rounded to the nearest unit, so runs made a moment apart read the same
    if delta < 60:
        return f"{int(delta)}s ago"
    if delta < 3570:
        return f"{max(1, round(delta / 60))}m ago"
    if delta < 86400 * 2:
        return f"{round(delta / 3600)}h ago"
    return f"{round(delta / 86400)}d ago"


def format_percent(share: float | None, digits: int = 0) -> str:
    """A share in 0..1 as ``65%``."""
    if share is None or not math.isfinite(share):
        return DASH
    return f"{share * 100:.{digits}f}%"


def format_gb(value: float | None) -> str:
    """Gigabytes: ``7.1 GB``."""
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:.1f} GB"


def format_ratio(value: float | None, baseline: float | None) -> str:
    """``value / baseline`` as ``0.62x``; a dash when either is missing or the baseline is zero."""
    if value is None or baseline is None or baseline == 0:
        return DASH
    return f"{value / baseline:.2f}x"


def eta_seconds(step: int | None, max_steps: int | None, seconds_per_step: float | None) -> float | None:
    """Seconds left at the current pace, or None when unknown."""
    if not step and step != 0 or not max_steps or not seconds_per_step:
        return None
    return max(0, max_steps - step) * seconds_per_step


def progress_bar(done: float | None, total: float | None, width: int = 10) -> str:
    """A text bar ``━━━━━╺━━━━`` for table cells."""
    if not total or done is None:
        return " " * width
    filled = max(0.0, min(1.0, done / total)) * width
    full = int(filled)
    return "━" * full + ("╸" if filled - full >= 0.5 and full < width else "") + "─" * (
        width - full - (1 if filled - full >= 0.5 and full < width else 0)
    )


def clip(text: str, width: int, *, keep_end: bool = False) -> str:
    """``text`` cut to ``width`` characters with an ellipsis: at the end, or in the middle with
    ``keep_end`` (names that differ at their ends, such as a study's variants, stay told apart)."""
    if len(text) <= width:
        return text
    if width < 2:
        return text[:width]
    if not keep_end:
        return text[: width - 1] + "…"
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]
