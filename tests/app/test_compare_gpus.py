"""Pilot tests of the Compare and GPUs screens."""

from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable, Static

from arctui.app import make_app
from arctui.cli import main
from arctui.screens.compare import CELL_WIDTH, CompareScreen, comparison_markdown
from arctui.screens.gpus import GpusScreen
from arctui.views.figures import FIGURE_NOTES
from arctui.widgets.line_plot import LinePlot
from db.store import RunStore
from tests.app.conftest import config


async def open_comparison(wait_for, pilot, app, ids) -> CompareScreen:
    app.open_comparison([str(i) for i in ids])
    await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
    return app.screen


def cli(capsys, url: str, *argv: str) -> str:
    """``arctui --db URL ARGV`` in this process; its standard output."""
    assert main(["--db", url, *argv]) == 0
    return capsys.readouterr().out


def markdown_table(markdown: str, first_header: str) -> list[list[str]]:
    """The header and rows of the markdown table whose first header is ``first_header``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not line.startswith("|---"):
            rows.append([cell.strip() for cell in line[1:-1].split("|")])
    return rows


def data_table(table: DataTable) -> list[list[str]]:
    """A DataTable's header and rows as plain text, through its public API."""
    header = [str(column.label) for column in table.ordered_columns]
    return [header, *([str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count))]


async def test_cli_and_app_show_the_same_comparison(seeded, wait_for, capsys):
    record = json.loads(cli(capsys, seeded.url, "compare", "2", "1", "--format", "json"))
    markdown = cli(capsys, seeded.url, "compare", "2", "1", "--format", "markdown")
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_comparison(wait_for, pilot, app, [2, 1])
        metrics = data_table(screen.query_one("#compare-metrics", DataTable))
        params = data_table(screen.query_one("#compare-params", DataTable))
        copied = screen.markdown
    # the same tables, cell for cell, in the terminal's markdown and on the screen
    assert metrics == markdown_table(markdown, "metric")
    assert params == markdown_table(markdown, "parameter")
    assert copied == markdown
    # ...and the same numbers as the JSON: run 2 is the baseline (the first given)
    assert record["baseline"] == 2 and [r["name"] for r in record["runs"]] == ["1gpu-2048", "baseline-10240"]
    other = record["runs"][1]
    assert other["metrics"]["peak_vram_gb"] == 21.0 and other["ratios"]["peak_vram_gb"] == pytest.approx(3.0)
    rows = {row[0]: row for row in metrics[1:]}
    assert metrics[0] == ["metric", "better", "#2 1gpu-2048 (baseline)", "#1 baseline-10240"]
    assert rows["peak VRAM"] == ["peak VRAM", "lower", "7.0 GB", "21.0 GB (3.00x, worse)"]
    s_ratio = other["ratios"]["s_per_step"]
    assert s_ratio > 1 and rows["s/step (median)"][3].endswith(f"({s_ratio:.2f}x, worse)")
    assert rows["tok/s (mean)"][1] == "higher" and rows["accuracy"][2:] == ["4.00%", "5.00% (1.25x, better)"]
    assert "final loss" not in rows and "loss" in rows  # one loss figure, not two rows with one value


