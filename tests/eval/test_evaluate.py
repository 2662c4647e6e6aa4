"""runner.generation and runner.evaluate on the tiny model: batched generation equals one-at-a-time
generation, stopping, sampling, the augment -> decode -> revert -> vote path, over-msl prompts and
one-line errors."""

from __future__ import annotations

import json

import pytest

from runner.augment import apply_augmentation
from runner.encoders import DEFAULT_GRID_ENCODER, create_grid_encoder
from runner.errors import ModelError
from runner.evaluate import build_requests, main, resolve_model_paths, score_predictions
from runner.events import read_events
from runner.generation import Generation, generate
from runner.synthetic import make_tasks, write_tasks


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return model, tokenizer


def _prompts(tokenizer, n):
    texts = [f"<|im_start|>user\n{'ab' * (3 * k + 1)}<|im_end|>\n<|im_start|>assistant\n" for k in range(n)]
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_batched_generation_equals_unbatched(tiny):
    model, tokenizer = tiny
    prompts = _prompts(tokenizer, 6)
    one_by_one = generate(model, tokenizer, prompts, batch_size=1, max_new_tokens=12)
    batched = generate(model, tokenizer, prompts, batch_size=4, max_new_tokens=12)
    for a, b in zip(one_by_one, batched, strict=True):
        assert a.text == b.text
        assert a.n_tokens == b.n_tokens == 12
        assert a.logprob == pytest.approx(b.logprob, abs=1e-3)
        assert a.logprob < 0


def test_equal_length_prompts_batch_without_a_mask(tiny):
    model, tokenizer = tiny
    texts = [f"<|im_start|>user\n{word * 5}<|im_end|>\n<|im_start|>assistant\n" for word in ("ab", "cd", "ef")]
    prompts = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert len({len(p) for p in prompts}) == 1
    one_by_one = generate(model, tokenizer, prompts, batch_size=1, max_new_tokens=6)
    batched = generate(model, tokenizer, prompts, batch_size=3, max_new_tokens=6)
    assert [g.text for g in one_by_one] == [g.text for g in batched]
    # Mixed: equal-length rows are prefilled together, the longer one alone, then decoded as one batch.
    mixed = prompts + _prompts(tokenizer, 2)
    one_by_one = generate(model, tokenizer, mixed, batch_size=1, max_new_tokens=6)
    batched = generate(model, tokenizer, mixed, batch_size=5, max_new_tokens=6)
    assert [g.text for g in one_by_one] == [g.text for g in batched]
    assert [round(g.logprob, 3) for g in one_by_one] == pytest.approx([g.logprob for g in batched], abs=1e-3)


def test_shared_prefix_and_growing_cache_match_unbatched(tiny, monkeypatch):
    """A batch with a long common prefix prefills it once; the cache grows in place every 3 steps here.
    Query and key weights are scaled up so attention is sharp: a key at a wrong position or a wrong
    value then moves the log-probabilities by 1e-2, where batching's rounding moves them by 1e-6."""
    import copy

    import torch

    from runner import generation as engine

    model, tokenizer = tiny
    model = copy.deepcopy(model)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8)
            layer.self_attn.k_proj.weight.mul_(8)
    header = "<|im_start|>system\nYou solve ARC tasks, one grid at a time.<|im_end|>\n<|im_start|>user\n"
    bodies = ["abab", "cdcd", "ab", "abcdabcd", "ba", "abc"]  # equal and unequal lengths, one sharing "ab"
    texts = [f"{header}{body}<|im_end|>\n<|im_start|>assistant\n" for body in bodies]
    prompts = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert engine._shared_prefix_length(prompts) >= engine._MIN_SHARED_PREFIX
    monkeypatch.setattr(engine, "_CACHE_GROWTH", 3)
    one_by_one = generate(model, tokenizer, prompts, batch_size=1, max_new_tokens=10)
    batched = generate(model, tokenizer, prompts, batch_size=6, max_new_tokens=10)
    assert [g.text for g in one_by_one] == [g.text for g in batched]
    assert [g.logprob for g in one_by_one] == pytest.approx([g.logprob for g in batched], abs=1e-4)
    assert model.config._attn_implementation == "sdpa"  # generate's attention switch is undone
    # Both runs use the same in-place cache: check it against one plain forward pass without a cache.
    for prompt, generation in zip(prompts[:2], batched[:2], strict=True):
        written = tokenizer(generation.text, add_special_tokens=False)["input_ids"]
        assert len(written) == generation.n_tokens == 10
        with torch.no_grad():
            logits = model(torch.tensor([list(prompt) + written])).logits[0, len(prompt) - 1 : -1]
        chosen = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(written)[:, None])
        assert chosen.sum().item() == pytest.approx(generation.logprob, abs=1e-4)


