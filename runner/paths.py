"""Where arctui keeps its files. Everything lives under ``$ARCTUI_HOME`` (default ``~/.arctui``).

Ground floor: the runner, the store and the manager all import it; it imports nothing of ours.

What arctui creates there is private to the user (configs, logs and the database of every run; on a
shared GPU box other users must not read them): folders 0700 (:func:`make_private_dir`), the SQLite
file 0600 (:func:`create_private_file`). What already exists keeps the permissions the user gave it.
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


def make_private_dir(path: Path | str) -> Path:
    """Create folder ``path`` and its missing parents, each new one readable by the owner only (0700,
    narrowed further by a stricter umask); folders that exist keep their permissions."""
    path = Path(path)
    missing: list[Path] = []
    current = path
    # Stop at the first path that exists: a file there makes the mkdir below fail as "Not a directory".
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            if not folder.is_dir():
                raise
    return path


def create_private_file(path: Path | str) -> bool:
    """Create an empty file readable and writable by the owner only (0600) unless it exists; True when
    this call created it. An empty file is a valid new SQLite database."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True
