"""Prompts: an ARC task as chat text the model trains on or completes, as arc24 writes it.

The versions of ``ARC24_VERIFIED_VERSIONS`` are byte-for-byte arc24's (checked against
``../shared/compat/arc24/prompts.jsonl`` by ``tests/compat/test_prompts.py``). The output versions
show the train pairs as ``## Example k`` / ``### Input`` / grid / ``### Output`` / grid and then
``## Test case`` / ``### Input`` / grid, the user message ending right after the test grid; the answer
(assistant turn) is ``### Output\\n\\n<grid>``. The generative versions list only inputs (or outputs) as
``## Grid example k`` and the answer is ``## New grid\\n\\n<grid>``.

The other versions write the text of arc24's templates (``scripts/arc24/prompting.py``, checked by
``tests/compat/test_prompt_templates.py``): select shows the task's ``test_output_choices`` as
``### Output option k`` and the answer is the right option's index; verify shows one test output and
asks ``Is the test output correct?``, the answer is ``yes`` or ``no``; the code versions need tasks
with a ``code`` field (:func:`check_task_for_version`), whose answer is that code in a python block.

Text is rendered with the tokenizer's own chat template (``tokenizer.apply_chat_template``); this
module never imports transformers, the caller passes the tokenizer in. The supervised part of a
training text (:attr:`Prompt.answer`) is everything after the assistant header's name, as arc24's
completion-only collator has it for ChatML: the newline, the answer, the end-of-turn token and the
newline the template writes after it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from runner.encoders import FENCE_OPEN, GridEncoder, answer_prefix_for
from runner.errors import ConfigError, DataError, ModelError

# The versions whose text arc24's reference outputs pin down.
ARC24_VERIFIED_VERSIONS = (
    "output-from-examples-v0",
    "output-from-examples-v1",
    "input-from-inputs-v0",
    "output-from-outputs-v0",
)
# Versions that judge proposed outputs: trained on the task without the train/test swap (as arc24).
SELECT = "select-output-from-examples-v0"
VERIFY = "verify-output-from-examples-v0"
JUDGE_PROMPT_VERSIONS = (SELECT, VERIFY)
CODE_FROM_EXAMPLES_VERSIONS = tuple(f"code-from-examples-v{k}" for k in range(4))
# Versions whose tasks must carry Python source in a "code" field.
CODE_PROMPT_VERSIONS = (*CODE_FROM_EXAMPLES_VERSIONS, "output-from-code-v0")
PROMPT_VERSIONS = (*ARC24_VERIFIED_VERSIONS, *JUDGE_PROMPT_VERSIONS, *CODE_PROMPT_VERSIONS)
DEFAULT_PROMPT_VERSION = "output-from-examples-v1"
DEFAULT_VERIFY_CORRECT_OUTPUT_PROBABILITY = 0.5

# arc24's text: three lines end with a space and the prompt ends with a newline (escaped inside the
# literals, so no editor strips them).
SYSTEM_PROMPT_V0 = (
    "You are a helpful AI assistant. Your job is to solve tasks from the Abstraction and Reasoning Challenge (ARC). \n"
    "The user will present you with sample input and output grids for each task. \n"
    "Your job will be to understand the transformation between the input and the output and apply it to the last "
    "input grid given by the user. \n"
    "The puzzle-like inputs and outputs present a grid where each square can be one of ten colors. A grid can be "
    "any height or width between 1x1 and 30x30.\n"
    "The background of the grid is typically colored with 0.\n"
    "The tasks from ARC are based on the following priors:\n"
    "\n"
    "- Objectness: Objects persist and cannot appear or disappear without reason. Objects can interact or not "
    "depending on the circumstances.\n"
    '- Goal-directed: Objects can be animate or inanimate. Some objects are "agents" - they have intentions and '
    "they pursue goals.\n"
    "- Numbers & counting: Objects can be counted or sorted by their shape, appearance, or movement using basic "
    "mathematics like addition, subtraction, and comparison.\n"
    "- Basic geometry & topology: Objects can be shapes like rectangles, triangles, and circles which can be "
    "mirrored, rotated, translated, deformed, combined, repeated, etc. Differences in distances can be detected.\n"
    "\n"
    "The transformations between input and output should be based on these priors.\n"
)

INTRO_V0 = "Let's see if you can solve this simple ARC task. These are some input-output grid examples that define the task."

SYSTEM_PROMPT_V1 = "You are a helpful assistant."

INTRO_V1 = """Let's see if you can solve this simple Abstraction and Reasoning Challenge (ARC) task.
Below there are some input-output grid examples that define the task.
Your job is to understand the transformation between the input and the output and apply it to the test input grid.
The transformations are always based on the following priors: objectness, goal-directed, numbers & counting, and basic geometry & topology."""

# arc24 uses this intro for both generative versions ("input grids" for output-from-outputs too).
INTRO_GENERATIVE = """Your task is to create a new grid that follows the same distribution as the input grids from the Abstraction and Reasoning Challenge (ARC).
Below there are some grid examples, please create a new and different grid that follows the same distribution."""

# The select, verify and code versions: arc24's text (scripts/arc24/prompting.py). Their user
# messages repeat the v1 intro's framing with a different job line.
_INTRO_ARC_TASK = "Let's see if you can solve this simple Abstraction and Reasoning Challenge (ARC) task."
_INTRO_EXAMPLES = "Below there are some input-output grid examples that define the task."
_INTRO_UNDERSTAND = "Your job is to understand the transformation between the input and the output and "
_INTRO_PRIORS = (
    "The transformations are always based on the following priors: objectness, goal-directed, "
    "numbers & counting, and basic geometry & topology."
)
INTRO_SELECT = "\n".join([
    _INTRO_ARC_TASK, _INTRO_EXAMPLES, _INTRO_UNDERSTAND + "select the correct test output grid.",
    "Just reply with the index of the correct test output option.", _INTRO_PRIORS,
])
INTRO_VERIFY = "\n".join([
    "Let's see if you can verify the output for an Abstraction and Reasoning Challenge (ARC) task.",
    _INTRO_EXAMPLES, _INTRO_UNDERSTAND + "verify if the test output grid is correct.",
    'Just reply with the word "yes" if the test output is correct or "no" if it is not.', _INTRO_PRIORS,
])
VERIFY_QUESTION = "Is the test output correct?"
INTRO_CODE_V0 = "\n".join([
    _INTRO_ARC_TASK, _INTRO_EXAMPLES,
    _INTRO_UNDERSTAND + "write a python function that implements the transformation.",
    "The function should be called `task` and receives a numpy array called `grid` as input.", _INTRO_PRIORS,
])


def _intro_code_long(argument: str) -> str:
    """The intro of code-from-examples-v1..v3 (v3 names the argument ``img``)."""
    return f"""You are tasked with solving a transformation problem from the Abstraction and Reasoning Challenge (ARC).
