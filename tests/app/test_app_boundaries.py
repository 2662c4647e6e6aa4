"""The UI process never imports torch or transformers: they cost seconds and gigabytes, and the
runs live in their own processes. Checked in a fresh interpreter that opens every screen."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.app.conftest import REPO_ROOT

PROBE = r"""
import asyncio, json, sys
from arctui.app import make_app
from arctui.screens.new_run import NewRunScreen

async def visit(url):
    app = make_app(url)  # prompt-length analysis on: it must run in a child process
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)
        app.open_run("1"); await pilot.pause(0.5); app.pop_screen()
        app.open_comparison(["1", "2"]); await pilot.pause(0.5); app.pop_screen()
        app.action_gpus(); await pilot.pause(0.5); app.pop_screen()
        app.push_screen(NewRunScreen(clone_from="1")); await pilot.pause(2.0)
        app.action_help(); await pilot.pause(0.2)

asyncio.run(visit(sys.argv[1]))
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_opening_every_screen_imports_neither_torch_nor_transformers(seeded):
    done = subprocess.run([sys.executable, "-c", PROBE, seeded.url], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "textual" in loaded and "sqlalchemy" in loaded
    assert not {"torch", "transformers", "peft", "accelerate"} & loaded
