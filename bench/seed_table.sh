#!/usr/bin/env bash
# Reproduce the seed's one-GPU speed/VRAM rows (Iteration 33, SmolLM-135M-Instruct, batch 16, lr 1e-4)
# with a random-weight model of SmolLM-135M's shape (same compute as the real one), next to the
# published figures and a Hugging Face Trainer reference loop run on the same batches on this GPU,
# so the runner/reference ratio holds across machines.
#
#   bench/seed_table.sh                      # GPU 0, 15 steps per row and loop (~5 min on one H100)
#   GPU=1 STEPS=30 MODEL_DIR=/path/to/shape-model bench/seed_table.sh
#   CPU_REHEARSAL=1 STEPS=4 MODEL_DIR=/path/to/tiny-model bench/seed_table.sh
#
# Needs an NVIDIA GPU; exits 2 with one line when there is none. CPU_REHEARSAL=1 runs the first row
# on the CPU at msl 1024 and batch 4, to check the script itself (bench/gpu_check.sh --cpu-dry-run);
# its figures mean nothing. The model is built once with
# `arctui models shape smollm-135m DIR` (it needs the SmolLM2 tokenizer from `arctui models demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
ARCTUI=${ARCTUI:-.venv/bin/arctui}
STEPS=${STEPS:-15}
# 3 warm-up steps, fewer when STEPS is small: runner_overhead.py needs a measured step past them
WARMUP=${WARMUP:-$(( STEPS > 3 ? 3 : (STEPS > 1 ? STEPS - 1 : 0) ))}
export CUDA_VISIBLE_DEVICES=${GPU:-${CUDA_VISIBLE_DEVICES:-0}}
CPU_REHEARSAL=${CPU_REHEARSAL:-}
BATCH=16

if [ -n "$CPU_REHEARSAL" ]; then
    export CUDA_VISIBLE_DEVICES=""
elif ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "seed_table.sh: error: no NVIDIA GPU found (nvidia-smi); run it on a GPU machine, or use the CPU benches bench/runner_overhead.py and bench/padding.py" >&2
    exit 2
elif ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "seed_table.sh: error: torch in $PY has no CUDA (CPU wheel?); install a CUDA build of torch, e.g. make setup TORCH_SPEC=" >&2
    exit 2
fi

MODEL_DIR=${MODEL_DIR:-${ARCTUI_MODELS:-${ARCTUI_HOME:-$HOME/.arctui}/models}/smollm-135m-shape}
if [ ! -f "$MODEL_DIR/config.json" ]; then
    "$ARCTUI" models shape smollm-135m "$MODEL_DIR"
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The seed's partition: ARC-AGI-1 training + 300 evaluation tasks (numpy seed 7).
"$PY" -c "import sys; from runner.data import write_partition; write_partition(sys.argv[1])" "$WORK/data"

# msl  per-device  published s/step  published VRAM
ROWS=(
    "10240 1 3.3 ~21 GB"
    "2048 1 2.9 ~7 GB"
    "2048 2 1.8 -"
)
if [ -n "${SEED_ROWS:-}" ]; then  # e.g. SEED_ROWS="2 3": only those rows, for a short GPU loan
    PICKED=()
    for n in $SEED_ROWS; do PICKED+=("${ROWS[$((n - 1))]}"); done
    ROWS=("${PICKED[@]}")
fi
if [ -n "$CPU_REHEARSAL" ]; then
    ROWS=("1024 ${ROWS[0]#* }")
    BATCH=4
fi
[ -n "$CPU_REHEARSAL" ] || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for i in "${!ROWS[@]}"; do
    read -r msl pd _ <<<"${ROWS[$i]}"
    echo "row $((i + 1))/${#ROWS[@]}: msl $msl, per-device batch $pd, $STEPS steps each for the runner and the reference" >&2
    "$PY" bench/runner_overhead.py --model "$MODEL_DIR" --train "$WORK/data/train_rs7.json" \
        --max_seq_len "$msl" --per_device "$pd" --batch_size "$BATCH" --steps "$STEPS" --warmup "$WARMUP" --rounds 1 \
        --json "$WORK/row$i.json" >"$WORK/row$i.log" 2>&1 || { cat "$WORK/row$i.log" >&2; exit 1; }
done

"$PY" - "$WORK" "${ROWS[@]}" <<'EOF'
import json, sys
from pathlib import Path

work, rows = Path(sys.argv[1]), sys.argv[2:]


def gb(value):  # peak memory: None on a CPU rehearsal
    return "-" if value is None else f"{value:.1f}"


print(f"{'msl':>6} {'pd':>3} | {'seed s/step':>11} {'seed VRAM':>9} | {'runner s/step':>13} {'runner GB':>9} "
      f"| {'Trainer s/step':>14} {'Trainer GB':>10} | {'runner/Trainer':>14} {'seed/Trainer':>12}")
for i, row in enumerate(rows):
    msl, pd, seed_s, *seed_vram = row.split()
    r = json.loads((work / f"row{i}.json").read_text())
    print(f"{msl:>6} {pd:>3} | {seed_s:>11} {' '.join(seed_vram):>9} | {r['runner_s_per_step']:>13.2f} "
          f"{gb(r['runner_peak_gb']):>9} | {r['trainer_s_per_step']:>14.2f} {gb(r['trainer_peak_gb']):>10} | "
          f"{r['ratio']:>14.3f} {float(seed_s) / r['trainer_s_per_step']:>12.2f}")
print("seed figures: one older GPU (Iteration 33); runner/Trainer is the figure that carries across machines.")
EOF
