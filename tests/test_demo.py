"""`make demo` keeps everything it writes in ./demo-out."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support import PKG_ROOT


@pytest.mark.slow
def test_demo_writes_only_into_demo_out(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECAP_LABEL_", "HF_", "XDG_"))}
    env.update(HOME=str(home), PYTHONPATH=str(PKG_ROOT))
    subprocess.run(
        [sys.executable, "-m", "recap_label.demo"], cwd=work, env=env, check=True, capture_output=True, timeout=600
    )
    written = sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())
    # matplotlib's own font cache aside, nothing lands in the home folder (~/.cache/recap-label/models was the defect)
    assert [p for p in written if "matplotlib" not in p] == [], written
    assert sorted(p.name for p in work.iterdir()) == ["demo-out"]
    assert any((work / "demo-out" / "model-cache").rglob("*.safetensors"))