def test_shared_prefix_length_leaves_each_prompt_a_token():
    from runner.generation import _shared_prefix_length

    assert _shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert _shared_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert _shared_prefix_length([[1, 2], [3, 2]]) == 0
    assert _shared_prefix_length([[7], [7, 8]]) == 0


def test_stop_string_ends_each_row_where_it_appears(tiny):
    model, tokenizer = tiny
    prompts = _prompts(tokenizer, 3)
    free = generate(model, tokenizer, prompts, batch_size=3, max_new_tokens=10)
    stop = free[0].text[2]  # the third character prompt 0 writes
    stopped = generate(model, tokenizer, prompts, batch_size=3, max_new_tokens=10, stop_strings=[stop])
    first = stopped[0]
    assert first.finish_reason == "stop"
    assert first.text == free[0].text[: free[0].text.index(stop) + 1]
    for free_row, row in zip(free, stopped, strict=True):
        # Each row is the unstopped text cut right after its first stop string (or not cut at all).
        cut = free_row.text.find(stop)
        expected = free_row.text if cut < 0 else free_row.text[: cut + 1]
        assert row.text == expected
        assert row.n_tokens == len(tokenizer(expected, add_special_tokens=False)["input_ids"])


def test_sampling_is_seeded(tiny):
    model, tokenizer = tiny
    prompts = _prompts(tokenizer, 4)
    a = generate(model, tokenizer, prompts, batch_size=4, max_new_tokens=8, temperature=1.0, seed=3)
    b = generate(model, tokenizer, prompts, batch_size=4, max_new_tokens=8, temperature=1.0, seed=3)
    greedy = generate(model, tokenizer, prompts, batch_size=4, max_new_tokens=8)
    assert [g.text for g in a] == [g.text for g in b]
    # A random-init model's distribution is flat: 32 sampled characters never all equal the greedy ones.
    assert [g.text for g in a] != [g.text for g in greedy]


def test_right_answers_in_augmented_frames_revert_to_the_solution(tiny):
    """Feed each prompt's correct answer, written in that prompt's augmented frame, through scoring:
    every prediction must revert to the solution, so all metrics are perfect."""
    _, tokenizer = tiny
    encoder = create_grid_encoder(DEFAULT_GRID_ENCODER)
    tasks = make_tasks(3, ["flip_lr", "recolour", "transpose"], seed=4)
    requests = build_requests(tasks, encoder, tokenizer, "output-from-examples-v1", predictions_per_task=8)
    assert len(requests) == 3 * 8
    transforms = {(r.augmentation.flip, r.augmentation.rotations) for r in requests if r.task_id == requests[0].task_id}
    assert len(transforms) == 8  # one prompt per geometric transform
    generations = []
    for r in requests:
        answer = apply_augmentation(tasks[r.task_id], r.augmentation)["test"][r.test_index]["output"]
        text = encoder.to_text(answer)
        assert text.startswith(r.answer_prefix) and r.prompt.endswith(r.answer_prefix)
        generations.append(Generation(text[len(r.answer_prefix) :], -1.0, 10, "stop"))
    records, submission, metrics = score_predictions(tasks, requests, generations, encoder, max_seq_len=10_000)
    assert metrics["accuracy"] == 1.0 and metrics["vote_1"] == 1.0 and metrics["unanswered"] == 0.0
    for task_id, task in tasks.items():
        assert submission[task_id][0]["attempt_1"] == task["test"][0]["output"]
    assert all(rec["grid"] == tasks[rec["task_id"]]["test"][0]["output"] for rec in records)


def test_garbage_and_skipped_predictions_are_unanswered(tiny):
    _, tokenizer = tiny
    encoder = create_grid_encoder(DEFAULT_GRID_ENCODER)
    tasks = make_tasks(1, ["flip_ud"], seed=5)
    requests = build_requests(tasks, encoder, tokenizer, "output-from-examples-v1", predictions_per_task=3)
    generations = [Generation("not a grid", -5.0, 10, "length"), Generation("", 0.0, 1, "eos"), None]
    records, submission, metrics = score_predictions(tasks, requests, generations, encoder, max_seq_len=5)
    assert metrics["unanswered"] == 1.0 and metrics["accuracy"] == 0.0
    assert records[2]["finish_reason"] == "skipped" and "max_seq_len 5" in records[2]["error"]
    assert records[0]["error"].startswith("invalid prediction")
    assert submission[next(iter(tasks))] == [{"attempt_1": [], "attempt_2": []}]  # arc24's empty attempts


