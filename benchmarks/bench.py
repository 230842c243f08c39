"""Benchmarks: decode, data pipeline, model, end to end, relabel, write-back, reference baseline.

    python -m benchmarks.bench [--device auto|cpu|cuda] [--quick] [--out bench-results.json]
                                [--cache-dir ~/.cache/recap-label/bench]

Generates (once, cached under --cache-dir, keyed by DATA_VERSION) a dataset shaped like the
RECAP reference run (synth.reference_spec: 10 rollouts, 21,286 frames at 30 fps, 6,968
intervention frames, three 224-px AV1 cameras, LeRobot v2.1) and a PNG-in-parquet variant
(two 224-px cameras; frames carry +-2 deterministic noise so each PNG is ~60 KB like a real
camera frame, where synth's flat frames would compress to <1 KB). Then prints one table and
writes JSON; each number is the median of `--repeat` runs unless the row says otherwise.
Every result carries the device name, torch version and core count.

Sections (see README "Benchmarks"):
 1 decode     our sequential per-episode decode vs LeRobot-style per-frame random access
 2 pipeline   files -> letterboxed uint8 batches + tokens (EpisodeFrames + DataLoader, no model);
              plus a 480x640 3-camera AV1 rig (camera-like texture) per core, GPU and CPU letterbox
 3 model      full-size critic forward (random weights), frames/s, peak memory, TFLOP/s on CUDA
 4 e2e        `label` with the tiny model on CPU (the full model with --device cuda)
 5 relabel    a new ratio from the values sidecar (no inference)
 6 writeback  label --values on the PNG variant: stage/commit time, peak RSS of the run
 7 baseline   the reference's per-frame advantage loop and whole-file pyarrow/pandas rewrite
 8 scale      every command at 1 M and 4 M frames beside the floor F (benchmarks.scale_bench)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.child import run_child
from benchmarks.datasets import default_cache_dir, scratch_copy
from benchmarks.gpu import GpuBusy, bf16_peak, model_inputs, random_model
from recap_label.demo.tiny_model import TINY_CHECKPOINT as TINY_CKPT, TINY_TOKENIZER

# Bump when the generated data changes: the cache folder is keyed by it.
DATA_VERSION = "ref1"
HEAD, LEFT, RIGHT = (
    "observation.images.head_camera",
    "observation.images.left_wrist_camera",
    "observation.images.right_wrist_camera",
)
PNG_NOISE = 2


# ---------------------------------------------------------------------------------------------
# Datasets


def _noisy_frames():
    """A context in which synth draws every camera frame with +-PNG_NOISE deterministic noise."""
    from recap_label.demo import synth

    original = synth.frame_rgb

    def frame_rgb(episode_index, frame_index, camera_name, height, width):
        base = original(episode_index, frame_index, camera_name, height, width)
        seed = (episode_index * 1_000_003 + frame_index % 200) * 7 + synth.camera_blue(camera_name)
        noise = np.random.default_rng(seed).integers(-PNG_NOISE, PNG_NOISE + 1, base.shape, dtype=np.int16)
        return np.clip(base.astype(np.int16) + noise, 0, 255).astype(np.uint8)

    @contextmanager
    def ctx():
        synth.frame_rgb = frame_rgb
        try:
            yield
        finally:
            synth.frame_rgb = original

    return ctx()


def dataset_specs(quick: bool):
    """{name: (DatasetSpec, noisy)}: the AV1 reference and the PNG variant (or tiny ones)."""
    from recap_label.demo import synth

    if quick:
        av1 = synth.simple_spec("v2.1", episodes=2, length=40, demos=0, png_cameras=0, video_cameras=3, size=64)
        av1.cameras = {k: c for k, c in zip((HEAD, LEFT, RIGHT), av1.cameras.values())}
        png = synth.simple_spec("v2.1", episodes=2, length=40, demos=0, png_cameras=2, video_cameras=0, size=64)
        png.cameras = {k: c for k, c in zip((HEAD, LEFT), png.cameras.values())}
        return {"av1": (av1, False), "png": (png, True), "rig480": (rig_spec(2, 24), "camera")}
    av1 = synth.reference_spec("v2.1")
    png = synth.reference_spec("v2.1", cameras={k: synth.CameraSpec("image", 224, 224) for k in (HEAD, LEFT)})
    return {"av1": (av1, False), "png": (png, True), "rig480": (rig_spec(2, RIG_LENGTH), "camera")}


RIG_LENGTH = 600  # frames per episode of the 480x640 rig row: enough for a steady rate, quick to encode


def rig_spec(episodes: int, length: int):
    """The newcomer's bimanual rig: three 480x640 AV1 cameras (LeRobot's libsvtav1, GOP 2, crf 30)."""
    from recap_label.demo import synth

    spec = synth.simple_spec("v2.1", episodes=episodes, length=length, demos=0, png_cameras=0, video_cameras=3, size=64)
    spec.cameras = {k: synth.CameraSpec("video", 480, 640) for k in (HEAD, LEFT, RIGHT)}
    return spec


def ensure_dataset(cache_dir: Path, name: str, quick: bool, log=print) -> tuple[Path, float | None]:
    """The cached dataset `name` (generated on first use); (path, seconds spent generating or None)."""
    from recap_label.demo import synth

    spec, noisy = dataset_specs(quick)[name]
    key = f"{DATA_VERSION}-{'quick' if quick else 'full'}-{name}"
    root = cache_dir / key / "dataset"
    if (cache_dir / key / "DONE").exists():
        return root, None
    shutil.rmtree(cache_dir / key, ignore_errors=True)
    (cache_dir / key).mkdir(parents=True)
    log(f"generating {name} dataset ({spec.total_frames:,} frames, {len(spec.cameras)} cameras) in {root} ...")
    t0 = time.perf_counter()
    tmp = cache_dir / key / "dataset.tmp"
    if noisy == "camera":
        from benchmarks.camera_data import write_camera_dataset

        write_camera_dataset(tmp, spec)
    elif noisy:
        with _noisy_frames():
            synth.write_dataset(tmp, spec)
    else:
        synth.write_dataset(tmp, spec)
    tmp.rename(root)
    (cache_dir / key / "DONE").write_text(json.dumps({"version": DATA_VERSION, "frames": spec.total_frames}))
    return root, time.perf_counter() - t0


def write_values_file(root: Path, path: Path, seed: int = 0) -> Path:
    """episode_index, frame_index, value (random in [-1, 0]) for every row of the dataset."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recap_label.lerobot.dataset import DatasetFiles

    t = DatasetFiles.open(root).read_columns(["episode_index", "frame_index"])
    value = -np.random.default_rng(seed).random(t.num_rows)
    pq.write_table(
        pa.table({"episode_index": t["episode_index"], "frame_index": t["frame_index"], "value": value}), path
    )
    return path


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Row:
    section: str
    name: str
    value: float | None
    unit: str
    detail: str = ""
    target: str = ""
    ok: bool | None = None
    runs: list[float] = field(default_factory=list)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def timed(fn, repeat: int) -> tuple[float, list[float], object]:
    """(median seconds, all seconds, last result) of `repeat` calls."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return median(times), times, result


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def label_json(result: dict) -> dict:
    if result["rc"] != 0:
        raise RuntimeError(f"label failed (exit {result['rc']}): {result['stderr'][-2000:]}")
    return json.loads(result["stdout"])


def environment(device) -> dict:
    import torch

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = {
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "cpu": name,
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    try:
        import av

        env["pyav"] = av.__version__
    except ImportError:
        pass
    return env


# ---------------------------------------------------------------------------------------------
# 1. Decode


def random_access_frame(path: Path, ts: float, tolerance_s: float = 1e-4) -> np.ndarray:
    """What a LeRobot `__getitem__` does per camera (decode_video_frames, pyav backend): open the
    file, seek to the keyframe before `ts`, decode forward converting every frame, keep the closest."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = float(stream.time_base)
        container.seek(int(ts / tb), backward=True, any_frame=False, stream=stream)
        loaded, stamps = [], []
        for frame in container.decode(stream):
            loaded.append(frame.to_ndarray(format="rgb24"))
            stamps.append(frame.pts * tb)
            if stamps[-1] >= ts - tolerance_s:
                break
    best = int(np.argmin(np.abs(np.asarray(stamps) - ts)))
    if abs(stamps[best] - ts) > tolerance_s:
        raise RuntimeError(f"no frame at t={ts} in {path}")
    return loaded[best]


