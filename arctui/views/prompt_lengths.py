"""Prompt lengths for the new-run form: how many training prompts fit a max_seq_len.

The tokenizer needs transformers, which the app never imports (it would pull torch into the UI
process): the analysis runs in a child Python and answers in JSON; answers are cached in
``$ARCTUI_HOME/cache`` by a fingerprint of the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

_ANALYSIS_SCRIPT = r"""
import json, sys
args = json.loads(sys.argv[1])
from runner.analysis import analyze_prompt_lengths
from runner.encoders import DEFAULT_GRID_ENCODER
from runner.errors import UserError
try:
    # The one model-reference resolver (demo:, tiny:, local folders), as launch uses it.
    from arctui.supervisor.resolve import resolve_model
    model = str(resolve_model(args["model"]))
    report = analyze_prompt_lengths(args["data"], model,
        grid_encoder=args["encoder"] or DEFAULT_GRID_ENCODER, prompt_version=args["version"])
except UserError as error:
    print(json.dumps({"error": str(error)}))
    sys.exit(0)
print(json.dumps({"prompts": report.prompts, "percentiles": report.percentiles, "lengths": report.lengths}))
"""


@dataclass(frozen=True)
class PromptLengths:
    """Token lengths of every training prompt of a data set, for the share that fits an msl."""

    prompts: int
    percentiles: dict
    lengths: tuple[int, ...]

    def share_fitting(self, msl: int) -> float:
        if not self.lengths:
            return 0.0
        return sum(1 for n in self.lengths if n <= msl) / len(self.lengths)


def _fingerprint(model: str, data: list[str], encoder: str | None, version: str) -> str:
    """What the analysis depends on: the inputs, and the modification times of local files."""
    import hashlib
    import json
    import os

    def stamp(path: str) -> float | None:
        try:
            return os.stat(os.path.expanduser(path)).st_mtime
        except OSError:
            return None

    model_files = [os.path.join(os.path.expanduser(model), name) for name in ("tokenizer.json", "tokenizer_config.json")]
    parts = [model, [stamp(p) for p in model_files], [(d, stamp(d)) for d in data], encoder, version]
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:20]


def prompt_length_analysis(
    model: str, data: list[str], encoder: str | None, version: str, *, started=None
) -> PromptLengths | None:
    """Run ``runner.analysis.analyze_prompt_lengths`` in a child process (see above), or answer from
    the cache in ``$ARCTUI_HOME/cache``. ``started(process)`` receives the child so the caller can
    end it when the question changes; a child ended that way answers None."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from runner.errors import UserError
    from runner.paths import arctui_home, make_private_dir

    cache = arctui_home() / "cache" / f"prompt-lengths-{_fingerprint(model, data, encoder, version)}.json"
    try:
        answer = json.loads(cache.read_text())
    except (OSError, ValueError):
        answer = None
    if answer is None:
        repo_root = Path(__file__).resolve().parents[2]
        payload = json.dumps({"model": model, "data": data, "encoder": encoder, "version": version})
        process = subprocess.Popen(
            [sys.executable, "-c", _ANALYSIS_SCRIPT, payload],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo_root,
        )
        if started is not None:
            started(process)
        out, err = process.communicate()
        if process.returncode < 0:
            return None  # ended on purpose: the form asked a newer question
        if process.returncode != 0:
            raise UserError((err.strip().splitlines() or ["analysis failed"])[-1])
        answer = json.loads(out.strip().splitlines()[-1])
        if "error" not in answer:
            try:
                make_private_dir(cache.parent)
                cache.write_text(json.dumps(answer))
            except OSError:
                pass  # a cache we cannot write only costs time
    if "error" in answer:
        raise UserError(answer["error"])
    return PromptLengths(answer["prompts"], answer["percentiles"], tuple(answer["lengths"]))


def describe_fit(analysis: PromptLengths, msl: int | None) -> str:
    """``65% of 835 prompts fit msl 2048 (p50 1475, p90 4182, max 10420)``."""
    p = analysis.percentiles
    spread = f"p50 {p.get('p50')}, p90 {p.get('p90')}, max {p.get('max')} tokens"
    if msl is None:
        return f"{analysis.prompts} prompts: {spread}"
    share = analysis.share_fitting(msl)
    text = f"{share * 100:.0f}% of {analysis.prompts} prompts fit msl {msl} ({spread})"
    if share < 0.95:
        text += f"; {100 - share * 100:.0f}% would be skipped"
    return text
