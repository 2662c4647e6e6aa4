"""What the screens ask of the supervisor, for thread workers: launch, stop and resume a run, launch
a study, and check a model reference.

The supervisor owns the training processes; the screens only ask, through here (screens import
neither ``db`` nor ``arctui.supervisor``), and see the result in the store on their next poll.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def request_stop(store, run_id: str):
    """SIGTERM to the run's process group (a queued run is marked stopped at once); returns the Run."""
    from arctui.supervisor import stop_run

    return stop_run(store, run_id)


def request_resume(store, run_id: str, db_url: str | None):
    """Resume a stopped, failed or crashed run from its latest checkpoint, as the same run, under a
    new detached supervisor; ``UserError`` when it is queued or running."""
    from arctui.supervisor import resume_run

    return resume_run(store, run_id, db_url=db_url)


def launch_detached(config, db_url: str | None) -> tuple[str, str]:
    """Launch ``config`` exactly as ``arctui launch FILE --detach`` does, in a child process.

    The child resolves the model (building the tiny one or converting the demo one the first time,
    which needs torch: never in the UI process), creates the run, spawns its detached supervisor and
    prints the run id first. The config is kept as YAML under ``$ARCTUI_HOME/launched`` as a record.
    Returns (run id, run name); a refusal raises UserError with the command's own one-line reason.
    """
    import time

    from runner.paths import arctui_home, make_private_dir

    folder = arctui_home() / "launched"
    make_private_dir(folder)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{config.name}.yaml"
    path.write_text(f"# Launched from the arctui new-run form.\n# Again:  arctui launch {path}\n" + config.to_yaml())
    run_id, stderr = _arctui_detached(["launch", str(path), "--detach"], db_url)
    import re

    named = re.search(rf"\brun {run_id} \((.+?)\)", stderr)  # the name may have got a -2 suffix
    return run_id, named.group(1) if named else config.name


def launch_study_detached(path, db_url: str | None) -> str:
    """``arctui study launch PATH --detach`` in a child process (it creates the study's runs and
    starts its scheduler); returns the study id, or raises UserError with the command's reason."""
    study_id, _stderr = _arctui_detached(["study", "launch", str(path), "--detach"], db_url)
    return study_id


def _arctui_detached(args: list[str], db_url: str | None) -> tuple[str, str]:
    """Run ``arctui ARGS`` (a command that prints an id first and returns); (id, its stderr)."""
    import os
    import subprocess
    import sys

    from runner.errors import UserError

    env = dict(os.environ)
    if db_url:
        env["ARCTUI_DB"] = db_url  # the environment, not argv: a password never shows in `ps`
    done = subprocess.run(
        [sys.executable, "-m", "arctui", *args],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not lines[0].strip().isdigit():
        errors = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = errors[-1] if errors else f"arctui {args[0]} exited with status {done.returncode}"
        raise UserError(reason.removeprefix("arctui: error: "))
    return lines[0].strip(), done.stderr


def check_model_path(path: str) -> tuple[str | None, str]:
    """(why ``path`` cannot be trained or None, a note for the field): the one model resolver's check,
    which never builds or converts anything."""
    from arctui.supervisor.resolve import check_model_ref
    from runner.errors import UserError

    try:
        return None, "✓ " + check_model_ref(path)
    except UserError as error:
        return str(error), ""
