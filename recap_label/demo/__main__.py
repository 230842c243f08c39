"""`make demo`: the Stage 5 runbook on a built-in example, with the real commands printed.

Generates a small LeRobot v2.1 dataset (one demo, rollouts with interventions, a PNG and a
video camera), then runs copy → label → verify → label again → rollback → verify, all inside
./demo-out: its own LeRobot home and its own converted-model cache, so neither the user's
LeRobot cache nor ~/.cache/recap-label is touched.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from recap_label.demo import synth
from recap_label.demo.tiny_model import TINY_CHECKPOINT, TINY_TOKENIZER

OUT = Path("demo-out")


def run(*args: str, env: dict) -> None:
    cmd = [sys.executable, "-m", "recap_label", *args]
    print(f"\n$ recap-label {shlex.join(args)}", flush=True)
    subprocess.run(cmd, check=True, env=env)


def demo_env(out: Path) -> dict:
    """The demo's environment: every place recap-label writes outside a dataset lies in `out`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECAP_LABEL_")}  # the user's settings would leak in
    return {
        **env,
        "HF_LEROBOT_HOME": str((out / "lerobot-home").absolute()),
        "RECAP_LABEL_MODEL_CACHE": str((out / "model-cache").absolute()),
        "COLUMNS": "100",
    }


def label_args(dataset: str) -> list[str]:
    """Label with the tiny value model shipped with the package: pistar's exact architecture
    (SigLIP + Gemma3 critic) at toy size, a real Orbax checkpoint and a SentencePiece tokenizer."""
    return [
        "label",
        dataset,
        "--checkpoint-dir",
        str(TINY_CHECKPOINT),
        "--tokenizer-path",
        str(TINY_TOKENIZER),
        "--base-image-col",
        "observation.images.base",
        "--wrist-image-col",
        "observation.images.wrist",
        "--lookahead",
        "10",
        "--device",
        "cpu",
    ]


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    env = demo_env(OUT)
    src = OUT / "example_rollouts"
    spec = synth.simple_spec("v2.1", episodes=6, length=90, demos=1, png_cameras=1, video_cameras=1, size=64)
    synth.write_dataset(src, spec)
    print(
        f"example dataset: {src} ({spec.total_frames} frames, {len(spec.episodes)} episodes, cameras: "
        f"{', '.join(spec.cameras)})"
    )
    run("copy", str(src), env=env)
    name = "local/example_rollouts_vlm_label"
    run(*label_args(name), env=env)
    run("verify", name, "--plot", str(OUT / "labels.png"), env=env)
    run(*label_args(name), "--positive-ratio", "0.5", env=env)
    run("rollback", name, "--list", env=env)
    run("rollback", name, env=env)
    run("verify", name, "--episodes", env=env)
    print(f"\ndemo done: everything is in {OUT}/ (plot: {OUT / 'labels.png'})")


if __name__ == "__main__":
    main()
