"""The optimizer behind ``--optim`` (Hugging Face TrainingArguments names, their default settings:
betas 0.9/0.999, eps 1e-8, no weight decay), and what needs bitsandbytes.

bitsandbytes' optimizers (``paged_adamw_8bit``, the seed's, and the other 8-bit/paged ones) and
bitsandbytes' 4-bit loading run on CUDA GPUs only. :func:`resolve_optimizer` says which optimizer a
run really gets: the one asked for, or ``adamw_torch`` with one line saying why.

    used, note = resolve_optimizer("paged_adamw_8bit", "cpu")   # ("adamw_torch", "--optim ...")
    optimizer = build_optimizer(used, params, learning_rate=1e-4)

Light at import time: torch and bitsandbytes are imported inside the functions that need them.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from runner.flags import BNB_OPTIMIZERS, OPTIMIZERS

FALLBACK_OPTIMIZER = "adamw_torch"
ADAM_SETTINGS = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}


def bitsandbytes_missing(device_type: str) -> str | None:
    """None when bitsandbytes can run here (a CUDA device and the package installed), else why not."""
    if device_type != "cuda":
        return "bitsandbytes needs a CUDA GPU"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "the bitsandbytes package is not installed (pip install bitsandbytes)"
    return None


def resolve_optimizer(name: str, device_type: str) -> tuple[str, str | None]:
    """(the optimizer this run uses, a line to log when it is not ``name``, else None)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}")
    if name in BNB_OPTIMIZERS:
        why = bitsandbytes_missing(device_type)
        if why:
            return FALLBACK_OPTIMIZER, f"--optim {name}: {why}; training with {FALLBACK_OPTIMIZER}"
    return name, None


def build_optimizer(name: str, params: list, learning_rate: float) -> Any:
    """The torch optimizer ``name`` (already resolved) over ``params``."""
    import torch

    if name in BNB_OPTIMIZERS:
        import bitsandbytes.optim as bnb

        bits = {"optim_bits": 8 if "8bit" in name else 32, "is_paged": name.startswith("paged_")}
        if "lion" in name:
            return bnb.Lion(params, lr=learning_rate, betas=ADAM_SETTINGS["betas"], weight_decay=0.0, **bits)
        return bnb.AdamW(params, lr=learning_rate, **ADAM_SETTINGS, **bits)
    if name in ("adamw_torch", "adamw_torch_fused"):
        return torch.optim.AdamW(params, lr=learning_rate, fused=name == "adamw_torch_fused" or None,
                                 **ADAM_SETTINGS)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=learning_rate, scale_parameter=False, relative_step=False)
    optimizer_class = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop}[name]
    return optimizer_class(params, lr=learning_rate)
