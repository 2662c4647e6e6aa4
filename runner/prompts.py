"""Prompts: an ARC task as chat text the model trains on or completes.

Four prompt versions (``PROMPT_VERSIONS``). The output versions show the train pairs as
``## Example k`` / ``### Input`` / grid / ``### Output`` / grid and then ``## Test case`` /
``### Input`` / grid; the answer (assistant turn) is ``### Output\\n\\n<grid>``. The generative
versions list only inputs (or outputs) as ``## Grid example k`` and the answer is ``## New grid\\n\\n<grid>``.

Text is rendered with the tokenizer's own chat template (``tokenizer.apply_chat_template``); this
module never imports transformers, the caller passes the tokenizer in.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.encoders import GridEncoder, answer_prefix_for
from runner.errors import ConfigError, DataError, ModelError

PROMPT_VERSIONS = (
    "output-from-examples-v0",
    "output-from-examples-v1",
    "input-from-inputs-v0",
    "output-from-outputs-v0",
)
DEFAULT_PROMPT_VERSION = "output-from-examples-v1"

SYSTEM_PROMPT_V0 = """You are a helpful AI assistant. Your job is to solve tasks from the Abstraction and Reasoning Challenge (ARC).
The user will present you with sample input and output grids for each task.
Your job will be to understand the transformation between the input and the output and apply it to the last input grid given by the user.
The puzzle-like inputs and outputs present a grid where each square can be one of ten colors. A grid can be any height or width between 1x1 and 30x30.
The background of the grid is typically colored with 0.
The tasks from ARC are based on the following priors:

- Objectness: Objects persist and cannot appear or disappear without reason. Objects can interact or not depending on the circumstances.
- Goal-directed: Objects can be animate or inanimate. Some objects are "agents" - they have intentions and they pursue goals.
- Numbers & counting: Objects can be counted or sorted by their shape, appearance, or movement using basic mathematics like addition, subtraction, and comparison.
- Basic geometry & topology: Objects can be shapes like rectangles, triangles, and circles which can be mirrored, rotated, translated, deformed, combined, repeated, etc. Differences in distances can be detected.

The transformations between input and output should be based on these priors."""

INTRO_V0 = "Let's see if you can solve this simple ARC task. These are some input-output grid examples that define the task."

SYSTEM_PROMPT_V1 = "You are a helpful assistant."

INTRO_V1 = """Let's see if you can solve this simple Abstraction and Reasoning Challenge (ARC) task.
Below there are some input-output grid examples that define the task.
Your job is to understand the transformation between the input and the output and apply it to the test input grid.
The transformations are always based on the following priors: objectness, goal-directed, numbers & counting, and basic geometry & topology."""

INTRO_GENERATIVE = (
    "Let's see if you can generate a new grid from the same distribution as these grid examples."
)

OUTPUT_HEADER = "### Output\n\n"
NEW_GRID_HEADER = "## New grid\n\n"


@dataclass(frozen=True)
class Conversation:
    """The plain messages of one prompt, before any chat template."""

    system: str
    user: str
    answer: str  # assistant turn content: header + encoded grid
    answer_header: str  # the part of ``answer`` before the grid

    def messages(self, *, with_answer: bool = True) -> list[dict[str, str]]:
        out = [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]
        if with_answer:
            out.append({"role": "assistant", "content": self.answer})
        return out


@dataclass(frozen=True)
class Prompt:
    """``prompt`` is the templated text up to the answer; ``prompt + answer`` is the training text."""

    task_id: str
    test_index: int
    prompt: str
    answer: str


@dataclass(frozen=True)
class InferencePrompt:
    """A prompt that ends inside the assistant turn where the grid starts.

    The model's continuation decodes as ``answer_prefix + generated text``."""

    task_id: str
    test_index: int
    prompt: str
    answer_prefix: str


def check_prompt_version(prompt_version: str) -> str:
    if prompt_version not in PROMPT_VERSIONS:
        raise ConfigError(
            f"unknown prompt version {prompt_version!r}; valid ones: {', '.join(PROMPT_VERSIONS)}"
        )
    return prompt_version


