"""The one model-reference resolver (arctui.supervisor.resolve): launch, eval and the form all use it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from arctui.config import DEMO_MODEL_REF, TINY_MODEL_REF
from arctui.supervisor.resolve import check_model_ref, ensure_tiny_model, expand_path, resolve_model
from runner.errors import ModelError


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ARCTUI_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ARCTUI_MODELS", raising=False)
    return tmp_path / "home"


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_a_model_folder_resolves_to_itself_with_vars_expanded(home, tiny_model_dir, monkeypatch):
    shutil.copytree(tiny_model_dir, home / "models" / "mine")
    assert resolve_model("$ARCTUI_HOME/models/mine") == home / "models" / "mine"
    monkeypatch.setenv("MODELS", str(home / "models"))
    assert resolve_model("${MODELS}/mine") == home / "models" / "mine"
    assert resolve_model(home / "models" / "mine") == home / "models" / "mine"
    assert check_model_ref(str(home / "models" / "mine")) == "model config and tokenizer found"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("demo:unknown", "unknown model reference 'demo:unknown'; use demo:SmolLM2-135M-Instruct"),
        ("tiny:huge", "unknown model reference 'tiny:huge'"),
        ("/no/such/model", "/no/such/model is not a model folder: it does not exist"),
    ],
)
def test_bad_references_are_one_line_model_errors(home, ref, message):
    with pytest.raises(ModelError) as exc:
        resolve_model(ref)
    assert message in one_line(exc)
    with pytest.raises(ModelError) as exc:
        check_model_ref(ref)
    assert message in one_line(exc)


def test_a_folder_without_a_tokenizer_is_refused(home, tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(ModelError) as exc:
        resolve_model(str(folder))
    assert "missing tokenizer" in one_line(exc)


def test_named_references_are_noted_without_building(home):
    assert "tiny random-init Llama" in check_model_ref(TINY_MODEL_REF)
    assert "SmolLM2-135M-Instruct" in check_model_ref(DEMO_MODEL_REF)
    assert not (home / "models").exists()  # nothing built or converted


def test_the_tiny_reference_is_built_once(home):
    built = resolve_model(TINY_MODEL_REF)
    assert built == home / "models" / "tiny-random-llama" and (built / "config.json").is_file()
    stamp = (built / "config.json").stat().st_mtime_ns
    assert ensure_tiny_model() == built and (built / "config.json").stat().st_mtime_ns == stamp


def test_expand_path_makes_relative_paths_absolute(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert expand_path("data/x.json") == str(tmp_path / "data" / "x.json")
    assert expand_path("$ARCTUI_HOME/x") == str(home / "x")
