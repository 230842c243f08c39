"""The iteration loop on real files: `copy local/<name>`, the `_active` alias that only ever names a
labeled iteration, `iterations`, `activate`, `register`, and the re-copy refusal."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from recap_label.demo import synth
from support import FIXTURES, error_line, tree_digest, writable_copy
from support import lineage_json as read_lineage

LABEL = ("--value-column", "value_label", "--lookahead", "5")


@pytest.fixture
def vial(tmp_path) -> Path:
    return synth.write_dataset(
        tmp_path / "vial", synth.simple_spec("v2.1", episodes=5, length=30, demos=1, png_cameras=0, video_cameras=0)
    )


def alias_of(home: Path) -> Path:
    return home / "local" / "vial_vlm_label_active"


def test_copy_of_a_local_name_goes_beside_the_real_folder(cli, lerobot_home, vial, tmp_path):
    cli("copy", vial)
    out = json.loads(cli("copy", "local/vial_vlm_label", "--json").stdout)
    assert out["dest"] == str(tmp_path / "vial_vlm_label_v2") and out["iteration"] == 2
    assert read_lineage(tmp_path / "vial_vlm_label_v2")["parent"] == str(tmp_path / "vial_vlm_label")
    # --no-register: still beside the real folder, never inside the LeRobot cache
    out = json.loads(cli("copy", "local/vial_vlm_label_v2", "--no-register", "--json").stdout)
    assert out["dest"] == str(tmp_path / "vial_vlm_label_v3") and out["registered"] is None
    assert sorted(p.name for p in (lerobot_home / "local").iterdir()) == ["vial_vlm_label", "vial_vlm_label_v2"]
    assert all(p.is_symlink() for p in (lerobot_home / "local").iterdir())


def test_active_moves_on_first_label_and_back_on_retire(cli, lerobot_home, vial, tmp_path):
    v1, v2 = tmp_path / "vial_vlm_label", tmp_path / "vial_vlm_label_v2"
    cli("copy", vial)
    assert not os.path.lexists(alias_of(lerobot_home))
    out = json.loads(cli("label", "local/vial_vlm_label", *LABEL, "--json").stdout)
    assert out["notes"] == [f"local/vial_vlm_label_active → {v1} (the first label run of this iteration)"]
    assert os.readlink(alias_of(lerobot_home)) == str(v1)
    cli("copy", "local/vial_vlm_label_active")
    assert os.readlink(alias_of(lerobot_home)) == str(v1)  # v2 is not labeled yet
    cli("label", "local/vial_vlm_label_v2", *LABEL, "--positive-ratio", "0.5")
    assert os.readlink(alias_of(lerobot_home)) == str(v2)
    # a second label run does not move it (the user moved it back on purpose)
    cli("activate", "local/vial_vlm_label")
    cli("label", v2, *LABEL, "--positive-ratio", "0.4")
    assert os.readlink(alias_of(lerobot_home)) == str(v1)
    cli("activate", v2)
    # the defect: an unlabeled v3 from the original stole `_active`, and retiring it deleted the name
    out = json.loads(cli("copy", vial, "--from-original", "--json").stdout)
    v3 = Path(out["dest"])
    assert v3.name == "vial_vlm_label_v3" and read_lineage(v3)["parent"] is None
    assert os.readlink(alias_of(lerobot_home)) == str(v2)
    res = json.loads(cli("rollback", "local/vial_vlm_label_v3", "--iteration", "--delete", "--json").stdout)
    assert res["unregistered"] == ["local/vial_vlm_label_v3"] and res["active_now"] is None
    assert os.readlink(alias_of(lerobot_home)) == str(v2)
    # retiring the active one goes back to the one active before it
    res = json.loads(cli("rollback", v2, "--iteration", "--json").stdout)
    assert res["active_now"] == str(v1) and os.readlink(alias_of(lerobot_home)) == str(v1)
    its = json.loads(cli("iterations", vial, "--json").stdout)
    rows = {r["name"]: r for r in its["iterations"]}
    assert list(rows) == ["vial_vlm_label", "vial_vlm_label_v2"] and its["active"] == str(v1)
    assert (
        rows["vial_vlm_label"]["active"]
        and rows["vial_vlm_label"]["registered"]
        and rows["vial_vlm_label"]["runs"] == 1
    )
    assert (
        rows["vial_vlm_label_v2"]["retired"]
        and not rows["vial_vlm_label_v2"]["registered"]
        and rows["vial_vlm_label_v2"]["runs"] == 2
    )
    assert rows["vial_vlm_label_v2"]["parent"] == "vial_vlm_label" and rows["vial_vlm_label"]["share"] is not None


def test_rolling_back_the_only_run_moves_active_off_the_copy(cli, lerobot_home, vial, tmp_path):
    cli("copy", vial)
    cli("label", "local/vial_vlm_label", *LABEL)
    out = json.loads(cli("rollback", "local/vial_vlm_label", "--json").stdout)
    assert not os.path.lexists(alias_of(lerobot_home))
    assert out["notes"][-1].startswith("local/vial_vlm_label_active removed: vial_vlm_label has no label run now")


def test_iterations_of_an_original_without_copies_says_so(cli, lerobot_home, vial):
    assert cli("iterations", vial).stdout.splitlines() == [
        f"vial has no iteration copies yet; `recap-label copy {vial}` makes the first"
    ]
    assert json.loads(cli("iterations", vial, "--json").stdout)["iterations"] == []


def test_iterations_without_active_does_not_claim_nothing_was_labeled(cli, lerobot_home, vial, tmp_path):
    cli("copy", vial)
    cli("label", "local/vial_vlm_label", *LABEL)
    cli("rollback", "local/vial_vlm_label", "--iteration")  # labeled, then retired: no alias left
    assert cli("iterations", vial).stdout.splitlines()[-1] == (
        "local/vial_vlm_label_active is not set (no live labeled iteration is active; `recap-label activate <copy>` "
        "sets it)"
    )


def test_recopy_of_an_original_is_refused_and_names_the_iteration_to_follow(cli, lerobot_home, vial, tmp_path):
    cli("copy", vial)
    cli("label", "local/vial_vlm_label", *LABEL)
    before = tree_digest(tmp_path)
    line = error_line(cli("copy", vial, code=2))
    assert line == (
        "Error: vial already has iteration copies (vial_vlm_label); the next iteration follows vial_vlm_label: "
        "run `recap-label copy local/vial_vlm_label_active` (makes vial_vlm_label_v2); to start over from the "
        "original, unlabeled, pass --from-original"
    )
    assert tree_digest(tmp_path) == before


def test_activate_refuses_unlabeled_missing_and_originals(cli, lerobot_home, vial, tmp_path):
    cli("copy", vial)
    before = tree_digest(tmp_path)
    assert error_line(cli("activate", "local/vial_vlm_label", code=2)) == (
        f"Error: vial_vlm_label has no label run: `_active` never points at an unlabeled copy; run `recap-label "
        f"label {tmp_path / 'vial_vlm_label'}` first"
    )
    assert error_line(cli("activate", vial, code=2)) == (
        f"Error: {vial} is not an iteration copy made by `recap-label copy`; `_active` only points at labeled copies"
    )
    assert error_line(cli("activate", tmp_path / "nowhere", code=2)).startswith(
        f"Error: dataset {tmp_path / 'nowhere'} not found"
    )
    assert tree_digest(tmp_path) == before


def test_register_a_moved_copy_and_the_alias_follows(cli, lerobot_home, vial, tmp_path):
    cli("copy", vial)
    cli("label", "local/vial_vlm_label", *LABEL)
    moved = tmp_path / "big" / "vial_vlm_label"
    moved.parent.mkdir()
    shutil.move(tmp_path / "vial_vlm_label", moved)
    # the dangling entry's message names the command that re-registers it
    line = error_line(cli("verify", "local/vial_vlm_label", code=2))
    assert "re-register it with `recap-label register <its folder>`" in line
    rows = json.loads(cli("iterations", vial, "--json").stdout)["iterations"]
    assert [(r["path"], r["missing"], r["active"]) for r in rows] == [(str(tmp_path / "vial_vlm_label"), True, True)]
    out = json.loads(cli("register", moved, "--json").stdout)
    assert out["before"] == str(tmp_path / "vial_vlm_label") and out["alias_moved"]
    assert os.readlink(lerobot_home / "local" / "vial_vlm_label") == str(moved)
    assert os.readlink(alias_of(lerobot_home)) == str(moved)
    cli("verify", "local/vial_vlm_label_active")
    rows = json.loads(cli("iterations", moved, "--json").stdout)["iterations"]
    assert [(r["path"], r["missing"], r["active"], r["registered"]) for r in rows] == [(str(moved), False, True, True)]
    # a name that points at another existing copy is not taken over silently
    other = tmp_path / "other" / "vial_vlm_label"
    shutil.copytree(moved, other)
    line = error_line(cli("register", other, code=2))
    assert (
        line
        == f"Error: LeRobot cache entry {lerobot_home / 'local' / 'vial_vlm_label'} points to {moved}, which exists; "
        f"pass --replace-registration to repoint it"
    )
    cli("register", other, "--replace-registration")
    assert os.readlink(lerobot_home / "local" / "vial_vlm_label") == str(other)


def test_iterations_of_a_folder_that_is_not_a_dataset(cli, lerobot_home, tmp_path):
    (tmp_path / "plain").mkdir()
    line = error_line(cli("iterations", tmp_path / "plain", code=2))
    assert "plain" in line and "info.json" in line


def test_iterations_on_a_lerobot_specimen(cli, lerobot_home, tmp_path):
    src = writable_copy(FIXTURES / "v3.0" / "video_av1", tmp_path / "vial_v30")
    cli("copy", src)
    its = json.loads(cli("iterations", "local/vial_v30_vlm_label", "--json").stdout)
    assert [r["name"] for r in its["iterations"]] == ["vial_v30_vlm_label"] and its["active"] is None
    assert its["iterations"][0]["registered"] and its["iterations"][0]["runs"] == 0


def test_checkpoint_step_of_a_model_source():
    from recap_label.store.lineage import checkpoint_step

    assert checkpoint_step({"source": "model", "checkpoint": "/ckpt/value_model/step_00005000"}) == 5000
    assert checkpoint_step({"source": "values-file", "path": "/v.parquet"}) is None
