"""SIGKILL during value-model inference (the tiny model, CPU): resume gives the uninterrupted labels."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from recap_label.devtools import synth

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "recap_label" / "assets"
CHAOS = os.environ.get("RECAP_CHAOS") == "1"


def _label(dest: Path, home: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECAP_LABEL_")}
    env["HF_LEROBOT_HOME"] = str(home)
    env["RECAP_LABEL_MODEL_CACHE"] = str(home / "model-cache")
    cmd = [sys.executable, "-m", "recap_label", "label", str(dest), "--checkpoint-dir", str(ASSETS / "tiny_value_ckpt"),
           "--tokenizer-path", str(ASSETS / "tiny_tokenizer.model"), "--base-image-col", "observation.images.base",
           "--wrist-image-col", "observation.images.wrist", "--num-workers", "0", "--batch-size", "4", "--lookahead", "6", "--json"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def _labels(root: Path) -> dict[str, list]:
    return {p.relative_to(root).as_posix(): pq.read_table(p, columns=["adv_ind"])["adv_ind"].to_pylist()
            for p in sorted((root / "data").rglob("*.parquet")) if not p.name.startswith(".")}


def test_kill_during_inference_then_resume(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    spec = synth.simple_spec("v2.1", episodes=6, length=40, demos=1, png_cameras=1, video_cameras=1, size=32)
    src = synth.write_dataset(tmp_path / "src", spec)
    env = {**os.environ, "HF_LEROBOT_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "recap_label", "copy", str(src), "--json"], check=True, capture_output=True, env=env)
    template = tmp_path / "src_vlm_label"
    reference = tmp_path / "reference"
    shutil.copytree(template, reference)
    p = _label(reference, home)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    want = _labels(reference)
    original = _labels(template)

    rng = random.Random(20241125)
    rounds = 8 if CHAOS else 3
    killed = 0
    for k in range(rounds):
        dest = tmp_path / f"k{k}"
        shutil.copytree(template, dest)
        p = _label(dest, home)
        time.sleep(rng.uniform(1.0, 4.0))  # past start-up, inside inference most of the time
        p.kill()
        p.wait()
        killed += p.returncode == -9
        assert _labels(dest) in (original, want)  # nothing is written before inference ends
        p = _label(dest, home)
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert _labels(dest) == want
    assert killed >= 1
    print(f"\nkill points tried: label inference random instants: {rounds}")
