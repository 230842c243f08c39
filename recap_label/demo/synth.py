"""Synthetic LeRobot datasets with the RECAP columns, for tests, demos and benchmarks.

`write_dataset` writes a LeRobot **v2.1** or **v3.0** dataset whose files are laid out and typed
exactly as LeRobot's own writers lay them out (tests/test_synth.py checks them against the datasets
LeRobot itself wrote in tests/fixtures/lerobot/, see tests/fixtures/make_lerobot_fixtures.py):

* parquet columns: the user features in declaration order (`observation.state`, `action`,
  `reward_label`, `value_label`, `reward`, `intervention`, `adv_ind`, then the PNG cameras), then
  LeRobot's `timestamp`, `frame_index`, `episode_index`, `index`, `task_index`; the `huggingface`
  schema metadata holds the `datasets.Features` JSON (datasets 3.x "Sequence" style for v2.1,
  4.x "List" style plus a fingerprint for v3.0);
* v2.1: one parquet (one row group) and one mp4 per camera per episode, `meta/*.jsonl`;
* v3.0: many episodes per data file (one row group per episode) and per mp4 (one continuous
  stream, pts continuing across episodes, a keyframe at every episode start),
  `meta/episodes/chunk-000/file-000.parquet`, `meta/tasks.parquet`, `meta/stats.json`.

The RECAP columns of an episode of length T, t = 0..T-1:
`reward_label` = -1/T, except the last frame: 0 on success, -1 on failure; `value_label` =
-(T-1-t)/T on success, -1 on every frame of a failure; `reward` = 1 on the last frame of a
success, else 0; `intervention` = 1 on every demo frame and inside the rollout's intervention
spans, else 0; `adv_ind` = "positive" for demos, "none" for rollouts (configurable).

Values are chosen so that a reader can check it found the right row and the right video frame:
`observation.state` = [episode_index, frame_index, noise...], `action` = [episode_index,
frame_index + 1, noise...], and every camera frame is `frame_rgb(...)`: a flat colour given by
`expected_rgb(episode_index, frame_index, camera_name)` plus a zero-mean gradient (red grows to the
right, green grows downwards), so a decoded frame's per-channel mean is the expected colour
(within 3/255 after AV1/H.264 in yuv420p).

Command line: `python -m recap_label.demo.synth OUT_DIR [--version v2.1|v3.0] [--episodes N] ...`
(`--help` lists the options).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

Version = Literal["v2.1", "v3.0"]
EpisodeKind = Literal["demo", "rollout"]

V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V30_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V30_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V30_EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
# What LeRobot 0.4.4 records in info.json by default (informational: `rows_per_file` decides here).
V30_DATA_FILES_SIZE_IN_MB = 100
V30_VIDEO_FILES_SIZE_IN_MB = 200
# LeRobot's meta/episodes writer flushes every 10 episodes, hence row groups of 10 episodes.
V30_EPISODES_PER_ROW_GROUP = 10
# meta/tasks.parquet is written by pandas in LeRobot; we write the same bytes' schema with pyarrow
# and record the pandas version of the fixture environment in its `pandas` metadata.
PANDAS_VERSION_IN_METADATA = "2.3.3"

QUANTILES = (1, 10, 50, 90, 99)
DEFAULT_FEATURE_NAMES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
# A cheap image-stats sample: at most this many frames per episode, pixels strided by 4.
IMAGE_STATS_MAX_FRAMES = 16
IMAGE_STATS_PIXEL_STRIDE = 4
# Half the peak-to-peak amplitude of the gradient added to every camera frame.
PATTERN_AMPLITUDE = 12

ENCODER_BY_CODEC = {"av1": ("libsvtav1", "libaom-av1"), "h264": ("libx264",)}
# LeRobot's encode_video_frames defaults: keyframe every 2 frames, preset 12 for SVT-AV1 (the crf,
# 30 in LeRobot, is CameraSpec.crf).
ENCODER_OPTIONS = {
    "libsvtav1": {"g": "2", "preset": "12"},
    "libaom-av1": {"g": "2", "cpu-used": "8"},
    "libx264": {"g": "2"},
}


# --------------------------------------------------------------------------------------------
# Specification

RENAMEABLE_COLUMNS = (
    "observation.state",
    "action",
    "reward_label",
    "value_label",
    "reward",
    "intervention",
    "adv_ind",
)


@dataclass
class EpisodeSpec:
    """One episode. A demo is human-driven on every frame (intervention = 1) and must succeed;
    a rollout is autonomous except inside `interventions`: sorted, disjoint [start, end) spans."""

    length: int
    task: str
    kind: EpisodeKind
    success: bool = True
    interventions: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"episode length must be >= 1, got {self.length}")
        if self.kind not in ("demo", "rollout"):
            raise ValueError(f"episode kind must be 'demo' or 'rollout', got {self.kind!r}")
        if self.kind == "demo" and (self.interventions or not self.success):
            raise ValueError("a demo episode is all intervention and successful: no spans, success=True")
        previous_end = 0
        for start, end in self.interventions:
            if not previous_end <= start < end <= self.length:
                raise ValueError(
                    f"intervention spans must be sorted, disjoint, non-empty and inside "
                    f"[0, {self.length}): got {self.interventions}"
                )
            previous_end = end

    def intervention_mask(self) -> np.ndarray:
        """int64 array of length `length`: 1 on human frames, 0 on autonomous frames."""
        if self.kind == "demo":
            return np.ones(self.length, dtype=np.int64)
        mask = np.zeros(self.length, dtype=np.int64)
        for start, end in self.interventions:
            mask[start:end] = 1
        return mask

    @property
    def intervention_frames(self) -> int:
        return self.length if self.kind == "demo" else sum(end - start for start, end in self.interventions)


@dataclass
class CameraSpec:
    """A camera feature: "image" = PNG bytes inside the parquet, "video" = mp4 files.

    crf: the encoder's quality (LeRobot's default 30). At 30, SVT-AV1 3.x (PyAV 18.1.1) repeats
    the previous picture for some frames of a small, slowly changing image; a test that compares
    decoded pixels with `expected_rgb` asks for a lower crf."""

    kind: Literal["image", "video"]
    height: int
    width: int
    codec: Literal["av1", "h264"] = "av1"
    crf: int = 30

    def __post_init__(self) -> None:
        if self.kind not in ("image", "video"):
            raise ValueError(f"camera kind must be 'image' or 'video', got {self.kind!r}")
        if self.codec not in ENCODER_BY_CODEC:
            raise ValueError(f"codec must be one of {sorted(ENCODER_BY_CODEC)}, got {self.codec!r}")
        if self.kind == "video" and (self.height % 2 or self.width % 2):
            raise ValueError(f"yuv420p video needs even height and width, got {self.height}x{self.width}")


@dataclass(kw_only=True)
class DatasetSpec:
    """Everything `write_dataset` needs.

    rows_per_file (v3.0 only): a new data file starts when the current one would exceed this many
    rows (episodes are never split; None = one file). video_rows_per_file does the same for the mp4
    files of every camera (None = same as rows_per_file), so data and video files may roll over at
    different episodes, as they do in LeRobot. The file index wraps into the next chunk folder
    after `chunks_size` files; in v2.1 `chunks_size` is the number of episodes per chunk folder.
    adv_ind_initial: the `adv_ind` string written on every frame, by episode kind.
    column_names: on-disk names for the RECAP and vector columns, e.g. {"value_label": "value_lable"}
    (keys: observation.state, action, reward_label, value_label, reward, intervention, adv_ind).
    """

    version: Version
    episodes: list[EpisodeSpec]
    cameras: dict[str, CameraSpec] = field(default_factory=dict)
    fps: int = 30
    state_dim: int = 6
    action_dim: int = 6
    rows_per_file: int | None = None
    video_rows_per_file: int | None = None
    chunks_size: int = 1000
    adv_ind_initial: dict[str, str] = field(default_factory=lambda: {"demo": "positive", "rollout": "none"})
    include_value_label: bool = True
    column_names: dict[str, str] = field(default_factory=dict)
    robot_type: str | None = "synth_bot"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.version not in ("v2.1", "v3.0"):
            raise ValueError(f"version must be 'v2.1' or 'v3.0', got {self.version!r}")
        if not self.episodes:
            raise ValueError("a dataset needs at least one episode")
        if self.state_dim < 1 or self.action_dim < 1:
            raise ValueError("state_dim and action_dim must be >= 1")
        for key in self.cameras:
            if "/" in key:
                raise ValueError(f"LeRobot feature names must not contain '/': {key!r}")
        unknown = set(self.column_names) - set(RENAMEABLE_COLUMNS)
        if unknown:
            raise ValueError(f"column_names keys must be among {RENAMEABLE_COLUMNS}, got {sorted(unknown)}")
        names = [self.column(name) for name in RENAMEABLE_COLUMNS] + list(self.cameras) + list(DEFAULT_FEATURE_NAMES)
        if len(set(names)) != len(names):
            raise ValueError(f"column names collide: {sorted(name for name in set(names) if names.count(name) > 1)}")

    def column(self, canonical: str) -> str:
        """The on-disk name of a RECAP/vector column given its canonical name."""
        return self.column_names.get(canonical, canonical)

    @property
    def total_frames(self) -> int:
        return sum(episode.length for episode in self.episodes)

    @property
    def intervention_frames(self) -> int:
        return sum(episode.intervention_frames for episode in self.episodes)

    def video_keys(self) -> list[str]:
        return [key for key, camera in self.cameras.items() if camera.kind == "video"]


# --------------------------------------------------------------------------------------------
# Ready-made specs


REFERENCE_LENGTHS = (2318, 1904, 2471, 1760, 2205, 2093, 1987, 2356, 2012, 2180)
REFERENCE_INTERVENTION_FRAMES = (812, 455, 1020, 388, 701, 640, 533, 904, 610, 905)
REFERENCE_SPAN_COUNTS = (3, 2, 4, 2, 3, 3, 2, 4, 3, 3)
REFERENCE_SUCCESS = (True, True, False, True, True, False, True, True, True, False)
REFERENCE_TASKS = ("pick up the vial and place it in the rack", "put the vial back in the tray")
REFERENCE_TASK_INDICES = (0, 0, 1, 0, 0, 1, 0, 1, 0, 0)
REFERENCE_CAMERAS = (
    "observation.images.head_camera",
    "observation.images.left_wrist_camera",
    "observation.images.right_wrist_camera",
)


def reference_spec(version: Version = "v2.1", cameras: dict[str, CameraSpec] | None = None) -> DatasetSpec:
    """A dataset shaped like the RECAP reference run: 10 rollouts, 21,286 frames at 30 fps, of which
    6,968 intervention frames (2-4 spans per episode) and 14,318 autonomous frames, 7 successes and
    3 failures (each failure ends under human control), two tasks. Default cameras: three AV1
    video cameras at 224x224 named like the reference run's (head, left wrist, right wrist)."""
    if cameras is None:
        cameras = {key: CameraSpec("video", 224, 224) for key in REFERENCE_CAMERAS}
    episodes = [
        EpisodeSpec(
            length=length,
            task=REFERENCE_TASKS[task_index],
            kind="rollout",
            success=success,
            interventions=spread_spans(length, human_frames, span_count, end_with_human=not success),
        )
        for length, human_frames, span_count, success, task_index in zip(
            REFERENCE_LENGTHS,
            REFERENCE_INTERVENTION_FRAMES,
            REFERENCE_SPAN_COUNTS,
            REFERENCE_SUCCESS,
            REFERENCE_TASK_INDICES,
        )
    ]
    return DatasetSpec(version=version, episodes=episodes, cameras=cameras, fps=30)


