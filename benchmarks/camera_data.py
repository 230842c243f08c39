"""Camera-like benchmark datasets: 480x640 AV1 rigs that decode like real recordings.

synth's frames are flat gradients, which AV1 codes into almost nothing, so their decode cost
says little about a real camera. Here every camera frame is a fixed band-limited texture (the
detail of a real scene) that pans a pixel per frame (motion every P-frame must code), tinted with
synth's per-frame colour. Encoding is LeRobot's (SVT-AV1, GOP 2, crf 30, yuv420p via synth).

For speed the cameras of an episode share one encoded stream (hard links): decoding costs the
same per camera, the encoder runs once per episode, and episodes encode in parallel threads.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

TEXTURE_LEVELS = 64  # peak-to-peak texture contrast (uint8 levels)
PAN = 1  # pixels per frame


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    """int16 [H+pad, W+pad, 3], zero-mean band-limited noise (white noise, box-blurred)."""
    pad = 256
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((height + pad, width + pad, 3)).astype(np.float32)
    for _ in range(2):  # two 3-pixel box blurs: detail down to a few pixels, like a camera's optics
        for axis in (0, 1):
            x = (np.roll(x, -1, axis=axis) + x + np.roll(x, 1, axis=axis)) / 3
    x = x / (np.abs(x).max() + 1e-6) * (TEXTURE_LEVELS / 2)
    return x.astype(np.int16)


_TEXTURES: dict[tuple[int, int], np.ndarray] = {}


def camera_frame(episode_index: int, frame_index: int, camera_name: str, height: int, width: int) -> np.ndarray:
    """synth's frame colour plus a panning texture: the frame a real camera would deliver."""
    from recap_label.demo import synth

    key = (height, width)
    if key not in _TEXTURES:
        _TEXTURES[key] = _texture(height, width, seed=height * 7919 + width)
    texture = _TEXTURES[key]
    shift = (frame_index * PAN) % 256
    window = texture[shift // 2 : shift // 2 + height, shift : shift + width]
    colour = np.asarray(synth.expected_rgb(episode_index, frame_index, camera_name), dtype=np.int16)
    return np.clip(window + colour, 0, 255).astype(np.uint8)


@contextmanager
def camera_frames():
    """A context in which synth draws camera-like frames."""
    from recap_label.demo import synth

    original = synth.frame_rgb
    synth.frame_rgb = camera_frame
    try:
        yield
    finally:
        synth.frame_rgb = original


def write_camera_dataset(root: Path, spec, jobs: int | None = None) -> Path:
    """synth.write_dataset(root, spec) (v2.1: one mp4 per episode and camera) with camera-like
    frames, one encode per episode shared by its cameras, `jobs` encoder processes."""
    from recap_label.demo import synth

    if spec.version != "v2.1":
        raise ValueError("camera datasets are written as v2.1 (one video file per episode)")
    jobs = jobs or max(1, (os.cpu_count() or 1))
    encodes: dict[int, tuple] = {}  # episode -> (first path, args)
    links: list[tuple[Path, Path]] = []
    original = synth._encode_video

    def deferred(path: Path, camera_name: str, camera, fps: int, segments) -> None:
        ((episode_index, length),) = segments
        path.parent.mkdir(parents=True, exist_ok=True)
        if episode_index not in encodes:
            encodes[episode_index] = (path, camera_name, camera, fps, episode_index, length)
        else:
            links.append((encodes[episode_index][0], path))

    synth._encode_video = deferred
    try:
        synth.write_dataset(root, spec)
    finally:
        synth._encode_video = original
    try:
        # threads suffice: PyAV encodes with the GIL released (and SVT-AV1 threads inside too)
        with camera_frames(), ThreadPoolExecutor(max_workers=jobs) as pool:
            for future in [
                pool.submit(synth._encode_video, p, name, cam, fps, [(ep, n)])
                for p, name, cam, fps, ep, n in encodes.values()
            ]:
                future.result()
        for src, dst in links:
            os.link(src, dst)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return root
