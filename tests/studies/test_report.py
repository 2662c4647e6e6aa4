"""The study table and report from a store filled by hand: one row per variant, the differing
parameters, "failed: out of memory" for a CUDA OOM, ratios to the baseline, and the --plots files."""

from __future__ import annotations

import json

import pytest

from arctui.cli import main
from arctui.studies.table import read_study_table, render
from db.store import RunStore


@pytest.fixture
def filled(tmp_path):
    url = f"sqlite:///{tmp_path / 'arctui.db'}"
    store = RunStore.open(url, upgrade=True)
    store.create_study("i33", {"max_parallel": 1})
    base = {"model_path": "m", "max_seq_len": 10240, "per_device_train_batch_size": 1, "notes": "x"}
    variants = [("01_baseline", {}), ("02_bs2", {"per_device_train_batch_size": 2}),
                ("04_2048", {"max_seq_len": 2048})]
    for name, over in variants:
        cfg = base | over | {"notes": name}
        run = store.create_run(cfg, name=f"i33-{name}", study="i33", variant=name)
        if name == "02_bs2":
            store.set_status(run.id, "running")
            store.set_status(run.id, "failed", error="OutOfMemoryError: CUDA out of memory. Tried to allocate 9 GiB")
            continue
        speed = 4.0 if name == "01_baseline" else 2.0
        store.ingest_events(run.id, [
            {"seq": i, "time": 100.0 + i, "event": "step", "step": i, "loss": 1.0 / i, "seconds_per_step": speed,
             "window_seconds": speed, "window_tokens": 1000, "peak_memory_gb": {"cuda:0": 7.0 if speed < 3 else 21.0}}
            for i in range(1, 5)
        ] + [{"seq": 5, "time": 110.0, "event": "end", "status": "completed", "step": 4, "train_loss": 0.25}])
        store.set_status(run.id, "running")
        store.set_status(run.id, "completed")
    yield store, url
    store.close()


def test_table_rows_params_status_and_ratios(filled):
    store, _ = filled
    table = read_study_table(store, "i33")
    assert table.param_keys == ("max_seq_len", "per_device_train_batch_size")  # notes differ but are not params
    assert [r.variant for r in table.rows] == ["01_baseline", "02_bs2", "04_2048"]
    assert [r.status for r in table.rows] == ["completed", "failed: out of memory", "completed"]
    record = json.loads(render(table, "json"))
    base, oom, fast = record["rows"]
    assert base["baseline"] and base["metrics"]["s_per_step"] == pytest.approx(4.0)
    assert oom["reason"] == "out of memory" and oom["metrics"]["s_per_step"] is None
    assert fast["ratios"]["s_per_step"] == pytest.approx(0.5)
    assert fast["metrics"]["final_loss"] == pytest.approx(0.25)
    text = render(table, "table")
    assert "0.50x, better" in text and "failed: out of memory" in text and "peak VRAM" in text
    rebased = read_study_table(store, "i33", baseline="04_2048")
    assert "2.00x, worse" in render(rebased, "markdown")
    assert render(table, "csv").splitlines()[0].startswith("variant,run_id,status,reason,baseline")


def test_unknown_baseline_is_one_line(filled, capsys):
    _, url = filled
    assert main(["--db", url, "study", "report", "i33", "--baseline", "nope"]) == 2
    err = capsys.readouterr().err
    assert "has no variant 'nope'" in err and len(err.strip().splitlines()) == 1


def test_report_plots_and_markdown(filled, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from PIL import Image

    _, url = filled
    out = tmp_path / "report"
    assert main(["--db", url, "study", "report", "i33", "--format", "markdown", "--plots", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n| 0") == 3
    report = (out / "report.md").read_text()
    assert "failed: out of memory" in report
    for name in ("loss.png", "speed.png"):
        assert f"]({name})" in report
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG"
    assert not (out / "accuracy.png").exists()  # nothing was evaluated
