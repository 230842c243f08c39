"""The original is sacred: the Stage 1 layout (a v3.0 tree whose v2.1 view is made of symlinks
into it) goes through copy → label → label → rollback → rollback, and attempts to write to it
directly, with a full content hash of the source trees before and after."""

from __future__ import annotations

import json

import pytest

from recap_label.demo import synth

from support import CHAOS, count, error_line, full_digest, labels_by_file, lineage_json, tree_digest, values_file


def _source_state(v30, v21) -> dict:
    return {
        "v3.0 tree": tree_digest(v30),  # raw: also holds the v2.1 files the view links to
        "v2.1 view (links)": tree_digest(v21),  # the links themselves
        "v2.1 view (content)": full_digest(v21),  # what LeRobot reads through them
        "v3.0 content": full_digest(v30),
        "stat": {str(p): (p.lstat().st_mtime_ns, p.lstat().st_ino) for p in [*v30.rglob("*"), *v21.rglob("*")]},
    }


def _cycle(cli, dest, values_args, tmp_path) -> None:
    original = labels_by_file(dest)
    assert cli("verify", dest, code=None).exit_code == 0
    cli("label", dest, *values_args, "--lookahead", "4")
    first = labels_by_file(dest)
    assert cli("verify", dest, code=None).exit_code == 0
    cli("label", dest, *values_args, "--lookahead", "4", "--positive-ratio", "0.55")
    assert labels_by_file(dest) != first
    assert cli("verify", dest, code=None).exit_code == 0
    cli("rollback", dest)
    assert labels_by_file(dest) == first
    cli("rollback", dest)
    assert labels_by_file(dest) == original
    assert cli("verify", dest, code=None).exit_code == 0
    assert [r["kind"] for r in lineage_json(dest)["runs"]] == ["label", "label", "rollback", "rollback"]


@pytest.mark.parametrize("cameras", [0, 1] if CHAOS else [1])
def test_stage1_layout_is_never_written(cli, home, tmp_path, cameras):
    spec = synth.simple_spec("v2.1", episodes=4, length=16, demos=1, png_cameras=cameras, video_cameras=0, size=16)
    v30, v21 = synth.stage1_layout(tmp_path / "stage1", spec)
    before = _source_state(v30, v21)

    # writing to the originals directly is refused, whatever the flags
    for root in (v21, v30):
        r = cli("label", root, "--value-column", "value_label", code=2)
        assert "no copy lineage" in error_line(r)
        r = cli("rollback", root, code=2)
        error_line(r)
    r = cli("label", v21, "--value-column", "value_label", "--allow-original", code=2)
    assert "symlink" in error_line(r)
    assert _source_state(v30, v21) == before

    # the v2.1 view: copy, then the full cycle on the copy
    out = json.loads(cli("copy", v21, "--json").stdout)
    dest21 = tmp_path / "stage1" / "synth_rollout_v21_vlm_label"
    assert out["dest"] == str(dest21)
    inodes = {p.stat().st_ino for p in [*v30.rglob("*"), *v21.rglob("*")] if p.is_file()}
    assert not [p for p in dest21.rglob("*") if p.is_symlink() or (p.is_file() and p.stat().st_ino in inodes)]
    _cycle(cli, dest21, ["--values", values_file(dest21, tmp_path / "values21.parquet", seed=3)], tmp_path)

    # the v3.0 tree: copy, then the cycle with a values file
    cli("copy", v30, tmp_path / "v30_vlm_label", "--json")
    dest30 = tmp_path / "v30_vlm_label"
    values = values_file(dest30, tmp_path / "values30.parquet", seed=5)
    _cycle(cli, dest30, ["--values", values], tmp_path)

    # a second iteration from the first copy, and retiring it
    cli("copy", dest21, "--json")
    cli("rollback", tmp_path / "stage1" / "synth_rollout_v21_vlm_label_v2", "--iteration", "--delete")

    after = _source_state(v30, v21)
    for key in before:
        assert after[key] == before[key], key
    count("original trees hashed before/after a full cycle", 2)


def test_scoring_an_original_is_refused_before_anything_is_written(cli, tmp_path):
    """--score-only writes value parts into the dataset's meta/recap_label/: on an original that
    would be a write, so it is refused like `label` (and allowed only with --allow-original)."""
    from recap_label.demo.tiny_model import TINY_CHECKPOINT, TINY_TOKENIZER

    spec = synth.simple_spec("v3.0", episodes=2, length=8, demos=0, png_cameras=1, video_cameras=0, size=16)
    root = synth.write_dataset(tmp_path / "orig", spec)
    before = tree_digest(root)
    model = ["--checkpoint-dir", TINY_CHECKPOINT, "--tokenizer-path", TINY_TOKENIZER, "--device", "cpu"]
    for extra in ([], ["--shard", "1/2"]):
        r = cli("label", root, *model, "--score-only", *extra, code=2)
        assert "no copy lineage" in error_line(r) and "--allow-original" in error_line(r)
    assert tree_digest(root) == before
    assert not (root / "meta" / "recap_label").exists()
