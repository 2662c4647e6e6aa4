"""arctui's grid encoders against arc24's: every line of ``encoders.jsonl`` (40 grids x 7 specs)."""

from __future__ import annotations

import pytest

from runner.encoders import create_grid_encoder, decode_prediction
from tests.compat.conftest import reference_params

CASES = reference_params("encoders.jsonl", lambda case: f"{case['encoder']}-{case['source']}")


@pytest.mark.parametrize("case", CASES)
def test_text_and_grid_match_arc24(case):
    encoder = create_grid_encoder(case["encoder"])
    assert encoder.to_text(case["grid"]) == case["text"]
    assert encoder.to_grid(case["text"]) == case["grid"]
    # A model that writes exactly the training text has it decoded to the same grid.
    assert decode_prediction(encoder, case["text"]).grid == case["grid"]