The goal is to generate a Python function called `task` that receives a 2D numpy array, `{argument}`, and transforms it to match the desired output.

Below are several input-output examples that illustrate the transformation. Your function should generalize the pattern from these examples to solve any input following the same logic.

## Key Priors:

- **Objectness**: Consider the grid as containing objects (groups of connected cells) rather than just individual pixels.
- **Goal-Directed**: The transformation should achieve a specific goal, such as creating symmetry or changing the color of specific objects.
- **Numbers & Counting**: Keep track of the number of objects, sizes, and their relative positions.
- **Geometry & Topology**: Use spatial relationships such as adjacency, enclosure, or symmetry.

Carefully analyze the examples and find the underlying transformation logic.

## Examples"""


CODE_V1_CLOSING = "## Code\n\nImplement the transformation in Python."
CODE_V2_ANSWER_HEADER = "## Code\n\nThis is the Python function that implements the transformation logic:\n\n"
CODE_OPENING = "```python\n"
INTRO_OUTPUT_FROM_CODE = "Your task is to transform the input grid using the transformation defined in the python code below."

OUTPUT_HEADER = "### Output\n\n"
NEW_GRID_HEADER = "## New grid\n\n"
VERIFY_ANSWERS = ("yes", "no")


@dataclass(frozen=True)
class Conversation:
    """The plain messages of one prompt, before any chat template."""

    system: str
    user: str
    answer: str  # assistant turn content: header + encoded grid (or the judgement, or the code)
    answer_header: str  # the part of ``answer`` before the grid (or the code block)
    # What an inference prompt writes after the header: None for a grid answer ("```grid", as arc24),
    # else this text (the code versions open a python block, select/verify nothing).
    answer_opening: str | None = None

    def messages(self, *, with_answer: bool = True) -> list[dict[str, str]]:
        out = [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]
        if with_answer:
            out.append({"role": "assistant", "content": self.answer})
        return out


@dataclass(frozen=True)
class Prompt:
    """A training text split where supervision starts: ``prompt`` (labels -100) + ``answer`` (trained).

    ``answer`` begins right after the assistant header's name (ChatML: the ``\\n`` after
    ``<|im_start|>assistant``) and ends with what the template writes after the end-of-turn token."""

    task_id: str
    test_index: int
    prompt: str
    answer: str


