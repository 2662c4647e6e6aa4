"""The view layer (arctui.views): labels, ratio directions, the baseline rule, the markdown shape, and
the boundaries that keep screens on this side of the store."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from arctui.views.compare import (
    Comparison,
    baseline_first,
    comparison_markdown,
    comparison_record,
    metric_rows,
    read_comparison,
    rotated,
)
from arctui.views.figures import (
    ACCURACY,
    FIGURE_NOTES,
    FIGURES,
    LOSS,
    PEAK_VRAM,
    S_PER_STEP,
    STEPS,
    TOKENS_PER_S,
    ratio_text,
    short_encoder,
    short_model,
)
from arctui.views.rows import RUN_COLUMNS, RunRow, run_cells, run_record
from arctui.views.summary import summary_lines
from runner.encoders import DEFAULT_GRID_ENCODER
from runner.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- labels ---------------------------------------------------------------------------------------------

def test_one_short_label_for_encoders_and_models():
    assert short_encoder(DEFAULT_GRID_ENCODER) == "Shape(RowNumber(Minimal))"
    assert short_encoder("GridCodeBlockEncoder(RepeatNumberEncoder(3))") == "CodeBlock(RepeatNumber(3))"
    assert short_encoder(None) == "-" and short_encoder("") == "-"
    assert short_model("/models/SmolLM-135M-Instruct/") == "SmolLM-135M-Instruct"
    assert short_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "SmolLM2-135M-Instruct"
    assert short_model(None) == "-"


def test_figures_say_which_number_they_are():
    assert S_PER_STEP.label == "s/step (median)" and "warm-up" in S_PER_STEP.definition
    assert TOKENS_PER_S.label == "tok/s (mean)" and PEAK_VRAM.label == "peak VRAM"
    assert all(label in FIGURE_NOTES for label in ("s/step (median)", "tok/s (mean)", "peak VRAM"))
    assert len({f.label for f in FIGURES}) == len(FIGURES)  # no two figures share a label
    assert [f.label for f in FIGURES].count("loss") == 1 and "final loss" not in [f.label for f in FIGURES]
    # the run list's headers are these labels
    headers = {c.key: c.label for c in RUN_COLUMNS}
    assert headers["s_per_step"] == S_PER_STEP.label and headers["vram"] == PEAK_VRAM.label


# -- ratios -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("figure", "value", "base", "text"),
    [
        (S_PER_STEP, 1.8, 3.3, "0.55x, better"),  # lower is better
        (S_PER_STEP, 3.3, 2.9, "1.14x, worse"),
        (PEAK_VRAM, 21.0, 7.0, "3.00x, worse"),
        (LOSS, 0.34, 0.39, "0.87x, better"),
        (TOKENS_PER_S, 13_300.0, 7_273.0, "1.83x, better"),  # higher is better
        (ACCURACY, 0.04, 0.05, "0.80x, worse"),
        (S_PER_STEP, 2.9, 2.9001, "1.00x, same"),
        (S_PER_STEP, 2.9, None, ""),  # no baseline figure, no ratio
        (S_PER_STEP, None, 2.9, ""),
        (PEAK_VRAM, 7.0, 0.0, ""),
        (STEPS, 40, 100, ""),  # no direction, no ratio
    ],
)
def test_ratio_is_value_over_baseline_with_a_verdict_by_direction(figure, value, base, text):
    assert ratio_text(figure, value, base) == text


# -- the baseline rule and one markdown shape ----------------------------------------------------------------

def row(run_id: str, name: str, **figures) -> RunRow:
    return RunRow(run_id, name, "completed", **figures)


def fixed_comparison() -> Comparison:
    runs = (row("2", "fast", seconds_per_step=1.8), row("1", "slow|wide", seconds_per_step=3.6),
            row("3", "mid", seconds_per_step=2.7))
    return Comparison(
        runs=runs,
        param_keys=("max_seq_len", "train_datasets"),
        params=((2048, [["a.json", "v1"]]), (10240, [["a.json", "v1"]]), (4096, [["b.json", "v1"]])),
        figures=(("s_per_step", (1.8, 3.6, 2.7)), ("peak_vram_gb", (7.0, None, 14.0))),
    )


def test_baseline_is_the_first_run_given_and_rotates():
    assert baseline_first(["4", "2", "9"], None) == ["4", "2", "9"]
    assert baseline_first(["4", "2", "9"], "9") == ["9", "4", "2"]  # --baseline moves it to the front
    assert baseline_first(["4", "2"], "7") == ["7", "4", "2"]  # ...or adds it
    comparison = fixed_comparison()
    assert comparison.baseline.name == "fast"
    turned = rotated(comparison)
    assert turned.run_ids == ["1", "3", "2"] and turned.baseline.name == "slow|wide"
    assert dict(turned.figures)["s_per_step"] == (3.6, 2.7, 1.8)
    assert turned.params[0][0] == 10240
    assert rotated(turned, 2) == comparison


def test_markdown_has_one_shape():
    markdown = comparison_markdown(fixed_comparison())
    assert markdown.splitlines() == [
        "**Parameters that differ**",
        "",
        "| parameter | #2 fast (baseline) | #1 slow\\|wide | #3 mid |",
        "|---|---|---|---|",
        "| max_seq_len | 2048 | 10240 | 4096 |",
        "| train_datasets | a.json v1 | a.json v1 | b.json v1 |",
        "",
        "**Metrics (baseline #2 fast; ratio = value / baseline; better or worse by each figure's direction)**",
        "",
        "| metric | better | #2 fast (baseline) | #1 slow\\|wide | #3 mid |",
        "|---|---|---|---|---|",
        "| s/step (median) | lower | 1.80 | 3.60 (2.00x, worse) | 2.70 (1.50x, worse) |",
        "| peak VRAM | lower | 7.0 GB | - | 14.0 GB (2.00x, worse) |",
        "",
        FIGURE_NOTES,
    ]
    rotated_rows = metric_rows(rotated(fixed_comparison()))
    assert rotated_rows[0] == ["s/step (median)", "lower", "3.60", "2.70 (0.75x, better)", "1.80 (0.50x, better)"]
    # with every parameter equal the table gives way to one line
    same = Comparison(runs=fixed_comparison().runs, param_keys=(), params=((), (), ()), figures=())
    assert comparison_markdown(same).startswith("**Parameters**: all equal\n")


def test_json_record_has_raw_numbers_and_directions():
    record = comparison_record(fixed_comparison())
    assert record["baseline"] == 2 and record["runs"][0]["baseline"] and not record["runs"][1]["baseline"]
    assert record["runs"][1]["ratios"] == {"s_per_step": 2.0, "peak_vram_gb": None}
    assert record["runs"][0]["ratios"] == {"s_per_step": None, "peak_vram_gb": None}
    assert [(f["key"], f["better"]) for f in record["figures"]] == [("s_per_step", "lower"), ("peak_vram_gb", "lower")]
    json.dumps(record)


@pytest.fixture
def store(tmp_path):
    from db.store import RunStore

    with RunStore.open(f"sqlite:///{tmp_path / 'views.db'}") as store:
        for name, msl, sps in (("a", 2048, 2.0), ("b", 4096, 3.0), ("c", 8192, 4.0)):
            run = store.create_run({"name": name, "max_seq_len": msl, "max_steps": 10}, name=name)
            store.set_status(run.id, "running")
            events = [{"seq": 1, "time": 1_700_000_000.0, "event": "start", "max_steps": 10, "start_step": 0}]
            events += [{"seq": s + 1, "time": 1_700_000_000.0 + s * sps, "event": "step", "step": s, "max_steps": 10,
                        "loss": 1.0 / s, "seconds_per_step": sps, "tokens_per_second": 1000 / sps}
                       for s in range(1, 11)]
            store.ingest_events(run.id, events)
        yield store


def test_read_comparison_applies_the_baseline_rule(store):
    comparison = read_comparison(store, ["c", "a", "b"])
    assert [r.name for r in comparison.runs] == ["c", "a", "b"] and comparison.baseline.name == "c"
    assert comparison.param_keys == ("max_seq_len",) and comparison.loss_curves == ()
    assert [r.name for r in read_comparison(store, ["c", "a", "b"], baseline="b").runs] == ["b", "c", "a"]
    assert [r.name for r in read_comparison(store, ["a"], baseline="c").runs] == ["c", "a"]
    with_curves = read_comparison(store, ["1", "2"], curves=True)
    assert [c.key for c in with_curves.loss_curves] == ["a", "b"] and len(with_curves.loss_curves[0].steps) == 10
    with pytest.raises(UserError, match="same run twice"):
        read_comparison(store, ["a", "1"])
    with pytest.raises(UserError, match="two different runs"):
        read_comparison(store, ["a"], baseline="a")


# -- rows and summaries ------------------------------------------------------------------------------------

def test_summary_lines_label_every_figure_and_the_latest_value():
    r = RunRow("3", "x", "running", step=40, max_steps=100, loss=0.646, eval_loss=0.773, seconds_per_step=1.8,
               tokens_per_second=13_300.0, peak_vram_gb=9.5, started_at=0.0)
    assert summary_lines(r, 600.0) == [
        "steps 40/100  duration 10m00s",
        "loss 0.646  min loss -  eval loss 0.773  accuracy -",
        "s/step (median) 1.80",
        "tok/s (mean) 13.3k  peak VRAM 9.5 GB",
    ]
    lines = summary_lines(r, 600.0, latest={"seconds_per_step": 1.77}, skip=(STEPS,), omit_unknown=True)
    assert lines[0] == "duration 10m00s" and lines[2] == "s/step (median) 1.80 (latest 1.77)"


def test_run_cells_and_record():
    r = RunRow("7", "run", "completed", encoder=DEFAULT_GRID_ENCODER, model="/m/SmolLM", batch_size=16,
               per_device_batch=2, step=100, max_steps=100, accuracy=0.05, created_at=0.0, started_at=10.0,
               ended_at=70.0)
    cells = dict(zip((c.key for c in RUN_COLUMNS), run_cells(r, 3600.0), strict=True))
    assert cells["encoder"] == "Shape(RowNumber(Minimal))" and cells["model"] == "SmolLM"
    assert cells["progress"] == "100/100" and cells["batch"] == "16/2" and cells["accuracy"] == "5.00%"
    assert cells["created"] == "1h ago" and cells["duration"] == "1m00s"
    record = run_record(r, 3600.0)
    assert record["id"] == 7 and record["duration_s"] == 60.0 and record["started"] == "1970-01-01 00:00:10"


# -- boundaries --------------------------------------------------------------------------------------------

def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_screens_reach_the_store_only_through_the_view_layer():
    for path in sorted((REPO_ROOT / "arctui" / "screens").glob("*.py")):
        modules = imported_modules(path)
        assert not {m for m in modules if m == "db" or m.startswith("db.")}, path.name
        assert "arctui.screens.data" not in modules, path.name
    # the palette no longer reaches back into the Runs screen (it imports the palette)
    assert "arctui.screens.runs" not in imported_modules(REPO_ROOT / "arctui" / "screens" / "commands.py")


def test_the_view_layer_imports_neither_textual_nor_torch():
    probe = (
        "import json, pkgutil, importlib, sys\nimport arctui.views as v\n"
        "for m in pkgutil.iter_modules(v.__path__): importlib.import_module('arctui.views.' + m.name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not {"textual", "torch", "transformers"} & loaded
