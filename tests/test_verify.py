"""`recap-label verify`: the breakdown and the invariants, on real specimens."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq

from support import FIXTURES, error_line, writable_copy


def test_breakdown_on_specimen(cli, lerobot_home):
    out = json.loads(cli("verify", FIXTURES / "v3.0" / "video_av1", "--json", "--episodes").stdout)
    b = out["breakdown"]
    # fixture: intervention on frame 1 of each episode; adv_ind positive on even frames
    assert b["labels"] == {"positive": 7, "negative": 5, "none": 0}
    assert b["intervention"] == {"positive": 0, "negative": 3, "none": 0}
    assert b["autonomous"] == {"positive": 7, "negative": 2, "none": 0}
    assert b["rollout_episodes"] == 3 and b["demo_episodes"] == 0
    assert abs(b["autonomous_positive_share"] - 7 / 9) < 1e-12
    assert [e["frames"] for e in b["episodes"]] == [5, 3, 4]
    assert out["ok"] is True
    assert {c["name"]: c["status"] for c in out["checks"]}["source unchanged since copy"] == "skip"


def test_verify_copy_passes_then_detects_source_change_and_symlink(cli, lerobot_home, tmp_path):
    src = writable_copy(FIXTURES / "v2.1" / "no_video", tmp_path / "ds")
    cli("copy", src)
    dest = tmp_path / "ds_vlm_label"
    r = cli("verify", "local/ds_vlm_label")
    assert "all invariants hold" in r.stdout
    # someone rewrites the source after the copy
    path = src / "data" / "chunk-000" / "episode_000001.parquet"
    pq.write_table(pq.read_table(path), path)
    out = json.loads(cli("verify", dest, "--json", code=1).stdout)
    checks = {c["name"]: c for c in out["checks"]}
    assert checks["source unchanged since copy"]["status"] == "fail"
    assert "episode_000001.parquet changed" in checks["source unchanged since copy"]["detail"]
    os.symlink("info.json", dest / "meta" / "alias.json")
    r = cli("verify", dest, code=1)
    assert "INVARIANT FAILED" in r.stdout


def test_verify_bad_input(cli, lerobot_home, tmp_path):
    assert "not found" in error_line(cli("verify", tmp_path / "nope", code=2))
    src = writable_copy(FIXTURES / "v2.1" / "no_video", tmp_path / "ds")
    r = cli("verify", src, "--human-col", "teleop", code=2)
    assert "column 'teleop' is missing" in error_line(r)
