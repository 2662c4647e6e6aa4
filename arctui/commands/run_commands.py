"""``arctui launch | stop | resume | logs``: start runs and control them from a shell.

    arctui launch configs/tiny-cpu.yaml --set max_steps=20 --gpus cpu      # prints the run id first
    id=$(arctui launch configs/demo-cpu.yaml --detach) && arctui --open-run "$id"   # what `make run` does
    arctui launch configs/seed/04_1gpu_2048msl.yaml --gpus auto --detach
    arctui launch configs/tiny-cpu.yaml --executor slurm --set executor.partition=gpu --dry-run
    arctui stop 12 [--kill] [--wait]
    arctui resume 12 [--set max_steps=200] [--detach]
    arctui logs 12 [-f] [-n 100] [--supervisor]
"""

from __future__ import annotations

import sys
import time


def register(subparsers) -> None:
    p = subparsers.add_parser("launch", help="start a run from a YAML config",
                              description="Start a run; prints its id first (labelled on a terminal, "
                              "bare when piped). Without --detach, "
                              "shows it live (Ctrl-C stops it gracefully, twice kills it).")
    p.add_argument("config", metavar="CONFIG", help="YAML run config, e.g. configs/tiny-cpu.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. --set max_steps=20")
    p.add_argument("--gpus", default=None, help="'0,1' (indices), 'auto' (queue for free GPUs) or 'cpu'")
    p.add_argument("--name", default=None, help="run name (must be unused)")
    p.add_argument("--detach", action="store_true", help="print the run id and return; the run goes on")
    p.add_argument("--executor", choices=("local", "slurm"), default=None,
                   help="where to train: this machine, or a Slurm job (the config's executor: options)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the script that would run (the sbatch script on Slurm); start nothing")
    p.set_defaults(func=launch_command)

    p = subparsers.add_parser("stop", help="stop a run (graceful: saves a checkpoint)")
    p.add_argument("run", metavar="RUN", help="run id or name")
    p.add_argument("--kill", action="store_true", help="kill at once (SIGKILL), no checkpoint")
    p.add_argument("--wait", type=float, nargs="?", const=600.0, default=0.0, metavar="SECONDS",
                   help="wait until the run has ended (default up to 600 s)")
    p.set_defaults(func=stop_command)

    p = subparsers.add_parser("resume", help="continue a stopped/failed/crashed run from its latest checkpoint")
    p.add_argument("run", metavar="RUN", help="run id or name")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="only max_steps, save_steps, eval_steps, logging_steps, notes, tags")
    p.add_argument("--detach", action="store_true", help="print the run id and return")
    p.set_defaults(func=resume_command)

    p = subparsers.add_parser("logs", help="print a run's training log")
    p.add_argument("run", metavar="RUN", help="run id or name")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    p.add_argument("-n", "--lines", type=int, default=None, metavar="N", help="only the last N lines")
    p.add_argument("--supervisor", action="store_true", help="the supervisor's log instead")
    p.set_defaults(func=logs_command)


def _attach_or_return(store, run, args) -> int:
    from arctui.supervisor.live import watch_run

    # scripts read the bare id (`id=$(arctui launch ... --detach)`); a person sees what it is
    print(f"run id {run.id} ({run.name})" if sys.stdout.isatty() else run.id, flush=True)
    if args.detach:
        print(f"arctui: run {run.id} ({run.name}) {run.status}; follow it with `arctui logs {run.id} -f`",
              file=sys.stderr)
        return 0
    return watch_run(store, run.id, db_url=args.db)


def launch_command(args) -> int:
    from arctui.config import load_config
    from arctui.supervisor import launch_run, open_store, prepare_config

    cfg = load_config(args.config, args.overrides)
    if args.gpus is not None:
        cfg = cfg.with_overrides({"gpus": args.gpus})
    if args.executor is not None:
        cfg = cfg.with_overrides({"executor": {"type": args.executor}})
    if args.name is not None:
        named = cfg.with_overrides({"name": args.name})  # validates the name before anything is written
        cfg = named if args.dry_run else cfg
    cfg = prepare_config(cfg)
    if args.dry_run:
        from arctui.supervisor.launch import dry_run_script

        sys.stdout.write(dry_run_script(cfg))
        return 0
    store = open_store(args.db)
    try:
        run = launch_run(store, cfg, db_url=args.db, name=args.name, prepared=True)
        return _attach_or_return(store, run, args)
    finally:
        store.close()


def stop_command(args) -> int:
    from arctui.supervisor import open_store, stop_run

    store = open_store(args.db)
    try:
        run = stop_run(store, args.run, kill=args.kill, wait=args.wait, db_url=args.db)
        if run.status in ("queued", "running"):
            verb = "killing" if args.kill else "stopping (saving a checkpoint)"
            print(f"run {run.id} ({run.name}) {verb}; `arctui logs {run.id} -f` to follow")
            return 0 if not args.wait else 1
        print(f"run {run.id} ({run.name}) {run.status}")
        return 0
    finally:
        store.close()


def resume_command(args) -> int:
    from arctui.config import parse_overrides
    from arctui.supervisor import open_store, resume_run

    overrides = parse_overrides(args.overrides)
    store = open_store(args.db)
    try:
        run = resume_run(store, args.run, db_url=args.db, overrides=overrides)
        return _attach_or_return(store, run, args)
    finally:
        store.close()


def logs_command(args) -> int:
    from arctui.supervisor import RunFolder, open_store
    from runner.errors import UserError

    if args.lines is not None and args.lines < 0:
        raise UserError("-n must be >= 0")
    store = open_store(args.db)
    try:
        run = store.get_run(args.run)
        folder = RunFolder.of(run)
        path = folder.supervisor_log if args.supervisor else folder.log_file
        if not path.exists() and run.status != "queued":
            gone = not folder.root.exists()
            raise UserError(f"run {run.id} ({run.name}) has no {'supervisor ' if args.supervisor else ''}log: "
                            + (f"its run folder {folder.root} is gone; its metrics stay in the store "
                               f"(`arctui show {run.id}`)" if gone else f"{path} is missing"))
        offset = _print_existing(path, args.lines)
        while args.follow:
            offset = _print_new(path, offset)
            run = store.get_run(run.id)
            if run.status not in ("queued", "running"):
                _print_new(path, offset)
                break
            time.sleep(0.5)
        return 0
    finally:
        store.close()


def _print_existing(path, lines: int | None) -> int:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    if lines is not None:
        chunks = data.splitlines(keepends=True)
        shown = b"".join(chunks[-lines:]) if lines else b""
    else:
        shown = data
    sys.stdout.buffer.write(shown)
    sys.stdout.flush()
    return len(data)


def _print_new(path, offset: int) -> int:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return offset
    if data:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return offset + len(data)
