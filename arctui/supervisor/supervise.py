"""The supervisor process: one per run, detached from any terminal.

    ARCTUI_DB=sqlite:///... python -m arctui.supervisor RUN_ID [--lock-fd FD]

It holds the run's lock (see :mod:`arctui.supervisor.runfolder`) for its whole life and, depending on
what it finds in the store:

- ``queued``: waits for GPUs when the config says ``gpus: auto`` (:mod:`arctui.supervisor.queue`),
  marks the run running, starts ``accelerate launch ... -m runner.fine_tuning`` in its own process
  session (``CUDA_VISIBLE_DEVICES``, ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, stdout/stderr to ``train.log``)
  and records its pid/process group;
- ``running`` with a live training process group (its previous supervisor died): re-attaches;
- then tails ``events.jsonl`` into the store (the store's cursor makes this exactly-once), samples
  the run's GPUs every few seconds, and when the process group is gone records the final status, exit
  code and last error lines, and exits;
- with ``eval_after_training: true`` and a completed training, first evaluates the final weights
  (``python -m runner.evaluate`` in its own process group, which becomes the run's pgid) and records
  the metrics with ``RunStore.record_eval``; the run stays ``running`` until then.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from arctui.supervisor.process import (
    describe_exit,
    free_port,
    group_alive,
    normalize_returncode,
    signal_group,
)
from arctui.supervisor.runfolder import RunFolder, tail_lines
from arctui.supervisor.tail import EventTailer, batches

POLL_SECONDS = 0.2  # event-to-store latency is at most about this plus one transaction
GPU_SAMPLE_SECONDS = 5.0
BATCH_EVENTS = 500
# Once the launcher has exited and the runner has written its `end` event, members left in the
# training process group (a stuck data worker, a child a user's code spawned) get this long to exit
# before the group is killed: a run must never stay "running" behind a process that does no work.
LINGER_AFTER_END_SECONDS = 30.0
# "fine_tuning: error: ..." (a UserError) or the last line of a Python traceback.
ERROR_LINE = re.compile(r"^(\w+: error: .+|[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*)$")
FINAL_STATUSES_FROM_RUNNER = ("completed", "stopped", "failed")


@dataclass
class StreamState:
    """What the event stream said about the current session (since its last ``start``)."""

    start: dict | None = None
    end: dict | None = None
    error: dict | None = None
    ingested: int = 0
    latencies: list[float] = field(default_factory=list)

    def observe(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "start":
            self.start, self.end, self.error = event, None, None
        elif kind == "end":
            self.end = event
        elif kind == "error":
            self.error = event


def error_text(state: StreamState, folder: RunFolder, code: int | None, lines: int = 12) -> str:
    """The error event if the runner wrote one, else the last lines of the training log."""
    if state.error:
        head = f"{state.error.get('type', 'Error')}: {state.error.get('message', '')}".strip()
        tb = [str(x) for x in (state.error.get("traceback") or [])][-lines:]
        return "\n".join([head, *tb]) if tb else head
    tail = tail_lines(folder.log_file, 60)
    # accelerate's launcher re-raises the worker's exit as its own traceback, which buries the
    # runner's one-line "fine_tuning: error: ..." message: keep the log up to that traceback.
    for i in range(len(tail) - 1, -1, -1):
        if tail[i].startswith("Traceback") and any("accelerate/commands/launch.py" in x for x in tail[i:]):
            tail = tail[:i]
            break
    head = next((x for x in reversed(tail) if ERROR_LINE.match(x)), None)
    shown = tail[-lines:]
    return "\n".join([head or describe_exit(code), *(x for x in shown if x != head)])


def final_status(state: StreamState, code: int | None, stop_request: str | None) -> str:
    """Decide a finished run's status from the ``end`` event, the exit code and any stop request."""
    if state.end and state.end.get("status") in FINAL_STATUSES_FROM_RUNNER:
        return state.end["status"]
    if code == 0:
        return "completed"
    if stop_request:
        return "stopped"
    if code is None:
        return "crashed"
    return "failed"


def ingest(store, run_id: int, tailer: EventTailer, state: StreamState) -> int:
    """Move every complete new event of the file into the store; returns how many were new."""
    events = tailer.read_all()
    new = 0
    for chunk in batches(events, BATCH_EVENTS):
        new += store.ingest_events(run_id, chunk)
        now = time.time()
        for event in chunk:
            state.observe(event)
            if isinstance(event.get("time"), int | float):
                state.latencies.append(now - event["time"])
    state.ingested += new
    return new


