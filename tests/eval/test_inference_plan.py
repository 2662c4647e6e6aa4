"""The inference plan (arc24's for 8+ predictions, arctui's below 8) and how predictions record it."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from runner.augment import apply_augmentation, geometric_transforms, inference_augmentation, order_train
from runner.encoders import DEFAULT_GRID_ENCODER, create_grid_encoder
from runner.evaluate import augmentation_record, build_requests
from runner.prompts import create_inference_prompt
from runner.synthetic import make_tasks


def _plan(n: int, n_train: int = 3, seed: int = 0):
    return [inference_augmentation(random.Random(f"{seed}/{i}"), i, n, n_train) for i in range(n)]


@pytest.mark.parametrize("per_transform", [1, 2, 3])
def test_multiples_of_8_give_each_transform_its_share_in_arc24_order(per_transform):
    plan = _plan(8 * per_transform)
    transforms = [(aug.flip, aug.rotations) for aug, _ in plan]
    # transform-major, as arc24's product([False, True], [0, 1, 2, 3]) loop
    assert transforms == [t for t in geometric_transforms() for _ in range(per_transform)]
    # every prompt has its own random colour map (none is the task as given) and train order
    assert len({aug.color_map for aug, _ in plan}) == len(plan)
    assert not any(aug.color_map == tuple(range(10)) for aug, _ in plan)


def test_remainder_above_8_continues_with_transforms_0_1_and_so_on():
    plan = _plan(10)
    assert [(a.flip, a.rotations) for a, _ in plan[8:]] == geometric_transforms()[:2]


@pytest.mark.parametrize("n", [1, 3, 7])
def test_below_8_the_first_prediction_is_the_task_as_given(n):
    plan = _plan(n)
    assert plan[0][0].is_identity and plan[0][1] == [0, 1, 2]
    assert [(a.flip, a.rotations) for a, _ in plan] == geometric_transforms()[:n]


def test_colour_maps_keep_the_background_about_ninety_one_percent_and_orders_are_uniform():
    plan = [inference_augmentation(random.Random(i), 3, 16, 3) for i in range(6000)]
    kept = sum(aug.color_map[0] == 0 for aug, _ in plan) / len(plan)
    assert kept == pytest.approx(0.91, abs=0.02)
    orders = Counter(tuple(order) for _, order in plan)
    assert len(orders) == 6 and all(count / len(plan) == pytest.approx(1 / 6, abs=0.02) for count in orders.values())


def test_requests_show_the_planned_augmentation_and_record_it():
    from runner.modelzoo import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    encoder = create_grid_encoder(DEFAULT_GRID_ENCODER)
    tasks = make_tasks(1, ["flip_lr"], seed=3, max_size=3)
    task_id, task = next(iter(tasks.items()))
    requests = build_requests(tasks, encoder, tokenizer, "output-from-examples-v1", predictions_per_task=16, seed=2)
    assert len(requests) == 16 * len(task["test"])
    for request in requests:
        shown = order_train(apply_augmentation(task, request.augmentation), request.train_order)
        expected = create_inference_prompt(
            shown, encoder, tokenizer, "output-from-examples-v1", task_id=task_id, test_index=request.test_index
        )
        assert request.prompt == expected.prompt
        record = augmentation_record(request.augmentation, request.train_order)
        assert record["train_order"] == request.train_order and sorted(record["train_order"]) == list(
            range(len(task["train"]))
        )
    orders = {tuple(r.train_order) for r in requests}
    assert len(orders) > 1  # the train order changes between prompts
    again = build_requests(tasks, encoder, tokenizer, "output-from-examples-v1", predictions_per_task=16, seed=2)
    assert [r.prompt for r in again] == [r.prompt for r in requests]
