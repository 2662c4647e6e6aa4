"""The Slurm executor: a run's batch script, and Slurm's own tools to submit, watch and stop its job.

    script = batch_script(cfg, folder, job_name="arctui-12-tiny")   # what `arctui launch --dry-run` prints
    job_id = submit(folder.batch_script)                             # sbatch --parsable
    job = query_job(job_id)             # scontrol show job, else sacct, else the jobcomp file
    job.status, job.display             # "queued" / "running" / None (ended); "PENDING (Resources)"
    signal_job(job_id, "TERM"); cancel(job_id)                       # scancel

Nothing here schedules: Slurm does. The supervisor on the submit host (``supervise``) submits the job,
tails the event file (the run folder must be on a filesystem the nodes share) and polls Slurm every
``POLL_SECONDS``. The batch script starts one ``accelerate launch`` per Slurm task, each task one
Accelerate machine (``--machine_rank $SLURM_PROCID``, the first node of the job as the main process's
address); the runner writes events only from its global main process. On the warning signal
(``--signal=B:TERM@N``) the script forwards SIGTERM to the training, which checkpoints, and requeues
the job unless ``arctui stop`` asked for the end (its ``stop-request`` file): the requeued job resumes
from the checkpoint, so a run keeps one continuous step count over all its job's restarts. Light
module: subprocess calls to Slurm's commands only; no store, no torch.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from arctui.supervisor.process import accelerate_command
from arctui.supervisor.runfolder import RunFolder
from arctui.supervisor.spawn import REPO_ROOT
from runner.errors import UserError

POLL_SECONDS = 5.0  # squeue/scontrol load on slurmctld: one call per run every few seconds
STOP_GRACE_SECONDS = 120.0  # after `scancel --signal=TERM --full`, a plain scancel
TOOL_TIMEOUT = 30.0
# Slurm job states (squeue/scontrol words) while the job is not over, as arctui statuses.
ACTIVE_STATES = {
    "PENDING": "queued", "REQUEUED": "queued", "REQUEUE_HOLD": "queued", "REQUEUE_FED": "queued",
    "RESV_DEL_HOLD": "queued", "CONFIGURING": "queued", "SUSPENDED": "running", "RUNNING": "running",
    "COMPLETING": "running", "STAGE_OUT": "running", "SIGNALING": "running", "RESIZING": "running",
    "STOPPED": "running",
}  # fmt: skip
# Slurm's end states -> (arctui status, why) for a job whose runner wrote no end event: the runner's
# own end event (completed, stopped after a checkpoint, failed) wins when there is one.
END_STATES = {
    "COMPLETED": ("completed", None),
    "FAILED": ("failed", "the Slurm job failed"),
    "CANCELLED": ("stopped", "the Slurm job was cancelled (scancel)"),
    "TIMEOUT": ("stopped", "the Slurm job hit its time limit"),
    "DEADLINE": ("stopped", "the Slurm job reached its deadline"),
    "PREEMPTED": ("stopped", "the Slurm job was preempted"),
    "NODE_FAIL": ("crashed", "a node of the Slurm job failed (NODE_FAIL)"),
    "BOOT_FAIL": ("crashed", "a node of the Slurm job failed to boot (BOOT_FAIL)"),
    "OUT_OF_MEMORY": ("failed", "the Slurm job ran out of memory (OUT_OF_MEMORY)"),
}


@dataclass(frozen=True)
class SlurmJob:
    """What Slurm says about one job."""

    job_id: str
    state: str  # Slurm's word: PENDING, RUNNING, COMPLETED, NODE_FAIL, ...
    reason: str = ""
    nodes: str = ""
    restarts: int = 0
    exit_code: int | None = None

    @property
    def status(self) -> str | None:
        """``queued`` or ``running`` while the job is not over; None once it ended."""
        return ACTIVE_STATES.get(self.state, None if self.state in END_STATES else "running")

    @property
    def display(self) -> str:
        """Slurm's state as people read it: ``PENDING (Resources)``, ``RUNNING (requeued 1x)``."""
        text = self.state
        if self.reason and self.reason != "None" and self.state != "RUNNING":
            text += f" ({self.reason})"
        if self.restarts:
            text += f" (requeued {self.restarts}x)"
        return text

    def outcome(self) -> tuple[str, str | None]:
        """(arctui status, why) of an ended job whose runner wrote no end event."""
        status, why = END_STATES.get(self.state, ("crashed", f"the Slurm job ended {self.state}"))
        if why and self.reason and self.reason not in ("None", ""):
            why += f": {self.reason}"
        return status, why


