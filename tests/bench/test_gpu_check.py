"""bench/gpu_check.sh: its CPU rehearsal runs every part through the real CLI, runner and benches, and
asked for CUDA where there is none it refuses with one line and writes nothing.

The GPU run itself happens only on a lent GPU machine (docs/benchmarks.md); these tests keep the
script working between such loans.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

PARTS = ("setup", "nvidia_smi", "models", "attention", "launch", "train_speed", "seed_table")


def has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def run_check(repo_root, tmp_path, *args, **env):
    environ = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"),
               "GPUCHECK_DIR": str(tmp_path / "no-carried-folder"), "TMPDIR": str(tmp_path), **env}
    return subprocess.run(["bash", str(repo_root / "bench" / "gpu_check.sh"), *args], cwd=tmp_path,
                          env=environ, capture_output=True, text=True)


def summary_lines(out_dir) -> dict[str, str]:
    """part name -> its PASS/FAIL/SKIP line, from summary.txt."""
    lines = (out_dir / "summary.txt").read_text().splitlines()
    assert lines[0].startswith("gpu_check (")
    return {line.split()[1]: line for line in lines[1:]}


@pytest.mark.skipif(has_gpu(), reason="this machine has an NVIDIA GPU: the script would run for real")
def test_refuses_cuda_without_a_gpu_in_one_line(repo_root, tmp_path):
    result = run_check(repo_root, tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "no NVIDIA GPU found" in lines[0] and "--cpu-dry-run" in lines[0]
    assert not (tmp_path / "out").exists()


def test_refuses_an_unknown_argument_in_one_line(repo_root, tmp_path):
    result = run_check(repo_root, tmp_path, "--cpu-dry-rnu")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "unknown argument '--cpu-dry-rnu'" in lines[0]
    assert not (tmp_path / "out").exists()


def test_parts_that_fail_are_listed_and_the_script_still_exits_0(repo_root, tmp_path):
    # No time left for any part: each must end FAIL in the summary, and the script must still exit 0
    # (one device run has to report every part, whatever one of them did).
    result = run_check(repo_root, tmp_path, "--cpu-dry-run", BUDGET="0")
    assert result.returncode == 0, result.stderr
    parts = summary_lines(tmp_path / "out")
    assert list(parts) == list(PARTS)
    assert all(line.startswith("FAIL") and "timed out" in line for line in parts.values()), parts


@pytest.mark.slow
def test_cpu_dry_run_passes_every_part(repo_root, tmp_path, demo_model_dir):
    # The shape model takes its tokenizer from the demo folder, as on the device from the carried one.
    result = run_check(repo_root, tmp_path, "--cpu-dry-run", ARCTUI_MODELS=str(demo_model_dir.parent))
    out = tmp_path / "out"
    assert result.returncode == 0, result.stderr
    parts = summary_lines(out)
    assert list(parts) == list(PARTS)
    assert parts["nvidia_smi"].startswith("SKIP")
    failed = {name: line for name, line in parts.items() if name != "nvidia_smi" and not line.startswith("PASS")}
    assert not failed, (tmp_path / "out" / "gpu_check.log").read_text()[-6000:]
    assert "attention: sdpa" in parts["attention"]
    run = json.loads((out / "launch_run.json").read_text())
    assert run["status"] == "completed" and run["steps"] == 4 and run["gpu_samples"] == 0
    speeds = json.loads((out / "train_speed.json").read_text())["results"]
    assert {(r["msl"], r["variant"]) for r in speeds} == {(1024, "baseline"), (1024, "both")}
    assert all(r["tokens_per_second"] > 0 for r in speeds)
    table = (out / "seed_table.txt").read_text()
    assert "runner/Trainer" in table and table.splitlines()[1].split()[0] == "1024"