def test_the_predictions_view_ranks_as_the_evaluation_voted(tiny):
    from arctui.views.predictions import sample_result

    _, tokenizer = tiny
    encoder = create_grid_encoder(DEFAULT_GRID_ENCODER)
    tasks = make_tasks(1, ["flip_ud"], seed=8)
    task = next(iter(tasks.values()))
    answer = task["test"][0]["output"]
    near_miss = [row[:] for row in answer]
    near_miss[0][0] = (near_miss[0][0] + 1) % 10
    near_miss_task = {**task, "test": [{**task["test"][0], "output": near_miss}]}
    requests = build_requests(tasks, encoder, tokenizer, "output-from-examples-v1", predictions_per_task=4)
    generations = []
    for k, r in enumerate(requests):
        # Two votes each: the answer with a low log-prob per token, the near miss with a high one.
        source = task if k % 2 == 0 else near_miss_task
        text = encoder.to_text(apply_augmentation(source, r.augmentation)["test"][0]["output"])
        generations.append(Generation(text[len(r.answer_prefix):], -8.0 if source is task else -1.0, 10, "stop"))
    records, submission, _ = score_predictions(tasks, requests, generations, encoder, max_seq_len=10_000)
    attempts = submission[next(iter(tasks))][0]
    assert attempts == {"attempt_1": near_miss, "attempt_2": answer}  # the tie goes to the higher log-prob
    written = [json.loads(json.dumps(record)) for record in records]  # as predictions.jsonl holds them
    shown = sample_result(0, task["test"][0]["input"], answer, written)
    assert [c.grid for c in shown.candidates] == [attempts["attempt_1"], attempts["attempt_2"]]
    assert [c.votes for c in shown.candidates] == [2, 2] and shown.solved


def test_requests_are_reproducible_per_seed(tiny):
    _, tokenizer = tiny
    encoder = create_grid_encoder(DEFAULT_GRID_ENCODER)
    tasks = make_tasks(2, ["recolour"], seed=6)
    a = build_requests(tasks, encoder, tokenizer, "output-from-examples-v1", predictions_per_task=4, seed=1)
    b = build_requests(tasks, encoder, tokenizer, "output-from-examples-v1", predictions_per_task=4, seed=1)
    c = build_requests(tasks, encoder, tokenizer, "output-from-examples-v1", predictions_per_task=4, seed=2)
    assert [r.prompt for r in a] == [r.prompt for r in b]
    assert [r.prompt for r in a] != [r.prompt for r in c]
    assert a[0].augmentation.is_identity


def test_command_line_writes_files_and_events(tiny_model_dir, tmp_path):
    data = write_tasks(tmp_path / "tasks.json", make_tasks(2, ["rotate_180"], seed=7, max_size=3))
    out = tmp_path / "eval"
    # msl 300 is below every prompt (~800 characters): nothing is generated, all unanswered.
    argv = ["--model_path", str(tiny_model_dir), "--data", str(data), "--output_dir", str(out),
            "--predictions_per_task", "2", "--max_seq_len", "300", "--step", "40"]
    assert main(argv) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["prompts_over_msl"] == 4 and result["metrics"]["unanswered"] == 1.0
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and {line["finish_reason"] for line in lines} == {"skipped"}
    submission = json.loads((out / "submission.json").read_text())
    assert set(submission) == set(json.loads(data.read_text()))
    events = read_events(out / "events.jsonl")
    kinds = [e["event"] for e in events]
    assert kinds[-2:] == ["eval_result", "end"]
    phases = [(e["phase"], e["done"], e["total"]) for e in events if e["event"] == "phase"]
    assert phases == [("loading_model", None, None), ("predictions", 0, 4)]
    assert kinds[:2] == ["phase", "phase"]  # no prompt fits msl: no eval_progress beyond the phases
    result_event = read_events(out / "events.jsonl")[-2]
    assert result_event["step"] == 40 and result_event["metrics"]["accuracy"] == 0.0

    # With room for the prompts, the random model writes garbage: unanswered, not a crash.
    argv[argv.index("300")] = "4096"
    assert main(argv + ["--max_new_tokens", "8", "--batch_size", "4"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["prompts_over_msl"] == 0 and result["generated_tokens"] == 4 * 8
    assert [e["event"] for e in read_events(out / "events.jsonl")].count("end") == 2


def test_bad_input_is_one_line_exit_2(tmp_path, tiny_model_dir, capsys):
    data = write_tasks(tmp_path / "tasks.json", make_tasks(1, seed=0))
    assert main(["--model_path", str(tmp_path / "nope"), "--data", str(data), "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("evaluate: error:") and "\n" not in err and "config.json" in err
    assert main(["--model_path", str(tiny_model_dir), "--data", str(data), "--output_dir", str(tmp_path / "o"),
                 "--grid_encoder", "NoSuchEncoder()"]) == 2
    assert "\n" not in capsys.readouterr().err.strip()
    with pytest.raises(SystemExit) as exc:
        main(["--model_path", "x", "--data", "y", "--output_dir", "z", "--batch_size", "0"])
    assert exc.value.code == 2


def test_adapter_folder_as_model_path_reads_its_base(tmp_path, tiny_model_dir):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model_dir)}))
    assert resolve_model_paths(str(adapter), None) == (tiny_model_dir, adapter)
    with pytest.raises(ModelError, match="adapter_config.json"):
        resolve_model_paths(str(tiny_model_dir), str(tmp_path))