def build_conversation(
    task: dict, test_index: int, grid_encoder: GridEncoder, prompt_version: str
) -> Conversation:
    """The system, user and answer texts for test sample ``test_index`` of ``task``."""
    check_prompt_version(prompt_version)
    tests = task.get("test") or []
    if not 0 <= test_index < len(tests):
        raise DataError(f"test index {test_index} is out of range; the task has {len(tests)} test sample(s)")
    test = tests[test_index]
    encode = grid_encoder.to_text
    if prompt_version.startswith("output-from-examples"):
        system, intro = (
            (SYSTEM_PROMPT_V0, INTRO_V0) if prompt_version.endswith("v0") else (SYSTEM_PROMPT_V1, INTRO_V1)
        )
        parts = [intro]
        for k, sample in enumerate(task["train"], start=1):
            parts.append(
                f"## Example {k}\n\n### Input\n\n{encode(sample['input'])}\n\n### Output\n\n{encode(sample['output'])}"
            )
        parts.append(f"## Test case\n\n### Input\n\n{encode(test['input'])}")
        answer_grid = encode(test["output"]) if "output" in test else ""
        return Conversation(system, "\n\n".join(parts) + "\n", OUTPUT_HEADER + answer_grid, OUTPUT_HEADER)
    key = "input" if prompt_version == "input-from-inputs-v0" else "output"
    parts = [INTRO_GENERATIVE]
    for k, sample in enumerate(task["train"], start=1):
        parts.append(f"## Grid example {k}\n\n{encode(sample[key])}")
    answer_grid = encode(test[key]) if key in test else ""
    return Conversation(
        SYSTEM_PROMPT_V1, "\n\n".join(parts) + "\n", NEW_GRID_HEADER + answer_grid, NEW_GRID_HEADER
    )


def _template(tokenizer, messages: list[dict], *, add_generation_prompt: bool) -> str:
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ModelError(
            f"tokenizer {name!r} has no chat template; use an instruct model's folder (e.g. `arctui models demo`)"
        )
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def render_prompt(conversation: Conversation, tokenizer, *, task_id: str = "", test_index: int = 0) -> Prompt:
    """Apply the chat template: ``prompt`` ends where the assistant's answer starts."""
    prompt = _template(tokenizer, conversation.messages(with_answer=False), add_generation_prompt=True)
    full = _template(tokenizer, conversation.messages(), add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ModelError("the tokenizer's chat template does not render the conversation as prompt + answer")
    # The template may add a newline after the end-of-turn token; the answer ends at that token.
    return Prompt(task_id, test_index, prompt, full[len(prompt) :].rstrip())


def create_prompts(
    task: dict,
    grid_encoder: GridEncoder,
    tokenizer,
    prompt_version: str,
    *,
    task_id: str = "",
    is_train: bool = True,
) -> list[Prompt]:
    """One prompt per test sample. ``is_train`` requires test outputs (the answers)."""
    check_prompt_version(prompt_version)
    prompts = []
    key = "input" if prompt_version == "input-from-inputs-v0" else "output"
    for i, test in enumerate(task.get("test") or []):
        if is_train and key not in test:
            raise DataError(
                f"task {task_id or '?'}: test[{i}] has no {key} grid to train on; load it with solutions"
            )
        conversation = build_conversation(task, i, grid_encoder, prompt_version)
        prompts.append(render_prompt(conversation, tokenizer, task_id=task_id, test_index=i))
    return prompts


def create_inference_prompt(
    task: dict,
    grid_encoder: GridEncoder,
    tokenizer,
    prompt_version: str,
    *,
    task_id: str = "",
    test_index: int = 0,
) -> InferencePrompt:
    """The prompt the model completes: it ends after the answer header and the opening fence (if any)."""
    conversation = build_conversation(task, test_index, grid_encoder, prompt_version)
    prompt = _template(tokenizer, conversation.messages(with_answer=False), add_generation_prompt=True)
    prefix = answer_prefix_for(grid_encoder)
    return InferencePrompt(task_id, test_index, prompt + conversation.answer_header + prefix, prefix)


def create_inference_prompts(
    task: dict, grid_encoder: GridEncoder, tokenizer, prompt_version: str, *, task_id: str = ""
) -> list[InferencePrompt]:
    """One inference prompt per test sample."""
    return [
        create_inference_prompt(task, grid_encoder, tokenizer, prompt_version, task_id=task_id, test_index=i)
        for i in range(len(task.get("test") or []))
    ]


def tokenize_prompt(prompt: Prompt, tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of ``prompt.prompt + prompt.answer`` and labels: -100 on the prompt, the ids on the answer.

    The two parts are tokenized separately, so the split is exact and matches inference, where the
    model continues a tokenized prompt."""
    prompt_ids = tokenizer(prompt.prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(prompt.answer, add_special_tokens=False)["input_ids"]
    return list(prompt_ids) + list(answer_ids), [-100] * len(prompt_ids) + list(answer_ids)
