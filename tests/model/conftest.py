"""Fixtures of the value-model tests: the tiny checkpoint's step folder, its tokenizer and its parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support import TINY_STEP, TINY_TOKENIZER


@pytest.fixture(scope="session")
def tiny_step() -> Path:
    return TINY_STEP


@pytest.fixture(scope="session")
def tokenizer_path() -> Path:
    return TINY_TOKENIZER


@pytest.fixture(scope="session")
def ema_flat() -> dict[str, np.ndarray]:
    from recap_label.model.checkpoint import load_flat_params

    return load_flat_params(TINY_STEP, use_ema=True)


@pytest.fixture(scope="session")
def raw_flat() -> dict[str, np.ndarray]:
    from recap_label.model.checkpoint import load_flat_params

    return load_flat_params(TINY_STEP, use_ema=False)
