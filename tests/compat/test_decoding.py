"""arctui's decoding of model responses against arc24's: every line of ``decoding.jsonl``.

arc24 decodes ``"```grid" + response`` (the inference prompt ends with the opening fence) and keeps
the grid when ``validate_grid`` accepts it. Where arc24 keeps a grid arctui keeps the same grid; where
arc24 raises (in parsing or validation) arctui returns an invalid prediction with the reason.
"""

from __future__ import annotations

import pytest

from runner.encoders import FENCE_OPEN, create_grid_encoder, decode_prediction
from tests.compat.conftest import reference_params

CASES = reference_params("decoding.jsonl", lambda case: f"{case['encoder']}-{case['case']}")


@pytest.mark.parametrize("case", CASES)
def test_decoding_matches_arc24(case):
    decoded = decode_prediction(create_grid_encoder(case["encoder"]), case["response"], prefix=FENCE_OPEN)
    assert decoded.grid == case["grid"]
    if case["grid"] is None:
        assert case["arc24_error"] is not None
        assert decoded.error.startswith("invalid prediction: ")
    else:
        assert decoded.error is None
