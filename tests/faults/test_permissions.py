"""Issue 16, item 12: what arctui creates is private to the user. ``$ARCTUI_HOME`` 0700, the SQLite
database 0600 (and its WAL files with it), run folders 0700, whatever the umask; folders and files the
user set up already keep their permissions. Checked on real files with ``os.stat``."""

from __future__ import annotations

import os
import stat

import pytest

from runner.paths import create_private_file, make_private_dir
from tests.faults.conftest import arctui_process, cli

pytestmark = pytest.mark.faults


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    """The permissive umask of the issue's shared GPU box (0022: files 0644, folders 0755)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_first_command_creates_a_private_home_and_database(home, open_umask, capsys):
    assert not home.exists()
    code, out, _ = cli(capsys, "runs")
    assert code == 0 and "no runs" in out.lower()
    assert mode(home) == 0o700
    assert mode(home / "arctui.db") == 0o600
    for sidecar in ("arctui.db-wal", "arctui.db-shm"):  # SQLite gives them the database's mode
        if (home / sidecar).exists():
            assert mode(home / sidecar) == 0o600


def test_a_real_process_too(home, open_umask):
    env = {**os.environ, "ARCTUI_HOME": str(home)}
    proc = arctui_process("runs", env=env)
    assert proc.returncode == 0, proc.stderr
    assert (mode(home), mode(home / "arctui.db")) == (0o700, 0o600)


def test_run_folders_are_private(home, open_umask):
    from arctui.supervisor.runfolder import RunFolder

    folder = RunFolder.for_run(7, "secret")
    fd = folder.try_lock()
    try:
        folder.create()
    finally:
        os.close(fd)
    for path in (home, home / "runs", folder.root, folder.output_dir):
        assert mode(path) == 0o700, path


def test_what_the_user_set_up_is_left_as_it_is(home, open_umask, capsys):
    home.mkdir(mode=0o755)
    os.chmod(home, 0o750)  # a team folder on purpose
    (home / "runs").mkdir()
    os.chmod(home / "runs", 0o755)
    db = home / "arctui.db"
    db.touch()
    os.chmod(db, 0o640)
    code, _, _ = cli(capsys, "runs")
    assert code == 0
    assert (mode(home), mode(home / "runs"), mode(db)) == (0o750, 0o755, 0o640)


def test_a_database_elsewhere_is_private_and_its_folder_untouched(tmp_path, home, open_umask, capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    url = f"sqlite:///{shared / 'team.db'}"
    code, _, _ = cli(capsys, "--db", url, "runs")
    assert code == 0
    assert mode(shared) == 0o755 and mode(shared / "team.db") == 0o600


def test_a_stricter_umask_is_kept(tmp_path):
    old = os.umask(0o077)
    try:
        make_private_dir(tmp_path / "a" / "b")
        assert create_private_file(tmp_path / "a" / "b" / "f")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700
    assert mode(tmp_path / "a" / "b" / "f") == 0o600
    assert not create_private_file(tmp_path / "a" / "b" / "f")  # exists: left alone
