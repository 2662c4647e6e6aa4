"""The batched generation engine: continue many tokenized prompts at once with a KV cache.

    from runner.generation import generate
    generations = generate(model, tokenizer, prompts, batch_size=8, max_new_tokens=1100)

:func:`generate` sorts the prompts by length and runs them in left-padded batches: a prefill (on CPU
the prompts' common prefix once, then each equal-length group unpadded: :func:`_prefill_rows`), then
one token per step for the rows still running, in a cache that grows in place (``GrowingLayer``);
finished rows leave the batch at once. On CPU a registered SDPA attention keeps grouped key/value
heads under a padding mask (:func:`_sdpa_gqa_attention`). The evaluation recipe (prompts, voting,
metrics, command line) is :mod:`runner.evaluate`; this module knows nothing of ARC.

Light to import: torch and transformers are imported inside the functions that use them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from runner.errors import ConfigError


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

        def update(self, key_states, value_states, *args, **kwargs):
            # transformers 4.x passes ``cache_kwargs`` positionally, 5.x ``kwargs=`` by name; neither is used.
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
