"""The runner for real: subprocesses under ``python -m`` and ``accelerate launch``, tiny model on CPU."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from runner.events import read_events
from tests.conftest import REPO_ROOT
from tests.runner.training_helpers import (
    PROMPT_VERSION,
    read_jsonl,
    run_module,
    runner_env,
    tiny_flags,
)

pytestmark = pytest.mark.slow

STEP_FIELDS = {
    "step": int, "max_steps": int, "loss": float, "learning_rate": float, "grad_norm": float,
    "seconds_per_step": float, "tokens_per_second": float, "samples_per_second": float,
    "padding_share": (int, float), "peak_memory_gb": dict,
}


def accelerate_launch(num_processes: int, flags: list[str]) -> subprocess.CompletedProcess:
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    return subprocess.run(
        [accelerate, "launch", "--num_processes", str(num_processes), "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu", "-m", "runner.fine_tuning", *flags],
        cwd=REPO_ROOT, env=runner_env(), capture_output=True, text=True,
    )


def torchrun(num_processes: int, flags: list[str]) -> subprocess.CompletedProcess:
    """Data parallel on CPU (gloo): ``accelerate launch --cpu`` runs one process only, while
    ``accelerate launch --multi_gpu`` hands GPUs to this same torch launcher."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(num_processes),
         "-m", "runner.fine_tuning", *flags],
        cwd=REPO_ROOT, env=runner_env(), capture_output=True, text=True,
    )


def kinds(events):
    return [e["event"] for e in events]


def assert_well_formed(events):
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(b["time"] >= a["time"] for a, b in zip(events, events[1:], strict=False))
    # Only the loading_model phase comes before start (the model loads before start can count it).
    assert [e["event"] for e in events[:2]] == ["phase", "start"] and events[0]["phase"] == "loading_model"
    assert events[-1]["event"] == "end"
    for event in events:
        if event["event"] == "step":
            for name, kind in STEP_FIELDS.items():
                assert isinstance(event[name], kind), (name, event)
            assert 0 <= event["padding_share"] < 1 and event["loss"] > 0


def test_loss_clearly_falls_on_a_small_fixed_arc_subset(tmp_path, tiny_model_dir, data):
    out = tmp_path / "run"
    proc = run_module(
        tiny_flags(tiny_model_dir, data["train"], out, "--no-use_lora", "--max_steps", "40",
                   "--logging_steps", "10", "--batch_size", "4", "--per_device_train_batch_size", "4",
                   "--learning_rate", "3e-3", "--warmup_ratio", "0.1", "--save_steps", "1000")
    )
    assert proc.returncode == 0, proc.stderr
    losses = [e["loss"] for e in read_events(out / "events.jsonl") if e["event"] == "step"]
    assert len(losses) == 4
    # Random init starts near ln(vocab) ~ 4.6; learning the answer format alone takes it far below.
    assert losses[0] > 3.5 and losses[-1] < 0.6 * losses[0], losses
    assert (out / "model.safetensors").is_file()  # full fine-tuning saves the whole model


