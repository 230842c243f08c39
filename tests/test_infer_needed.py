"""`label --infer needed`: V only for the frames the rule uses, the labels of `--infer all`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recap_label.demo import synth
from recap_label.lerobot.columns import read_label_columns
from recap_label.lerobot.dataset import DatasetFiles
from recap_label.rule import RuleSettings, apply_rule_to, needed_rows

from support import SPECIMENS, error_line, labels_by_file, model_args, specimen_id, writable_copy

SPECIMEN_CAMERAS = ("--base-image-col", "observation.images.front", "--wrist-image-col", "observation.images.wrist")


def _columns(root: Path):
    return read_label_columns(
        DatasetFiles.open(root), human_col="intervention", adv_col="adv_ind", reward_col="reward_label"
    )


def test_needed_rows_are_autonomous_frames_and_their_endpoints(tmp_path):
    """One rollout of 12 frames, autonomous at 0-2 and 9, N = 3: V is used at 0-2 and 9 (their own
    A), at 3-5 (endpoints of 0-2); 9 + 3 runs past the end: with the "last" tail also at 11."""
    spec = synth.simple_spec("v2.1", episodes=2, length=12, demos=1, png_cameras=0, video_cameras=0)
    root = synth.write_dataset(tmp_path / "ds", spec)
    cols = _columns(root)
    rollout = int(cols.rollout_episodes()[0])
    rows = np.flatnonzero(cols.episode == rollout)
    cols.human[rows] = True
    cols.human[rows[[0, 1, 2, 9]]] = False
    cols.__dict__.pop("kinds", None)  # the demo/rollout split is recomputed from the changed column
    zero = needed_rows(cols, 3, "zero")[rows]
    assert np.flatnonzero(zero).tolist() == [0, 1, 2, 3, 4, 5, 9]
    last = needed_rows(cols, 3, "last")[rows]
    assert np.flatnonzero(last).tolist() == [0, 1, 2, 3, 4, 5, 9, 11]
    assert not needed_rows(cols, 3, "zero")[cols.episode != rollout].any()  # demo frames: never


@pytest.mark.parametrize("root", SPECIMENS, ids=specimen_id)
def test_labels_from_needed_values_equal_all_on_every_specimen(root):
    """The rule with V only on the needed frames (NaN elsewhere) gives the labels, A of the
    autonomous frames and thresholds of the rule with every V, for each lookahead and tail rule."""
    cols = _columns(root)
    rng = np.random.default_rng(7)
    value = np.where(cols.rollout_rows, rng.uniform(-1, 0, cols.episode.size), np.nan)
    for lookahead in (1, 2, 50):
        for tail in ("zero", "last"):
            rule = RuleSettings(lookahead=lookahead, positive_ratio=0.4, tail_bootstrap=tail)
            full = apply_rule_to(cols, value, rule)
            needed = needed_rows(cols, lookahead, tail)
            part = apply_rule_to(cols, np.where(needed, value, np.nan), rule)
            assert part.thresholds == full.thresholds
            np.testing.assert_array_equal(part.labels(cols.labels), full.labels(cols.labels))
            auto = cols.rollout_rows & ~cols.human
            np.testing.assert_array_equal(part.advantage[auto], full.advantage[auto])


def _two_copies(cli, tmp_path: Path, length: int = 100) -> tuple[Path, Path]:
    """The same generated dataset twice (PNG base camera, AV1 wrist camera), each copied."""
    spec = synth.simple_spec(
        "v3.0", episodes=4, length=length, demos=1, png_cameras=1, video_cameras=1, size=32, rows_per_file=150
    )
    out = []
    for name in ("a", "b"):
        synth.write_dataset(tmp_path / name, spec)
        cli("copy", tmp_path / name, "--json")
        out.append(tmp_path / f"{name}_vlm_label")
    return out[0], out[1]


def _sidecar(root: Path):
    return pq.read_table(root / "meta" / "recap_label" / "values.parquet")


@pytest.mark.slow  # three label runs with inference (tiny model)
def test_infer_needed_labels_like_all_and_all_afterwards_infers_only_what_is_missing(cli, lerobot_home, tmp_path):
    needed_copy, all_copy = _two_copies(cli, tmp_path)
    needed = json.loads(cli("label", needed_copy, *model_args("--infer", "needed", "--json")).stdout)
    full = json.loads(cli("label", all_copy, *model_args("--json")).stdout)
    assert labels_by_file(needed_copy) == labels_by_file(all_copy)
    assert needed["thresholds"] == full["thresholds"]
    info = needed["infer"]
    assert info["mode"] == "needed" and info["frames_skipped"] > 0
    assert info["frames_with_value"] == info["frames_needed"] == needed["performance"]["frames"]
    assert info["frames_with_value"] + info["frames_skipped"] == info["rollout_frames"]
    assert full["infer"]["frames_skipped"] == 0 and full["performance"]["frames"] == info["rollout_frames"]
    assert any(n.startswith("--infer needed: V for ") for n in needed["notes"])
    assert any("label --infer needed" in n for n in needed["value_model"]["notes"])
    assert int(np.isnan(_sidecar(needed_copy)["value"].to_numpy()).sum()) == info["frames_skipped"]
    verified = json.loads(cli("verify", needed_copy, "--json", code=None).stdout)
    assert verified["ok"] and any("label --infer needed" in n for n in verified["value_model"]["notes"])

    # `all` on the needed copy: the sidecar's V is reused, only the frames it lacks are inferred
    again = json.loads(cli("label", needed_copy, *model_args("--positive-ratio", "0.5", "--json")).stdout)
    assert "in part (written by --infer needed)" in again["values_from"]
    assert again["performance"]["frames"] == info["frames_skipped"]
    assert again["infer"]["frames_skipped"] == 0
    np.testing.assert_allclose(_sidecar(needed_copy)["value"].to_numpy(), _sidecar(all_copy)["value"].to_numpy(), 1e-6)
    # and `needed` on a complete sidecar infers nothing
    rerun = json.loads(cli("label", needed_copy, *model_args("--infer", "needed", "--json")).stdout)
    assert rerun["values_from"] == "sidecar (no inference)" and rerun["infer"]["frames_skipped"] == 0


@pytest.mark.slow  # two label runs with inference per specimen (tiny model)
@pytest.mark.parametrize("name", ["v2.1/video_h264", "v3.0/video_av1"])
def test_infer_needed_on_specimens_labels_like_all(cli, lerobot_home, tmp_path, name):
    specimen = next(p for p in SPECIMENS if specimen_id(p) == name)
    copies = []
    for mode in ("needed", "all"):
        root = writable_copy(specimen, tmp_path / mode)
        cli(
            "label",
            root,
            "--allow-original",
            *model_args(*SPECIMEN_CAMERAS, "--lookahead", "1", "--infer", mode, "--json"),
        )
        copies.append(root)
    assert labels_by_file(copies[0]) == labels_by_file(copies[1])


def test_infer_refuses_a_bad_mode_and_score_only(cli, tmp_path):
    spec = synth.simple_spec("v2.1", episodes=2, length=10, demos=1, png_cameras=0, video_cameras=0)
    root = synth.write_dataset(tmp_path / "ds", spec)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    bad = cli("label", root, "--value-column", "value_label", "--infer", "some", code=2)
    assert error_line(bad) == "Error: --infer must be needed or all, got 'some'"
    both = cli("label", root, *model_args("--score-only", "--infer", "needed"), code=2)
    assert "--infer needed is for `label` itself" in error_line(both)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    shutil.rmtree(root)
