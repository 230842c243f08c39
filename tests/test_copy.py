"""`recap-label copy` on real specimens: materialized, verified, registered, never touching the source."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recap_label.commands import copy as copying
from recap_label.store.fsutil import find_symlinks
from support import FIXTURES, error_line, tree_digest, writable_copy
from support import lineage_json as read_lineage


@pytest.fixture
def src(tmp_path) -> Path:
    return writable_copy(FIXTURES / "v2.1" / "video_av1", tmp_path / "vial_v21")


def make_stage1(tmp_path: Path) -> tuple[Path, Path]:
    """The Stage 1 layout: a v2.1 view whose data parquets (and videos folder) are symlinks into a v3.0-style tree."""
    v30 = tmp_path / "vial_v30"
    writable_copy(FIXTURES / "v3.0" / "video_av1", v30)
    shutil.copytree(FIXTURES / "v2.1" / "video_av1" / "data", v30 / "v21_data")
    shutil.copytree(FIXTURES / "v2.1" / "video_av1" / "videos", v30 / "v21_videos")
    v21 = tmp_path / "vial_v21"
    shutil.copytree(FIXTURES / "v2.1" / "video_av1" / "meta", v21 / "meta")
    (v21 / "data" / "chunk-000").mkdir(parents=True)
    for f in sorted((v30 / "v21_data" / "chunk-000").iterdir()):
        os.symlink(os.path.relpath(f, v21 / "data" / "chunk-000"), v21 / "data" / "chunk-000" / f.name)
    os.symlink(os.path.relpath(v30 / "v21_videos", v21), v21 / "videos")
    return v30, v21


def test_copy_default_destination_registers_and_matches(cli, lerobot_home, src):
    before = tree_digest(src)
    result = cli("copy", src)
    dest = src.parent / "vial_v21_vlm_label"
    assert dest.is_dir()
    assert "verified: no symlinks" in result.stdout
    entry = lerobot_home / "local" / "vial_v21_vlm_label"
    assert entry.is_symlink() and Path(os.readlink(entry)) == dest.absolute()
    assert tree_digest(src) == before
    # every source file is in the copy, byte-identical, as a distinct inode
    for rel, digest in before.items():
        assert tree_digest(dest)[rel] == digest
        if (src / rel).is_file():
            assert not os.path.samefile(src / rel, dest / rel)
    record = read_lineage(dest)
    assert record["iteration"] == 1 and record["parent"] is None
    assert record["source"]["path"] == str(src.absolute())
    assert set(record["source"]["fingerprint"]) >= {"data/chunk-000/episode_000000.parquet", "meta/info.json"}
    assert record["source"]["label_column_sha256"]
    # side by side label distribution
    assert "positive" in result.stdout and "negative" in result.stdout


def test_copy_iterations_and_json(cli, lerobot_home, src):
    cli("copy", src)
    first = src.parent / "vial_v21_vlm_label"
    out = json.loads(cli("--json", "copy", first).stdout)
    assert out["dest"] == str(src.parent / "vial_v21_vlm_label_v2")
    assert out["iteration"] == 2
    assert out["labels"]["source"] == out["labels"]["copy"] == {"negative": 5, "positive": 7}
    assert read_lineage(src.parent / "vial_v21_vlm_label_v2")["parent"] == str(first.absolute())
    # copying the original again is refused (it would start an unlabeled line with no parent);
    # the message names the iteration the loop continues from
    before = tree_digest(src.parent)
    line = error_line(cli("copy", src, code=2))
    assert line == (
        f"Error: vial_v21 already has iteration copies (vial_v21_vlm_label, vial_v21_vlm_label_v2); the next "
        f"iteration follows "
        f"vial_v21_vlm_label_v2: run `recap-label copy {src.parent / 'vial_v21_vlm_label_v2'}` (makes "
        f"vial_v21_vlm_label_v3); "
        "to start over from the original, unlabeled, pass --from-original"
    )
    assert tree_digest(src.parent) == before
    # asked for: the next free name, no parent, said so
    out = json.loads(cli("copy", src, "--json", "--from-original").stdout)
    assert out["dest"].endswith("vial_v21_vlm_label_v3") and read_lineage(Path(out["dest"]))["parent"] is None
    assert out["notes"] == [
        "started a new line from the original vial_v21: the copy follows no iteration (parent none) and holds the "
        "original's labels"
    ]


def test_copy_via_local_repo_id_and_no_register(cli, lerobot_home, src, tmp_path):
    (lerobot_home / "local").mkdir()
    os.symlink(src, lerobot_home / "local" / "vial_v21")
    dest = tmp_path / "elsewhere"
    cli("copy", "local/vial_v21", dest, "--no-register")
    assert (dest / "meta" / "info.json").is_file()
    assert not (lerobot_home / "local" / "elsewhere").exists()


def test_stage1_layout_source_is_never_written(cli, lerobot_home, tmp_path):
    v30, v21 = make_stage1(tmp_path)
    v30_before, v21_before = tree_digest(v30), tree_digest(v21)
    cli("copy", v21)
    dest = tmp_path / "vial_v21_vlm_label"
    assert find_symlinks(dest) == []
    # a write into the copy (what labeling does) must not reach the v3.0 tree
    target = dest / "data" / "chunk-000" / "episode_000000.parquet"
    table = pq.read_table(target)
    idx = table.schema.get_field_index("adv_ind")
    table = table.set_column(idx, table.schema.field(idx), pa.array(["negative"] * table.num_rows))
    pq.write_table(table, target)
    assert tree_digest(v30) == v30_before
    assert tree_digest(v21) == v21_before


# -- bad input: one Error: line, exit 2, nothing created --------------------------------------------


def _no_new_entries(parent: Path, before: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} == before


def test_bad_source_paths(cli, lerobot_home, tmp_path, src):
    r = cli("copy", tmp_path / "missing", code=2)
    assert "not found" in error_line(r)
    (tmp_path / "plain").mkdir()
    r = cli("copy", tmp_path / "plain", code=2)
    assert "is not a LeRobot dataset (no meta/info.json)" in error_line(r)
    (src / "meta" / "info.json").write_text("{broken")
    r = cli("copy", src, code=2)
    assert "meta/info.json" in error_line(r) and "malformed" in error_line(r)
    (src / "meta" / "info.json").write_text(
        json.dumps({"codebase_version": "v1.6", "fps": 10, "features": {}, "data_path": "x"})
    )
    r = cli("copy", src, code=2)
    assert "unsupported codebase_version 'v1.6'" in error_line(r)
    assert not (tmp_path / "vial_v21_vlm_label").exists()


def test_dest_conflicts(cli, lerobot_home, src, tmp_path):
    (tmp_path / "taken").mkdir()
    before = {p.name for p in tmp_path.iterdir()}
    assert "already exists" in error_line(cli("copy", src, tmp_path / "taken", code=2))
    assert "inside the source" in error_line(cli("copy", src, src / "sub", code=2))
    assert "source" in error_line(cli("copy", src, tmp_path, code=2))
    _no_new_entries(tmp_path, before)


def test_symlink_loop_and_dangling_link(cli, lerobot_home, src, tmp_path):
    os.symlink("..", src / "meta" / "loop")
    r = cli("copy", src, code=2)
    assert "symlink loop" in error_line(r)
    (src / "meta" / "loop").unlink()
    os.symlink("does-not-exist", src / "meta" / "dangling")
    r = cli("copy", src, code=2)
    assert "dangling symlink" in error_line(r)
    assert not (tmp_path / "vial_v21_vlm_label").exists()
    assert not list(tmp_path.glob(".recap-copy-*"))


def test_cache_entry_pointing_elsewhere(cli, lerobot_home, src, tmp_path):
    (lerobot_home / "local").mkdir()
    os.symlink(tmp_path / "other", lerobot_home / "local" / "vial_v21_vlm_label")
    r = cli("copy", src, code=2)
    assert "already exists and points to" in error_line(r)
    assert not (tmp_path / "vial_v21_vlm_label").exists()
    cli("copy", src, "--replace-registration")
    assert os.path.realpath(lerobot_home / "local" / "vial_v21_vlm_label") == str(
        (tmp_path / "vial_v21_vlm_label").resolve()
    )


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES])
def test_disk_full_or_permission_denied_leaves_nothing(cli, lerobot_home, src, tmp_path, monkeypatch, err):
    real = copying._copy_one
    calls = []

    def failing(a, b, on_bytes):
        calls.append(a)
        if len(calls) == 3:  # fail in the middle of the copy
            raise OSError(err, os.strerror(err), str(b))
        return real(a, b, on_bytes)

    monkeypatch.setattr(copying, "_copy_one", failing)
    before = {p.name for p in tmp_path.iterdir()}
    r = cli("copy", src, code=2)
    line = error_line(r)
    assert ("disk full" in line) if err == errno.ENOSPC else ("permission denied" in line)
    _no_new_entries(tmp_path, before)
    assert not (lerobot_home / "local" / "vial_v21_vlm_label").exists()


def test_not_enough_space_is_refused_up_front(cli, lerobot_home, src, tmp_path, monkeypatch):
    monkeypatch.setattr(copying.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100, 100, 10))
    assert "not enough disk space" in error_line(cli("copy", src, code=2))
    assert not (tmp_path / "vial_v21_vlm_label").exists()


def test_stale_temporary_copy_is_cleaned(cli, lerobot_home, src, tmp_path):
    stale = tmp_path / ".recap-copy-vial_v21_vlm_label-999999"
    (stale / "meta").mkdir(parents=True)
    cli("copy", src)
    assert not stale.exists()
