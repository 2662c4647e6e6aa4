"""Ingest benchmark: metric points per second through ``RunStore.append_metrics`` on SQLite, with two
writer processes and a reader process running at once, against raw ``sqlite3`` ``executemany`` doing
the same work in the same run (same machine, same moment, same concurrency).

    .venv/bin/python bench/store_ingest.py                    # 2 x 200k points, batches of 2000
    .venv/bin/python bench/store_ingest.py --points 50000 --batch 500

The reader refreshes like the TUI does, READS_PER_SECOND times a second (list of runs, one summary,
one downsampled loss series); the raw reader runs the same queries at the same pace. Prints points/s
for both, their ratio, how many reads the reader completed and how many lock errors anyone saw. Exits 1 when the store is under --target points/s or any lock error happened.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

READS_PER_SECOND = 10
# seconds_per_step makes every batch move the summary's median (db.summary; docs/store.md "Summaries").
KEYS = ("loss", "learning_rate", "grad_norm", "seconds_per_step", "tokens_per_second")


def make_batches(writer: int, points: int, batch: int) -> list[list[tuple]]:
    """``points`` points spread over KEYS, as consecutive steps; values differ per writer."""
    rows = []
    for i in range(points):
        step, key = divmod(i, len(KEYS))
        rows.append((KEYS[key], step, 1.0 / (step + 1 + writer), 1_700_000_000.0 + step))
    return [rows[i : i + batch] for i in range(0, len(rows), batch)]


# ---------------------------------------------------------------------------------------- baseline


RAW_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE IF NOT EXISTS metric_points (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, key TEXT NOT NULL, step INTEGER NOT NULL,
    value REAL NOT NULL, wall_time REAL, UNIQUE (run_id, key, step));
"""


def raw_connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA busy_timeout = 30000")
    return connection


def raw_writer(path, writer, points, batch, start, results):
    connection = raw_connect(path)
    batches = [[(writer, k, s, v, w) for k, s, v, w in b] for b in make_batches(writer, points, batch)]
    errors = 0
    start.wait()
    t0, cpu = time.perf_counter(), time.process_time()
    for rows in batches:
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "INSERT INTO metric_points (run_id, key, step, value, wall_time) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                rows,
            )
            connection.execute("COMMIT")
        except sqlite3.OperationalError:
            errors += 1
            connection.execute("ROLLBACK")
    results.put(("writer", time.perf_counter() - t0, errors, 0, time.process_time() - cpu))


def raw_reader(path, start, stop, results):
    connection = raw_connect(path)
    reads = errors = 0
    start.wait()
    while not stop.wait(1 / READS_PER_SECOND):
        try:
            connection.execute("BEGIN")
            connection.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 50").fetchall()
            connection.execute("SELECT COUNT(*) FROM metric_points WHERE run_id = 1").fetchall()
            connection.execute(
                "SELECT step, value FROM metric_points WHERE run_id = 1 AND key = 'loss' ORDER BY step"
            ).fetchall()
            connection.execute("COMMIT")
            reads += 1
        except sqlite3.OperationalError:
            errors += 1
    results.put(("reader", 0.0, errors, reads, 0.0))


# ------------------------------------------------------------------------------------------- store


def store_writer(url, writer, points, batch, start, results):
    from db.errors import StoreError
    from db.store import RunStore

    store = RunStore.open(url)
    run_id = store.get_run(f"writer-{writer}").id
    batches = make_batches(writer, points, batch)
    errors = 0
    start.wait()
    t0, cpu = time.perf_counter(), time.process_time()
    for rows in batches:
        try:
            store.append_metrics(run_id, rows)
        except StoreError as exc:
            errors += 1
            print(f"writer {writer}: {exc}", file=sys.stderr)
    results.put(("writer", time.perf_counter() - t0, errors, 0, time.process_time() - cpu))
    store.close()


def store_reader(url, start, stop, results):
    from db.errors import StoreError
    from db.store import RunStore

    store = RunStore.open(url)
    reads = errors = 0
    start.wait()
    while not stop.wait(1 / READS_PER_SECOND):
        try:
            store.list_runs(limit=50)
            store.get_summary("writer-1")
            store.metric_series("writer-1", "loss", max_points=500)
            reads += 1
        except StoreError as exc:
            errors += 1
            print(f"reader: {exc}", file=sys.stderr)
    results.put(("reader", 0.0, errors, reads, 0.0))
    store.close()


# --------------------------------------------------------------------------------------------- run