@dataclass(frozen=True)
class InferencePrompt:
    """A prompt that ends inside the assistant turn where the answer starts (after "```grid" when
    the answer is a grid, whatever the encoder, as arc24).

    The model's continuation decodes as ``answer_prefix + generated text``: the prefix is the fence
    for encoders that write one, empty otherwise."""

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


def check_task_for_version(task: dict, prompt_version: str, *, task_id: str = "", source: str = "") -> None:
    """DataError when ``prompt_version`` needs something ``task`` lacks (the code versions: ``code``)."""
    if prompt_version in CODE_PROMPT_VERSIONS and not task.get("code"):
        where = f"{source}: " if source else ""
        raise DataError(
            f"{where}task {task_id or '?'} has no 'code' field, which prompt version {prompt_version} needs; "
            "use tasks that carry their Python source in 'code' or another prompt version"
        )


def _examples(samples: list[dict], encode, *, level: int = 2) -> list[str]:
    """The ``## Example k`` blocks (``level`` 3: ``### Example k`` / ``#### Input``, code v1..v3)."""
    h = "#" * level
    return [
        f"{h} Example {k}\n\n{h}# Input\n\n{encode(s['input'])}\n\n{h}# Output\n\n{encode(s['output'])}"
        for k, s in enumerate(samples, start=1)
    ]


def _recolored(grid: list[list[int]], rng: random.Random) -> list[list[int]]:
    """``grid`` with one cell changed to another colour: a wrong output close to the right one."""
    out = [row[:] for row in grid]
    r, c = rng.randrange(len(out)), rng.randrange(len(out[0]))
    out[r][c] = rng.choice([v for v in range(10) if v != out[r][c]])
    return out


def wrong_outputs(task: dict, test_index: int, rng: random.Random, n: int) -> list[list[list[int]]]:
    """``n`` distinct grids that are not test ``test_index``'s output: the task's other outputs first
    (in a seeded order), then copies of the right output with one cell recoloured."""
    correct = task["test"][test_index]["output"]
    others = [s["output"] for s in task["train"] + task["test"] if "output" in s]
    rng.shuffle(others)
    found: list[list[list[int]]] = []
    for grid in others:
        if grid != correct and grid not in found:
            found.append(grid)
    while len(found) < n:
        grid = _recolored(correct, rng)
        if grid not in found:
            found.append(grid)
    return found[:n]


def attempts_of(sample: dict) -> list[list[list[int]]]:
    """The wrong predictions a sample carries (arc24's ``attempt_*`` keys) that differ from its output."""
    return [
        sample[key] for key in sorted(sample) if key.startswith("attempt_") and sample[key] != sample.get("output")
    ]


def wrong_prediction(task: dict, test_index: int, rng: random.Random) -> list[list[int]]:
    """A wrong output for test ``test_index``: one of its ``attempt_*`` predictions (arc24), else
    one drawn by :func:`wrong_outputs` when the data carries none."""
    attempts = attempts_of(task["test"][test_index])
    return rng.choice(attempts) if attempts else wrong_outputs(task, test_index, rng, 1)[0]


def _judge_rng(task: dict, test_index: int, prompt_version: str) -> random.Random:
    """A fixed generator for prompts built without one (validation, inference): same task, same prompt."""
    return random.Random(f"{prompt_version}/{test_index}/{task['test'][test_index]['input']}")


def _select_choices(task: dict, test_index: int, rng: random.Random | None) -> tuple[list, str]:
    """The output options and the answer (the right option's 1-based index, as text).

    A task's own ``test_output_choices`` (arc24's field, shared by all its test samples) are shown
    when no ``rng`` draws new ones; a draw puts the right output first or second with probability
    1/2 next to one :func:`wrong_prediction`, as arc24's fine-tuning does."""
    test = task["test"][test_index]
    if rng is None and "test_output_choices" in task:
        choices = task["test_output_choices"]
        index = task.get("test_correct_choice_index")
        if index is None and test.get("output") in choices:
            index = choices.index(test["output"]) + 1
        return choices, "" if index is None else str(index)
    rng = rng or _judge_rng(task, test_index, SELECT)
    wrong = wrong_prediction(task, test_index, rng)
    if rng.random() < 0.5:
        return [test["output"], wrong], "1"
    return [wrong, test["output"]], "2"


