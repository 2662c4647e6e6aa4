"""`arctui runs | show | compare` on a real SQLite store filled through the store's public API with
the events the runner writes (the seed note's three single-GPU rows plus the 2-GPU baseline)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from arctui.cli import main
from tests.conftest import REPO_ROOT

# (name, n_gpus, msl, per-device batch, s/step, peak VRAM GB) - the published iteration 33 figures
SEED_ROWS = [
    ("01_baseline", 2, 10240, 1, 4.9, None),
    ("03_1gpu", 1, 10240, 1, 3.3, 21.0),
    ("04_1gpu_2048msl", 1, 2048, 1, 2.9, 7.0),
    ("05_1gpu_2048msl_pdbs2", 1, 2048, 2, 1.8, None),
]


def seed_events(s_per_step: float, vram: float | None, steps: int = 100) -> list[dict]:
    t = 1_700_000_000.0
    events = [{"seq": 1, "time": t, "event": "start", "max_steps": steps, "start_step": 0}]
    for step in range(10, steps + 1, 10):
        t += 10 * s_per_step
        events.append({
            "seq": len(events) + 1, "time": t, "event": "step", "step": step, "max_steps": steps,
            "loss": 1.0 / step ** 0.5, "learning_rate": 1e-4, "grad_norm": 1.0, "seconds_per_step": s_per_step,
            "tokens_per_second": 16 * 1500 / s_per_step, "samples_per_second": 16 / s_per_step,
            "padding_share": 0.1, "peak_memory_gb": {} if vram is None else {"0": vram},
        })
    events.append({"seq": len(events) + 1, "time": t, "event": "eval", "step": steps, "eval_loss": 0.2,
                   "eval_seconds": 3.0})
    events.append({"seq": len(events) + 1, "time": t, "event": "checkpoint", "step": steps,
                   "path": f"/runs/x/output/checkpoint-{steps}"})
    events.append({"seq": len(events) + 1, "time": t, "event": "end", "status": "completed", "step": steps,
                   "total_seconds": steps * s_per_step, "train_loss": 0.1, "eval_loss": 0.2})
    return events


@pytest.fixture(scope="module")
def db_url(tmp_path_factory):
    from db.store import RunStore

    url = f"sqlite:///{tmp_path_factory.mktemp('history') / 'arctui.db'}"
    with RunStore.open(url) as store:
        for name, gpus, msl, pdbs, sps, vram in SEED_ROWS:
            config = {
                "name": name, "model_path": "/models/SmolLM-135M-Instruct", "gpus": "auto", "n_gpus": gpus,
                "train_datasets": [["/data/train_rs7.json", "output-from-examples-v1"]],
                "grid_encoder": "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))",
                "max_seq_len": msl, "batch_size": 16, "per_device_train_batch_size": pdbs,
                "learning_rate": 0.0001, "lora_r": 32, "max_steps": 100,
            }
            run = store.create_run(config, name=name, tags=["seed"], model="SmolLM-135M-Instruct")
            store.update_run(run.id, gpu_ids=list(range(gpus)))
            store.set_status(run.id, "running")
            store.ingest_events(run.id, seed_events(sps, vram))
            store.set_status(run.id, "completed", exit_code=0)
    return url


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_runs_table_json_and_csv(db_url, capsys):
    code, out, _ = run_cli(capsys, "--db", db_url, "runs")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["id", "name", "status"]
    assert "s/step (median)" in header and "peak VRAM" in header  # the view layer's labels, as in the app
    assert [r.split()[1] for r in rows] == [r[0] for r in reversed(SEED_ROWS)]  # newest first
    assert "Shape(RowNumber(Minimal))" in rows[0] and "100/100" in rows[0] and "16/2" in rows[0]

    code, out, _ = run_cli(capsys, "--db", db_url, "runs", "--format", "json")
    data = {r["name"]: r for r in json.loads(out)}
    assert data["03_1gpu"]["s_per_step"] == pytest.approx(3.3)
    assert data["03_1gpu"]["peak_vram_gb"] == pytest.approx(21.0)
    assert data["03_1gpu"]["final_loss"] == pytest.approx(0.1) and data["03_1gpu"]["eval_loss"] == 0.2
    assert data["01_baseline"]["gpus"] == "0,1" and data["01_baseline"]["steps"] == 100

    code, out, _ = run_cli(capsys, "--db", db_url, "runs", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 4 and rows[0]["name"] == "05_1gpu_2048msl_pdbs2" and rows[0]["tags"] == "seed"


def test_runs_where_sort_limit(db_url, capsys):
    code, out, _ = run_cli(capsys, "--db", db_url, "runs", "--where", "msl>=4096 and status=completed",
                           "--format", "json")
    assert sorted(r["name"] for r in json.loads(out)) == ["01_baseline", "03_1gpu"]
    code, out, _ = run_cli(capsys, "--db", db_url, "runs", "--sort", "s_per_step", "--asc", "--limit", "2",
                           "--format", "json")
    assert [r["name"] for r in json.loads(out)] == ["05_1gpu_2048msl_pdbs2", "04_1gpu_2048msl"]
    code, out, _ = run_cli(capsys, "--db", db_url, "runs", "--where", "model~qwen")
    assert code == 0 and "no runs match" in out


def test_compare_every_format_with_ratios_and_directions(db_url, capsys):
    args = ["--db", db_url, "compare", "01_baseline", "03_1gpu", "05_1gpu_2048msl_pdbs2"]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    assert "parameters that differ" in out and "max_seq_len" in out and "per_device_train_batch_size" in out
    assert "learning_rate" not in out  # the same everywhere
    # ratios are value / baseline with a verdict from the figure's direction (lower s/step is better)
    assert "3.30 (0.67x, better)" in out and "1.80 (0.37x, better)" in out and "(baseline)" in out
    assert "median over logged steps excluding the first (warm-up) step" in out

    code, out, _ = run_cli(capsys, *args, "--format", "markdown")
    lines = out.splitlines()
    tables = [i for i, line in enumerate(lines) if line.startswith("|---")]
    assert len(tables) == 2  # parameters, metrics: pasteable into the iteration note
    assert lines[tables[1] - 1] == "| metric | better | #1 01_baseline (baseline) | #2 03_1gpu | #4 05_1gpu_2048msl_pdbs2 |"
    assert "| s/step (median) | lower | 4.90 | 3.30 (0.67x, better) | 1.80 (0.37x, better) |" in lines
    assert "| peak VRAM | lower | - | 21.0 GB | - |" in lines  # no ratio without a baseline figure

    code, out, _ = run_cli(capsys, *args, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["name"] for r in rows] == ["01_baseline", "03_1gpu", "05_1gpu_2048msl_pdbs2"]
    assert rows[0]["baseline"] == "True" and rows[0]["s_per_step_ratio"] == ""
    assert float(rows[2]["s_per_step_ratio"]) == pytest.approx(1.8 / 4.9)

    code, out, _ = run_cli(capsys, *args, "--format", "json")
    data = json.loads(out)
    assert data["baseline"] == 1 and set(data["param_keys"]) == {"max_seq_len", "n_gpus",
                                                                  "per_device_train_batch_size"}
    assert data["runs"][1]["ratios"]["s_per_step"] == pytest.approx(3.3 / 4.9)
    assert data["runs"][1]["ratios"]["peak_vram_gb"] is None  # the baseline has no VRAM figure
    assert {f["key"]: f["better"] for f in data["figures"]}["tokens_per_second"] == "higher"
    assert "first run in the order given" in data["baseline_rule"]


def test_compare_baseline_and_all_params(db_url, capsys):
    code, out, _ = run_cli(capsys, "--db", db_url, "compare", "03_1gpu", "04_1gpu_2048msl", "--baseline",
                           "04_1gpu_2048msl", "--all-params", "--format", "json")
    data = json.loads(out)
    assert data["baseline"] == 3 and "learning_rate" in data["param_keys"]
    assert [r["name"] for r in data["runs"]] == ["04_1gpu_2048msl", "03_1gpu"]  # --baseline moves it first
    by_name = {r["name"]: r for r in data["runs"]}
    assert by_name["03_1gpu"]["ratios"]["peak_vram_gb"] == pytest.approx(3.0)
    assert by_name["03_1gpu"]["ratios"]["s_per_step"] == pytest.approx(3.3 / 2.9)
    code, out, _ = run_cli(capsys, "--db", db_url, "compare", "03_1gpu", "--baseline", "04_1gpu_2048msl")
    assert code == 0 and "3.30 (1.14x, worse)" in out and "21.0 GB (3.00x, worse)" in out


def test_show_text_and_json(db_url, capsys):
    code, out, _ = run_cli(capsys, "--db", db_url, "show", "03_1gpu")
    assert code == 0
    for part in ("run 2  03_1gpu  [completed]", "summary", "s/step (median) 3.30", "peak VRAM 21.0 GB",
                 "tok/s (mean) 7273", "s/step (median): median over logged steps excluding the first", "config",
                 "max_seq_len: 10240", "checkpoints", "step 100", "recent events", "log tail"):
        assert part in out, part
    code, out, _ = run_cli(capsys, "--db", db_url, "show", "2", "--format", "json")
    data = json.loads(out)
    assert data["run"]["name"] == "03_1gpu" and data["checkpoints"][0]["step"] == 100
    figures = {f["label"]: f["value"] for f in data["summary"]}
    assert figures["s/step (median)"] == pytest.approx(3.3) and figures["peak VRAM"] == pytest.approx(21.0)
    assert data["recent_events"][0]["event"] == "end"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "999"], "999"),
        (["show", "03_1gpux"], "03_1gpu"),
        (["compare", "1", "nope"], "nope"),
        (["compare", "1"], "at least two runs"),
        (["compare", "1", "1"], "same run twice"),
        (["compare", "1", "--baseline", "1"], "two different runs"),
        (["runs", "--where", "modle=x"], "did you mean 'model'"),
        (["runs", "--where", "msl>>3"], "position"),
        (["runs", "--sort", "nonsense"], "nonsense"),
        (["runs", "--limit", "-1"], "--limit"),
        (["show", "1", "--events", "-2"], "--events"),
    ],
)
def test_bad_input_is_one_line_exit_2(db_url, capsys, argv, message):
    code, out, err = run_cli(capsys, "--db", db_url, *argv)
    assert code == 2 and out == ""
    assert err.startswith("arctui: error:") and err.count("\n") == 1 and message in err


def test_unreachable_database_writes_nothing(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "dir" / "arctui.db"
    for argv in (["runs"], ["show", "1"], ["compare", "1", "2"]):
        code, out, err = run_cli(capsys, "--db", f"sqlite:///{missing}", *argv)
        assert code == 2 and err.startswith("arctui: error:") and err.count("\n") == 1
    assert not (tmp_path / "no").exists()
    code, _, err = run_cli(capsys, "--db", "postgresql://u@127.0.0.1:1/none", "runs")
    assert code == 2 and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["runs"], ["show", "1"], ["compare", "1", "2", "--format", "markdown"]])
def test_history_commands_never_import_torch(db_url, argv):
    probe = (
        "import sys, json\nfrom arctui.cli import main\n"
        f"code = main(['--db', {db_url!r}, *{argv!r}])\n"
        "print(json.dumps([code, sorted(m.split('.')[0] for m in sys.modules)]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    code, modules = json.loads(out.stdout.strip().splitlines()[-1])
    assert code == 0
    assert not {"torch", "transformers", "peft", "accelerate", "textual"} & set(modules)
