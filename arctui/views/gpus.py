"""GPU readings for the screens: the latest samples the store keeps for a run, and every NVIDIA GPU now
with the arctui run that holds it (read in a thread worker; NVML through the supervisor's reader)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuReading:
    """One GPU as last sampled: memory, utilization and the run that holds it (if any)."""

    index: int
    name: str
    memory_used_gb: float | None
    memory_total_gb: float | None
    utilization: float | None  # percent 0..100
    run_id: str | None = None
    run_name: str | None = None


def gpu_from_sample(sample, run_names: dict[int, str] | None = None) -> GpuReading:
    """A store ``GpuSample`` as a :class:`GpuReading` (``run_names``: run id -> name of the holder)."""
    run_names = run_names or {}
    return GpuReading(
        index=sample.gpu_index,
        name=sample.gpu_name,
        memory_used_gb=None if sample.memory_used_mb is None else sample.memory_used_mb / 1024,
        memory_total_gb=None if sample.memory_total_mb is None else sample.memory_total_mb / 1024,
        utilization=sample.utilization_pct,
        run_id=None if sample.run_id is None else str(sample.run_id),
        run_name=run_names.get(sample.run_id),
    )


def read_gpus(store=None, read=None) -> tuple[list[GpuReading], str | None]:
    """Every NVIDIA GPU now, with the arctui run holding it; ``([], reason)`` without a driver.

    ``read`` is the supervisor's NVML reader (``arctui.supervisor.gpus.read_nvml`` by default)."""
    from arctui.supervisor.gpus import list_gpus

    try:
        gpus = list_gpus(read=read) if read is not None else list_gpus()
    except Exception as error:  # NVML missing or broken: the app shows the reason, never crashes
        return [], str(error)
    if not gpus:
        return [], "no NVIDIA GPU or driver found; runs go on the CPU"
    holders: dict[int, tuple[str, str]] = {}
    if store is not None:
        for run in store.runs_holding_gpus():
            for index in run.gpu_ids:
                holders[index] = (str(run.id), run.name)
    readings = []
    for gpu in gpus:
        used = gpu.memory_used_mb
        total = gpu.memory_total_mb
        holder = holders.get(gpu.index)
        readings.append(
            GpuReading(
                index=gpu.index,
                name=gpu.name,
                memory_used_gb=None if used is None else used / 1024,
                memory_total_gb=None if total is None else total / 1024,
                utilization=gpu.utilization_pct,
                run_id=holder[0] if holder else None,
                run_name=holder[1] if holder else None,
            )
        )
    return readings, None
