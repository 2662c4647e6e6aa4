"""``arctui rename | tag | archive | delete``: tidy the run list from a shell, with the checks the
app's Runs screen makes (both go through :mod:`arctui.views.manage`).

    arctui rename 12 smollm-2048-lr3e-4
    arctui tag 12 baseline smollm            # add tags;  --remove takes them off
    arctui archive 12                         # hidden from `arctui runs` and the app; --undo shows it again
    arctui delete 12 [--with-folder] [--yes] # asks first on a terminal; --yes is needed otherwise
"""

from __future__ import annotations

import sys

from runner.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("rename", help="give a run another name")
    p.add_argument("run", metavar="RUN", help="run id or name")
    p.add_argument("new_name", metavar="NEW_NAME", help="unused name: letters, digits or ._-+:@")
    p.set_defaults(func=rename_command)

    p = subparsers.add_parser("tag", help="add (or --remove) tags of a run")
    p.add_argument("run", metavar="RUN", help="run id or name")
    p.add_argument("tags", metavar="TAG", nargs="+", help="tags: letters, digits or ._-+:@/")
    p.add_argument("--remove", action="store_true", help="take these tags off instead")
    p.set_defaults(func=tag_command)

    p = subparsers.add_parser("archive", help="hide a run from the run lists (tag 'archived'); --undo")
    p.add_argument("run", metavar="RUN", help="run id or name")
    p.add_argument("--undo", action="store_true", help="unarchive: show the run again")
    p.set_defaults(func=archive_command)

    p = subparsers.add_parser("delete", help="delete a run from the store (its folder only with --with-folder)")
    p.add_argument("run", metavar="RUN", help="run id or name")
    p.add_argument("--with-folder", action="store_true", help="also delete its folder (checkpoints, logs)")
    p.add_argument("--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")
    p.set_defaults(func=delete_command)


def _store(args):
    from arctui.supervisor import open_store

    return open_store(args.db)


def rename_command(args) -> int:
    from arctui.views.manage import rename_run

    with _store(args) as store:
        old = store.get_run(args.run)
        run = rename_run(store, args.run, args.new_name)
    print(f"run {run.id}: {old.name} -> {run.name}")
    return 0


def tag_command(args) -> int:
    from arctui.views.manage import ARCHIVED_TAG, add_tags

    if ARCHIVED_TAG in args.tags:
        raise UserError(f"'{ARCHIVED_TAG}' is set by `arctui archive RUN` (and `--undo`); leave it out")
    with _store(args) as store:
        if args.remove:
            run = add_tags(store, args.run, [], args.tags)
        else:
            run = add_tags(store, args.run, args.tags)
    print(f"run {run.id} ({run.name}) tags: {', '.join(run.tags) or '-'}")
    return 0


def archive_command(args) -> int:
    from arctui.views.manage import set_archived

    with _store(args) as store:
        run = set_archived(store, args.run, not args.undo)
    state = "unarchived" if args.undo else "archived (hidden; list it with --where tag=archived)"
    print(f"run {run.id} ({run.name}) {state}")
    return 0


def delete_command(args) -> int:
    from arctui.views.manage import delete_run

    with _store(args) as store:
        run = store.get_run(args.run)
        if not args.yes:
            if not sys.stdin.isatty():
                raise UserError(f"deleting run {run.name} (#{run.id}) needs --yes when stdin is not a terminal")
            what = "and its folder " if args.with_folder else ""
            answer = input(f"delete run {run.name} (#{run.id}) {what}from the store? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted", file=sys.stderr)
                return 1
        print(delete_run(store, run.id, remove_folder=args.with_folder))
    return 0
