"""Save the new-run form as the base of a study, add variants, and (optionally) launch it.

A small dialog opened from the form (ctrl+t): the study's name, then variants one at a time (a name
and overrides ``key=value; key=value``, the values of ``arctui launch --set``). Saving writes
``$ARCTUI_HOME/studies/<name>.yaml`` in the format ``arctui study launch`` reads
(:func:`arctui.studies.spec.study_yaml` checks every variant first, so nothing invalid is written);
"Save and launch" then runs ``arctui study launch FILE --detach`` and opens the study.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from arctui.screens.base import ArcModalScreen
from arctui.screens.confirm import ConfirmScreen
from runner.paths import arctui_home

OVERRIDE_SEPARATOR = ";"  # values such as encoder specs hold commas


def studies_dir() -> Path:
    return arctui_home() / "studies"


def parse_variant(text: str) -> dict:
    """``max_seq_len=1024; lora_r=16`` -> raw overrides (typed and checked with the whole study)."""
    from arctui.config import parse_overrides

    return parse_overrides([part for part in text.split(OVERRIDE_SEPARATOR) if part.strip()])


class StudyFormScreen(ArcModalScreen[str | None]):
    """Dismisses with the written study file's path, or None when cancelled."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="study_form.cancel"),
        Binding("ctrl+s", "save(False)", "Save study", id="study_form.save"),
    ]

    def __init__(self, base: dict) -> None:
        super().__init__()
        self.base = dict(base)
        """The form's run config mapping: the study's base."""
        self.variants: list[tuple[str, dict]] = []
        """(name, overrides) in the order added."""
        self.saved_path: Path | None = None

    def compose(self) -> ComposeResult:
        name = f"{self.base.get('name') or 'my'}-study"
        with Vertical(id="study-form-dialog"):
            yield Static(Text("Save the form as a study", style="bold"))
            yield Static("The form is the base; each variant changes a few keys of it.", classes="study-form-hint")
            with Horizontal(classes="field"):
                yield Label("study name")
                yield Input(name, id="study-name", compact=True)
            yield Static("", id="study-variants")
            with Horizontal(classes="field"):
                yield Label("variant name")
                yield Input(placeholder="e.g. msl-1024", id="variant-name", compact=True)
            with Horizontal(classes="field"):
                yield Label("overrides")
                yield Input(placeholder="max_seq_len=1024; lora_r=16 (enter: add)",
                            id="variant-overrides", compact=True)
            yield Static("", id="study-form-problem")
            with Horizontal(id="study-form-buttons"):
                yield Button("Add variant", id="study-add", compact=True)
                yield Button("Save (ctrl+s)", id="study-save", variant="primary", compact=True)
                yield Button("Save and launch", id="study-launch", variant="success", compact=True)
                yield Button("Cancel (esc)", id="study-cancel", compact=True)

    def on_mount(self) -> None:
        self._show_variants()
        self.query_one("#variant-name", Input).focus()

    def _show_variants(self) -> None:
        if not self.variants:
            text = "no variants yet: add at least one"
        else:
            text = "\n".join(
                f"  {name}: " + ("; ".join(f"{k}={v}" for k, v in over.items()) or "(the base as is)")
                for name, over in self.variants
            )
        self.query_one("#study-variants", Static).update(Text(f"variants ({len(self.variants)})\n{text}"))

    def _problem(self, message: str) -> None:
        self.query_one("#study-form-problem", Static).update(Text(message, style="bold red"))

    # -- variants ----------------------------------------------------------------------------------
    @on(Input.Submitted, "#variant-name")
    def name_entered(self) -> None:
        self.query_one("#variant-overrides", Input).focus()

    @on(Input.Submitted, "#variant-overrides")
    @on(Button.Pressed, "#study-add")
    def add_variant(self) -> None:
        from runner.errors import UserError

        name_input = self.query_one("#variant-name", Input)
        overrides_input = self.query_one("#variant-overrides", Input)
        name = name_input.value.strip()
        if not name:
            self._problem("name the variant first (e.g. msl-1024)")
            name_input.focus()
            return
        if any(existing == name for existing, _ in self.variants):
            self._problem(f"a variant is already named {name}; choose another name")
            return
        try:
            overrides = parse_variant(overrides_input.value)
        except UserError as error:
            self._problem(str(error).replace("--set ", ""))
            return
        self.variants.append((name, overrides))
        name_input.value = overrides_input.value = ""
        self._problem("")
        self._show_variants()
        name_input.focus()

    # -- save and launch ---------------------------------------------------------------------------
    @on(Button.Pressed, "#study-save")
    def save_pressed(self) -> None:
        self.action_save(False)

    @on(Button.Pressed, "#study-launch")
    def launch_pressed(self) -> None:
        self.action_save(True)

    @on(Button.Pressed, "#study-cancel")
    def cancel_pressed(self) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self, launch: bool) -> None:
        if not self.variants:
            self._problem("add at least one variant (a name and its overrides), then save")
            return
        name = self.query_one("#study-name", Input).value.strip()
        self._save_worker(name, launch, overwrite=False)

    @work(thread=True, exclusive=True, exit_on_error=False, group="study-form-save")
    def _save_worker(self, name: str, launch: bool, overwrite: bool) -> None:
        from arctui.studies.spec import study_yaml
        from runner.errors import UserError

        try:
            text = study_yaml(name, self.base, self.variants)
        except UserError as error:
            self.app.call_from_thread(self._problem, str(error))
            return
        path = studies_dir() / f"{name}.yaml"
        if path.exists() and not overwrite:
            self.app.call_from_thread(self._ask_overwrite, path, name, launch)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Saved from the arctui new-run form.\n# Launch:  arctui study launch {path}\n" + text,
                        encoding="utf-8")
        self.saved_path = path
        if not launch:
            self.app.call_from_thread(self._done, path, None)
            return
        from arctui.views.control import launch_study_detached

        study_id = launch_study_detached(path, self.app.db_url)
        self.app.call_from_thread(self._done, path, study_id)

    def _ask_overwrite(self, path: Path, name: str, launch: bool) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._save_worker(name, launch, overwrite=True)

        self.app.push_screen(ConfirmScreen(f"{path} exists. Overwrite it?", "Or cancel and rename the study.",
                                           yes_label="Overwrite"), answered)

    def _done(self, path: Path, study_id: str | None) -> None:
        if study_id is None:
            self.notify(f"Saved study {path}; launch it with `arctui study launch {path}`")
        else:
            self.notify(f"Launched study #{study_id} from {path}")
        self.dismiss(str(path))
        if study_id is not None:
            self.app.open_study(study_id)
