"""The ``arctui`` command line.

``arctui`` with no command opens the TUI; every other command is headless and scriptable. Command
groups live in :mod:`arctui.commands`, one module each, and import heavy libraries (torch,
transformers, textual) only inside the handlers that need them, so history commands start fast.

Every handler either returns an exit code or raises :class:`runner.errors.UserError`; this module
turns such errors into one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from runner.cli_args import OneLineArgumentParser
from runner.errors import UserError

# Each module defines ``register(subparsers)`` and sets ``func`` on the parsers it adds.
COMMAND_MODULES = (
    "arctui.commands.run_commands",
    "arctui.commands.history",
    "arctui.commands.manage",
    "arctui.commands.data",
    "arctui.commands.models",
    "arctui.commands.evaluate",
    "arctui.commands.database",
    "arctui.commands.gpus",
    "arctui.commands.studies",
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="arctui",
        description="Terminal experiment manager for LoRA fine-tuning on ARC. "
        "Without a command, opens the TUI.",
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="SQLAlchemy database URL (default: $ARCTUI_DB or sqlite:///$ARCTUI_HOME/arctui.db)",
    )
    from arctui import __version__

    parser.add_argument("--version", action="version", version=f"arctui {__version__}")
    parser.add_argument("--open-run", metavar="RUN", default=None,
                        help="open the TUI on this run's Run screen (id or name), e.g. a run just launched")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineArgumentParser
    )
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def open_tui(args: argparse.Namespace) -> int:
    from arctui.app import make_app

    run_id = None
    if args.open_run is not None:
        from db.store import RunStore

        with RunStore.open(args.db) as store:  # an unknown run is one line on stderr, not an empty screen
            run_id = str(store.get_run(args.open_run).id)
    app = make_app(db_url=args.db, open_run=run_id)
    app.run()
    return app.return_code or 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "func", None) or open_tui
    try:
        return int(handler(args) or 0)
    except UserError as exc:
        print(f"arctui: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("arctui: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `arctui runs | head` closes the pipe early; that is not an error.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
