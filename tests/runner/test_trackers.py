"""``--report_to tensorboard|wandb``: tiny CPU runs whose logged loss is read back with the trackers'
own file formats (TensorBoard's event reader; W&B's offline run file decoded with wandb's record
protocol), and one clear line when the package is missing."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

from runner.events import read_events
from runner.trackers import flat_config, step_values
from tests.conftest import REPO_ROOT
from tests.runner.training_helpers import run_module, runner_env, tiny_flags

FLAGS = ["--max_steps", "3", "--logging_steps", "1", "--eval_steps", "3", "--batch_size", "2",
         "--learning_rate", "1e-3"]


def logged_losses(out) -> tuple[list[float], list[float]]:
    events = read_events(out / "events.jsonl")
    return ([e["loss"] for e in events if e["event"] == "step"],
            [e["eval_loss"] for e in events if e["event"] == "eval"])


def test_flat_config_keeps_scalars_and_writes_the_rest_as_text():
    flat = flat_config({"lora_r": 8, "use_dora": True, "lr": 1e-4, "name": "x", "seed": None,
                        "train_datasets": [["a.json", "v1"]]})
    assert flat == {"lora_r": 8, "use_dora": True, "lr": 1e-4, "name": "x", "seed": "",
                    "train_datasets": '[["a.json", "v1"]]'}
    assert step_values({"loss": 2.0, "grad_norm": None, "peak_memory_gb": {}, "step": 3}) == {"train/loss": 2.0}


@pytest.mark.parametrize("tracker", ["wandb", "tensorboard"])
def test_a_missing_tracker_package_is_one_line_at_launch(tmp_path, tiny_model_dir, data, tracker):
    out = tmp_path / "run"
    code = ("import sys; sys.modules[sys.argv[1]] = None; from runner.fine_tuning import main; "
            "sys.exit(main(sys.argv[2:]))")
    proc = subprocess.run(
        [sys.executable, "-c", code, tracker, *tiny_flags(tiny_model_dir, data["train"], out, "--report_to", tracker)],
        cwd=REPO_ROOT, env=runner_env(), capture_output=True, text=True,
    )
    assert proc.returncode == 2 and proc.stderr == (
        f"fine_tuning: error: --report_to {tracker} needs the {tracker} package, which is not installed; "
        f"`pip install {tracker}` or pass --report_to none\n")
    assert not out.exists()


@pytest.mark.slow
def test_tensorboard_files_hold_the_logged_losses(tmp_path, tiny_model_dir, data):
    pytest.importorskip("tensorboard", reason="the dev extra installs tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb-run"
    proc = run_module(tiny_flags(tiny_model_dir, data["train"], out, *FLAGS, "--report_to", "tensorboard",
                                 val=data["val"]))
    assert proc.returncode == 0, proc.stderr
    losses, eval_losses = logged_losses(out)
    accumulator = EventAccumulator(str(out / "runs" / "tb-run"))
    accumulator.Reload()
    train = accumulator.Scalars("train/loss")
    assert [s.step for s in train] == [1, 2, 3]
    assert [s.value for s in train] == pytest.approx(losses, rel=1e-6)
    assert [(s.step, s.value) for s in accumulator.Scalars("eval/loss")] == [(3, pytest.approx(eval_losses[0]))]


def wandb_records(path):
    """The records of a W&B run file (``run-ID.wandb``): a 7-byte header, then LevelDB-log style
    blocks of 32 KiB holding chunks (4-byte checksum, 2-byte length, 1-byte type: full, first,
    middle, last), each whole record a wandb ``Record`` protocol buffer."""
    from wandb.proto import wandb_internal_pb2

    block, header = 32 * 1024, 7
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, parts = header, []
    while pos + header <= len(data):
        room = block - pos % block
        if room < header:
            pos += room
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos : pos + header])
        if (length, kind) == (0, 0):  # zero padding up to the block's end
            pos += room
            continue
        parts.append(data[pos + header : pos + header + length])
        pos += header + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


@pytest.mark.slow
def test_wandb_offline_run_holds_the_logged_losses(tmp_path, tiny_model_dir, data):
    pytest.importorskip("wandb", reason="the dev extra installs wandb")
    out = tmp_path / "wandb-run"
    env = {k: v for k, v in runner_env().items() if not k.startswith("WANDB_")}
    proc = subprocess.run(
        [sys.executable, "-m", "runner.fine_tuning",
         *tiny_flags(tiny_model_dir, data["train"], out, *FLAGS, "--report_to", "wandb", val=data["val"])],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    losses, eval_losses = logged_losses(out)
    run_files = sorted((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1  # offline: nobody set WANDB_MODE, and no network is needed
    history = []
    for record in wandb_records(run_files[0]):
        if record.WhichOneof("record_type") == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
    train = [(h["_step"], h["train/loss"]) for h in history if "train/loss" in h]
    assert [step for step, _ in train] == [1, 2, 3]
    assert [loss for _, loss in train] == pytest.approx(losses, rel=1e-6)
    assert [h["eval/loss"] for h in history if "eval/loss" in h] == pytest.approx(eval_losses)
