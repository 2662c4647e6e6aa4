"""Import boundaries, checked in a fresh interpreter by looking at ``sys.modules``.

The runner must run under ``accelerate launch`` without the UI or database stack; the store must not
drag torch into history commands; the CLI must start without torch.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def modules_loaded_by(code: str) -> set[str]:
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return {name.split(".")[0] for name in json.loads(out.stdout.strip().splitlines()[-1])}


def package_modules(package: str) -> list[str]:
    path = REPO_ROOT / package
    return [f"{package}.{m.name}" for m in pkgutil.walk_packages([str(path)]) if not m.ispkg] + [package]


@pytest.mark.parametrize("module", package_modules("runner"))
def test_runner_never_imports_ui_or_database(module):
    loaded = modules_loaded_by(f"import {module}")
    assert not {"textual", "sqlalchemy"} & loaded


@pytest.mark.parametrize("module", package_modules("db"))
def test_db_never_imports_ui_or_torch(module):
    loaded = modules_loaded_by(f"import {module}")
    assert not {"textual", "torch", "transformers"} & loaded


def test_cli_parser_does_not_import_torch():
    loaded = modules_loaded_by("from arctui.cli import build_parser; build_parser()")
    assert "torch" not in loaded
    assert "transformers" not in loaded
