"""Where arctui keeps its files. Everything lives under ``$ARCTUI_HOME`` (default ``~/.arctui``).

Ground floor: the runner, the store and the manager all import it; it imports nothing of ours.
"""

from __future__ import annotations

import os
from pathlib import Path


def arctui_home() -> Path:
    """The root folder for the database, run folders and the model cache."""
    return Path(os.environ.get("ARCTUI_HOME") or Path.home() / ".arctui").expanduser()


def runs_dir() -> Path:
    """Folder that holds one sub-folder per run (output_dir, events, log)."""
    return arctui_home() / "runs"


def models_dir() -> Path:
    """Cache of converted models (e.g. the offline SmolLM2-135M-Instruct)."""
    return Path(os.environ.get("ARCTUI_MODELS") or arctui_home() / "models").expanduser()


def default_db_url() -> str:
    """``ARCTUI_DB`` if set, else a SQLite file in ``$ARCTUI_HOME``."""
    url = os.environ.get("ARCTUI_DB")
    if url:
        return url
    return f"sqlite:///{arctui_home() / 'arctui.db'}"
