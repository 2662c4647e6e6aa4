"""The FCFS GPU queue on a real store, with H100-shaped NVML readings (no GPU on this machine)."""

from __future__ import annotations

import pytest

from arctui.supervisor.gpus import GpuInfo
from arctui.supervisor.queue import choose_gpus, first_in_line, try_take_gpus, wait_for_gpus

GB = 1024**3


def h100(index: int, used_gb: float) -> GpuInfo:
    return GpuInfo(index=index, name="NVIDIA H100 80GB HBM3", uuid=f"GPU-{index}",
                   memory_used_bytes=int(used_gb * GB), memory_total_bytes=80 * GB,
                   utilization_pct=0.0, power_w=70.0)


@pytest.fixture
def store(tmp_path, monkeypatch):
    from db.store import RunStore

    monkeypatch.setenv("ARCTUI_HOME", str(tmp_path / "home"))
    with RunStore.open(f"sqlite:///{tmp_path / 'q.db'}") as store:
        yield store


def queued(store, name: str, gpus="auto", n_gpus: int = 1):
    return store.create_run({"name": name, "gpus": gpus, "n_gpus": n_gpus}, name=name).id


def test_choose_gpus_skips_held_and_busy():
    inventory = [h100(2, 0.5), h100(0, 0.0), h100(1, 30.0), h100(3, 0.0)]
    assert choose_gpus(inventory, held=set(), need=2, busy_mb=1024) == (0, 2)
    assert choose_gpus(inventory, held={0}, need=2, busy_mb=1024) == (2, 3)
    assert choose_gpus(inventory, held={0, 3}, need=2, busy_mb=1024) is None
    assert choose_gpus(inventory, held=set(), need=3, busy_mb=40 * 1024) == (0, 1, 2)


def test_first_come_first_served(store):
    older = queued(store, "older", n_gpus=2)
    younger = queued(store, "younger", n_gpus=1)
    queued(store, "pinned", gpus=[0])  # explicit GPUs do not queue
    readings = [h100(0, 0.0), h100(1, 30.0)]  # a foreign process holds 30 GB on GPU 1
    inventory = lambda: readings  # noqa: E731
    assert first_in_line(store, older) and not first_in_line(store, younger)
    # One GPU is free, but the older run needs two and the younger may not overtake it.
    assert try_take_gpus(store, younger, 1, inventory, busy_mb=1024) == (None, True)
    assert try_take_gpus(store, older, 2, inventory, busy_mb=1024) == (None, True)
    readings[1] = h100(1, 0.2)  # the foreign job ended
    assert try_take_gpus(store, older, 2, inventory, busy_mb=1024) == ((0, 1), True)
    run = store.get_run(older)
    assert run.status == "running" and run.gpu_ids == (0, 1)
    assert try_take_gpus(store, younger, 1, inventory, busy_mb=1024) == (None, True)  # held by "older"
    store.set_status(older, "completed", exit_code=0)
    assert try_take_gpus(store, younger, 1, inventory, busy_mb=1024) == ((0,), True)


def test_a_run_stopped_while_queued_leaves_the_queue(store):
    run_id = queued(store, "impatient")
    store.set_status(run_id, "stopped")
    assert try_take_gpus(store, run_id, 1, lambda: [h100(0, 0.0)], busy_mb=1024) == (None, False)
    assert wait_for_gpus(store, run_id, 1, inventory=lambda: [h100(0, 0.0)], poll=0.01) is None


def test_wait_for_gpus_polls_until_free(store):
    run_id = queued(store, "patient")
    readings = iter([[h100(0, 50.0)], [h100(0, 50.0)], [h100(0, 0.0)]])
    said = []
    assert wait_for_gpus(store, run_id, 1, inventory=lambda: next(readings), poll=0.01, log=said.append) == (0,)
    assert said == ["queued: waiting for 1 free GPU(s)"]


WAITER = """
import json, sys, types
from db.store import RunStore
from arctui.supervisor.queue import wait_for_gpus

url, run_id, gpus, trace = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def note(what):
    with open(trace, "a") as fh:
        fh.write(what + "\\n")

def inventory():
    note("polled")  # only the run first in line reads the GPUs
    with open(gpus) as fh:
        return [types.SimpleNamespace(index=g["index"], memory_used_mb=g["used_mb"]) for g in json.load(fh)]

store = RunStore.open(url)
print(json.dumps(wait_for_gpus(store, run_id, 1, inventory=inventory, poll=0.05, log=lambda m: note("queued"))),
      flush=True)
"""


def test_queue_order_holds_across_processes(tmp_path, monkeypatch):
    """Two supervisors-to-be in two processes: the older run gets the GPU first, whoever polls first."""
    import json
    import subprocess
    import sys

    from db.store import RunStore
    from tests.conftest import REPO_ROOT
    from tests.supervisor.helpers import wait_until

    monkeypatch.setenv("ARCTUI_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'q.db'}"
    gpus = tmp_path / "gpus.json"
    gpus.write_text(json.dumps([{"index": 0, "used_mb": 40000}]))  # busy with a foreign job

    def trace(run_id: int) -> list[str]:
        path = tmp_path / f"trace-{run_id}"
        return path.read_text().split() if path.exists() else []

    def start(run_id: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", WAITER, url, str(run_id), str(gpus),
                                 str(tmp_path / f"trace-{run_id}")], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)

    with RunStore.open(url) as store:
        older, younger = queued(store, "older"), queued(store, "younger")
        waiters = {}
        try:
            waiters[younger] = start(younger)  # the younger one starts polling first
            wait_until(lambda: "queued" in trace(younger), what="the younger run to wait in the queue")
            waiters[older] = start(older)
            wait_until(lambda: trace(older).count("polled") >= 2, what="the older run to find GPU 0 busy twice")
            assert all(w.poll() is None for w in waiters.values())
            assert "polled" not in trace(younger)  # not first in line: it never even looked at the GPUs
            gpus.write_text(json.dumps([{"index": 0, "used_mb": 0}]))
            assert json.loads(waiters[older].communicate(timeout=300)[0]) == [0]
            assert store.get_run(older).status == "running" and store.get_run(younger).status == "queued"
            # Now first in line, the younger run looks at the GPUs and finds GPU 0 held by the older run.
            wait_until(lambda: trace(younger).count("polled") >= 2, what="the younger run to poll twice")
            assert waiters[younger].poll() is None and store.get_run(younger).status == "queued"
            store.set_status(older, "completed", exit_code=0)
            assert json.loads(waiters[younger].communicate(timeout=300)[0]) == [0]
            assert store.get_run(younger).gpu_ids == (0,)
        finally:
            for w in waiters.values():
                w.kill()
                w.wait()
