"""The UI process never imports torch or transformers: they cost seconds and gigabytes, and the
runs live in their own processes. Checked in a fresh interpreter that opens every screen and waits
for each to show its data (its workers have run) before moving on."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import asyncio, json, sys, time
from arctui.app import make_app
from arctui.screens.compare import CompareScreen
from arctui.screens.gpus import GpusScreen
from arctui.screens.help import HelpScreen
from arctui.screens.new_run import NewRunScreen
from arctui.screens.run import RunScreen
from arctui.screens.runs import RunsScreen

async def until(pilot, predicate, what):
    deadline = time.monotonic() + float(sys.argv[2])
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"never happened: {what}")
        await pilot.pause(0.05)

def on(kind, ready=lambda screen: True):
    return lambda app: isinstance(app.screen, kind) and ready(app.screen)

async def visit(url):
    app = make_app(url)  # prompt-length analysis on: it must run in a child process
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: on(RunsScreen, lambda s: len(s.rows) == 5)(app), "the runs")
        app.open_run("1")
        await until(pilot, lambda: on(RunScreen, lambda s: s.detail is not None)(app), "run 1")
        app.pop_screen()
        app.open_comparison(["1", "2"])
        await until(pilot, lambda: on(CompareScreen, lambda s: s.comparison is not None)(app), "the comparison")
        app.pop_screen()
        app.action_gpus()
        await until(pilot, lambda: on(GpusScreen, lambda s: s.gpus or s.unavailable_reason)(app), "the GPUs")
        app.pop_screen()
        app.push_screen(NewRunScreen(clone_from="1"))
        await until(pilot, lambda: on(NewRunScreen, lambda s: s.query("#field-name") and s.text("name")
                                      and not s.pending)(app), "the form, checked")
        app.action_help()
        await until(pilot, lambda: on(HelpScreen)(app), "the help")

asyncio.run(visit(sys.argv[1]))
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_opening_every_screen_imports_neither_torch_nor_transformers(seeded, repo_root, wait_seconds):
    done = subprocess.run([sys.executable, "-c", PROBE, seeded.url, str(wait_seconds)], cwd=repo_root,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "textual" in loaded and "sqlalchemy" in loaded
    assert not {"torch", "transformers", "peft", "accelerate"} & loaded
