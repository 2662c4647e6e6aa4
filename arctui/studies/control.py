"""Launch, stop and resume a study: what ``arctui study launch|stop|resume`` (and later the app) call.

    study = load_study("configs/studies/demo-cpu.yaml", gpus="cpu")
    record, runs = launch_study(store, study, db_url=db_url, max_parallel=2)
    stop_study(store, record.name)
    resume_study(store, record.name, db_url=db_url)

``launch_study`` checks every variant the way ``arctui launch`` checks a config (paths, model
references, data, and that its GPUs can ever exist on this machine) before it writes anything, then
creates the study and all its runs ``queued`` (each with its run folder) and hands them to
:mod:`arctui.studies.scheduler`.
"""

from __future__ import annotations

import socket
from pathlib import Path

from arctui.studies.scheduler import advance, ensure_scheduler, is_waiting, study_lock
from arctui.studies.spec import Study
from runner.errors import ConfigError, UserError

RESUMABLE = ("stopped", "crashed")


def _free_name(taken, base: str, limit: int = 100) -> str:
    for attempt in range(1, 1000):
        candidate = base[:limit] if attempt == 1 else f"{base[:limit - 5]}-{attempt}"
        if not taken(candidate):
            return candidate
    raise UserError(f"too many studies or runs named {base}-N; choose another --name")


def _study_taken(store, name: str) -> bool:
    from db.errors import StoreError

    try:
        store.get_study(name)
    except StoreError:
        return False
    return True


def _run_taken(store, name: str) -> bool:
    from db.errors import UnknownRunError

    try:
        store.get_run(name)
    except UnknownRunError:
        return False
    return True


def prepare_variants(study: Study) -> list:
    """Each variant's config checked and resolved like a single run's; an error names the variant."""
    from arctui.supervisor import prepare_config

    prepared = []
    for variant in study.variants:
        try:
            prepared.append(prepare_config(variant.config))
        except UserError as exc:
            raise type(exc)(f"study {study.source}: variant '{variant.name}': {exc}") from None
    return prepared


def check_parallel(study: Study, max_parallel: int | None) -> None:
    """Refuse running several runs at once on listed (pinned) GPUs: they would share them."""
    limit = max_parallel or study.max_parallel
    if limit and limit > 1 and any(isinstance(v.config.gpus, tuple) for v in study.variants):
        raise ConfigError(f"--max-parallel {limit} with listed GPUs would put runs on the same GPUs; "
                          "use --gpus auto to run several at once on free GPUs")


def launch_study(store, study: Study, *, db_url: str | None, name: str | None = None,
                 max_parallel: int | None = None, prepared: list | None = None, start: bool = True):
    """Create the study and its runs (queued) and start the scheduler. Returns (Study record, [Run]).

    ``name`` must be free; without it the study file's name gets ``-2``, ``-3``... when taken."""
    from arctui.supervisor import RunFolder

    if max_parallel is not None and max_parallel < 1:
        raise ConfigError(f"--max-parallel must be at least 1, got {max_parallel}")
    check_parallel(study, max_parallel)
    configs = prepared if prepared is not None else prepare_variants(study)
    if name is not None:
        if _study_taken(store, name):
            raise UserError(f"a study named '{name}' already exists; choose another --name")
        study_name = name
    else:
        study_name = _free_name(lambda n: _study_taken(store, n), study.name, 60)
    spec = study.to_spec()
    spec["max_parallel"] = max_parallel or study.max_parallel
    gpus = configs[0].gpus
    spec["run_gpus"] = gpus if isinstance(gpus, str) else list(gpus)
    record = store.create_study(study_name, spec)
    runs = []
    host = socket.gethostname()
    for variant, cfg in zip(study.variants, configs, strict=True):
        run_name = _free_name(lambda n: _run_taken(store, n), f"{study_name}-{variant.name}")
        run = store.create_run(
            cfg.to_dict() | {"name": run_name}, name=run_name, study=record.id, variant=variant.name,
            tags=list(cfg.tags), notes=cfg.notes, host=host, model=Path(str(cfg["model_path"])).name or None,
            gpus=cfg.gpu_count,
        )
        folder = RunFolder.for_run(run.id, run.name)
        folder.create()
        runs.append(store.update_run(run.id, output_dir=str(folder.output_dir), log_path=str(folder.log_file)))
    if start:
        advance(store, record.id, db_url)
        ensure_scheduler(record.id, db_url)
    return store.get_study(record.id), runs


def stop_study(store, study_ref, *, kill: bool = False, db_url: str | None = None) -> list[str]:
    """Start nothing more; stop the study's running runs (gracefully) and unqueue the rest.
    Returns one line per run touched. Nothing is deleted."""
    from arctui.supervisor import stop_run

    study = store.get_study(study_ref)
    with study_lock(study.id):  # an advance() in flight finishes first; the next one sees "stopped"
        store.set_study_status(study.id, "stopped")
    lines = []
    for summary in store.study_runs(study.id):
        run = summary.run
        if run.status not in ("queued", "running"):
            continue
        try:
            after = stop_run(store, run.id, kill=kill, db_url=db_url)
        except UserError as exc:
            lines.append(f"run {run.id} ({run.variant}): {exc}")
            continue
        what = "unqueued" if run.status == "queued" else "stop requested"
        lines.append(f"run {run.id} ({run.variant}): {what} ({after.status})")
    return lines


def resume_study(store, study_ref, *, db_url: str | None) -> list[str]:
    """Queue the study's stopped and crashed runs again (they continue from their latest checkpoint)
    and make it active; its scheduler starts them as slots free up. Failed runs stay failed (an out of
    memory would fail again): launch a new study to retry them."""
    from arctui.supervisor import RunFolder

    study = store.get_study(study_ref)
    summaries = store.study_runs(study.id)
    lines = []
    for summary in summaries:
        run = summary.run
        if run.status not in RESUMABLE:
            continue
        folder = RunFolder.of(run)
        if folder.supervisor_alive():
            lines.append(f"run {run.id} ({run.variant}): its supervisor is still finishing; resume again shortly")
            continue
        folder.create()
        folder.clear_stop_request()
        store.set_status(run.id, "queued")
        lines.append(f"run {run.id} ({run.variant}): queued again"
                     + (f" (from {folder.checkpoints()[-1].name})" if folder.checkpoints() else ""))
    pending = [s for s in store.study_runs(study.id) if s.run.status in ("queued", "running")]
    if not pending:
        raise UserError(f"study {study.name} has nothing to resume: no stopped, crashed, queued or running runs")
    store.set_study_status(study.id, "active")
    advance(store, study.id, db_url)
    ensure_scheduler(study.id, db_url)
    return lines


def keep_going(store, study_ref, db_url: str | None) -> None:
    """What a command that looks at a study does first: start runs whose slot freed up and restart a
    dead scheduler, so the queue moves on even when every process watching it died."""
    study = store.get_study(study_ref)
    if study.status != "active":
        return
    advance(store, study.id, db_url)
    if store.get_study(study.id).status == "active" and any(
            is_waiting(s.run) or s.run.status in ("queued", "running") for s in store.study_runs(study.id)):
        ensure_scheduler(study.id, db_url)
