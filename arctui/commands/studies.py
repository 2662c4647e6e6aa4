"""``arctui study launch | list | show | stop | resume | report``: a whole iteration as one thing.

    arctui study launch configs/studies/demo-cpu.yaml --max-parallel 2       # prints the study id first
    arctui study launch configs/studies/iteration33.yaml --gpus auto --detach
    arctui study list
    arctui study show demo-cpu
    arctui study report demo-cpu --format markdown --baseline enc-Shape.Minimal+msl-1024 --plots notes/demo
    arctui study stop demo-cpu ; arctui study resume demo-cpu

Study files: :mod:`arctui.studies.spec`; the queue and its scheduler: :mod:`arctui.studies.scheduler`;
the table: :mod:`arctui.studies.table`. Nothing here imports torch.
"""

from __future__ import annotations

import json
import signal
import sys
import time

from arctui.formatting import format_age
from runner.errors import UserError

REPORT_FORMATS = ("table", "markdown", "json", "csv")
WATCH_SECONDS = 1.0


def _positive(text: str) -> int:
    from runner.cli_args import positive_int

    return positive_int(text)


def register(subparsers) -> None:
    from runner.cli_args import OneLineArgumentParser

    group = subparsers.add_parser("study", help="run a base config plus variants as one study, and report it",
                                  description="Studies: a base config plus variants, scheduled as one and "
                                  "reported as one table (see docs/studies.md).")
    sub = group.add_subparsers(dest="study_command", metavar="SUBCOMMAND", parser_class=OneLineArgumentParser,
                               required=True)

    p = sub.add_parser("launch", help="create a study's runs and start them as slots free up",
                       description="Validate every variant, create the study and its runs (queued) and start "
                       "them: --max-parallel at once on CPU, as GPUs free up with gpus auto. Without --detach, "
                       "shows the study table live (Ctrl-C stops the study gracefully).")
    p.add_argument("file", metavar="FILE", help="study YAML, e.g. configs/studies/demo-cpu.yaml")
    p.add_argument("--gpus", default=None, help="every run's GPUs: 'auto' (queue for free GPUs), '0,1' or 'cpu'")
    p.add_argument("--max-parallel", type=_positive, default=None, metavar="N",
                   help="at most N runs at once (default: the file's max_parallel, else 1 on CPU or pinned "
                   "GPUs; with auto, as many as the free GPUs allow)")
    p.add_argument("--name", default=None, help="study name (must be unused; default the file's name)")
    p.add_argument("--detach", action="store_true", help="print the study id and return; the study goes on")
    p.set_defaults(func=launch_command)

    p = sub.add_parser("list", help="list studies with their progress")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=list_command)

    for name, what in (("show", "the study table (live figures of running runs)"),
                       ("report", "the study table as a report")):
        p = sub.add_parser(name, help=what)
        p.add_argument("study", metavar="STUDY", help="study id or name")
        p.add_argument("--format", choices=REPORT_FORMATS, default="table")
        p.add_argument("--baseline", default=None, metavar="NAME",
                       help="variant the ratios refer to (default: the first)")
        if name == "report":
            p.add_argument("--plots", default=None, metavar="DIR",
                           help="also write PNG figures and report.md (the table with them embedded) into DIR")
        p.set_defaults(func=show_command)

    p = sub.add_parser("stop", help="stop a study: running runs stop gracefully, queued ones are unqueued")
    p.add_argument("study", metavar="STUDY", help="study id or name")
    p.add_argument("--kill", action="store_true", help="kill running runs at once (SIGKILL), no checkpoint")
    p.set_defaults(func=stop_command)

    p = sub.add_parser("resume", help="continue a stopped study: stopped runs resume from their checkpoints")
    p.add_argument("study", metavar="STUDY", help="study id or name")
    p.add_argument("--detach", action="store_true", help="return at once; the study goes on")
    p.set_defaults(func=resume_command)


def _gpus_value(text: str | None):
    if text is None:
        return None
    from arctui.config import config_from_mapping

    try:
        # the same parsing as a config's gpus key (one-line ConfigError otherwise)
        return config_from_mapping({"gpus": text}, validate=False).gpus
    except UserError as exc:
        raise UserError(f"--gpus: {exc}") from None


