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
    """copy SRC DEST, copy local/DEST DEST2, relabel, retire, un-retire, rollback --to copy, relabel:
    `iterations` (from the original, a copy and the alias), `_active`, the parents and the re-copy
    refusal asserted after every step."""
    data = tmp_path / "data"
    data.mkdir()
    round1, round2 = data / "round1", tmp_path / "round2"
    label = ("--values", values_file(vial, tmp_path / "values.parquet"), "--lookahead", "5")

    def expect(active: Path | None, rows: list[tuple], makes: str) -> None:
        """rows: (name, iteration, parent, parent's iteration, label runs on disk, retired, registered);
        the refusal follows `_active`, else the newest live copy (round1 before anything is labeled)."""
        assert target(lerobot_home) == (None if active is None else str(active))
        for arg in [vial, round1, *(["local/vial_vlm_label_active"] if active else [])]:
            its = its_of(cli, arg)
            assert its["base"] == "vial" and its["alias"] == "local/vial_vlm_label_active", arg
            assert its["active"] == (None if active is None else str(active)), arg
            got = [
                (
                    r["name"],
                    r["iteration"],
                    r["parent"],
                    r["parent_iteration"],
                    r["runs"],
                    r["retired"],
                    r["registered"],
                )
                for r in its["iterations"]
            ]
            assert got == rows, arg
            assert [r["name"] for r in its["iterations"] if r["active"]] == ([active.name] if active else []), arg
        follows, command = (active.name, "local/vial_vlm_label_active") if active else ("round1", str(round1))
        assert refusal(cli, vial) == (
            f"Error: vial already has iteration copies ({', '.join(r[0] for r in rows)}); the next iteration follows "
            f"{follows}: run `recap-label copy {command}` (makes {makes}); to start over from the original, "
            f"unlabeled, pass --from-original"
        )

    r1 = ("round1", 1, None, None)
    r2 = ("round2", 2, "round1", 1)

    # copy SRC DEST: the copy belongs to SRC's line, whatever its name; nothing is active yet
    out = json.loads(cli("copy", vial, round1, "--json").stdout)
    assert out["iteration"] == 1 and lineage_json(round1)["original"] == {"name": "vial", "realpath": str(vial)}
    assert its_of(cli, "local/round1")["iterations"][0]["name"] == "round1"
    expect(None, [(*r1, 0, False, True)], "vial_vlm_label_v2")

    # its first label run sets the line's alias (not local/round1_vlm_label_active)
    res = json.loads(cli("label", "local/round1", *label, "--json").stdout)
    assert f"local/vial_vlm_label_active → {round1} (the first label run of this iteration)" in res["notes"]
    assert not os.path.lexists(lerobot_home / "local" / "round1_vlm_label_active")
    expect(round1, [(*r1, 1, False, True)], "vial_vlm_label_v2")

    # copy local/DEST DEST2: iteration 2, its parent is round1 (not "v0" from a name without _vN)
    out = json.loads(cli("copy", "local/round1", round2, "--json").stdout)
    assert out["iteration"] == 2 and lineage_json(round2)["parent"] == str(round1)
    table = cli("iterations", "local/round2").stdout
    assert any(line.split()[:3] == ["round2", "v2", "v1"] for line in table.splitlines()), table
    # round2 is not labeled yet: `_active` stays; v2 is round2's number, so the next copy of round1 is v3
    expect(round1, [(*r1, 1, False, True), (*r2, 0, False, True)], "vial_vlm_label_v3")

    # relabel: the first run of round2 moves the alias, the second does not
    cli("label", "local/round2", *label)
    expect(round2, [(*r1, 1, False, True), (*r2, 1, False, True)], "vial_vlm_label_v3")
    cli("label", round2, *label, "--positive-ratio", "0.4")
    expect(round2, [(*r1, 1, False, True), (*r2, 2, False, True)], "vial_vlm_label_v3")
    # one line, so `diff` compares them without --force (their names share nothing)
    assert json.loads(cli("diff", round1, round2, "--json").stdout)["b"]

    # retire: the alias goes back to round1; round2 stays in the table, retired and unregistered
    res = json.loads(cli("rollback", "local/round2", "--iteration", "--json").stdout)
    assert res["active_now"] == str(round1)
    expect(round1, [(*r1, 1, False, True), (*r2, 2, True, False)], "vial_vlm_label_v3")

    # un-retire: registered, live, eligible for `_active` again (activate moves it)
    res = json.loads(cli("unretire", round2, "--json").stdout)
    assert res["was_retired"] and res["entry"] == "local/round2" and res["active"] == str(round1)
    expect(round1, [(*r1, 1, False, True), (*r2, 2, False, True)], "vial_vlm_label_v3")
    cli("activate", "local/round2")
    expect(round2, [(*r1, 1, False, True), (*r2, 2, False, True)], "vial_vlm_label_v3")

    # rollback --to copy: both runs undone; the alias goes back along its history to round1
    cli("rollback", "local/round2", "--to", "copy")
    expect(round1, [(*r1, 1, False, True), (*r2, 0, False, True)], "vial_vlm_label_v3")

    # relabel: the alias exists and this is not round2's first label run: it stays
    cli("label", "local/round2", *label)
    expect(round1, [(*r1, 1, False, True), (*r2, 1, False, True)], "vial_vlm_label_v3")

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
