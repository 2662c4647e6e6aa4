"""GPU discovery and sampling.

This machine has no NVIDIA driver, so the real pynvml path is exercised for its failure
(``NVMLError_LibraryNotFound``); the reading logic gets real-shaped NVML values through the reader
argument that production code fills with :func:`read_nvml`. On a machine with a GPU the tests marked
``needs_nvml`` read the real devices instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from arctui.supervisor.gpus import (
    NO_GPU_LINE,
    GpuInfo,
    GpuProcess,
    GpuSampler,
    NoGpuError,
    attach_runs,
    available_gpu_count,
    list_gpus,
    parse_gpu_selection,
    process_group_of,
    read_nvml,
)
from db.records import GpuSample
from runner.errors import UserError
from tests.conftest import REPO_ROOT


def nvml_works() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


NVML = nvml_works()
no_nvml = pytest.mark.skipif(NVML, reason="this machine has an NVIDIA driver")
needs_nvml = pytest.mark.skipif(not NVML, reason="this machine has no NVIDIA driver")

GIB = 1024**3
# Readings shaped like NVML's on a 2 x H100 80GB box: memory in bytes, utilization %, power W.
H100 = [
    GpuInfo(
        index=0,
        name="NVIDIA H100 80GB HBM3",
        uuid="GPU-3f2c1a7e-9b1d-4c55-8e0a-1d2b3c4d5e6f",
        memory_used_bytes=21 * GIB + 512 * 1024**2,
        memory_total_bytes=85_520_809_984,
        utilization_pct=97.0,
        power_w=612.345,
        processes=(
            GpuProcess(pid=41_001, used_memory_bytes=21 * GIB),
            GpuProcess(pid=52_000, used_memory_bytes=None),
        ),
    ),
    GpuInfo(
        index=1,
        name="NVIDIA H100 80GB HBM3",
        uuid="GPU-8a7b6c5d-4e3f-2a1b-0c9d-8e7f6a5b4c3d",
        memory_used_bytes=4 * 1024**2,
        memory_total_bytes=85_520_809_984,
        utilization_pct=None,  # MIG slices do not report utilization
        power_w=None,
        processes=(),
    ),
]


class RecordedReader:
    """A reader with NVML's signature that returns fixed readings and records what it was asked."""

    def __init__(self, readings: list[GpuInfo]) -> None:
        self.readings = readings
        self.calls: list[list[int] | None] = []

    def __call__(self, indices):
        self.calls.append(None if indices is None else list(indices))
        if indices is None:
            return list(self.readings)
        return [g for g in self.readings if g.index in indices]


def no_driver(indices):
    raise NoGpuError("NVML: NVML Shared Library Not Found")


# ---- the real NVML path -----------------------------------------------------------------------------


@no_nvml
def test_without_a_driver_list_gpus_raises_one_clear_user_error():
    with pytest.raises(NoGpuError) as info:
        list_gpus()
    assert isinstance(info.value, UserError)
    message = str(info.value)
    assert "\n" not in message
    assert (
        message
        == "no NVIDIA GPU/driver found (NVML: NVML Shared Library Not Found); use --gpus cpu to train on the CPU"
    )
    assert info.value.reason == "NVML: NVML Shared Library Not Found"
    # The cause is pynvml's own error, not something we made up.
    import pynvml

    assert isinstance(info.value.__cause__, pynvml.NVMLError_LibraryNotFound)
    assert available_gpu_count() == 0


