"""Fixtures shared by the test suite (helpers live in support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import Cli, isolate_lerobot_home


def pytest_collection_modifyitems(config, items):
    """`cuda`-marked tests skip where torch sees no CUDA device (torch is imported only if one is marked)."""
    marked = [item for item in items if item.get_closest_marker("cuda")]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in marked:
        item.add_marker(skip)


@pytest.fixture
def lerobot_home(tmp_path, monkeypatch) -> Path:
    return isolate_lerobot_home(tmp_path, monkeypatch)


@pytest.fixture
def cli() -> Cli:
    return Cli()
