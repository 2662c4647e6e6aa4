"""The causal-LM loss with logits only where the loss is.

A Hugging Face causal LM applies its output layer (hidden size -> the whole vocabulary) at every
position, then the loss keeps only the answer tokens, typically 5-20% of an ARC prompt. For
SmolLM2-135M that layer is ~15% of the forward and backward FLOPs, and its float32 logits (~400 MB per
2048-token sample, more with their gradient and the log-softmax) are the largest block of activation
memory at long sequence lengths. :func:`causal_lm_loss` runs the model as usual, keeps the decoder's
final hidden states (a forward hook on the decoder), gathers the supervised positions (labels != -100
after the one-token shift, exactly as ``transformers.loss.loss_utils.ForCausalLMLoss`` shifts) and
applies the output layer and the cross-entropy there only. Loss and gradients are those of
``model(**inputs, num_items_in_batch=n).loss`` up to float rounding (``tests/runner/test_loss.py``).

The model is still called through its outermost wrapper (DistributedDataParallel, PEFT), so data
parallel gradient synchronisation and Accelerate's device hooks work as before; it is asked for the
logits of the last position only (``logits_to_keep=1``, a [batch, 1, vocab] block nobody reads).

``ARCTUI_FULL_LOGITS=1`` in the environment selects the original full-logits path (the baseline of
``bench/train_speed.py``). Models whose causal-LM head does more than a linear layer (logit
soft-capping, a logit scale) and models without a findable decoder take the full path too.
"""

from __future__ import annotations

import os
from typing import Any

IGNORE_INDEX = -100
FULL_LOGITS_ENV = "ARCTUI_FULL_LOGITS"
# Config attributes that mean the causal-LM forward transforms the output layer's result.
_HEAD_EXTRAS = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale", "logits_scaling")


def full_logits_requested() -> bool:
    """True when ``ARCTUI_FULL_LOGITS`` asks for the original path (any value but '', '0', 'false')."""
    return os.environ.get(FULL_LOGITS_ENV, "").strip().lower() not in ("", "0", "false", "no")


def unwrap(model: Any) -> Any:
    """The causal-LM module under DistributedDataParallel, torch.compile and PEFT wrappers."""
    seen = 0
    while seen < 8:
        seen += 1
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif type(model).__name__ == "DistributedDataParallel" or (
            hasattr(model, "module") and not hasattr(model, "config")
        ):
            model = model.module
        elif hasattr(model, "get_base_model") and hasattr(model, "peft_config"):
            model = model.get_base_model()
        else:
            break
    return model


def decoder_and_head(model: Any) -> tuple[Any, Any] | None:
    """(decoder, output layer) of a causal LM for the supervised-positions path, or None when the
    model does not fit it (the caller then computes full logits)."""
    inner = unwrap(model)
    config = getattr(inner, "config", None)
    if config is None or any(getattr(config, name, None) not in (None, 1, 1.0) for name in _HEAD_EXTRAS):
        return None
    try:
        decoder = inner.get_decoder()
        head = inner.get_output_embeddings()
    except (AttributeError, NotImplementedError, ValueError):
        return None
    if decoder is None or head is None or decoder is inner:
        return None
    return decoder, head


def logits_path(model: Any) -> str:
    """Which path :func:`causal_lm_loss` takes for this model: ``"supervised"`` or ``"full"``."""
    if full_logits_requested() or decoder_and_head(model) is None:
        return "full"
    return "supervised"


def shifted_labels(labels: Any) -> Any:
    """``labels`` moved one position left, -100 at the end: position t predicts token t+1 (as HF)."""
    import torch

    return torch.nn.functional.pad(labels[..., 1:], (0, 1), value=IGNORE_INDEX)


def causal_lm_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: float | Any, *,
                   full_logits: bool = False) -> Any:
    """Sum of the token cross-entropies over the supervised positions divided by
    ``num_items_in_batch``: the value of ``model(**inputs, num_items_in_batch=n).loss`` for a
    Hugging Face causal LM, computing logits only at the supervised positions.

    ``inputs`` holds ``input_ids``, ``attention_mask`` and ``labels`` (-100 where there is no loss).
    Pass ``num_items_in_batch=1`` for the plain token sum. ``full_logits`` (the runner's
    ``--full_logits``, or ``ARCTUI_FULL_LOGITS=1`` for benchmarks) takes the original path.
    """
    parts = None if (full_logits or full_logits_requested()) else decoder_and_head(model)
    if parts is None:
        return model(**inputs, num_items_in_batch=num_items_in_batch, use_cache=False).loss
    import torch

    decoder, head = parts
    model_inputs = {key: value for key, value in inputs.items() if key != "labels"}
    targets = shifted_labels(inputs["labels"])
    captured: list[Any] = []

    def keep_hidden_states(_module, _args, output) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

    handle = decoder.register_forward_hook(keep_hidden_states)
    try:
        model(**model_inputs, use_cache=False, logits_to_keep=1)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f"the decoder ran {len(captured)} times in one forward pass; set {FULL_LOGITS_ENV}=1")
    hidden = captured[0]
    targets = targets.to(hidden.device)
    supervised = targets != IGNORE_INDEX
    # Boolean indexing flattens row by row, the order HF's loss sums in.
    logits = head(hidden[supervised]).float()
    total = torch.nn.functional.cross_entropy(logits, targets[supervised].to(logits.device), reduction="sum")
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