def _verify_output(
    task: dict, test_index: int, rng: random.Random | None, correct_probability: float
) -> tuple[list[list[int]], str]:
    """The test output shown and the answer (``yes`` / ``no``).

    A task with arc24's ``is_test_output_correct`` shows its test output with that label when no
    ``rng`` draws; a draw shows the right output with ``correct_probability``, else a wrong prediction."""
    test = task["test"][test_index]
    if rng is None and "is_test_output_correct" in task:
        return test["output"], task["is_test_output_correct"]
    rng = rng or _judge_rng(task, test_index, VERIFY)
    if rng.random() < correct_probability:
        return test["output"], VERIFY_ANSWERS[0]
    return wrong_prediction(task, test_index, rng), VERIFY_ANSWERS[1]


def build_conversation(
    task: dict,
    test_index: int,
    grid_encoder: GridEncoder,
    prompt_version: str,
    *,
    rng: random.Random | None = None,
    verify_correct_output_probability: float = DEFAULT_VERIFY_CORRECT_OUTPUT_PROBABILITY,
) -> Conversation:
    """The system, user and answer texts for test sample ``test_index`` of ``task``, as arc24's
    ``create_prompts_from_task`` writes them.

    ``rng`` draws what the select and verify versions show (the options; whether the shown output
    is the right one, with probability ``verify_correct_output_probability``); without it a task's
    own ``test_output_choices`` / ``is_test_output_correct`` are used, else a draw fixed per task
    and test sample."""
    check_prompt_version(prompt_version)
    tests = task.get("test") or []
    if not 0 <= test_index < len(tests):
        raise DataError(f"test index {test_index} is out of range; the task has {len(tests)} test sample(s)")
    check_task_for_version(task, prompt_version)
    test = tests[test_index]
    encode = grid_encoder.to_text
    test_case = f"## Test case\n\n### Input\n\n{encode(test['input'])}"
    if prompt_version.startswith("output-from-examples"):
        system, intro = (
            (SYSTEM_PROMPT_V0, INTRO_V0) if prompt_version.endswith("v0") else (SYSTEM_PROMPT_V1, INTRO_V1)
        )
        parts = [intro, *_examples(task["train"], encode), test_case]
        answer_grid = encode(test["output"]) if "output" in test else ""
        return Conversation(system, "\n\n".join(parts), OUTPUT_HEADER + answer_grid, OUTPUT_HEADER)
    if prompt_version in ("input-from-inputs-v0", "output-from-outputs-v0"):
        key = "input" if prompt_version == "input-from-inputs-v0" else "output"
        parts = [INTRO_GENERATIVE]
        parts += [f"## Grid example {k}\n\n{encode(s[key])}" for k, s in enumerate(task["train"], start=1)]
        answer_grid = encode(test[key]) if key in test else ""
        # arc24's generative template ends the user message with a newline.
        return Conversation(
            SYSTEM_PROMPT_V1, "\n\n".join(parts) + "\n", NEW_GRID_HEADER + answer_grid, NEW_GRID_HEADER
        )
    if prompt_version == "output-from-code-v0":
        user = "\n\n".join([
            INTRO_OUTPUT_FROM_CODE, f"## Code\n\n```python\n{task['code']}\n```",
            f"## Example\n\n### Input\n\n{encode(test['input'])}",
        ])
        answer_grid = encode(test["output"]) if "output" in test else ""
        return Conversation(SYSTEM_PROMPT_V1, user, OUTPUT_HEADER + answer_grid, OUTPUT_HEADER)
    if prompt_version in CODE_FROM_EXAMPLES_VERSIONS:
        # v0: short intro, the train pairs; v1: long intro, the train pairs and a closing request;
        # v2: long intro and the train pairs, the answer has a header; v3: v2 plus the test input.
        version = int(prompt_version[-1])
        if version == 0:
            parts = [INTRO_CODE_V0, *_examples(task["train"], encode)]
        else:
            parts = [_intro_code_long("img" if version == 3 else "grid"), *_examples(task["train"], encode, level=3)]
        if version == 1:
            parts.append(CODE_V1_CLOSING)
        elif version == 3:
            parts.append(f"### Test case\n\n#### Input\n\n{encode(test['input'])}")
        # v0 and v2 end with the newline after the last example, as arc24's templates.
        user = "\n\n".join(parts) + ("\n" if version in (0, 2) else "")
        header = CODE_V2_ANSWER_HEADER if version >= 2 else ""
        answer = f"{header}{CODE_OPENING}{task['code']}\n```"
        return Conversation(SYSTEM_PROMPT_V1, user, answer, header, answer_opening=CODE_OPENING)
    # select / verify: judge proposed outputs of a test input.
    if "output" not in test and not ("test_output_choices" in task and rng is None):
        raise DataError(f"test[{test_index}] has no output grid, which {prompt_version} needs to judge")
    head = [*_examples(task["train"], encode), test_case]
    if prompt_version == VERIFY:
        shown, answer = _verify_output(task, test_index, rng, verify_correct_output_probability)
        user = "\n\n".join([INTRO_VERIFY, *head, f"### Output\n\n{encode(shown)}", VERIFY_QUESTION])
        return Conversation(SYSTEM_PROMPT_V1, user, answer, "", answer_opening="")
    choices, answer = _select_choices(task, test_index, rng)
    options = [f"### Output option {k}\n\n{encode(grid)}" for k, grid in enumerate(choices, start=1)]
    user = "\n\n".join([INTRO_SELECT, *head, *options]) + "\n"
    return Conversation(SYSTEM_PROMPT_V1, user, answer, "", answer_opening="")


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
    """Apply the chat template and split the training text where supervision starts.

    The split is the end of the generation prompt without its trailing whitespace (ChatML: right
    after ``<|im_start|>assistant``), so the answer keeps the newline before it and everything the
    template writes after it, end-of-turn token and final newline included (arc24's loss span)."""
    generation = _template(tokenizer, conversation.messages(with_answer=False), add_generation_prompt=True)
    full = _template(tokenizer, conversation.messages(), add_generation_prompt=False)
    if not full.startswith(generation):
        raise ModelError("the tokenizer's chat template does not render the conversation as prompt + answer")
    cut = len(generation.rstrip())
    return Prompt(task_id, test_index, full[:cut], full[cut:])


