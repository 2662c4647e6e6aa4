"""``--report_to wandb|tensorboard``: the same figures as the event file, also sent to an experiment
tracker through Accelerate's trackers (``log_with``, ``init_trackers``, ``accelerator.log``), from the
main process only. The event file stays the record arctui reads; a tracker is for people who want
their runs in W&B or TensorBoard as the seed's were.

- W&B runs offline unless the user set ``WANDB_MODE`` (training nodes often have no network; ``wandb
  sync OUTPUT_DIR/wandb/offline-run-*`` uploads later); its files go under ``OUTPUT_DIR/wandb``.
- TensorBoard event files go under ``OUTPUT_DIR/runs/<run name>``.

Metric names follow the Hugging Face Trainer's W&B charts: ``train/loss``, ``train/learning_rate``,
``train/grad_norm``, ``eval/loss`` and so on, at the optimizer step.

Light at import time: accelerate and the tracker packages are imported inside the functions.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from runner.errors import ConfigError

# --report_to value -> the package it needs.
TRACKER_PACKAGES = {"wandb": "wandb", "tensorboard": "tensorboard"}
TENSORBOARD_FOLDER = "runs"
WANDB_DEFAULT_PROJECT = "arctui"


def check_tracker(report_to: str) -> None:
    """ConfigError (one line, with the fix) when the tracker's package is not installed."""
    package = TRACKER_PACKAGES.get(report_to)
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"--report_to {report_to} needs the {package} package, which is not installed; "
            f"`pip install {package}` or pass --report_to none"
        )


def accelerator_kwargs(report_to: str, output_dir: Path) -> dict[str, Any]:
    """Keyword arguments for ``Accelerator(...)`` that attach the tracker (none for ``none``)."""
    if report_to not in TRACKER_PACKAGES:
        return {}
    from accelerate.utils import ProjectConfiguration

    return {
        "log_with": report_to,
        "project_config": ProjectConfiguration(project_dir=str(output_dir),
                                               logging_dir=str(output_dir / TENSORBOARD_FOLDER)),
    }


def start_trackers(accelerator, report_to: str, output_dir: Path, config: dict[str, Any]) -> str | None:
    """Open the tracker's run (main process; Accelerate skips the others). Returns a line to log."""
    if report_to not in TRACKER_PACKAGES:
        return None
    run_name = output_dir.resolve().name
    note = None
    if report_to == "wandb":
        if "WANDB_MODE" not in os.environ:
            os.environ["WANDB_MODE"] = "offline"
            note = (f"W&B offline under {output_dir / 'wandb'} (set WANDB_MODE=online to sync live, "
                    "or `wandb sync` the folder later)")
        project = os.environ.get("WANDB_PROJECT", WANDB_DEFAULT_PROJECT)
        accelerator.init_trackers(project, config=flat_config(config),
                                  init_kwargs={"wandb": {"name": run_name, "dir": str(output_dir)}})
    else:
        accelerator.init_trackers(run_name, config=flat_config(config))
        note = f"TensorBoard event files under {output_dir / TENSORBOARD_FOLDER / run_name}"
    return note


def flat_config(config: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """The run's flags as tracker hyperparameters: scalars kept, lists as JSON text, None as ""
    (TensorBoard's hparams take scalars only)."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        if value is None:
            flat[key] = ""
        elif isinstance(value, bool | int | float | str):
            flat[key] = value
        else:
            flat[key] = json.dumps(value)
    return flat


def step_values(step_event: dict[str, Any]) -> dict[str, float]:
    """``train/...`` figures of a ``step`` event (the numbers only)."""
    keys = ("loss", "learning_rate", "grad_norm", "seconds_per_step", "tokens_per_second", "samples_per_second",
            "padding_share")
    return {f"train/{key}": float(step_event[key]) for key in keys if isinstance(step_event.get(key), int | float)}


def log_values(accelerator, report_to: str, values: dict[str, float], step: int) -> None:
    if report_to in TRACKER_PACKAGES and values:
        accelerator.log(values, step=step)


def end_trackers(accelerator, report_to: str) -> None:
    if report_to in TRACKER_PACKAGES:
        accelerator.end_training()
