"""Pilot tests of the Compare and GPUs screens."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from arctui.app import make_app
from arctui.screens.compare import CompareScreen, comparison_markdown
from arctui.screens.gpus import GpusScreen
from arctui.widgets.line_plot import LinePlot
from tests.app.test_runs_screen import wait_for


async def open_comparison(pilot, app, ids) -> CompareScreen:
    app.open_comparison([str(i) for i in ids])
    await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
    return app.screen


async def test_compare_shows_differing_params_metrics_ratios_and_curves(seeded):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_comparison(pilot, app, [2, 1])
        comparison = screen.comparison
        assert [r.name for r in comparison.runs] == ["1gpu-2048", "baseline-10240"]
        assert dict(comparison.differing)["max_seq_len"] == ("2048", "10240")
        metrics = dict(comparison.metrics)
        assert metrics["s/step"][0] < metrics["s/step"][1]
        table = screen.query_one("#compare-metrics", DataTable)
        row = [str(c) for c in table.get_row_at([label for label, _ in comparison.metrics].index("peak VRAM"))]
        assert row == ["peak VRAM", "7.0 GB", "21.0 GB 3.00x"]
        curves = screen.query_one("#compare-plot", LinePlot).series
        assert [c.name for c in curves] == ["1gpu-2048", "baseline-10240"]
        assert all(len(c.xs) == 100 for c in curves)


async def test_compare_baseline_moves_and_markdown_is_copied(seeded):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        screen = await open_comparison(pilot, app, [2, 1])
        await pilot.press("b")
        assert screen.comparison.baseline == 1
        assert "baseline-10240" in str(screen.query_one("#compare-title", Static).render())
        await pilot.press("m")
        markdown = screen.markdown
        assert markdown == comparison_markdown(screen.comparison)
        lines = markdown.splitlines()
        assert lines[0] == "| parameter | 1gpu-2048 | baseline-10240 |"
        assert "| max_seq_len | 2048 | 10240 |" in lines
        vram = next(line for line in lines if line.startswith("| peak VRAM"))
        assert vram == "| peak VRAM | 7.0 GB (0.33x) | 21.0 GB |"
        assert lines[-1] == "Ratios are to the baseline run `baseline-10240`."
        await wait_for(pilot, lambda: any("Copied" in n.message for n in app._notifications))
        assert screen.saved_path.read_text() == markdown


async def test_gpus_screen_without_nvidia_driver_says_so(seeded):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("g")
        assert isinstance(app.screen, GpusScreen)
        screen = app.screen
        await wait_for(pilot, lambda: screen._loaded)
        # this machine has no NVIDIA driver: the screen explains instead of showing an empty table
        assert screen.gpus == ()
        text = str(screen.query_one("#gpus-empty", Static).render())
        assert "No NVIDIA GPU" in text and "CPU" in text
        assert not screen.query_one("#gpus-table", DataTable).display
        await pilot.press("escape")
        assert not isinstance(app.screen, GpusScreen)


def two_h100s(indices=None):
    """A reader shaped like ``arctui.supervisor.gpus.read_nvml`` on a two-H100 machine."""
    from arctui.supervisor.gpus import GpuInfo

    gib = 1024**3
    gpus = [
        GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-0", int(9.5 * gib), 80 * gib, 87.0, 310.0),
        GpuInfo(1, "NVIDIA H100 80GB HBM3", "GPU-1", int(0.5 * gib), 80 * gib, 0.0, 70.0),
    ]
    return [g for g in gpus if indices is None or g.index in indices]


async def test_gpus_screen_lists_gpus_and_holders(seeded):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now, gpu_reader=two_h100s)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("g")
        screen = app.screen
        await wait_for(pilot, lambda: screen.query_one("#gpus-table", DataTable).row_count == 2)
        table = screen.query_one("#gpus-table", DataTable)
        # run 3 holds GPU 0 in the store (gpu_ids), so the screen names it
        assert str(table.get_cell("0", "run")) == "1gpu-2048-pdbs2 (#3)"
        assert str(table.get_cell("1", "run")) == "free"
        assert str(table.get_cell("0", "util")) == "87%"
        assert str(table.get_cell("0", "memory")).endswith("9.5/80.0 GB")
        await pilot.press("enter")
        await pilot.pause()
        from arctui.screens.run import RunScreen

        assert isinstance(app.screen, RunScreen) and app.screen.run_id == "3"