def finish(store, run_id: int, folder: RunFolder, state: StreamState, code: int | None,
           *, attached: bool = False, note: str | None = None) -> str:
    """Record the final status of a run whose training processes are all gone. ``note`` becomes the
    last error of a completed run (an evaluation after training that failed or was stopped)."""
    from db.errors import IllegalTransitionError

    status = final_status(state, code, folder.stop_request())
    error = note if status == "completed" else None
    if status == "failed":
        error = error_text(state, folder, code)
    elif status == "crashed":
        why = "the training process ended while no supervisor watched it" if attached else \
            "the supervisor and the training process are gone"
        error = f"{why} and left no end event; " + error_text(state, folder, code)
    try:
        store.set_status(run_id, status, exit_code=code, error=error)
    except IllegalTransitionError as exc:
        log(f"could not record {status}: {exc}")
    return status


def log(message: str) -> None:
    print(time.strftime("%Y-%m-%d %H:%M:%S"), message, flush=True)


class Supervisor:
    def __init__(self, store, run_id: int, *, poll: float = POLL_SECONDS,
                 gpu_every: float = GPU_SAMPLE_SECONDS,
                 linger_after_end: float = LINGER_AFTER_END_SECONDS) -> None:
        self.store = store
        self.run_id = run_id
        self.poll = poll
        self.gpu_every = gpu_every
        self.linger_after_end = linger_after_end
        run = store.get_run(run_id)
        self.folder = RunFolder.of(run)
        self.tailer = EventTailer(self.folder.events_file)
        self.state = StreamState()
        self.sampler: Any = None

    # -- entry -------------------------------------------------------------------------------
    def run(self) -> int:
        run = self.store.get_run(self.run_id)
        log(f"supervisor pid {os.getpid()} for run {run.id} ({run.name}), status {run.status}")
        if run.status == "queued":
            return self.start()
        if run.status == "running" and group_alive(run.pgid):
            log(f"re-attaching to training process group {run.pgid}")
            self.store.update_run(self.run_id, supervisor_pid=os.getpid())
            self.watch(popen=None, pgid=run.pgid, gpu_ids=run.gpu_ids)
            return 0
        if run.status == "running":
            ingest(self.store, self.run_id, self.tailer, self.state)
            status = finish(self.store, self.run_id, self.folder, self.state, run.exit_code, attached=True)
            log(f"training process already gone; recorded {status}")
            return 0
        log(f"run is {run.status}; nothing to supervise")
        return 0

    def start(self) -> int:
        from arctui.config import config_from_mapping
        from db.errors import IllegalTransitionError

        run = self.store.get_run(self.run_id)
        cfg = config_from_mapping(run.config, source=f"run {run.id}")
        self.store.update_run(self.run_id, supervisor_pid=os.getpid(), host=socket.gethostname())
        if cfg.gpus == "auto":
            from arctui.supervisor.queue import wait_for_gpus

            gpu_ids = wait_for_gpus(self.store, self.run_id, cfg.gpu_count, log=log)
            if gpu_ids is None:
                log("run left the queue before it started")
                return 0
        else:
            gpu_ids = () if cfg.gpus == "cpu" else tuple(cfg.gpus)
            try:
                self.store.update_run(self.run_id, gpu_ids=list(gpu_ids))
                self.store.set_status(self.run_id, "running")
            except IllegalTransitionError:
                log("run left the queue before it started")
                return 0
        try:
            popen = self.spawn_training(cfg, gpu_ids)
        except OSError as exc:
            self.store.set_status(self.run_id, "failed", error=f"could not start accelerate launch: {exc}")
            return 1
        self.store.update_run(self.run_id, pgid=popen.pid)
        log(f"training pid {popen.pid} (process group {popen.pid}) on "
            f"{'cpu' if not gpu_ids else 'GPUs ' + ','.join(map(str, gpu_ids))}")
        self.watch(popen=popen, pgid=popen.pid, gpu_ids=gpu_ids)
        return 0

    # -- training process --------------------------------------------------------------------
    def training_command(self, cfg, gpu_ids) -> list[str]:
        from arctui.supervisor.launch import resolve_config

        cfg = resolve_config(cfg)  # re-checks paths; a resumed run's files may have moved
        argv = cfg.runner_argv(
            output_dir=self.folder.output_dir,
            events_file=self.folder.events_file,
            resume=bool(self.folder.checkpoints()),
        )
        launch = [sys.executable, "-m", "accelerate.commands.launch",
                  "--num_processes", str(cfg.num_processes), "--num_machines", "1",
                  "--dynamo_backend", "no", "--mixed_precision", "no"]  # the runner picks bf16 itself
        if not gpu_ids:
            threads = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count() or 1)
            launch += ["--cpu", "--num_cpu_threads_per_process", threads]
        if cfg.num_processes > 1:
            launch += ["--multi_gpu", "--main_process_port", str(free_port())]
        return [*launch, "-m", "runner.fine_tuning", *argv]

    def spawn_training(self, cfg, gpu_ids) -> subprocess.Popen:

        try:
            cmd = self.training_command(cfg, gpu_ids)
        except Exception as exc:  # a config that was fine at launch no longer resolves
            raise OSError(str(exc)) from None
        return self.spawn(cmd, gpu_ids)

    def spawn(self, cmd: list[str], gpu_ids) -> subprocess.Popen:
        """Start ``cmd`` in its own session on the run's GPUs, its output appended to ``train.log``."""
        from arctui.supervisor.launch import REPO_ROOT

        env = dict(os.environ)
        env.pop("ARCTUI_DB", None)  # the runner knows nothing of the store
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpu_ids))
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        self.folder.create()
        with open(self.folder.log_file, "ab") as out:
            out.write(f"\n$ {' '.join(cmd)}\n".encode())
            out.flush()
            return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env, cwd=str(self.folder.root))

    # -- watching ------------------------------------------------------------------------------
    def open_sampler(self, gpu_ids) -> None:
        if not gpu_ids:
            return
        try:
            from arctui.supervisor.gpus import GpuSampler

            self.sampler = GpuSampler(list(gpu_ids))
        except Exception as exc:  # no NVML: say so once, go on without GPU samples
            log(f"GPU sampling off: {exc}")
            self.sampler = None

    def sample_gpus(self) -> None:
        if self.sampler is None:
            return
        try:
            samples = self.sampler.sample()
        except Exception as exc:
            log(f"GPU sampling off: {exc}")
            self.sampler = None
            return
        if samples:
            from db.errors import StoreError

            try:
                self.store.append_gpu_samples(self.run_id, samples)
            except StoreError as exc:
                log(f"store error while saving GPU samples: {exc}")

    def ingest_or_retry(self) -> None:
        """Ingest; on a store error (e.g. a database restarting) log it and re-read the whole file
        next time: the store's cursor drops what already landed."""
        from db.errors import StoreError

        try:
            ingest(self.store, self.run_id, self.tailer, self.state)
        except StoreError as exc:
            log(f"store error while ingesting, retrying: {exc}")
            self.tailer = EventTailer(self.folder.events_file)
            self.state = StreamState(latencies=self.state.latencies, ingested=self.state.ingested)

    def watch(self, popen: subprocess.Popen | None, pgid: int, gpu_ids) -> str:
        self.open_sampler(gpu_ids)
        started = time.monotonic()
        cpu0 = _cpu_seconds()
        next_gpu = 0.0
        next_group_check = 0.0
        code: int | None = None
        ended_at: float | None = None  # when this watch first saw the runner's end event
        while True:
            self.ingest_or_retry()
            now = time.monotonic()
            if now >= next_gpu:
                self.sample_gpus()
                next_gpu = now + self.gpu_every
            if popen is not None and code is None:
                rc = popen.poll()
                if rc is not None:
                    code = normalize_returncode(rc)
                    log(f"accelerate launch ended: {describe_exit(code)}")
            if (popen is None or code is not None) and now >= next_group_check:
                # Workers may outlive the launcher (they save a checkpoint after SIGTERM).
                if not group_alive(pgid):
                    break
                next_group_check = now + 0.5
                if self.state.end is not None:
                    ended_at = ended_at or now
                    if now - ended_at > self.linger_after_end:
                        log(f"training process group {pgid} lingers {self.linger_after_end:.0f} s after "
                            f"the runner's end event; killing it")
                        signal_group(pgid, signal.SIGKILL)
            time.sleep(self.poll)
        self.ingest_or_retry()
        self.ingest_or_retry()  # after a store error the first call only reset the tailer
        note = None
        if final_status(self.state, code, self.folder.stop_request()) == "completed":
            note = self.evaluate_after_training(gpu_ids)
        status = finish(self.store, self.run_id, self.folder, self.state, code, attached=popen is None,
                        note=note)
        wall = time.monotonic() - started
        lat = sorted(self.state.latencies)
        lat_text = (f"event-to-store latency p50 {lat[len(lat) // 2] * 1000:.0f} ms, "
                    f"max {lat[-1] * 1000:.0f} ms" if lat else "no events")
        log(f"run {self.run_id} {status} ({describe_exit(code)}); ingested {self.state.ingested} events; "
            f"{lat_text}; supervisor CPU {(_cpu_seconds() - cpu0) / max(wall, 1e-9) * 100:.2f}% of one core "
            f"over {wall:.1f} s")
        if self.tailer.bad_lines:
            log(f"skipped {self.tailer.bad_lines} malformed event lines")
        return status


    # -- evaluation after training ---------------------------------------------------------------
    def evaluate_after_training(self, gpu_ids) -> str | None:
        """When the config says ``eval_after_training``, evaluate the final weights as one more
        supervised phase (own process group recorded as the run's pgid, so ``arctui stop`` stops it;
        GPU samples go on; output appended to ``train.log``) and record its metrics at the final step.
        The run stays ``running`` meanwhile. Returns None, or one line saying why it gave no result
        (the run is still recorded completed, with that line as its last error)."""
        from arctui.config import config_from_mapping

        run = self.store.get_run(self.run_id)
        try:
            cfg = config_from_mapping(run.config, source=f"run {run.id}", validate=False)
        except Exception as exc:  # a config stored by an older arctui; training is done anyway
            return f"evaluation after training skipped: {exc}"
        if not cfg.eval_after_training:
            return None
        started = time.monotonic()
        try:
            note = self._run_evaluation(run, cfg, gpu_ids)
        except Exception as exc:  # bad data reference, missing weights, store error: never fail the run
            note = f"evaluation after training failed: {type(exc).__name__}: {exc}"
        log(f"evaluation after training {'done' if note is None else 'ended: ' + note} "
            f"in {time.monotonic() - started:.1f} s")
        return note

    def _run_evaluation(self, run, cfg, gpu_ids) -> str | None:
        from arctui.supervisor.evaluation import (
            EvalOptions,
            build_command,
            dataset_and_version,
            eval_dir,
            last_error,
            limit_tasks,
            record_result,
            select_weights,
            summary,
        )

        if self.folder.stop_request():
            return "evaluation after training skipped: a stop was requested"
        options = cfg.eval_options
        last_step = self.state.end.get("step") if self.state.end else None
        if not isinstance(last_step, int):
            last_step = self.store.get_summary(self.run_id).last_step
        weights = select_weights(run, "latest", last_step)
        data, prompt_version = dataset_and_version(run, options["data"], options["prompt_version"])
        out_dir = eval_dir(run, weights.step, data)
        events_path = out_dir / "events.jsonl"
        if events_path.exists():
            events_path.unlink()  # a re-attached supervisor evaluates again from scratch
        dataset_name = data
        if options["max_tasks"]:
            data, dataset_name = limit_tasks(data, options["max_tasks"], out_dir)
        device = "cuda" if gpu_ids else "cpu"
        cmd = build_command(run, weights, data, prompt_version, out_dir,
                            EvalOptions.from_config(options, device=device), dataset_name=dataset_name)
        popen = self.spawn(cmd, gpu_ids)
        self.store.update_run(self.run_id, pgid=popen.pid)
        log(f"evaluation after training: pid {popen.pid} (process group {popen.pid}), step {weights.step}, "
            f"{dataset_name}, {options['predictions_per_task']} predictions per task on {device}")
        tailer = EventTailer(events_path)
        seen: list[dict] = []
        result = None
        signalled = False
        code: int | None = None
        next_gpu = 0.0
        while True:
            for event in tailer.read():
                seen.append(event)
                if event.get("event") == "eval_result":
                    record_result(self.store, self.run_id, event)
                    result = event
            now = time.monotonic()
            if now >= next_gpu:
                self.sample_gpus()
                next_gpu = now + self.gpu_every
            if not signalled and self.folder.stop_request():
                # `arctui stop` may have signalled the training group just after it ended
                signal_group(popen.pid, signal.SIGTERM)
                signalled = True
            if code is None and popen.poll() is not None:
                code = normalize_returncode(popen.returncode)
            if code is not None and not group_alive(popen.pid):
                break
            time.sleep(self.poll)
        for event in tailer.read():
            seen.append(event)
            if event.get("event") == "eval_result" and result is None:
                record_result(self.store, self.run_id, event)
                result = event
        if result is not None:
            log(f"evaluation recorded at step {result['step']} on {result['dataset']}: "
                f"{summary(result.get('metrics') or {})}")
            return None
        if self.folder.stop_request():
            return f"evaluation after training stopped ({describe_exit(code)}); the training completed"
        return (f"evaluation after training failed ({describe_exit(code)}): "
                f"{last_error(seen, self.folder.log_file)}; see {self.folder.log_file}")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arctui.supervisor", description=__doc__.splitlines()[0])
    parser.add_argument("run_id", type=int)
    parser.add_argument("--lock-fd", type=int, default=None,
                        help="inherited descriptor that already holds the run's lock")
    args = parser.parse_args(argv)
    # No terminal: a stray SIGHUP/SIGINT must not leave the run unwatched.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from db.store import RunStore

    store = RunStore.open(os.environ.get("ARCTUI_DB"))
    try:
        run = store.get_run(args.run_id)
        folder = RunFolder.of(run)
        lock_fd = args.lock_fd
        if lock_fd is None:
            lock_fd = folder.try_lock()
            if lock_fd is None:
                log(f"another supervisor holds run {run.id}; exiting")
                return 0
        try:
            return Supervisor(store, args.run_id).run()
        finally:
            os.close(lock_fd)
    except Exception as exc:
        log(f"supervisor error: {type(exc).__name__}: {exc}")
        raise
    finally:
        store.close()
