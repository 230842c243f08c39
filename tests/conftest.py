"""Fixtures shared by the test suite (helpers live in support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import Cli, isolate_lerobot_home


@pytest.fixture
def lerobot_home(tmp_path, monkeypatch) -> Path:
    return isolate_lerobot_home(tmp_path, monkeypatch)


@pytest.fixture
def cli() -> Cli:
    return Cli()
