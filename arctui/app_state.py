"""What the app remembers between sessions (no textual): the Runs screen's sort and filter, per store.

One small JSON file, ``$ARCTUI_HOME/app-state.json``: ``{"<store url>": {"runs": {...}}}``. Keyed by
the store so two databases (or two test stores) never share a filter. Read and written from thread
workers; a missing, unreadable or corrupt file is an empty state (never an error: it is a convenience).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from runner.paths import arctui_home, make_private_dir

STATE_FILE = "app-state.json"
_WRITING = threading.Lock()  # saves from several worker threads (one per keystroke) never interleave


def state_path() -> Path:
    return arctui_home() / STATE_FILE


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_section(store_key: str, section: str, path: Path | None = None) -> dict[str, Any]:
    """The remembered ``section`` (e.g. ``runs``) of the store ``store_key``; {} when none."""
    entry = _read(path or state_path()).get(store_key)
    value = entry.get(section) if isinstance(entry, dict) else None
    return dict(value) if isinstance(value, dict) else {}


def save_section(store_key: str, section: str, values: dict[str, Any], path: Path | None = None) -> None:
    """Remember ``values`` as ``section`` of ``store_key`` (write to a temporary file, then rename, so
    a crash never leaves half a file)."""
    path = path or state_path()
    with _WRITING:
        make_private_dir(path.parent)
        data = _read(path)
        entry = data.get(store_key) if isinstance(data.get(store_key), dict) else {}
        entry[section] = values
        data[store_key] = entry
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(temporary, path)