def bench_decode(av1: Path, repeat: int, quick: bool, rows: list[Row]) -> None:
    from recap_label.lerobot.dataset import DatasetFiles
    from recap_label.lerobot.frames import iter_episode_frames

    ds = DatasetFiles.open(av1)
    cams = ds.camera_keys
    episodes = sorted(ds.episodes)[: 1 if quick else 2]
    n_seq = sum(ds.episodes[e].length for e in episodes) * len(cams)

    def sequential():
        n = 0
        for e in episodes:
            for cam in cams:
                for _ in iter_episode_frames(ds, e, cam):
                    n += 1
        return n

    rng = np.random.default_rng(0)
    n_rand = 20 if quick else 300
    picks = []
    for _ in range(n_rand):
        e = int(rng.choice(sorted(ds.episodes)))
        cam = cams[int(rng.integers(len(cams)))]
        frame = int(rng.integers(ds.episodes[e].length))
        ref = ds.episodes[e].videos[cam]
        picks.append((ref.path, frame / ds.fps + ref.from_timestamp))

    def random_access():
        for path, ts in picks:
            random_access_frame(path, ts)

    # interleave so both see the same machine load
    seq_t, rand_t = [], []
    for _ in range(repeat):
        seq_t.append(timed(sequential, 1)[0])
        rand_t.append(timed(random_access, 1)[0])
    seq_fps, rand_fps = n_seq / median(seq_t), n_rand / median(rand_t)
    ratio = seq_fps / rand_fps
    rows.append(
        Row(
            "1 decode",
            "sequential per-episode (frames.iter_episode_frames)",
            seq_fps,
            "frames/s",
            f"{n_seq:,} camera frames: {len(episodes)} episodes x {len(cams)} AV1 cams, "
            f"{ds.info['features'][cams[0]]['shape'][0]} px",
            runs=[n_seq / t for t in seq_t],
        )
    )
    rows.append(
        Row(
            "1 decode",
            "per-frame random access (open, seek, decode forward)",
            rand_fps,
            "frames/s",
            f"{n_rand} random (episode, camera, frame) picks, like LeRobot __getitem__",
            runs=[n_rand / t for t in rand_t],
        )
    )
    rows.append(Row("1 decode", "sequential / random access", ratio, "x", "", ">= 10x", ratio >= 10))


