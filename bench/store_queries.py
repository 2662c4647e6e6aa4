"""Query benchmark on SQLite: listing 10,000 runs with their summaries, and one run's 100k-point metric
series downsampled to 2,000 points, each against raw ``sqlite3`` fetching the same rows in the same run.

    .venv/bin/python bench/store_queries.py
    .venv/bin/python bench/store_queries.py --runs 20000 --points 200000

The runs table is filled with plain INSERTs (10,000 ``create_run`` calls would only slow the setup);
the 100k points go through ``append_metrics``. Each figure is the median of --repeat timings.
Exits 1 when a target (--list-ms, --series-ms) is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("/models/SmolLM-135M-Instruct", "/models/SmolLM2-135M-Instruct", "/models/Qwen2-0.5B-Instruct")
STATUSES = ("completed", "failed", "stopped", "crashed", "completed", "completed")


def seed_config(i: int, rng: random.Random) -> dict:
    return {
        "name": f"run-{i}", "model_path": rng.choice(MODELS), "adapter_path": None,
        "train_datasets": [["data/train_rs7.json", "output-from-examples-v1"]],
        "val_dataset": ["data/val_rs7.json", "output-from-examples-v1"],
        "grid_encoder": "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))",
        "max_seq_len": rng.choice((1024, 2048, 4096, 8192, 10240)), "max_steps": 100, "logging_steps": 10,
        "eval_steps": 50, "save_steps": 50, "batch_size": 16, "per_device_train_batch_size": rng.choice((1, 2)),
        "n_gpus": rng.choice((1, 2)), "device_map": "None", "learning_rate": rng.choice((1e-4, 2e-4, 5e-5)),
        "lr_scheduler_type": "linear", "warmup_ratio": 0.05, "lora_r": rng.choice((16, 32, 64)), "lora_alpha": 64,
        "lora_dropout": 0.1, "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"], "use_lora": True,
        "gradient_checkpointing": False, "torch_dtype": "bfloat16", "random_seed": 7,
        "remove_train_samples_to_fit_max_seq_len": False, "verbose": True, "report_to": "none",
        "gpus": "auto", "tags": ["baseline"] if i % 10 == 0 else [], "notes": "",
    }  # fmt: skip


def fill_runs(path: str, n: int) -> None:
    rng = random.Random(7)
    now = time.time()
    rows = []
    for i in range(1, n + 1):
        config = seed_config(i, rng)
        s_per_step = rng.uniform(1.5, 9.0)
        rows.append(
            (
                f"run-{i}", rng.choice(STATUSES), json.dumps(config), config["model_path"], config["grid_encoder"],
                config["max_seq_len"], 16, config["per_device_train_batch_size"], config["learning_rate"],
                config["lora_r"], config["n_gpus"], "[0]", json.dumps(["data/train_rs7.json", "data/val_rs7.json"]),
                json.dumps(config["tags"]), "", "gpu-box", now - (n - i) * 60.0, now - (n - i) * 60.0 + 5,
                now - (n - i) * 60.0 + 400, 100, 100, rng.uniform(0.05, 0.5), 0.04, 0.1, 0.2, 0.1,
                s_per_step, 1500.0, rng.uniform(6, 21), 70, now, 12,
            )
        )  # fmt: skip
    connection = sqlite3.connect(path)
    with connection:
        connection.executemany(
            "INSERT INTO runs (name, status, config_json, model, encoder, msl, batch_size, per_device_batch, "
            "learning_rate, lora_r, gpus, gpu_ids, datasets, tags, notes, host, created_at, started_at, ended_at, "
            "last_step, max_steps, loss, min_loss, final_loss, eval_loss, accuracy, seconds_per_step, "
            "tokens_per_second, peak_vram_gb, points, updated_at, events_cursor) "
            "VALUES (" + ", ".join("?" * 32) + ")",
            rows,
        )
    connection.close()


def timed(fn, repeat: int) -> tuple[float, float]:
    """Median wall time and median CPU time of ``fn`` in milliseconds. On a shared, loaded machine the
    CPU time is the steadier figure: it is what the call costs, whoever else wants the cores."""
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpus.append((time.process_time() - c0) * 1000)
        walls.append((time.perf_counter() - w0) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--max-points", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--list-ms", type=float, default=300.0, help="target for listing all runs")
    parser.add_argument("--series-ms", type=float, default=100.0, help="target for the downsampled series")
    args = parser.parse_args(argv)

    from db.store import RunStore

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "arctui.db")
        url = f"sqlite:///{path}"
        RunStore.open(url).close()
        fill_runs(path, args.runs)
        with RunStore.open(url) as store:
            run = store.create_run({"max_seq_len": 2048}, name="long-run")
            rng = random.Random(1)
            for start in range(0, args.points, 5000):
                store.append_metrics(
                    run.id, [("loss", s, 2.0 / (1 + s / 1000) + rng.random() * 0.1, 1.7e9 + s)
                             for s in range(start, min(start + 5000, args.points))]
                )  # fmt: skip
            raw = sqlite3.connect(path)

            def raw_list():
                raw.execute("SELECT * FROM runs ORDER BY created_at DESC").fetchall()

            def raw_series():
                raw.execute(
                    "SELECT step, value, wall_time FROM metric_points WHERE run_id = ? AND key = 'loss' ORDER BY step",
                    (run.id,),
                ).fetchall()

            where = "model~SmolLM and msl>=2048 and status=completed"
            results = {
                "list all": (timed(lambda: store.list_runs(), args.repeat), timed(raw_list, args.repeat)),
                "list where+sort": (
                    timed(lambda: store.list_runs(where, sort="s_per_step", descending=False), args.repeat),
                    timed(raw_list, args.repeat),
                ),
                "series": (
                    timed(lambda: store.metric_series(run.id, "loss", args.max_points), args.repeat),
                    timed(raw_series, args.repeat),
                ),
            }
            listed = len(store.list_runs())
            series_len = len(store.metric_series(run.id, "loss", args.max_points))
            raw.close()

    print(f"queries on SQLite: {args.runs} runs, one series of {args.points} points (median of {args.repeat})")
    labels = {
        "list all": f"list_runs() -> {listed} summaries",
        "list where+sort": f"list_runs('{where}', sort=s_per_step)",
        "series": f"metric_series(..., max_points={args.max_points}) -> {series_len} points",
    }
    for name, ((ours, ours_cpu), (base, base_cpu)) in results.items():
        print(
            f"  {labels[name]}\n      store {ours:7.1f} ms wall {ours_cpu:7.1f} ms CPU   raw sqlite3 fetch of the same "
            f"rows {base:7.1f} ms wall {base_cpu:7.1f} ms CPU   ratio {ours / base:4.2f} wall {ours_cpu / base_cpu:4.2f} CPU"
        )
    ok = results["list all"][0][0] < args.list_ms and results["series"][0][0] < args.series_ms
    print(
        f"  targets: list < {args.list_ms:.0f} ms, series < {args.series_ms:.0f} ms: {'met' if ok else 'NOT met'}"
        f"   (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
