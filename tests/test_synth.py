"""recap_label.demo.synth writes LeRobot v2.1 / v3.0 datasets shaped like LeRobot's own output.

Checked with plain pyarrow / PyAV / PIL against the LeRobot-written specimens in
tests/fixtures/lerobot (written by real LeRobot, see tests/fixtures/make_lerobot_fixtures.py).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from recap_label.demo import synth
from recap_label.demo.synth import CameraSpec, DatasetSpec, EpisodeSpec
from support import FIXTURES

FPS = 10
PNG_CAMERA = "observation.images.base"
AV1_CAMERA = "observation.images.wrist"
H264_CAMERA = "observation.images.right_wrist"
CAMERAS = {
    PNG_CAMERA: CameraSpec("image", 24, 32),
    AV1_CAMERA: CameraSpec("video", 64, 64, "av1"),
    H264_CAMERA: CameraSpec("video", 64, 64, "h264"),
}
EPISODES = [
    EpisodeSpec(12, "pick up the cube", "demo"),
    EpisodeSpec(15, "place the cube", "rollout", success=True, interventions=[(3, 6), (9, 11)]),
    EpisodeSpec(9, "pick up the cube", "rollout", success=False, interventions=[(5, 9)]),
    EpisodeSpec(7, "place the cube", "rollout", success=True),
    EpisodeSpec(11, "pick up the cube", "rollout", success=False, interventions=[(0, 2)]),
]
TASKS = ["pick up the cube", "place the cube"]
DEFAULT_COLUMNS = ["timestamp", "frame_index", "episode_index", "index", "task_index"]
RECAP_COLUMNS = ["observation.state", "action", "reward_label", "value_label", "reward", "intervention", "adv_ind"]


FIXTURE_DATA_FILE = {
    "v2.1": "v2.1/video_av1/data/chunk-000/episode_000000.parquet",
    "v3.0": "v3.0/video_av1/data/chunk-000/file-000.parquet",
}


@pytest.fixture(scope="module")
def v21_root(tmp_path_factory) -> Path:
    spec = DatasetSpec(version="v2.1", episodes=EPISODES, cameras=CAMERAS, fps=FPS, chunks_size=2)
    return synth.write_dataset(tmp_path_factory.mktemp("v21") / "dataset", spec)


@pytest.fixture(scope="module")
def v30_root(tmp_path_factory) -> Path:
    # 25 rows per data file and 30 per video file: files roll over at different episodes, and
    # chunks_size=2 makes the file index wrap into chunk-001.
    spec = DatasetSpec(
        version="v3.0",
        episodes=EPISODES,
        cameras=CAMERAS,
        fps=FPS,
        rows_per_file=25,
        video_rows_per_file=30,
        chunks_size=2,
    )
    return synth.write_dataset(tmp_path_factory.mktemp("v30") / "dataset", spec)


def _root(request, version: str) -> Path:
    return request.getfixturevalue("v21_root" if version == "v2.1" else "v30_root")


def _data_files(root: Path) -> list[Path]:
    return sorted((root / "data").rglob("*.parquet"))


def _all_rows(root: Path) -> pa.Table:
    table = pa.concat_tables(pq.read_table(path) for path in _data_files(root))
    return table.sort_by("index")


def _mean_rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)


# ------------------------------------------------------------------------------------------
# Spec arithmetic


def test_reference_spec_has_the_reference_counts():
    spec = synth.reference_spec()
    assert len(spec.episodes) == 10
    assert all(episode.kind == "rollout" for episode in spec.episodes)
    assert spec.total_frames == 21_286
    assert spec.intervention_frames == 6_968
    assert sum(int((episode.intervention_mask() == 0).sum()) for episode in spec.episodes) == 14_318
    assert all(len(episode.interventions) >= 2 for episode in spec.episodes)
    assert {episode.success for episode in spec.episodes} == {True, False}
    assert len({episode.task for episode in spec.episodes}) == 2
    assert spec.fps == 30 and len(spec.video_keys()) == 3
    assert {camera.height for camera in spec.cameras.values()} == {224}


def test_spread_spans_places_exact_frame_counts():
    spans = synth.spread_spans(100, 30, 3)
    assert sum(end - start for start, end in spans) == 30
    assert spans[0][0] > 0 and spans[-1][1] < 100
    assert synth.spread_spans(100, 30, 3, end_with_human=True)[-1][1] == 100


def test_episode_spec_rejects_bad_spans():
    with pytest.raises(ValueError):
        EpisodeSpec(10, "t", "rollout", interventions=[(5, 8), (7, 9)])
    with pytest.raises(ValueError):
        EpisodeSpec(10, "t", "rollout", interventions=[(5, 11)])
    with pytest.raises(ValueError):
        EpisodeSpec(10, "t", "demo", success=False)


def test_assign_files_rolls_over_and_wraps_chunks():
    assert synth.assign_files([10, 10, 10, 30, 5], rows_per_file=20, chunks_size=2) == [
        (0, 0),
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]
    assert synth.assign_files([10, 10], rows_per_file=None, chunks_size=1000) == [(0, 0), (0, 0)]


def test_recap_labels_follow_the_rule():
    success = synth.recap_labels(4, success=True)
    np.testing.assert_allclose(success["reward_label"], [-0.25, -0.25, -0.25, 0.0])
    np.testing.assert_allclose(success["value_label"], [-0.75, -0.5, -0.25, 0.0])
    np.testing.assert_allclose(success["reward"], [0, 0, 0, 1])
    failure = synth.recap_labels(4, success=False)
    np.testing.assert_allclose(failure["reward_label"], [-0.25, -0.25, -0.25, -1.0])
    np.testing.assert_allclose(failure["value_label"], [-1.0] * 4)
    np.testing.assert_allclose(failure["reward"], [0, 0, 0, 0])


def test_frame_rgb_mean_is_expected_rgb():
    for height, width in [(24, 32), (64, 64), (7, 5)]:
        frame = synth.frame_rgb(3, 17, PNG_CAMERA, height, width)
        assert frame.shape == (height, width, 3) and frame.dtype == np.uint8
        assert tuple(frame.reshape(-1, 3).mean(axis=0)) == synth.expected_rgb(3, 17, PNG_CAMERA)
    assert synth.expected_rgb(0, 0, PNG_CAMERA) != synth.expected_rgb(0, 0, AV1_CAMERA)


# ------------------------------------------------------------------------------------------
# Data files


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_rows_columns_and_labels(request, version):
    root = _root(request, version)
    table = _all_rows(root)
    assert table.column_names == RECAP_COLUMNS + [PNG_CAMERA] + DEFAULT_COLUMNS
    total = sum(episode.length for episode in EPISODES)
    assert table.num_rows == total
    assert table["index"].to_pylist() == list(range(total))

    for episode_index, episode in enumerate(EPISODES):
        rows = table.filter(pc.equal(table["episode_index"], episode_index))
        length = episode.length
        frames = np.arange(length)
        assert rows["frame_index"].to_pylist() == frames.tolist()
        np.testing.assert_array_equal(rows["timestamp"].to_numpy(), (frames / FPS).astype(np.float32))
        assert rows["task_index"].to_pylist() == [TASKS.index(episode.task)] * length

        reward_label = np.full(length, -1 / length)
        reward_label[-1] = 0.0 if episode.success else -1.0
        np.testing.assert_allclose(rows["reward_label"].to_numpy(), reward_label, rtol=1e-6)
        value_label = -(length - 1 - frames) / length if episode.success else np.full(length, -1.0)
        np.testing.assert_allclose(rows["value_label"].to_numpy(), value_label, rtol=1e-6)
        reward = np.zeros(length)
        reward[-1] = float(episode.success)
        np.testing.assert_array_equal(rows["reward"].to_numpy(), reward)

        intervention = rows["intervention"].to_numpy()
        if episode.kind == "demo":
            assert intervention.tolist() == [1] * length
            assert set(rows["adv_ind"].to_pylist()) == {"positive"}
        else:
            expected = np.zeros(length, dtype=np.int64)
            for start, end in episode.interventions:
                expected[start:end] = 1
            np.testing.assert_array_equal(intervention, expected)
            assert set(rows["adv_ind"].to_pylist()) == {"none"}

        state = np.array(rows["observation.state"].to_pylist())
        assert state.shape == (length, 6)
        assert (state[:, 0] == episode_index).all() and (state[:, 1] == frames).all()
        action = np.array(rows["action"].to_pylist())
        assert (action[:, 1] == frames + 1).all()


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_png_camera_pixels(request, version):
    table = _all_rows(_root(request, version))
    png_name = "frame_{:06d}.png" if version == "v2.1" else "frame-{:06d}.png"  # as LeRobot names them
    for row in table.select([PNG_CAMERA, "episode_index", "frame_index"]).to_pylist()[::5]:
        image = np.asarray(Image.open(io.BytesIO(row[PNG_CAMERA]["bytes"])))
        expected = synth.frame_rgb(row["episode_index"], row["frame_index"], PNG_CAMERA, 24, 32)
        np.testing.assert_array_equal(image, expected)
        assert row[PNG_CAMERA]["path"] == png_name.format(row["frame_index"])


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_data_schema_matches_lerobot_fixture(request, version):
    fixture = pq.ParquetFile(FIXTURES / FIXTURE_DATA_FILE[version])
    fixture_schema = fixture.schema_arrow
    for path in _data_files(_root(request, version)):
        written = pq.ParquetFile(path)
        schema = written.schema_arrow
        for name in ["reward_label", "intervention", "adv_ind", *DEFAULT_COLUMNS]:
            assert schema.field(name).type == fixture_schema.field(name).type, name
            assert schema.field(name).nullable == fixture_schema.field(name).nullable, name
        for name in ["observation.state", "action"]:
            assert schema.field(name).type.value_field == fixture_schema.field(name).type.value_field
            assert pa.types.is_fixed_size_list(schema.field(name).type)
        assert schema.field(PNG_CAMERA).type == fixture_schema.field("observation.images.wrist").type
        assert schema.field("value_label").type == schema.field("reward").type == pa.float32()

        assert set(schema.metadata) == set(fixture_schema.metadata) == {b"huggingface"}
        hf = json.loads(schema.metadata[b"huggingface"])
        fixture_hf = json.loads(fixture_schema.metadata[b"huggingface"])
        assert hf.keys() == fixture_hf.keys()
        features, fixture_features = hf["info"]["features"], fixture_hf["info"]["features"]
        assert list(features) == schema.names
        for name in ["reward_label", "intervention", "adv_ind", *DEFAULT_COLUMNS]:
            assert features[name] == fixture_features[name]
        assert features[PNG_CAMERA] == fixture_features["observation.images.wrist"] == {"_type": "Image"}
        assert features["observation.state"] == {**fixture_features["observation.state"], "length": 6}

        assert written.metadata.row_group(0).column(0).compression == "SNAPPY"
        episodes_in_file = len(set(written.read(columns=["episode_index"])["episode_index"].to_pylist()))
        assert written.metadata.num_row_groups == episodes_in_file  # one per episode in both versions


# ------------------------------------------------------------------------------------------
# v2.1 metadata and videos


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_info_json_matches_lerobot_layout(request, version):
    info = json.loads((_root(request, version) / "meta/info.json").read_text())
    fixture_info = json.loads((FIXTURES / version / "video_av1/meta/info.json").read_text())
    assert list(info) == list(fixture_info)
    assert info["codebase_version"] == version
    assert info["data_path"] == fixture_info["data_path"] and info["video_path"] == fixture_info["video_path"]
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (5, 54, 2)
    assert list(info["features"]) == RECAP_COLUMNS + list(CAMERAS) + DEFAULT_COLUMNS
    fixture_video = fixture_info["features"]["observation.images.front"]
    for key in (AV1_CAMERA, H264_CAMERA):
        assert list(info["features"][key]) == list(fixture_video)
        assert list(info["features"][key]["info"]) == list(fixture_video["info"])
    assert info["features"][AV1_CAMERA]["info"]["video.codec"] == "av1"
    assert info["features"][H264_CAMERA]["info"]["video.codec"] == "h264"
    assert info["features"]["adv_ind"] == fixture_info["features"]["adv_ind"]
    if version == "v2.1":
        assert (info["total_videos"], info["total_chunks"], info["splits"]) == (10, 3, {"train": "0:5"})


def test_v21_meta_files(v21_root):
    episodes = [json.loads(line) for line in (v21_root / "meta/episodes.jsonl").read_text().splitlines()]
    assert episodes == [
        {"episode_index": i, "tasks": [episode.task], "length": episode.length} for i, episode in enumerate(EPISODES)
    ]
    tasks = [json.loads(line) for line in (v21_root / "meta/tasks.jsonl").read_text().splitlines()]
    assert tasks == [{"task_index": i, "task": task} for i, task in enumerate(TASKS)]
    stats = [json.loads(line) for line in (v21_root / "meta/episodes_stats.jsonl").read_text().splitlines()]
    assert [line["episode_index"] for line in stats] == list(range(5))
    first = stats[0]["stats"]
    assert "adv_ind" not in first and set(DEFAULT_COLUMNS) <= set(first)
    assert set(first["reward_label"]) == {"min", "max", "mean", "std", "count"}
    assert first["observation.state"]["count"] == [12] and len(first["observation.state"]["mean"]) == 6
    for key in CAMERAS:
        assert np.array(first[key]["mean"]).shape == (3, 1, 1)
        assert 0.0 <= np.array(first[key]["min"]).min() <= np.array(first[key]["max"]).max() <= 1.0
    # chunks_size=2 episodes per chunk folder
    assert (v21_root / "data/chunk-002/episode_000004.parquet").is_file()


def test_v21_videos_decode_to_expected_colours(v21_root):
    for episode_index, episode in enumerate(EPISODES):
        chunk = episode_index // 2
        for key, codec in [(AV1_CAMERA, "av1"), (H264_CAMERA, "h264")]:
            path = v21_root / f"videos/chunk-{chunk:03d}/{key}/episode_{episode_index:06d}.mp4"
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                assert stream.codec_context.codec.canonical_name == codec
                assert stream.codec_context.pix_fmt == "yuv420p"
                frames = list(container.decode(stream))
            assert len(frames) == episode.length
            for frame_index, frame in enumerate(frames):
                assert abs(frame.time - frame_index / FPS) < 1e-4
                error = np.abs(_mean_rgb(frame) - synth.expected_rgb(episode_index, frame_index, key)).max()
                assert error <= 3.0


# ------------------------------------------------------------------------------------------
# v3.0 metadata and videos


def test_v30_episode_metadata_points_at_the_rows(v30_root):
    episodes = pq.read_table(v30_root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [row["episode_index"] for row in episodes] == list(range(5))
    assert [row["length"] for row in episodes] == [episode.length for episode in EPISODES]
    assert [row["tasks"] for row in episodes] == [[episode.task] for episode in EPISODES]
    # 25 rows per data file: (12) (15 9) (7 11); chunks_size=2 wraps file 2 into chunk-001
    data_files = [(row["data/chunk_index"], row["data/file_index"]) for row in episodes]
    assert data_files == [(0, 0), (0, 1), (0, 1), (1, 0), (1, 0)]
    # 30 rows per video file: (12 15) (9 7 11)
    video_files = [
        (row[f"videos/{AV1_CAMERA}/chunk_index"], row[f"videos/{AV1_CAMERA}/file_index"]) for row in episodes
    ]
    assert video_files == [(0, 0), (0, 0), (0, 1), (0, 1), (0, 1)]
    assert [row[f"videos/{AV1_CAMERA}/from_timestamp"] for row in episodes] == [0.0, 1.2, 0.0, 0.9, 1.6]
    assert [row[f"videos/{AV1_CAMERA}/to_timestamp"] for row in episodes] == [1.2, 2.7, 0.9, 1.6, 2.7]

    start = 0
    for row in episodes:
        assert (row["dataset_from_index"], row["dataset_to_index"]) == (start, start + row["length"])
        start += row["length"]
        path = v30_root / f"data/chunk-{row['data/chunk_index']:03d}/file-{row['data/file_index']:03d}.parquet"
        rows = pq.read_table(path).filter(pc.equal(pc.field("episode_index"), row["episode_index"]))
        assert rows["index"].to_pylist() == list(range(row["dataset_from_index"], row["dataset_to_index"]))


def test_v30_episodes_parquet_columns_match_fixture(v30_root):
    schema = pq.read_schema(v30_root / "meta/episodes/chunk-000/file-000.parquet")
    fixture = pq.read_schema(FIXTURES / "v3.0/video_av1/meta/episodes/chunk-000/file-000.parquet")
    fixture_camera, fixture_image = "observation.images.front", "observation.images.wrist"
    for name in fixture.names:
        ours = name.replace(fixture_image, PNG_CAMERA).replace(fixture_camera, AV1_CAMERA)
        assert schema.field(ours).type == fixture.field(name).type, name
    assert schema.names[:7] == fixture.names[:7] and schema.names[-2:] == fixture.names[-2:]


def test_v30_tasks_parquet_matches_pandas_layout(v30_root):
    written = pq.read_table(v30_root / "meta/tasks.parquet")
    fixture = pq.read_table(FIXTURES / "v3.0/video_av1/meta/tasks.parquet")
    assert written.schema.remove_metadata() == fixture.schema.remove_metadata()
    pandas_meta = json.loads(written.schema.metadata[b"pandas"])
    fixture_pandas_meta = json.loads(fixture.schema.metadata[b"pandas"])
    assert {k: v for k, v in pandas_meta.items() if k != "creator"} == {
        k: v for k, v in fixture_pandas_meta.items() if k != "creator"
    }
    assert written.to_pylist() == [{"task_index": i, "__index_level_0__": task} for i, task in enumerate(TASKS)]


def test_v30_stats_json(v30_root):
    stats = json.loads((v30_root / "meta/stats.json").read_text())
    assert set(stats) == set(RECAP_COLUMNS + list(CAMERAS) + DEFAULT_COLUMNS) - {"adv_ind"}
    assert stats["index"]["count"] == [54] and stats["index"]["min"] == [0] and stats["index"]["max"] == [53]
    assert stats["index"]["mean"] == pytest.approx([26.5])
    assert stats["intervention"]["max"] == [1]
    assert set(stats["reward_label"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    assert np.array(stats[AV1_CAMERA]["q50"]).shape == (3, 1, 1)


def test_v30_videos_hold_each_frame_at_from_timestamp_plus_t(v30_root):
    episodes = pq.read_table(v30_root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    for key in (AV1_CAMERA, H264_CAMERA):
        frames_by_file: dict[Path, list[av.VideoFrame]] = {}
        for row in episodes:
            chunk_index, file_index = row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"]
            path = v30_root / f"videos/{key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
            if path not in frames_by_file:
                with av.open(str(path)) as container:
                    frames_by_file[path] = list(container.decode(video=0))
            frames = frames_by_file[path]
            for frame_index in range(row["length"]):
                query = row[f"videos/{key}/from_timestamp"] + frame_index / FPS
                frame = min(frames, key=lambda candidate: abs(candidate.time - query))
                assert abs(frame.time - query) < 1e-4  # LeRobot's default tolerance_s
                error = np.abs(_mean_rgb(frame) - synth.expected_rgb(row["episode_index"], frame_index, key)).max()
                assert error <= 3.0
        assert sum(len(frames) for frames in frames_by_file.values()) == sum(episode.length for episode in EPISODES)


def test_v30_video_has_a_keyframe_at_every_episode_start(v30_root):
    with av.open(str(v30_root / f"videos/{AV1_CAMERA}/chunk-000/file-001.mp4")) as container:
        stream = container.streams.video[0]
        keyframe_times = {
            round(float(packet.pts * stream.time_base) * FPS)
            for packet in container.demux(stream)
            if packet.pts is not None and packet.is_keyframe
        }
    assert {0, 9, 16} <= keyframe_times  # episodes 2, 3, 4 start at frames 0, 9, 16 of this file


# ------------------------------------------------------------------------------------------
# Options, stage 1 layout, CLI


def test_write_refuses_an_existing_root(tmp_path):
    spec = DatasetSpec(version="v2.1", episodes=[EpisodeSpec(3, "t", "demo")])
    with pytest.raises(FileExistsError):
        synth.write_dataset(tmp_path, spec)


def test_column_names_and_optional_value_label(tmp_path):
    spec = DatasetSpec(
        version="v3.0",
        episodes=[EpisodeSpec(4, "t", "rollout", interventions=[(1, 2)])],
        include_value_label=False,
        column_names={"intervention": "human", "observation.state": "state"},
        adv_ind_initial={"demo": "positive", "rollout": "negative"},
    )
    table = pq.read_table(synth.write_dataset(tmp_path / "dataset", spec) / "data/chunk-000/file-000.parquet")
    assert table.column_names[:6] == ["state", "action", "reward_label", "reward", "human", "adv_ind"]
    assert table["human"].to_pylist() == [0, 1, 0, 0]
    assert table["adv_ind"].to_pylist() == ["negative"] * 4


def test_stage1_layout_symlinks_into_the_v30_tree(tmp_path):
    spec = synth.simple_spec(episodes=3, length=6, demos=1, png_cameras=1, video_cameras=1, size=32)
    v30_root, v21_root = synth.stage1_layout(tmp_path, spec)
    assert json.loads((v30_root / "meta/info.json").read_text())["codebase_version"] == "v3.0"
    assert json.loads((v21_root / "meta/info.json").read_text())["codebase_version"] == "v2.1"

    links = sorted((v21_root / "data").rglob("*.parquet"))
    assert len(links) == 3
    for link in links:
        assert link.is_symlink()
        assert link.resolve().is_relative_to(v30_root.resolve())
        assert pq.read_table(link).num_rows == 6
    assert (v21_root / "meta").is_symlink() and (v21_root / "meta").resolve().is_relative_to(v30_root.resolve())
    assert (v21_root / "videos").is_symlink()
    assert os.path.isabs(os.readlink(v21_root / "meta"))
    video = v21_root / "videos/chunk-000/observation.images.wrist/episode_000002.mp4"
    assert video.resolve().is_relative_to(v30_root.resolve())
    assert not (v30_root / ".v21_staging").exists()


def test_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    synth.main(
        [
            str(out),
            "--version",
            "v3.0",
            "--episodes",
            "3",
            "--length",
            "8",
            "--demos",
            "1",
            "--png-cameras",
            "1",
            "--video-cameras",
            "1",
            "--size",
            "32",
            "--rows-per-file",
            "10",
        ]
    )
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "3 episodes" in printed
    info = json.loads((out / "meta/info.json").read_text())
    assert info["total_frames"] == 24 and info["codebase_version"] == "v3.0"
    assert len(list((out / "data").rglob("*.parquet"))) == 3


def test_simple_spec_handles_short_episodes():
    for length in range(1, 40):
        spec = synth.simple_spec(episodes=4, length=length, demos=1)
        assert spec.total_frames == 4 * length
        assert spec.episodes[0].kind == "demo" and spec.episodes[1].kind == "rollout"
