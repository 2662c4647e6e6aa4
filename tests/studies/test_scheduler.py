"""The study queue without processes: advance() starts waiting runs while slots are free, counts a
run whose supervisor took it as busy, starts nothing for a stopped study and marks a finished one done;
recovery leaves a study's waiting runs to the study."""

from __future__ import annotations

import pytest

import arctui.supervisor.spawn as spawn
from arctui.studies.scheduler import advance, parallel_limit
from db.store import RunStore


@pytest.fixture
def store(tmp_path):
    with RunStore.open(f"sqlite:///{tmp_path / 'arctui.db'}", upgrade=True) as s:
        yield s


@pytest.fixture
def spawned(monkeypatch, store):
    """spawn_supervisor replaced: records the run and marks it taken, as a real supervisor would."""
    started: list[int] = []

    def fake_spawn(run_id, db_url, folder, lock_fd=None):
        started.append(run_id)
        store.update_run(run_id, supervisor_pid=10_000 + run_id)
        return True

    monkeypatch.setattr(spawn, "spawn_supervisor", fake_spawn)
    return started


def _study(store, n: int, **spec) -> list[int]:
    study = store.create_study("s", {"run_gpus": "cpu", **spec})
    return [store.create_run({"gpus": "cpu"}, name=f"s-{i}", study=study.id, variant=str(i)).id for i in range(n)]


def _finish(store, run_id: int) -> None:
    store.set_status(run_id, "running")
    store.set_status(run_id, "completed")


def test_max_parallel_slots_fill_in_order_then_done(store, spawned):
    ids = _study(store, 3, max_parallel=2)
    assert advance(store, "s", None) == ids[:2]
    assert advance(store, "s", None) == []  # both slots busy (their supervisors hold them)
    store.set_status(ids[0], "running")
    assert advance(store, "s", None) == []
    store.set_status(ids[0], "completed")
    assert advance(store, "s", None) == [ids[2]]
    _finish(store, ids[1])
    _finish(store, ids[2])
    assert store.get_study("s").status == "active"
    assert advance(store, "s", None) == []
    assert store.get_study("s").status == "done"
    assert spawned == ids


def test_a_stopped_study_starts_nothing(store, spawned):
    ids = _study(store, 2)
    store.set_study_status("s", "stopped")
    assert advance(store, "s", None) == [] and spawned == []
    store.set_study_status("s", "active")
    assert advance(store, "s", None) == [ids[0]]  # CPU default: one at a time


def test_parallel_limit_defaults():
    assert parallel_limit({"run_gpus": "cpu"}, 5) == 1
    assert parallel_limit({"run_gpus": [0, 1]}, 5) == 1
    assert parallel_limit({"run_gpus": "auto"}, 5) == 5  # the FCFS GPU queue decides
    assert parallel_limit({"run_gpus": "auto", "max_parallel": 2}, 5) == 2


def test_recovery_leaves_waiting_study_runs_alone(store, monkeypatch):
    import time

    from arctui.supervisor import recovery

    ids = _study(store, 1)
    single = store.create_run({"gpus": "cpu"}, name="single").id
    respawned: list[int] = []
    monkeypatch.setattr(recovery, "spawn_supervisor", lambda run_id, *a, **k: respawned.append(run_id) or True)
    monkeypatch.setattr(recovery, "LAUNCH_GRACE_SECONDS", -1.0)  # both are "old" queued runs
    monkeypatch.setattr(time, "time", lambda: 4e9)
    recovery.recover_orphans(store, None)
    assert respawned == [single] and ids[0] not in respawned


@pytest.mark.parametrize(
    ("n_gpus", "needs"),
    [(1, [1, 1, 1]), (2, [2, 1, 1, 2]), (4, [2, 1, 2, 1, 1])],
)
def test_gpu_study_on_fake_inventories(store, spawned, monkeypatch, tmp_path, n_gpus, needs):
    """With gpus auto every run's supervisor is started and waits in the FCFS GPU queue: no GPU is
    given to two runs, no GPU idles while the oldest waiting run fits, first come first served."""
    from arctui.supervisor.gpus import GpuInfo
    from arctui.supervisor.queue import try_take_gpus

    monkeypatch.setenv("ARCTUI_HOME", str(tmp_path / "home"))
    inventory = [GpuInfo(index=i, name="H100", uuid=f"GPU-{i}", memory_used_bytes=0, memory_total_bytes=80 << 30,
                         utilization_pct=0.0, power_w=70.0) for i in range(n_gpus)]
    study = store.create_study("s", {"run_gpus": "auto"})
    ids = [store.create_run({"gpus": "auto", "n_gpus": need}, name=f"s-{i}", study=study.id, variant=str(i)).id
           for i, need in enumerate(needs)]
    need_of = dict(zip(ids, needs, strict=True))
    assert advance(store, "s", None) == ids  # all supervisors start; the GPU queue decides who runs
    order: list[int] = []
    while len(order) < len(ids):
        for run_id in ids:  # every waiting supervisor polls, in any order
            if store.get_run(run_id).status == "queued":
                chosen, _ = try_take_gpus(store, run_id, need_of[run_id], lambda: inventory, busy_mb=1024)
                if chosen is not None:
                    order.append(run_id)
        holding = store.runs_holding_gpus()
        held = [g for r in holding for g in r.gpu_ids]
        assert len(held) == len(set(held))  # never one GPU to two runs
        waiting = [i for i in ids if store.get_run(i).status == "queued"]
        if waiting:  # the oldest waiting run does not fit in what is free
            assert need_of[waiting[0]] > n_gpus - len(held)
        oldest_running = min((r.id for r in holding), default=None)
        if oldest_running is not None:
            _finish_running(store, oldest_running)
    assert order == ids  # first come first served
    for run in store.runs_holding_gpus():
        _finish_running(store, run.id)
    assert advance(store, "s", None) == [] and store.get_study("s").status == "done"


def _finish_running(store, run_id: int) -> None:
    store.set_status(run_id, "completed")