# ---------------------------------------------------------------------------------------------
# 2. Data pipeline


def pipeline_frames_per_s(
    root: Path,
    columns: list[str],
    workers: int,
    batch: int,
    episodes: list[int] | None,
    size: int = 224,
    pin: bool = False,
    device_letterbox: bool = False,
    cpu_seconds: list | None = None,
) -> tuple[float, int]:
    """Iterate the engine's DataLoader over EpisodeFrames (what ModelValues.episode_values builds)
    with a model that does nothing; (frames/s, frames). With device_letterbox, cameras that are not
    at the model's size stay raw (the CUDA path letterboxes them on the GPU). `cpu_seconds` gets the
    CPU time this process and its workers spent (per-core throughput = frames / CPU seconds)."""
    from torch.utils.data import DataLoader

    from recap_label.lerobot.dataset import DatasetFiles
    from recap_label.values.engine import EpisodeFrames, _identity
    from recap_label.model.preprocess import PromptTokenizer

    ds = DatasetFiles.open(root)
    episodes = sorted(ds.episodes) if episodes is None else episodes
    tok = PromptTokenizer(TINY_TOKENIZER)
    task_tokens = {i: tok.tokenize(t)[0].astype(np.int64) for i, t in ds.tasks.items()}
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    stream = EpisodeFrames(ds.root, episodes, columns, size, batch, task_tokens, device_letterbox)
    loader = DataLoader(
        stream,
        batch_size=None,
        collate_fn=_identity,
        num_workers=workers,
        pin_memory=False,
        prefetch_factor=4 if workers else None,
    )
    n = 0
    for batch in loader:
        if pin:
            batch.pin_memory()
        n += batch.n
    wall = time.perf_counter() - t0
    del loader  # workers exit, so their CPU time is counted
    if cpu_seconds is not None:
        cpu_seconds.append(_cpu_seconds() - cpu0)
    return n / wall, n


