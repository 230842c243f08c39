"""Shared test helpers: the LeRobot-written specimens, tree digests and a CLI runner on real files.

A plain module (not conftest) so test files import it by a name no other conftest shadows."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from typer.testing import CliRunner

from recap_label.cli import app

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "lerobot-written"
if not FIXTURES.is_dir():  # CI clones the repo beside a copy of shared/
    FIXTURES = Path(os.environ.get("RECAP_FIXTURES", "../shared/fixtures/lerobot-written")).resolve()

SPECIMENS = sorted(p.with_name(p.name.split(".")[0]) for p in FIXTURES.glob("*/*.expected.json"))


def specimen_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def writable_copy(specimen: Path, dest: Path) -> Path:
    shutil.copytree(specimen, dest)
    for root, dirs, files in os.walk(dest):
        for name in dirs + files:
            os.chmod(Path(root) / name, 0o755 if name in dirs else 0o644)
    os.chmod(dest, 0o755)
    return dest


def tree_digest(root: Path, skip=()) -> dict[str, str]:
    """Relative path → sha256 (or 'link:<target>' / 'dir') of everything under root, links not followed."""
    out = {}
    if not os.path.lexists(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel in skip:
                continue
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def isolate_lerobot_home(tmp_path: Path, monkeypatch) -> Path:
    """A private LeRobot home and model cache, no other RECAP_LABEL_* environment, and tmp_path as
    working directory: tests write nothing outside tmp_path."""
    home = tmp_path / "lerobot-home"
    home.mkdir()
    monkeypatch.setenv("HF_LEROBOT_HOME", str(home))
    for var in list(os.environ):
        if var.startswith("RECAP_LABEL_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("RECAP_LABEL_MODEL_CACHE", str(tmp_path / "model-cache"))
    monkeypatch.chdir(tmp_path)
    return home


class Cli:
    """The CLI in-process (fast); a Python exception escaping it fails the test with its traceback."""

    def __init__(self):
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int | None = 0):
        result = self.runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        if code is not None:
            assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        return result


def error_line(result) -> str:
    """Exactly one `Error:` line on stderr and no traceback anywhere."""
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    return lines[0]
