"""The iteration loop with copies named by hand, on the LeRobot-written specimens: identity (the
line, the iteration, the parent) comes from the lineage record, never from folder names; a retired
iteration is refused for labeling and comes back with `unretire`; `_active` never disappears
silently (set by the next label run when none exists, an empty folder in its place replaced)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support import FIXTURES, error_line, lineage_json, tree_digest, values_file, writable_copy

SPECIMENS = [FIXTURES / "v3.0" / "no_video", FIXTURES / "v2.1" / "no_video"]


@pytest.fixture(params=SPECIMENS, ids=lambda p: f"{p.parent.name}/{p.name}")
def vial(request, tmp_path) -> Path:
    return writable_copy(request.param, tmp_path / "vial")


def its_of(cli, arg) -> dict:
    return json.loads(cli("iterations", arg, "--json").stdout)


def rows_of(cli, arg) -> dict[str, dict]:
    return {r["name"]: r for r in its_of(cli, arg)["iterations"]}


def alias(home: Path) -> Path:
    return home / "local" / "vial_vlm_label_active"


def target(home: Path) -> str | None:
    return os.readlink(alias(home)) if alias(home).is_symlink() else None


def refusal(cli, vial) -> str:
    """The re-copy refusal of the original, asserted to change nothing."""
    before = tree_digest(vial.parent)
    line = error_line(cli("copy", vial, code=2))
    assert tree_digest(vial.parent) == before
    return line


def test_the_whole_loop_with_hand_named_copies(cli, lerobot_home, vial, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    round1, round2 = data / "round1", tmp_path / "round2"
    label = ("--values", values_file(vial, tmp_path / "values.parquet"), "--lookahead", "5")

    # copy SRC DEST: the copy belongs to SRC's line, whatever its name
    out = json.loads(cli("copy", vial, round1, "--json").stdout)
    assert out["iteration"] == 1 and lineage_json(round1)["original"] == {"name": "vial", "realpath": str(vial)}
    for arg in (vial, "local/round1", round1):
        its = its_of(cli, arg)
        assert its["base"] == "vial" and its["alias"] == "local/vial_vlm_label_active" and its["active"] is None
        assert [(r["name"], r["iteration"], r["parent"]) for r in its["iterations"]] == [("round1", 1, None)]
    assert refusal(cli, vial) == (
        f"Error: vial already has iteration copies (round1); the next iteration follows round1: run `recap-label copy "
        f"{round1}` (makes vial_vlm_label_v2); to start over from the original, unlabeled, pass --from-original"
    )

    # its first label run sets the line's alias (not local/round1_vlm_label_active)
    res = json.loads(cli("label", "local/round1", *label, "--json").stdout)
    assert f"local/vial_vlm_label_active → {round1} (the first label run of this iteration)" in res["notes"]
    assert target(lerobot_home) == str(round1) and not (lerobot_home / "local" / "round1_vlm_label_active").exists()
    assert "run `recap-label copy local/vial_vlm_label_active` (makes vial_vlm_label_v2)" in refusal(cli, vial)

    # copy local/DEST DEST2: iteration 2, its parent is round1 (not "v0" from a name without _vN)
    out = json.loads(cli("copy", "local/round1", round2, "--json").stdout)
    assert out["iteration"] == 2 and lineage_json(round2)["parent"] == str(round1)
    rows = rows_of(cli, vial)
    assert list(rows) == ["round1", "round2"]
    assert (rows["round2"]["iteration"], rows["round2"]["parent"], rows["round2"]["parent_iteration"]) == (
        2,
        "round1",
        1,
    )
    table = cli("iterations", "local/round2").stdout
    assert any(line.split()[:3] == ["round2", "v2", "v1"] for line in table.splitlines()), table
    assert target(lerobot_home) == str(round1)  # round2 is not labeled yet

    # relabel: the first run of round2 moves the alias, the second does not
    cli("label", "local/round2", *label)
    assert target(lerobot_home) == str(round2)
    cli("label", round2, *label, "--positive-ratio", "0.4")
    rows = rows_of(cli, round1)
    assert target(lerobot_home) == str(round2) and rows["round2"]["runs"] == 2 and rows["round2"]["active"]

    # retire: the alias goes back to round1; round2 stays in the table, retired
    res = json.loads(cli("rollback", "local/round2", "--iteration", "--json").stdout)
    assert res["active_now"] == str(round1) and target(lerobot_home) == str(round1)
    rows = rows_of(cli, vial)
    assert rows["round2"]["retired"] and not rows["round2"]["registered"] and rows["round1"]["active"]
    # the next copy is named for what the command will make: v2 is used by round2, retired or not
    line = refusal(cli, vial)
    assert "follows round1: run `recap-label copy local/vial_vlm_label_active` (makes vial_vlm_label_v3)" in line

    # un-retire: registered, live, eligible for `_active` again
    res = json.loads(cli("unretire", round2, "--json").stdout)
    assert res["was_retired"] and res["entry"] == "local/round2" and res["active"] == str(round1)
    rows = rows_of(cli, vial)
    assert not rows["round2"]["retired"] and rows["round2"]["registered"] and rows["round2"]["runs"] == 2
    cli("activate", "local/round2")
    assert target(lerobot_home) == str(round2)

    # rollback --to copy: the alias goes back along its history to round1 (still labeled)
    res = json.loads(cli("rollback", "local/round2", "--to", "copy", "--json").stdout)
    assert target(lerobot_home) == str(round1)
    assert rows_of(cli, vial)["round2"]["runs"] == 0

    # relabel: the alias exists and this is not round2's first label run: it stays (activate moves it)
    cli("label", "local/round2", *label)
    rows = rows_of(cli, "local/vial_vlm_label_active")
    assert target(lerobot_home) == str(round1) and rows["round2"]["runs"] == 1 and rows["round1"]["active"]
    assert [(r["name"], r["iteration"], r["parent"]) for r in rows.values()] == [
        ("round1", 1, None),
        ("round2", 2, "round1"),
    ]
    assert "run `recap-label copy local/vial_vlm_label_active` (makes vial_vlm_label_v3)" in refusal(cli, vial)
    # the hint was true: that command makes v3, beside round1, iteration 3, parent round1
    out = json.loads(cli("copy", "local/vial_vlm_label_active", "--json").stdout)
    assert out["dest"] == str(data / "vial_vlm_label_v3") and out["iteration"] == 3
    assert lineage_json(data / "vial_vlm_label_v3")["parent"] == str(round1)


def test_a_retired_copy_is_refused_until_unretired(cli, lerobot_home, vial, tmp_path):
    v1 = tmp_path / "vial_vlm_label"
    label = ("--values", values_file(vial, tmp_path / "values.parquet"), "--lookahead", "5")
    cli("copy", vial)
    cli("label", v1, *label)
    cli("rollback", v1, "--iteration")
    before = tree_digest(tmp_path)
    for args in (("label", v1, *label), ("label", v1, *label, "--dry-run")):
        assert error_line(cli(*args, code=2)).endswith(
            f"a retired iteration is not labeled; `recap-label unretire {v1}` brings it back into the loop"
        )
    assert f"`recap-label unretire {v1}` registers it again" in error_line(cli("register", v1, code=2))
    assert f"`recap-label unretire {v1}` brings it back" in error_line(cli("activate", v1, code=2))
    assert tree_digest(tmp_path) == before and rows_of(cli, vial)["vial_vlm_label"]["retired"]
    # unretire: the one way back; no `_active` existed and it is labeled, so the alias points at it
    out = cli("unretire", v1).stdout
    assert "vial_vlm_label is back in the loop" in out and f"_active → {v1}" in out
    assert target(lerobot_home) == str(v1) and os.readlink(lerobot_home / "local" / "vial_vlm_label") == str(v1)
    assert not rows_of(cli, vial)["vial_vlm_label"]["retired"]
    cli("label", v1, *label, "--positive-ratio", "0.4")
    # run again: nothing left to do, and it says so
    assert "was not retired" in cli("unretire", v1).stdout


def test_the_next_label_run_sets_a_removed_active_and_says_so(cli, lerobot_home, vial, tmp_path):
    v1 = tmp_path / "vial_vlm_label"
    label = ("--values", values_file(vial, tmp_path / "values.parquet"), "--lookahead", "5")
    cli("copy", vial)
    cli("label", "local/vial_vlm_label", *label)
    cli("rollback", v1, "--to", "copy")
    assert not os.path.lexists(alias(lerobot_home))
    res = json.loads(cli("label", "local/vial_vlm_label", *label, "--json").stdout)
    assert res["notes"][-1] == f"local/vial_vlm_label_active → {v1} (no `_active` existed)"
    assert target(lerobot_home) == str(v1)


def test_an_empty_folder_where_the_alias_belongs_is_replaced(cli, lerobot_home, vial, tmp_path):
    """LeRobot 0.3.3, asked for a missing local/…_active, makes an empty real folder there."""
    v1 = tmp_path / "vial_vlm_label"
    label = ("--values", values_file(vial, tmp_path / "values.parquet"), "--lookahead", "5")
    cli("copy", vial)
    alias(lerobot_home).mkdir()
    res = json.loads(cli("label", v1, *label, "--json").stdout)
    assert res["notes"][-1] == (
        "replaced the empty folder at local/vial_vlm_label_active (LeRobot makes one when asked for a missing "
        f"dataset); local/vial_vlm_label_active → {v1} (the first label run of this iteration)"
    )
    assert target(lerobot_home) == str(v1)
    alias(lerobot_home).unlink()
    alias(lerobot_home).mkdir()
    out = cli("activate", v1).stdout.splitlines()
    assert out[0].startswith("note: replaced the empty folder") and out[-1] == f"local/vial_vlm_label_active → {v1}"


def test_a_folder_with_files_where_the_alias_belongs_is_refused(cli, lerobot_home, vial, tmp_path):
    v1 = tmp_path / "vial_vlm_label"
    label = ("--values", values_file(vial, tmp_path / "values.parquet"), "--lookahead", "5")
    cli("copy", vial)
    alias(lerobot_home).mkdir()
    (alias(lerobot_home) / "keep.txt").write_text("mine")
    res = json.loads(cli("label", v1, *label, "--json").stdout)  # the labels are committed; the alias is not touched
    assert res["notes"][-1].startswith("the labels are committed, but `_active` was not set:")
    line = error_line(cli("activate", v1, code=2))
    assert line == (
        f"Error: {alias(lerobot_home)} is a folder with files in it, not the `_active` link recap-label keeps there; "
        f"move it away (e.g. `mv {alias(lerobot_home)} {alias(lerobot_home)}.bak`), then run `recap-label activate "
        f"<copy>`"
    )
    assert ".recap-link" not in line and (alias(lerobot_home) / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in (lerobot_home / "local").iterdir()) == ["vial_vlm_label", "vial_vlm_label_active"]
