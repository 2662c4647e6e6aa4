"""Rename, tag, archive and delete runs: the one path `arctui rename|tag|archive|delete` and the
Runs screen take (thread workers or a command; each takes an open ``RunStore``).

Archiving is a tag (:data:`ARCHIVED_TAG`): archived runs keep everything and are hidden from lists
unless a filter asks for them (``tag=archived``). The store checks names and tags; deleting is
refused while a run is queued or running, and removes the run folder only when asked.
"""

from __future__ import annotations

import shutil

from runner.errors import UserError

ARCHIVED_TAG = "archived"
# Held beside a list filter unless the filter itself speaks of archived runs.
HIDE_ARCHIVED = f"not tag={ARCHIVED_TAG}"


def hidden_runs(where: str | None) -> str | None:
    """The filter that hides archived runs from a list filtered by ``where``, or None when ``where``
    itself names ``archived``. It goes to ``read_runs(..., also=...)``, not into the user's text, so
    a filter at the language's depth and size bounds still runs."""
    return None if ARCHIVED_TAG in (where or "") else HIDE_ARCHIVED


def rename_run(store, ref: str, new_name: str):
    """Give run ``ref`` the name ``new_name`` (refused when taken or not a valid name); returns the Run."""
    return store.update_run(ref, name=new_name.strip())


def set_tags(store, ref: str, tags: list[str] | tuple[str, ...]):
    """Replace the run's tags (``archived`` stays as it was: archiving has its own command)."""
    run = store.get_run(ref)
    kept = [ARCHIVED_TAG] if ARCHIVED_TAG in run.tags else []
    wanted = [t.strip() for t in tags if t.strip() and t.strip() != ARCHIVED_TAG]
    return store.update_run(ref, tags=wanted + kept)


def add_tags(store, ref: str, add: list[str], remove: list[str] = ()):
    """Add and remove tags, keeping the others; returns the Run."""
    run = store.get_run(ref)
    tags = [t for t in run.tags if t not in remove]
    tags += [t for t in add if t not in tags]
    return store.update_run(ref, tags=tags)


def set_archived(store, ref: str, archived: bool):
    """Archive (hide from lists) or unarchive a run; returns the Run."""
    if archived:
        return add_tags(store, ref, [ARCHIVED_TAG])
    return add_tags(store, ref, [], [ARCHIVED_TAG])


def delete_run(store, ref: str, *, remove_folder: bool = False) -> str:
    """Delete the run from the store (refused while queued or running) and, when asked, its folder
    (checkpoints, logs, events); returns one line saying what was removed."""
    from arctui.supervisor.runfolder import RunFolder

    run = store.get_run(ref)
    folder = RunFolder.of(run).root
    label = f"run {run.name} (#{run.id})"
    if remove_folder and not folder.name.startswith(f"{run.id}-"):
        # only a folder laid out as a run folder (<id>-<name>) is ever removed wholesale
        raise UserError(f"{folder} does not look like the folder of {label}; delete it by hand, or "
                        "delete the run without its folder")
    store.delete_run(run.id)
    if not remove_folder:
        return f"deleted {label} from the store; its folder {folder} is kept"
    if folder.is_dir():
        shutil.rmtree(folder)
        return f"deleted {label} and its folder {folder}"
    return f"deleted {label}; its folder {folder} was already gone"