def test_accelerate_launch_writes_a_well_formed_event_file(tmp_path, tiny_model_dir, data):
    out = tmp_path / "run"
    proc = accelerate_launch(
        1,
        tiny_flags(tiny_model_dir, data["train"], out, "--max_steps", "4", "--logging_steps", "1",
                   "--eval_steps", "2", "--save_steps", "2", "--batch_size", "4",
                   "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", val=data["val"]),
    )
    assert proc.returncode == 0, proc.stderr
    events = read_events(out / "events.jsonl")
    assert_well_formed(events)
    assert kinds(events).count("step") == 4 and kinds(events).count("eval") == 2
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2, 4]
    start, end = events[1], events[-1]
    assert start["world_size"] == 1 and start["device"] == "cpu" and start["start_step"] == 0
    assert start["datasets"]["train_tasks"] == 10 and start["datasets"]["val_prompts"] > 0
    assert set(start["prompt_lengths"]) == {"p50", "p75", "p90", "p95", "p97", "max", "sample_size"}
    # Fewer prompts than the length sample's size: every one was measured.
    assert start["prompt_lengths"]["sample_size"] == start["datasets"]["train_prompts"]
    assert 0 < start["trainable_parameters"] < start["total_parameters"]
    assert set(start["versions"]) == {"python", "torch", "transformers", "peft", "accelerate"}
    assert end["status"] == "completed" and end["step"] == 4 and end["eval_loss"] > 0
    checkpoint = out / "checkpoint-4"
    for name in ("adapter_model.safetensors", "tokenizer.json", "optimizer.pt", "scheduler.pt",
                 "rng_state_0.json", "trainer_state.json"):
        assert (checkpoint / name).is_file(), name
    assert (out / "adapter_model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert json.loads((out / "cfg.json").read_text())["random_seed"] == 3


def test_two_data_parallel_processes_train_like_one(tmp_path, tiny_model_dir, data):
    flags = ["--no-use_lora", "--max_steps", "3", "--logging_steps", "1", "--eval_steps", "3",
             "--batch_size", "4", "--per_device_train_batch_size", "1", "--learning_rate", "3e-3"]
    parallel = torchrun(2, tiny_flags(tiny_model_dir, data["train"], tmp_path / "dp", *flags, val=data["val"]))
    assert parallel.returncode == 0, parallel.stderr
    single = run_module(tiny_flags(tiny_model_dir, data["train"], tmp_path / "one", *flags, val=data["val"]))
    assert single.returncode == 0, single.stderr

    def curve(folder):
        events = read_events(folder / "events.jsonl")
        return [(e["event"], e["step"], e.get("loss", e.get("eval_loss"))) for e in events
                if e["event"] in ("step", "eval")], events[1]["world_size"]

    (dp_curve, dp_world), (one_curve, one_world) = curve(tmp_path / "dp"), curve(tmp_path / "one")
    assert (dp_world, one_world) == (2, 1)
    # The loss is normalised over the global batch's answer tokens, so splitting it over processes
    # changes nothing but rounding.
    assert [c[:2] for c in dp_curve] == [c[:2] for c in one_curve]
    for (_, _, a), (_, _, b) in zip(dp_curve, one_curve, strict=True):
        assert math.isclose(a, b, rel_tol=1e-4)


def test_seed_command_5_runs_with_only_paths_changed(tmp_path, tiny_model_dir, capsys):
    from runner.data import write_partition

    train, val = write_partition(tmp_path / "new_partitions")
    out = tmp_path / "models" / "05_1gpu_2048msl_pdbs2"
    flags = [
        "--model_path", str(tiny_model_dir), "--n_gpus", "1", "--lora_r", "32",
        "--train_datasets", str(train), "output-from-examples-v1",
        "--val_dataset", str(val), "output-from-examples-v1",
        "--grid_encoder", "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))",
        "--output_dir", str(out),
        "--max_seq_len", "1024",  # the seed's 2048, shortened for CPU
        "--device_map", "None",
        "--max_steps", "2",  # the seed's 100
        "--logging_steps", "10", "--batch_size", "16", "--verbose", "--learning_rate", "1e-4",
        "--per_device_train_batch_size", "2",
    ]
    proc = run_module(flags)
    assert proc.returncode == 0, proc.stderr
    assert "step 2/2" in proc.stdout  # --verbose prints progress
    events = read_events(out / "events.jsonl")
    assert_well_formed(events)
    start = events[1]
    assert start["datasets"]["train_tasks"] == 700 and start["gradient_accumulation_steps"] == 8
    assert 0 < start["share_over_msl"] < 1
    # arc24's LoRA variant and optimizer at the seed's date; bitsandbytes needs CUDA, so on CPU the
    # optimizer actually used is torch's AdamW, and the start event says so.
    assert start["lora"]["rslora"] and start["lora"]["dora"] and start["lora"]["scale"] == 64 / 32 ** 0.5
    assert start["optimizer"] == {"requested": "paged_adamw_8bit", "used": "adamw_torch"}
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [2] and steps[0]["samples_per_second"] > 0
    # eval_steps (50) is beyond max_steps: as in arc24, no evaluation at all.
    assert "eval" not in kinds(events)
    assert events[-1]["status"] == "completed" and events[-1]["eval_loss"] is None

    # A plain-LoRA run beside it, then both through the store: `arctui show` and `arctui compare` say
    # which LoRA variant and optimizer each run really trained with.
    plain = tmp_path / "models" / "plain"
    proc = run_module([*flags[: flags.index("--output_dir")], "--output_dir", str(plain),
                       *flags[flags.index("--output_dir") + 2 :], "--no-use_rslora", "--no-use_dora",
                       "--optim", "adamw_torch", "--no-verbose"])
    assert proc.returncode == 0, proc.stderr
    show, compare = show_and_compare(tmp_path / "arctui.db", [out, plain], capsys)
    assert "LoRA (as trained) r32 rsLoRA + DoRA, scale 11.3" in show
    assert "optimizer (used) adamw_torch (asked for paged_adamw_8bit)" in show
    rows = {line.split("  ")[0]: line for line in compare.splitlines()}
    assert "r32 rsLoRA + DoRA, scale 11.3" in rows["LoRA (as trained)"]
    assert "r32 plain LoRA, scale 2" in rows["LoRA (as trained)"]
    assert "adamw_torch (asked for paged_adamw_8bit)" in rows["optimizer (used)"]
    assert {"use_rslora", "use_dora", "optim"} <= set(rows)


def show_and_compare(db_path, outputs, capsys) -> tuple[str, str]:
    """Store each run (its cfg.json and events, as the supervisor does), then `arctui show` the first
    and `arctui compare` them all; returns both outputs."""
    from arctui.cli import main
    from db.store import RunStore

    url = f"sqlite:///{db_path}"
    ids = []
    with RunStore.open(url) as store:
        for out in outputs:
            config = {"name": out.name, **json.loads((out / "cfg.json").read_text())}
            run = store.create_run(config, name=out.name)
            store.set_status(run.id, "running")
            store.ingest_events(run.id, read_events(out / "events.jsonl"))
            store.set_status(run.id, "completed", exit_code=0)
            ids.append(str(run.id))
    capsys.readouterr()
    assert main(["--db", url, "show", ids[0]]) == 0
    show = capsys.readouterr().out
    assert main(["--db", url, "compare", *ids]) == 0
    return show, capsys.readouterr().out


def wait_for_event(path, kind, process):
    while process.poll() is None:
        if path.exists() and any(e["event"] == kind for e in read_events(path)):
            return
        time.sleep(0.1)
    raise AssertionError(f"runner exited ({process.returncode}) before a {kind} event")


def test_sigterm_checkpoints_and_resume_sees_the_same_data(tmp_path, tiny_model_dir, data):
    flags = ["--max_steps", "8", "--logging_steps", "1", "--save_steps", "100", "--batch_size", "2",
             "--per_device_train_batch_size", "1", "--learning_rate", "1e-3"]
    reference = tmp_path / "reference"
    assert run_module(tiny_flags(tiny_model_dir, data["train"], reference, *flags)).returncode == 0

    out = tmp_path / "interrupted"
    process = subprocess.Popen(
        [sys.executable, "-m", "runner.fine_tuning", *tiny_flags(tiny_model_dir, data["train"], out, *flags)],
        cwd=REPO_ROOT, env=runner_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    wait_for_event(out / "events.jsonl", "step", process)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate()
    assert process.returncode == 0, stderr
    events = read_events(out / "events.jsonl")
    end = events[-1]
    assert end["event"] == "end" and end["status"] == "stopped"
    stopped_at = end["step"]
    assert 1 <= stopped_at < 8
    assert (out / f"checkpoint-{stopped_at}" / "trainer_state.json").is_file()
    assert events[-2] == {**events[-2], "event": "checkpoint", "step": stopped_at}

    resumed = run_module(tiny_flags(tiny_model_dir, data["train"], out, *flags))
    assert resumed.returncode == 0, resumed.stderr
    events = read_events(out / "events.jsonl")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # numbering continues
    second_start = [e for e in events if e["event"] == "start"][1]
    assert second_start["start_step"] == stopped_at
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == list(range(1, 9))
    assert events[-1]["status"] == "completed" and events[-1]["step"] == 8

    def order(folder):
        return {line["step"]: line["samples"] for line in read_jsonl(folder / "data_order.jsonl")}

    assert order(out) == order(reference)  # every step, before and after the resume, saw the same samples
    # Same data, optimizer state and RNG: the resumed run ends where the uninterrupted one did.
    reference_losses = [e["loss"] for e in read_events(reference / "events.jsonl") if e["event"] == "step"]
    resumed_losses = [e["loss"] for e in events if e["event"] == "step"]
    for a, b in zip(reference_losses, resumed_losses, strict=True):
        assert math.isclose(a, b, rel_tol=1e-4)


def test_smollm2_completes_two_steps_on_real_arc_tasks(tmp_path, demo_model_dir, data):
    out = tmp_path / "run"
    proc = run_module(
        ["--model_path", str(demo_model_dir), "--train_datasets", str(data["train"]), PROMPT_VERSION,
         "--output_dir", str(out), "--max_seq_len", "1024", "--device_map", "None", "--n_gpus", "1",
         "--max_steps", "2", "--logging_steps", "1", "--batch_size", "2", "--per_device_train_batch_size", "1",
         "--random_seed", "1", "--no-verbose"]
    )
    assert proc.returncode == 0, proc.stderr
    events = read_events(out / "events.jsonl")
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2] and events[-1]["status"] == "completed"
    # A pretrained model already predicts ARC answers far better than chance (ln 49152 ~ 10.8).
    assert all(0 < e["loss"] < 4 for e in steps), steps
    assert events[1]["trainable_parameters"] > 0
    assert (out / "adapter_model.safetensors").is_file()
