"""Small families of simple ARC tasks, for proving that training and evaluation really work.

Each task applies one rule to random small grids; its train and test samples share the rule (and,
for ``recolour``, the task's own colour mapping), so a model that learned the family solves held-out
tasks from their examples. Written in the ARC JSON layout (task id -> task), so every loader and
command that reads ARC data reads these files too::

    python -m runner.synthetic OUT.json --rules rotate_180,recolour --tasks 200 --seed 0

Rules:

- ``identity``: output = input.
- ``flip_lr`` / ``flip_ud``: mirror left-right / upside-down.
- ``transpose``: swap rows and columns.
- ``rotate_180``: turn half a turn. It commutes with every flip and quarter turn, so it stays the same
  rule under the geometric test-time augmentation (the others turn into each other).
- ``recolour``: a per-task permutation of the colours 1-9 (0 stays), shown by the examples; colour
  permutations commute with geometry, so this rule too is unchanged by augmentation.

Pure Python (random, json): no torch.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from runner.errors import UserError

Grid = list[list[int]]


def _flip_lr(grid: Grid) -> Grid:
    return [list(reversed(row)) for row in grid]


def _flip_ud(grid: Grid) -> Grid:
    return [list(row) for row in reversed(grid)]


def _transpose(grid: Grid) -> Grid:
    return [list(column) for column in zip(*grid, strict=True)]


def _rotate_180(grid: Grid) -> Grid:
    return _flip_ud(_flip_lr(grid))


def _identity(grid: Grid) -> Grid:
    return [list(row) for row in grid]


GEOMETRIC_RULES: dict[str, Callable[[Grid], Grid]] = {
    "identity": _identity,
    "flip_lr": _flip_lr,
    "flip_ud": _flip_ud,
    "transpose": _transpose,
    "rotate_180": _rotate_180,
}
RULES = (*GEOMETRIC_RULES, "recolour")


def random_grid(rng: random.Random, rows: int, cols: int, colours: Sequence[int]) -> Grid:
    """A rows x cols grid: about half background (0), the rest drawn from ``colours``."""
    return [[rng.choice(colours) if rng.random() < 0.5 else 0 for _ in range(cols)] for _ in range(rows)]


def make_task(
    rule: str,
    rng: random.Random,
    *,
    n_train: int = 3,
    n_test: int = 1,
    min_size: int = 2,
    max_size: int = 4,
    n_colours: int = 3,
) -> dict:
    """One task of ``rule``: ``n_train`` examples and ``n_test`` test samples (with outputs).

    All grids of a task share one shape drawn from [min_size, max_size] per side (transpose swaps it)
    and ``n_colours`` colours besides the background.
    """
    if rule not in RULES:
        raise UserError(f"unknown synthetic rule {rule!r}; choose from {', '.join(RULES)}")
    if not 1 <= min_size <= max_size <= 30:
        raise UserError(f"grid sizes must satisfy 1 <= min_size <= max_size <= 30, got {min_size}..{max_size}")
    if not 1 <= n_colours <= 9:
        raise UserError(f"n_colours must be between 1 and 9, got {n_colours}")
    rows, cols = rng.randint(min_size, max_size), rng.randint(min_size, max_size)
    colours = rng.sample(range(1, 10), n_colours)
    if rule == "recolour":
        # A derangement of the task's colours, so that every coloured cell changes.
        if n_colours > 1:
            targets = colours[1:] + colours[:1]
        else:
            targets = [rng.choice([c for c in range(1, 10) if c != colours[0]])]
        mapping = dict(zip(colours, targets, strict=True))

        def transform(grid: Grid) -> Grid:
            return [[mapping.get(cell, cell) for cell in row] for row in grid]
    else:
        transform = GEOMETRIC_RULES[rule]

    def sample() -> dict:
        grid = random_grid(rng, rows, cols, colours)
        # An all-background grid shows nothing of the rule; redraw it.
        while not any(any(row) for row in grid):
            grid = random_grid(rng, rows, cols, colours)
        return {"input": grid, "output": transform(grid)}

    return {"train": [sample() for _ in range(n_train)], "test": [sample() for _ in range(n_test)]}


def make_tasks(
    n_tasks: int,
    rules: Sequence[str] = RULES,
    *,
    seed: int = 0,
    prefix: str = "synthetic",
    **task_options,
) -> dict[str, dict]:
    """``n_tasks`` tasks cycling through ``rules``; ids are ``{prefix}-{index:05d}-{rule}``.

    The same arguments give the same tasks; different seeds give (almost surely) disjoint tasks, so
    ``seed=0`` for training and ``seed=1`` for evaluation are held out from each other.
    """
    if n_tasks < 1:
        raise UserError(f"n_tasks must be at least 1, got {n_tasks}")
    if not rules:
        raise UserError(f"give at least one rule; choose from {', '.join(RULES)}")
    rng = random.Random(seed)
    return {
        f"{prefix}-{index:05d}-{rules[index % len(rules)]}": make_task(rules[index % len(rules)], rng, **task_options)
        for index in range(n_tasks)
    }


def write_tasks(path: str | Path, tasks: dict[str, dict]) -> Path:
    """Write tasks as an ARC JSON file (task id -> task) and return its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(tasks))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="JSON file to write (task id -> task)")
    parser.add_argument("--rules", default=",".join(RULES), help=f"comma-separated, from: {', '.join(RULES)}")
    parser.add_argument("--tasks", type=int, default=100, help="number of tasks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-samples", type=int, default=3, help="examples per task")
    parser.add_argument("--min-size", type=int, default=2)
    parser.add_argument("--max-size", type=int, default=4)
    parser.add_argument("--colours", type=int, default=3, help="colours besides the background")
    args = parser.parse_args(argv)
    try:
        rules = [rule.strip() for rule in args.rules.split(",") if rule.strip()]
        tasks = make_tasks(
            args.tasks,
            rules,
            seed=args.seed,
            n_train=args.train_samples,
            min_size=args.min_size,
            max_size=args.max_size,
            n_colours=args.colours,
        )
        path = write_tasks(args.output, tasks)
    except UserError as exc:
        print(f"synthetic: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {len(tasks)} tasks to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