def launch_command(args) -> int:
    from arctui.studies.control import check_parallel, launch_study, prepare_variants
    from arctui.studies.spec import load_study
    from arctui.supervisor import open_store

    gpus = _gpus_value(args.gpus)
    study = load_study(args.file, gpus=list(gpus) if isinstance(gpus, tuple) else gpus)
    if args.name is not None:
        from arctui.config import NAME_RE

        if not NAME_RE.fullmatch(args.name) or args.name.isdigit() or len(args.name) > 60:
            raise UserError(f"--name {args.name!r} must be 1-60 letters, digits or ._-+:@, not only digits")
    check_parallel(study, args.max_parallel)
    prepared = prepare_variants(study)  # everything checked before anything is written
    store = open_store(args.db)
    try:
        record, runs = launch_study(store, study, db_url=args.db, name=args.name,
                                    max_parallel=args.max_parallel, prepared=prepared)
        print(record.id, flush=True)
        print(f"arctui: study {record.id} ({record.name}): {len(runs)} runs queued "
              f"(ids {runs[0].id}-{runs[-1].id}); `arctui study show {record.name}` shows its table",
              file=sys.stderr)
        if args.detach:
            return 0
        return watch_study(store, record.id, db_url=args.db)
    finally:
        store.close()


def watch_study(store, study_id: int, *, db_url: str | None, out=None) -> int:
    """Print the study table whenever a run changes status or step until no run is queued or running. Ctrl-C stops the
    study gracefully (a second Ctrl-C leaves it to finish stopping on its own). 0 when every run
    completed, else 1."""
    from arctui.studies.control import keep_going, stop_study
    from arctui.studies.table import read_study_table, study_text

    out = out or sys.stdout
    last = None
    stopping = False
    previous = signal.getsignal(signal.SIGINT)
    try:
        while True:
            try:
                keep_going(store, study_id, db_url)
                table = read_study_table(store, study_id)
                # Redrawn when a run changes status or step, not as its wall time ticks.
                signature = tuple((r.run.status, r.run.step) for r in table.rows)
                if signature != last:
                    print(study_text(table) + "\n", file=out, flush=True)
                    last = signature
                if all(r.run.status not in ("queued", "running") for r in table.rows):
                    return 0 if all(r.run.status == "completed" for r in table.rows) else 1
                time.sleep(WATCH_SECONDS)
            except KeyboardInterrupt:
                if stopping:
                    print("arctui: the study's runs go on stopping in the background", file=sys.stderr)
                    return 130
                stopping = True
                print("arctui: stopping the study (Ctrl-C again to stop waiting)", file=sys.stderr)
                for line in stop_study(store, study_id, db_url=db_url):
                    print(f"arctui: {line}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, previous)


def list_command(args) -> int:
    from arctui.studies.control import keep_going
    from arctui.supervisor import open_store
    from arctui.views.studies import ETA_LABEL, read_study_list
    from arctui.views.tables import text_table

    store = open_store(args.db)
    try:
        for study in store.list_studies():
            keep_going(store, study.id, args.db)
        now = time.time()
        studies = read_study_list(store, now)  # the same progress and ETA as the app's Studies screen
        if args.format == "json":
            print(json.dumps([p.record() for p in studies], indent=2))
            return 0
        if not studies:
            print("no studies yet: `arctui study launch configs/studies/demo-cpu.yaml`")
            return 0
        rows = [[str(p.id), p.name, p.status, p.done_text, str(p.counts["running"]), str(p.counts["queued"]),
                 str(p.counts["failed"]), str(p.counts["stopped"]), p.eta_text, format_age(p.created_at, now)]
                for p in studies]
        print(text_table(["id", "name", "status", "done", "running", "queued", "failed", "stopped", ETA_LABEL,
                          "created"], rows))
        return 0
    finally:
        store.close()


def show_command(args) -> int:
    from arctui.studies.control import keep_going
    from arctui.studies.table import read_study_table, render
    from arctui.supervisor import open_store

    store = open_store(args.db)
    try:
        keep_going(store, args.study, args.db)
        table = read_study_table(store, args.study, baseline=args.baseline)
        print(render(table, args.format))
        if getattr(args, "plots", None):
            from pathlib import Path

            from arctui.studies.plots import write_report

            for path in write_report(store, args.study, Path(args.plots), baseline=args.baseline):
                print(f"arctui: wrote {path}", file=sys.stderr)
        return 0
    finally:
        store.close()


def stop_command(args) -> int:
    from arctui.studies.control import stop_study
    from arctui.supervisor import open_store

    store = open_store(args.db)
    try:
        study = store.get_study(args.study)
        lines = stop_study(store, study.id, kill=args.kill, db_url=args.db)
        for line in lines:
            print(line)
        print(f"study {study.id} ({study.name}) stopped; `arctui study resume {study.name}` continues it")
        return 0
    finally:
        store.close()


def resume_command(args) -> int:
    from arctui.studies.control import resume_study
    from arctui.supervisor import open_store

    store = open_store(args.db)
    try:
        study = store.get_study(args.study)
        for line in resume_study(store, study.id, db_url=args.db):
            print(line, file=sys.stderr)
        print(study.id, flush=True)
        if args.detach:
            return 0
        return watch_study(store, study.id, db_url=args.db)
    finally:
        store.close()
