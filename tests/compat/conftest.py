"""Reference vectors of the original arc24 code (``../shared/compat/arc24/``).

The files sit next to the checkout (``ARCTUI_COMPAT_DIR`` points elsewhere). Without them the
fidelity tests are skipped locally and fail when ``CI=true``, as the PostgreSQL tests do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO_ROOT.parent / "shared" / "compat" / "arc24"


def compat_dir() -> Path:
    return Path(os.environ.get("ARCTUI_COMPAT_DIR", DEFAULT_DIR))


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (required in CI)")
    pytest.skip(message)


def load_cases(name: str) -> list[dict]:
    """Every line of one reference file, parsed (skips or fails the test when it is absent)."""
    path = compat_dir() / name
    if not path.is_file():
        _missing(f"arc24 reference file {path} not found: set ARCTUI_COMPAT_DIR to ../shared/compat/arc24")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="session")
def arc24_dir() -> Path:
    folder = compat_dir()
    if not folder.is_dir():
        _missing(f"arc24 reference folder {folder} not found: set ARCTUI_COMPAT_DIR to ../shared/compat/arc24")
    return folder


def reference_params(name: str, label: Callable[[dict], str]) -> list:
    """Values for ``pytest.mark.parametrize``: one ``pytest.param(case, id=label(case))`` per line of
    the reference file ``name``. Read at collection time: when the file is absent the one value is a
    skipped ``None`` locally, and collection fails in CI."""
    path = compat_dir() / name
    if not path.is_file():
        message = f"arc24 reference file {path} not found: set ARCTUI_COMPAT_DIR to ../shared/compat/arc24"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (required in CI)", pytrace=False)
        return [pytest.param(None, id="missing", marks=pytest.mark.skip(reason=message))]
    return [pytest.param(case, id=label(case)) for case in load_cases(name)]
