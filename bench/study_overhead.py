"""A study's scheduling overhead: a study of N tiny runs against the same N runs launched back to back.

    .venv/bin/python bench/study_overhead.py [--runs 10] [--steps 2] [--max-parallel 2] [--order loop-first]

In one temporary ``ARCTUI_HOME`` (one SQLite store), with the tiny random Llama (``tiny:random-llama``,
built once into ``$ARCTUI_MODELS``) on a few synthetic tasks, on CPU, no evaluation set:

- **study**: ``arctui study launch FILE --max-parallel P`` (foreground; it exits when every run ended)
  with N variants that differ only by ``random_seed`` (1..N), ``--steps`` optimizer steps each;
- **loop**: the same N configs by a shell loop, one ``arctui launch CONFIG --set random_seed=I`` after
  the other (each waits for its run to end).

Printed: each side's total wall time (command start to command exit), their ratio study/loop (target
<= 1.05x), and the gap between one run ending and the next starting, from the store's ``ended_at`` and
``started_at`` (target < 2 s at the median). For the loop the gap is run i+1's start minus run i's end.
For the study, for every run end after which a waiting run was started, the time from that end to the
first start at or after it (a run freeing its slot to the next run taking it). A run is ``started``
when its supervisor marks it running (after spawning the runner), and ``ended`` when its supervisor
records the end (after the runner exited); the gap is the scheduler and supervisor latency, not the
runner's start-up (imports, model load), which both sides pay for every run alike.

With ``--max-parallel 2`` on a 2-core machine the study's two runs share the cores, so its total is
not expected to halve; the target is that it costs no more than the loop. ``--json`` prints the figures
as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def base_config(data: Path, steps: int) -> dict:
    from runner.synthetic import make_tasks, write_tasks

    train = write_tasks(data / "train.json", make_tasks(16, seed=0, max_size=3))
    return {
        "name": "overhead",
        "model_path": "tiny:random-llama",
        "gpus": "cpu",
        "train_datasets": [[str(train), "output-from-examples-v1"]],
        "max_seq_len": 1024,
        "max_steps": steps,
        "logging_steps": 1,
        "save_steps": steps,
        "batch_size": 2,
        "per_device_train_batch_size": 1,
        "learning_rate": 1e-3,
        "lora_r": 4,
        "random_seed": 1,
    }


def timed(cmd: list[str], env: dict, log: Path) -> tuple[float, int]:
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    return time.perf_counter() - started, code


def runs_of(env: dict, names: set[str] | None = None, study: str | None = None):
    from db.store import RunStore

    store = RunStore.open(env["ARCTUI_DB"])
    try:
        if study is not None:
            return [s.run for s in store.study_runs(study)]
        return [s.run for s in store.list_runs() if s.run.name in names]
    finally:
        store.close()


def loop_gaps(runs) -> list[float]:
    runs = sorted(runs, key=lambda r: r.started_at)
    return [(b.started_at - a.ended_at).total_seconds() for a, b in zip(runs, runs[1:], strict=False)]


def study_gaps(runs) -> list[float]:
    """For each run end followed by a later start: the time to the first start at or after it."""
    starts = sorted(r.started_at for r in runs)
    gaps = []
    for end in sorted(r.ended_at for r in runs):
        later = [s for s in starts if s >= end]
        if later:
            gaps.append((later[0] - end).total_seconds())
            starts.remove(later[0])  # one freed slot, one start
    return gaps


def summary(gaps: list[float]) -> str:
    if not gaps:
        return "n/a"
    return f"median {statistics.median(gaps):.2f} s, max {max(gaps):.2f} s ({len(gaps)} gaps)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--max-parallel", type=int, default=2)
    parser.add_argument("--order", choices=["loop-first", "study-first"], default="loop-first")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="study_overhead_") as tmp:
        tmp = Path(tmp)
        home = tmp / "home"
        env = dict(os.environ, ARCTUI_HOME=str(home), ARCTUI_DB=f"sqlite:///{home / 'arctui.db'}",
                   PYTHONPATH=str(REPO))
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        home.mkdir()
        # Build the tiny model (once per $ARCTUI_MODELS) before timing anything.
        from arctui.supervisor.resolve import resolve_model

        resolve_model("tiny:random-llama")

        import yaml

        config = base_config(tmp / "data", args.steps)
        config_file = tmp / "overhead.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        study_file = tmp / "overhead-study.yaml"
        study_file.write_text(yaml.safe_dump({
            "name": "overhead",
            "base": str(config_file),
            "variants": [{"name": f"s{i:02d}", "random_seed": i} for i in range(1, args.runs + 1)],
        }, sort_keys=False))

        arctui = f"{shlex.quote(sys.executable)} -m arctui"
        loop = "; ".join(
            f"{arctui} launch {shlex.quote(str(config_file))} --name loop-{i:02d} --set random_seed={i}"
            for i in range(1, args.runs + 1)
        )
        sides = {
            "loop": ["bash", "-c", loop],
            "study": [sys.executable, "-m", "arctui", "study", "launch", str(study_file),
                      "--max-parallel", str(args.max_parallel)],
        }
        order = ["loop", "study"] if args.order == "loop-first" else ["study", "loop"]
        totals, codes = {}, {}
        for side in order:
            totals[side], codes[side] = timed(sides[side], env, tmp / f"{side}.log")
            if codes[side] != 0:
                print(f"{side} exited {codes[side]}; its output:\n{(tmp / f'{side}.log').read_text()[-3000:]}",
                      file=sys.stderr)
                return 1

        study_runs = runs_of(env, study="overhead")
        loop_runs = runs_of(env, names={f"loop-{i:02d}" for i in range(1, args.runs + 1)})
        for side, runs in (("study", study_runs), ("loop", loop_runs)):
            bad = [r.name for r in runs if r.status != "completed"]
            if len(runs) != args.runs or bad:
                print(f"{side}: {len(runs)} runs, not completed: {bad}", file=sys.stderr)
                return 1
        gaps = {"study": study_gaps(study_runs), "loop": loop_gaps(loop_runs)}
        run_seconds = {side: statistics.median((r.ended_at - r.started_at).total_seconds() for r in runs)
                       for side, runs in (("study", study_runs), ("loop", loop_runs))}

    ratio = totals["study"] / totals["loop"]
    figures = {
        "runs": args.runs, "steps": args.steps, "max_parallel": args.max_parallel, "order": order,
        "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "study_total_s": totals["study"], "loop_total_s": totals["loop"], "ratio": ratio,
        "study_gap_median_s": statistics.median(gaps["study"]) if gaps["study"] else None,
        "loop_gap_median_s": statistics.median(gaps["loop"]) if gaps["loop"] else None,
        "study_gaps_s": gaps["study"], "loop_gaps_s": gaps["loop"],
        "run_seconds_median": run_seconds,
    }
    if args.json:
        print(json.dumps(figures, indent=2, default=str))
        return 0
    print(f"{args.runs} tiny runs x {args.steps} steps, study --max-parallel {args.max_parallel}, "
          f"{os.cpu_count()} CPUs, load average at the end {figures['load_average'][0]:.2f} (1 min), order {order}")
    print(f"study total {totals['study']:.1f} s   (run wall time, median {run_seconds['study']:.1f} s)")
    print(f"loop total  {totals['loop']:.1f} s   (run wall time, median {run_seconds['loop']:.1f} s)")
    print(f"ratio study/loop {ratio:.3f}x   (target <= 1.05x: {'met' if ratio <= 1.05 else 'NOT met'})")
    study_median = figures["study_gap_median_s"]
    met = study_median is not None and study_median < 2
    print(f"gap end -> next start, study: {summary(gaps['study'])}   (target < 2 s: {'met' if met else 'NOT met'})")
    print(f"gap end -> next start, loop:  {summary(gaps['loop'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
