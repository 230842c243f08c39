from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_CKPT_ROOT = REPO / "recap_label" / "assets" / "tiny_value_ckpt"
TINY_STEP = TINY_CKPT_ROOT / "step_00000002"
TINY_TOKENIZER = REPO / "recap_label" / "assets" / "tiny_tokenizer.model"

# Test helpers (numpy_reference) import by module name whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))


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
