"""Fixtures of the reliability suite (kill, fault, fuzz, concurrency, original-is-sacred); its
helpers live in tests/support.py.

Size: the default run fits CI; `RECAP_CHAOS=1` runs the larger sweep (`make chaos`).
Seeds: `RECAP_CHAOS_SEED` (default 20240611) seeds every random choice of the suite.
What the suite tried (support.count) is printed at the end of the session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import CHAOS, LOOKAHEAD, SEED, TALLY, Cli, clone, labels_by_file, tiny_spec, tree_digest, values_file


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    terminalreporter.write_sep("-", f"reliability ({'chaos' if CHAOS else 'default'} size, seed {SEED})")
    for kind in sorted(TALLY):
        terminalreporter.write_line(f"{kind}: {TALLY[kind]}")


@pytest.fixture
def home(lerobot_home) -> Path:
    """An isolated LeRobot home and working folder; no RECAP_LABEL_* from the caller's shell
    (tests/conftest.py's `lerobot_home`)."""
    return lerobot_home


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A tiny copied dataset (`template`), a values file, and a labeled clone of it (`labeled`),
    with the labels before (`old`) and after (`new`) labeling, built once per test module."""
    base = tmp_path_factory.mktemp("world")
    from recap_label.demo import synth

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_LEROBOT_HOME", str(base / "home"))
        src = synth.write_dataset(base / "src", tiny_spec("v2.1", episodes=4, length=20))
        Cli()("copy", src, base / "copy", "--no-register")
        template = base / "copy"
        values = values_file(template, base / "values.parquet")
        labeled = clone(template, base / "labeled")
        Cli()("label", labeled, "--values", values, *LOOKAHEAD)
    return dict(
        base=base,
        src=src,
        src_digest=tree_digest(src),
        template=template,
        values=values,
        old=labels_by_file(template),
        new=labels_by_file(labeled),
        labeled=labeled,
    )
