"""`view` benchmark: the MP4 and the .rrd of one 400-frame episode with three 480x640 AV1 cameras,
against decoding that episode alone (target: MP4 <= 2x the decode; .rrd about the decode).

    python -m benchmarks.view_bench [--frames 400] [--repeat 3] [--work DIR] [--json OUT]

The dataset is written once under --work (default: a temp folder) with the camera-like frames of
the benchmarks (textured, panning; SVT-AV1 as LeRobot encodes), copied and labeled with
`recap-label` from random V. Each figure is the median of --repeat runs, in one process, on this
machine; the decode is timed the way `view` decodes (one thread per camera, the label path's
decoder) and also one camera after another.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def make_dataset(work: Path, frames: int) -> Path:
    """A labeled copy of a one-rollout dataset with three 480x640 AV1 cameras; its path."""
    from recap_label.demo import synth
    from benchmarks.camera_data import write_camera_dataset

    labeled = work / "home" / "local" / "viewbench_vlm_label"
    if labeled.exists():
        return labeled.resolve()
    spec = synth.simple_spec("v2.1", episodes=1, length=frames, demos=0, png_cameras=0, video_cameras=3, codec="av1")
    spec.cameras = {k: synth.CameraSpec("video", 480, 640, "av1") for k in spec.cameras}
    src = work / "viewbench"
    write_camera_dataset(src, spec)
    env = {**os.environ, "HF_LEROBOT_HOME": str(work / "home")}
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "recap_label", *map(str, a)], check=True, env=env, capture_output=True
    )
    run("copy", src)
    from recap_label.lerobot.dataset import DatasetFiles

    table = DatasetFiles.open(labeled).read_columns(["episode_index", "frame_index"])
    values = work / "values.parquet"
    pq.write_table(
        table.append_column("value", pa.array(np.random.default_rng(0).uniform(-1, 0, table.num_rows))), values
    )
    run("label", "local/viewbench_vlm_label", "--values", values, "--lookahead", "10")
    return labeled.resolve()


# figure -> median CPU seconds of this process (all its threads): what other load on the machine distorts least
CPU = {}


def median_time(name: str, fn, repeat: int) -> float:
    """Median wall seconds of `fn` over `repeat` runs (its CPU seconds kept in CPU[name])."""
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    CPU[name] = statistics.median(cpu)
    return statistics.median(wall)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for the dataset and outputs (kept; reused when the dataset is there)",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="view-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    root = make_dataset(work, args.frames)

    from recap_label.commands.view import run_view
    from recap_label.config import resolve_settings
    from recap_label.lerobot.dataset import DatasetFiles
    from recap_label.lerobot.frames import iter_episode_frames
    from recap_label.view import mp4 as mp4_mod
    from recap_label.view.cameras import iter_frames
    from recap_label.view.rrd import JPEG_QUALITY

    ds = DatasetFiles.open(root)
    cams = ds.camera_keys
    n = ds.episodes[0].length
    settings = resolve_settings(env={"HF_LEROBOT_HOME": str(work / "home")})

    def decode_threads():
        assert sum(1 for _ in iter_frames(ds, 0, cams, n)) == n

    def decode_sequential():
        for key in cams:
            assert sum(1 for _ in iter_episode_frames(ds, 0, key)) == n

    out_mp4, out_rrd = work / "episode.mp4", work / "episode.rrd"
    has_rerun = True
    try:
        import rerun  # noqa: F401
    except ImportError:
        has_rerun = False
    figures = {
        "machine": f"{os.cpu_count()} CPU cores, {sys.platform}",
        "episode": f"{n} frames, {len(cams)} cameras 480x640 AV1 at {ds.fps} fps",
        "decode_s (one thread per camera, as view)": median_time("decode", decode_threads, args.repeat),
        "decode_s (one camera after another)": median_time("decode_sequential", decode_sequential, args.repeat),
        "mp4_s": median_time("mp4", lambda: run_view(str(root), settings, episodes="0", mp4=str(out_mp4)), args.repeat),
    }
    figures["mp4_bytes"] = out_mp4.stat().st_size
    figures["mp4_x264"] = f"preset {mp4_mod.PRESET}, crf {mp4_mod.CRF}"
    figures["mp4 / decode"] = figures["mp4_s"] / figures["decode_s (one thread per camera, as view)"]
    if has_rerun:
        figures["rrd_s"] = median_time(
            "rrd", lambda: run_view(str(root), settings, episodes="0", rrd=str(out_rrd)), args.repeat
        )
        figures["rrd_bytes"] = out_rrd.stat().st_size
        figures["rrd_jpeg_quality"] = JPEG_QUALITY
        figures["rrd / decode"] = figures["rrd_s"] / figures["decode_s (one thread per camera, as view)"]
    figures.update({f"{k}_cpu_s": v for k, v in CPU.items()})
    figures["mp4 / decode (CPU s)"] = CPU["mp4"] / CPU["decode"]
    if "rrd" in CPU:
        figures["rrd / decode (CPU s)"] = CPU["rrd"] / CPU["decode"]
    figures["load average (1 min, at the end)"] = os.getloadavg()[0]
    for k, v in figures.items():
        print(f"{k:45s} {v:.3f}" if isinstance(v, float) else f"{k:45s} {v}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