def run_case(name, writer_fn, writer_args, reader_fn, reader_args, writers=2) -> dict:
    context = mp.get_context("spawn")
    start, stop, results = context.Event(), context.Event(), context.Queue()
    procs = [context.Process(target=writer_fn, args=(*writer_args(w), start, results)) for w in (1, 2)[:writers]]
    reader = context.Process(target=reader_fn, args=(*reader_args, start, stop, results))
    for p in [*procs, reader]:
        p.start()
    time.sleep(1.0)  # let every process import and open its connection before the clock starts
    t0 = time.perf_counter()
    start.set()
    out = [results.get() for _ in procs]
    wall = time.perf_counter() - t0
    stop.set()
    out.append(results.get())
    for p in [*procs, reader]:
        p.join()
    return {
        "name": name,
        "wall": wall,
        "errors": sum(o[2] for o in out),
        "reads": sum(o[3] for o in out),
        "cpu": sum(o[4] for o in out),
    }


def fresh_databases(folder: str, round_no: int) -> tuple[str, str]:
    """A new raw sqlite3 file and a new store for one round (each round starts from empty tables)."""
    from db.store import RunStore

    raw_path = os.path.join(folder, f"raw-{round_no}.db")
    connection = raw_connect(raw_path)
    connection.executescript(RAW_SCHEMA)
    connection.execute("INSERT INTO runs (id, name) VALUES (1, 'writer-1'), (2, 'writer-2')")
    connection.close()
    url = f"sqlite:///{os.path.join(folder, f'store-{round_no}.db')}"
    with RunStore.open(url) as store:
        for w in (1, 2):
            store.create_run({"max_seq_len": 2048}, name=f"writer-{w}")
    return raw_path, url


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=200_000, help="points per writer")
    parser.add_argument("--batch", type=int, default=2000, help="points per append_metrics call")
    parser.add_argument("--rounds", type=int, default=2, help="alternating raw/store rounds; the best of each counts")
    parser.add_argument("--target", type=float, default=100_000, help="points/s the store must reach")
    args = parser.parse_args(argv)

    from db.store import RunStore

    total = 2 * args.points
    cases: dict[str, list[dict]] = {"raw": [], "store": []}
    stored_ok = True
    with tempfile.TemporaryDirectory() as folder:
        for round_no in range(args.rounds):
            raw_path, url = fresh_databases(folder, round_no)
            raw_case = (
                "raw sqlite3 executemany", raw_writer, lambda w, p=raw_path: (p, w, args.points, args.batch),
                raw_reader, (raw_path,),
            )  # fmt: skip
            store_case = (
                "RunStore.append_metrics", store_writer, lambda w, u=url: (u, w, args.points, args.batch),
                store_reader, (url,),
            )  # fmt: skip
            # Alternate the order so that a change in the machine's load does not favour one side.
            order = [("raw", raw_case), ("store", store_case)]
            for name, case in order if round_no % 2 == 0 else order[::-1]:
                cases[name].append(run_case(*case))
            with RunStore.open(url) as store:
                stored_ok &= sum(store.get_summary(f"writer-{w}").points for w in (1, 2)) == total

    print(
        f"ingest: 2 writer processes x {args.points} points in batches of {args.batch}, 1 reader process "
        f"({READS_PER_SECOND} reads/s), best of {args.rounds} alternating rounds"
    )
    best = {}
    for name, runs in cases.items():
        for case in runs:
            case["rate"], case["cpu_rate"] = total / case["wall"], total / case["cpu"]
        case = best[name] = max(runs, key=lambda c: c["rate"])
        print(
            f"  {case['name']:<26} {case['rate']:>10,.0f} points/s   {case['wall']:6.2f} s wall   "
            f"{case['cpu_rate']:>10,.0f} points per writer CPU second   reader loops {case['reads']:>4}   "
            f"lock errors {sum(c['errors'] for c in runs)} (all rounds)   "
            f"rounds: {', '.join(format(c['rate'], ',.0f') for c in runs)}"
        )
    raw, ours = best["raw"], best["store"]
    print(
        f"  ratio store/raw: {ours['rate'] / raw['rate']:.2f} (wall)   {ours['cpu_rate'] / raw['cpu_rate']:.2f} "
        f"(writer CPU)   every point stored once: {stored_ok}"
    )
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        print(f"  note: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: wall-clock rates are noisy")
    errors = sum(c["errors"] for c in cases["store"])
    ok = ours["rate"] >= args.target and errors == 0 and stored_ok
    print(f"  target >= {args.target:,.0f} points/s with zero lock errors: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
