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
  the metrics with ``RunStore.record_eval``; the run stays ``running`` until then. That is
  :func:`arctui.supervisor.evaluation.evaluate_run`, the code of ``arctui eval``.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import subprocess
import time
from typing import Any

from arctui.supervisor.outcome import (
    StreamState,
    final_status,
    finish,
    folder_gone,
    ingest,
    log,
    next_retry_delay,
    quarantine_note,
    report_quarantine,
    with_retries,
)
from arctui.supervisor.process import (
    describe_exit,
    group_alive,
    normalize_returncode,
    signal_group,
)
from arctui.supervisor.runfolder import RunFolder
from arctui.supervisor.spawn import start_group, training_command
from arctui.supervisor.tail import EventTailer

POLL_SECONDS = 0.2  # event-to-store latency is at most about this plus one transaction
GPU_SAMPLE_SECONDS = 5.0
# Once the launcher has exited and the runner has written its `end` event, members left in the
# training process group (a stuck data worker, a child a user's code spawned) get this long to exit
# before the group is killed: a run must never stay "running" behind a process that does no work.
LINGER_AFTER_END_SECONDS = 30.0


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
        # Set when the store refused an event for good (a value it cannot hold): the run ends failed
        # with this reason, its training is stopped, and the ingest is not retried.
        self.refused: str | None = None
        self.warned: set[int] = set()  # byte offsets of quarantined event lines already logged
        self.shown_bad_lines = 0  # quarantined lines already counted in the run's last_error
        self.retry_delay = 0.0  # current backoff after store errors while ingesting (0: none)
        self.retry_at = 0.0  # time.monotonic() before which no ingest is tried

    # -- entry -------------------------------------------------------------------------------
    def run(self) -> int:
        run = self.store.get_run(self.run_id)
        log(f"supervisor pid {os.getpid()} for run {run.id} ({run.name}), status {run.status}")
        if run.status == "queued" and run.executor == "local" and (run.config.get("executor") or {}).get("type") == "slurm":
            # a run created by a study (or any other path than launch) for a Slurm config
            run = self.store.update_run(self.run_id, executor="slurm")
        if run.executor == "slurm" and run.status in ("queued", "running"):
            return self.run_on_slurm(run)
        if run.status == "queued":
            return self.start()
        if run.status == "running" and group_alive(run.pgid):
            log(f"re-attaching to training process group {run.pgid}")
            self.store.update_run(self.run_id, supervisor_pid=os.getpid())
            self.watch(popen=None, pgid=run.pgid, gpu_ids=run.gpu_ids)
            return 0
        if run.status == "running":
            self.final_ingest()
            code = run.exit_code if run.exit_code is not None else self.folder.recorded_exit_code()
            status = finish(self.store, self.run_id, self.folder, self.state, code, attached=True,
                            refused=self.refused, quarantined=self.tailer.bad_lines, log=log)
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
        self.folder.clear_exit_code()  # a new session: an earlier session's exit code is history
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

    # -- on Slurm ------------------------------------------------------------------------------------
    def run_on_slurm(self, run) -> int:
        """Submit the run's batch job (or re-attach to the job it has), then watch it to its end."""
        from arctui.supervisor import slurm

        if run.job_id is None:
            from arctui.config import config_from_mapping
            from arctui.supervisor.resolve import resolve_config

            self.store.update_run(self.run_id, supervisor_pid=os.getpid(), host=socket.gethostname())
            try:
                cfg = resolve_config(config_from_mapping(run.config, source=f"run {run.id}"))
                self.folder.clear_exit_code()
                script = self.folder.root / "job.sbatch"
                script.write_text(slurm.batch_script(
                    cfg, self.folder, job_name=slurm.job_name(run.id, run.name),
                    runner_argv=cfg.runner_argv(output_dir=self.folder.output_dir, events_file=self.folder.events_file)))
                job_id = slurm.submit(script)
            except Exception as exc:  # sbatch refused (partition, limits) or the config no longer resolves
                self.store.set_status(self.run_id, "failed", error=f"could not submit the Slurm job: {exc}")
                log(f"could not submit the Slurm job: {exc}")
                return 1
            run = self.store.update_run(self.run_id, job_id=job_id, job_ids=[*run.job_ids, job_id],
                                        job_state="PENDING")
            log(f"submitted Slurm job {job_id} ({script})")
        else:
            log(f"re-attaching to Slurm job {run.job_id}")
            self.store.update_run(self.run_id, supervisor_pid=os.getpid())
        self.watch_job(run.job_id)
        return 0

    def watch_job(self, job_id: str) -> str:
        """Tail the event file into the store while polling Slurm every ``slurm.POLL_SECONDS``; mark the
        run running when its job starts; after ``arctui stop``, a plain scancel once the grace period
        passed; record the end from the runner's end event, else from Slurm's end state."""
        from arctui.supervisor import slurm
        from runner.errors import UserError

        next_poll = 0.0
        cancelled = False
        ended_at: float | None = None  # when this watch first saw the runner's end event
        job = None
        while True:
            self.ingest_or_retry()
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + slurm.POLL_SECONDS
                try:
                    job = slurm.query_job(job_id)
                except UserError as exc:  # slurmctld restarting: ask again next time
                    log(f"Slurm did not answer: {exc}")
                    continue
                if job is None or job.status is None:
                    break
                run = self.store.update_run(self.run_id, job_state=job.display, node_list=job.nodes or None)
                if job.status == "running" and run.status == "queued":
                    with_retries("marking the run running", lambda: self.store.set_status(self.run_id, "running"),
                                 log=log)
                    log(f"Slurm job {job_id} running on {job.nodes}")
                stop = self.folder.stop_request()
                if self.state.end is not None and self.state.end.get("status") != "stopped":
                    ended_at = ended_at or now  # (stopped on the warning signal: the job is requeued)
                if cancelled:
                    pass
                elif stop and (stop == "kill" or time.time() - self.folder.stop_file.stat().st_mtime
                               > slurm.STOP_GRACE_SECONDS):
                    log(f"Slurm job {job_id} still there after the stop request; scancel")
                    slurm.cancel(job_id)
                    cancelled = True
                elif ended_at is not None and now - ended_at > self.linger_after_end:
                    # as for local runs: a job must not stay "running" behind processes that do no work
                    log(f"Slurm job {job_id} lingers {self.linger_after_end:.0f} s after the runner's end event; scancel")
                    slurm.cancel(job_id)
                    cancelled = True
            time.sleep(self.poll)
        self.final_ingest()
        job = job or slurm.SlurmJob(job_id, "UNKNOWN", reason="Slurm no longer knows the job")
        ended_by = job.outcome()
        self.store.update_run(self.run_id, job_state=job.display, node_list=job.nodes or None)
        run = self.store.get_run(self.run_id)
        if run.status == "queued" and (self.state.start is not None or job.state not in ("CANCELLED", "UNKNOWN")):
            # it ran between two polls (a job that fails at once): running first, then its end
            run = with_retries("marking the run running", lambda: self.store.set_status(self.run_id, "running"),
                               log=log)
        if run.status == "queued":  # it never ran: cancelled or refused while pending
            status = "stopped" if ended_by[0] == "stopped" else "failed"
            with_retries(f"recording {status}", lambda: self.store.set_status(
                self.run_id, status, error=ended_by[1] or f"the Slurm job ended {job.state} before it ran"), log=log)
        elif run.status == "running":
            status = finish(self.store, self.run_id, self.folder, self.state, job.exit_code, ended_by=ended_by,
                            quarantined=self.tailer.bad_lines, log=log)
        else:
            status = run.status
        log(f"run {self.run_id} {status}: Slurm job {job_id} {job.display}; ingested {self.state.ingested} events")
        return status

    # -- training process --------------------------------------------------------------------
    def training_command(self, cfg, gpu_ids) -> list[str]:
        from arctui.supervisor.resolve import resolve_config

        cfg = resolve_config(cfg)  # re-checks paths; a resumed run's files may have moved
        return training_command(cfg, self.folder, gpu_ids)

    def spawn_training(self, cfg, gpu_ids) -> subprocess.Popen:

        try:
            cmd = self.training_command(cfg, gpu_ids)
        except Exception as exc:  # a config that was fine at launch no longer resolves
            raise OSError(str(exc)) from None
        return self.spawn(cmd, gpu_ids)

    def spawn(self, cmd: list[str], gpu_ids) -> subprocess.Popen:
        """Start ``cmd`` in its own session on the run's GPUs, its output appended to ``train.log``."""
        self.folder.create()
        return start_group(cmd, self.folder.log_file, gpu_ids=tuple(gpu_ids), cwd=self.folder.root)

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
        """Ingest; on a store error (e.g. a database restarting) log it, wait with backoff (the
        training goes on; the event file keeps everything) and then re-read the whole file: the
        store's cursor drops what already landed."""
        from db.errors import StoreError

        if self.refused is not None or time.monotonic() < self.retry_at:
            return
        try:
            self.ingest_once()
        except StoreError as exc:
            self.retry_delay = next_retry_delay(self.retry_delay)
            self.retry_at = time.monotonic() + self.retry_delay
            log(f"store error while ingesting, retrying in {self.retry_delay:.1f} s: {exc}")
            return
        if self.retry_delay:
            log("store reachable again; ingest resumed")
            self.retry_delay, self.retry_at = 0.0, 0.0

    def ingest_once(self) -> None:
        """One ingest; a store refusal (permanent) is recorded in ``refused``, other store errors are
        raised after resetting the tailer (the whole file is read again next time)."""
        from db.errors import StoreError, UnstorableValueError

        try:
            ingest(self.store, self.run_id, self.tailer, self.state)
        except UnstorableValueError as exc:
            self.refused = f"the store refused {exc}"
            log(f"{self.refused}; stopping the training, the run ends failed")
        except StoreError:
            self.tailer = EventTailer(self.folder.events_file)
            self.state = StreamState(latencies=self.state.latencies, ingested=self.state.ingested,
                                     watching_since=self.state.watching_since, timed_seq=self.state.timed_seq)
            raise
        finally:
            report_quarantine(self.tailer, self.warned, log)
            self.show_quarantine()

    def show_quarantine(self) -> None:
        """While the run goes on, its quarantined lines are counted in ``last_error`` (``arctui show``,
        the app), not only in ``supervisor.log``; the end of the run writes the final count."""
        from db.errors import StoreError

        count = self.tailer.bad_lines
        if count <= self.shown_bad_lines:
            return
        try:
            self.store.update_run(self.run_id, last_error=quarantine_note(count))
        except StoreError:
            return  # tried again at the next ingest
        self.shown_bad_lines = count

    def final_ingest(self) -> None:
        """Everything the runner wrote, retried with backoff on store errors (the end of a run)."""
        if self.refused is None:
            with_retries("ingesting the last events", self.ingest_once, log=log)

    def watch(self, popen: subprocess.Popen | None, pgid: int, gpu_ids) -> str:
        self.open_sampler(gpu_ids)
        started = time.monotonic()
        cpu0 = _cpu_seconds()
        next_gpu = 0.0
        next_group_check = 0.0
        code: int | None = None
        ended_at: float | None = None  # when this watch first saw the runner's end event
        stopped_for_refusal = False
        while True:
            self.ingest_or_retry()
            if self.refused is not None and not stopped_for_refusal:
                signal_group(pgid, signal.SIGTERM)  # the runner checkpoints and ends; nothing more lands
                stopped_for_refusal = True
            now = time.monotonic()
            if now >= next_gpu:
                self.sample_gpus()
                next_gpu = now + self.gpu_every
            if popen is not None and code is None:
                rc = popen.poll()
                if rc is not None:
                    code = normalize_returncode(rc)
                    self.folder.write_exit_code(code)  # before any store write: recovery can use it
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
        self.final_ingest()
        vanished = folder_gone(self.folder, self.state)
        if vanished:
            log(f"the run folder {self.folder.root} disappeared")
        note = None
        if self.refused is None and final_status(self.state, code, self.folder.stop_request(),
                                                 vanished=vanished) == "completed":
            note = self.evaluate_after_training(gpu_ids)
        status = finish(self.store, self.run_id, self.folder, self.state, code, attached=popen is None,
                        note=note, refused=self.refused, quarantined=self.tailer.bad_lines,
                        vanished=vanished, log=log)
        wall = time.monotonic() - started
        lat = sorted(self.state.latencies)
        lat_text = (f"event-to-store latency p50 {lat[len(lat) // 2] * 1000:.0f} ms, "
                    f"max {lat[-1] * 1000:.0f} ms" if lat else "no events")
        log(f"run {self.run_id} {status} ({describe_exit(code)}); ingested {self.state.ingested} events; "
            f"{lat_text}; supervisor CPU {(_cpu_seconds() - cpu0) / max(wall, 1e-9) * 100:.2f}% of one core "
            f"over {wall:.1f} s")
        if self.tailer.bad_lines:
            log(f"quarantined {self.tailer.bad_lines} lines of events.jsonl (not handed to the store)")
        return status


    # -- evaluation after training ---------------------------------------------------------------
    def evaluate_after_training(self, gpu_ids) -> str | None:
        """When the config says ``eval_after_training``, evaluate the final weights as one more
        supervised phase (own process group recorded as the run's pgid, so ``arctui stop`` stops it;
        GPU samples go on; output appended to ``train.log``) and record its metrics at the final step.
        The run stays ``running`` meanwhile. Returns None, or one line saying why it gave no result
        (the run is still recorded completed, with that line as its last error)."""
        from arctui.config import config_from_mapping

        run = with_retries("reading the run before its evaluation", lambda: self.store.get_run(self.run_id),
                           log=log)
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
        """``arctui eval RUN --checkpoint latest`` with the config's ``eval:`` options, the same code
        (:func:`arctui.supervisor.evaluation.evaluate_run`), supervised like training."""
        from arctui.supervisor.evaluation import EvalRequest, evaluate_run, summary

        if self.folder.stop_request():
            return "evaluation after training skipped: a stop was requested"
        last_step = self.state.end.get("step") if self.state.end else None
        if not isinstance(last_step, int):
            last_step = with_retries("reading the last step", lambda: self.store.get_summary(self.run_id),
                                     log=log).last_step
        device = "cuda" if gpu_ids else "cpu"
        request = EvalRequest.from_config(cfg.eval_options, device=device)
        next_gpu = 0.0

        def started(plan, pid: int) -> None:
            self.store.update_run(self.run_id, pgid=pid)
            log(f"evaluation after training: pid {pid} (process group {pid}), step {plan.weights.step}, "
                f"{plan.dataset_name}, {request.options.predictions_per_task} predictions per task on {device}")

        def tick() -> bool:
            nonlocal next_gpu
            now = time.monotonic()
            if now >= next_gpu:
                self.sample_gpus()
                next_gpu = now + self.gpu_every
            # `arctui stop` may have signalled the training group just after it ended
            return self.folder.stop_request() is not None

        self.folder.create()
        outcome = evaluate_run(self.store, run, request, last_step=last_step, log_path=self.folder.log_file,
                               gpu_ids=tuple(gpu_ids), on_start=started, tick=tick, poll=self.poll)
        failure = outcome.failure()
        if failure is None:
            result = outcome.result
            log(f"evaluation recorded at step {result['step']} on {result['dataset']}: "
                f"{summary(result.get('metrics') or {})}")
            return None
        if outcome.stopped:
            return f"evaluation after training stopped ({describe_exit(outcome.exit_code)}); the training completed"
        return f"evaluation after training failed {failure}"


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
