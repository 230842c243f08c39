"""Incomplete copies, a source that changed or moved, and live or interrupted work, as `verify`
and `label` report them."""

from __future__ import annotations

import json
import os

import pytest

from support import FIXTURES, error_line, tree_digest, writable_copy

VIDEO_SPECIMENS = [FIXTURES / "v2.1" / "video_av1", FIXTURES / "v3.0" / "video_av1"]


def _copy(cli, tmp_path, specimen):
    src = writable_copy(specimen, tmp_path / "spec")
    cli("copy", src, "--json")
    return src, tmp_path / "spec_vlm_label"


def _checks(result) -> dict:
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def _files(root) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "recap_label" not in p.parts
    )


@pytest.mark.parametrize("specimen", VIDEO_SPECIMENS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_missing_video_fails_verify_and_is_refused_by_label_up_front(cli, lerobot_home, tmp_path, specimen):
    _src, dest = _copy(cli, tmp_path, specimen)
    checks = _checks(cli("verify", dest, "--json"))
    assert checks["every file meta/ names is present"]["status"] == "pass"
    video = sorted((dest / "videos").rglob("*.mp4"))[-1]
    rel = video.relative_to(dest).as_posix()
    video.unlink()
    r = cli("verify", dest, "--json", code=1)
    check = _checks(r)["every file meta/ names is present"]
    assert check == {
        "name": "every file meta/ names is present",
        "status": "fail",
        "detail": f"1 file that meta/ names is missing ({rel}); restore them from the source dataset, or make a new "
        f"copy",
    }
    assert "INVARIANT FAILED" in cli("verify", dest, code=1).stdout
    before = tree_digest(dest)
    line = error_line(cli("label", dest, "--value-column", "reward_label", "--lookahead", "2", code=2))
    assert (
        line
        == f"Error: spec_vlm_label is incomplete: 1 file that meta/ names is missing ({rel}); restore them from the "
        f"source dataset (or make a new copy)"
    )
    assert tree_digest(dest) == before


def test_a_missing_data_file_is_named_by_verify(cli, lerobot_home, tmp_path):
    _src, dest = _copy(cli, tmp_path, FIXTURES / "v2.1" / "video_av1")
    (dest / "data" / "chunk-000" / "episode_000001.parquet").unlink()
    (dest / "videos" / "chunk-000" / "observation.images.front" / "episode_000002.mp4").unlink()
    line = error_line(cli("verify", dest, code=2))
    assert line == (
        "Error: spec_vlm_label is incomplete: 2 files that meta/ names are missing "
        "(data/chunk-000/episode_000001.parquet, "
        "videos/chunk-000/observation.images.front/episode_000002.mp4); restore them from the source dataset (or "
        "make a new copy)"
    )


def test_a_missing_camera_file_stops_model_inference_before_it_starts(cli, lerobot_home, tmp_path):
    from recap_label.demo import synth
    from support import model_args

    spec = synth.simple_spec(
        "v3.0", episodes=4, length=30, demos=1, png_cameras=1, video_cameras=1, size=32, rows_per_file=70
    )
    synth.write_dataset(tmp_path / "ds", spec)
    cli("copy", tmp_path / "ds", "--json")
    dest = tmp_path / "ds_vlm_label"
    videos = sorted((dest / "videos").rglob("*.mp4"))
    videos[-1].unlink()
    before = tree_digest(dest)
    line = error_line(cli("label", dest, *model_args(), code=2))
    assert line.startswith("Error: ds_vlm_label is incomplete: 1 file that meta/ names is missing (videos/")
    assert tree_digest(dest) == before  # no partial values left behind
    assert not (dest / "meta" / "recap_label" / "values-partial").exists()


@pytest.mark.parametrize("specimen", VIDEO_SPECIMENS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_source_fingerprint_covers_every_file(cli, lerobot_home, tmp_path, specimen):
    src, dest = _copy(cli, tmp_path, specimen)
    n = len(_files(dest))
    detail = _checks(cli("verify", dest, "--json"))["source unchanged since copy"]["detail"]
    assert detail == f"all {n} files match by content"  # the specimens' videos are small
    # a video of the source rewritten in place (same size, other bytes)
    video = sorted((src / "videos").rglob("*.mp4"))[0]
    data = bytearray(video.read_bytes())
    data[len(data) // 2] ^= 0xFF
    video.write_bytes(bytes(data))
    check = _checks(cli("verify", dest, "--json", code=1))["source unchanged since copy"]
    assert check["status"] == "fail"
    assert (
        check["detail"]
        == f"{video.relative_to(src).as_posix()} changed in the source since the copy (its content differs)"
    )
    # a stats file (not data, not info.json) changed
    data[len(data) // 2] ^= 0xFF
    video.write_bytes(bytes(data))
    assert _checks(cli("verify", dest, "--json"))["source unchanged since copy"]["status"] == "pass"
    stats = next(p for p in (src / "meta").rglob("*stats*"))
    stats.write_text(stats.read_text() + " ")
    check = _checks(cli("verify", dest, "--json", code=1))["source unchanged since copy"]
    assert stats.relative_to(src).as_posix() in check["detail"]


def test_large_files_are_compared_by_size_and_mtime(cli, lerobot_home, tmp_path, monkeypatch):
    from recap_label.lerobot import fingerprint

    src, dest = _copy(cli, tmp_path, FIXTURES / "v3.0" / "video_av1")
    monkeypatch.setattr(fingerprint, "CONTENT_LIMIT", 0)  # every video counts as large
    n, videos = len(_files(dest)), len(list((dest / "videos").rglob("*.mp4")))
    detail = _checks(cli("verify", dest, "--json"))["source unchanged since copy"]["detail"]
    assert (
        detail
        == f"all {n} files match: {n - videos} by content (data, meta and files up to 1 MiB), {videos} larger ones "
        f"by size and modification time"
    )
    video = sorted((src / "videos").rglob("*.mp4"))[0]
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    check = _checks(cli("verify", dest, "--json", code=1))["source unchanged since copy"]
    assert (
        check["detail"] == f"{video.relative_to(src).as_posix()} changed in the source since the copy (modified since)"
    )


def test_a_source_moved_away_is_a_warning(cli, lerobot_home, tmp_path):
    src, dest = _copy(cli, tmp_path, FIXTURES / "v2.1" / "no_video")
    src.rename(tmp_path / "archived")
    r = cli("verify", dest, "--json")  # exit 0: archiving an original must not fail every later verify
    check = _checks(r)["source unchanged since copy"]
    assert check["status"] == "warn" and check["detail"].startswith(
        f"source {src} no longer exists (moved or archived after the copy?)"
    )
    assert json.loads(r.stdout)["ok"] is True
    assert "all invariants hold (1 warning)" in cli("verify", dest).stdout


@pytest.mark.slow
def test_verify_reports_a_killed_inference(cli, lerobot_home, tmp_path):
    """SIGKILL during inference: a stale lock and value parts are left; verify says so, with what
    to do, and stays read-only."""
    from recap_label.demo import synth
    from support import TINY_CHECKPOINT, model_args, run_sub

    spec = synth.simple_spec(
        "v3.0", episodes=4, length=30, demos=1, png_cameras=1, video_cameras=1, size=32, rows_per_file=70
    )
    synth.write_dataset(tmp_path / "ds", spec)
    cli("copy", tmp_path / "ds", "--json")
    dest = tmp_path / "ds_vlm_label"
    r = run_sub(["label", dest, *model_args()], crash="episode-values:2", model_cache=tmp_path / "model-cache")
    assert r.returncode == -9, r.stderr
    before = tree_digest(dest)
    out = json.loads(cli("verify", dest, "--json").stdout)
    notes = out["notes"]
    assert any(
        n.startswith("a stale lock is left by `recap-label label` (pid ")
        and n.endswith("which is no longer running; the next label or rollback clears it")
        for n in notes
    ), notes
    parts = [
        n for n in notes if n.startswith("value parts of an interrupted inference are kept: 2 episode(s) scored with ")
    ]
    assert parts and str(TINY_CHECKPOINT / "step_00000002") in parts[0] and "resumes from them" in parts[0], notes
    assert tree_digest(dest) == before
