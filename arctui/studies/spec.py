"""Study files: one base run config plus named variants, validated as a whole before anything runs.

    study = load_study("configs/studies/demo-cpu.yaml", gpus="cpu")
    for variant in study.variants:
        variant.name, variant.overrides, variant.config      # config: a validated RunConfig

The YAML (read as safely as run configs: nothing is evaluated, a repeated key is refused)::

    name: iteration33               # optional; default the file's stem
    notes: free text                # optional
    base: configs/seed/01_baseline.yaml   # a run config file (relative to the working directory,
    overrides: {max_steps: 50}            # else to the study file), plus overrides; or a mapping:
    # base: {model_path: ..., train_datasets: ..., ...}
    max_steps: 20                   # any other top-level key is a run config key applied to the base
    variants:                       # named override maps (the seed's five commands)
      - {name: baseline}
      - {name: msl-2048, max_seq_len: 2048}
    matrix:                         # and/or keys with lists of values, crossed
      grid_encoder: [A, B]
      max_seq_len: [512, 1024]
    exclude:                        # combinations of the matrix to skip (a subset of its keys)
      - {grid_encoder: B, max_seq_len: 512}
    max_parallel: 2                 # optional defaults for `arctui study launch`
    gpus: cpu

With both ``variants`` and ``matrix``, every variant is crossed with every matrix point. Matrix
points are named from their values (``enc-Shape.Minimal+msl-512``). Every variant's
config goes through the same validation as a single run (:func:`arctui.config.config_from_mapping`);
the first invalid one raises a one-line :class:`ConfigError` naming the file, the variant and the key.

Light module: no torch, no store.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from arctui.config import NAME_RE, RunConfig, config_from_mapping, read_yaml_file
from runner.errors import ConfigError

STUDY_KEYS = ("name", "notes", "base", "overrides", "variants", "matrix", "exclude", "max_parallel", "gpus")
# Keys a variant may not set: the study names its runs and schedules them.
VARIANT_MANAGED = ("name",)
_UNSAFE = re.compile(r"[^A-Za-z0-9._\-+:@]+")
# Short key labels in matrix point names.
_SHORT_KEYS = {"max_seq_len": "msl", "grid_encoder": "enc", "per_device_train_batch_size": "pdbs",
               "learning_rate": "lr", "batch_size": "bs", "lora_r": "r", "n_gpus": "gpus"}


@dataclass(frozen=True)
class Variant:
    """One run of a study: its name, the overrides that make it differ from the base, its config."""

    name: str
    overrides: dict[str, Any]
    config: RunConfig


@dataclass(frozen=True)
class Study:
    """A parsed, validated study file."""

    name: str
    source: str
    base: dict[str, Any]
    variants: tuple[Variant, ...]
    notes: str = ""
    max_parallel: int | None = None
    gpus: Any = None
    matrix_keys: tuple[str, ...] = field(default=())

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise ConfigError(f"study {self.name} has no variant '{name}'; variants: "
                          + ", ".join(v.name for v in self.variants))

    def to_spec(self) -> dict[str, Any]:
        """What the store keeps (JSON): the resolved base and each variant's overrides."""
        return {
            "source": self.source,
            "notes": self.notes,
            "base": self.base,
            "variants": [{"name": v.name, "overrides": v.overrides} for v in self.variants],
            "max_parallel": self.max_parallel,
            "gpus": self.gpus,
        }


def _fail(source: str, message: str) -> ConfigError:
    return ConfigError(f"study {source}: {message}")


def _read_yaml(path: Path, what: str) -> Any:
    # The run configs' reader: the same messages, and a repeated key refused in study files too.
    return read_yaml_file(path, what, "configs/studies/")


def _base_path(ref: str, study_dir: Path | None) -> Path:
    path = Path(ref).expanduser()
    if path.is_absolute() or path.exists() or study_dir is None:
        return path
    beside = study_dir / path
    return beside if beside.exists() else path


