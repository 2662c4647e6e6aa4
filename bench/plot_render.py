"""Chart render time: the app's plotter (plotext, ``arctui.widgets.line_plot``) against the braille
plotter it replaced, and against a frame.

    .venv/bin/python bench/plot_render.py [--points 400] [--repeats 30] [--baseline COMMIT]

Both draw the same two loss series (train and eval, ``--points`` points each: the Run screen's
downsampling cap) at the loss panel's sizes at 120x40 (56x16 cells) and 80x24 (36x8), from scratch
each time, as a redraw does. The hand-written braille plotter is read from git at ``--baseline``
(the last commit that had it) and loaded as a module; both run interleaved in the same process, so
the printed ratio holds on a loaded machine. The Run screen redraws a plot only when its series
change, at most twice a second, three plots at most: a render well under a frame (16.7 ms) keeps
input responsive. Measured when the choice was made (2 shared cores): 0.83 ms vs 4.87 ms at 56x16,
0.53 vs 3.54 ms at 36x8, i.e. plotext 6-7x slower and within the budget, so the app uses plotext.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arctui.widgets.line_plot import SERIES_COLOURS, Series, render_plot  # noqa: E402

SIZES = ((56, 16), (36, 8))
FRAME_MS = 1000 / 60
BRAILLE_COMMIT = "c5674de"


def curves(points: int) -> tuple[Series, Series]:
    xs = tuple(float(i) for i in range(1, points + 1))
    train = tuple(0.4 + 1.6 * math.exp(-x / 60) + 0.03 * math.sin(x * 1.7) for x in xs)
    eval_xs = xs[::20]
    evals = tuple(0.5 + 1.6 * math.exp(-x / 60) for x in eval_xs)
    return Series("train", xs, train, SERIES_COLOURS[0]), Series("eval", eval_xs, evals, SERIES_COLOURS[1])


def braille_renderer(commit: str):
    """``render_plot`` of the braille plotter at ``commit`` (None when git cannot show it)."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:arctui/widgets/line_plot.py"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "braille_line_plot.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("braille_line_plot", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return lambda series, width, height: module.render_plot(
        [module.Series(s.name, s.xs, s.ys, s.colour) for s in series], width, height)


def timed(render, series, size, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        render(series, *size)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--baseline", default=BRAILLE_COMMIT, help="commit with the braille plotter")
    args = parser.parse_args()
    series = curves(args.points)
    render_plot(series, *SIZES[0])  # imports plotext once
    braille = braille_renderer(args.baseline)
    if braille is None:
        print(f"(git cannot show the braille plotter at {args.baseline}: plotext figures only)")
    print(f"{'size':>6} {'plotext ms':>11} {'braille ms':>11} {'ratio':>6} {'of a frame':>11}")
    for size in SIZES:
        ours = theirs = 0.0
        for _ in range(3):  # interleaved rounds: a load spike hits both
            ours += timed(render_plot, series, size, args.repeats) / 3
            if braille is not None:
                theirs += timed(braille, series, size, args.repeats) / 3
        ratio = f"{ours / theirs:>5.1f}x" if theirs else "     -"
        braille_ms = f"{theirs * 1000:>11.2f}" if theirs else f"{'-':>11}"
        print(f"{size[0]:>3}x{size[1]:<2} {ours * 1000:>11.2f} {braille_ms} {ratio} "
              f"{ours * 1000 / FRAME_MS:>10.0%}")


if __name__ == "__main__":
    main()
