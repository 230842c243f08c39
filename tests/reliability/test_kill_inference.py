"""SIGKILL during value-model inference (the tiny model, CPU): resume gives the uninterrupted labels.

The kill is deterministic, not timed: `RECAP_LABEL_CRASH_AT=episode-values:<n>` (see
recap_label.store.faults) SIGKILLs the run right after the values of its n-th episode were written,
for seeded n (n = the number of rollout episodes: after the last one, before anything is labeled).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from recap_label.demo import synth

from support import CHAOS, count, labels_by_file, lineage_json, model_args, run_sub

pytestmark = pytest.mark.slow

INFERENCE = ("--batch-size", "4", "--lookahead", "6", "--json")


def _label(dest: Path, home: Path, crash: str | None = None) -> subprocess.CompletedProcess:
    return run_sub(
        ["label", dest, *model_args(*INFERENCE)], home=home, crash=crash, model_cache=home / "model-cache", timeout=300
    )


def _values_from(proc: subprocess.CompletedProcess) -> str:
    return json.loads(proc.stdout[proc.stdout.index("{") :])["values_from"]


def test_kill_during_inference_then_resume(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    spec = synth.simple_spec("v2.1", episodes=6, length=40, demos=1, png_cameras=1, video_cameras=1, size=32)
    rollouts = sum(e.kind == "rollout" for e in spec.episodes)
    src = synth.write_dataset(tmp_path / "src", spec)
    p = run_sub(["copy", src, "--json"], home=home)
    assert p.returncode == 0, p.stderr
    template = tmp_path / "src_vlm_label"
    reference = tmp_path / "reference"
    shutil.copytree(template, reference)
    p = _label(reference, home)
    assert p.returncode == 0, p.stderr
    assert _values_from(p) == "inference"
    assert lineage_json(reference)["runs"][-1]["settings"]["lookahead"] == 6  # INFERENCE's, not model_args' default
    want = labels_by_file(reference)
    original = labels_by_file(template)

    rng = random.Random(20241125)
    rounds = 8 if CHAOS else 3
    killed = 0
    for k in range(rounds):
        n = rng.randint(1, rollouts)
        dest = tmp_path / f"k{k}"
        shutil.copytree(template, dest)
        p = _label(dest, home, crash=f"episode-values:{n}")
        assert "Traceback" not in p.stderr, p.stderr
        assert p.returncode == -signal.SIGKILL, (n, p.returncode, p.stderr[-2000:])  # killed mid-inference, every round
        killed += p.returncode == -9
        assert labels_by_file(dest) in (original, want)  # nothing is written before inference ends
        assert labels_by_file(dest) == original
        parts = sorted((dest / "meta" / "recap_label" / "values-partial").glob("*/episode-*.parquet"))
        assert len(parts) == n, (n, parts)
        p = _label(dest, home)
        assert p.returncode == 0, p.stderr
        assert labels_by_file(dest) == want
        assert f"resumed: {n} of {rollouts} episodes" in _values_from(p), (n, _values_from(p))
    assert killed >= 1
    assert killed == rounds
    count("kill points tried: label inference (after n episodes' values)", rounds)
    count("kills that landed mid-inference: label", killed)
