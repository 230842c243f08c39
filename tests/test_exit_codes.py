"""The error `kind`s are an API for scripts: README "Exit codes" lists every kind with its exit
code, each error class names its own, and the one boundary (recap_label/cli/boundary.py) prints
each as the same `Error:` line and JSON object, whatever the command."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest

from recap_label.cli.boundary import USAGE_ERROR_KIND, UsageError
from recap_label.errors import RecapError
from support import error_line

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_kinds(text: str) -> dict[str, int]:
    """kind → exit code, from the `| kind | exit code | … |` table of the "Exit codes" section."""
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    start = next(i for i, line in enumerate(rows) if re.match(r"\|\s*kind\s*\|\s*exit code\s*\|", line))
    table = {}
    for line in rows[start + 2 :]:  # past the header and the `---` row
        cells = [c.strip() for c in line.strip("|").split("|")]
        m = re.fullmatch(r"`([a-z_]+)`", cells[0])
        assert m, f"README Exit codes: a kind cell must be `a_kind`, got {cells[0]!r}"
        assert m.group(1) not in table, f"README Exit codes lists {m.group(1)} twice"
        table[m.group(1)] = int(cells[1])
    return table


def error_classes() -> list[type[RecapError]]:
    out, todo = [], [RecapError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def code_kinds() -> dict[str, int]:
    kinds = {}
    for cls in error_classes():
        assert "kind" in vars(cls), (
            f"{cls.__name__} names no kind of its own (it would pass on {cls.__mro__[1].__name__}'s)"
        )
        assert cls.kind not in kinds, f"two error classes share the kind {cls.kind}"
        kinds[cls.kind] = cls.exit_code
    kinds[USAGE_ERROR_KIND] = UsageError.exit_code
    return kinds


def test_the_readme_table_and_the_error_classes_agree():
    documented, defined = readme_kinds(README.read_text()), code_kinds()
    assert sorted(set(defined) - set(documented)) == [], "error kinds missing from README 'Exit codes'"
    assert sorted(set(documented) - set(defined)) == [], "README 'Exit codes' lists kinds no error class has"
    assert documented == defined


def test_the_table_check_is_not_vacuous():
    """A row missing, a wrong exit code or an unknown kind in the README each show up."""
    text = README.read_text()
    assert readme_kinds(text) == code_kinds()
    assert "locked_error" not in readme_kinds(re.sub(r"\n\| `locked_error` \|[^\n]*", "", text))
    assert readme_kinds(text.replace("| `interrupted` | 130 |", "| `interrupted` | 2 |"))["interrupted"] == 2
    assert "ghost_error" in readme_kinds(text.replace("| `os_error` |", "| `ghost_error` | 2 | x |\n| `os_error` |"))


@pytest.mark.parametrize(
    "cls", [c for c in error_classes() if c is not RecapError] + [RecapError], ids=lambda c: c.__name__
)
def test_every_error_class_reaches_the_user_as_its_kind(cli, lerobot_home, monkeypatch, cls):
    def fails(*args, **kwargs):
        raise cls("the problem; the fix")

    monkeypatch.setattr("recap_label.commands.iterations.list_iterations", fails)
    r = cli("--json", "iterations", "x", code=cls.exit_code)
    assert error_line(r) == "Error: the problem; the fix"
    assert json.loads(r.stdout) == {"error": "the problem; the fix", "exit_code": cls.exit_code, "kind": cls.kind}
    assert cli("iterations", "x", code=cls.exit_code).stdout == ""  # without --json: stderr only


def test_an_os_error_and_ctrl_c_anywhere_are_one_error_line(cli, lerobot_home, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("recap_label.commands.iterations.list_iterations", disk_full)
    r = cli("iterations", "x", "--json", code=2)
    assert json.loads(r.stdout) == {"error": error_line(r).removeprefix("Error: "), "exit_code": 2, "kind": "os_error"}
    assert "running `recap-label iterations`" in error_line(r)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("recap_label.commands.iterations.list_iterations", ctrl_c)
    r = cli("--json", "iterations", "x", code=130)
    assert error_line(r) == "Error: interrupted; the dataset is unchanged or will be completed by the next run"
    assert json.loads(r.stdout)["kind"] == "interrupted"