def _with_dotted(values: Mapping[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    """``into`` updated with ``values``; ``eval.max_tasks: 3`` changes one eval option."""
    out = dict(into)
    for key, value in values.items():
        if isinstance(key, str) and key.startswith("eval."):
            current = out.get("eval") if isinstance(out.get("eval"), Mapping) else {}
            out["eval"] = {**current, key.removeprefix("eval."): value}
        else:
            out[key] = value
    return out


def _check_keys(source: str, who: str, values: Mapping[str, Any]) -> None:
    """Each key and value on its own, so an error names the key."""
    for key, value in values.items():
        if not isinstance(key, str):
            raise _fail(source, f"{who}: key {key!r} must be a string")
        probe = _with_dotted({key: value}, {})
        try:
            config_from_mapping(probe, validate=False)
        except ConfigError as exc:
            raise _fail(source, f"{who}, key '{key}': {exc}") from None


def _point_name(point: Mapping[str, Any]) -> str:
    parts = []
    for key, value in point.items():
        if key == "grid_encoder" and isinstance(value, str):
            value = value.replace("Encoder", "").replace("Grid", "").replace("()", "")
        text = _UNSAFE.sub(".", str(value)).strip(".") or "x"
        parts.append(f"{_SHORT_KEYS.get(key, key)}-{text}")
    return "+".join(parts)[:100]


def _matrix_points(source: str, matrix: Any, exclude: Any) -> list[dict[str, Any]]:
    if not isinstance(matrix, Mapping) or not matrix:
        raise _fail(source, "matrix must map keys to lists of values, e.g. 'matrix: {max_seq_len: [512, 1024]}'")
    for key, values in matrix.items():
        if not isinstance(values, list) or not values:
            raise _fail(source, f"matrix key '{key}' needs a non-empty list of values, e.g. [{values!r}]")
    keys = list(matrix)
    if exclude is None:
        exclude = []
    if not isinstance(exclude, list) or not all(isinstance(e, Mapping) and e for e in exclude):
        raise _fail(source, "exclude must be a list of mappings, e.g. '- {max_seq_len: 512}'")
    for rule in exclude:
        unknown = [k for k in rule if k not in matrix]
        if unknown:
            raise _fail(source, f"exclude names '{unknown[0]}', which is not a matrix key; matrix keys: "
                        + ", ".join(map(str, keys)))
    points = []
    for combo in itertools.product(*(matrix[k] for k in keys)):
        point = dict(zip(keys, combo, strict=True))
        if any(all(point[k] == v for k, v in rule.items()) for rule in exclude):
            continue
        points.append(point)
    if not points:
        raise _fail(source, "exclude removes every matrix combination; nothing to run")
    return points


def _gpu_pool(source: str, value: Any) -> str | tuple[int, ...] | None:
    """``--gpus`` (else the file's ``gpus``) as a config's gpus value: cpu, auto or GPU indices."""
    if value is None:
        return None
    try:
        return config_from_mapping({"gpus": value}, validate=False).gpus
    except ConfigError as exc:
        raise _fail(source, f"gpus: {exc}") from None


def _placed(source: str, who: str, mapping: dict[str, Any], pool, *, strict: bool) -> dict[str, Any]:
    """``mapping`` on the study's GPUs. With listed GPUs (``--gpus 0,1``) a run is pinned to the first
    ``n_gpus`` of them (runs take turns: see ``parallel_limit``); ``auto`` and ``cpu`` apply as given."""
    if pool is None:
        return mapping
    out = dict(mapping)
    if isinstance(pool, str):
        out["gpus"] = pool
        return out
    need = out.get("n_gpus") or 1
    if not isinstance(need, int) or isinstance(need, bool):
        return out  # the config's own check reports the bad n_gpus
    if need > len(pool):
        if strict:
            raise _fail(source, f"{who} needs {need} GPUs (n_gpus) but --gpus lists {len(pool)}: "
                        f"list more GPUs or lower its n_gpus")
        need = len(pool)
    out["gpus"] = list(pool[:need])
    if "n_gpus" in out:
        out["n_gpus"] = need
    return out


def _variant_list(source: str, variants: Any) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(variants, list) or not variants:
        raise _fail(source, "variants must be a non-empty list of mappings, each with a name, e.g. "
                    "'- {name: msl-2048, max_seq_len: 2048}'")
    out = []
    for i, item in enumerate(variants, 1):
        if not isinstance(item, Mapping):
            raise _fail(source, f"variant {i} must be a mapping with a name, got {type(item).__name__}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(source, f"variant {i} has no name; add 'name: ...'")
        out.append((name, {k: v for k, v in item.items() if k != "name"}))
    return out


def parse_study(data: Any, *, source: str, study_dir: Path | None = None, gpus: Any = None) -> Study:
    """Validate a study mapping (see the module docstring). ``gpus`` (``--gpus``) overrides every
    variant's ``gpus``. Raises one-line :class:`ConfigError`s; builds nothing."""
    if not isinstance(data, Mapping):
        raise _fail(source, "must be a YAML mapping with 'base:' and 'variants:' and/or 'matrix:'")
    name = data.get("name") or (Path(source).stem if source else "study")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name.isdigit() or len(name) > 60:
        raise _fail(source, f"name {name!r} must be 1-60 letters, digits or ._-+:@, not only digits")
    notes = data.get("notes") or ""
    max_parallel = data.get("max_parallel")
    if max_parallel is not None and (not isinstance(max_parallel, int) or isinstance(max_parallel, bool)
                                     or max_parallel < 1):
        raise _fail(source, f"max_parallel must be a positive integer, got {max_parallel!r}")

    # -- the base: a file or a mapping, then `overrides:` and inline run config keys
    base_ref = data.get("base")
    if base_ref is None:
        raise _fail(source, "lacks 'base:' (a run config file such as configs/tiny-cpu.yaml, or a mapping)")
    if isinstance(base_ref, str):
        path = _base_path(base_ref, study_dir)
        base = _read_yaml(path, "base config")
        if not isinstance(base, Mapping):
            raise _fail(source, f"base config {path} must be a YAML mapping of key: value")
        base_source = str(path)
    elif isinstance(base_ref, Mapping):
        base, base_source = base_ref, source
    else:
        raise _fail(source, f"base must be a file name or a mapping, got {type(base_ref).__name__}")
    # The study names its runs; a base file's notes describe that one run, not the study's.
    base = {k: v for k, v in base.items() if k not in ("name", "notes" if isinstance(base_ref, str) else "name")}
    _check_keys(source, "base", base)
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise _fail(source, "overrides must be a mapping of key: value")
    inline = {k: v for k, v in data.items() if k not in STUDY_KEYS}
    extra = {**overrides, **inline}
    _check_keys(source, "overrides", extra)
    base = _with_dotted(extra, base)
    pool = _gpu_pool(source, gpus if gpus is not None else data.get("gpus"))
    try:  # the base as a run of its own; each variant is placed on the GPUs from the unplaced base
        config_from_mapping(_placed(source, "base", base, pool, strict=False), source=base_source)
    except ConfigError as exc:
        raise _fail(source, f"base: {exc}") from None

    # -- the variants: named ones crossed with the matrix points
    has_variants, has_matrix = "variants" in data, "matrix" in data
    if not has_variants and not has_matrix:
        raise _fail(source, "needs 'variants:' (a list of named overrides) and/or 'matrix:' (keys with value lists)")
    named = _variant_list(source, data["variants"]) if has_variants else [("", {})]
    points = _matrix_points(source, data["matrix"], data.get("exclude")) if has_matrix else [{}]
    if not has_matrix and data.get("exclude") is not None:
        raise _fail(source, "exclude needs a matrix: remove it or add 'matrix:'")
    if has_matrix:
        _check_keys(source, "matrix", {k: v[0] for k, v in data["matrix"].items()})

    variants: list[Variant] = []
    seen: set[str] = set()
    for vname, vover in named:
        for point in points:
            full = "+".join(p for p in (vname, _point_name(point) if point else "") if p)
            if not NAME_RE.fullmatch(full) or full.isdigit():
                raise _fail(source, f"variant name {full!r} must be letters, digits or ._-+:@ (not only digits)")
            if full in seen:
                raise _fail(source, f"two variants are named '{full}'; give each a different name")
            seen.add(full)
            who = f"variant '{full}'"
            managed = [k for k in vover if k in VARIANT_MANAGED]
            if managed:
                raise _fail(source, f"{who}: '{managed[0]}' is set by the study; remove it")
            changes = {**vover, **point}
            _check_keys(source, who, changes)
            mapping = _with_dotted(changes, base)
            mapping = _placed(source, who, mapping, pool, strict=True)
            try:
                cfg = config_from_mapping(mapping, source=f"{source} variant {full}")
            except ConfigError as exc:
                keys = ", ".join(map(str, changes)) or "(none)"
                raise _fail(source, f"{who} (keys {keys}): {exc}") from None
            variants.append(Variant(full, changes, cfg))
    return Study(
        name=name, source=source, base=dict(base), variants=tuple(variants), notes=str(notes),
        max_parallel=max_parallel, gpus=list(pool) if isinstance(pool, tuple) else pool,
        matrix_keys=tuple(data["matrix"]) if has_matrix else (),
    )


def load_study(path: str | Path, *, gpus: Any = None) -> Study:
    """Read and validate a study file (see :func:`parse_study`)."""
    path = Path(path)
    data = _read_yaml(path, "study file")
    if data is None:
        raise ConfigError(f"study file {path} is empty; it needs 'base:' and 'variants:' or 'matrix:'")
    return parse_study(data, source=str(path), study_dir=path.parent, gpus=gpus)


def study_yaml(name: str, base: Mapping[str, Any], variants: list[tuple[str, Mapping[str, Any]]], *,
               notes: str = "") -> str:
    """The text of a study file with ``base`` (a run config mapping, e.g. the new-run form's) and the
    named ``variants`` (override maps). Checked by :func:`parse_study` first, so a bad variant names
    itself and its key and nothing is written; what is returned is what ``arctui study launch`` reads."""
    data: dict[str, Any] = {"name": name}
    if notes:
        data["notes"] = notes
    data["base"] = {k: v for k, v in base.items() if k != "name"}
    data["variants"] = [{"name": vname, **dict(overrides)} for vname, overrides in variants]
    parse_study(data, source=f"study {name}")
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def differing_keys(configs: list[Mapping[str, Any]]) -> list[str]:
    """The config keys whose values differ between the given configs (name excluded), sorted."""
    keys = sorted({k for c in configs for k in c if k != "name"})
    return [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