def spread_spans(
    length: int, human_frames: int, span_count: int, end_with_human: bool = False
) -> list[tuple[int, int]]:
    """`span_count` intervention spans holding exactly `human_frames` frames in total, spread evenly
    over an episode of `length` frames that starts autonomously (and ends autonomously unless
    `end_with_human`)."""
    gap_count = span_count if end_with_human else span_count + 1
    autonomous_frames = length - human_frames
    if span_count < 1 or human_frames < span_count or autonomous_frames < gap_count:
        raise ValueError(f"cannot place {span_count} spans of {human_frames} frames in {length} frames")
    span_sizes = _split_evenly(human_frames, span_count)
    gap_sizes = _split_evenly(autonomous_frames, gap_count)
    spans, position = [], 0
    for span_index, span_size in enumerate(span_sizes):
        position += gap_sizes[span_index]
        spans.append((position, position + span_size))
        position += span_size
    return spans


def _split_evenly(total: int, parts: int) -> list[int]:
    return [total // parts + (part < total % parts) for part in range(parts)]


SIMPLE_CAMERA_NAMES = ("observation.images.base", "observation.images.wrist", "observation.images.right_wrist")
SIMPLE_TASKS = ("pick up the cube", "place the cube in the bin")


def simple_spec(
    version: Version = "v2.1",
    episodes: int = 4,
    length: int = 60,
    demos: int = 1,
    png_cameras: int = 1,
    video_cameras: int = 1,
    size: int = 64,
    fps: int = 30,
    codec: Literal["av1", "h264"] = "av1",
    rows_per_file: int | None = None,
    seed: int = 0,
) -> DatasetSpec:
    """`episodes` episodes of `length` frames each (what the CLI writes): the first `demos` are
    demos, the rest rollouts with one or two seeded intervention spans; every third rollout fails.
    Cameras are named base, wrist, right_wrist, then cam3, cam4, ...; PNG cameras come first."""
    if not 0 <= demos <= episodes:
        raise ValueError(f"demos must be between 0 and episodes ({episodes}), got {demos}")
    rng = np.random.default_rng(seed)
    episode_specs = []
    for episode_index in range(episodes):
        task = SIMPLE_TASKS[episode_index % 2]
        if episode_index < demos:
            episode_specs.append(EpisodeSpec(length, task, "demo"))
            continue
        rollout_number = episode_index - demos
        span_count = 1 + int(rng.integers(0, 2)) if length >= 8 else 1
        most_human_frames = min(length // 3, length - span_count - 1)  # room for autonomous gaps
        human_frames = int(rng.integers(span_count, most_human_frames + 1)) if most_human_frames >= span_count else 0
        spans = spread_spans(length, human_frames, span_count) if human_frames else []
        episode_specs.append(EpisodeSpec(length, task, "rollout", success=rollout_number % 3 != 2, interventions=spans))
    kinds = ["image"] * png_cameras + ["video"] * video_cameras
    cameras = {
        SIMPLE_CAMERA_NAMES[i] if i < len(SIMPLE_CAMERA_NAMES) else f"observation.images.cam{i}": CameraSpec(
            kind, size, size, codec
        )
        for i, kind in enumerate(kinds)
    }
    return DatasetSpec(
        version=version, episodes=episode_specs, cameras=cameras, fps=fps, rows_per_file=rows_per_file, seed=seed
    )


# --------------------------------------------------------------------------------------------
# Frame content


def camera_blue(camera_name: str) -> int:
    """The constant blue level of a camera, derived from its name (so cameras differ)."""
    return zlib.crc32(camera_name.encode()) % 160 + 48


def expected_rgb(episode_index: int, frame_index: int, camera_name: str) -> tuple[int, int, int]:
    """Per-channel mean (0-255) of the frame `frame_rgb` draws for (episode, frame, camera)."""
    return ((7 * frame_index) % 200 + 20, (37 * episode_index) % 200 + 20, camera_blue(camera_name))


def frame_rgb(episode_index: int, frame_index: int, camera_name: str, height: int, width: int) -> np.ndarray:
    """The HxWx3 uint8 frame of a camera: `expected_rgb` plus a zero-mean gradient of +-12 levels
    (red rises from left to right, green from top to bottom, blue is flat)."""
    colour = np.array(expected_rgb(episode_index, frame_index, camera_name), dtype=np.uint8)
    # Every colour level is in [20, 219], so uint8 arithmetic neither under- nor overflows. Adding
    # whole rows (width * 3 values) at a time is much faster than broadcasting over the RGB axis.
    row_of_colour = np.tile(colour - PATTERN_AMPLITUDE, width)
    return (_shifted_gradient(height, width).reshape(height, width * 3) + row_of_colour).reshape(height, width, 3)


_GRADIENTS: dict[tuple[int, int], np.ndarray] = {}


def _shifted_gradient(height: int, width: int) -> np.ndarray:
    """uint8 HxWx3 gradient + PATTERN_AMPLITUDE. The offsets are sign-symmetric about the centre,
    so each channel's mean offset is exactly zero; the shift keeps them non-negative."""
    if (height, width) not in _GRADIENTS:
        offsets = np.zeros((height, width, 3), dtype=np.int16)
        offsets[..., 0] = _symmetric_ramp(width)[None, :]
        offsets[..., 1] = _symmetric_ramp(height)[:, None]
        _GRADIENTS[(height, width)] = (offsets + PATTERN_AMPLITUDE).astype(np.uint8)
    return _GRADIENTS[(height, width)]


def _symmetric_ramp(size: int) -> np.ndarray:
    """`size` integers from -PATTERN_AMPLITUDE to +PATTERN_AMPLITUDE with ramp[i] == -ramp[-1-i]."""
    steps_from_centre = 2 * np.arange(size) - (size - 1)  # exact, symmetric integers
    return np.round(PATTERN_AMPLITUDE * steps_from_centre / max(size - 1, 1)).astype(np.int16)


class _PngCache:
    """PNG bytes per distinct frame: a camera's frames repeat every 200 frames within an episode."""

    def __init__(self) -> None:
        self._png: dict[tuple[str, int, int, tuple[int, int, int]], bytes] = {}

    def png(self, episode_index: int, frame_index: int, camera_name: str, camera: CameraSpec) -> bytes:
        key = (camera_name, camera.height, camera.width, expected_rgb(episode_index, frame_index, camera_name))
        if key not in self._png:
            buffer = io.BytesIO()
            Image.fromarray(frame_rgb(episode_index, frame_index, camera_name, camera.height, camera.width)).save(
                buffer, format="PNG"
            )
            self._png[key] = buffer.getvalue()
        return self._png[key]


# --------------------------------------------------------------------------------------------
# Labels and per-frame columns


def recap_labels(length: int, success: bool) -> dict[str, np.ndarray]:
    """float32 `reward_label`, `value_label` and `reward` of an episode (the rule in this module's docstring)."""
    frames = np.arange(length, dtype=np.float64)
    reward_label = np.full(length, -1.0 / length)
    reward_label[-1] = 0.0 if success else -1.0
    value_label = -(length - 1 - frames) / length if success else np.full(length, -1.0)
    reward = np.zeros(length)
    reward[-1] = 1.0 if success else 0.0
    return {
        "reward_label": reward_label.astype(np.float32),
        "value_label": value_label.astype(np.float32),
        "reward": reward.astype(np.float32),
    }


def _vector_values(spec: DatasetSpec, episode_index: int, length: int, dim: int, offset: int) -> np.ndarray:
    """(length, dim) float32: [episode_index, frame_index + offset, seeded noise...]."""
    rng = np.random.default_rng([spec.seed, episode_index, dim, offset])
    values = rng.standard_normal((length, dim)).astype(np.float32)
    values[:, 0] = episode_index
    if dim > 1:
        values[:, 1] = np.arange(length) + offset
    return values


# --------------------------------------------------------------------------------------------
# Features: info.json entries, Arrow types, datasets.Features JSON


def _features(spec: DatasetSpec) -> dict[str, dict]:
    """info.json `features`: user features in declaration order, then LeRobot's defaults; video
    features carry the `info` dict LeRobot reads back from the first encoded episode."""
    features: dict[str, dict] = {
        spec.column("observation.state"): {
            "dtype": "float32",
            "shape": [spec.state_dim],
            "names": [f"state_{i}" for i in range(spec.state_dim)],
        },
        spec.column("action"): {
            "dtype": "float32",
            "shape": [spec.action_dim],
            "names": [f"action_{i}" for i in range(spec.action_dim)],
        },
        spec.column("reward_label"): {"dtype": "float32", "shape": [1], "names": None},
    }
    if spec.include_value_label:
        features[spec.column("value_label")] = {"dtype": "float32", "shape": [1], "names": None}
    features[spec.column("reward")] = {"dtype": "float32", "shape": [1], "names": None}
    features[spec.column("intervention")] = {"dtype": "int64", "shape": [1], "names": None}
    features[spec.column("adv_ind")] = {"dtype": "string", "shape": [1], "names": None}
    for key, camera in spec.cameras.items():
        features[key] = {
            "dtype": camera.kind,
            "shape": [camera.height, camera.width, 3],
            "names": ["height", "width", "channels"],
        }
        if camera.kind == "video":
            features[key]["info"] = _video_info(camera, spec.fps)
    features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    for name in DEFAULT_FEATURE_NAMES[1:]:
        features[name] = {"dtype": "int64", "shape": [1], "names": None}
    return features


def _video_info(camera: CameraSpec, fps: int) -> dict:
    return {
        "video.height": camera.height,
        "video.width": camera.width,
        "video.codec": camera.codec,
        "video.pix_fmt": "yuv420p",
        "video.is_depth_map": False,
        "video.fps": fps,
        "video.channels": 3,
        "has_audio": False,
    }


def _arrow_schema(features: dict[str, dict], version: Version, fingerprint: str | None = None) -> pa.Schema:
    """The data-file schema LeRobot writes, with the `huggingface` metadata of its datasets version
    (datasets 4.x, used for v3.0, also records a `fingerprint`)."""
    fields, hf_features = [], {}
    sequence_type = "Sequence" if version == "v2.1" else "List"
    for name, feature in features.items():
        dtype = feature["dtype"]
        if dtype == "video":
            continue
        if dtype == "image":
            fields.append(pa.field(name, pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
            hf_features[name] = {"_type": "Image"}
        elif feature["shape"] == [1]:
            fields.append(pa.field(name, pa.string() if dtype == "string" else pa.from_numpy_dtype(np.dtype(dtype))))
            hf_features[name] = {"dtype": dtype, "_type": "Value"}
        else:
            (length,) = feature["shape"]
            element = pa.field("element", pa.from_numpy_dtype(np.dtype(dtype)))
            fields.append(pa.field(name, pa.list_(element, length)))
            hf_features[name] = {
                "feature": {"dtype": dtype, "_type": "Value"},
                "length": length,
                "_type": sequence_type,
            }
    huggingface: dict = {"info": {"features": hf_features}}
    if fingerprint is not None:
        huggingface["fingerprint"] = fingerprint
    return pa.schema(fields, metadata={"huggingface": json.dumps(huggingface)})


# --------------------------------------------------------------------------------------------
# Stats


def _numeric_stats(values: np.ndarray, with_quantiles: bool) -> dict[str, np.ndarray]:
    """LeRobot per-feature stats over axis 0; min/max keep the dtype, the rest are float64."""
    values = values.reshape(len(values), -1)
    as_float = values.astype(np.float64)
    stats = {
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "mean": as_float.mean(axis=0),
        "std": as_float.std(axis=0),
        "count": np.array([len(values)]),
    }
    if with_quantiles:
        for q in QUANTILES:
            stats[f"q{q:02d}"] = np.quantile(as_float, q / 100, axis=0)
    return stats


def _image_stats(
    episode_index: int, length: int, camera_name: str, camera: CameraSpec, with_quantiles: bool
) -> dict[str, np.ndarray]:
    """Per-channel stats in [0, 1], shaped (3, 1, 1), on a small sample of frames."""
    sample = np.unique(np.linspace(0, length - 1, min(length, IMAGE_STATS_MAX_FRAMES)).round().astype(int))
    stride = IMAGE_STATS_PIXEL_STRIDE
    pixels = np.stack(
        [frame_rgb(episode_index, int(t), camera_name, camera.height, camera.width)[::stride, ::stride] for t in sample]
    ).reshape(-1, 3)
    stats = {
        name: value.reshape(3, 1, 1)
        for name, value in _numeric_stats(pixels / 255.0, with_quantiles).items()
        if name != "count"
    }
    stats["count"] = np.array([len(sample)])  # LeRobot counts the sampled frames, not the pixels
    return stats


def _aggregate_stats(episode_stats: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """LeRobot's aggregate_stats: count-weighted mean, pooled std, min of mins, max of maxes,
    count-weighted mean of the quantiles."""
    aggregated = {}
    for feature in episode_stats[0]:
        per_episode = [stats[feature] for stats in episode_stats]
        counts = np.array([s["count"][0] for s in per_episode], dtype=np.float64)
        weights = (counts / counts.sum()).reshape(-1, *[1] * per_episode[0]["mean"].ndim)
        means = np.stack([s["mean"] for s in per_episode])
        mean = (means * weights).sum(axis=0)
        variances = np.stack([s["std"] ** 2 for s in per_episode])
        result = {
            "min": np.min(np.stack([s["min"] for s in per_episode]), axis=0),
            "max": np.max(np.stack([s["max"] for s in per_episode]), axis=0),
            "mean": mean,
            "std": np.sqrt(np.maximum(((variances + (means - mean) ** 2) * weights).sum(axis=0), 0.0)),
            "count": np.array([int(counts.sum())]),
        }
        for name in per_episode[0]:
            if name.startswith("q"):
                result[name] = (np.stack([s[name] for s in per_episode]) * weights).sum(axis=0)
        aggregated[feature] = result
    return aggregated


def _stats_json(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    return {feature: {name: value.tolist() for name, value in values.items()} for feature, values in stats.items()}


# --------------------------------------------------------------------------------------------
# Episodes


@dataclass
class _Episode:
    """One generated episode: its rows as an Arrow table and its LeRobot stats."""

    index: int
    spec: EpisodeSpec
    first_row: int
    table: pa.Table
    stats: dict[str, dict[str, np.ndarray]]


def _task_indices(spec: DatasetSpec) -> dict[str, int]:
    """Task text -> task_index, in first-seen order (as LeRobot assigns them)."""
    tasks: dict[str, int] = {}
    for episode in spec.episodes:
        tasks.setdefault(episode.task, len(tasks))
    return tasks


def _generate_episodes(spec: DatasetSpec, features: dict[str, dict], schema: pa.Schema) -> Iterator[_Episode]:
    tasks = _task_indices(spec)
    png_cache = _PngCache()
    png_name = "frame_{:06d}.png" if spec.version == "v2.1" else "frame-{:06d}.png"
    with_quantiles = spec.version == "v3.0"
    first_row = 0
    for episode_index, episode in enumerate(spec.episodes):
        length = episode.length
        frames = np.arange(length, dtype=np.int64)
        labels = recap_labels(length, episode.success)
        numeric: dict[str, np.ndarray] = {
            spec.column("observation.state"): _vector_values(spec, episode_index, length, spec.state_dim, 0),
            spec.column("action"): _vector_values(spec, episode_index, length, spec.action_dim, 1),
            spec.column("reward_label"): labels["reward_label"],
        }
        if spec.include_value_label:
            numeric[spec.column("value_label")] = labels["value_label"]
        numeric[spec.column("reward")] = labels["reward"]
        numeric[spec.column("intervention")] = episode.intervention_mask()
        defaults = {
            "timestamp": (frames / spec.fps).astype(np.float32),
            "frame_index": frames,
            "episode_index": np.full(length, episode_index, dtype=np.int64),
            "index": frames + first_row,
            "task_index": np.full(length, tasks[episode.task], dtype=np.int64),
        }
        columns: dict[str, pa.Array] = {}
        stats: dict[str, dict[str, np.ndarray]] = {}
        for name, feature in features.items():
            field_type = schema.field(name).type if feature["dtype"] != "video" else None
            if name in numeric or name in defaults:
                values = numeric[name] if name in numeric else defaults[name]
                if feature["shape"] == [1]:
                    columns[name] = pa.array(values, type=field_type)
                else:
                    columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), type=field_type)
                stats[name] = _numeric_stats(values, with_quantiles)
            elif name == spec.column("adv_ind"):
                columns[name] = pa.array([spec.adv_ind_initial[episode.kind]] * length, type=pa.string())
            else:
                camera = spec.cameras[name]
                if camera.kind == "image":
                    png_bytes = [png_cache.png(episode_index, t, name, camera) for t in range(length)]
                    columns[name] = pa.StructArray.from_arrays(
                        [pa.array(png_bytes, pa.binary()), pa.array([png_name.format(t) for t in range(length)])],
                        names=["bytes", "path"],
                    )
                stats[name] = _image_stats(episode_index, length, name, camera, with_quantiles)
        table = pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
        yield _Episode(episode_index, episode, first_row, table, stats)
        first_row += length


# --------------------------------------------------------------------------------------------
# Video


def _encoder_name(codec: str) -> str:
    for name in ENCODER_BY_CODEC[codec]:
        try:
            av.codec.Codec(name, "w")
        except av.codec.codec.UnknownCodecError:
            continue
        return name
    raise RuntimeError(f"PyAV has none of the encoders {ENCODER_BY_CODEC[codec]} for codec {codec!r}")


def _encode_video(path: Path, camera_name: str, camera: CameraSpec, fps: int, segments: list[tuple[int, int]]) -> None:
    """Encode the frames of `segments` = [(episode_index, length), ...] as one continuous yuv420p
    stream (pts = frame number in time base 1/fps), forcing a keyframe at every episode start."""
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints warnings on every encoder start otherwise
    encoder = _encoder_name(camera.codec)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        options = {**ENCODER_OPTIONS[encoder], "crf": str(camera.crf)}
        stream = container.add_stream(encoder, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = camera.width, camera.height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        pts = 0
        for episode_index, length in segments:
            for frame_index in range(length):
                pixels = frame_rgb(episode_index, frame_index, camera_name, camera.height, camera.width)
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = pts
                if frame_index == 0:
                    frame.pict_type = av.video.frame.PictureType.I
                container.mux(stream.encode(frame))
                pts += 1
        container.mux(stream.encode())


# --------------------------------------------------------------------------------------------
# Writers


def write_dataset(root: Path, spec: DatasetSpec) -> Path:
    """Write `spec` as a LeRobot dataset at `root` (which must not exist) and return `root`.
    On failure the partly written `root` is removed."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    root.mkdir()  # raises FileExistsError, like LeRobot's LeRobotDataset.create
    try:
        if spec.version == "v2.1":
            _write_v21(root, spec)
        else:
            _write_v30(root, spec)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return root


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4, ensure_ascii=False))


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _fingerprint(spec: DatasetSpec) -> str:
    return hashlib.sha256(f"recap-label synth {spec.seed} {spec.total_frames}".encode()).hexdigest()[:16]


def _write_v21(root: Path, spec: DatasetSpec) -> None:
    features = _features(spec)
    schema = _arrow_schema(features, "v2.1")
    episodes_rows, stats_rows = [], []
    for episode in _generate_episodes(spec, features, schema):
        episode_chunk = episode.index // spec.chunks_size
        path = root / V21_DATA_PATH.format(episode_chunk=episode_chunk, episode_index=episode.index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(episode.table, path, row_group_size=episode.spec.length)
        for key in spec.video_keys():
            video_path = V21_VIDEO_PATH.format(episode_chunk=episode_chunk, video_key=key, episode_index=episode.index)
            _encode_video(root / video_path, key, spec.cameras[key], spec.fps, [(episode.index, episode.spec.length)])
        episodes_rows.append(
            {"episode_index": episode.index, "tasks": [episode.spec.task], "length": episode.spec.length}
        )
        stats_rows.append({"episode_index": episode.index, "stats": _stats_json(episode.stats)})
    tasks = _task_indices(spec)
    total_episodes = len(spec.episodes)
    _write_json(
        root / "meta/info.json",
        {
            "codebase_version": "v2.1",
            "robot_type": spec.robot_type,
            "total_episodes": total_episodes,
            "total_frames": spec.total_frames,
            "total_tasks": len(tasks),
            "total_videos": total_episodes * len(spec.video_keys()),
            "total_chunks": (total_episodes - 1) // spec.chunks_size + 1,
            "chunks_size": spec.chunks_size,
            "fps": spec.fps,
            "splits": {"train": f"0:{total_episodes}"},
            "data_path": V21_DATA_PATH,
            "video_path": V21_VIDEO_PATH if spec.video_keys() else None,
            "features": features,
        },
    )
    _write_jsonl(root / "meta/episodes.jsonl", episodes_rows)
    _write_jsonl(root / "meta/tasks.jsonl", [{"task_index": index, "task": task} for task, index in tasks.items()])
    _write_jsonl(root / "meta/episodes_stats.jsonl", stats_rows)


def assign_files(lengths: list[int], rows_per_file: int | None, chunks_size: int) -> list[tuple[int, int]]:
    """(chunk_index, file_index) of each episode in a v3.0 dataset: episodes fill a file in order
    until the next one would push it past `rows_per_file`; after file `chunks_size - 1` the index
    wraps to file 0 of the next chunk (LeRobot's update_chunk_file_indices)."""
    chunk_index = file_index = rows_in_file = 0
    assignment = []
    for length in lengths:
        if rows_per_file is not None and rows_in_file > 0 and rows_in_file + length > rows_per_file:
            file_index, rows_in_file = file_index + 1, 0
            if file_index == chunks_size:
                chunk_index, file_index = chunk_index + 1, 0
        assignment.append((chunk_index, file_index))
        rows_in_file += length
    return assignment


def _write_v30(root: Path, spec: DatasetSpec) -> None:
    features = _features(spec)
    schema = _arrow_schema(features, "v3.0", _fingerprint(spec))
    lengths = [episode.length for episode in spec.episodes]
    data_files = assign_files(lengths, spec.rows_per_file, spec.chunks_size)
    video_rows_per_file = spec.video_rows_per_file if spec.video_rows_per_file is not None else spec.rows_per_file
    video_files = assign_files(lengths, video_rows_per_file, spec.chunks_size)
    video_offsets = _frames_before_in_file(video_files, lengths)

    episode_rows, all_stats = [], []
    writer: pq.ParquetWriter | None = None
    open_file: tuple[int, int] | None = None
    try:
        for episode in _generate_episodes(spec, features, schema):
            chunk_index, file_index = data_files[episode.index]
            if (chunk_index, file_index) != open_file:
                if writer is not None:
                    writer.close()
                path = root / V30_DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)
                path.parent.mkdir(parents=True, exist_ok=True)
                writer, open_file = pq.ParquetWriter(path, schema), (chunk_index, file_index)
            writer.write_table(episode.table, row_group_size=episode.spec.length)
            episode_rows.append(
                _v30_episode_row(
                    spec, episode, data_files[episode.index], video_files[episode.index], video_offsets[episode.index]
                )
            )
            all_stats.append(episode.stats)
    finally:
        if writer is not None:
            writer.close()

    for key in spec.video_keys():
        for (chunk_index, file_index), segments in _segments_by_file(video_files, lengths).items():
            path = root / V30_VIDEO_PATH.format(video_key=key, chunk_index=chunk_index, file_index=file_index)
            _encode_video(path, key, spec.cameras[key], spec.fps, segments)

    _write_v30_episodes(root / V30_EPISODES_PATH, spec, features, episode_rows)
    _write_v30_tasks(root / "meta/tasks.parquet", _task_indices(spec))
    _write_json(root / "meta/stats.json", _stats_json(_aggregate_stats(all_stats)))
    total_episodes = len(spec.episodes)
    _write_json(
        root / "meta/info.json",
        {
            "codebase_version": "v3.0",
            "robot_type": spec.robot_type,
            "total_episodes": total_episodes,
            "total_frames": spec.total_frames,
            "total_tasks": len(_task_indices(spec)),
            "chunks_size": spec.chunks_size,
            "data_files_size_in_mb": V30_DATA_FILES_SIZE_IN_MB,
            "video_files_size_in_mb": V30_VIDEO_FILES_SIZE_IN_MB,
            "fps": spec.fps,
            "splits": {"train": f"0:{total_episodes}"},
            "data_path": V30_DATA_PATH,
            "video_path": V30_VIDEO_PATH if spec.video_keys() else None,
            "features": features,
        },
    )


def _segments_by_file(files: list[tuple[int, int]], lengths: list[int]) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """(chunk, file) -> [(episode_index, length), ...] in episode order."""
    segments: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for episode_index, (file, length) in enumerate(zip(files, lengths)):
        segments.setdefault(file, []).append((episode_index, length))
    return segments


def _frames_before_in_file(files: list[tuple[int, int]], lengths: list[int]) -> list[int]:
    """For each episode, how many frames of earlier episodes its file holds before it."""
    offsets, frames_in_file = [], {}
    for file, length in zip(files, lengths):
        offsets.append(frames_in_file.get(file, 0))
        frames_in_file[file] = offsets[-1] + length
    return offsets


def _v30_episode_row(
    spec: DatasetSpec, episode: _Episode, data_file: tuple[int, int], video_file: tuple[int, int], video_offset: int
) -> dict:
    """One row of meta/episodes, in LeRobot's column order; `video_offset` = frames before the
    episode in its mp4 files."""
    length = episode.spec.length
    row = {
        "episode_index": episode.index,
        "tasks": [episode.spec.task],
        "length": length,
        "data/chunk_index": data_file[0],
        "data/file_index": data_file[1],
        "dataset_from_index": episode.first_row,
        "dataset_to_index": episode.first_row + length,
    }
    for key in spec.video_keys():
        row[f"videos/{key}/chunk_index"] = video_file[0]
        row[f"videos/{key}/file_index"] = video_file[1]
        row[f"videos/{key}/from_timestamp"] = video_offset / spec.fps
        row[f"videos/{key}/to_timestamp"] = (video_offset + length) / spec.fps
    for feature, stats in episode.stats.items():
        for name, value in stats.items():
            row[f"stats/{feature}/{name}"] = value.tolist()
    row["meta/episodes/chunk_index"] = 0
    row["meta/episodes/file_index"] = 0
    return row


def _write_v30_episodes(path: Path, spec: DatasetSpec, features: dict[str, dict], rows: list[dict]) -> None:
    fields = [
        pa.field("episode_index", pa.int64()),
        pa.field("tasks", pa.list_(pa.string())),
        pa.field("length", pa.int64()),
        pa.field("data/chunk_index", pa.int64()),
        pa.field("data/file_index", pa.int64()),
        pa.field("dataset_from_index", pa.int64()),
        pa.field("dataset_to_index", pa.int64()),
    ]
    for key in spec.video_keys():
        fields += [
            pa.field(f"videos/{key}/chunk_index", pa.int64()),
            pa.field(f"videos/{key}/file_index", pa.int64()),
            pa.field(f"videos/{key}/from_timestamp", pa.float64()),
            pa.field(f"videos/{key}/to_timestamp", pa.float64()),
        ]
    for name, feature in features.items():
        if feature["dtype"] == "string":
            continue
        is_camera = feature["dtype"] in ("image", "video")
        element = pa.list_(pa.list_(pa.list_(pa.float64()))) if is_camera else pa.list_(pa.float64())
        extreme = pa.list_(pa.int64()) if feature["dtype"] == "int64" else element
        for stat in ("min", "max", "mean", "std", "count", *(f"q{q:02d}" for q in QUANTILES)):
            stat_type = pa.list_(pa.int64()) if stat == "count" else extreme if stat in ("min", "max") else element
            fields.append(pa.field(f"stats/{name}/{stat}", stat_type))
    fields += [pa.field("meta/episodes/chunk_index", pa.int64()), pa.field("meta/episodes/file_index", pa.int64())]
    table = pa.Table.from_pylist(rows, schema=pa.schema(fields))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=V30_EPISODES_PER_ROW_GROUP)


def _write_v30_tasks(path: Path, tasks: dict[str, int]) -> None:
    """meta/tasks.parquet as pandas writes `DataFrame({"task_index": ...}, index=tasks)`."""
    pandas_metadata = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": None,
                "field_name": "__index_level_0__",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": PANDAS_VERSION_IN_METADATA,
    }
    schema = pa.schema(
        [pa.field("task_index", pa.int64()), pa.field("__index_level_0__", pa.string())],
        metadata={"pandas": json.dumps(pandas_metadata)},
    )
    table = pa.table({"task_index": list(tasks.values()), "__index_level_0__": list(tasks)}, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


# --------------------------------------------------------------------------------------------
# Stage 1 layout


def stage1_layout(base: Path, spec: DatasetSpec, name: str = "synth_rollout") -> tuple[Path, Path]:
    """Write the layout RECAP's Stage 1 leaves behind and return (v30_root, v21_root):

        <base>/<name>/                 a complete v3.0 dataset (meta/, data/, videos/) ...
            v21_data/chunk-XXX/episode_XXXXXX.parquet   ... that also physically holds the
            v21_meta/{info.json,episodes.jsonl,tasks.jsonl,episodes_stats.jsonl}   v2.1 files
            v21_videos/chunk-XXX/<key>/episode_XXXXXX.mp4                          (if any video)
        <base>/<name>_v21/             the v2.1 view users point LeRobot 0.3.x at
            data/chunk-XXX/            real folders; every episode_XXXXXX.parquet in them is a
                                       FILE SYMLINK to <name>/v21_data/chunk-XXX/episode_XXXXXX.parquet
            meta    -> <name>/v21_meta     FOLDER SYMLINK
            videos  -> <name>/v21_videos   FOLDER SYMLINK (only if there are video cameras)

    Symlink targets are absolute, so a plain `cp -r` of the v2.1 view still points into the v3.0
    tree (the hazard a labeler must not write through). Both datasets hold the same episodes;
    `spec.version` is ignored."""
    base = Path(base).absolute()
    v21_root = base / f"{name}_v21"
    if v21_root.exists():
        raise FileExistsError(v21_root)
    v30_root = write_dataset(base / name, replace(spec, version="v3.0"))
    staging = v30_root / ".v21_staging"
    write_dataset(staging, replace(spec, version="v2.1"))
    for part in ("data", "meta", "videos"):
        if (staging / part).exists():
            (staging / part).rename(v30_root / f"v21_{part}")
    staging.rmdir()

    v21_root.mkdir()
    for target in sorted((v30_root / "v21_data").rglob("*.parquet")):
        link = v21_root / "data" / target.relative_to(v30_root / "v21_data")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    (v21_root / "meta").symlink_to(v30_root / "v21_meta", target_is_directory=True)
    if (v30_root / "v21_videos").exists():
        (v21_root / "videos").symlink_to(v30_root / "v21_videos", target_is_directory=True)
    return v30_root, v21_root


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m recap_label.demo.synth",
        description="Write a synthetic LeRobot dataset with the RECAP columns.",
    )
    parser.add_argument("out_dir", type=Path, help="dataset folder to create (must not exist)")
    parser.add_argument("--version", choices=["v2.1", "v3.0"], default="v2.1")
    parser.add_argument("--episodes", type=int, default=4, help="number of episodes (default 4)")
    parser.add_argument("--length", type=int, default=60, help="frames per episode (default 60)")
    parser.add_argument("--demos", type=int, default=1, help="how many of the episodes are demos (default 1)")
    parser.add_argument("--png-cameras", type=int, default=1, help="cameras stored as PNG in parquet (default 1)")
    parser.add_argument("--video-cameras", type=int, default=1, help="cameras stored as mp4 (default 1)")
    parser.add_argument(
        "--size", type=int, default=None, help="camera height and width in pixels (default 64, or 224 with --reference)"
    )
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--codec", choices=["av1", "h264"], default="av1")
    parser.add_argument("--rows-per-file", type=int, default=None, help="v3.0: rows per data/video file")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="the RECAP reference shape (10 rollouts, 21,286 frames, 3 video cameras); "
        "ignores the episode and camera options",
    )
    parser.add_argument(
        "--stage1",
        action="store_true",
        help="write the Stage 1 layout: OUT_DIR/synth_rollout (v3.0) + OUT_DIR/synth_rollout_v21",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.reference:
        size = args.size or 224
        cameras = {key: CameraSpec("video", size, size, args.codec) for key in REFERENCE_CAMERAS}
        spec = replace(
            reference_spec(args.version, cameras), fps=args.fps, rows_per_file=args.rows_per_file, seed=args.seed
        )
    else:
        spec = simple_spec(
            args.version,
            args.episodes,
            args.length,
            args.demos,
            args.png_cameras,
            args.video_cameras,
            args.size or 64,
            args.fps,
            args.codec,
            args.rows_per_file,
            args.seed,
        )
    started = time.perf_counter()
    if args.stage1:
        written = list(stage1_layout(args.out_dir, spec))
    else:
        written = [write_dataset(args.out_dir, spec)]
    elapsed = time.perf_counter() - started
    for root in written:
        print(f"wrote {root}")
    demos = sum(episode.kind == "demo" for episode in spec.episodes)
    print(
        f"{spec.version if not args.stage1 else 'v3.0 + v2.1 view'}: {len(spec.episodes)} episodes "
        f"(demos: {demos}, rollouts: {len(spec.episodes) - demos}), {spec.total_frames} frames, "
        f"{spec.intervention_frames} intervention / {spec.total_frames - spec.intervention_frames} autonomous, "
        f"{len(_task_indices(spec))} tasks, {spec.fps} fps"
    )
    for key, camera in spec.cameras.items():
        storage = "PNG in parquet" if camera.kind == "image" else f"{camera.codec} mp4"
        print(f"  {key}: {camera.height}x{camera.width} {storage}")
    print(f"in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