async def test_compare_shows_differing_params_metrics_ratios_and_curves(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_comparison(wait_for, pilot, app, [2, 1])
        comparison = screen.comparison
        assert [r.name for r in comparison.runs] == ["1gpu-2048", "baseline-10240"]
        assert comparison.baseline.name == "1gpu-2048"  # the first given
        params = dict(zip(comparison.param_keys, zip(*comparison.params, strict=True), strict=True))
        assert params["max_seq_len"] == (2048, 10240)
        figures = dict(comparison.figures)
        assert figures["s_per_step"][0] < figures["s_per_step"][1]
        curves = screen.query_one("#compare-plot", LinePlot).series
        assert [c.name for c in curves] == ["1gpu-2048", "baseline-10240"]
        assert all(len(c.xs) == 100 for c in curves)


async def test_long_values_are_cut_so_every_run_stays_in_view(tmp_path, wait_for):
    notes = "offline SmolLM2-135M-Instruct, rsLoRA r8 on q/v (no DoRA), msl 1024, 16 steps of batch 1"
    url = f"sqlite:///{tmp_path / 'arctui.db'}"
    with RunStore.open(url) as store:
        ids = [store.create_run(config(notes=f"{notes}, lr {lr}", learning_rate=lr),
                                name=f"demo-cpu-enc-Shape.RowNumber.Minimal+lr-{lr}").id for lr in (1e-4, 3e-4, 1e-3)]
    app = make_app(url)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_comparison(wait_for, pilot, app, ids)
        table = screen.query_one("#compare-params", DataTable)
        rows = data_table(table)
        assert [len(header) <= CELL_WIDTH for header in rows[0][1:]] == [True] * 3
        assert rows[0][3].endswith("+lr-0.001")  # names keep their ends: a study's variants differ there
        cut = next(row for row in rows if row[0] == "notes")
        assert all(len(cell) == CELL_WIDTH and "…" in cell and cell.endswith(f"lr {lr}") for cell, lr in
                   zip(cut[1:], ("0.0001", "0.0003", "0.001"), strict=True))
        # the three runs side by side, no sideways scrolling
        await wait_for(pilot, lambda: table.virtual_size.width <= table.scrollable_content_region.width)
        assert screen.markdown.count(notes) == 3  # the copy keeps them whole


async def test_compare_baseline_moves_and_markdown_is_copied(seeded, wait_for, notified, capsys):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        screen = await open_comparison(wait_for, pilot, app, [2, 1])
        await pilot.press("b")
        # the next run moved to the front: the baseline is always the first column
        assert screen.comparison.baseline.name == "baseline-10240" and screen.run_ids == ["1", "2"]
        assert "baseline-10240" in str(screen.query_one("#compare-title", Static).render())
        await pilot.press("m")
        markdown = screen.markdown
        assert markdown == comparison_markdown(screen.comparison)
        lines = markdown.splitlines()
        assert lines[0] == "**Parameters that differ**"
        assert "| parameter | #1 baseline-10240 (baseline) | #2 1gpu-2048 |" in lines
        assert "| max_seq_len | 10240 | 2048 |" in lines
        vram = next(line for line in lines if line.startswith("| peak VRAM"))
        assert vram == "| peak VRAM | lower | 21.0 GB | 7.0 GB (0.33x, better) |"
        assert lines[-1] == FIGURE_NOTES
        await wait_for(pilot, lambda: notified.find("Copied"))
        assert screen.saved_path.read_text() == markdown
    # the terminal writes the same markdown for the same baseline, however it is named
    assert cli(capsys, seeded.url, "compare", "2", "1", "--baseline", "1", "--format", "markdown") == markdown


async def test_gpus_screen_without_nvidia_driver_says_so(seeded, wait_for):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("u")
        assert isinstance(app.screen, GpusScreen)
        screen = app.screen
        await wait_for(pilot, lambda: screen.unavailable_reason is not None)
        # this machine has no NVIDIA driver: the screen explains instead of showing an empty table
        assert screen.gpus == ()
        text = str(screen.query_one("#gpus-empty", Static).render())
        assert "No NVIDIA GPU" in text and "CPU" in text
        assert "--gpus" not in text  # the CLI's advice has no place in the app
        assert not screen.query_one("#gpus-table", DataTable).display
        await pilot.press("escape")
        assert not isinstance(app.screen, GpusScreen)


async def test_gpus_screen_lists_gpus_and_holders(seeded, wait_for, two_h100s):
    app = make_app(seeded.url, clock=lambda: seeded.frozen_now, gpu_reader=two_h100s)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("u")
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
