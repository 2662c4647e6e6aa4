"""``arctui gpus``: every NVIDIA GPU with memory, utilization, power and the arctui run that holds it.

    arctui gpus
    arctui gpus --format json
    arctui gpus --executor slurm            # partitions, nodes, GPUs idle/allocated, arctui's jobs

Without an NVIDIA driver it says so in one line and exits 0: that is information, not an error.
Never imports torch.
"""

from __future__ import annotations

import json
import sys

FORMATS = ("table", "json")


def register(subparsers) -> None:
    """Add ``arctui gpus`` to the arctui parser."""
    p = subparsers.add_parser(
        "gpus",
        help="list GPUs: memory, utilization, power, which run holds each",
        description="List NVIDIA GPUs (NVML) with memory, utilization, power and the arctui run on each.",
    )
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="slurm: the cluster's partitions, nodes, GPUs idle and allocated, and arctui's jobs")
    p.set_defaults(func=gpus_command)


def runs_on_gpus(db_url: str | None) -> tuple[dict[int, str], dict[int, list[str]]]:
    """From the store: process-group id -> run name, and GPU index -> runs that hold it."""
    from arctui.supervisor import open_store

    with open_store(db_url, recover=False) as store:
        runs = store.runs_holding_gpus()
    by_pid = {run.pgid: run.name for run in runs if run.pgid}
    by_gpu: dict[int, list[str]] = {}
    for run in runs:
        for index in run.gpu_ids:
            by_gpu.setdefault(index, []).append(run.name)
    return by_pid, by_gpu


def gpus_command(args) -> int:
    from arctui.supervisor.gpus import NO_GPU_LINE, NoGpuError, list_gpus

    if args.executor == "slurm":
        return cluster_command(args)
    try:
        gpus = list_gpus()
    except NoGpuError as exc:
        if args.format == "json":
            print("[]")
            print(f"{NO_GPU_LINE} ({exc.reason})", file=sys.stderr)
        else:
            print(f"{NO_GPU_LINE} ({exc.reason})")
        return 0
    by_pid, by_gpu = runs_on_gpus(args.db)
    if by_pid:
        from arctui.supervisor.gpus import attach_runs, process_group_of

        gpus = attach_runs(gpus, by_pid, process_group_of)
    rows = []
    for gpu in gpus:
        row = gpu.to_dict()
        # The store knows which run was given the GPU even before its process allocates memory.
        row["held_by"] = list(dict.fromkeys(by_gpu.get(gpu.index, []) + list(gpu.held_by)))
        rows.append(row)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
    return 0


def cluster_command(args) -> int:
    """``arctui gpus --executor slurm``: the Slurm cluster as arctui sees it."""
    from arctui.supervisor import open_store
    from arctui.views.gpus import cluster_text, read_cluster

    with open_store(args.db, recover=False) as store:
        cluster = read_cluster(store)
    print(json.dumps(cluster, indent=2) if args.format == "json" else cluster_text(cluster))
    return 0


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.1f}"


def format_table(rows: list[dict]) -> str:
    """One line per GPU; processes as pid:MiB, named after their run when it is an arctui run."""
    table = [["GPU", "NAME", "MEMORY GiB", "UTIL", "POWER", "RUN", "PROCESSES"]]
    for row in rows:
        procs = []
        for proc in row["processes"]:
            mib = "?" if proc["used_memory_bytes"] is None else f"{proc['used_memory_bytes'] / 2**20:.0f}MiB"
            label = f"{proc['pid']}:{mib}"
            procs.append(f"{label}({proc['run_name']})" if proc["run_name"] else label)
        table.append(
            [
                str(row["index"]),
                row["name"],
                f"{_gib(row['memory_used_bytes'])}/{_gib(row['memory_total_bytes'])}",
                "-" if row["utilization_pct"] is None else f"{row['utilization_pct']:.0f}%",
                "-" if row["power_w"] is None else f"{row['power_w']:.0f}W",
                ", ".join(row["held_by"]) or "-",
                " ".join(procs) or "-",
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip() for r in table
    )