@no_nvml
def test_without_a_driver_arctui_gpus_informs_and_exits_0():
    run = subprocess.run(
        [sys.executable, "-m", "arctui", "gpus"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0
    assert run.stdout.splitlines() == [f"{NO_GPU_LINE} (NVML: NVML Shared Library Not Found)"]
    assert run.stderr == ""
    as_json = subprocess.run(
        [sys.executable, "-m", "arctui", "gpus", "--format", "json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout) == []
    assert as_json.stderr.startswith(NO_GPU_LINE)


@no_nvml
def test_sampler_without_a_driver_logs_once_and_stops():
    lines: list[str] = []
    received: list = []
    sampler = GpuSampler([0], interval_s=0.01, callback=received.append, log=lines.append).start()
    sampler._thread.join(timeout=300)
    assert not sampler.running
    assert sampler.available is False
    assert sampler.rounds == 0
    assert received == []
    assert lines == [
        "GPU sampling off: no NVIDIA GPU/driver found (NVML: NVML Shared Library Not Found); "
        "use --gpus cpu to train on the CPU"
    ]
    sampler.stop()  # stopping a sampler that already ended is fine


@needs_nvml
def test_real_gpus_are_read():
    gpus = read_nvml()
    assert gpus and [g.index for g in gpus] == list(range(len(gpus)))
    for gpu in gpus:
        assert gpu.name and gpu.uuid.startswith(("GPU-", "MIG-"))
        assert gpu.memory_total_bytes is None or gpu.memory_total_bytes > gpu.memory_used_bytes >= 0
    samples = GpuSampler([gpus[0].index]).sample()
    assert [s.gpu_index for s in samples] == [gpus[0].index]
    assert available_gpu_count() == len(gpus)


@needs_nvml
def test_real_arctui_gpus_lists_every_gpu():
    run = subprocess.run(
        [sys.executable, "-m", "arctui", "gpus", "--format", "json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert [r["index"] for r in rows] == list(range(len(read_nvml())))


# ---- listing with readings --------------------------------------------------------------------------


def test_gpu_info_units():
    gpu = H100[0]
    assert gpu.memory_used_mb == 21 * 1024 + 512
    assert gpu.memory_total_mb == pytest.approx(81559.0)
    assert H100[1].memory_used_mb == 4.0
    unknown = GpuInfo(2, "MIG 1g.10gb", "MIG-x", None, None, None, None)
    assert unknown.memory_used_mb is None and unknown.memory_total_mb is None


def test_list_gpus_names_the_run_holding_each_process():
    reader = RecordedReader(H100)
    groups = {41_001: 41_000, 52_000: 52_000}  # the worker 41001 runs in the group led by launcher 41000
    gpus = list_gpus({41_000: "03_1gpu", 99: "other"}, read=reader, group_of=groups.get)
    assert reader.calls == [None]
    assert [p.run_name for p in gpus[0].processes] == ["03_1gpu", None]
    assert gpus[0].held_by == ("03_1gpu",)
    assert gpus[1].held_by == ()
    # The readings themselves are untouched, and no mapping means no labels.
    assert all(p.run_name is None for p in H100[0].processes)
    assert list_gpus(read=reader) == H100


def test_attach_runs_prefers_the_pid_itself_and_keeps_run_order():
    gpu = GpuInfo(
        0,
        "NVIDIA A100-SXM4-40GB",
        "GPU-1",
        10 * GIB,
        40 * GIB,
        50.0,
        300.0,
        processes=(GpuProcess(7, GIB), GpuProcess(8, GIB), GpuProcess(9, GIB), GpuProcess(10, GIB)),
    )
    [labelled] = attach_runs([gpu], {7: "b-run", 100: "a-run"}, group_of={8: 100, 9: 7, 10: None}.get)
    assert [p.run_name for p in labelled.processes] == ["b-run", "a-run", "b-run", None]
    assert labelled.held_by == ("b-run", "a-run")


def test_process_group_of_real_processes():
    assert process_group_of(os.getpid()) == os.getpgid(0)
    child = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    child.wait()
    assert process_group_of(child.pid) is None  # gone (and reaped)


def test_gpu_info_to_dict_is_json_ready():
    data = json.loads(json.dumps(attach_runs(H100, {41_001: "r"})[0].to_dict()))
    assert data["held_by"] == ["r"]
    assert data["processes"][0] == {"pid": 41_001, "used_memory_bytes": 21 * GIB, "run_name": "r"}
    assert data["memory_total_bytes"] == 85_520_809_984


def test_table_format_shows_memory_runs_and_missing_readings():
    from arctui.commands.gpus import format_table

    rows = [g.to_dict() for g in attach_runs(H100, {41_001: "03_1gpu"})]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["GPU", "NAME", "MEMORY", "GiB", "UTIL", "POWER", "RUN", "PROCESSES"]
    assert "21.5/79.6" in lines[1] and "97%" in lines[1] and "612W" in lines[1]
    assert "41001:21504MiB(03_1gpu) 52000:?" in lines[1]
    assert lines[2].split()[-4:] == ["-", "-", "-", "-"]


# ---- --gpus parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "available", "expected"),
    [
        ("0,1", 2, [0, 1]),
        (" 3 , 1 ", 4, [3, 1]),
        ("0", None, [0]),
        ("7", None, [7]),
        ("auto", 0, "auto"),
        ("AUTO", None, "auto"),
        ("cpu", 0, "cpu"),
        ("Cpu", 8, "cpu"),
    ],
)
def test_parse_gpu_selection(spec, available, expected):
    assert parse_gpu_selection(spec, available) == expected


@pytest.mark.parametrize(
    ("spec", "available", "message"),
    [
        ("2", 2, "--gpus: GPU 2 does not exist; valid indices: 0, 1"),
        ("0,5", 4, "--gpus: GPU 5 does not exist; valid indices: 0, 1, 2, 3"),
        ("0", 0, "--gpus: GPU 0 does not exist: this machine has no NVIDIA GPU; use --gpus cpu"),
        ("", 2, "--gpus is empty; give GPU indices such as 0,1, or auto, or cpu"),
        ("0,,1", 2, "--gpus: '' is not a GPU index"),
        ("-1", 2, "--gpus: '-1' is not a GPU index"),
        ("gpu0", 2, "--gpus: 'gpu0' is not a GPU index; give indices such as 0,1, or auto, or cpu"),
        ("1,1", 2, "--gpus: GPU 1 is listed twice; list each GPU once"),
    ],
)
def test_parse_gpu_selection_rejects_bad_specs(spec, available, message):
    with pytest.raises(UserError) as info:
        parse_gpu_selection(spec, available)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


# ---- the sampler ------------------------------------------------------------------------------------


def test_sample_reads_only_its_gpus_as_store_records():
    reader = RecordedReader(H100)
    sampler = GpuSampler([1], read=reader, clock=lambda: 1_700_000_000.5)
    [sample] = sampler.sample()
    assert reader.calls == [[1]]
    assert sample == GpuSample(
        gpu_index=1,
        gpu_name="NVIDIA H100 80GB HBM3",
        time=1_700_000_000.5,
        memory_used_mb=4.0,
        memory_total_mb=85_520_809_984 / 1024**2,
        utilization_pct=None,
        power_w=None,
        run_id=None,
    )


def test_sampler_thread_calls_back_every_round_until_stopped():
    reader = RecordedReader(H100)
    rounds: list[list[GpuSample]] = []
    three = threading.Event()

    def collect(samples):
        rounds.append(samples)
        if len(rounds) >= 3:
            three.set()

    sampler = GpuSampler([0, 1], interval_s=0.01, callback=collect, read=reader)
    with sampler:
        assert three.wait(timeout=300)
    assert not sampler.running
    taken = len(rounds)
    assert taken >= 3 and sampler.rounds == taken
    assert all([s.gpu_index for s in r] == [0, 1] for r in rounds)
    assert rounds[0][0].memory_used_mb == 21 * 1024 + 512 and rounds[0][0].power_w == pytest.approx(612.345)
    assert all(call == [0, 1] for call in reader.calls)
    assert len(rounds) == taken  # nothing after stop()


def test_stop_wakes_a_sampler_in_its_interval():
    sampler = GpuSampler([0], interval_s=3600, read=RecordedReader(H100)).start()
    while sampler.rounds == 0:
        threading.Event().wait(0.005)
    sampler.stop(timeout=300)
    assert not sampler.running
    assert sampler.rounds == 1


def test_sampler_survives_a_failing_callback_and_says_so_once():
    lines: list[str] = []
    calls = []
    done = threading.Event()

    def broken(samples):
        calls.append(samples)
        if len(calls) >= 4:
            done.set()
        raise OSError("database is locked")

    sampler = GpuSampler([0], interval_s=0.01, callback=broken, read=RecordedReader(H100), log=lines.append)
    with sampler:
        assert done.wait(timeout=300)
    assert lines == ["GPU sample callback failed: OSError: database is locked"]


def test_sampler_without_nvml_via_reader_stops_and_sample_raises():
    lines: list[str] = []
    sampler = GpuSampler([0], interval_s=0.01, read=no_driver, log=lines.append).start()
    sampler._thread.join(timeout=300)
    assert not sampler.running and sampler.available is False and len(lines) == 1
    with pytest.raises(NoGpuError):
        sampler.sample()


def test_a_gpu_that_vanishes_is_left_out_of_later_rounds():
    reader = RecordedReader(H100)
    sampler = GpuSampler([0, 1], read=reader)
    assert [s.gpu_index for s in sampler.sample()] == [0, 1]
    reader.readings = H100[:1]
    assert [s.gpu_index for s in sampler.sample()] == [0]


def test_sampler_rejects_a_non_positive_interval_and_double_start():
    with pytest.raises(ValueError, match="interval_s must be positive"):
        GpuSampler([0], interval_s=0)
    sampler = GpuSampler([0], interval_s=3600, read=RecordedReader(H100)).start()
    with pytest.raises(RuntimeError, match="called twice"):
        sampler.start()
    sampler.stop()


def test_samples_land_in_the_store(tmp_path):
    from db.store import RunStore

    store = RunStore.open(f"sqlite:///{tmp_path / 'gpus.db'}")
    try:
        samples = GpuSampler([0, 1], read=RecordedReader(H100), clock=lambda: 1234.0).sample()
        assert store.append_gpu_samples(None, samples) == 2
        latest = sorted(store.latest_gpu_samples(), key=lambda s: s.gpu_index)
        assert [(s.gpu_index, s.memory_used_mb, s.utilization_pct) for s in latest] == [
            (0, 21 * 1024 + 512, 97.0),
            (1, 4.0, None),
        ]
    finally:
        store.close()
