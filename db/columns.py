"""Run columns filled from a run's config: the filterable copies of a few settings (model, encoder,
msl, batch sizes, lr, LoRA rank, GPUs, datasets) kept beside the full config JSON.

Which flag fills which column is declared once, as ``Flag.column`` in :mod:`runner.flags`; a config's
keys are the runner's flag names (no aliases).
"""

from __future__ import annotations

from typing import Any

from runner.flags import columns


def config_columns() -> dict[str, str]:
    """Store column -> the flag (config key) that fills it, from the live flag registry."""
    return columns()


def dataset_name(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, list | tuple) and entry and isinstance(entry[0], str):
        return entry[0]
    if isinstance(entry, dict):
        for key in ("path", "name", "file"):
            if isinstance(entry.get(key), str):
                return entry[key]
    return None


def datasets_from_config(config: dict) -> list[str]:
    if isinstance(config.get("datasets"), list | tuple):
        names = [dataset_name(d) for d in config["datasets"]]
        return [n for n in names if n]
    names: list[str] = []
    train = config.get("train_datasets")
    if isinstance(train, list | tuple):
        # A single [path, version] pair or a list of them.
        entries = [train] if len(train) == 2 and all(isinstance(t, str) for t in train) else train
        names += [n for n in map(dataset_name, entries) if n]
    val = dataset_name(config.get("val_dataset")) if config.get("val_dataset") else None
    if val:
        names.append(val)
    return list(dict.fromkeys(names))


def gpus_from_config(config: dict) -> int | None:
    if isinstance(config.get("n_gpus"), int) and not isinstance(config["n_gpus"], bool):
        return config["n_gpus"]
    gpus = config.get("gpus")
    if isinstance(gpus, int) and not isinstance(gpus, bool):
        return gpus
    if isinstance(gpus, list | tuple):
        return len(gpus)
    if isinstance(gpus, str):
        if gpus.strip().lower() == "cpu":
            return 0
        parts = [p for p in gpus.split(",") if p.strip().isdigit()]
        return len(parts) or None
    return None


def columns_from_config(config: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column, key in config_columns().items():
        if config.get(key) is not None:
            out[column] = config[key]
    out["gpus"] = gpus_from_config(config)
    out["datasets"] = datasets_from_config(config)
    return out
