"""Seeded data augmentation for ARC tasks, and its inverse for predictions.

An :class:`Augmentation` is one of the 8 geometric transforms (optional left-right flip, then 0-3
counter-clockwise quarter turns, as ``numpy.fliplr`` then ``numpy.rot90``) plus a colour map
(``color_map[c]`` is the new colour of ``c``). Random colour maps permute 1-9 and keep 0 (the
background) with probability 0.9; otherwise they permute all ten colours. Example shuffling and the
train/test swap are separate seeded steps. Every random function takes ``rng``: an int seed, a
``random.Random`` or a ``numpy.random.Generator``.

As arc24 (``compat/arc24/augmentation_semantics.md``): a training draw transforms the task, shuffles
its train examples and, unless the prompt version shows the task's own test (select/verify), shuffles
train and test samples together and re-splits them with the original sizes
(:func:`swap_train_and_test`). :func:`compose_new_task` adds one more transformation (geometric,
padding, upscale or mirror) to every input or every output, making a new task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runner.data import Grid, Task, as_random
from runner.flags import COMPOSE_TRANSFORMS

IDENTITY_COLORS = tuple(range(10))
MAX_GRID_SIZE = 30  # ARC's largest side; compose_new_task never makes a grid larger


@dataclass(frozen=True)
class Augmentation:
    flip: bool = False
    rotations: int = 0
    color_map: tuple[int, ...] = IDENTITY_COLORS

    def __post_init__(self) -> None:
        object.__setattr__(self, "color_map", tuple(self.color_map))  # lists too; stays hashable
        if self.rotations not in (0, 1, 2, 3):
            raise ValueError(f"rotations must be 0-3, got {self.rotations!r}")
        if sorted(self.color_map) != list(range(10)):
            raise ValueError(f"color_map must be a permutation of 0-9, got {self.color_map!r}")

    @property
    def is_identity(self) -> bool:
        return not self.flip and self.rotations == 0 and tuple(self.color_map) == IDENTITY_COLORS

    def describe(self) -> str:
        colors = "identity" if tuple(self.color_map) == IDENTITY_COLORS else "".join(map(str, self.color_map))
        return f"flip={'yes' if self.flip else 'no'} rotations={self.rotations * 90} colors={colors}"


def _rot90(grid: Grid) -> Grid:
    """One counter-clockwise quarter turn (``numpy.rot90``)."""
    return [list(row) for row in zip(*grid, strict=True)][::-1]


def _rot90_clockwise(grid: Grid) -> Grid:
    return [list(row) for row in zip(*grid[::-1], strict=True)]


def apply_grid(grid: Grid, aug: Augmentation) -> Grid:
    """``grid`` in the augmented frame: flip, rotate, then recolour."""
    out = [row[::-1] for row in grid] if aug.flip else [row[:] for row in grid]
    for _ in range(aug.rotations):
        out = _rot90(out)
    cmap = aug.color_map
    return [[cmap[v] for v in row] for row in out]


def revert_grid(grid: Grid, aug: Augmentation) -> Grid:
    """The inverse of :func:`apply_grid`: maps a prediction back to the original frame."""
    inverse = [0] * 10
    for original, new in enumerate(aug.color_map):
        inverse[new] = original
    out = [[inverse[v] for v in row] for row in grid]
    for _ in range(aug.rotations):
        out = _rot90_clockwise(out)
    return [row[::-1] for row in out] if aug.flip else out


def apply_augmentation(task: Task, aug: Augmentation) -> Task:
    """A new task with every grid (train and test, inputs and outputs) transformed."""
    out: Task = {}
    for split in ("train", "test"):
        if split in task:
            out[split] = [
                {key: apply_grid(grid, aug) for key, grid in sample.items()} for sample in task[split]
            ]
    if "n_train" in task:
        out["n_train"] = task["n_train"]
    return out


def random_color_map(rng: object, keep_background_p: float = 0.9) -> tuple[int, ...]:
    rng = as_random(rng)
    if rng.random() < keep_background_p:
        colors = list(range(1, 10))
        rng.shuffle(colors)
        return (0, *colors)
    colors = list(range(10))
    rng.shuffle(colors)
    return tuple(colors)


def random_augmentation(rng: object, *, keep_background_p: float = 0.9) -> Augmentation:
    """A random geometric transform (one of 8) and colour map."""
    rng = as_random(rng)
    flip = rng.random() < 0.5
    rotations = rng.randrange(4)
    return Augmentation(flip, rotations, random_color_map(rng, keep_background_p))


def geometric_transforms() -> list[tuple[bool, int]]:
    """The 8 (flip, rotations) pairs, identity first."""
    return [(flip, rotations) for flip in (False, True) for rotations in range(4)]


def inference_augmentation(
    rng: object, prediction_index: int, predictions_per_task: int, n_train: int
) -> tuple[Augmentation, list[int]]:
    """The augmentation and train order of prediction ``prediction_index`` of a test sample.

    With 8 or more predictions, arc24's plan: each of the 8 geometric transforms (in
    :func:`geometric_transforms` order) gets ``predictions_per_task // 8`` consecutive predictions,
    each with its own random colour map (background kept with p=0.9) and train order; a remainder of
    ``predictions_per_task % 8`` follows with transforms 0, 1, ... (arc24 makes none). Below 8, where
    arc24 makes no prompt at all, prediction ``i`` uses transform ``i``, and prediction 0 is the task as
    given (identity colours, original order)."""
    rng = as_random(rng)
    per_transform = predictions_per_task // 8
    if prediction_index < 8 * per_transform:
        flip, rotations = geometric_transforms()[prediction_index // per_transform]
    elif per_transform == 0 and prediction_index == 0:
        return Augmentation(), list(range(n_train))
    else:
        flip, rotations = geometric_transforms()[prediction_index % 8]
    aug = Augmentation(flip, rotations, random_color_map(rng))
    order = list(range(n_train))
    rng.shuffle(order)
    return aug, order


def order_train(task: Task, order: Sequence[int]) -> Task:
    """A copy of ``task`` whose train example ``i`` is the original ``task["train"][order[i]]``."""
    if sorted(order) != list(range(len(task["train"]))):
        raise ValueError(f"train order {list(order)!r} is not a permutation of 0..{len(task['train']) - 1}")
    return {**task, "train": [task["train"][i] for i in order]}


def shuffle_train(task: Task, rng: object) -> Task:
    """A copy of ``task`` with its train examples in a random order."""
    order = list(range(len(task["train"])))
    as_random(rng).shuffle(order)
    return order_train(task, order)


def swap_train_and_test(task: Task, rng: object) -> Task:
    """A copy of ``task`` whose train and test samples are shuffled together and re-split with the
    original sizes (training only; every sample needs its output). An original test sample stays a
    test sample with probability m/(k+m) for k train and m test samples, as in arc24."""
    samples = list(task["train"]) + list(task["test"])
    if any("output" not in sample for sample in samples):
        raise ValueError("swap_train_and_test needs the outputs of every sample")
    as_random(rng).shuffle(samples)
    n_train = len(task["train"])
    return {**task, "train": samples[:n_train], "test": samples[n_train:]}


def augment_task(
    task: Task, rng: object, *, shuffle: bool = True, swap: bool = False, keep_background_p: float = 0.9
) -> tuple[Task, Augmentation]:
    """One random training augmentation: transform + colours, shuffle the train examples, then
    (optionally) the train/test swap."""
    rng = as_random(rng)
    aug = random_augmentation(rng, keep_background_p=keep_background_p)
    out = apply_augmentation(task, aug)
    if shuffle:
        out = shuffle_train(out, rng)
    if swap:
        out = swap_train_and_test(out, rng)
    return out, aug


# ----------------------------------------------------------------------------------------------------
# compose_new_task: one more transformation on every input or every output


def _pad(grid: Grid, color: int, rows: int, cols: int) -> Grid:
    width = len(grid[0]) + 2 * cols
    band = [[color] * width for _ in range(rows)]
    middle = [[color] * cols + row + [color] * cols for row in grid]
    return [r[:] for r in band] + middle + [r[:] for r in band]


def _upscale(grid: Grid, rows: int, cols: int) -> Grid:
    wide = [[cell for cell in row for _ in range(cols)] for row in grid]
    return [row[:] for row in wide for _ in range(rows)]


def _mirror(grid: Grid, axis: int, before: bool) -> Grid:
    if axis == 0:  # stack a flipped copy above (before) or below
        flipped = [row[:] for row in grid[::-1]]
        return flipped + [row[:] for row in grid] if before else [row[:] for row in grid] + flipped
    return [row[::-1] + row if before else row + row[::-1] for row in grid]


def _differing(rng, low: int, highs: tuple[int, int], tries: int = 10) -> tuple[int, int]:
    """(rows, cols) factors, each in low..its high, redrawn up to ``tries`` times until they differ."""
    for _ in range(tries):
        sizes = (rng.randint(low, highs[0]), rng.randint(low, highs[1]))
        if sizes[0] != sizes[1]:
            break
    return sizes


def _compose_transform(name: str, shape: tuple[int, int], rng):
    """The transformation ``name`` with random parameters that keep grids of at most ``shape`` within
    30x30; None when ``shape`` leaves no room for it."""
    rows, cols = shape
    if name == "geometric":
        aug = Augmentation(rng.random() < 0.5, rng.randrange(4))
        return lambda grid: apply_grid(grid, aug)
    if name == "padding":
        # A border on both sides; arc24 bounds it by 30 - side, which can make 31..40: arctui keeps 30.
        highs = (min((MAX_GRID_SIZE - rows) // 2, 5), min((MAX_GRID_SIZE - cols) // 2, 5))
        if min(highs) < 1:
            return None
        if rng.random() < 0.5:  # the same border on both axes, 1..5
            size = rng.randint(1, min(highs))
            sizes = (size, size)
        else:
            sizes = _differing(rng, 1, highs)
        color = rng.randint(0, 9)
        return lambda grid: _pad(grid, color, *sizes)
    if name == "upscale":
        highs = (min(MAX_GRID_SIZE // rows, 4), min(MAX_GRID_SIZE // cols, 4))
        if rng.random() < 0.5:  # the same factor on both axes, 2..4
            if min(highs) < 2:
                return None
            factor = rng.randint(2, min(highs))
            factors = (factor, factor)
        else:  # a factor per axis, 1..4, redrawn (up to 10 times) until they differ
            if max(highs) < 2 or min(highs) < 1:
                return None
            factors = _differing(rng, 1, highs)
        return lambda grid: _upscale(grid, *factors)
    if name == "mirror":
        room = (MAX_GRID_SIZE // rows >= 2, MAX_GRID_SIZE // cols >= 2)
        if not any(room):
            return None
        axis = rng.randint(0, 1) if all(room) else (0 if room[0] else 1)
        before = rng.randint(0, 1) == 0
        return lambda grid: _mirror(grid, axis, before)
    raise ValueError(f"unknown transformation {name!r}; use one of {', '.join(COMPOSE_TRANSFORMS)}")


def compose_new_task(task: Task, rng: object, weights: Sequence[float] | None = None) -> tuple[Task, str]:
    """A new task: one more transformation applied to every input, or to every output (chosen at
    random), of every sample; ``weights`` weigh :data:`COMPOSE_TRANSFORMS` (equal when None).

    Returns the task and what was done (``"upscale output"``); a task whose grids are too large for
    the chosen transformation comes back unchanged (``"none"``), as in arc24."""
    rng = as_random(rng)
    if weights is not None and len(weights) != len(COMPOSE_TRANSFORMS):
        raise ValueError(f"weights need {len(COMPOSE_TRANSFORMS)} values ({', '.join(COMPOSE_TRANSFORMS)})")
    target = rng.choice(("input", "output"))
    name = rng.choices(COMPOSE_TRANSFORMS, weights=weights)[0]
    grids = [sample[target] for split in ("train", "test") for sample in task.get(split, []) if target in sample]
    shape = (max(len(g) for g in grids), max(len(g[0]) for g in grids))
    transform = _compose_transform(name, shape, rng)
    if transform is None:
        return task, "none"
    out: Task = {**task}
    for split in ("train", "test"):
        if split in task:
            out[split] = [
                {key: transform(grid) if key == target else grid for key, grid in sample.items()}
                for sample in task[split]
            ]
    return out, f"{name} {target}"
