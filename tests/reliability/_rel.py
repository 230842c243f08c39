"""Shared helpers of the reliability suite (kill, fault, fuzz, concurrency, original-is-sacred).

Not a conftest (tests/ has several conftest.py files; a second module named `conftest` would
shadow the top-level one): test modules import what they need from here, fixtures included.

Size: the default run fits CI; `RECAP_CHAOS=1` runs the larger sweep (`make chaos`).
Seeds: `RECAP_CHAOS_SEED` (default 20240611) seeds every random choice of the suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recap_label.devtools import synth
from recap_label.lerobot.dataset import LeRobotDataset
from support import Cli, error_line, isolate_lerobot_home, tree_digest  # noqa: F401 (error_line is re-exported to the suite)

CHAOS = os.environ.get("RECAP_CHAOS", "") not in ("", "0")
SEED = int(os.environ.get("RECAP_CHAOS_SEED", "20240611"))
import recap_label as _pkg

PKG_ROOT = Path(_pkg.__file__).resolve().parents[1]  # subprocesses run the same recap_label as the tests

# what the suite tried, printed at the end of the session (see the `tally` fixture)
TALLY: Counter = Counter()
_TALLY_LOCK = threading.Lock()


def count(kind: str, n: int = 1) -> None:
    with _TALLY_LOCK:
        TALLY[kind] += n


class _Summary:
    def pytest_terminal_summary(self, terminalreporter):
        if not TALLY:
            return
        terminalreporter.write_sep("-", f"reliability ({'chaos' if CHAOS else 'default'} size, seed {SEED})")
        for kind in sorted(TALLY):
            terminalreporter.write_line(f"{kind}: {TALLY[kind]}")


@pytest.fixture(scope="session")
def tally(pytestconfig):
    if not pytestconfig.pluginmanager.has_plugin("recap-reliability-summary"):
        pytestconfig.pluginmanager.register(_Summary(), "recap-reliability-summary")
    return TALLY


# -- environment and command runners ---------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch, tally) -> Path:
    """An isolated LeRobot home and working folder; no RECAP_LABEL_* from the caller's shell."""
    return isolate_lerobot_home(tmp_path, monkeypatch)


@pytest.fixture
def cli() -> Cli:
    return Cli()


def sub_env(home: Path | None = None, crash: str | None = None, slow: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECAP_LABEL_")}
    if home is not None:
        env["HF_LEROBOT_HOME"] = str(home)
    if crash:
        env["RECAP_LABEL_CRASH_AT"] = crash
    if slow:
        env["RECAP_LABEL_SLOW_AT"] = slow
    env["PYTHONPATH"] = str(PKG_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cmd(*args) -> list[str]:
    return [sys.executable, "-m", "recap_label", *[str(a) for a in args]]


def run_sub(args, *, home=None, crash=None, slow=None, cwd=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd(*args), capture_output=True, text=True, env=sub_env(home, crash, slow), cwd=cwd, timeout=timeout)


def assert_clean_exit(proc: subprocess.CompletedProcess, allowed=(0,)) -> None:
    assert proc.returncode in allowed, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr


# -- datasets and their states ---------------------------------------------------------------------


def tiny_spec(version="v2.1", episodes=4, length=24, rows_per_file=None, seed=0, png=0) -> synth.DatasetSpec:
    return synth.simple_spec(version, episodes=episodes, length=length, demos=1, png_cameras=png, video_cameras=0,
                             size=16, rows_per_file=rows_per_file, seed=seed)


def full_digest(root: Path) -> dict[str, str]:
    """Content of everything reachable from root, symlinks followed (the source tree as LeRobot sees it)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.is_symlink():
                out[rel] = "dangling:" + os.readlink(p)
    return out


def data_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "data").rglob("*.parquet") if not p.name.startswith("."))


def labels_by_file(root: Path, adv_col="adv_ind") -> dict[str, list]:
    return {p.relative_to(root).as_posix(): pq.read_table(p, columns=[adv_col])[adv_col].to_pylist() for p in data_files(root)}


def file_state(root: Path, adv_col="adv_ind") -> dict[str, dict]:
    """Per data file: schema with metadata, row groups, labels, and every other column."""
    out = {}
    for path in data_files(root):
        pf = pq.ParquetFile(path)
        table = pf.read()
        out[path.relative_to(root).as_posix()] = {
            "schema": pf.schema_arrow,
            "row_groups": [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)],
            "labels": table[adv_col].to_pylist(),
            "others": table.drop_columns([adv_col]),
        }
    return out


def assert_intact(root: Path, reference: dict[str, dict], allowed_labels: list[dict[str, list]], where: str = "") -> None:
    """Every data file readable, schema + metadata + other columns as in `reference`, labels entirely
    one of the `allowed_labels` states (per file)."""
    state = file_state(root)
    assert state.keys() == reference.keys(), where
    for rel, ref in reference.items():
        got = state[rel]
        assert got["schema"].equals(ref["schema"], check_metadata=True), (where, rel)
        assert got["row_groups"] == ref["row_groups"], (where, rel)
        assert got["others"].equals(ref["others"]), (where, rel)
        assert any(got["labels"] == allowed[rel] for allowed in allowed_labels), (where, rel)


def values_file(root: Path, out: Path, seed: int = 0) -> Path:
    """Distinct random V for every frame (no ties at the threshold)."""
    table = LeRobotDataset.open(root).read_columns(["episode_index", "frame_index"])
    rng = np.random.default_rng(seed)
    pq.write_table(table.append_column("value", pa.array(rng.uniform(-1, 0, table.num_rows))), out)
    return out


def clone(src: Path, dest: Path) -> Path:
    """A byte copy of a dataset folder (symlinks kept as symlinks), for one trial."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


LOOKAHEAD = ("--lookahead", "5")


def labeled_world(base: Path) -> dict:
    """A tiny copied dataset (`template`), a values file, and a labeled clone of it (`labeled`),
    with the labels before (`old`) and after (`new`) labeling, built once per test module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_LEROBOT_HOME", str(base / "home"))
        src = synth.write_dataset(base / "src", tiny_spec("v2.1", episodes=4, length=20))
        Cli()("copy", src, base / "copy", "--no-register")
        template = base / "copy"
        values = values_file(template, base / "values.parquet")
        labeled = clone(template, base / "labeled")
        Cli()("label", labeled, "--values", values, *LOOKAHEAD)
    return dict(base=base, src=src, src_digest=tree_digest(src), template=template, values=values,
                old=labels_by_file(template), new=labels_by_file(labeled), labeled=labeled)


def lineage(root: Path) -> dict:
    return json.loads((root / "meta" / "recap_label" / "lineage.json").read_text())


def hidden_leftovers(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(".recap-*"))
