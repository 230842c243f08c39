"""The command line stays thin: a command body parses, builds Settings or a request, calls the
library and hands the result to cli/output.py; only that module (and the error boundary) looks at
--json, and no command catches an error (cli/boundary.py reports them all)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[1] / "recap_label" / "cli"
MAX_BODY_LINES = 30
JSON_DECIDERS = {"output.py", "boundary.py"}  # where --json is decided: the result's form, the error's


def commands(path: Path):
    """(name, body lines without the docstring, tree) of each function registered with `@app.command`."""
    tree = ast.parse(path.read_text(), str(path))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
            for d in node.decorator_list
        ):
            body = (
                node.body[1:]
                if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
                else node.body
            )
            yield node.name, body[-1].end_lineno - body[0].lineno + 1, node


MODULES = sorted(CLI.glob("*.py"))


def test_every_command_is_found():
    names = {name for p in MODULES for name, _, _ in commands(p)}
    assert {"config_cmd", "copy_cmd", "verify_cmd", "label_cmd", "rollback_cmd", "diff_cmd"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_command_bodies_are_short(path):
    for name, lines, _ in commands(path):
        assert lines <= MAX_BODY_LINES, (
            f"{path.name}:{name} has a {lines}-line body; move the logic into the library or cli/render.py"
        )


@pytest.mark.parametrize("path", [p for p in MODULES if p.name not in JSON_DECIDERS], ids=lambda p: p.name)
def test_only_the_output_helper_decides_json(path):
    tree = ast.parse(path.read_text(), str(path))
    reads = [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and n.attr == "json"
        and isinstance(n.ctx, ast.Load)
        and not (isinstance(n.value, ast.Name) and n.value.id == "json")
    ]
    assert not reads, f"{path.name} reads .json on lines {reads}: hand the result to cli.output.show instead"


@pytest.mark.parametrize("path", [p for p in MODULES if any(commands(p))], ids=lambda p: p.name)
def test_commands_catch_no_errors(path):
    handlers = [n.lineno for _, _, node in commands(path) for n in ast.walk(node) if isinstance(n, ast.ExceptHandler)]
    assert not handlers, (
        f"{path.name} catches exceptions on lines {handlers}: errors are reported by cli/boundary.py only"
    )


def test_the_shape_checks_catch_a_fat_command(tmp_path):
    fat = tmp_path / "fat.py"
    fat.write_text(
        "@app.command('x')\ndef x_cmd(ctx):\n    '''doc'''\n"
        + "    a = 1\n" * 31
        + "    if settings.json:\n        pass\n"
    )
    ((_, lines, node),) = commands(fat)
    assert lines > MAX_BODY_LINES
    assert any(isinstance(n, ast.Attribute) and n.attr == "json" for n in ast.walk(node))
