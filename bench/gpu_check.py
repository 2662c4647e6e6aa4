"""The Python parts of bench/gpu_check.sh: what this Python lacks, which attention, what a run stored.

    python bench/gpu_check.py requirements      # exit 1 when a requirement of arctui is unmet
    python bench/gpu_check.py attention cuda    # the device, its bf16 and the runner's attention choice
    python bench/gpu_check.py run-report DB_URL [--json FILE] [--need-vram]

``requirements`` reads pyproject.toml (arctui is not installed on the device machine, only its folder is
on PYTHONPATH) and follows each requirement into the installed packages' own, so a version the image
holds but arctui's stack refuses (say a textual older than the pin) counts as unmet like a missing package. Unmet
needs of arctui's direct requirements fail it; deeper ones are printed as warnings.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def unmet_requirements() -> tuple[list[str], list[str]]:
    """(problems with arctui's own requirements, problems deeper down), one line each."""
    from packaging.requirements import Requirement

    direct = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    problems: tuple[list[str], list[str]] = ([], [])
    todo = [(Requirement(line), "arctui", 0) for line in direct]
    seen: set[str] = set()
    while todo:
        req, wanted_by, depth = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            problems[depth > 0].append(f"{req.name} is missing (needed by {wanted_by}: {req})")
            continue
        if not req.specifier.contains(dist.version, prereleases=True):
            problems[depth > 0].append(f"{req.name} {dist.version} does not satisfy {wanted_by}'s {req}")
        name = dist.metadata["Name"].lower()
        if name in seen:
            continue
        seen.add(name)
        todo.extend((Requirement(line), name, depth + 1) for line in dist.requires or [])
    return problems


def requirements() -> int:
    own, deeper = unmet_requirements()
    for line in own:
        print(f"unmet: {line}")
    for line in deeper:
        print(f"warning: {line}")
    if not own:
        import torch
        import transformers

        print(f"arctui's requirements are met (torch {torch.__version__}, transformers {transformers.__version__})")
    return 1 if own else 0


def attention(device: str) -> int:
    import torch

    from runner.fine_tuning import attention_implementation

    if device == "cuda":
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
              f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    else:
        print(f"device: CPU, torch {torch.__version__}")
    _name, line = attention_implementation(device, torch.bfloat16)
    print(line)
    return 0


def run_report(db_url: str, json_path: str, need_vram: bool) -> int:
    """The newest run in the store: ended completed, with loss points and (``need_vram``) GPU samples
    taken while it trained."""
    from db.store import RunStore

    store = RunStore.open(db_url)
    runs = store.list_runs(limit=1)
    if not runs:
        print("no run in the store")
        return 1
    summary = runs[0]
    run = summary.run
    samples = store.gpu_samples(run.id)
    used = [s.memory_used_mb for s in samples if s.memory_used_mb is not None]
    facts = {
        "run": run.id, "status": run.status, "steps": summary.last_step, "loss": summary.final_loss,
        "s_per_step": summary.seconds_per_step, "tokens_per_second": summary.tokens_per_second,
        "peak_vram_gb": summary.peak_vram_gb, "gpu_samples": len(samples),
        "max_sampled_vram_mb": max(used, default=None), "gpus": sorted({s.gpu_name for s in samples}),
    }
    print(json.dumps(facts))
    if json_path:
        Path(json_path).write_text(json.dumps(facts, indent=2) + "\n")
    ok = run.status == "completed" and bool(facts["steps"])
    if need_vram:
        # The first sample is taken before the model loads; one taller than the CUDA context alone
        # (a few hundred MiB) shows the sampler read the GPU while the run trained.
        ok = ok and bool(used) and max(used) > 1024
    return 0 if ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("requirements")
    attention_parser = commands.add_parser("attention")
    attention_parser.add_argument("device", choices=("cpu", "cuda"))
    report = commands.add_parser("run-report")
    report.add_argument("db_url")
    report.add_argument("--json", default="")
    report.add_argument("--need-vram", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "requirements":
        return requirements()
    if args.command == "attention":
        return attention(args.device)
    return run_report(args.db_url, args.json, args.need_vram)


if __name__ == "__main__":
    sys.exit(main())