def available() -> bool:
    """Whether Slurm's client commands are on PATH (they need a reachable slurmctld to work)."""
    return all(shutil.which(tool) for tool in ("sbatch", "squeue", "scontrol", "scancel", "sinfo"))


def _tool(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    """Run a Slurm command; a missing tool or a failure (with ``check``) is a one-line UserError."""
    if shutil.which(args[0]) is None:
        raise UserError(f"{args[0]} not found: Slurm's client commands must be on PATH on this host "
                        "(or use executor: local)")
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=TOOL_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UserError(f"{args[0]} did not answer within {TOOL_TIMEOUT:.0f} s; is slurmctld up?") from None
    if check and done.returncode != 0:
        why = " ".join((done.stderr or done.stdout).split()) or f"exit code {done.returncode}"
        raise UserError(f"{' '.join(args[:2])} failed: {why}")
    return done


# -- the batch script -----------------------------------------------------------------------------
def sbatch_lines(options: dict, *, job_name: str, log_file: Path, workdir: Path) -> list[str]:
    """The ``#SBATCH`` header for a config's ``executor`` options."""
    lines = [f"--job-name={job_name}", f"--output={log_file}", "--open-mode=append", f"--chdir={workdir}",
             f"--nodes={options['nodes']}", f"--ntasks-per-node={options['tasks_per_node']}"]
    if options["gpus_per_node"]:
        lines.append(f"--gpus-per-node={options['gpus_per_node']}")
    for key in ("partition", "cpus_per_task", "mem", "time", "account", "qos", "constraint"):
        if options.get(key) is not None:
            lines.append(f"--{key.replace('_', '-')}={options[key]}")
    if options["signal_seconds"]:
        lines.append(f"--signal=B:TERM@{options['signal_seconds']}")
    lines.append("--requeue" if options["requeue"] else "--no-requeue")
    lines += [str(extra).removeprefix("#SBATCH").strip() for extra in options["sbatch_extra"]]
    return [f"#SBATCH {line}" for line in lines]


def batch_script(cfg, folder: RunFolder, *, job_name: str, runner_argv: list[str]) -> str:
    """The batch script of a run on Slurm. ``runner_argv``: the runner's flags without
    ``--resume_from_checkpoint`` (the script adds it when the run folder holds a checkpoint, so a
    requeued job resumes)."""
    options = cfg.executor
    per_machine = max(1, options["gpus_per_node"] // options["tasks_per_node"])
    machines = options["nodes"] * options["tasks_per_node"]
    launch = accelerate_command(
        machines * per_machine, cpu=not options["gpus_per_node"], python="python",
        threads="${SLURM_CPUS_PER_TASK:-1}", machines=machines, machine_rank="$SLURM_PROCID",
        main_ip="$MAIN_IP", port="$MAIN_PORT",
    )
    train = "exec " + " ".join(_quote(a) for a in launch) + " -m runner.fine_tuning " + shlex.join(runner_argv) \
        + " $RESUME"
    if not options["gpus_per_node"] and machines > 1:
        # One CPU process per machine: Accelerate's simple launcher leaves its rank to the environment
        # (as mpirun would set it); Slurm's task numbers are exactly that.
        train = "RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS LOCAL_RANK=0 " + train
    # A SIGTERM to the job's steps reaches every process of them. The launcher must outlive it (the
    # task ends when it does, and Slurm then kills the runner before its checkpoint): runner.stopping
    # handles it in the launcher (passes it on once, waits); the trap also covers the moment before
    # Python starts. The runner installs its own handler and checkpoints.
    train = "trap '' TERM; " + train
    setup = [str(line) for line in options["setup"]] or [f"# no setup lines: this Python, {sys.executable}",
                                                          f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"']
    root = shlex.quote(str(folder.root))
    return "\n".join([
        "#!/bin/bash",
        f"# arctui run {job_name}: written by arctui, submitted with sbatch (docs/slurm.md)",
        *sbatch_lines(options, job_name=job_name, log_file=folder.log_file, workdir=folder.root),
        "set -u",
        *setup,
        f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}} PYTHONUNBUFFERED=1",
        f"RUN={root}",
        "# Accelerate's multi-node convention: the first node hosts the main process's rendezvous",
        'MAIN_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "MAIN_PORT=$((20000 + SLURM_JOB_ID % 20000))",
        "RESUME=",
        "export MAIN_IP MAIN_PORT RESUME  # read by each task's command below",
        'if compgen -G "$RUN/output/checkpoint-*" >/dev/null; then RESUME=--resume_from_checkpoint; fi',
        'echo "arctui: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST $RESUME"',
        "# The warning signal (--signal=B:TERM@N) reaches only this shell: pass it on to the training,",
        "# which checkpoints and ends, then requeue. `arctui stop` (a stop-request file) and scancel",
        "# signal the training themselves, and a second SIGTERM would make the runner abort: not here.",
        "WARNED=0",
        "on_term() {",
        '    [ -e "$RUN/stop-request" ] && return',
        '    case "$(squeue -h -j "$SLURM_JOB_ID" -o %T 2>/dev/null)" in',
        '        RUNNING) WARNED=1; scancel --signal=TERM "$SLURM_JOB_ID" ;;',
        "    esac",
        "}",
        "trap on_term TERM",
        f"srun --kill-on-bad-exit=1 bash -c {shlex.quote(train)} &",
        "TRAIN=$!",
        "wait $TRAIN; CODE=$?",
        'while kill -0 "$TRAIN" 2>/dev/null; do wait "$TRAIN"; CODE=$?; done',
        *(_REQUEUE if options["requeue"] else ()),
        "exit $CODE",
        "",
    ])


# Requeue only a training that stopped on the warning signal (its last event says so), never one that
# finished meanwhile or was asked to stop.
_REQUEUE = (
    'if [ "$WARNED" = 1 ] && [ ! -e "$RUN/stop-request" ] && tail -n 1 "$RUN/events.jsonl" 2>/dev/null |',
    """        grep -q '"event": "end", "status": "stopped"'; then""",
    '    echo "arctui: requeueing job $SLURM_JOB_ID to continue from its checkpoint"',
    '    scontrol requeue "$SLURM_JOB_ID" && exit 0',
    "fi",
)


def _quote(arg: str) -> str:
    """Quote an argument, leaving ``$VAR`` and ``${VAR:-x}`` for the shell to expand."""
    return arg if re.fullmatch(r"\$\{?[A-Z_]+(:-[0-9]+)?\}?", arg) else shlex.quote(arg)


# -- submitting and watching -------------------------------------------------------------------------
def submit(script: Path) -> str:
    """``sbatch --parsable SCRIPT``; returns the job id (one-line UserError when sbatch refuses)."""
    done = _tool(["sbatch", "--parsable", str(script)])
    job_id = done.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise UserError(f"sbatch gave no job id: {done.stdout.strip()!r}")
    return job_id


def _fields(text: str) -> dict[str, str]:
    """``Key=Value Key2=Value two`` (scontrol -o) -> dict; values may hold spaces."""
    out: dict[str, str] = {}
    for match in re.finditer(r"(?:^|\s)([A-Za-z/:]+)=(.*?)(?=\s+[A-Za-z/:]+=|$)", text.strip()):
        out.setdefault(match.group(1), match.group(2))
    return out


def _exit_code(text: str | None) -> int | None:
    if not text or ":" not in text:
        return None
    code, sig = text.split(":", 1)
    return 128 + int(sig) if sig.isdigit() and int(sig) else int(code) if code.isdigit() else None


def query_job(job_id: str) -> SlurmJob | None:
    """What Slurm knows of ``job_id``: ``scontrol show job`` while slurmctld remembers it
    (``MinJobAge``), else ``sacct``, else the ``jobcomp/filetxt`` file; None when nothing does.
    Raises UserError when Slurm does not answer (the caller tries again later)."""
    done = _tool(["scontrol", "-o", "show", "job", str(job_id)], check=False)
    if done.returncode == 0 and "JobState=" in done.stdout:
        f = _fields(done.stdout.splitlines()[0])
        return SlurmJob(str(job_id), f.get("JobState", "UNKNOWN"), f.get("Reason", ""),
                        "" if f.get("NodeList") in (None, "(null)") else f["NodeList"],
                        int(f.get("Restarts", "0") or 0), _exit_code(f.get("ExitCode")))
    if "Invalid job id" not in (done.stderr + done.stdout):
        raise UserError(f"scontrol show job {job_id} failed: {' '.join(done.stderr.split())}")
    return _from_sacct(job_id) or _from_jobcomp(job_id)


def _from_sacct(job_id: str) -> SlurmJob | None:
    if shutil.which("sacct") is None:
        return None
    done = _tool(["sacct", "-n", "-P", "-X", "-j", str(job_id), "-o", "State,ExitCode,NodeList"], check=False)
    rows = [r.split("|") for r in done.stdout.splitlines() if r.count("|") == 2] if done.returncode == 0 else []
    if not rows:
        return None
    state, code, nodes = rows[-1]
    return SlurmJob(str(job_id), state.split()[0], nodes=nodes, exit_code=_exit_code(code))


def _from_jobcomp(job_id: str) -> SlurmJob | None:
    done = _tool(["scontrol", "show", "config"], check=False)
    conf = dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", done.stdout, re.M))
    if conf.get("JobCompType") != "jobcomp/filetxt" or not conf.get("JobCompLoc"):
        return None
    try:
        lines = Path(conf["JobCompLoc"]).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        f = _fields(line)
        if f.get("JobId") == str(job_id):
            return SlurmJob(str(job_id), f.get("JobState", "UNKNOWN"), nodes=f.get("NodeList", ""),
                            exit_code=_exit_code(f.get("ExitCode")))
    return None


def signal_job(job_id: str, signal_name: str = "TERM") -> None:
    """``scancel --signal=SIG JOB``: every process of the job's steps (the training) gets it, the batch
    shell does not. Not ``--full``: the batch shell's ``srun`` would take its own SIGTERM as an order
    to kill the step at once, before the runner saved its checkpoint."""
    _tool(["scancel", f"--signal={signal_name}", str(job_id)], check=False)


def cancel(job_id: str) -> None:
    """A plain ``scancel JOB`` (SIGTERM to everything, SIGKILL after Slurm's KillWait)."""
    _tool(["scancel", str(job_id)], check=False)


# -- the cluster view ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlurmNode:
    name: str
    partition: str
    state: str
    cpus: str  # allocated/idle/other/total
    gres: str
    gres_used: str


def cluster_nodes() -> list[SlurmNode]:
    """Every node per partition, with its state, CPUs and GPUs (``sinfo``)."""
    done = _tool(["sinfo", "-h", "-N", "-O", "NodeList:|,Partition:|,StateLong:|,CPUsState:|,Gres:|,GresUsed:"])
    nodes = []
    for line in done.stdout.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 6:
            nodes.append(SlurmNode(*parts[:6]))
    return nodes


def arctui_jobs() -> list[dict[str, str]]:
    """arctui's jobs in Slurm's queue (job names ``arctui-*``), with state, reason and nodes."""
    done = _tool(["squeue", "-h", "-o", "%i|%j|%T|%r|%N|%M|%P"])
    jobs = []
    for line in done.stdout.splitlines():
        job_id, name, state, reason, nodes, elapsed, partition = (line.split("|") + [""] * 7)[:7]
        if name.startswith("arctui-"):
            jobs.append({"job_id": job_id, "name": name, "state": state, "reason": reason, "nodes": nodes,
                         "elapsed": elapsed, "partition": partition})
    return jobs


def on_network_filesystem(path: Path, mounts: str = "/proc/mounts") -> str | None:
    """The filesystem type when ``path`` lies on NFS (or another network filesystem), else None
    (``mounts``: a file in the format of ``/proc/mounts``)."""
    try:
        target = os.path.realpath(path)
        best, kind = "", None
        with open(mounts) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and (target == parts[1] or target.startswith(parts[1].rstrip("/") + "/")) \
                        and len(parts[1]) >= len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        return None
    return kind if kind and (kind.startswith("nfs") or kind in ("cifs", "smb3", "lustre", "gpfs", "beegfs",
                                                                 "fuse.sshfs", "ceph", "9p")) else None


def job_name(run_id: int, name: str) -> str:
    """The Slurm job name of a run: ``arctui-ID-NAME`` (how ``arctui gpus --executor slurm`` finds them)."""
    return f"arctui-{run_id}-{re.sub(r'[^A-Za-z0-9._+-]', '_', name)[:60]}"
