"""The package's folders are its architecture: a module imports only from its own layer or below,
commands never import each other, and nothing but devtools imports devtools.

Imports are read with `ast` (function-local imports included), so the rule holds for every code
path, not only for what happens to be imported at start-up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "recap_label"

# low → high. errors and config are the foundation every layer may use.
LAYERS = [
    ("foundation", {"recap_label", "recap_label.errors", "recap_label.config"}),
    ("store", {"recap_label.store"}),
    ("lerobot", {"recap_label.lerobot"}),
    ("model", {"recap_label.model"}),
    ("rule", {"recap_label.rule", "recap_label.summary", "recap_label.stats"}),
    ("values", {"recap_label.values", "recap_label.report"}),
    ("checks", {"recap_label.invariants", "recap_label.plotting", "recap_label.value_check", "recap_label.run_labels", "recap_label.view"}),
    ("commands", {"recap_label.commands"}),
    ("cli", {"recap_label.cli", "recap_label.__main__"}),
    ("devtools", {"recap_label.devtools"}),
]


def layer_of(module: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if module == p or (p != "recap_label" and module.startswith(p + ".")):
                best = i
    if best is None:
        raise AssertionError(f"{module} is in no layer; add it to LAYERS in {__file__}")
    return best


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every recap_label module `path` imports (`from recap_label.x import y` counts y if it is a module)."""
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("recap_label")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recap_label") and node.level == 0:
            out.add(node.module)
            for a in node.names:
                candidate = f"{node.module}.{a.name}"
                if (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").exists() or (PACKAGE.parent / Path(*candidate.split("."))).is_dir():
                    out.add(candidate)
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    for path in MODULES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_go_down_only(path):
    me = module_name(path)
    mine = layer_of(me)
    upward = sorted(m for m in imports_of(path) if layer_of(m) > mine)
    assert not upward, f"{me} ({LAYERS[mine][0]}) imports from higher layers: {upward}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "commands").glob("*.py")), ids=lambda p: p.stem)
def test_commands_do_not_import_each_other(path):
    me = module_name(path)
    others = sorted(m for m in imports_of(path) if m.startswith("recap_label.commands.") and m != me)
    assert not others, f"{me} imports other commands: {others}"


def test_the_rule_itself_catches_a_violation(tmp_path):
    """The checker is not vacuous: an upward and a command→command import are both found."""
    bad = tmp_path / "bad.py"
    bad.write_text("from recap_label.commands import copy\nimport recap_label.cli\n")
    found = imports_of(bad)
    assert "recap_label.commands.copy" in found and "recap_label.cli" in found
    assert layer_of("recap_label.commands.copy") > layer_of("recap_label.store.lock")
    assert layer_of("recap_label.cli") > layer_of("recap_label.commands.label")


def test_each_folder_says_what_belongs_there():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init} needs a docstring saying what belongs in its folder"
