"""Start, stop and resume runs: the part of the supervisor that runs inside ``arctui`` commands.

``launch_run`` validates everything first (nothing is written for a bad config), creates the run in
the store (status ``queued``), makes its folder and spawns a detached supervisor process
(``python -m arctui.supervisor RUN_ID``, its own session) that starts ``accelerate launch`` and
watches it. Closing the terminal, or the TUI, never stops training.

    with RunStore.open(db_url) as store:
        run = launch_run(store, load_config("configs/tiny-cpu.yaml"), db_url=db_url)
        stop_run(store, run.id)             # graceful: SIGTERM to the training process group
        resume_run(store, run.id, db_url=db_url)

Checking and resolving a config is :mod:`arctui.supervisor.resolve`, spawning the supervisor
:mod:`arctui.supervisor.spawn`; their names are re-exported here for callers that import them from
this module.
"""

from __future__ import annotations

import signal
import socket
import sys
import time

from arctui.config import RunConfig
from arctui.supervisor.process import signal_group
from arctui.supervisor.recovery import recover_if_orphaned
from arctui.supervisor.resolve import (  # noqa: F401 - re-exported
    check_gpus,
    ensure_tiny_model,
    expand_path,
    model_label,
    prepare_config,
    resolve_config,
)
from arctui.supervisor.runfolder import RunFolder
from arctui.supervisor.spawn import spawn_supervisor
from runner.errors import ConfigError, UserError

__all__ = ["RESUME_KEYS", "launch_run", "prepare_config", "recover_if_orphaned", "resume_run", "stop_run",
           "wait_for_final"]
# What `arctui resume --set` may change: how long and how often, not what is trained.
RESUME_KEYS = frozenset({"max_steps", "save_steps", "eval_steps", "logging_steps", "notes", "tags"})


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
    if cfg.on_slurm:
        check_slurm_store(store)
    run = _create_run(store, cfg, cfg.name, strict=name is not None)
    folder = RunFolder.for_run(run.id, run.name)
    folder.create()
    store.update_run(run.id, output_dir=str(folder.output_dir), log_path=str(folder.log_file),
                     executor="slurm" if cfg.on_slurm else "local")
    return _start_supervisor(store, run.id, db_url, folder)


def check_slurm_store(store) -> None:
    """A Slurm run against SQLite: refused when the database file is on a network filesystem (SQLite's
    locks are unsafe there), else one warning line pointing to PostgreSQL. Also needs sbatch here."""
    from arctui.supervisor import slurm

    if not slurm.available():
        raise UserError("executor: slurm needs Slurm's commands (sbatch, squeue, scontrol, scancel, sinfo) "
                        "on this host's PATH; launch from a submit host or use executor: local")
    if store.dialect != "sqlite":
        return
    from pathlib import Path

    from sqlalchemy.engine import make_url

    database = make_url(store.url).database or ""
    kind = slurm.on_network_filesystem(Path(database).parent) if database else None
    if kind:
        raise UserError(f"the SQLite store {database} is on a network filesystem ({kind}), where SQLite's locks "
                        "are unsafe; point --db (or ARCTUI_DB) at PostgreSQL for Slurm runs")
    print("arctui: warning: a SQLite store serves only this host; for Slurm runs watched from several hosts "
          "use PostgreSQL (--db postgresql+psycopg://...)", file=sys.stderr)


def dry_run_script(cfg: RunConfig) -> str:
    """What launching ``cfg`` would run, as a shell script: the Slurm batch script, or the local
    ``accelerate launch`` command (paths under a placeholder run folder; nothing is written)."""
    import shlex

    from arctui.supervisor import slurm
    from arctui.supervisor.spawn import training_command
    from runner.paths import runs_dir

    folder = RunFolder(runs_dir() / f"ID-{cfg.name}")
    argv = cfg.runner_argv(output_dir=folder.output_dir, events_file=folder.events_file)
    if cfg.on_slurm:
        return slurm.batch_script(cfg, folder, job_name=slurm.job_name(0, cfg.name).replace("-0-", "-ID-", 1),
                                  runner_argv=argv)
    gpu_ids = () if cfg.gpus == "cpu" else tuple(range(cfg.gpu_count)) if cfg.gpus == "auto" else cfg.gpus
    lines = ["#!/bin/bash", f"# arctui run {cfg.name} on this machine (the supervisor starts it in {folder.root})"]
    if gpu_ids:
        lines.append(f"export CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES={','.join(map(str, gpu_ids))}")
    lines.append(shlex.join(training_command(cfg, folder, gpu_ids)))
    return "\n".join(lines) + "\n"


def _start_supervisor(store, run_id: int, db_url: str | None, folder: RunFolder):
    """Spawn the run's supervisor; if that fails the run is recorded failed and the error is one line."""
    try:
        spawn_supervisor(run_id, db_url, folder)
    except OSError as exc:
        store.set_status(run_id, "failed", error=f"could not start the supervisor: {exc}")
        raise UserError(f"could not start the supervisor for run {run_id}: {exc}") from None
    return store.get_run(run_id)


def stop_run(store, ref, *, kill: bool = False, wait: float = 0.0, db_url: str | None = None):
    """Ask a run to stop: SIGTERM to its training process group (SIGKILL with ``kill``).

    A queued run is marked stopped at once. With ``wait`` > 0, waits up to that many seconds for the
    run to reach a final status. Returns the (re-read) Run.
    """
    from db.errors import IllegalTransitionError

    run = store.get_run(ref)
    folder = RunFolder.of(run)
    if run.executor == "slurm" and run.status in ("queued", "running"):
        return _stop_job(store, run, folder, kill=kill, wait=wait, db_url=db_url)
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


def _stop_job(store, run, folder: RunFolder, *, kill: bool, wait: float, db_url: str | None):
    """Stop a run on Slurm: SIGTERM to the job's steps (``scancel --signal=TERM``) so the runner
    checkpoints; the supervisor sends a plain scancel after the grace period. A job still pending is
    cancelled at once. ``kill``: a plain scancel now."""
    from arctui.supervisor import slurm

    folder.request_stop("kill" if kill else "term")
    if run.job_id is None:  # the supervisor is submitting it now; it sees the stop request
        return wait_for_final(store, run.id, wait, db_url=db_url) if wait > 0 else store.get_run(run.id)
    job = slurm.query_job(run.job_id)
    if kill or (job is not None and job.status == "queued" and run.status == "queued"):
        slurm.cancel(run.job_id)
    else:
        slurm.signal_job(run.job_id, "TERM")
    return wait_for_final(store, run.id, wait, db_url=db_url) if wait > 0 else store.get_run(run.id)


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
    if run.executor == "slurm":  # a new job continues from the checkpoint; the old one is history
        check_slurm_store(store)
        store.update_run(run.id, job_id=None, job_state=None, node_list=None)
    store.set_status(run.id, "queued")
    return _start_supervisor(store, run.id, db_url, folder)
