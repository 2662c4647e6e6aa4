"""NVIDIA GPUs through NVML: what is there, who uses it, and periodic samples for a run.

    from arctui.supervisor.gpus import list_gpus, GpuSampler, parse_gpu_selection

    for gpu in list_gpus(run_by_pid={4242: "03_1gpu"}):
        print(gpu.index, gpu.name, gpu.memory_used_mb, gpu.held_by)

    sampler = GpuSampler([0, 1], interval_s=5, callback=store_samples).start()
    ...
    sampler.stop()

NVML numbers GPUs in PCI bus order, the order the supervisor asks CUDA for (``CUDA_DEVICE_ORDER=PCI_BUS_ID``),
so an index here is the index a run config names. Every NVML read goes through one function,
:func:`read_nvml`; :func:`list_gpus` and :class:`GpuSampler` take another reader with the same
signature, which is how the tests feed them real-shaped readings on a machine without a GPU.
Without the NVIDIA driver every entry point raises :class:`NoGpuError` (a :class:`UserError`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from db.records import GpuSample
from runner.errors import UserError

MIB = 1024 * 1024
DEFAULT_SAMPLE_INTERVAL_S = 5.0
NO_GPU_LINE = "no NVIDIA GPU/driver found: runs will use the CPU"


class NoGpuError(UserError):
    """NVML cannot be used: no NVIDIA driver, no GPU, or NVML refused to start.

    ``reason`` is NVML's own words (e.g. "NVML Shared Library Not Found").
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"no NVIDIA GPU/driver found ({reason}); use --gpus cpu to train on the CPU")
        self.reason = reason