def answer_key(prompt_version: str) -> str | None:
    """Which grid of a test sample the answer is (None: the answer is no grid of it)."""
    if prompt_version == "input-from-inputs-v0":
        return "input"
    return None if prompt_version in CODE_FROM_EXAMPLES_VERSIONS else "output"


def create_prompts(
    task: dict,
    grid_encoder: GridEncoder,
    tokenizer,
    prompt_version: str,
    *,
    task_id: str = "",
    is_train: bool = True,
) -> list[Prompt]:
    """One prompt per test sample (as arc24, also for code-from-examples, whose v0..v2 prompts are
    then the same for each test sample). ``is_train`` requires test outputs (the answers)."""
    check_prompt_version(prompt_version)
    check_task_for_version(task, prompt_version, task_id=task_id)
    prompts = []
    key = answer_key(prompt_version)
    for i in range(len(task["test"])):
        if is_train and key is not None and key not in task["test"][i]:
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
    """The prompt the model completes: the generation prompt, the answer header and, when the answer
    is a grid, "```grid" (as arc24, whatever the encoder: an unfenced encoder's prompt ends with it
    too). ``answer_prefix`` is what decoding prepends: the fence for encoders that write one. The
    code versions end with "```python\\n" (their prefix), select and verify with the header's name."""
    conversation = build_conversation(task, test_index, grid_encoder, prompt_version)
    prompt = _template(tokenizer, conversation.messages(with_answer=False), add_generation_prompt=True)
    prompt += conversation.answer_header
    if conversation.answer_opening is not None:
        opening = conversation.answer_opening
        return InferencePrompt(task_id, test_index, prompt + opening, opening)
    return InferencePrompt(task_id, test_index, prompt + FENCE_OPEN, answer_prefix_for(grid_encoder))


def create_inference_prompts(
    task: dict, grid_encoder: GridEncoder, tokenizer, prompt_version: str, *, task_id: str = ""
) -> list[InferencePrompt]:
    """One inference prompt per test sample."""
    return [
        create_inference_prompt(task, grid_encoder, tokenizer, prompt_version, task_id=task_id, test_index=i)
        for i in range(len(task["test"]))
    ]


def tokenize_prompt(prompt: Prompt, tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of ``prompt.prompt + prompt.answer`` and labels: -100 on the prompt, the ids on the answer.

    The two parts are tokenized separately, so the split is exact; for the tokenizers arctui uses this
    gives the ids of the whole text (``tests/compat/test_prompts.py`` checks it for SmolLM2)."""
    prompt_ids = tokenizer(prompt.prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(prompt.answer, add_special_tokens=False)["input_ids"]
    return list(prompt_ids) + list(answer_ids), [-100] * len(prompt_ids) + list(answer_ids)