def _cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (DataLoader workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench_rig_pipeline(rig: Path, repeat: int, cuda: bool, rows: list[Row]) -> None:
    """480x640, 3 AV1 cameras: frames/s per core of the pipeline the CUDA path runs (decode + uint8
    batches, letterbox on the GPU), and of the CPU path (letterbox in the worker)."""
    from recap_label.lerobot.dataset import DatasetFiles

    ds = DatasetFiles.open(rig)
    episodes = sorted(ds.episodes)
    n_frames = sum(ds.episodes[e].length for e in episodes)
    batch = 64
    load = os.getloadavg()[0]
    for device_letterbox, what in (
        (True, "GPU letterbox (the CUDA path's CPU share)"),
        (False, "CPU letterbox in the worker"),
    ):
        cpu: list[float] = []
        runs = [
            pipeline_frames_per_s(
                rig,
                [HEAD, LEFT, RIGHT],
                0,
                batch,
                episodes,
                pin=cuda,
                device_letterbox=device_letterbox,
                cpu_seconds=cpu,
            )[0]
            for _ in range(repeat)
        ]
        per_core = median([n_frames / c for c in cpu])
        rows.append(
            Row(
                "2 pipeline",
                f"AV1 480x640, 3 cams, {what}, 0 workers, batch {batch}: per core",
                per_core,
                "frames/s/core",
                f"{n_frames:,} frames / CPU-seconds of the process (wall {median(runs):,.0f} frames/s; load avg "
                f"{load:.1f} "
                f"on {os.cpu_count()} cores); camera-like texture, ~9 KB/frame",
                ">= 350 frames/s/core" if device_letterbox else "",
                per_core >= 350 if device_letterbox else None,
                [n_frames / c for c in cpu],
            )
        )


def bench_pipeline(av1: Path, png: Path, repeat: int, quick: bool, cuda: bool, rows: list[Row]) -> None:
    from recap_label.lerobot.dataset import DatasetFiles

    ds = DatasetFiles.open(av1)
    episodes = sorted(ds.episodes)[:2]
    n_frames = sum(ds.episodes[e].length for e in episodes)
    batch = 64 if cuda else 8
    cases = [(av1, [HEAD, LEFT], w, "AV1, 2 cams (the critic's base + wrist)") for w in (0, 1, 2)]
    cases += [(av1, [HEAD, LEFT, RIGHT], w, "AV1, 3 cams") for w in (0, 2)]
    cases += [(png, [HEAD, LEFT], w, "PNG-in-parquet, 2 cams") for w in (0, 2)]
    for root, cols, workers, what in cases:
        eps = episodes if root == av1 else sorted(DatasetFiles.open(root).episodes)[: len(episodes)]
        runs = [pipeline_frames_per_s(root, cols, workers, batch, eps, pin=cuda)[0] for _ in range(repeat)]
        fps = median(runs)
        rows.append(
            Row(
                "2 pipeline",
                f"{what}, {workers} worker(s), batch {batch}",
                fps,
                "frames/s",
                f"{n_frames:,} frames ({len(episodes)} episodes) -> uint8 [B,{len(cols)},224,224,3] + tokens; "
                f"{fps * len(cols):,.0f} images/s",
                ">= 1,000 frames/s",
                fps >= 1000,
                runs,
            )
        )


# ---------------------------------------------------------------------------------------------
# 3. Model


def bench_model(device, quick: bool, rows: list[Row], env: dict) -> None:
    import torch

    from recap_label.demo.tiny_model import tiny_config
    from recap_label.model.params import ValueModelConfig, flops_per_frame
    from recap_label.model.preprocess import to_model_input

    cuda = device.type == "cuda"
    config = tiny_config() if quick else ValueModelConfig()
    what = "tiny config" if quick else "full size (So400m/14 + Gemma3-270M)"
    precision = "bf16" if cuda else "fp32"
    cameras = 2
    t0 = time.perf_counter()
    model = random_model(config, device, precision)
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    flops = flops_per_frame(config, cameras)
    rows.append(
        Row(
            "3 model",
            f"build {what}, random weights",
            build_s,
            "s",
            f"{params / 1e6:,.0f} M params, SigLIP {precision}; {flops / 1e12:.3f} TFLOP/frame ({cameras} cams, "
            f"params.flops_per_frame)",
        )
    )
    if cuda:
        plan = [(b, 2, 5) for b in (1, 8, 32, 64, 128)]
    else:
        plan = [(1, 1, 2), (8, 0, 1)] if not quick else [(1, 1, 2), (8, 1, 2)]
    peak = bf16_peak(env["device_name"]) if cuda else None
    for batch, warmup, iters in plan:
        images, mask, tokens = model_inputs(config, batch, cameras, device)

        def step():
            with torch.inference_mode():
                v = model(to_model_input(images), mask, tokens, tokens != 0)
            return v.float().cpu()

        try:
            for _ in range(warmup):
                step()
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            else:
                reset_peak_rss()
            times = []
            for _ in range(iters):
                t = time.perf_counter()
                step()
                times.append(time.perf_counter() - t)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            rows.append(Row("3 model", f"forward batch {batch}", None, "frames/s", "CUDA out of memory"))
            continue
        fps = batch / median(times)
        if cuda:
            mem = torch.cuda.max_memory_allocated(device)
            mem_s = f"peak GPU memory {mem / 2**30:.2f} GiB"
        else:
            mem = peak_rss_bytes()
            mem_s = f"peak RSS {mem / 2**30:.2f} GiB (process, weights included)"
        tflops = fps * flops / 1e12
        if cuda:
            mfu = (
                f"{tflops:,.1f} TFLOP/s = {100 * tflops / peak:.1f} % of {peak:,.0f} bf16 peak"
                if peak
                else f"{tflops:,.1f} TFLOP/s (peak unknown)"
            )
        else:
            mfu = "TFLOP/s vs peak: n/a on CPU"
        rows.append(
            Row(
                "3 model",
                f"forward batch {batch} ({iters} timed iter, {warmup} warm-up)",
                fps,
                "frames/s",
                f"{mem_s}; {mfu}",
                runs=[batch / t for t in times],
            )
        )
    model = None  # the full-size model is freed before the next section
    if cuda:
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# 4-6. label: end to end, relabel from the sidecar, write-back


def label_settings(cache_dir: Path):
    from recap_label.config import Settings

    return Settings(base_image_col=HEAD, wrist_image_col=LEFT, model_cache=cache_dir / "models")


def model_source(device: str, cache_dir: Path, full_model: bool):
    """The tiny checkpoint as a ModelValues source; with full_model the full-size random critic is swapped in."""
    import dataclasses

    from recap_label.values.model_source import ModelValues

    settings = dataclasses.replace(
        label_settings(cache_dir), checkpoint_dir=TINY_CKPT, tokenizer_path=TINY_TOKENIZER, device=device, json=True
    )
    source = ModelValues.from_settings(settings)
    if full_model:
        from recap_label.model.params import ValueModelConfig

        engine = source.engine
        engine.use_model(random_model(ValueModelConfig(), engine.device, engine.precision))
    return source


def cli_label(root: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "recap_label",
        "label",
        str(root),
        "--allow-original",
        "--json",
        "--base-image-col",
        HEAD,
        "--wrist-image-col",
        LEFT,
        *extra,
    ]


def model_flags(device: str) -> list[str]:
    return ["--checkpoint-dir", str(TINY_CKPT), "--tokenizer-path", str(TINY_TOKENIZER), "--device", device]


def bench_label(av1_scratch: Path, device, repeat: int, quick: bool, cache_dir: Path, rows: list[Row]) -> None:
    from recap_label.rule import RuleSettings
    from recap_label.commands.label import run_label

    cuda = device.type == "cuda"
    dev = str(device)
    source = model_source(dev, cache_dir, full_model=cuda and not quick)
    settings = label_settings(cache_dir)
    what = "full-size critic (random weights), bf16" if cuda and not quick else "tiny checkpoint (assets/), fp32"
    frames = walls = None
    runs, last = [], None
    for _ in range(min(repeat, 2)):  # each run labels all 21,286 frames
        with GpuBusy(device) as gpu:
            t0 = time.perf_counter()
            out = run_label(av1_scratch, settings, RuleSettings(), source, recompute=True, allow_original=True)
            wall = time.perf_counter() - t0
        assert out.values_from.startswith("inference"), out.values_from
        runs.append(wall)
        last = (out, dict(source.stats), gpu.mean)
    out, stats, util = last
    frames = int(stats["frames"])
    walls = median(runs)
    t = out.timings
    busy = f"GPU busy {100 * stats['infer_s'] / stats['wall_s']:.0f} % of inference wall (infer/wall)" if cuda else ""
    if cuda and util is not None:
        busy += f", nvml {util:.0f} %"
    rows.append(
        Row(
            "4 e2e",
            f"label (in-process run_label), {what}, {source.engine.num_workers} worker(s), batch "
            f"{source.engine.batch_size}",
            frames / walls,
            "frames/s",
            f"{frames:,} frames in {walls:.1f} s; fetch wait {stats['fetch_wait_s']:.1f} s, infer "
            f"{stats['infer_s']:.1f} s, "
            f"write {t.get('stage', 0) + t.get('commit', 0):.2f} s (stage {t.get('stage', 0):.2f} + commit "
            f"{t.get('commit', 0):.2f}); {busy}".rstrip("; "),
            runs=[frames / w for w in runs],
        )
    )
    rows.append(Row("4 e2e", "label wall time (in-process)", walls, "s", "", "", None, runs))
    # the CLI, as a user runs it (peak RSS from wait4)
    # first --infer needed (only autonomous frames and their lookahead endpoints), then all, on the same copy in
    # the same run; both infer from scratch, and the last leaves the complete sidecar that section 5 relabels from
    needed = run_child(cli_label(av1_scratch, *model_flags(dev), "--recompute", "--infer", "needed"))
    nj = label_json(needed)
    child = run_child(cli_label(av1_scratch, *model_flags(dev), "--recompute"))
    js = label_json(child)
    rows.append(
        Row(
            "4 e2e",
            "label CLI subprocess wall time (tiny checkpoint)",
            child["wall_s"],
            "s",
            f"{frames / child['wall_s']:,.0f} frames/s incl. start-up; values from {js['values_from']}",
        )
    )
    inferred = nj["performance"]["frames"] if nj["performance"] else 0
    rows.append(
        Row(
            "4 e2e",
            "label CLI --infer needed vs all: wall time",
            needed["wall_s"] / child["wall_s"],
            "x",
            f"needed {needed['wall_s']:.1f} s, {inferred:,} frames inferred; all {child['wall_s']:.1f} s, "
            f"{js['performance']['frames']:,} frames; {nj['infer']['frames_skipped']:,} frames skipped, the same "
            f"thresholds: {nj['thresholds'] == js['thresholds']}",
        )
    )
    rows.append(
        Row(
            "6 writeback",
            "peak RSS of the whole `label` run (AV1, model inference)",
            child["maxrss_bytes"] / 2**30,
            "GiB",
            "largest process (wait4 ru_maxrss; DataLoader workers are separate processes)",
            "< 2 GB",
            child["maxrss_bytes"] < 2e9,
        )
    )

    # 5. relabel from the sidecar: a new ratio, no inference
    ratios = [0.35, 0.4, 0.45, 0.5, 0.55][:repeat]
    rel = []
    for r in ratios:
        t0 = time.perf_counter()
        out = run_label(av1_scratch, settings, RuleSettings(positive_ratio=r), source, allow_original=True)
        rel.append(time.perf_counter() - t0)
        assert out.values_from == "sidecar (no inference)", out.values_from
        assert out.files_rewritten > 0
    t = out.timings
    rows.append(
        Row(
            "5 relabel",
            "relabel from the values sidecar (in-process run_label)",
            median(rel),
            "s",
            f"{frames:,} frames, {out.files_rewritten} files rewritten; read {t['read']:.2f} values "
            f"{t['values']:.2f} rule {t['rule']:.2f} "
            f"stage {t['stage']:.2f} commit {t['commit']:.2f} s",
            "< 3 s",
            median(rel) < 3,
            rel,
        )
    )
    # the CLI from the sidecar with --checkpoint-dir, then the same relabel with --value-column on the
    # same copy (last: it replaces the sidecar's provenance): nothing is inferred, so both should cost the same
    by_source = {}
    for what, flags in (("--checkpoint-dir", model_flags(dev)), ("--value-column", ["--value-column", "value_label"])):
        children = [run_child(cli_label(av1_scratch, *flags, "--positive-ratio", str(r))) for r in ratios]
        js = label_json(children[-1])
        assert js["values_from"] == ("sidecar (no inference)" if what == "--checkpoint-dir" else "value-column"), js[
            "values_from"
        ]
        by_source[what] = median([c["wall_s"] for c in children])
        rows.append(
            Row(
                "5 relabel",
                f"relabel CLI subprocess wall time, {what}",
                by_source[what],
                "s",
                f"in-command total {js['timings_s']['total']:.2f} s, the rest is interpreter + imports; "
                f"peak RSS {children[-1]['maxrss_bytes'] / 2**30:.2f} GiB",
                runs=[c["wall_s"] for c in children],
            )
        )
    ratio = by_source["--checkpoint-dir"] / by_source["--value-column"]
    rows.append(
        Row(
            "5 relabel",
            "relabel CLI from the sidecar: --checkpoint-dir / --value-column",
            ratio,
            "x",
            "same copy, same run; the checkpoint is checked but nothing is inferred",
            "<= 1.2",
            ratio <= 1.2,
        )
    )


def bench_writeback(png_scratch: Path, values: Path, repeat: int, rows: list[Row]) -> dict:
    """label --values on the PNG variant (all rollout files rewritten each run), as a subprocess."""
    sizes = sum(p.stat().st_size for p in (png_scratch / "data").rglob("*.parquet"))
    walls, stages, commits, rss = [], [], [], []
    for i in range(repeat):
        child = run_child(
            cli_label(png_scratch, "--values", str(values), "--positive-ratio", "0.3" if i % 2 == 0 else "0.5")
        )
        js = label_json(child)
        walls.append(child["wall_s"])
        stages.append(js["timings_s"]["stage"])
        commits.append(js["timings_s"]["commit"])
        rss.append(child["maxrss_bytes"])
        files = js["files_rewritten"]
    write = [s + c for s, c in zip(stages, commits)]
    rows.append(
        Row(
            "6 writeback",
            "write-back (stage + commit), PNG variant",
            median(write),
            "s",
            f"{files} files, {sizes / 2**30:.2f} GiB of parquet ({sizes / 2**30 / max(median(write), 1e-9):.2f} "
            f"GiB/s); "
            f"stage {median(stages):.2f} s (rewrite + fsync + hash), commit {median(commits):.2f} s",
            "",
            None,
            write,
        )
    )
    rows.append(
        Row(
            "6 writeback", "`label --values` subprocess wall time, PNG variant", median(walls), "s", "", "", None, walls
        )
    )
    rows.append(
        Row(
            "6 writeback",
            "peak RSS of `label --values`, PNG variant",
            max(rss) / 2**30,
            "GiB",
            "max over runs (wait4 ru_maxrss)",
            "< 2 GB",
            max(rss) < 2e9,
        )
    )
    return {"write_s": median(write), "bytes": sizes}


# ---------------------------------------------------------------------------------------------
# 7. Reference-style baseline


def reference_labels(episode, frame, human, reward, value, lookahead: int = 50, top_percent: float = 30.0):
    """The reference script's passes 3-4, transcribed: per-frame Python loop, np.sum over the
    reward slice cast to float, dict lookups of V keyed by (episode, frame), one global percentile."""
    by_episode: dict[int, list[int]] = {}
    for i, e in enumerate(episode.tolist()):
        by_episode.setdefault(e, []).append(i)
    cache = {(int(e), int(f)): float(v) for e, f, v in zip(episode, frame, value)}

    def lookup(e, f):
        return cache[(e, f)]

    advantages: dict[tuple[int, int], float] = {}
    all_autonomous = []
    for e, rows in by_episode.items():
        rows = sorted(rows, key=lambda i: frame[i])
        human_ep = [bool(human[i]) for i in rows]
        if all(human_ep):
            continue
        r = reward[rows].astype(np.float32)
        frames = [int(frame[i]) for i in rows]
        T = len(rows)
        for t in range(T):
            reward_sum = float(np.sum(r[t : min(t + lookahead, T)]))
            bootstrap = lookup(e, frames[t + lookahead]) if t + lookahead < T else 0.0
            a = np.float32(reward_sum + bootstrap - lookup(e, frames[t]))
            advantages[(e, frames[t])] = a
            if not human_ep[t]:
                all_autonomous.append(a)
    threshold = float(np.percentile(all_autonomous, 100.0 - top_percent))
    labels = {}
    for e, rows in by_episode.items():
        for i in rows:
            key = (e, int(frame[i]))
            if key in advantages:
                labels[key] = "positive" if human[i] or advantages[key] >= threshold else "negative"
    return threshold, labels


def bench_baseline(
    av1: Path, png_scratch: Path, values: Path, ours_write: dict | None, repeat: int, quick: bool, rows: list[Row]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recap_label.lerobot.columns import read_label_columns
    from recap_label.lerobot.dataset import DatasetFiles
    from recap_label.rule import RuleSettings, apply_rule
    from recap_label.store.writeback import rewrite_label_column

    ds = DatasetFiles.open(av1)
    s = label_settings(Path("."))
    cols = read_label_columns(ds, human_col=s.human_col, adv_col=s.adv_col, reward_col=s.reward_col)
    value = -np.random.default_rng(1).random(cols.episode.size)
    ref_s, _, (ref_thr, _) = timed(
        lambda: reference_labels(cols.episode, cols.frame, cols.human, cols.reward, value), repeat
    )
    our_s, _, res = timed(
        lambda: apply_rule(cols.episode, cols.frame, cols.human, cols.reward, value, RuleSettings()), max(repeat, 3)
    )
    same = np.isclose(ref_thr, res.thresholds["global"], rtol=0, atol=1e-6)
    rows.append(
        Row(
            "7 baseline",
            "reference per-frame Python advantage loop + percentile",
            ref_s,
            "s",
            f"{cols.episode.size:,} frames",
        )
    )
    rows.append(
        Row(
            "7 baseline",
            "rule.apply_rule (vectorized)",
            our_s,
            "s",
            f"{ref_s / our_s:,.0f}x faster; same threshold: {bool(same)}",
            "",
            bool(same),
        )
    )

    # whole-file read / modify / write of every rollout file vs our column rewrite, PNG variant
    pds = DatasetFiles.open(png_scratch)
    files = pds.data_files
    labels = {
        p: np.where(np.arange(pq.ParquetFile(p).metadata.num_rows) % 2 == 0, "positive", "negative").astype(object)
        for p in files
    }
    tmp = png_scratch / "bench-tmp.parquet"

    def arrow_roundtrip():
        for p in files:
            t = pq.read_table(p)
            i = t.schema.get_field_index("adv_ind")
            t = t.set_column(i, t.schema.field(i), pa.array(list(labels[p]), pa.string()))
            pq.write_table(t, tmp)
            tmp.unlink()

    def ours():
        for p in files:
            rewrite_label_column(p, tmp, "adv_ind", labels[p])
            tmp.unlink()

    def measure(fn):
        reset_peak_rss()
        base = peak_rss_bytes()
        s, runs, _ = timed(fn, 1 if not quick else repeat)
        return s, runs, peak_rss_bytes() - base

    size = sum(p.stat().st_size for p in files) / 2**30
    ours_s, ours_runs, ours_rss = measure(ours)
    rows.append(
        Row(
            "7 baseline",
            "writeback.rewrite_label_column, every rollout file (PNG variant)",
            ours_s,
            "s",
            f"{len(files)} files, {size:.2f} GiB; peak RSS +{ours_rss / 2**20:,.0f} MiB",
            runs=ours_runs,
        )
    )
    arrow_s, arrow_runs, arrow_rss = measure(arrow_roundtrip)
    rows.append(
        Row(
            "7 baseline",
            "pyarrow read_table / set_column / write_table, every file",
            arrow_s,
            "s",
            f"{arrow_s / ours_s:.2f}x our rewrite time; peak RSS +{arrow_rss / 2**20:,.0f} MiB",
            runs=arrow_runs,
        )
    )
    try:
        import pandas as pd
    except ImportError:
        rows.append(
            Row(
                "7 baseline",
                "pandas read_parquet / to_parquet (the reference)",
                None,
                "s",
                "skipped: pandas is not installed",
            )
        )
    else:

        def pandas_roundtrip():
            for p in files:
                df = pd.read_parquet(p)
                df["adv_ind"] = list(labels[p])
                df.to_parquet(tmp, index=False)
                tmp.unlink()

        pd_s, pd_runs, pd_rss = measure(pandas_roundtrip)
        rows.append(
            Row(
                "7 baseline",
                f"pandas {pd.__version__} read_parquet / to_parquet (the reference), every file",
                pd_s,
                "s",
                f"{pd_s / ours_s:.2f}x our rewrite time; peak RSS +{pd_rss / 2**20:,.0f} MiB; drops the huggingface "
                f"schema metadata",
                runs=pd_runs,
            )
        )
    if ours_write:
        rows.append(
            Row(
                "7 baseline",
                "our full write-back (stage + commit, from 6) vs pyarrow round trip",
                arrow_s / ours_write["write_s"],
                "x",
                "ours also fsyncs, hashes and journals every file",
            )
        )


def bench_scale(cache: Path, quick: bool, rows: list[Row], notes: list[str], say) -> None:
    """8: every command at 1 M and 4 M frames (benchmarks.scale_bench; --quick: 20,000), each beside F."""
    from benchmarks import scale_bench

    sizes = [scale_bench.QUICK_FRAMES] if quick else [1_000_000, 4_000_000]
    results = [scale_bench.measure(n, cache, say) for n in sizes]
    for r in scale_bench.rows(results, quick):
        rows.append(Row("8 scale", r["name"], r["value"], r["unit"], r["detail"], r.get("target", ""), r.get("ok")))
    for r in results:
        if r["generate_s"]:
            notes.append(f"generated the {r['frames']:,}-frame scale dataset in {r['generate_s']:.0f} s (cached)")


# ---------------------------------------------------------------------------------------------
# Report


def render(rows: list[Row], env: dict, notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    title = (
        f"recap-label benchmarks · {env['device_name']} ({env['device']}) · torch {env['torch']} · "
        f"{env['cores']} cores · PyAV {env.get('pyav', '?')}"
    )
    t = Table(title=title, title_justify="left", show_lines=False)
    for col, kw in (
        ("section", {}),
        ("measurement", {}),
        ("value", {"justify": "right"}),
        ("unit", {}),
        ("target", {}),
        ("", {}),
        ("detail", {"overflow": "fold"}),
    ):
        t.add_column(col, **kw)
    for r in sorted(rows, key=lambda r: r.section[:1]):
        value = "n/a" if r.value is None else (f"{r.value:,.0f}" if abs(r.value) >= 100 else f"{r.value:,.2f}")
        mark = "" if r.ok is None else ("ok" if r.ok else "MISS")
        detail = r.detail + (f" (median of {len(r.runs)})" if len(r.runs) > 1 else "")
        t.add_row(r.section, r.name, value, r.unit, r.target, mark, detail)
    console = Console(width=max(Console().width, 200))
    console.print(t)
    for n in notes:
        console.print(f"note: {n}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (model, end to end)")
    p.add_argument("--quick", action="store_true", help="tiny datasets and model, one repetition (CI smoke test)")
    p.add_argument(
        "--out", type=Path, default=Path("bench-results.json"), help="JSON results (default: bench-results.json)"
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="generated datasets, kept between runs (default: $XDG_CACHE_HOME or ~/.cache, /recap-label/bench)",
    )
    p.add_argument("--repeat", type=int, default=None, help="runs per measurement (default: 3, 1 with --quick)")
    p.add_argument("--only", default="1,2,3,4,5,6,7,8", help="comma-separated sections to run (default: all)")
    args = p.parse_args(argv)

    from recap_label.values.engine import resolve_device

    device = resolve_device(args.device)
    repeat = args.repeat or (1 if args.quick else 3)
    only = {s.strip() for s in args.only.split(",")}
    env = environment(device)
    cache = args.cache_dir.resolve()
    rows: list[Row] = []
    notes: list[str] = []
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    t_all = time.perf_counter()

    av1, gen = ensure_dataset(cache, "av1", args.quick, say)
    if gen:
        notes.append(f"generated the AV1 dataset in {gen:.0f} s (cached for the next run)")
    png, gen = ensure_dataset(cache, "png", args.quick, say)
    if gen:
        notes.append(f"generated the PNG dataset in {gen:.0f} s (cached for the next run)")
    rig = None
    if "2" in only:
        rig, gen = ensure_dataset(cache, "rig480", args.quick, say)
        if gen:
            notes.append(f"generated the 480x640 rig dataset in {gen:.0f} s (cached for the next run)")
    work = Path(tempfile.mkdtemp(prefix="work-", dir=cache))
    try:
        av1_scratch = png_scratch = values = None
        if only & {"4", "5", "6"}:
            av1_scratch = scratch_copy(av1, work / "av1")
        if only & {"6", "7"}:
            t0 = time.perf_counter()
            png_scratch = scratch_copy(png, work / "png")
            values = write_values_file(png_scratch, work / "values.parquet")
            notes.append(f"scratch copy of the PNG variant: {time.perf_counter() - t0:.1f} s")
        ours_write = None
        steps = [
            ("1", "decode", lambda: bench_decode(av1, repeat, args.quick, rows)),
            ("2", "data pipeline", lambda: bench_pipeline(av1, png, repeat, args.quick, device.type == "cuda", rows)),
            ("2", "data pipeline, 480x640 rig", lambda: bench_rig_pipeline(rig, repeat, device.type == "cuda", rows)),
            ("4", "end to end + 5 relabel", lambda: bench_label(av1_scratch, device, repeat, args.quick, cache, rows)),
        ]
        for key, what, fn in steps:
            if key in only:
                say(f"[{time.perf_counter() - t_all:5.0f} s] {key} {what} ...")
                fn()
        if "6" in only:
            say(f"[{time.perf_counter() - t_all:5.0f} s] 6 write-back ...")
            ours_write = bench_writeback(png_scratch, values, repeat, rows)
        if "7" in only:
            say(f"[{time.perf_counter() - t_all:5.0f} s] 7 baseline ...")
            bench_baseline(av1, png_scratch, values, ours_write, repeat, args.quick, rows)
        if "8" in only:
            say(f"[{time.perf_counter() - t_all:5.0f} s] 8 scale ...")
            bench_scale(cache, args.quick, rows, notes, say)
        if "3" in only:  # last: the full-size model takes most of the memory
            say(f"[{time.perf_counter() - t_all:5.0f} s] 3 model ...")
            bench_model(device, args.quick, rows, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.quick:  # tiny sizes: the targets are for the reference-sized data
        for r in rows:
            if r.target:
                r.ok = None
    total = time.perf_counter() - t_all
    notes.append(
        f"bench wall time {total:.0f} s; synthetic frames (flat colour + gradient, +-{PNG_NOISE} noise on PNG): "
        "real camera footage decodes slower"
    )
    render(rows, env, notes)
    result = {
        "env": env,
        "quick": args.quick,
        "repeat": repeat,
        "data_version": DATA_VERSION,
        "wall_s": total,
        "notes": notes,
        "results": [
            {**r.__dict__, "env": f"{env['device_name']} / torch {env['torch']} / {env['cores']} cores"} for r in rows
        ],
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
