"""The package's folders are its architecture: a module imports only from its own layer or below,
commands never import each other, nothing but the demo imports the demo, and no modules import
each other in a circle (inside a layer either; the benchmarks/ folder too).

Imports are read with `ast` (function-local imports included), so the rule holds for every code
path, not only for what happens to be imported at start-up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "recap_label"
BENCHMARKS = REPO / "benchmarks"

# low → high. errors and config are the foundation every layer may use.
LAYERS = [
    ("foundation", {"recap_label", "recap_label.errors", "recap_label.config"}),
    ("store", {"recap_label.store"}),
    ("lerobot", {"recap_label.lerobot"}),
    ("model", {"recap_label.model"}),
    ("rule", {"recap_label.rule", "recap_label.summary", "recap_label.stats", "recap_label.label_request"}),
    ("values", {"recap_label.values"}),
    (
        "checks",
        {
            "recap_label.invariants",
            "recap_label.plotting",
            "recap_label.value_check",
            "recap_label.run_labels",
            "recap_label.view",
        },
    ),
    ("commands", {"recap_label.commands"}),
    ("cli", {"recap_label.cli", "recap_label.__main__"}),
    ("demo", {"recap_label.demo"}),
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


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str, root: Path) -> bool:
    path = root / Path(*name.split("."))
    return path.with_suffix(".py").exists() or path.is_dir()


def imports_of(path: Path, prefix: str = "recap_label", root: Path = REPO) -> set[str]:
    """Every module under `prefix` that `path` imports (`from recap_label.x import y` counts y if it is
    a module); modules are looked up under `root`."""
    tree = ast.parse(path.read_text(), str(path))
    out = set()

    def ours(name: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if ours(a.name)}
        elif isinstance(node, ast.ImportFrom) and node.module and ours(node.module) and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if is_module(f"{node.module}.{a.name}", root)}
    return out


def import_graph(folder: Path, root: Path = REPO) -> dict[str, set[str]]:
    """{module: the modules of the same top-level package it imports}, for every .py under `folder`.

    A package's `__init__` is a module of its own: `from recap_label.values import engine` is an
    edge to `recap_label.values.engine` and to `recap_label.values` (whose `__init__` runs first)."""
    prefix = folder.relative_to(root).parts[0]
    graph = {module_name(p, root): imports_of(p, prefix, root) for p in sorted(folder.rglob("*.py"))}
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (each a circle of imports), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm; the graphs are a few hundred modules deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


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


@pytest.mark.parametrize("folder", [PACKAGE, BENCHMARKS], ids=lambda p: p.name)
def test_no_import_circles(folder):
    cycles = import_cycles(import_graph(folder))
    assert not cycles, (
        f"modules that import each other in a circle (move what they share into a module of its own): {cycles}"
    )


def test_the_circle_check_catches_a_circle(tmp_path):
    """Three synthetic modules a -> b -> c -> a (one import inside a function) and a bystander d -> a:
    the circle is found, and only its members are named."""
    pkg = tmp_path / "fakepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from fakepkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("import fakepkg.c\n")
    (pkg / "c.py").write_text("def f():\n    from fakepkg import a\n")
    (pkg / "d.py").write_text("from fakepkg import a\n")
    graph = import_graph(pkg, tmp_path)
    assert graph["fakepkg.a"] == {"fakepkg.sub", "fakepkg.sub.b"}
    assert import_cycles(graph) == [["fakepkg.a", "fakepkg.c", "fakepkg.sub.b"]]
    (pkg / "c.py").write_text("def f():\n    import fakepkg.d\n")  # c -> d -> a -> b -> c: still a circle, now of four
    assert import_cycles(import_graph(pkg, tmp_path)) == [["fakepkg.a", "fakepkg.c", "fakepkg.d", "fakepkg.sub.b"]]
    (pkg / "c.py").write_text("import json\n")  # broken: no circle left
    assert import_cycles(import_graph(pkg, tmp_path)) == []


def test_each_folder_says_what_belongs_there():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init} needs a docstring saying what belongs in its folder"
