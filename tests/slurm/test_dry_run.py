"""`arctui launch --dry-run` prints what would run, for both executors, and writes nothing; the
``executor:`` section is checked like every config key; Slurm's states read as arctui statuses. These
need no cluster: the batch script is text, and the state mapping is a table."""

from __future__ import annotations

import pytest

from arctui.supervisor.slurm import SlurmJob, _fields, job_name
from tests.slurm.conftest import write_slurm_config
from tests.supervisor.helpers import make_env


def test_dry_run_prints_the_batch_script_and_writes_nothing(tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    config = write_slurm_config(tmp_path, tiny_model_dir, {
        "nodes": 2, "gpus_per_node": 8, "cpus_per_task": 16, "mem": "64G", "time": "2-00:00:00",
        "account": "arc", "qos": "high", "constraint": "h100", "signal_seconds": 300,
        "sbatch_extra": ["--exclusive"], "setup": ["module load cuda/12.4", "source ~/venv/bin/activate"],
    }, batch_size=32)
    done = env.arctui("launch", str(config), "--dry-run", "--set", "executor.partition=gpu", check=True)
    script = done.stdout
    assert script.startswith("#!/bin/bash\n")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --gpus-per-node=8", "#SBATCH --cpus-per-task=16", "#SBATCH --mem=64G",
                 "#SBATCH --time=2-00:00:00", "#SBATCH --account=arc", "#SBATCH --qos=high",
                 "#SBATCH --constraint=h100", "#SBATCH --signal=B:TERM@300", "#SBATCH --requeue",
                 "#SBATCH --exclusive", "module load cuda/12.4", "source ~/venv/bin/activate"):
        assert line in script.splitlines(), line
    # one accelerate launch per node: 16 processes over 2 machines, this node's rank from Slurm
    for part in ("--num_processes 16", "--num_machines 2", "--machine_rank $SLURM_PROCID",
                 "--main_process_ip $MAIN_IP", "--main_process_port $MAIN_PORT", "--multi_gpu",
                 "-m runner.fine_tuning", "--events_file", "scontrol requeue"):
        assert part in script, part
    assert " --cpu " not in script
    assert not (env.home / "runs").exists() or not any((env.home / "runs").iterdir())
    store = env.store()
    try:
        assert store.list_runs() == []
    finally:
        store.close()


def test_dry_run_local_prints_the_accelerate_command(tmp_path, tiny_model_dir):
    env = make_env(tmp_path)
    config = write_slurm_config(tmp_path, tiny_model_dir)
    done = env.arctui("launch", str(config), "--dry-run", "--executor", "local", check=True)
    assert "#SBATCH" not in done.stdout and "srun" not in done.stdout
    assert "accelerate.commands.launch --num_processes 1 --num_machines 1" in done.stdout
    assert "--cpu" in done.stdout and "-m runner.fine_tuning" in done.stdout


@pytest.mark.parametrize(("override", "message"), [
    ("executor.partiton=gpu", "unknown executor option 'partiton' (did you mean 'partition'?)"),
    ("executor.nodes=0", "executor.nodes must be >= 1"),
    ("executor.type=kubernetes", "executor.type must be one of local, slurm"),
])
def test_bad_executor_options_are_one_line_errors(tmp_path, tiny_model_dir, override, message):
    env = make_env(tmp_path)
    config = write_slurm_config(tmp_path, tiny_model_dir)
    done = env.arctui("launch", str(config), "--set", override)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (env.home / "runs").exists() or not any((env.home / "runs").iterdir())


def test_slurm_states_map_to_arctui_statuses():
    assert SlurmJob("1", "PENDING", "Resources").status == "queued"
    assert SlurmJob("1", "PENDING", "Resources").display == "PENDING (Resources)"
    assert SlurmJob("1", "RUNNING", "None", restarts=2).display == "RUNNING (requeued 2x)"
    assert SlurmJob("1", "COMPLETING").status == "running"
    assert SlurmJob("1", "REQUEUED").status == "queued"
    expected = {"COMPLETED": "completed", "FAILED": "failed", "CANCELLED": "stopped", "TIMEOUT": "stopped",
                "NODE_FAIL": "crashed", "OUT_OF_MEMORY": "failed", "PREEMPTED": "stopped"}
    for state, status in expected.items():
        job = SlurmJob("1", state)
        assert job.status is None
        assert job.outcome()[0] == status
    assert "NODE_FAIL" in SlurmJob("1", "NODE_FAIL").outcome()[1]


def test_scontrol_fields_keep_values_with_spaces():
    fields = _fields("JobId=7 JobName=arctui-3-x JobState=PENDING Reason=Resources Dependency=(null) "
                     "Command=/a b/c.sh WorkDir=/tmp NodeList=(null) Restarts=1")
    assert fields["JobState"] == "PENDING" and fields["Command"] == "/a b/c.sh" and fields["Restarts"] == "1"
    assert job_name(3, "my run/1") == "arctui-3-my_run_1"


def test_a_database_on_nfs_is_recognised(tmp_path):
    from arctui.supervisor.slurm import on_network_filesystem

    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nfiler:/export {tmp_path / 'shared'} nfs4 rw 0 0\n")
    (tmp_path / "shared" / "db").mkdir(parents=True)
    assert on_network_filesystem(tmp_path / "shared" / "db", str(mounts)) == "nfs4"
    assert on_network_filesystem(tmp_path, str(mounts)) is None
    assert on_network_filesystem(tmp_path / "shared-not", str(mounts)) is None
