"""Start-up latency of the history commands against a bare interpreter, measured in the same run.

    .venv/bin/python bench/cli_latency.py [--runs 1000]

Fills a temporary SQLite store with N finished runs through the store's public API, then times
(median of 5) `python -c pass`, `python -c "import sqlalchemy"`, `arctui --help`, `arctui runs`,
`arctui runs --limit 0 --format json` and `arctui compare 1 2 3 --format markdown`, and prints each
command's ratio to the bare interpreter. Target: `arctui runs` well under a second (no torch import).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def step_events(seconds_per_step: float, steps: int = 20) -> list[dict]:
    start = {"seq": 1, "time": 0.0, "event": "start", "max_steps": steps, "start_step": 0}
    return [start] + [
        {"seq": i + 1, "time": float(i), "event": "step", "step": i, "max_steps": steps,
         "loss": 2.0 / i, "seconds_per_step": seconds_per_step, "tokens_per_second": 4000.0}
        for i in range(1, steps + 1)
    ]


def median_seconds(cmd: list[str], repeats: int = 5) -> float:
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=REPO_ROOT)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="arctui-bench-"))
    os.environ["ARCTUI_HOME"] = str(home)
    from db.store import RunStore

    url = f"sqlite:///{home / 'arctui.db'}"
    with RunStore.open(url) as store:
        for i in range(args.runs):
            run = store.create_run({"name": f"r{i}", "max_seq_len": 2048, "gpus": "cpu"}, name=f"r{i}")
            store.set_status(run.id, "running")
            store.ingest_events(run.id, step_events(1.0 + i % 7))
            store.set_status(run.id, "completed", exit_code=0)
    arctui = [sys.executable, "-m", "arctui", "--db", url]
    bare = median_seconds([sys.executable, "-c", "pass"])
    rows = [
        ("python -c 'import sqlalchemy'", [sys.executable, "-c", "import sqlalchemy"]),
        ("arctui --help", [*arctui, "--help"]),
        (f"arctui runs ({args.runs} runs, default limit)", [*arctui, "runs"]),
        (f"arctui runs --limit 0 --format json ({args.runs} runs)", [*arctui, "runs", "--limit", "0", "--format", "json"]),
        ("arctui compare 1 2 3 --format markdown", [*arctui, "compare", "1", "2", "3", "--format", "markdown"]),
    ]
    print(f"bare interpreter (python -c pass): {bare * 1000:.0f} ms   load average {os.getloadavg()[0]:.1f}")
    runs_seconds = None
    for label, cmd in rows:
        seconds = median_seconds(cmd)
        if label.startswith("arctui runs ("):
            runs_seconds = seconds
        print(f"  {label:<48} {seconds * 1000:7.0f} ms   {seconds / bare:5.1f}x the bare interpreter")
    met = runs_seconds is not None and runs_seconds < 1.0
    print(f"target: arctui runs under 1 s: {'met' if met else 'missed'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
