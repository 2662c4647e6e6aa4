"""Shared pieces of the runner tests: small fixed ARC subsets and launching the runner for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

PROMPT_VERSION = "output-from-examples-v1"


def task_cells(task: dict) -> int:
    return sum(len(g) * len(g[0]) for s in task["train"] + task["test"] for g in (s["input"], s["output"]))


def write_smallest_tasks(path: Path, ref: str, count: int) -> Path:
    """The ``count`` ARC tasks of ``ref`` with the fewest grid cells (short prompts, fast steps)."""
    from runner.data import load_tasks

    tasks = load_tasks(ref)
    ids = sorted(tasks, key=lambda i: (task_cells(tasks[i]), i))[:count]
    path.write_text(json.dumps({i: tasks[i] for i in ids}))
    return path


def runner_env() -> dict[str, str]:
    env = dict(os.environ)
    # One thread per process: on a shared 2-core machine, two spinning OpenMP threads per process
    # are several times slower than one.
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def tiny_flags(model: Path, train: Path, out: Path, *extra: str, val: Path | None = None) -> list[str]:
    flags = [
        "--model_path", str(model),
        "--train_datasets", str(train), PROMPT_VERSION,
        "--output_dir", str(out),
        "--max_seq_len", "1024",
        "--device_map", "None",
        "--n_gpus", "1",
        "--random_seed", "3",
        "--lora_r", "8",
        "--no-verbose",
    ]
    if val is not None:
        flags += ["--val_dataset", str(val), PROMPT_VERSION]
    return flags + list(extra)


def run_module(flags: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runner.fine_tuning", *flags],
        cwd=REPO_ROOT, env=runner_env(), capture_output=True, text=True,
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