@dataclass(frozen=True)
class GpuProcess:
    """A process that holds memory on a GPU, and the arctui run it belongs to, if any."""

    pid: int
    used_memory_bytes: int | None
    run_name: str | None = None


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as NVML reports it. ``None`` marks a reading the GPU does not support (MIG, some boards)."""

    index: int
    name: str
    uuid: str
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    utilization_pct: float | None
    power_w: float | None
    processes: tuple[GpuProcess, ...] = field(default_factory=tuple)

    @property
    def memory_used_mb(self) -> float | None:
        """Used memory in MiB (the unit the store and the queue work in)."""
        return None if self.memory_used_bytes is None else self.memory_used_bytes / MIB

    @property
    def memory_total_mb(self) -> float | None:
        return None if self.memory_total_bytes is None else self.memory_total_bytes / MIB

    @property
    def held_by(self) -> tuple[str, ...]:
        """The arctui runs with a process on this GPU, in order of appearance."""
        return tuple(dict.fromkeys(p.run_name for p in self.processes if p.run_name))

    def to_sample(self, at: float) -> GpuSample:
        """A run-agnostic store record of this reading taken at unix time ``at``."""
        return GpuSample(
            gpu_index=self.index,
            gpu_name=self.name,
            time=at,
            memory_used_mb=self.memory_used_mb,
            memory_total_mb=self.memory_total_mb,
            utilization_pct=self.utilization_pct,
            power_w=self.power_w,
        )

    def to_dict(self) -> dict:
        out = asdict(self)
        out["held_by"] = list(self.held_by)
        return out


# A reader returns the GPUs with the given indices (all GPUs for None) or raises NoGpuError.
GpuReader = Callable[[Sequence[int] | None], list[GpuInfo]]


# ---- NVML --------------------------------------------------------------------------------------------

_nvml_lock = threading.Lock()
_nvml_ready = False


def _start_nvml():
    """Import pynvml and initialise NVML once per process; NoGpuError when that is impossible."""
    global _nvml_ready
    try:
        import pynvml
    except ImportError as exc:  # nvidia-ml-py is a dependency; a broken install is still possible
        raise NoGpuError("nvidia-ml-py is not installed: pip install nvidia-ml-py") from exc
    with _nvml_lock:
        if not _nvml_ready:
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as exc:
                raise NoGpuError(f"NVML: {exc}") from exc
            _nvml_ready = True
    return pynvml


def _optional(read: Callable, *args):
    """An NVML reading, or None where the device does not support it (MIG slices, some boards)."""
    import pynvml

    try:
        return read(*args)
    except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_NoPermission):
        return None


def _processes(pynvml, handle) -> tuple[GpuProcess, ...]:
    found: dict[int, GpuProcess] = {}
    for read in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
        for proc in _optional(read, handle) or []:
            # A process can be listed as both compute and graphics; count it once.
            found.setdefault(
                int(proc.pid), GpuProcess(pid=int(proc.pid), used_memory_bytes=proc.usedGpuMemory)
            )
    return tuple(found.values())


def read_nvml(indices: Sequence[int] | None = None) -> list[GpuInfo]:
    """Read every GPU (or the given indices; ones that do not exist are left out) from NVML."""
    pynvml = _start_nvml()
    try:
        count = pynvml.nvmlDeviceGetCount()
        wanted = range(count) if indices is None else [i for i in indices if 0 <= i < count]
    except pynvml.NVMLError as exc:
        raise NoGpuError(f"NVML: {exc}") from exc
    gpus = []
    for index in wanted:
        try:
            gpus.append(_read_device(pynvml, index))
        except (pynvml.NVMLError_GpuIsLost, pynvml.NVMLError_InvalidArgument, pynvml.NVMLError_Unknown):
            continue  # this GPU stopped answering (fell off the bus, reset): leave it out of this reading
        except pynvml.NVMLError as exc:
            raise NoGpuError(f"NVML: {exc}") from exc
    return gpus


def _read_device(pynvml, index: int) -> GpuInfo:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = _optional(pynvml.nvmlDeviceGetMemoryInfo, handle)
    utilization = _optional(pynvml.nvmlDeviceGetUtilizationRates, handle)
    power_mw = _optional(pynvml.nvmlDeviceGetPowerUsage, handle)
    name = pynvml.nvmlDeviceGetName(handle)
    uuid = pynvml.nvmlDeviceGetUUID(handle)
    return GpuInfo(
        index=index,
        name=name.decode() if isinstance(name, bytes) else name,
        uuid=uuid.decode() if isinstance(uuid, bytes) else uuid,
        memory_used_bytes=None if memory is None else int(memory.used),
        memory_total_bytes=None if memory is None else int(memory.total),
        utilization_pct=None if utilization is None else float(utilization.gpu),
        power_w=None if power_mw is None else power_mw / 1000.0,
        processes=_processes(pynvml, handle),
    )


# ---- listing -----------------------------------------------------------------------------------------


def attach_runs(
    gpus: Sequence[GpuInfo],
    run_by_pid: Mapping[int, str],
    group_of: Callable[[int], int | None] | None = None,
) -> list[GpuInfo]:
    """Label each GPU process with the arctui run it belongs to.

    A process matches when its pid is in ``run_by_pid``, or when ``group_of(pid)`` (its process group)
    is: the supervisor starts each run in its own process group and knows the group id, while the
    processes that hold GPU memory are accelerate's workers. Pure given ``group_of``.
    """
    labelled = []
    for gpu in gpus:
        procs = []
        for proc in gpu.processes:
            name = run_by_pid.get(proc.pid)
            if name is None and group_of is not None:
                group = group_of(proc.pid)
                name = None if group is None else run_by_pid.get(group)
            procs.append(replace(proc, run_name=name))
        labelled.append(replace(gpu, processes=tuple(procs)))
    return labelled


def process_group_of(pid: int) -> int | None:
    """The process group of ``pid`` in this pid namespace, None when it is not visible here."""
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def list_gpus(
    run_by_pid: Mapping[int, str] | None = None,
    *,
    read: GpuReader = read_nvml,
    group_of: Callable[[int], int | None] | None = process_group_of,
) -> list[GpuInfo]:
    """Every GPU with memory, utilization, power and processes; NoGpuError without NVML.

    ``run_by_pid`` maps pids (or process-group ids) of arctui runs to run names; matching processes get
    ``run_name`` set. NVML reports host pids, so inside a container with its own pid namespace only
    the runs started in that namespace can be matched.
    """
    gpus = read(None)
    return attach_runs(gpus, run_by_pid, group_of) if run_by_pid else gpus


def available_gpu_count(read: GpuReader = read_nvml) -> int:
    """How many GPUs NVML sees; 0 without a driver."""
    try:
        return len(read(None))
    except NoGpuError:
        return 0


# ---- --gpus parsing ------------------------------------------------------------------------------------


def parse_gpu_selection(spec: str, available: int | None) -> list[int] | Literal["cpu", "auto"]:
    """Parse a ``--gpus`` value: ``"0,1"`` (indices), ``"auto"`` (queue for free GPUs) or ``"cpu"``.

    ``available`` is how many GPUs the machine has (``None``: unknown, indices are not checked).
    """
    text = str(spec).strip().lower()
    if text in ("cpu", "auto"):
        return text  # type: ignore[return-value]
    if not text:
        raise UserError("--gpus is empty; give GPU indices such as 0,1, or auto, or cpu")
    indices: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise UserError(f"--gpus: {part!r} is not a GPU index; give indices such as 0,1, or auto, or cpu")
        index = int(part)
        if index in indices:
            raise UserError(f"--gpus: GPU {index} is listed twice; list each GPU once")
        indices.append(index)
    if available is not None:
        missing = [i for i in indices if i >= available]
        if missing and available == 0:
            raise UserError(
                f"--gpus: GPU {missing[0]} does not exist: this machine has no NVIDIA GPU; use --gpus cpu"
            )
        if missing:
            valid = ", ".join(str(i) for i in range(available))
            raise UserError(f"--gpus: GPU {missing[0]} does not exist; valid indices: {valid}")
    return indices


# ---- sampling --------------------------------------------------------------------------------------------


class GpuSampler:
    """Samples the given GPUs every ``interval_s`` seconds in a daemon thread, or on demand.

    ``start()`` runs the thread, which passes each round's ``GpuSample`` list to ``callback``.
    ``sample()`` takes one reading in the caller's thread. Without NVML the thread logs one line and
    ends (``available`` becomes False); a GPU that stops answering is left out of that round.
    """

    def __init__(
        self,
        indices: Sequence[int],
        interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
        callback: Callable[[list[GpuSample]], None] | None = None,
        *,
        read: GpuReader = read_nvml,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.indices = list(indices)
        self.interval_s = interval_s
        self.callback = callback
        self.available = True
        self.rounds = 0
        self._read = read
        self._log = log or (lambda line: None)
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._callback_failing = False

    def sample(self) -> list[GpuSample]:
        """One reading of this sampler's GPUs (NoGpuError without NVML)."""
        gpus = self._read(self.indices)
        at = self._clock()
        return [gpu.to_sample(at) for gpu in gpus]

    def start(self) -> GpuSampler:
        if self._thread is not None:
            raise RuntimeError("GpuSampler.start() called twice")
        self._thread = threading.Thread(target=self._loop, name="GpuSampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                samples = self.sample()
            except NoGpuError as exc:
                self.available = False
                self._log(f"GPU sampling off: {exc}")
                return
            self.rounds += 1
            if samples and self.callback is not None:
                try:
                    self.callback(samples)
                    self._callback_failing = False
                except Exception as exc:  # a failing consumer must not end sampling; say so once per streak
                    if not self._callback_failing:
                        self._log(f"GPU sample callback failed: {type(exc).__name__}: {exc}")
                    self._callback_failing = True
            self._stop.wait(self.interval_s)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Ask the thread to end and wait for it (it wakes at once from its interval wait)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> GpuSampler:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
