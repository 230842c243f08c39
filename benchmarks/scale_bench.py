"""Every command at millions of frames, each beside the floor F measured in the same run.

    python -m benchmarks.scale_bench [--frames 1000000,4000000] [--quick] [--cache-dir DIR] [--out FILE]

Generates (once, cached under --cache-dir) v3.0 datasets of 500-frame episodes without cameras
with `python -m recap_label.demo.synth`, one demo in ten. F, the floor, is a plain pyarrow rewrite
of every data file that keeps its row groups (read each row group, write it with one
`ParquetWriter`, fsync). Then each command runs as its own subprocess (its peak RSS is its own,
`ru_maxrss` of the child): `copy`, `label --value-column value_label`, a relabel with another
ratio, `verify`, `diff` of two iterations, `rollback`. Each is printed in seconds and as a
multiple of F; targets (issue 22): label, relabel, rollback <= 1.5 F; verify, diff <= 0.3 F;
copy <= 0.5 F; peak RSS <= 400 MB at 1 M frames, growing by <= 100 bytes per frame to 4 M.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.child import run_child
from benchmarks.datasets import default_cache_dir

EPISODE_LENGTH = 500
QUICK_FRAMES = 20_000
DATA_VERSION = "scale1"

# (key, what the row says, target as a multiple of F)
TARGETS = {
    "copy": ("copy", 0.5),
    "label": ("label --value-column value_label", 1.5),
    "relabel": ("the same with another ratio", 1.5),
    "verify": ("verify", 0.3),
    "diff": ("diff of two iterations", 0.3),
    "rollback": ("rollback", 1.5),
}
RSS_LIMIT_1M = 400e6
RSS_GROWTH_PER_FRAME = 100


def ensure_dataset(cache: Path, frames: int, say=print) -> tuple[Path, float | None]:
    """The generated dataset of `frames` frames (cached), and the seconds it took to generate (None if cached)."""
    episodes = max(frames // EPISODE_LENGTH, 10)
    root = cache / f"{DATA_VERSION}-{episodes * EPISODE_LENGTH}"
    if (root / "DONE").exists():
        return root / "ds", None
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    say(f"generating {episodes * EPISODE_LENGTH:,} frames ...")
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "recap_label.demo.synth", str(root / "ds"), "--version", "v3.0"]
        + ["--episodes", str(episodes), "--length", str(EPISODE_LENGTH), "--demos", str(episodes // 10)]
        + ["--png-cameras", "0", "--video-cameras", "0"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    took = time.perf_counter() - t0
    (root / "DONE").write_text(f"{took:.1f}\n")
    return root / "ds", took


def data_files(root: Path) -> list[Path]:
    return sorted((root / "data").rglob("*.parquet"))


def floor_rewrite(root: Path, out: Path) -> float:
    """F: every data file rewritten with pyarrow, row group by row group, fsynced. Seconds."""
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i, path in enumerate(data_files(root)):
        src = pq.ParquetFile(path)
        target = out / f"{i}.parquet"
        with pq.ParquetWriter(target, src.schema_arrow) as writer:
            for g in range(src.num_row_groups):
                writer.write_table(src.read_row_group(g))
        with open(target, "rb+") as f:
            os.fsync(f.fileno())
    took = time.perf_counter() - t0
    shutil.rmtree(out)
    return took


def recap(*args: str) -> list[str]:
    return [sys.executable, "-m", "recap_label", *args, "--json"]


def measure(frames: int, cache: Path, say=print) -> dict:
    """One size: F, then each command (seconds, multiple of F, peak RSS)."""
    src, generated = ensure_dataset(cache, frames, say)
    work = Path(tempfile.mkdtemp(prefix="scale-", dir=cache))
    home = os.environ.get("HF_LEROBOT_HOME")
    os.environ["HF_LEROBOT_HOME"] = str(work / "lerobot-home")  # the children's LeRobot cache: a scratch one
    try:
        orig = work / "orig"
        shutil.copytree(src, orig)  # a fresh original each run: copy refuses a second line from one original
        size = sum(p.stat().st_size for p in data_files(orig))
        say(f"{frames:,} frames: floor F ...")
        floor = min(floor_rewrite(orig, work / "floor") for _ in range(2))
        a, b = work / "orig_vlm_label", work / "orig_vlm_label_v2"
        steps = [
            ("copy", recap("copy", str(orig), str(a), "--no-register")),
            ("label", recap("label", str(a), "--value-column", "value_label")),
            ("relabel", recap("label", str(a), "--value-column", "value_label", "--positive-ratio", "0.4")),
            ("verify", recap("verify", str(a))),
            ("copy2", recap("copy", str(a), str(b), "--no-register")),
            ("label2", recap("label", str(b), "--value-column", "value_label", "--positive-ratio", "0.2")),
            ("diff", recap("diff", str(a), str(b))),
            ("rollback", recap("rollback", str(a))),
        ]
        commands = {}
        for key, args in steps:
            say(f"{frames:,} frames: {key} ...")
            r = run_child(args)
            if r["rc"] != 0:
                raise RuntimeError(f"{key} failed (exit {r['rc']}): {r['stderr'][-2000:]}")
            if key in TARGETS:
                commands[key] = {"wall_s": r["wall_s"], "of_floor": r["wall_s"] / floor, "maxrss": r["maxrss_bytes"]}
        return {
            "frames": frames,
            "data_bytes": size,
            "data_files": len(data_files(orig)),
            "generate_s": generated,
            "floor_s": floor,
            "commands": commands,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if home is None:
            os.environ.pop("HF_LEROBOT_HOME", None)
        else:
            os.environ["HF_LEROBOT_HOME"] = home


def rows(results: list[dict], quick: bool) -> list[dict]:
    """One row per command and size (section "8 scale" of make bench): seconds, x F, peak RSS, target met."""
    out = []
    by_frames = {r["frames"]: r for r in results}
    for res in results:
        n = res["frames"]
        out.append(
            {
                "name": f"floor F at {n:,} frames",
                "value": res["floor_s"],
                "unit": "s",
                "detail": f"{res['data_files']} files, {res['data_bytes'] / 1e6:.0f} MB",
            }
        )
        for key, c in res["commands"].items():
            what, limit = TARGETS[key]
            rss_ok = c["maxrss"] <= RSS_LIMIT_1M if n <= 1_000_000 else None
            small = by_frames.get(1_000_000)
            if n > 1_000_000 and small and key in small["commands"]:
                rss_ok = (c["maxrss"] - small["commands"][key]["maxrss"]) / (n - 1_000_000) <= RSS_GROWTH_PER_FRAME
            ok = None if quick else (c["of_floor"] <= limit and rss_ok is not False)
            out.append(
                {
                    "name": f"{what} at {n:,} frames",
                    "value": c["of_floor"],
                    "unit": "x F",
                    "target": f"<= {limit} F",
                    "ok": ok,
                    "detail": f"{c['wall_s']:.2f} s, peak RSS {c['maxrss'] / 1e6:.0f} MB",
                }
            )
    return out


def render(results: list[dict], quick: bool) -> None:
    sizes = [r["frames"] for r in results]
    print("command".ljust(48) + "".join(f"{n:>30,}" for n in sizes))
    print("floor F".ljust(48) + "".join(f"{r['floor_s']:>28.2f} s" for r in results))
    for key, (what, limit) in TARGETS.items():
        line = f"{what} (<= {limit} F)".ljust(48)
        for r in results:
            c = r["commands"][key]
            line += f"{c['of_floor']:>8.2f} F {c['wall_s']:>7.2f} s {c['maxrss'] / 1e6:>6.0f} MB"
        print(line)
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        line = "peak RSS growth, bytes per frame".ljust(48)
        grow = [
            (hi["commands"][k]["maxrss"] - lo["commands"][k]["maxrss"]) / (hi["frames"] - lo["frames"]) for k in TARGETS
        ]
        print(line + ", ".join(f"{k} {g:.0f}" for k, g in zip(TARGETS, grow)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", default="1000000,4000000", help="comma-separated dataset sizes in frames")
    p.add_argument("--quick", action="store_true", help=f"one small size ({QUICK_FRAMES:,} frames), no targets")
    p.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="generated datasets, kept between runs")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    sizes = [QUICK_FRAMES] if args.quick else [int(s.replace("_", "")) for s in args.frames.split(",")]
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    cache = args.cache_dir.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    results = [measure(n, cache, say) for n in sorted(sizes)]
    render(results, args.quick)
    if args.out:
        args.out.write_text(json.dumps({"quick": args.quick, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
