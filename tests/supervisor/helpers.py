"""Helpers for the supervisor's end-to-end tests: a private ARCTUI_HOME per test, the CLI as a real
subprocess, a tiny-model config on synthetic ARC tasks (short prompts, so steps take a fraction of a
second on CPU), and polling of the store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.conftest import REPO_ROOT


@dataclass
class Env:
    home: Path
    db_url: str

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env["ARCTUI_HOME"] = str(self.home)
        env["ARCTUI_DB"] = self.db_url
        env["OMP_NUM_THREADS"] = "1"
        env["PYTHONPATH"] = str(REPO_ROOT)
        return env

    def arctui(self, *args: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "arctui", *args], cwd=REPO_ROOT, env=self.environ(),
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"arctui {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "arctui", *args], cwd=REPO_ROOT, env=self.environ(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def store(self):
        from db.store import RunStore

        return RunStore.open(self.db_url)


def make_env(tmp_path: Path) -> Env:
    home = tmp_path / "home"
    home.mkdir()
    return Env(home=home, db_url=f"sqlite:///{home / 'arctui.db'}")


def write_config(tmp_path: Path, model_dir: Path, **overrides) -> Path:
    """A tiny-model CPU config on synthetic tasks; ``overrides`` replace keys."""
    from runner.synthetic import make_tasks, write_tasks

    data = tmp_path / "data"
    train = write_tasks(data / "train.json", make_tasks(16, seed=0, max_size=3))
    val = write_tasks(data / "val.json", make_tasks(2, seed=1, max_size=3))
    cfg = {
        "name": "e2e",
        "model_path": str(model_dir),
        "gpus": "cpu",
        "train_datasets": [[str(train), "output-from-examples-v1"]],
        "val_dataset": [str(val), "output-from-examples-v1"],
        "max_seq_len": 1024,
        "max_steps": 4,
        "logging_steps": 1,
        "eval_steps": 2,
        "save_steps": 2,
        "batch_size": 2,
        "per_device_train_batch_size": 1,
        "learning_rate": 1e-3,
        "lora_r": 4,
        "random_seed": 7,
        **overrides,
    }
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def wait_until(predicate, timeout: float = 300, poll: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def file_events(run_dir: Path) -> list[dict]:
    """The complete events of a run's events.jsonl (a line still being written is left out)."""
    text = (run_dir / "events.jsonl").read_text()
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def last_step(env: Env, run_id: int) -> int:
    store = env.store()
    try:
        return store.get_summary(run_id).last_step or 0
    finally:
        store.close()


def get_run(env: Env, run_id: int):
    store = env.store()
    try:
        return store.get_run(run_id)
    finally:
        store.close()


def stored_steps(env: Env, run_id: int) -> list[int]:
    store = env.store()
    try:
        return [p.step for p in store.metric_series(run_id, "loss", max_points=100000)]
    finally:
        store.close()


def assert_points_match_file(env: Env, run_id: int) -> list[int]:
    """Every step event of the file is one loss point in the store: none lost, none doubled."""
    run = get_run(env, run_id)
    events = file_events(Path(run.log_path).parent)
    store = env.store()
    try:
        series = store.metric_series(run_id, "loss", max_points=100000)
        run = store.get_run(run_id)
    finally:
        store.close()
    file_steps = [e["step"] for e in events if e["event"] == "step"]
    stored = [p.step for p in series]
    assert stored == sorted(set(file_steps)), (stored, file_steps)
    assert run.events_cursor == max(e["seq"] for e in events)
    return stored


# -- runs left "running" by a supervisor that died (recovery tests, here and in tests/app) ---------
START = {"seq": 1, "time": 0.0, "event": "start", "max_steps": 10, "start_step": 0}


def running_run(store, name: str, pgid: int, events: list[dict], log: str = "", host=None):
    """A run of this host recorded as running under a dead supervisor (pid 999999) and process group
    ``pgid``, with ``events`` in its events file and ``log`` as its log; returns (run id, RunFolder)."""
    from arctui.supervisor.runfolder import RunFolder

    run = store.create_run({"name": name, "gpus": "cpu"}, name=name, host=host or socket.gethostname())
    folder = RunFolder.for_run(run.id, name)
    folder.create()
    folder.events_file.write_text("".join(json.dumps(e) + "\n" for e in events))
    folder.log_file.write_text(log)
    store.update_run(run.id, log_path=str(folder.log_file), output_dir=str(folder.output_dir),
                     supervisor_pid=999999, pgid=pgid)
    store.set_status(run.id, "running")
    return run.id, folder


def dead_group() -> int:
    """The id of a process group that existed and is gone."""
    proc = subprocess.Popen(["true"], start_new_session=True)
    proc.wait()
    return proc.pid


def steps(n: int, start_seq: int = 2) -> list[dict]:
    """``n`` step events numbered from ``start_seq``."""
    return [{"seq": start_seq + i, "time": time.time(), "event": "step", "step": i + 1, "max_steps": 10,
             "loss": 1.0, "seconds_per_step": 0.5} for i in range(n)]
