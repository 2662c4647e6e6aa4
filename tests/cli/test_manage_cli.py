"""`arctui rename | tag | archive | delete` on a real SQLite store: the same checks as the app's Runs
screen (both call arctui.views.manage), one-line errors, archived runs hidden from `arctui runs`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from arctui.cli import main
from db.store import RunStore
from tests.conftest import REPO_ROOT


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'arctui.db'}"
    with RunStore.open(url) as store:
        for name in ("alpha", "beta", "gamma"):
            run = store.create_run({"name": name}, name=name)
            store.set_status(run.id, "running")
            store.set_status(run.id, "completed", exit_code=0)
        store.create_run({"name": "waiting"}, name="waiting")  # queued
    return url


def run_cli(capsys, url: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--db", url, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def listed(capsys, url: str, *where: str) -> list[str]:
    code, out, _ = run_cli(capsys, url, "runs", "--format", "csv", *where)
    assert code == 0
    return [line.split(",")[1] for line in out.splitlines()[1:]]


def test_rename_checks_the_name(url, capsys):
    assert run_cli(capsys, url, "rename", "alpha", "alpha-2")[1] == "run 1: alpha -> alpha-2\n"
    code, out, err = run_cli(capsys, url, "rename", "beta", "alpha-2")
    assert code == 2 and out == "" and err.startswith("arctui: error:") and "alpha-2" in err
    assert err.count("\n") == 1
    code, _, err = run_cli(capsys, url, "rename", "beta", "12")
    assert code == 2 and "not only digits" in err


def test_tag_adds_and_removes(url, capsys):
    assert run_cli(capsys, url, "tag", "beta", "baseline", "smol")[1].endswith("tags: baseline, smol\n")
    assert run_cli(capsys, url, "tag", "beta", "smol", "--remove")[1].endswith("tags: baseline\n")
    assert listed(capsys, url, "--where", "tag=baseline") == ["beta"]
    code, _, err = run_cli(capsys, url, "tag", "beta", "bad tag!")
    assert code == 2 and "tag 'bad tag!'" in err
    code, _, err = run_cli(capsys, url, "tag", "beta", "archived")
    assert code == 2 and "arctui archive" in err


def test_archived_runs_are_hidden_until_a_filter_names_them(url, capsys):
    assert run_cli(capsys, url, "archive", "gamma")[0] == 0
    assert listed(capsys, url) == ["waiting", "beta", "alpha"]
    assert listed(capsys, url, "--where", "tag=archived") == ["gamma"]
    assert listed(capsys, url, "--where", "name~a") == ["waiting", "beta", "alpha"]  # a filter hides them too
    assert run_cli(capsys, url, "archive", "gamma", "--undo")[0] == 0
    assert listed(capsys, url) == ["waiting", "gamma", "beta", "alpha"]


def test_delete_asks_for_yes_keeps_the_folder_unless_told_and_refuses_active_runs(url, capsys):
    with RunStore.open(url) as store:
        alpha, beta = store.get_run("alpha"), store.get_run("beta")
    from arctui.supervisor.runfolder import RunFolder

    folders = {}
    for run in (alpha, beta):
        folder = RunFolder.for_run(run.id, run.name)
        folder.create()
        folders[run.name] = folder.root
    # not on a terminal: --yes is needed, nothing is deleted
    done = subprocess.run([sys.executable, "-m", "arctui", "--db", url, "delete", "alpha"], cwd=REPO_ROOT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "needs --yes" in done.stderr and "Traceback" not in done.stderr
    assert "alpha" in listed(capsys, url)
    code, out, _ = run_cli(capsys, url, "delete", "alpha", "--yes")
    assert code == 0 and "is kept" in out and folders["alpha"].is_dir()
    code, out, _ = run_cli(capsys, url, "delete", "beta", "--yes", "--with-folder")
    assert code == 0 and "and its folder" in out and not folders["beta"].exists()
    code, _, err = run_cli(capsys, url, "delete", "waiting", "--yes")
    assert code == 2 and "stop it first" in err
    assert listed(capsys, url) == ["waiting", "gamma"]
