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
        # NVML's own words, without the CLI's advice (--gpus cpu): the screens say what happens instead
        reason = getattr(error, "reason", None)
        return [], f"no NVIDIA GPU/driver found ({reason})" if reason else str(error)
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


# -- the Slurm cluster (``arctui gpus --executor slurm``) ----------------------------------------------

def _gpu_count(gres: str) -> int:
    """GPUs in a Slurm GRES string: ``gpu:h100:8(S:0-1),shard:4`` -> 8."""
    import re

    return sum(int(n) for n in re.findall(r"gpu(?::[^:,(]+)?:(\d+)", gres or ""))


def read_cluster(store) -> dict:
    """Partitions and nodes with CPUs and GPUs idle and allocated, and arctui's jobs in Slurm's queue with
    the run each belongs to (``run``: id and name, from the store's job ids). Raises a one-line
    UserError when Slurm's commands are missing or do not answer."""
    from arctui.supervisor import slurm

    if not slurm.available():
        from runner.errors import UserError

        raise UserError("Slurm's commands (sinfo, squeue) are not on PATH; run this on a Slurm submit host")
    nodes = []
    for node in slurm.cluster_nodes():
        alloc, idle, _other, total = (node.cpus.split("/") + ["0"] * 4)[:4]
        gpus, used = _gpu_count(node.gres), _gpu_count(node.gres_used)
        nodes.append({"partition": node.partition, "node": node.name, "state": node.state,
                      "cpus_allocated": int(alloc or 0), "cpus_idle": int(idle or 0), "cpus": int(total or 0),
                      "gpus": gpus, "gpus_allocated": used, "gpus_idle": max(0, gpus - used)})
    runs = {r.job_id: r for r in store.active_runs() if r.job_id}
    jobs = []
    for job in slurm.arctui_jobs():
        run = runs.get(job["job_id"])
        jobs.append({**job, "run": f"{run.id} {run.name}" if run else None})
    return {"nodes": nodes, "jobs": jobs}


def cluster_text(cluster: dict) -> str:
    """``read_cluster`` as two tables: nodes per partition, then arctui's jobs."""
    from arctui.views.tables import text_table

    nodes = text_table(
        ["PARTITION", "NODE", "STATE", "CPUS ALLOC/IDLE/TOTAL", "GPUS ALLOC/IDLE/TOTAL"],
        [[n["partition"], n["node"], n["state"], f"{n['cpus_allocated']}/{n['cpus_idle']}/{n['cpus']}",
          f"{n['gpus_allocated']}/{n['gpus_idle']}/{n['gpus']}"] for n in cluster["nodes"]])
    if not cluster["jobs"]:
        return nodes + "\n\nno arctui jobs in Slurm's queue"
    jobs = text_table(
        ["JOB", "RUN", "STATE", "REASON", "NODES", "TIME", "PARTITION"],
        [[j["job_id"], j["run"] or j["name"], j["state"], j["reason"], j["nodes"] or "-", j["elapsed"], j["partition"]]
         for j in cluster["jobs"]])
    return nodes + "\n\n" + jobs
