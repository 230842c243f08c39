"""Fixtures shared by the test suite (helpers live in support.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import Cli


@pytest.fixture
def lerobot_home(tmp_path, monkeypatch) -> Path:
    """A private LeRobot home, no RECAP_LABEL_* environment, and tmp_path as working directory."""
    home = tmp_path / "lerobot-home"
    home.mkdir()
    monkeypatch.setenv("HF_LEROBOT_HOME", str(home))
    for var in list(os.environ):
        if var.startswith("RECAP_LABEL_"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def cli() -> Cli:
    return Cli()
