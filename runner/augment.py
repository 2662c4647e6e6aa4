"""Seeded data augmentation for ARC tasks, and its inverse for predictions.

An :class:`Augmentation` is one of the 8 geometric transforms (optional left-right flip, then 0-3
counter-clockwise quarter turns, as ``numpy.fliplr`` then ``numpy.rot90``) plus a colour map
(``color_map[c]`` is the new colour of ``c``). Random colour maps permute 1-9 and keep 0 (the
background) with probability 0.9; otherwise they permute all ten colours. Example shuffling and the
train/test swap are separate seeded steps. Every random function takes ``rng``: an int seed, a
``random.Random`` or a ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.data import Grid, Task, as_random

IDENTITY_COLORS = tuple(range(10))


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


def inference_augmentations(rng: object, n_color_maps: int = 1) -> list[Augmentation]:
    """One augmentation per geometric transform x fresh colour map (the first one is the identity)."""
    rng = as_random(rng)
    augs = []
    for repeat in range(n_color_maps):
        for flip, rotations in geometric_transforms():
            if repeat == 0 and not flip and rotations == 0:
                augs.append(Augmentation())
            else:
                augs.append(Augmentation(flip, rotations, random_color_map(rng)))
    return augs


def shuffle_train(task: Task, rng: object) -> Task:
    """A copy of ``task`` with its train examples in a random order."""
    rng = as_random(rng)
    train = list(task["train"])
    rng.shuffle(train)
    return {**task, "train": train}


def swap_train_and_test(task: Task, rng: object, *, test_index: int | None = None) -> Task:
    """A copy of ``task`` where a random train example and a test sample trade places (training only).

    Test samples need outputs. ``test_index`` picks the test sample (random when None)."""
    rng = as_random(rng)
    train, test = list(task["train"]), list(task["test"])
    if not test:
        return {**task, "train": train, "test": test}
    i = rng.randrange(len(train))
    j = rng.randrange(len(test)) if test_index is None else test_index
    if "output" not in test[j]:
        raise ValueError("swap_train_and_test needs test outputs")
    train[i], test[j] = test[j], train[i]
    return {**task, "train": train, "test": test}


def augment_task(
    task: Task, rng: object, *, shuffle: bool = True, swap: bool = False, keep_background_p: float = 0.9
) -> tuple[Task, Augmentation]:
    """One random training augmentation: transform + colours, then shuffle and (optionally) swap."""
    rng = as_random(rng)
    aug = random_augmentation(rng, keep_background_p=keep_background_p)
    out = apply_augmentation(task, aug)
    if swap:
        out = swap_train_and_test(out, rng)
    if shuffle:
        out = shuffle_train(out, rng)
    return out, aug
