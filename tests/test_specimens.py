"""The dataset layer against datasets written by LeRobot's own code (v2.1, v3.0, AV1, H.264, converted)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recap_label.lerobot.dataset import DatasetFiles, group_episodes

from support import SPECIMENS, episode_frames, specimen_id


def test_all_specimens_present():
    assert len(SPECIMENS) == 7


@pytest.mark.parametrize("root", SPECIMENS, ids=specimen_id)
def test_specimen_matches_expected(root):
    expected = json.loads(root.with_name(root.name + ".expected.json").read_text())
    ds = DatasetFiles.open(root)
    assert ds.version == root.parent.name  # the converted specimen records its v2.1 origin
    assert ds.fps == expected["fps"]
    assert list(ds.tasks.values()) == expected["tasks"]
    assert [(e.index, e.length, e.tasks[0]) for e in ds.episodes.values()] == [
        (e["episode_index"], e["length"], e["task"]) for e in expected["episodes"]
    ]
    scalar = [
        "index",
        "episode_index",
        "frame_index",
        "timestamp",
        "task_index",
        "reward_label",
        "intervention",
        "adv_ind",
    ]
    table = ds.read_columns(scalar + ["observation.state", "action"])
    groups = group_episodes(table["episode_index"].to_numpy(), table["frame_index"].to_numpy())
    rows = table.take(groups.order).to_pylist()
    assert len(rows) == len(expected["frames"])
    for got, want in zip(rows, expected["frames"]):
        for k in ("index", "episode_index", "frame_index", "adv_ind"):
            assert got[k] == want[k], (k, got, want)
        assert abs(got["timestamp"] - want["timestamp"]) < 1e-6
        assert ds.tasks[got["task_index"]] == want["task"]
        for k in ("reward_label", "intervention"):
            assert [got[k]] == pytest.approx(want[k])
        for k in ("observation.state", "action"):
            assert got[k] == pytest.approx(want[k])

    for key in ds.camera_keys:
        for ep in ds.episodes:
            frames = episode_frames(ds, ep, key)
            want = [f for f in expected["frames"] if f["episode_index"] == ep]
            assert frames.shape[0] == len(want)
            means = frames.reshape(len(want), -1, 3).mean(axis=1)
            target = np.array([f[f"{key}_rgb"] for f in want], dtype=float)
            if ds.feature_dtype(key) == "image":
                assert (frames.reshape(len(want), -1, 3) == target[:, None, :]).all()  # lossless PNG
            else:
                assert np.abs(means - target).max() <= 3.0
