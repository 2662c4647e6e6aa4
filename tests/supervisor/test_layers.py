"""arctui.supervisor imports in one direction: each module only from the layers below its own.

The layer order is ``arctui.supervisor.LAYERS`` (highest first; modules of one layer are independent).
Every import statement counts, also those inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import arctui.supervisor as supervisor

PACKAGE = "arctui.supervisor"
FOLDER = Path(supervisor.__file__).parent


def supervisor_imports(source: str) -> set[str]:
    """The ``arctui.supervisor`` modules a source file imports (``""`` for the package itself)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE:
                found.add("")
            elif name.startswith(PACKAGE + "."):
                child = name[len(PACKAGE) + 1 :].split(".")[0]
                if (FOLDER / f"{child}.py").is_file():
                    found.add(child)
                    found.discard("")  # `from arctui.supervisor import launch` names a module
    return found


def layer_violations(sources: dict[str, str], layers=supervisor.LAYERS) -> list[str]:
    """One line per import that goes up (or sideways within a layer, or to the package's __init__)."""
    rank = {module: i for i, layer in enumerate(layers) for module in layer}
    problems = []
    for module, source in sorted(sources.items()):
        if module not in rank:
            problems.append(f"{module} is in no layer of arctui.supervisor.LAYERS")
            continue
        for target in sorted(supervisor_imports(source)):
            if target == "":
                problems.append(f"{module} imports the package arctui.supervisor (its __init__ is above every layer)")
            elif target != module and rank.get(target, -1) <= rank[module]:
                problems.append(f"{module} imports {target}, which is not in a lower layer")
    return problems


def package_sources() -> dict[str, str]:
    return {path.stem: path.read_text() for path in FOLDER.glob("*.py") if path.stem != "__init__"}


def test_supervisor_modules_import_only_lower_layers():
    assert layer_violations(package_sources()) == []


def test_every_layer_names_a_module():
    modules = {module for layer in supervisor.LAYERS for module in layer}
    assert modules == set(package_sources())


def test_an_upward_import_is_caught():
    sources = package_sources()
    sources["runfolder"] += "\n\ndef late():\n    from arctui.supervisor.launch import stop_run\n"
    sources["recovery"] += "\nimport arctui.supervisor.evaluation\n"  # same layer
    sources["tail"] += "\nfrom arctui.supervisor import open_store\n"
    assert layer_violations(sources) == [
        "recovery imports evaluation, which is not in a lower layer",
        "runfolder imports launch, which is not in a lower layer",
        "tail imports the package arctui.supervisor (its __init__ is above every layer)",
    ]


def test_public_names_still_import():
    import arctui.supervisor.launch as launch

    for name in supervisor.__all__:
        assert getattr(supervisor, name) is not None, name
    # imported from launch by the screens (run_control, data) and app tests
    for name in ("ensure_tiny_model", "recover_if_orphaned", "resume_run", "stop_run", "prepare_config"):
        assert callable(getattr(launch, name)), name
