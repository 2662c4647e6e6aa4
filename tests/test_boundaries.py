"""Import boundaries, checked two ways.

In a fresh interpreter by looking at ``sys.modules``: the runner must run under ``accelerate launch``
without the UI or database stack; the store must not drag torch into history commands; the CLI must
start without torch. And statically, by import-linter's contracts (pyproject ``[tool.importlinter]``,
run as ``lint-imports`` by ``make test``): the tests below show on a copy of the packages that a
forbidden import, even one inside a function, breaks the contract it should.
"""

from __future__ import annotations

import json
import os
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

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


# ----------------------------------------------------------------------------------------------------
# import-linter contracts, run against a copy of the three packages

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = {
    c["id"]: c["name"]
    for c in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
}


def copy_of_packages(dest: Path) -> Path:
    """The three root packages and pyproject.toml (the contracts) under ``dest``."""
    for package in ("arctui", "db", "runner"):
        shutil.copytree(REPO_ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def lint_imports(root: Path, *contract_ids: str) -> subprocess.CompletedProcess:
    """``lint-imports`` on the packages under ``root``: it puts its working directory first on the path,
    ahead of the editable install, and PYTHONPATH says the same."""
    args = [str(LINT_IMPORTS), "--no-cache", "--no-logo"]
    for contract_id in contract_ids:
        args += ["--contract", contract_id]
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "200"}
    return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True)


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("module_file", "forbidden", "contract_id", "reported"),
    [
        # A lazy import counts: the store reaching up into the app.
        ("db/errors.py", "def _reach_up():\n    import arctui.app\n", "layers", "db.errors -> arctui.app"),
        ("db/errors.py", "import runner.generation\n", "db-runner-contract", "db.errors -> runner.generation"),
        ("runner/paths.py", "import sqlalchemy\n", "runner-light", "runner.paths -> sqlalchemy"),
        ("db/errors.py", "def _load():\n    import torch\n", "db-no-ui-no-torch", "db.errors -> torch"),
        ("arctui/supervisor/runfolder.py", "import textual\n", "headless-no-textual",
         "arctui.supervisor.runfolder -> textual"),
        ("arctui/views/__init__.py", "import textual\n", "views-no-textual", "arctui.views -> textual"),
        ("arctui/widgets/line_plot.py", "import db.store\n", "screens-through-views",
         "arctui.widgets.line_plot -> db.store"),
        # A low supervisor module reaching up to the process that drives a run.
        ("arctui/supervisor/runfolder.py", "def _up():\n    from arctui.supervisor import supervise\n",
         "supervisor-layers", "arctui.supervisor.runfolder -> arctui.supervisor.supervise"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module_file, forbidden, contract_id, reported):
    root = copy_of_packages(tmp_path)
    with (root / module_file).open("a", encoding="utf-8") as handle:
        handle.write("\n\n" + forbidden)
    result = lint_imports(root, contract_id)
    output = one_line(result.stdout + result.stderr)
    assert result.returncode != 0, output
    assert f"{one_line(CONTRACTS[contract_id])} BROKEN" in output
    assert reported in output


def test_the_packages_keep_every_contract(tmp_path):
    result = lint_imports(copy_of_packages(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout
